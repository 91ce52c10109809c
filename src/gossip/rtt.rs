//! The bodies of our RTT probes (`Kind::Ping`, `Kind::Pong`), which also carry the answering
//! member's network coordinate, as Serf's ping acks do: foca's own probes have no payload,
//! so the Vivaldi samples come from these.
//!
//! Wire, inside the envelope:
//! - ping, original format: `[sequence: 8, big-endian]`; the answer echoes it (8 bytes);
//! - ping asking for a coordinate: `[sequence: 8][COORDINATE_REQUEST][zeros]`, exactly
//!   [`PING_COORDINATE_BYTES`] long; the answer is `[sequence: 8][TRAILER_V1][postcard
//!   Coordinate]`, never longer than the ping (no amplification by a spoofed source);
//! - a member of the original format echoes a coordinate request whole: its answer still gives
//!   an RTT, and is recognised (`Pong::coordinate == PongCoordinate::Absent`), not counted as bad;
//! - a ping longer than [`PING_BODY_BYTES_MAX`] gets no answer and is counted as malformed.
//!
//! A coordinate that arrives is bounded by the packet and by [`COORDINATE_TRAILER_BYTES_MAX`],
//! decoded without panicking, and checked (`is_valid`, `is_compatible_with`) before use; a bad
//! one is reported as `PongCoordinate::Refused` so the driver counts it.

use super::coordinate::Coordinate;

/// Length of a ping that asks for the answering member's coordinate, in body bytes.
pub(super) const PING_COORDINATE_BYTES: usize = 128;
/// The longest ping answered, in body bytes: no ping of ours is longer. An echo of a longer
/// one, sealed, would not fit a packet (issue 11: the fuzzer sent a 1,402-byte ping to an
/// agent that accepts plaintext and seals its answers).
pub(super) const PING_BODY_BYTES_MAX: usize = PING_COORDINATE_BYTES;
/// The byte after a ping's sequence that asks for a coordinate. Differs from [`TRAILER_V1`]
/// so that an echo by a member of the original format is told apart from a trailer.
const COORDINATE_REQUEST: u8 = 0xC0;
/// Format of the coordinate trailer of a pong: new formats get new numbers.
const TRAILER_V1: u8 = 1;
/// Most bytes a coordinate trailer may take: what fits in the answer to a ping.
pub(super) const COORDINATE_TRAILER_BYTES_MAX: usize = PING_COORDINATE_BYTES - SEQUENCE_BYTES;
const SEQUENCE_BYTES: usize = 8;

/// What a pong says about the answering member's coordinate.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum PongCoordinate {
    /// The member sent none (original format, or it was not asked).
    Absent,
    /// A coordinate that decodes and is valid; compatibility is the driver's check.
    Present(Coordinate),
    /// A trailer that is too long, of an unknown format, does not decode or is invalid.
    Refused,
}

/// A decoded pong.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Pong {
    pub(super) sequence: u64,
    pub(super) coordinate: PongCoordinate,
}

/// The body of a ping asking for a coordinate.
pub(super) fn ping_body(sequence: u64) -> Vec<u8> {
    let mut body = vec![0; PING_COORDINATE_BYTES];
    body[..SEQUENCE_BYTES].copy_from_slice(&sequence.to_be_bytes());
    body[SEQUENCE_BYTES] = COORDINATE_REQUEST;
    body
}

/// The answer to a ping body: with our coordinate when asked for it and it fits, else the
/// ping echoed (the original format). Never longer than the ping.
pub(super) fn pong_body(ping: &[u8], own: &Coordinate) -> Vec<u8> {
    let asks = ping.len() == PING_COORDINATE_BYTES && ping[SEQUENCE_BYTES] == COORDINATE_REQUEST;
    if !asks {
        return ping.to_vec();
    }
    let mut body = ping[..SEQUENCE_BYTES].to_vec();
    body.push(TRAILER_V1);
    match postcard::to_extend(own, body) {
        Ok(body) if body.len() <= PING_COORDINATE_BYTES => body,
        // Our coordinate has too many dimensions to fit: answer without it.
        _ => ping.to_vec(),
    }
}

