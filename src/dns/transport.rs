//! The DNS server's sockets: one UDP loop and one TCP accept loop, each handing raw requests
//! to the [`Handler`] and sending back the bytes it encoded.
//!
//! cairn serves its sockets itself rather than through hickory's `Server`, because hickory's
//! response path encodes messages with its own encoder (see `wire` for why ours is used).
//! What it keeps from hickory's server: a request that is not even a 12-byte header, or that
//! is itself a response, gets no reply (no reflection); UDP requests are answered
//! concurrently; a TCP connection carries any number of length-prefixed requests, answered in
//! order, and is closed once idle for `TCP_IDLE_TIMEOUT_S`. Every task is bounded: requests in
//! flight over UDP, and open TCP connections.

use std::io::ErrorKind;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::Handler;

/// Most UDP requests being answered at once; past it the loop stops reading until one ends
/// (the kernel's socket buffer then absorbs, and drops, the excess).
const DNS_UDP_REQUESTS_IN_FLIGHT_MAX: usize = 1024;

/// Most TCP connections open at once; further connections are closed at once.
const DNS_TCP_CONNECTIONS_MAX: usize = 1024;

/// Largest datagram we read, in bytes: the largest UDP payload.
const UDP_DATAGRAM_BYTES_MAX: usize = 65_535;

/// How long a TCP connection may stay idle between requests (or take to send one, or to
/// read an answer) before it is closed. Bounds the connections a client can hold open doing
/// nothing (RFC 7766 section 6.2.3 asks for seconds).
const TCP_IDLE_TIMEOUT_S: u64 = 10;

/// How a request arrived, which decides how large its answer may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transport {
    Udp,
    Tcp,
}

/// Answers datagrams on `socket` until `shutdown` is cancelled.
pub(crate) async fn serve_udp(
    socket: UdpSocket,
    handler: Arc<Handler>,
    shutdown: CancellationToken,
) {
    let socket = Arc::new(socket);
    let in_flight = Arc::new(Semaphore::new(DNS_UDP_REQUESTS_IN_FLIGHT_MAX));
    let mut requests = JoinSet::new();
    let mut buffer = vec![0u8; UDP_DATAGRAM_BYTES_MAX];
    loop {
        let received = tokio::select! {
            received = socket.recv_from(&mut buffer) => received,
            () = shutdown.cancelled() => return,
        };
        let (length, source) = match received {
            Ok(received) => received,
            // ICMP errors from earlier sends surface here on Linux; they concern one client.
            Err(error)
                if matches!(
                    error.kind(),
                    ErrorKind::ConnectionRefused
                        | ErrorKind::ConnectionReset
                        | ErrorKind::Interrupted
                ) =>
            {
                debug!(%error, "DNS UDP receive error, ignored");
                continue;
            }
            Err(error) => {
                warn!(%error, "DNS UDP socket failed; UDP is no longer served");
                return;
            }
        };
        let request = buffer[..length].to_vec();
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let (socket, handler) = (socket.clone(), handler.clone());
        requests.spawn(async move {
            if let Some(reply) = handler.respond(&request, Transport::Udp).await
                && let Err(error) = socket.send_to(&reply, source).await
            {
                debug!(%error, %source, "failed to send a DNS reply");
            }
            drop(permit);
        });
        while requests.try_join_next().is_some() {}
    }
}

/// Accepts TCP connections on `listener` and answers their requests until `shutdown` is
/// cancelled.
pub(crate) async fn serve_tcp(
    listener: TcpListener,
    handler: Arc<Handler>,
    shutdown: CancellationToken,
) {
    let open = Arc::new(Semaphore::new(DNS_TCP_CONNECTIONS_MAX));
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => return,
        };
        let (stream, source) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Running out of file descriptors is temporary: wait a little, keep serving.
                debug!(%error, "DNS TCP accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            debug!(%source, "too many DNS TCP connections; closing a new one");
            continue;
        };
        let handler = handler.clone();
        connections.spawn(async move {
            serve_connection(stream, &handler).await;
            drop(permit);
        });
        while connections.try_join_next().is_some() {}
    }
}

/// Answers length-prefixed requests on one connection until the client closes it, sends
/// something we cannot read, or stays idle too long.
async fn serve_connection(mut stream: TcpStream, handler: &Handler) {
    let idle = Duration::from_secs(TCP_IDLE_TIMEOUT_S);
    loop {
        let mut length = [0u8; 2];
        if !matches!(
            tokio::time::timeout(idle, stream.read_exact(&mut length)).await,
            Ok(Ok(_))
        ) {
            return;
        }
        let mut request = vec![0u8; usize::from(u16::from_be_bytes(length))];
        if !matches!(
            tokio::time::timeout(idle, stream.read_exact(&mut request)).await,
            Ok(Ok(_))
        ) {
            return;
        }
        let Some(reply) = handler.respond(&request, Transport::Tcp).await else {
            continue;
        };
        // The encoder keeps TCP answers within 65535 bytes.
        let Ok(reply_length) = u16::try_from(reply.len()) else {
            return;
        };
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&reply_length.to_be_bytes());
        framed.extend_from_slice(&reply);
        if !matches!(
            tokio::time::timeout(idle, stream.write_all(&framed)).await,
            Ok(Ok(()))
        ) {
            return;
        }
    }
}
