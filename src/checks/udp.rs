//! UDP checks, as Consul's `CheckUDP`: send one (empty) datagram to `host:port` from a
//! connected socket and wait up to the timeout for a reply. A reply is passing; so is
//! silence (UDP servers need not answer): the timeout without an error reads as
//! `UDP connect <addr>: Success`. An ICMP port-unreachable makes the read fail with
//! "connection refused", which is critical, as is a failure to resolve or send.

use std::time::Duration;

use tokio::net::UdpSocket;

use super::CheckStatus;

pub(super) async fn run(address: &str, timeout: Duration) -> (CheckStatus, String) {
    let success = || (CheckStatus::Passing, format!("UDP connect {address}: Success"));
    let socket = match tokio::time::timeout(timeout, connect(address)).await {
        Ok(Ok(socket)) => socket,
        // Consul: a dial timeout counts as success (nothing said the port is closed).
        Err(_elapsed) => return success(),
        Ok(Err(err)) => {
            tracing::warn!(address, error = %err, "UDP check socket connection failed");
            return (CheckStatus::Critical, format!("dial udp {address}: {err}"));
        }
    };
    let endpoints = match (socket.local_addr(), socket.peer_addr()) {
        (Ok(local), Ok(peer)) => format!("{local}->{peer}"),
        _ => address.to_owned(),
    };
    if let Err(err) = socket.send(&[]).await {
        tracing::warn!(address, error = %err, "UDP check socket write failed");
        return (CheckStatus::Critical, format!("write udp {endpoints}: write: {err}"));
    }
    let mut buffer = [0u8; 1];
    match tokio::time::timeout(timeout, socket.recv(&mut buffer)).await {
        Ok(Ok(_)) | Err(_) => success(),
        Ok(Err(err)) => {
            tracing::warn!(address, error = %err, "UDP check socket read failed");
            (CheckStatus::Critical, format!("read udp {endpoints}: read: {}", go_errno_text(&err)))
        }
    }
}

async fn connect(address: &str) -> std::io::Result<UdpSocket> {
    let peer = tokio::net::lookup_host(address)
        .await?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such host"))?;
    let local = if peer.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(peer).await?;
    Ok(socket)
}

/// Go prints errno text without Rust's " (os error N)" suffix.
fn go_errno_text(err: &std::io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error") {
        Some(cut) => text[..cut].to_lowercase(),
        None => text,
    }
}
