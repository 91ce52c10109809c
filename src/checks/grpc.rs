//! gRPC checks: the standard `grpc.health.v1.Health/Check` call (tonic's client with
//! tonic-health's generated stubs). `SERVING` is passing; any other answer or a failed call
//! is critical. Outputs are Consul's: `gRPC check <target>: success`, `gRPC <target> serving
//! status: NOT_SERVING`, and Go's `rpc error: code = <Code> desc = <message>` for a failed
//! call. The target is Consul's `host:port[/service]`; the service after the first `/` is
//! sent in the request (empty: the server's overall health). The timeout bounds the whole
//! exchange, connecting included; the connection is closed after each run.

use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tonic::transport::{Endpoint, Uri};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::CheckStatus;
use super::runner::error_chain;
use super::tls::{self, TlsOptions};

/// One gRPC check's configuration.
pub(super) struct GrpcProbe {
    /// `host:port[/service]`, as registered (and quoted in the output).
    pub(super) target: String,
    /// `None`: plaintext (HTTP/2 with prior knowledge), as Consul without `GRPCUseTLS`.
    pub(super) tls: Option<TlsOptions>,
    pub(super) timeout: Duration,
}

impl GrpcProbe {
    pub(super) async fn run(&self) -> (CheckStatus, String) {
        let (server, service) = split_target(&self.target);
        match tokio::time::timeout(self.timeout, self.call(server, service)).await {
            Ok(Ok(ServingStatus::Serving)) => (CheckStatus::Passing, format!("gRPC check {}: success", self.target)),
            Ok(Ok(status)) => (CheckStatus::Critical, format!("gRPC {} serving status: {}", self.target, status.as_str_name())),
            Ok(Err(text)) => {
                tracing::warn!(target = %self.target, error = %text, "gRPC check failed");
                (CheckStatus::Critical, text)
            }
            Err(_elapsed) => (CheckStatus::Critical, "rpc error: code = DeadlineExceeded desc = context deadline exceeded".to_owned()),
        }
    }

    async fn call(&self, server: &str, service: &str) -> Result<ServingStatus, String> {
        let endpoint = Endpoint::from_shared(format!("http://{server}"))
            .map_err(|err| format!("invalid gRPC address {server:?}: {err}"))?
            .connect_timeout(self.timeout)
            .timeout(self.timeout);
        let channel = match &self.tls {
            None => endpoint.connect().await.map_err(|err| rpc_error_text(&tonic::Status::unavailable(error_chain(&err))))?,
            Some(options) => {
                let options = options.clone();
                let address = server.to_owned();
                let connector = tower::service_fn(move |_uri: Uri| {
                    let options = options.clone();
                    let address = address.clone();
                    async move {
                        let tcp = TcpStream::connect(&address).await?;
                        let stream = tls::connect(tcp, &address, &options).await.map_err(std::io::Error::other)?;
                        Ok::<_, std::io::Error>(TokioIo::new(stream))
                    }
                });
                endpoint.connect_with_connector(connector).await.map_err(|err| rpc_error_text(&tonic::Status::unavailable(error_chain(&err))))?
            }
        };
        let request = HealthCheckRequest { service: service.to_owned() };
        let response = HealthClient::new(channel).check(request).await.map_err(|status| rpc_error_text(&status))?;
        Ok(ServingStatus::try_from(response.into_inner().status).unwrap_or(ServingStatus::Unknown))
    }
}

/// Consul's split of `host:port[/service]` at the first `/`.
pub(super) fn split_target(target: &str) -> (&str, &str) {
    target.split_once('/').unwrap_or((target, ""))
}

/// Go's `status.Error` text, which is what Consul puts in the output.
fn rpc_error_text(status: &tonic::Status) -> String {
    format!("rpc error: code = {:?} desc = {}", status.code(), status.message())
}

