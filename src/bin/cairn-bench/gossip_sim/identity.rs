//! The simulated members' foca identity and wire codec.
//!
//! A [`SimIdentity`] is a member number (its "address": the simulator delivers by it) and a
//! generation that [`foca::Identity::renew`] bumps, so that a member wrongly declared down
//! rejoins at once, as cairn's gossip identity does. On the wire an identity takes a fixed
//! `identity_bytes` (number, generation, then zero padding), so the byte counts model a real
//! identity (node name, socket address, incarnation) without cloning strings in the hot path.
//! The rest of the format is plain fixed-width fields, close to foca's postcard sizes.
//!
//! Decoding never panics: every read checks the remaining length first.

use bytes::{Buf, BufMut};
use foca::{Codec, Header, Member, Message, State};

/// Number and generation: the smallest an encoded identity can be.
pub(super) const IDENTITY_BYTES_MIN: usize = 6;
/// The message tag of `Message::TurnUndead` ("the cluster declared you down").
pub(super) const TURN_UNDEAD_TAG: u8 = 10;

/// A simulated member's identity: see the module doc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct SimIdentity {
    pub(super) member: u32,
    pub(super) generation: u16,
}

/// Encodes identities as `identity_bytes` each; see the module doc.
#[derive(Clone, Copy, Debug)]
pub(super) struct SimCodec {
    identity_bytes: usize,
}

/// Why a packet could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub(super) enum SimCodecError {
    #[error("buffer too small to encode")]
    BufferFull,
    #[error("packet ends early")]
    Truncated,
    #[error("unknown message or state tag {0}")]
    UnknownTag(u8),
}

impl foca::Identity for SimIdentity {
    type Addr = u32;

    fn renew(&self) -> Option<SimIdentity> {
        Some(SimIdentity { member: self.member, generation: self.generation.wrapping_add(1) })
    }

    fn addr(&self) -> u32 {
        self.member
    }

    fn win_addr_conflict(&self, adversary: &SimIdentity) -> bool {
        self.generation > adversary.generation
    }
}

impl SimCodec {
    /// `identity_bytes` is raised to [`IDENTITY_BYTES_MIN`] if smaller.
    pub(super) fn new(identity_bytes: usize) -> SimCodec {
        SimCodec { identity_bytes: identity_bytes.max(IDENTITY_BYTES_MIN) }
    }

    /// Where a packet's message tag is: after the source, its incarnation and the destination.
    pub(super) fn message_tag_position(&self) -> usize {
        2 * self.identity_bytes + 2
    }

    fn message_len(&self, message: &Message<SimIdentity>) -> usize {
        match message {
            Message::Ping(_) | Message::Ack(_) => 2,
            Message::PingReq { .. } | Message::IndirectPing { .. } | Message::IndirectAck { .. } | Message::ForwardedAck { .. } => {
                2 + self.identity_bytes
            }
            Message::Announce | Message::Feed | Message::Gossip | Message::Broadcast | Message::TurnUndead => 1,
        }
    }

    fn put_identity(&self, identity: &SimIdentity, buf: &mut impl BufMut) {
        buf.put_u32(identity.member);
        buf.put_u16(identity.generation);
        buf.put_bytes(0, self.identity_bytes - IDENTITY_BYTES_MIN);
    }

    fn get_identity(&self, buf: &mut impl Buf) -> Result<SimIdentity, SimCodecError> {
        need(buf, self.identity_bytes)?;
        let identity = SimIdentity { member: buf.get_u32(), generation: buf.get_u16() };
        buf.advance(self.identity_bytes - IDENTITY_BYTES_MIN);
        Ok(identity)
    }

    fn put_message(&self, message: &Message<SimIdentity>, buf: &mut impl BufMut) {
        match message {
            Message::Ping(probe) => buf.put_slice(&[0, *probe]),
            Message::Ack(probe) => buf.put_slice(&[1, *probe]),
            Message::PingReq { target, probe_number } => self.put_about(2, target, *probe_number, buf),
            Message::IndirectPing { origin, probe_number } => self.put_about(3, origin, *probe_number, buf),
            Message::IndirectAck { target, probe_number } => self.put_about(4, target, *probe_number, buf),
            Message::ForwardedAck { origin, probe_number } => self.put_about(5, origin, *probe_number, buf),
            Message::Announce => buf.put_u8(6),
            Message::Feed => buf.put_u8(7),
            Message::Gossip => buf.put_u8(8),
            Message::Broadcast => buf.put_u8(9),
            Message::TurnUndead => buf.put_u8(TURN_UNDEAD_TAG),
        }
    }

    /// A message about another member: tag, that member, probe number.
    fn put_about(&self, tag: u8, identity: &SimIdentity, probe_number: u8, buf: &mut impl BufMut) {
        buf.put_u8(tag);
        self.put_identity(identity, buf);
        buf.put_u8(probe_number);
    }

