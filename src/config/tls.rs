//! TLS settings: Consul's `tls.defaults`, `tls.internal_rpc` and `tls.https` blocks and the
//! legacy top-level keys (`ca_file`, `verify_incoming`, `verify_incoming_rpc`,
//! `verify_incoming_https`, ...), merged as Consul merges them (the port's block over
//! `defaults` over the legacy keys), into one [`TlsSettings`] for the server port and one for
//! the HTTPS API.
//!
//! Only what cairn honours is accepted: gRPC TLS, cipher suite lists, TLS versions below 1.2
//! (rustls has none) and outgoing verification in the HTTPS block stop the agent with an error
//! naming the key, rather than run without them.

use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;
use super::raw::UnknownKeys;

/// One block of TLS keys (`tls.defaults`, `tls.internal_rpc`, or the legacy top level).
#[derive(Debug, Default, Clone, Deserialize)]
pub(super) struct RawTlsBlock {
    pub(super) ca_file: Option<PathBuf>,
    pub(super) ca_path: Option<PathBuf>,
    pub(super) cert_file: Option<PathBuf>,
    pub(super) key_file: Option<PathBuf>,
    pub(super) verify_incoming: Option<bool>,
    pub(super) verify_outgoing: Option<bool>,
    pub(super) verify_server_hostname: Option<bool>,
    pub(super) tls_min_version: Option<String>,
    pub(super) tls_cipher_suites: Option<String>,
    #[serde(flatten)]
    pub(super) unknown: UnknownKeys,
}

/// The `tls` block.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawTls {
    pub(super) defaults: Option<RawTlsBlock>,
    pub(super) internal_rpc: Option<RawTlsBlock>,
    pub(super) https: Option<RawTlsBlock>,
    pub(super) grpc: Option<serde_json::Value>,
    #[serde(flatten)]
    pub(super) unknown: UnknownKeys,
}

/// The raw keys this file turns into [`TlsSettings`].
pub(super) struct RawTlsKeys {
    pub(super) tls: Option<RawTls>,
    pub(super) legacy: RawTlsBlock,
    pub(super) verify_incoming_rpc: Option<bool>,
    pub(super) verify_incoming_https: Option<bool>,
}

/// The oldest TLS version the server port speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMinVersion {
    Tls12,
    Tls13,
}

/// TLS of one port (the server port's `tls.internal_rpc`, or the API's `tls.https`). Absent
/// when no key was set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub ca_file: Option<PathBuf>,
    pub ca_path: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Every connection to the server port must be TLS with a certificate the CA signed.
    pub verify_incoming: bool,
    /// Every connection this agent makes to a server is TLS, and the server's certificate
    /// must be signed by the CA.
    pub verify_outgoing: bool,
    /// A server's certificate must be valid for `server.<datacenter>.<domain>`; the server
    /// port also requires it of callers of the Raft routes (see `rpc::server`).
    pub verify_server_hostname: bool,
    pub min_version: TlsMinVersion,
}

/// Later blocks win over earlier ones, key by key.
fn merged(blocks: &[Option<&RawTlsBlock>]) -> RawTlsBlock {
    let mut out = RawTlsBlock::default();
    for block in blocks.iter().flatten() {
        let block = (*block).clone();
        out.ca_file = block.ca_file.or(out.ca_file);
        out.ca_path = block.ca_path.or(out.ca_path);
        out.cert_file = block.cert_file.or(out.cert_file);
        out.key_file = block.key_file.or(out.key_file);
        out.verify_incoming = block.verify_incoming.or(out.verify_incoming);
        out.verify_outgoing = block.verify_outgoing.or(out.verify_outgoing);
        out.verify_server_hostname = block.verify_server_hostname.or(out.verify_server_hostname);
        out.tls_min_version = block.tls_min_version.or(out.tls_min_version);
        out.tls_cipher_suites = block.tls_cipher_suites.or(out.tls_cipher_suites);
    }
    out
}

fn unsupported(key: &str) -> ConfigError {
    ConfigError::Invalid(format!("{key} is not supported by cairn yet; refusing to start rather than run without it"))
}

/// The server port's and the HTTPS API's TLS.
pub(super) struct BuiltTls {
    pub(super) rpc: Option<TlsSettings>,
    pub(super) https: Option<TlsSettings>,
}

