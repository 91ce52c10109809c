//! The envelope around every gossip UDP packet and TCP message.
//!
//! Plaintext: `[1][kind][body]`. Encrypted: `[2][nonce: 12][AES-GCM(kind ‖ body) ‖ tag: 16]`,
//! with the version byte as associated data, sealed by the keyring's primary key and opened
//! by whichever key authenticates it. The version byte is the format marker: new formats get
//! new numbers, kinds are append-only.
//!
//! Invariant: `open` never panics; it classifies every refused input as malformed (too short,
//! unknown version or kind), undecryptable, or plaintext refused by `encrypt_verify_incoming`,
//! so that the caller can count it.

use super::keyring::{Cipher, NONCE_BYTES, TAG_BYTES};
use super::timing::FOCA_PACKET_BYTES_MAX;

/// Version byte of a plaintext envelope.
const VERSION_PLAIN: u8 = 1;

/// Version byte of an AES-GCM envelope.
const VERSION_AES_GCM: u8 = 2;

/// The most bytes an envelope adds to its body: version, kind, nonce and tag.
pub(super) const ENVELOPE_BYTES_MAX: usize = 2 + NONCE_BYTES + TAG_BYTES;

/// The largest UDP packet sent or accepted, in bytes: a full foca packet in its envelope.
pub(super) const GOSSIP_PACKET_BYTES_MAX: usize = FOCA_PACKET_BYTES_MAX + ENVELOPE_BYTES_MAX;

/// What a message carries. The numbers are on the wire: append only, never reuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Kind {
    /// A foca (SWIM) packet, UDP.
    Foca = 1,
    /// An RTT probe (`rtt::Ping`), UDP.
    Ping = 2,
    /// The answer to a `Ping`, UDP.
    Pong = 3,
    /// "Send me your tags", UDP, empty body.
    MetaRequest = 4,
    /// A member's own `NodeMeta`, UDP.
    MetaReply = 5,
    /// A joiner's or a periodic sync's state, TCP.
    PushPullRequest = 6,
    /// The answering side's state, TCP.
    PushPullResponse = 7,
}

impl Kind {
    fn from_byte(byte: u8) -> Option<Kind> {
        Some(match byte {
            1 => Kind::Foca,
            2 => Kind::Ping,
            3 => Kind::Pong,
            4 => Kind::MetaRequest,
            5 => Kind::MetaReply,
            6 => Kind::PushPullRequest,
            7 => Kind::PushPullResponse,
            _ => return None,
        })
    }
}

/// Why an incoming message was refused; each has its own counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refused {
    /// Too short, unknown version or unknown kind.
    Malformed,
    /// Encrypted, but no key of the ring authenticates it (or there is no ring).
    Decrypt,
    /// Plaintext while `encrypt_verify_incoming` is set.
    Plaintext,
}

/// Seals and opens envelopes with the agent's keyring and encryption settings.
#[derive(Clone)]
pub(super) struct Sealer {
    /// The keyring, primary first; empty when gossip is not encrypted.
    ciphers: Vec<Cipher>,
    /// Seal with the primary key (Consul's `encrypt_verify_outgoing`, and a key is set).
    encrypt_outgoing: bool,
    /// Refuse plaintext (Consul's `encrypt_verify_incoming`, and a key is set).
    refuse_plaintext: bool,
}

impl Sealer {
    pub(super) fn new(ciphers: Vec<Cipher>, verify_outgoing: bool, verify_incoming: bool) -> Sealer {
        let encrypted = !ciphers.is_empty();
        Sealer {
            ciphers,
            encrypt_outgoing: encrypted && verify_outgoing,
            refuse_plaintext: encrypted && verify_incoming,
        }
    }

    /// Whether outgoing messages are encrypted.
    pub(super) fn encrypts(&self) -> bool {
        self.encrypt_outgoing
    }

