//! gRPC, H2PING and UDP checks against real local servers: a tonic-health gRPC server, an
//! h2 server (plain and TLS with a self-signed test certificate), UDP sockets; and tasks
//! supplied through `add_task`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};

use super::super::*;
use super::{closed_port, first_results, scheduler};

/// A self-signed certificate for `check.test` (P-256, valid for a century), test-only.
const TEST_CERT_PEM: &str = "
-----BEGIN CERTIFICATE-----
MIIBmDCCAT6gAwIBAgIUUgf79C2HQRitDmCCxHoYV3pcAzEwCgYIKoZIzj0EAwIw
FTETMBEGA1UEAwwKY2hlY2sudGVzdDAgFw0yNjExMzAxNjU5MTZaGA8yMTI2MTEw
NjE2NTkxNlowFTETMBEGA1UEAwwKY2hlY2sudGVzdDBZMBMGByqGSM49AgEGCCqG
SM49AwEHA0IABMY9j3jmgLugKa2gICvJDUBuWb7ULcsoVWcs+TRH2Um/jtxzs0iS
iv4YZeN6Lm5DwXD+O7bq+NMMmADEsLfrJRKjajBoMB0GA1UdDgQWBBRvqsvXnwlY
QHTZ+bFturPwgNLx2zAfBgNVHSMEGDAWgBRvqsvXnwlYQHTZ+bFturPwgNLx2zAP
BgNVHRMBAf8EBTADAQH/MBUGA1UdEQQOMAyCCmNoZWNrLnRlc3QwCgYIKoZIzj0E
AwIDSAAwRQIhAKJ2aViiToAkGKSc8PSxhr1wfFW8O0GrPvHUAEDtITkcAiBKgqyH
1A6oQoKWz3+DmI+p3nik3N1MCBAk4Bsx4co0mQ==
-----END CERTIFICATE-----
";
const TEST_KEY_PEM: &str = "
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg1lm1/Aye2acVPxBR
KAT2QAeqnExy3sKRHphuBblJe3yhRANCAATGPY945oC7oCmtoCAryQ1Ablm+1C3L
KFVnLPk0R9lJv47cc7NIkor+GGXjei5uQ8Fw/ju26vjTDJgAxLC36yUS
-----END PRIVATE KEY-----
";

const SECOND: Duration = Duration::from_secs(1);

/// A gRPC server with the standard health service: "web" serving, "db" not serving.
async fn grpc_health_server() -> SocketAddr {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter.set_service_status("web", tonic_health::ServingStatus::Serving).await;
    reporter.set_service_status("db", tonic_health::ServingStatus::NotServing).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let incoming = futures::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| stream);
        Some((accepted, listener))
    });
    tokio::spawn(async move {
        // Keep the reporter alive as long as the server.
        let _reporter = reporter;
        tonic::transport::Server::builder().add_service(service).serve_with_incoming(incoming).await.unwrap();
    });
    address
}

fn grpc(target: String) -> CheckKind {
    CheckKind::Grpc { target, use_tls: false, tls_skip_verify: false, tls_server_name: String::new(), interval: SECOND, timeout: SECOND }
}

#[tokio::test]
async fn grpc_health_serving_passes_and_anything_else_fails() {
    let server = grpc_health_server().await;
    let closed = closed_port().await;
    let (sched, mut rx) = scheduler(16, 4096);
    sched.add("web", grpc(format!("{server}/web")));
    sched.add("db", grpc(format!("{server}/db")));
    sched.add("unknown", grpc(format!("{server}/nope")));
    sched.add("closed", grpc(closed.to_string()));
    let results = first_results(&mut rx, &["web", "db", "unknown", "closed"], Duration::from_secs(3)).await;
    let web = &results["web"];
    assert_eq!((web.status, web.output.as_str()), (CheckStatus::Passing, format!("gRPC check {server}/web: success").as_str()));
    let db = &results["db"];
    assert_eq!((db.status, db.output.as_str()), (CheckStatus::Critical, format!("gRPC {server}/db serving status: NOT_SERVING").as_str()));
    let unknown = &results["unknown"];
    assert_eq!(unknown.status, CheckStatus::Critical);
    assert!(unknown.output.starts_with("rpc error: code = NotFound desc = "), "{}", unknown.output);
    let closed = &results["closed"];
    assert_eq!(closed.status, CheckStatus::Critical);
    assert!(closed.output.starts_with("rpc error: code = Unavailable desc = "), "{}", closed.output);
}

/// Serves HTTP/2 on every accepted connection (h2 answers PINGs by itself); with `tls`,
/// behind rustls with the test certificate and ALPN h2.
async fn h2_server(tls: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let acceptor = tls.then(test_tls_acceptor);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                match acceptor {
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            serve_h2(stream).await;
                        }
                    }
                    None => serve_h2(stream).await,
                }
            });
        }
    });
    address
}

async fn serve_h2<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(io: T) {
    let Ok(mut connection) = h2::server::handshake(io).await else { return };
    while let Some(Ok(_request)) = connection.accept().await {}
}