impl TlsSettings {
    pub(super) fn build(raw: RawTlsKeys, server: bool) -> Result<BuiltTls, ConfigError> {
        let tls = raw.tls.unwrap_or_default();
        if tls.grpc.is_some() {
            return Err(unsupported("gRPC TLS (tls.grpc)"));
        }
        if tls.https.as_ref().is_some_and(|b| b.verify_outgoing.is_some() || b.verify_server_hostname.is_some()) {
            return Err(unsupported("tls.https.verify_outgoing / verify_server_hostname"));
        }
        // The legacy `verify_incoming` covers both ports; `_rpc` and `_https` one each.
        let mut rpc_legacy = raw.legacy.clone();
        rpc_legacy.verify_incoming = raw.verify_incoming_rpc.or(raw.legacy.verify_incoming);
        let mut https_legacy = raw.legacy;
        https_legacy.verify_incoming = raw.verify_incoming_https.or(https_legacy.verify_incoming);
        https_legacy.verify_outgoing = None;
        https_legacy.verify_server_hostname = None;
        let rpc = Self::of_block(merged(&[Some(&rpc_legacy), tls.defaults.as_ref(), tls.internal_rpc.as_ref()]))?;
        if let Some(rpc) = &rpc {
            rpc.validate(server)?;
        }
        let https_defaults = tls.defaults.clone().map(|mut d| {
            (d.verify_outgoing, d.verify_server_hostname) = (None, None);
            d
        });
        let https = Self::of_block(merged(&[Some(&https_legacy), https_defaults.as_ref(), tls.https.as_ref()]))?;
        if let Some(https) = &https {
            https.validate(false)?;
        }
        Ok(BuiltTls { rpc, https })
    }

    /// The settings one merged block stands for; `None` when it sets nothing.
    fn of_block(block: RawTlsBlock) -> Result<Option<TlsSettings>, ConfigError> {
        let any_set = block.ca_file.is_some()
            || block.ca_path.is_some()
            || block.cert_file.is_some()
            || block.key_file.is_some()
            || block.verify_incoming == Some(true)
            || block.verify_outgoing == Some(true)
            || block.verify_server_hostname == Some(true);
        if block.tls_cipher_suites.is_some() {
            return Err(unsupported("tls_cipher_suites (rustls chooses its own safe suites)"));
        }
        let min_version = match block.tls_min_version.as_deref() {
            None | Some("TLSv1_2") | Some("tls12") => TlsMinVersion::Tls12,
            Some("TLSv1_3") | Some("tls13") => TlsMinVersion::Tls13,
            Some(other) => return Err(ConfigError::Invalid(format!("tls_min_version {other:?}: cairn speaks TLSv1_2 and TLSv1_3 only"))),
        };
        if !any_set {
            return Ok(None);
        }
        // Consul: verify_server_hostname "also enables verify_outgoing".
        let verify_server_hostname = block.verify_server_hostname.unwrap_or(false);
        Ok(Some(TlsSettings {
            verify_incoming: block.verify_incoming.unwrap_or(false),
            verify_outgoing: block.verify_outgoing.unwrap_or(false) || verify_server_hostname,
            verify_server_hostname,
            min_version,
            ca_file: block.ca_file,
            ca_path: block.ca_path,
            cert_file: block.cert_file,
            key_file: block.key_file,
        }))
    }

    /// Consul's rules (`tlsutil.Configurator`'s checks), in its words where it has them.
    fn validate(&self, server: bool) -> Result<(), ConfigError> {
        let has_ca = self.ca_file.is_some() || self.ca_path.is_some();
        let has_cert = self.cert_file.is_some() && self.key_file.is_some();
        let rules = [
            (self.cert_file.is_some() != self.key_file.is_some(), "cert_file and key_file must be set together"),
            (self.verify_outgoing && !has_ca, "VerifyOutgoing set and no CA certificate provided!"),
            (self.verify_incoming && !has_ca, "VerifyIncoming set and no CA certificate provided!"),
            (self.verify_incoming && !has_cert, "VerifyIncoming set and no Cert/Key pair provided!"),
            (server && self.verify_outgoing && !has_cert, "a server needs cert_file and key_file to use TLS on the server port"),
        ];
        match rules.iter().find(|(broken, _)| *broken) {
            Some((_, message)) => Err(ConfigError::Invalid(format!("tls: {message}"))),
            None => Ok(()),
        }
    }
}
