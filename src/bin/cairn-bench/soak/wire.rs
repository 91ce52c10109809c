//! Raw TCP and UDP for the soak's fuzzers: connections that leave from a chosen loopback
//! address, requests delivered whole, slowly or cut short, and answers read within a deadline
//! and a size cap. Nothing here knows HTTP, DNS or frames beyond "when is an answer complete",
//! which the caller says with a predicate.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Most bytes of an answer read before the fuzzer stops reading (the answer is then judged on
/// what arrived).
const ANSWER_BYTES_MAX: usize = 1024 * 1024;
/// Longest wait for a connection to open.
const CONNECT_TIMEOUT_MS: u64 = 5_000;
/// Most bytes of a request shown in a finding.
const SHOWN_BYTES_MAX: usize = 2_048;

/// How a request's bytes are put on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// All at once.
    Whole,
    /// In `pieces` writes with `pause_ms` between them (a slow client).
    Slow { pieces: usize, pause_ms: u64 },
    /// Only the first `sent` bytes, then the connection is closed without reading.
    CutAt { sent: usize },
}

impl Delivery {
    /// Mostly whole; now and then slow or cut short.
    pub(crate) fn pick(rng: &mut impl Rng, length: usize) -> Delivery {
        match rng.gen_range(0..100) {
            0..=2 => Delivery::Slow { pieces: rng.gen_range(2..8), pause_ms: rng.gen_range(50..700) },
            3..=6 if length > 1 => Delivery::CutAt { sent: rng.gen_range(0..length) },
            _ => Delivery::Whole,
        }
    }

    pub(crate) fn expects_answer(self) -> bool {
        !matches!(self, Delivery::CutAt { .. })
    }
}

/// What came back.
#[derive(Debug)]
pub(crate) enum Answer {
    /// The predicate said the answer is complete; the bytes so far.
    Complete(Vec<u8>),
    /// The peer closed (or reset) the connection first; what arrived before.
    Closed(Vec<u8>),
    /// Nothing complete within the deadline; what arrived.
    TimedOut(Vec<u8>),
    /// Nothing was read: the request was cut short on purpose.
    NotAwaited,
}

/// Opens a TCP connection from `source` (port chosen by the kernel) to `target`.
pub(crate) async fn connect_from(source: IpAddr, target: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = if target.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    // Thousands of short connections a second leave ports in TIME_WAIT; without this, binding
    // the source address would soon find no free port.
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::new(source, 0))?;
    match tokio::time::timeout(Duration::from_millis(CONNECT_TIMEOUT_MS), socket.connect(target)).await {
        Ok(connected) => connected,
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")),
    }
}

/// Sends `request` as `delivery` says, then reads until `complete(buffer)` says the answer is
/// whole, the peer closes, or `timeout` passes. A write error (the peer closed early, as a
/// server does on a refusal) is not an error: what it answered is read all the same.
pub(crate) async fn exchange(
    stream: &mut TcpStream,
    request: &[u8],
    delivery: Delivery,
    timeout: Duration,
    complete: impl Fn(&[u8]) -> bool,
) -> Answer {
    match delivery {
        Delivery::Whole => {
            let _ = stream.write_all(request).await;
        }
        Delivery::Slow { pieces, pause_ms } => {
            let piece = request.len().div_ceil(pieces.max(1)).max(1);
            for (position, chunk) in request.chunks(piece).enumerate() {
                if position > 0 {
                    tokio::time::sleep(Duration::from_millis(pause_ms)).await;
                }
                if stream.write_all(chunk).await.is_err() {
                    break;
                }
            }
        }
        Delivery::CutAt { sent } => {
            let _ = stream.write_all(&request[..sent.min(request.len())]).await;
            return Answer::NotAwaited;
        }
    }
    read_answer(stream, timeout, complete).await
}

/// Reads until `complete(buffer)`, EOF, [`ANSWER_BYTES_MAX`] or `timeout`.
pub(crate) async fn read_answer(stream: &mut TcpStream, timeout: Duration, complete: impl Fn(&[u8]) -> bool) -> Answer {
    let mut buffer = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if complete(&buffer) {
            return Answer::Complete(buffer);
        }
        if buffer.len() >= ANSWER_BYTES_MAX {
            return Answer::Complete(buffer);
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => return Answer::TimedOut(buffer),
            Ok(Ok(0)) | Ok(Err(_)) => return Answer::Closed(buffer),
            Ok(Ok(read)) => buffer.extend_from_slice(&chunk[..read]),
        }
    }
}

/// Reads and drops what else arrives until the peer closes or `timeout` passes, so that the
/// peer (which was asked to close) closes first and keeps the TIME_WAIT.
pub(crate) async fn drain(stream: &mut TcpStream, timeout: Duration) {
    let mut chunk = vec![0u8; 16 * 1024];
    let deadline = tokio::time::Instant::now() + timeout;
    while let Ok(Ok(read)) = tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
        if read == 0 {
            return;
        }
    }
}

/// Bytes as text for a report: printable ASCII as is, the rest as `\xNN`, cut at
/// [`SHOWN_BYTES_MAX`] with the full length noted.
pub(crate) fn shown(bytes: &[u8]) -> String {
    let mut text = String::new();
    for &byte in bytes.iter().take(SHOWN_BYTES_MAX) {
        match byte {
            b'\\' => text.push_str("\\\\"),
            b'\r' => text.push_str("\\r"),
            b'\n' => text.push_str("\\n"),
            0x20..=0x7e => text.push(byte as char),
            _ => text.push_str(&format!("\\x{byte:02x}")),
        }
    }
    if bytes.len() > SHOWN_BYTES_MAX {
        text.push_str(&format!("…({} bytes in all)", bytes.len()));
    }
    text
}
