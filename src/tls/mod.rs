//! TLS for the server port (Consul's `tls.internal_rpc`): the rustls configurations built from
//! the agent's certificate files, and what a peer's verified certificate says it is.
//!
//! - **Incoming** ([`AgentTls::acceptor`]): the server presents its certificate; a client
//!   certificate is verified against the CA when one is offered, and required with
//!   `verify_incoming`. What a verified certificate stands for is [`CertRole`]: a server's
//!   when it is valid for `server.<datacenter>.<domain>` (or for any certificate the CA signed
//!   when `verify_server_hostname` is off, as Consul trusts any such certificate).
//! - **Outgoing** ([`AgentTls::client_config`]): with `verify_outgoing`, every connection to a
//!   server is TLS; the server's certificate must chain to the CA, and with
//!   `verify_server_hostname` be valid for `server.<datacenter>.<domain>`, whatever address was
//!   dialled (Consul's rule; servers are dialled by IP). This agent's own certificate goes
//!   along as the client certificate.
//!
//! The settings are `config::tls`'s. Nothing here does network IO. Files are read at start
//! and again on every reload (SIGHUP, `cairn reload`), as Consul does: [`AgentTls::replace`]
//! swaps in what a reload read, so renewed certificates and CAs take effect without a restart.
//! New handshakes use them; connections already open keep theirs.

pub mod certs;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

use crate::config::tls::{TlsSettings, TlsMinVersion};

/// Most CA certificates read from `ca_file` and `ca_path` together.
const CA_CERTIFICATES_MAX: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("tls: {0}")]
    Config(String),
}

/// What a peer's verified certificate stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertRole {
    /// A server of this datacenter.
    Server,
    /// Any other certificate the CA signed (a client agent's, the CLI's).
    Agent,
}

/// The name a server's certificate carries: `server.<datacenter>.<domain>`.
pub fn server_name(datacenter: &str, domain: &str) -> String {
    format!("server.{datacenter}.{}", domain.trim_end_matches('.'))
}

/// A port's TLS: what was last loaded from the certificate files, replaced on reload.
pub struct AgentTls {
    loaded: RwLock<Arc<Loaded>>,
    /// Counts replacements, so users that derive state from it (`rpc::client`'s HTTP client)
    /// know when to derive it again.
    generation: AtomicU64,
}

/// The rustls configurations built from one reading of the files.
struct Loaded {
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    client_config: Option<Arc<ClientConfig>>,
    verify_incoming: bool,
    verify_server_hostname: bool,
    server_name: ServerName<'static>,
}

impl AgentTls {
    /// Reads the files `options` name. `server_name` is [`server_name`]'s.
    pub fn load(options: &TlsSettings, server_name: &str) -> Result<AgentTls, TlsError> {
        Ok(AgentTls { loaded: RwLock::new(Arc::new(Loaded::read(options, server_name)?)), generation: AtomicU64::new(0) })
    }

    /// Takes over what `reloaded` read (a reload that read every file without error).
    pub fn replace(&self, reloaded: AgentTls) {
        let fresh = reloaded.current();
        *self.loaded.write().unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    /// How many times [`AgentTls::replace`] ran.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    fn current(&self) -> Arc<Loaded> {
        self.loaded.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Accepts TLS on the port (`None` when this agent has no certificate).
    pub fn acceptor(&self) -> Option<tokio_rustls::TlsAcceptor> {
        self.current().acceptor.clone()
    }

    /// True when a plaintext connection to the server port must be refused.
    pub fn verify_incoming(&self) -> bool {
        self.current().verify_incoming
    }

    /// The client configuration for connections to servers (`None`: plaintext).
    pub fn client_config(&self) -> Option<Arc<ClientConfig>> {
        self.current().client_config.clone()
    }

    /// The name servers are dialled as (their certificate's name).
    pub fn server_name(&self) -> ServerName<'static> {
        self.current().server_name.clone()
    }