    fn get_message(&self, buf: &mut impl Buf) -> Result<Message<SimIdentity>, SimCodecError> {
        need(buf, 1)?;
        let tag = buf.get_u8();
        let probe = |buf: &mut dyn Buf| need(buf, 1).map(|()| buf.get_u8());
        Ok(match tag {
            0 => Message::Ping(probe(buf)?),
            1 => Message::Ack(probe(buf)?),
            2..=5 => {
                let identity = self.get_identity(buf)?;
                let probe_number = probe(buf)?;
                match tag {
                    2 => Message::PingReq { target: identity, probe_number },
                    3 => Message::IndirectPing { origin: identity, probe_number },
                    4 => Message::IndirectAck { target: identity, probe_number },
                    _ => Message::ForwardedAck { origin: identity, probe_number },
                }
            }
            6 => Message::Announce,
            7 => Message::Feed,
            8 => Message::Gossip,
            9 => Message::Broadcast,
            TURN_UNDEAD_TAG => Message::TurnUndead,
            other => return Err(SimCodecError::UnknownTag(other)),
        })
    }
}

fn need(buf: &(impl Buf + ?Sized), bytes: usize) -> Result<(), SimCodecError> {
    if buf.remaining() < bytes { Err(SimCodecError::Truncated) } else { Ok(()) }
}

impl Codec<SimIdentity> for SimCodec {
    type Error = SimCodecError;

    fn encode_header(&mut self, header: &Header<SimIdentity>, mut buf: impl BufMut) -> Result<(), SimCodecError> {
        if buf.remaining_mut() < 2 * self.identity_bytes + 2 + self.message_len(&header.message) {
            return Err(SimCodecError::BufferFull);
        }
        self.put_identity(&header.src, &mut buf);
        buf.put_u16(header.src_incarnation);
        self.put_identity(&header.dst, &mut buf);
        self.put_message(&header.message, &mut buf);
        Ok(())
    }

    fn decode_header(&mut self, mut buf: impl Buf) -> Result<Header<SimIdentity>, SimCodecError> {
        let src = self.get_identity(&mut buf)?;
        need(&buf, 2)?;
        let src_incarnation = buf.get_u16();
        let dst = self.get_identity(&mut buf)?;
        let message = self.get_message(&mut buf)?;
        Ok(Header { src, src_incarnation, dst, message })
    }

    fn encode_member(&mut self, member: &Member<SimIdentity>, mut buf: impl BufMut) -> Result<(), SimCodecError> {
        if buf.remaining_mut() < self.identity_bytes + 3 {
            return Err(SimCodecError::BufferFull);
        }
        self.put_identity(member.id(), &mut buf);
        buf.put_u16(member.incarnation());
        buf.put_u8(match member.state() {
            State::Alive => 0,
            State::Suspect => 1,
            State::Down => 2,
        });
        Ok(())
    }

    fn decode_member(&mut self, mut buf: impl Buf) -> Result<Member<SimIdentity>, SimCodecError> {
        let identity = self.get_identity(&mut buf)?;
        need(&buf, 3)?;
        let incarnation = buf.get_u16();
        let state = match buf.get_u8() {
            0 => State::Alive,
            1 => State::Suspect,
            2 => State::Down,
            other => return Err(SimCodecError::UnknownTag(other)),
        };
        Ok(Member::new(identity, incarnation, state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDENTITY_BYTES: usize = 25;

    fn identity(member: u32) -> SimIdentity {
        SimIdentity { member, generation: 7 }
    }

    #[test]
    fn headers_and_members_round_trip_at_the_configured_size() {
        let mut codec = SimCodec::new(IDENTITY_BYTES);
        let messages = [
            Message::Ping(1),
            Message::Ack(2),
            Message::PingReq { target: identity(3), probe_number: 4 },
            Message::IndirectPing { origin: identity(5), probe_number: 6 },
            Message::IndirectAck { target: identity(7), probe_number: 8 },
            Message::ForwardedAck { origin: identity(9), probe_number: 10 },
            Message::Announce,
            Message::Feed,
            Message::Gossip,
            Message::Broadcast,
            Message::TurnUndead,
        ];
        for message in messages {
            let header = Header { src: identity(1), src_incarnation: 300, dst: identity(2), message };
            let mut bytes = Vec::new();
            codec.encode_header(&header, &mut bytes).expect("room to encode");
            assert_eq!(bytes.len(), 2 * IDENTITY_BYTES + 2 + codec.message_len(&header.message));
            assert_eq!(codec.decode_header(&bytes[..]).expect("decodes"), header);
            let tag = bytes[codec.message_tag_position()];
            assert_eq!(tag == TURN_UNDEAD_TAG, header.message == Message::TurnUndead);
            assert!(codec.decode_header(&bytes[..bytes.len() - 1]).is_err(), "a truncated header is refused");
        }
        let member = Member::new(identity(4), 9, State::Suspect);
        let mut bytes = Vec::new();
        codec.encode_member(&member, &mut bytes).expect("room to encode");
        assert_eq!(bytes.len(), IDENTITY_BYTES + 3);
        assert_eq!(codec.decode_member(&bytes[..]).expect("decodes"), member);
        assert!(codec.decode_member(&bytes[..IDENTITY_BYTES]).is_err());
    }

    #[test]
    fn a_full_buffer_is_left_untouched() {
        let mut codec = SimCodec::new(IDENTITY_BYTES);
        let mut bytes = Vec::new();
        let limited = bytes::BufMut::limit(&mut bytes, IDENTITY_BYTES);
        assert!(codec.encode_member(&Member::alive(identity(1)), limited).is_err());
        assert!(bytes.is_empty());
    }
}
