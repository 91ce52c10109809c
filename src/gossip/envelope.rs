//! The envelope around every gossip UDP packet and TCP message.
//!
//! Plaintext: `[1][kind][body]`. Encrypted: `[2][nonce: 12][AES-GCM(kind ‖ body) ‖ tag: 16]`,
//! with the version byte as associated data, sealed by the keyring's primary key and opened
//! by whichever key authenticates it. The version byte is the format marker: new formats get
//! new numbers, kinds are append-only.
//!
//! The ring is shared by every clone of a `Sealer` (the gossip task, the TCP listener, the
//! handle) and replaced whole by a keyring operation (`keyring_ops`), so a rotation takes
//! effect on the next packet everywhere. Whether the pool is encrypted at all is fixed at start.
//!
//! Invariant: `open` never panics; it classifies every refused input as malformed (too short,
//! unknown version or kind), undecryptable, or plaintext refused by `encrypt_verify_incoming`,
//! so that the caller can count it.

use std::sync::{Arc, RwLock};

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
    /// A keyring operation for this member (`keyring_wire`), TCP; only ever sealed.
    KeyringRequest = 8,
    /// The member's keyring after the operation, or its error, TCP; only ever sealed.
    KeyringResponse = 9,
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
            8 => Kind::KeyringRequest,
            9 => Kind::KeyringResponse,
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

/// An opened envelope: its kind, its body, and whether it was sealed with a key of the ring.
pub(super) struct Opened {
    pub(super) kind: Kind,
    pub(super) body: Vec<u8>,
    pub(super) sealed: bool,
}

/// Seals and opens envelopes with the agent's keyring and encryption settings.
#[derive(Clone)]
pub(super) struct Sealer {
    /// The keyring, primary first; empty when gossip is not encrypted. Shared by every clone;
    /// a keyring operation replaces the inner `Arc` whole, readers take it briefly.
    ring: Arc<RwLock<Arc<Vec<Cipher>>>>,
    /// A key was given at start: the pool is encrypted (a ring is never emptied afterwards).
    encrypted: bool,
    /// Seal with the primary key (Consul's `encrypt_verify_outgoing`, and a key is set).
    encrypt_outgoing: bool,
    /// Refuse plaintext (Consul's `encrypt_verify_incoming`, and a key is set).
    refuse_plaintext: bool,
}

impl Sealer {
    pub(super) fn new(ciphers: Vec<Cipher>, verify_outgoing: bool, verify_incoming: bool) -> Sealer {
        let encrypted = !ciphers.is_empty();
        Sealer {
            ring: Arc::new(RwLock::new(Arc::new(ciphers))),
            encrypted,
            encrypt_outgoing: encrypted && verify_outgoing,
            refuse_plaintext: encrypted && verify_incoming,
        }
    }

    /// Whether outgoing messages are encrypted.
    pub(super) fn encrypts(&self) -> bool {
        self.encrypt_outgoing
    }

    /// Whether gossip is encrypted at all (a keyring was given at start).
    pub(super) fn encrypted(&self) -> bool {
        self.encrypted
    }

    /// The ring as it is now, primary first.
    pub(super) fn ring(&self) -> Arc<Vec<Cipher>> {
        Arc::clone(&self.ring.read().expect("gossip keyring lock poisoned"))
    }

    /// Replaces the ring for every clone of this sealer; the next packet uses it.
    pub(super) fn replace_ring(&self, ciphers: Vec<Cipher>) {
        assert!(!ciphers.is_empty() || !self.encrypted, "an encrypted pool's keyring is never emptied");
        *self.ring.write().expect("gossip keyring lock poisoned") = Arc::new(ciphers);
    }

    /// The envelope for `body` of `kind`.
    pub(super) fn seal(&self, kind: Kind, body: &[u8]) -> Vec<u8> {
        if self.encrypt_outgoing
            && let Some(packet) = self.seal_always(kind, body)
        {
            return packet;
        }
        let mut packet = Vec::with_capacity(2 + body.len());
        packet.push(VERSION_PLAIN);
        packet.push(kind as u8);
        packet.extend_from_slice(body);
        packet
    }

    /// The envelope for `body` sealed with the primary key whatever `encrypt_verify_outgoing`
    /// says (keyring messages are never sent in plaintext); `None` without a keyring.
    pub(super) fn seal_always(&self, kind: Kind, body: &[u8]) -> Option<Vec<u8>> {
        let ring = self.ring();
        let primary = ring.first()?;
        let mut plaintext = Vec::with_capacity(1 + body.len());
        plaintext.push(kind as u8);
        plaintext.extend_from_slice(body);
        let sealed = primary.seal(&[VERSION_AES_GCM], &plaintext);
        let mut packet = Vec::with_capacity(1 + sealed.len());
        packet.push(VERSION_AES_GCM);
        packet.extend_from_slice(&sealed);
        Some(packet)
    }

    /// The kind and body of an envelope, or why it is refused.
    pub(super) fn open(&self, packet: &[u8]) -> Result<(Kind, Vec<u8>), Refused> {
        self.open_envelope(packet).map(|opened| (opened.kind, opened.body))
    }

    /// [`Sealer::open`], also saying whether the envelope was sealed (keyring messages must be).
    pub(super) fn open_envelope(&self, packet: &[u8]) -> Result<Opened, Refused> {
        let Some((&version, rest)) = packet.split_first() else {
            return Err(Refused::Malformed);
        };
        let (plaintext, sealed) = match version {
            VERSION_PLAIN if self.refuse_plaintext => return Err(Refused::Plaintext),
            VERSION_PLAIN => (rest.to_vec(), false),
            VERSION_AES_GCM => {
                let ring = self.ring();
                let opened = ring.iter().find_map(|cipher| cipher.open(&[VERSION_AES_GCM], rest));
                (opened.ok_or(Refused::Decrypt)?, true)
            }
            _ => return Err(Refused::Malformed),
        };
        let Some((&kind_byte, body)) = plaintext.split_first() else {
            return Err(Refused::Malformed);
        };
        let kind = Kind::from_byte(kind_byte).ok_or(Refused::Malformed)?;
        Ok(Opened { kind, body: body.to_vec(), sealed })
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
        // Keyring messages are sealed even when outgoing encryption is off, and say so.
        let sealed = lenient.seal_always(Kind::KeyringRequest, b"k").expect("a keyring");
        let opened = strict.open_envelope(&sealed).expect("opens");
        assert!(opened.sealed && opened.kind == Kind::KeyringRequest);
        assert!(!lenient.open_envelope(&plain.seal(Kind::KeyringRequest, b"k")).expect("opens").sealed);
        assert!(plain.seal_always(Kind::KeyringRequest, b"k").is_none());
    }

    #[test]
    fn every_clone_sees_a_replaced_ring() {
        let (old, new) = (cipher(), cipher());
        let sender = Sealer::new(vec![old.clone()], true, true);
        let receiver = sender.clone();
        sender.replace_ring(vec![new.clone(), old]);
        let packet = receiver.seal(Kind::Foca, b"x");
        // Sealed with the new primary: a ring of only the new key opens it.
        let only_new = Sealer::new(vec![new], true, true);
        assert_eq!(only_new.open(&packet), Ok((Kind::Foca, b"x".to_vec())));
    }
}