    /// What the certificate a peer presented (already verified against the CA by the
    /// handshake) stands for; `None` when it presented none.
    pub fn role_of(&self, presented: Option<&[CertificateDer<'_>]>) -> Option<CertRole> {
        let loaded = self.current();
        let end_entity = presented?.first()?;
        if !loaded.verify_server_hostname {
            return Some(CertRole::Server);
        }
        let is_server = ParsedCertificate::try_from(end_entity).is_ok_and(|cert| rustls::client::verify_server_name(&cert, &loaded.server_name).is_ok());
        Some(if is_server { CertRole::Server } else { CertRole::Agent })
    }
}

impl Loaded {
    fn read(options: &TlsSettings, server_name: &str) -> Result<Loaded, TlsError> {
        let provider = provider();
        let versions: &[&rustls::SupportedProtocolVersion] = if options.min_version == TlsMinVersion::Tls13 { &[&rustls::version::TLS13] } else { rustls::DEFAULT_VERSIONS };
        let server_name = ServerName::try_from(server_name.to_string()).map_err(|e| TlsError::Config(format!("{server_name}: {e}")))?;
        let roots = read_roots(options.ca_file.as_deref(), options.ca_path.as_deref())?;
        let identity = match (&options.cert_file, &options.key_file) {
            (Some(cert), Some(key)) => Some((read_chain(cert)?, read_key(key)?)),
            _ => None,
        };
        let acceptor = match &identity {
            Some((chain, key)) => {
                let builder = ServerConfig::builder_with_provider(provider.clone()).with_protocol_versions(versions).map_err(config_error)?;
                let builder = match &roots {
                    Some(roots) => {
                        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots.clone()), provider.clone());
                        let verifier = if options.verify_incoming { verifier } else { verifier.allow_unauthenticated() };
                        builder.with_client_cert_verifier(verifier.build().map_err(config_error)?)
                    }
                    None => builder.with_no_client_auth(),
                };
                let config = builder.with_single_cert(chain.clone(), key.clone_key()).map_err(config_error)?;
                Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
            }
            None => None,
        };
        let client_config = match (options.verify_outgoing, &roots) {
            (true, Some(roots)) => {
                let verifier = CaVerifier {
                    roots: roots.clone(),
                    name: options.verify_server_hostname.then(|| server_name.clone()),
                    provider: provider.clone(),
                };
                let builder = ClientConfig::builder_with_provider(provider.clone()).with_protocol_versions(versions).map_err(config_error)?;
                let builder = builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier));
                let config = match &identity {
                    Some((chain, key)) => builder.with_client_auth_cert(chain.clone(), key.clone_key()).map_err(config_error)?,
                    None => builder.with_no_client_auth(),
                };
                Some(Arc::new(config))
            }
            (true, None) => return Err(TlsError::Config("verify_outgoing needs ca_file or ca_path".into())),
            (false, _) => None,
        };
        if options.verify_incoming && acceptor.is_none() {
            return Err(TlsError::Config("verify_incoming needs cert_file and key_file".into()));
        }
        Ok(Loaded { acceptor, client_config, verify_incoming: options.verify_incoming, verify_server_hostname: options.verify_server_hostname, server_name })
    }
}

/// The crypto provider: the process default if one is installed, else aws-lc-rs (the one
/// reqwest and the check runners already use).
fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default().cloned().unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
}

fn config_error(error: impl std::fmt::Display) -> TlsError {
    TlsError::Config(error.to_string())
}

fn file_error(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::File { path: path.to_path_buf(), reason: reason.to_string() }
}

/// The CA certificates of `ca_file` and every `.pem`/`.crt` file in `ca_path`.
fn read_roots(ca_file: Option<&Path>, ca_path: Option<&Path>) -> Result<Option<RootCertStore>, TlsError> {
    let mut files: Vec<PathBuf> = ca_file.map(Path::to_path_buf).into_iter().collect();
    if let Some(dir) = ca_path {
        let entries = std::fs::read_dir(dir).map_err(|e| file_error(dir, e))?;
        let mut found: Vec<PathBuf> = entries.filter_map(Result::ok).map(|entry| entry.path()).filter(|p| p.extension().is_some_and(|x| x == "pem" || x == "crt")).collect();
        found.sort();
        files.extend(found);
    }
    if files.is_empty() {
        return Ok(None);
    }
    let mut roots = RootCertStore::empty();
    for file in files {
        for cert in read_chain(&file)? {
            if roots.len() >= CA_CERTIFICATES_MAX {
                return Err(file_error(&file, format!("more than {CA_CERTIFICATES_MAX} CA certificates")));
            }
            roots.add(cert).map_err(|e| file_error(&file, e))?;
        }
    }
    Ok(Some(roots))
}

/// Every certificate in a PEM file (at least one).
fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path).map_err(|e| file_error(path, e))?;
    let certs: Vec<CertificateDer<'static>> = certs.collect::<Result<_, _>>().map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(file_error(path, "no PEM certificate in the file"));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_error(path, format!("no usable PEM private key: {e}")))
}

/// Verifies a server's certificate against the CA, and its name only when `name` is set:
/// the address dialled is never what is checked (see the module docs).
#[derive(Debug)]
struct CaVerifier {
    roots: RootCertStore,
    name: Option<ServerName<'static>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for CaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _dialled: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        let algorithms = self.provider.signature_verification_algorithms.all;
        rustls::client::verify_server_cert_signed_by_trust_anchor(&cert, &self.roots, intermediates, now, algorithms)?;
        if let Some(name) = &self.name {
            rustls::client::verify_server_name(&cert, name)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
