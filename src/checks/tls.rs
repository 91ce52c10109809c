//! TLS for gRPC and H2PING checks: a rustls client that offers ALPN `h2` and either verifies
//! the server against the system's root certificates or, with `TLSSkipVerify`, accepts any
//! certificate (as Go's `InsecureSkipVerify`). `TLSServerName` replaces the host as the name
//! sent (SNI) and verified, as Consul's `tls.Config.ServerName`.

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// How a check connects over TLS.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct TlsOptions {
    pub(super) skip_verify: bool,
    /// Empty: the host of the address.
    pub(super) server_name: String,
}

/// The system roots, loaded once; certificates that do not parse are skipped (and logged).
fn roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let loaded = rustls_native_certs::load_native_certs();
            for error in &loaded.errors {
                tracing::warn!(%error, "cannot load a system root certificate for TLS checks");
            }
            let mut store = RootCertStore::empty();
            let (_, ignored) = store.add_parsable_certificates(loaded.certs);
            if ignored > 0 {
                tracing::warn!(ignored, "system root certificates that did not parse were skipped");
            }
            Arc::new(store)
        })
        .clone()
}

fn client_config(skip_verify: bool) -> Arc<ClientConfig> {
    static VERIFIED: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    static INSECURE: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    let cell = if skip_verify { &INSECURE } else { &VERIFIED };
    cell.get_or_init(|| {
        // The process default if one was installed, else aws-lc-rs (what reqwest uses).
        let provider =
            rustls::crypto::CryptoProvider::get_default().cloned().unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("the crypto provider supports the default protocol versions");
        let mut config = if skip_verify {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate { provider })).with_no_client_auth()
        } else {
            builder.with_root_certificates(roots()).with_no_client_auth()
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        Arc::new(config)
    })
    .clone()
}

/// The host part of `host:port` (brackets of an IPv6 literal removed).
pub(super) fn host_of(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Opens a TLS connection over `tcp` to `address`.
pub(super) async fn connect(tcp: TcpStream, address: &str, options: &TlsOptions) -> Result<TlsStream<TcpStream>, String> {
    let name = if options.server_name.is_empty() { host_of(address) } else { options.server_name.as_str() };
    let server_name = ServerName::try_from(name.to_owned()).map_err(|err| format!("invalid TLS server name {name:?}: {err}"))?;
    TlsConnector::from(client_config(options.skip_verify))
        .connect(server_name, tcp)
        .await
        .map_err(|err| format!("tls: {err}"))
}

/// `TLSSkipVerify`: any certificate is accepted; signatures are still checked so the
/// handshake is a real one.
#[derive(Debug)]
struct AcceptAnyCertificate {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
