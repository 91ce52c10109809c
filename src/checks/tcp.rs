//! TCP checks: passing when a connection to `host:port` opens within the
//! timeout, critical otherwise. The connection is closed straight away;
//! nothing is written. Failure output mimics Go's dial errors
//! (`dial tcp <addr>: ...`), which is what Consul reports.

use std::time::Duration;

use tokio::net::TcpStream;

use super::CheckStatus;

pub(super) async fn run(address: &str, timeout: Duration) -> (CheckStatus, String) {
    // The timeout bounds name resolution too: `connect` resolves the host.
    match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
        Ok(Ok(stream)) => {
            drop(stream);
            (
                CheckStatus::Passing,
                format!("TCP connect {address}: Success"),
            )
        }
        Ok(Err(err)) => {
            tracing::warn!(address, error = %err, "TCP check connection failed");
            (CheckStatus::Critical, format!("dial tcp {address}: {err}"))
        }
        Err(_elapsed) => {
            tracing::warn!(
                address,
                timeout_ms = timeout.as_millis() as u64,
                "TCP check connection timed out"
            );
            (
                CheckStatus::Critical,
                format!("dial tcp {address}: i/o timeout"),
            )
        }
    }
}