/// Decodes a pong body; `None` when it is not one (wrong size).
pub(super) fn parse_pong(body: &[u8]) -> Option<Pong> {
    let sequence = u64::from_be_bytes(body.get(..SEQUENCE_BYTES)?.try_into().ok()?);
    let trailer = &body[SEQUENCE_BYTES..];
    let coordinate = match trailer.split_first() {
        None => PongCoordinate::Absent,
        Some((&COORDINATE_REQUEST, _)) if body.len() == PING_COORDINATE_BYTES => PongCoordinate::Absent,
        Some((&TRAILER_V1, encoded)) if trailer.len() <= COORDINATE_TRAILER_BYTES_MAX => {
            match postcard::from_bytes::<Coordinate>(encoded) {
                Ok(coordinate) if coordinate.is_valid() => PongCoordinate::Present(coordinate),
                _ => PongCoordinate::Refused,
            }
        }
        Some(_) => PongCoordinate::Refused,
    };
    Some(Pong { sequence, coordinate })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::coordinate::CoordinateConfig;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn two_dimensional() -> Coordinate {
        Coordinate { vec: vec![1.0, 0.0], error: 1.5, adjustment: 0.0, height: 0.5 }
    }

    /// The bytes are a compatibility promise between agents of different versions.
    #[test]
    fn ping_and_pong_bytes_are_pinned() {
        let ping = ping_body(0x0102);
        assert_eq!(hex(&ping[..10]), "0000000000000102c000");
        assert_eq!(ping.len(), PING_COORDINATE_BYTES);
        assert!(ping[9..].iter().all(|b| *b == 0));
        let pong = pong_body(&ping, &two_dimensional());
        let expected: String =
            "0000000000000102 01 02 000000000000f03f 0000000000000000 000000000000f83f 0000000000000000 000000000000e03f"
                .split_whitespace()
                .collect();
        assert_eq!(hex(&pong), expected);
        assert_eq!(parse_pong(&pong), Some(Pong { sequence: 0x0102, coordinate: PongCoordinate::Present(two_dimensional()) }));
    }

    #[test]
    fn consul_sized_coordinates_fit_the_answer() {
        let own = Coordinate::new(&CoordinateConfig::consul_default());
        let pong = pong_body(&ping_body(7), &own);
        assert!(pong.len() <= PING_COORDINATE_BYTES);
        assert_eq!(parse_pong(&pong).map(|p| p.coordinate), Some(PongCoordinate::Present(own)));
    }

    #[test]
    fn the_original_format_still_works_both_ways() {
        // An original-format ping (8 bytes) is echoed, as before.
        let old_ping = 9u64.to_be_bytes();
        assert_eq!(pong_body(&old_ping, &two_dimensional()), old_ping.to_vec());
        assert_eq!(parse_pong(&old_ping), Some(Pong { sequence: 9, coordinate: PongCoordinate::Absent }));
        // An original-format member echoes our coordinate request whole.
        let echoed = ping_body(9);
        assert_eq!(parse_pong(&echoed), Some(Pong { sequence: 9, coordinate: PongCoordinate::Absent }));
    }

    #[test]
    fn hostile_pongs_are_refused_without_panicking() {
        assert_eq!(parse_pong(&[1, 2, 3]), None);
        let refused = |trailer: &[u8]| {
            let mut body = 5u64.to_be_bytes().to_vec();
            body.extend_from_slice(trailer);
            parse_pong(&body).map(|pong| pong.coordinate)
        };
        assert_eq!(refused(&[2, 0]), Some(PongCoordinate::Refused), "unknown trailer format");
        assert_eq!(refused(&[TRAILER_V1]), Some(PongCoordinate::Refused), "truncated");
        assert_eq!(refused(&[TRAILER_V1, 0xff, 0xff, 0xff, 0xff, 0x0f]), Some(PongCoordinate::Refused), "huge length");
        let mut nan = vec![TRAILER_V1, 1];
        nan.extend_from_slice(&f64::NAN.to_le_bytes());
        nan.extend_from_slice(&[0; 24]);
        assert_eq!(refused(&nan), Some(PongCoordinate::Refused), "not finite");
        let mut too_long = vec![TRAILER_V1];
        too_long.extend(std::iter::repeat_n(0u8, COORDINATE_TRAILER_BYTES_MAX));
        assert_eq!(refused(&too_long), Some(PongCoordinate::Refused), "longer than any answer");
        // A coordinate too large to fit is left out of the answer rather than sent.
        let wide = Coordinate { vec: vec![0.0; 64], ..two_dimensional() };
        let ping = ping_body(1);
        assert_eq!(pong_body(&ping, &wide), ping);
    }
}
