//! The CLI's HTTPS settings, as Consul's client flags and environment name them: `-ca-file`
//! (`CONSUL_CACERT`), `-ca-path` (`CONSUL_CAPATH`), `-client-cert` (`CONSUL_CLIENT_CERT`),
//! `-client-key` (`CONSUL_CLIENT_KEY`), `-tls-server-name` (`CONSUL_TLS_SERVER_NAME`),
//! `CONSUL_HTTP_SSL=true` (https when the address names no scheme) and
//! `CONSUL_HTTP_SSL_VERIFY=false` (do not verify the agent's certificate).

use std::path::{Path, PathBuf};

use super::client::ClientError;

/// Most CA files read from `-ca-path`.
const CA_PATH_FILES_MAX: usize = 1024;

#[derive(clap::Args, Debug, Clone, Default)]
pub(crate) struct TlsFlags {
    /// CA certificate to verify the agent's HTTPS certificate ($CONSUL_CACERT).
    #[arg(long = "ca-file")]
    pub(crate) ca_file: Option<PathBuf>,
    /// Directory of CA certificates ($CONSUL_CAPATH).
    #[arg(long = "ca-path")]
    pub(crate) ca_path: Option<PathBuf>,
    /// Client certificate for an agent with verify_incoming ($CONSUL_CLIENT_CERT).
    #[arg(long = "client-cert")]
    pub(crate) client_cert: Option<PathBuf>,
    /// Its key ($CONSUL_CLIENT_KEY).
    #[arg(long = "client-key")]
    pub(crate) client_key: Option<PathBuf>,
    /// The name the agent's certificate must carry, when it is not the address's host
    /// ($CONSUL_TLS_SERVER_NAME).
    #[arg(long = "tls-server-name")]
    pub(crate) tls_server_name: Option<String>,
}

fn truthy(value: Option<String>) -> Option<bool> {
    value.map(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "t" | "true"))
}

/// `CONSUL_HTTP_SSL=true` turns a default (scheme-less) address into https, as Consul's does.
pub(crate) fn https_by_default(base: String, flag: Option<&str>, env: &dyn Fn(&str) -> Option<String>) -> String {
    let named_scheme = flag.map(str::to_owned).or_else(|| env("CAIRN_HTTP_ADDR")).or_else(|| env("CONSUL_HTTP_ADDR")).is_some_and(|a| a.contains("://"));
    match (truthy(env("CONSUL_HTTP_SSL")), base.strip_prefix("http://")) {
        (Some(true), Some(rest)) if !named_scheme => format!("https://{rest}"),
        _ => base,
    }
}

fn tls_error(path: &Path, reason: impl std::fmt::Display) -> ClientError {
    ClientError::Other(format!("{}: {reason}", path.display()))
}

fn read(path: &Path) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path).map_err(|e| tls_error(path, e))
}

/// Applies the TLS flags (and their environment variables) to the client; returns the base
/// URL to use (its host replaced by `-tls-server-name`, which then resolves to the address).
pub(crate) fn configure(
    mut builder: reqwest::ClientBuilder,
    base: String,
    flags: &TlsFlags,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(reqwest::ClientBuilder, String), ClientError> {
    let path_of = |flag: &Option<PathBuf>, var: &str| flag.clone().or_else(|| env(var).filter(|v| !v.is_empty()).map(PathBuf::from));
    let mut ca_files: Vec<PathBuf> = path_of(&flags.ca_file, "CONSUL_CACERT").into_iter().collect();
    if let Some(dir) = path_of(&flags.ca_path, "CONSUL_CAPATH") {
        let entries = std::fs::read_dir(&dir).map_err(|e| tls_error(&dir, e))?;
        let mut found: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "pem" || x == "crt")).collect();
        found.sort();
        ca_files.extend(found.into_iter().take(CA_PATH_FILES_MAX));
    }
    for file in &ca_files {
        for cert in reqwest::Certificate::from_pem_bundle(&read(file)?).map_err(|e| tls_error(file, e))? {
            builder = builder.add_root_certificate(cert);
        }
    }
    match (path_of(&flags.client_cert, "CONSUL_CLIENT_CERT"), path_of(&flags.client_key, "CONSUL_CLIENT_KEY")) {
        (Some(cert), Some(key)) => {
            let pem = [read(&cert)?, b"\n".to_vec(), read(&key)?].concat();
            builder = builder.identity(reqwest::Identity::from_pem(&pem).map_err(|e| tls_error(&cert, e))?);
        }
        (None, None) => {}
        _ => return Err(ClientError::Other("-client-cert and -client-key must be given together".into())),
    }
    if truthy(env("CONSUL_HTTP_SSL_VERIFY")) == Some(false) {
        builder = builder.tls_danger_accept_invalid_certs(true);
    }
    let Some(name) = flags.tls_server_name.clone().or_else(|| env("CONSUL_TLS_SERVER_NAME").filter(|n| !n.is_empty())) else {
        return Ok((builder, base));
    };
    // Ask for `name` (so the certificate is checked against it) but connect to the address.
    let url = reqwest::Url::parse(&base).map_err(|e| ClientError::Other(e.to_string()))?;
    let addrs = url.socket_addrs(|| Some(if url.scheme() == "https" { 443 } else { 80 })).map_err(|e| ClientError::Other(e.to_string()))?;
    let Some(addr) = addrs.first().copied() else { return Err(ClientError::Other(format!("{base} resolves to no address"))) };
    let mut renamed = url.clone();
    renamed.set_host(Some(&name)).map_err(|e| ClientError::Other(format!("-tls-server-name {name:?}: {e}")))?;
    Ok((builder.resolve(&name, addr), renamed.as_str().trim_end_matches('/').to_string()))
}