    /// The envelope for `body` of `kind`.
    pub(super) fn seal(&self, kind: Kind, body: &[u8]) -> Vec<u8> {
        match self.ciphers.first() {
            Some(primary) if self.encrypt_outgoing => {
                let mut plaintext = Vec::with_capacity(1 + body.len());
                plaintext.push(kind as u8);
                plaintext.extend_from_slice(body);
                let sealed = primary.seal(&[VERSION_AES_GCM], &plaintext);
                let mut packet = Vec::with_capacity(1 + sealed.len());
                packet.push(VERSION_AES_GCM);
                packet.extend_from_slice(&sealed);
                packet
            }
            _ => {
                let mut packet = Vec::with_capacity(2 + body.len());
                packet.push(VERSION_PLAIN);
                packet.push(kind as u8);
                packet.extend_from_slice(body);
                packet
            }
        }
    }

    /// The kind and body of an envelope, or why it is refused.
    pub(super) fn open(&self, packet: &[u8]) -> Result<(Kind, Vec<u8>), Refused> {
        let Some((&version, rest)) = packet.split_first() else {
            return Err(Refused::Malformed);
        };
        let plaintext = match version {
            VERSION_PLAIN if self.refuse_plaintext => return Err(Refused::Plaintext),
            VERSION_PLAIN => rest.to_vec(),
            VERSION_AES_GCM => {
                self.ciphers.iter().find_map(|cipher| cipher.open(&[VERSION_AES_GCM], rest)).ok_or(Refused::Decrypt)?
            }
            _ => return Err(Refused::Malformed),
        };
        let Some((&kind_byte, body)) = plaintext.split_first() else {
            return Err(Refused::Malformed);
        };
        let kind = Kind::from_byte(kind_byte).ok_or(Refused::Malformed)?;
        Ok((kind, body.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::keyring::generate_key_base64;
    use super::*;

    fn cipher() -> Cipher {
        Cipher::from_base64(&generate_key_base64()).expect("a generated key")
    }

    #[test]
    fn plaintext_round_trip() {
        let sealer = Sealer::new(Vec::new(), true, true);
        let packet = sealer.seal(Kind::Ping, b"abc");
        assert_eq!(packet, [1, 2, b'a', b'b', b'c']);
        assert_eq!(sealer.open(&packet), Ok((Kind::Ping, b"abc".to_vec())));
    }

    #[test]
    fn encrypted_round_trip_with_a_secondary_key() {
        let primary = cipher();
        let old = cipher();
        let sender = Sealer::new(vec![old.clone()], true, true);
        let receiver = Sealer::new(vec![primary, old], true, true);
        let packet = sender.seal(Kind::Foca, b"swim");
        assert_eq!(packet.len(), ENVELOPE_BYTES_MAX + 4);
        assert_eq!(receiver.open(&packet), Ok((Kind::Foca, b"swim".to_vec())));
    }

    #[test]
    fn refusals_are_classified() {
        let ours = Sealer::new(vec![cipher()], true, true);
        let theirs = Sealer::new(vec![cipher()], true, true);
        let plain = Sealer::new(Vec::new(), true, true);
        assert_eq!(ours.open(&theirs.seal(Kind::Foca, b"x")), Err(Refused::Decrypt));
        assert_eq!(ours.open(&plain.seal(Kind::Foca, b"x")), Err(Refused::Plaintext));
        assert_eq!(plain.open(&ours.seal(Kind::Foca, b"x")), Err(Refused::Decrypt));
        assert_eq!(ours.open(&[]), Err(Refused::Malformed));
        assert_eq!(plain.open(&[1]), Err(Refused::Malformed));
        assert_eq!(plain.open(&[1, 99]), Err(Refused::Malformed));
        assert_eq!(plain.open(&[7, 1, 2]), Err(Refused::Malformed));
        assert_eq!(ours.open(&[2, 1, 2, 3]), Err(Refused::Decrypt));
    }

    #[test]
    fn lenient_incoming_accepts_both() {
        let key = cipher();
        let lenient = Sealer::new(vec![key.clone()], false, false);
        let strict = Sealer::new(vec![key], true, true);
        let plain = Sealer::new(Vec::new(), true, true);
        // `encrypt_verify_outgoing = false` sends plaintext.
        assert_eq!(lenient.seal(Kind::Pong, b"")[0], VERSION_PLAIN);
        assert_eq!(lenient.open(&plain.seal(Kind::Pong, b"p")), Ok((Kind::Pong, b"p".to_vec())));
        assert_eq!(lenient.open(&strict.seal(Kind::Pong, b"s")), Ok((Kind::Pong, b"s".to_vec())));
    }
}