fn test_tls_acceptor() -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = vec![CertificateDer::from_pem_slice(TEST_CERT_PEM.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(TEST_KEY_PEM.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

fn h2ping(address: String, use_tls: bool, tls_skip_verify: bool) -> CheckKind {
    CheckKind::H2Ping { address, use_tls, tls_skip_verify, tls_server_name: String::new(), interval: SECOND, timeout: SECOND }
}

#[tokio::test]
async fn h2ping_passes_on_a_pong_plain_and_over_tls() {
    let plain = h2_server(false).await;
    let tls = h2_server(true).await;
    let (sched, mut rx) = scheduler(16, 4096);
    sched.add("plain", h2ping(plain.to_string(), false, false));
    sched.add("tls", h2ping(tls.to_string(), true, true));
    sched.add("unverified", h2ping(tls.to_string(), true, false));
    sched.add("closed", h2ping(closed_port().await.to_string(), false, false));
    let results = first_results(&mut rx, &["plain", "tls", "unverified", "closed"], Duration::from_secs(3)).await;
    for id in ["plain", "tls"] {
        assert_eq!((results[id].status, results[id].output.as_str()), (CheckStatus::Passing, "HTTP2 ping was successful"), "{id}");
    }
    // The self-signed certificate fails verification without TLSSkipVerify.
    let unverified = &results["unverified"];
    assert_eq!(unverified.status, CheckStatus::Critical);
    assert!(unverified.output.starts_with(&format!("Failed to dial to {tls}: tls: ")), "{}", unverified.output);
    let closed = &results["closed"];
    assert_eq!(closed.status, CheckStatus::Critical);
    assert!(closed.output.starts_with("Failed to dial to "), "{}", closed.output);
}

#[tokio::test]
async fn h2ping_fails_against_a_server_that_does_not_speak_http2() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            use tokio::io::AsyncWriteExt;
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        }
    });
    let (sched, mut rx) = scheduler(16, 4096);
    sched.add("http1", h2ping(address.to_string(), false, false));
    let result = &first_results(&mut rx, &["http1"], Duration::from_secs(3)).await["http1"];
    assert_eq!(result.status, CheckStatus::Critical);
    assert!(
        result.output.starts_with("HTTP2 ping failed") || result.output.starts_with("Failed to create client connection"),
        "{}",
        result.output
    );
}

fn udp(address: String) -> CheckKind {
    CheckKind::Udp { address, interval: SECOND, timeout: Duration::from_millis(300) }
}

#[tokio::test]
async fn udp_reply_or_silence_passes_and_a_refusal_fails() {
    let echo = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let echo_address = echo.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buffer = [0u8; 64];
        while let Ok((n, from)) = echo.recv_from(&mut buffer).await {
            let _ = echo.send_to(&buffer[..n.max(1)], from).await;
        }
    });
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let silent_address = silent.local_addr().unwrap();
    let refused_address = UdpSocket::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let (sched, mut rx) = scheduler(16, 4096);
    sched.add("echo", udp(echo_address.to_string()));
    sched.add("silent", udp(silent_address.to_string()));
    sched.add("refused", udp(refused_address.to_string()));
    let results = first_results(&mut rx, &["echo", "silent", "refused"], Duration::from_secs(3)).await;
    assert_eq!((results["echo"].status, results["echo"].output.clone()), (CheckStatus::Passing, format!("UDP connect {echo_address}: Success")));
    assert_eq!(
        (results["silent"].status, results["silent"].output.clone()),
        (CheckStatus::Passing, format!("UDP connect {silent_address}: Success"))
    );
    let refused = &results["refused"];
    assert_eq!(refused.status, CheckStatus::Critical);
    assert!(refused.output.starts_with("read udp 127.0.0.1:"), "{}", refused.output);
    assert!(refused.output.ends_with(&format!("->{refused_address}: read: connection refused")), "{}", refused.output);
    drop(silent);
}

/// A task supplied by the agent reports through the same channel, and stops like a runner.
#[tokio::test]
async fn added_tasks_report_and_are_fenced_on_remove() {
    let (sched, mut rx) = scheduler(16, 8);
    sched.add_task("alias", |reporter| async move {
        reporter.report(CheckStatus::Warning, "a long output".into());
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    let result = &first_results(&mut rx, &["alias"], SECOND).await["alias"];
    assert_eq!((result.status, result.output.as_str()), (CheckStatus::Warning, "a long o"), "output cut to the limit");
    assert!(sched.is_running("alias"));
    sched.remove("alias");
    assert!(!sched.is_running("alias"));
}

/// Per-check options: the output cap below the agent's, and the status thresholds.
#[tokio::test]
async fn run_options_cap_output_and_hold_back_failures() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let open = listener.local_addr().unwrap();
    let (sched, mut rx) = scheduler(16, 4096);
    let tcp = |address: SocketAddr| CheckKind::Tcp { address: address.to_string(), interval: SECOND, timeout: SECOND };
    sched.add_with("capped", tcp(open), RunOptions { thresholds: Thresholds::default(), output_bytes_max: 3 });
    let result = &first_results(&mut rx, &["capped"], Duration::from_secs(2)).await["capped"];
    assert_eq!(result.output, "TCP");
    // Failures before critical: 2, so the first failure after a pass is held back.
    let thresholds = Thresholds { success_before_passing: 0, failures_before_warning: 0, failures_before_critical: 2 };
    sched.remove("capped");
    sched.add_with("flaky", tcp(open), RunOptions { thresholds, output_bytes_max: 0 });
    let first = &first_results(&mut rx, &["flaky"], Duration::from_secs(2)).await["flaky"];
    assert_eq!(first.status, CheckStatus::Passing);
    drop(listener);
    let started = tokio::time::Instant::now();
    let critical = super::wait_for(&mut rx, "flaky", CheckStatus::Critical, Duration::from_secs(5)).await;
    assert!(critical.output.starts_with("dial tcp"));
    assert!(started.elapsed() >= Duration::from_millis(1500), "one failure is held back: two runs, one interval apart");
}
