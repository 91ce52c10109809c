//! The HTTP API's accept loop: HTTP/1.1 connections served by hyper, each bounded.
//!
//! We serve connections ourselves rather than through `axum::serve` for two reasons, both
//! about blocking queries, which park one connection each for up to `max_query_time`:
//! - **Memory.** `axum::serve` wraps every connection in hyper-util's HTTP/1-or-2 detector; an
//!   idle connection cost about 62 KiB of RSS (`cairn-bench --watchers`, see BENCHMARKS.md).
//!   A plain HTTP/1 connection with a small read buffer costs a few KiB. Consul's HTTP API is
//!   HTTP/1.1 (HTTP/2 only over TLS, which cairn does not serve yet).
//! - **Limits.** `limits.http_max_conns_per_client` (Consul's default 200) caps the open
//!   connections from one client IP; the next one gets `429 Too Many Requests` and is closed.
//!   A request's headers must arrive within `HTTP_HEADER_READ_TIMEOUT_MS`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::ServiceExt;

/// How long a client may take to send a request's headers.
const HTTP_HEADER_READ_TIMEOUT_MS: u64 = 30_000;
/// hyper's largest read buffer per connection (requests are small; bodies stream).
const HTTP_READ_BUFFER_BYTES_MAX: usize = 64 * 1024;
/// Pause after an accept error (such as running out of file descriptors) before retrying.
const ACCEPT_ERROR_BACKOFF_MS: u64 = 100;

/// Open connections per client IP.
#[derive(Default)]
struct ConnectionCounts {
    by_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// One counted connection; uncounted when dropped.
struct Counted {
    counts: Arc<ConnectionCounts>,
    ip: IpAddr,
}

impl ConnectionCounts {
    fn admit(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<Counted> {
        let mut by_ip = self.by_ip.lock().expect("connection counts lock poisoned");
        let open = by_ip.entry(ip).or_insert(0);
        if *open >= max {
            return None;
        }
        *open += 1;
        Some(Counted { counts: self.clone(), ip })
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut by_ip = self.counts.by_ip.lock().expect("connection counts lock poisoned");
        if let Some(open) = by_ip.get_mut(&self.ip) {
            *open -= 1;
            if *open == 0 {
                by_ip.remove(&self.ip);
            }
        }
    }
}

/// Serves one connection of another protocol.
pub type ConnectionHandler = Arc<dyn Fn(TcpStream) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send + Sync>;

/// Another protocol sharing the port: a connection whose first byte is `magic` (never the first
/// byte of an HTTP request) goes to `serve` instead of hyper. The server port uses it for Raft
/// frames (`rpc::frames`).
#[derive(Clone)]
pub struct SharedPort {
    pub magic: u8,
    pub serve: ConnectionHandler,
}

/// Serves `router` on `listener` until `shutdown` turns true; then open connections finish
/// their current request (parked blocking queries are woken by the agent's own shutdown).
pub async fn serve(listener: TcpListener, router: Router, conns_per_client_max: usize, shutdown: watch::Receiver<bool>) {
    serve_shared(listener, router, conns_per_client_max, shutdown, None).await
}

/// [`serve`], with connections that start with `shared.magic` handed to `shared.serve`.
pub async fn serve_shared(listener: TcpListener, router: Router, conns_per_client_max: usize, mut shutdown: watch::Receiver<bool>, shared: Option<SharedPort>) {
    let counts = Arc::new(ConnectionCounts::default());
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_BACKOFF_MS)).await;
                    continue;
                }
            },
            _ = stopped(&mut shutdown) => return,
        };
        let Some(counted) = counts.admit(peer.ip(), conns_per_client_max) else {
            tokio::spawn(refuse(stream, peer, conns_per_client_max));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (router, shutdown, shared) = (router.clone(), shutdown.clone(), shared.clone());
        tokio::spawn(async move {
            if let Some(shared) = shared {
                match first_byte(&stream).await {
                    Some(byte) if byte == shared.magic => return (shared.serve)(stream).await,
                    Some(_) => {}
                    // Closed, failed or silent before its first byte: nothing to serve.
                    None => return,
                }
            }
            serve_connection(stream, router, counted, shutdown).await;
        });
    }
}

/// The connection's first byte, left unread, once it arrives within the header timeout.
async fn first_byte(stream: &TcpStream) -> Option<u8> {
    let mut first = [0u8; 1];
    let peeked = tokio::time::timeout(Duration::from_millis(HTTP_HEADER_READ_TIMEOUT_MS), stream.peek(&mut first)).await;
    matches!(peeked, Ok(Ok(1))).then_some(first[0])
}

async fn serve_connection(stream: TcpStream, router: Router, counted: Counted, mut shutdown: watch::Receiver<bool>) {
    let service = TowerToHyperService::new(router.map_request(|request: axum::http::Request<hyper::body::Incoming>| request.map(axum::body::Body::new)));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(HTTP_HEADER_READ_TIMEOUT_MS))
        .max_buf_size(HTTP_READ_BUFFER_BYTES_MAX);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = stopped(&mut shutdown) => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
    drop(counted);
}

/// Resolves once `shutdown` is true.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Answers a connection over the per-client limit with 429 and closes it.
async fn refuse(mut stream: TcpStream, peer: SocketAddr, max: usize) {
    tracing::debug!(%peer, "refusing a connection over limits.http_max_conns_per_client ({max})");
    let body = format!("Your IP is issuing too many concurrent connections, please rate limit your calls (limit {max})\n");
    let answer = format!("HTTP/1.1 429 Too Many Requests\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(answer.as_bytes())).await;
}
