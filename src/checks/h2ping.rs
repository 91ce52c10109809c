//! H2PING checks: open an HTTP/2 connection (TLS with ALPN `h2` unless `H2PingUseTLS` is
//! false, then prior knowledge over plain TCP) and send one PING frame; the PONG makes the
//! check passing. Outputs are Consul's (`HTTP2 ping was successful`, `HTTP2 ping failed: ..`,
//! `Failed to dial to <addr>: ..`, `Failed to create client connection ..`). The timeout
//! bounds the whole run.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::CheckStatus;
use super::tls::{self, TlsOptions};

/// One H2PING check's configuration.
pub(super) struct H2PingProbe {
    /// `host:port`.
    pub(super) address: String,
    /// `None`: plain TCP (`H2PingUseTLS: false`).
    pub(super) tls: Option<TlsOptions>,
    pub(super) timeout: Duration,
}

impl H2PingProbe {
    pub(super) async fn run(&self) -> (CheckStatus, String) {
        match tokio::time::timeout(self.timeout, self.ping()).await {
            Ok(Ok(())) => (CheckStatus::Passing, "HTTP2 ping was successful".to_owned()),
            Ok(Err(text)) => {
                tracing::warn!(address = %self.address, error = %text, "H2PING check failed");
                (CheckStatus::Critical, text)
            }
            Err(_elapsed) => (CheckStatus::Critical, "HTTP2 ping failed: context deadline exceeded".to_owned()),
        }
    }

    async fn ping(&self) -> Result<(), String> {
        let dial_error = |err: String| format!("Failed to dial to {}: {err}", self.address);
        let tcp = TcpStream::connect(&self.address).await.map_err(|err| dial_error(format!("dial tcp {}: {err}", self.address)))?;
        match &self.tls {
            None => ping_over(tcp).await,
            Some(options) => ping_over(tls::connect(tcp, &self.address, options).await.map_err(dial_error)?).await,
        }
    }
}

async fn ping_over<T>(io: T) -> Result<(), String>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (_sender, mut connection) =
        h2::client::handshake(io).await.map_err(|err| format!("Failed to create client connection {err}"))?;
    let mut ping_pong = connection.ping_pong().ok_or_else(|| "HTTP2 ping failed: ping already in use".to_owned())?;
    // The connection future reads frames (the PONG among them); it runs beside the ping and
    // is dropped, closing the connection, when the ping is answered.
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let outcome = ping_pong.ping(h2::Ping::opaque()).await.map(|_pong| ()).map_err(|err| format!("HTTP2 ping failed: {err}"));
    driver.abort();
    outcome
}
