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
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::ServiceExt;

use crate::rpc::{IoStream, TLS_HANDSHAKE_TIMEOUT_MS};
use crate::tls::{CertRole, AgentTls};

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

/// Serves one connection of another protocol: the stream, the caller's address, and what its
/// TLS certificate says it is (if the connection is TLS and it presented one).
pub type ConnectionHandler =
    Arc<dyn Fn(Box<dyn IoStream>, SocketAddr, Option<CertRole>) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send + Sync>;

/// Another protocol sharing the port: a connection whose first byte is `magic` (never the first
/// byte of an HTTP request) goes to `serve` instead of hyper. The server port uses it for Raft
/// frames (`rpc::frames`).
#[derive(Clone)]
pub struct Frames {
    pub magic: u8,
    pub serve: ConnectionHandler,
}

/// What a port serves besides plain HTTP/1. With `tls`, a connection that starts a TLS
/// handshake is served inside TLS (frames or HTTP, sniffed again); a plaintext one is closed
/// when `tls_only` is set (the HTTPS port) or the TLS settings say `verify_incoming` (the
/// server port, as Consul's RPC port does).
#[derive(Clone, Default)]
pub struct PortOptions {
    pub frames: Option<Frames>,
    pub tls: Option<Arc<AgentTls>>,
    pub tls_only: bool,
}

/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Serves `router` on `listener` until `shutdown` turns true; then open connections finish
/// their current request (parked blocking queries are woken by the agent's own shutdown).
pub async fn serve(listener: TcpListener, router: Router, conns_per_client_max: usize, shutdown: watch::Receiver<bool>) {
    serve_shared(listener, router, conns_per_client_max, shutdown, None).await
}

/// [`serve`], with the port's TLS and frames as `options` say.
pub async fn serve_shared(listener: TcpListener, router: Router, conns_per_client_max: usize, mut shutdown: watch::Receiver<bool>, options: Option<PortOptions>) {
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
        let (router, shutdown, options) = (router.clone(), shutdown.clone(), options.clone());
        tokio::spawn(async move {
            match options {
                None => serve_connection(Box::new(stream), peer, None, router, counted, shutdown).await,
                Some(options) => serve_sniffed(stream, peer, options, router, counted, shutdown).await,
            }
        });
    }
}

/// Serves one connection of a port with [`PortOptions`]: TLS or not, frames or HTTP, by the
/// first bytes.
async fn serve_sniffed(stream: TcpStream, peer: SocketAddr, options: PortOptions, router: Router, counted: Counted, shutdown: watch::Receiver<bool>) {
    // Closed, failed or silent before its first byte: nothing to serve.
    let Some(first) = first_byte(&stream).await else { return };
    let tls = options.tls.as_deref();
    if let Some((tls, acceptor)) = tls.and_then(|tls| tls.acceptor().map(|acceptor| (tls, acceptor)))
        && first == TLS_HANDSHAKE_RECORD
    {
        let handshake = tokio::time::timeout(Duration::from_millis(TLS_HANDSHAKE_TIMEOUT_MS), acceptor.accept(stream));
        let mut stream = match handshake.await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => return tracing::debug!(%peer, %error, "TLS handshake failed"),
            Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
        };
        let cert = tls.role_of(stream.get_ref().1.peer_certificates());
        let mut inner = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_millis(HTTP_HEADER_READ_TIMEOUT_MS), stream.read_exact(&mut inner));
        if !matches!(read.await, Ok(Ok(_))) {
            return;
        }
        let stream: Box<dyn IoStream> = Box::new(Prefixed { first: Some(inner[0]), inner: stream });
        return match &options.frames {
            Some(frames) if inner[0] == frames.magic => (frames.serve)(stream, peer, cert).await,
            _ => serve_connection(stream, peer, cert, router, counted, shutdown).await,
        };
    }
    if options.tls_only || tls.is_some_and(AgentTls::verify_incoming) {
        return tracing::debug!(%peer, "refused a plaintext connection on a port that requires TLS");
    }
    match &options.frames {
        Some(frames) if first == frames.magic => (frames.serve)(Box::new(stream), peer, None).await,
        _ => serve_connection(Box::new(stream), peer, None, router, counted, shutdown).await,
    }
}

/// The connection's first byte, left unread, once it arrives within the header timeout.
async fn first_byte(stream: &TcpStream) -> Option<u8> {
    let mut first = [0u8; 1];
    let peeked = tokio::time::timeout(Duration::from_millis(HTTP_HEADER_READ_TIMEOUT_MS), stream.peek(&mut first)).await;
    matches!(peeked, Ok(Ok(1))).then_some(first[0])
}

/// Serves one HTTP/1 connection; every request carries the caller's address as axum's
/// `ConnectInfo` (the server port admits callers by it).
async fn serve_connection(stream: Box<dyn IoStream>, peer: SocketAddr, cert: Option<CertRole>, router: Router, counted: Counted, mut shutdown: watch::Receiver<bool>) {
    let with_peer = move |request: axum::http::Request<hyper::body::Incoming>| {
        let mut request = request.map(axum::body::Body::new);
        request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
        if let Some(cert) = cert {
            request.extensions_mut().insert(cert);
        }
        request
    };
    let service = TowerToHyperService::new(router.map_request(with_peer));
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

/// A stream whose first byte was already read (to sniff the protocol inside TLS): gives it back
/// first.
struct Prefixed<S> {
    first: Option<u8>,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>, buf: &mut ReadBuf<'_>) -> std::task::Poll<std::io::Result<()>> {
        if let Some(first) = self.first.take() {
            buf.put_slice(&[first]);
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>, data: &[u8]) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
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
