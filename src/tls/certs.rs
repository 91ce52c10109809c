//! Certificates for the server port, made as `consul tls ca create` and `consul tls cert
//! create` make them: an ECDSA P-256 CA, and server, client and CLI certificates it signs with
//! Consul's names (`server.<datacenter>.<domain>` and so on), so that the files and the
//! `verify_server_hostname` check work as an operator used to Consul expects.

use std::net::IpAddr;

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, NameConstraints, SanType};

use super::TlsError;

/// Consul's defaults: a CA lives five years, a certificate one.
pub const CA_DAYS_DEFAULT: u32 = 1825;
pub const CERT_DAYS_DEFAULT: u32 = 365;
/// Longest validity either may be given (Consul has no limit; 100 years keeps the date valid).
pub const DAYS_MAX: u32 = 36_500;

/// A certificate and its private key, PEM-encoded.
pub struct Pem {
    pub cert: String,
    pub key: String,
}

/// What `tls ca create` makes.
pub struct CaRequest {
    pub domain: String,
    pub days: u32,
    pub common_name: Option<String>,
    /// Limit the CA to `domain`, `localhost` and `additional_domains` (Consul's
    /// `-name-constraint`).
    pub name_constraint: bool,
    pub additional_domains: Vec<String>,
}

/// Which certificate `tls cert create` makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertKind {
    Server,
    Client,
    Cli,
}

impl CertKind {
    pub fn label(self) -> &'static str {
        match self {
            CertKind::Server => "server",
            CertKind::Client => "client",
            CertKind::Cli => "cli",
        }
    }
}

/// What `tls cert create` makes.
pub struct CertRequest {
    pub kind: CertKind,
    pub datacenter: String,
    pub domain: String,
    pub days: u32,
    pub additional_dns_names: Vec<String>,
    pub additional_ips: Vec<IpAddr>,
}

fn rcgen_error(error: rcgen::Error) -> TlsError {
    TlsError::Config(error.to_string())
}

fn validity(params: &mut CertificateParams, days: u32) -> Result<(), TlsError> {
    if days == 0 || days > DAYS_MAX {
        return Err(TlsError::Config(format!("-days must be between 1 and {DAYS_MAX}")));
    }
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(1);
    params.not_after = now + time::Duration::days(i64::from(days));
    Ok(())
}

/// A new CA (`<domain>-agent-ca.pem` and its key).
pub fn create_ca(request: &CaRequest) -> Result<Pem, TlsError> {
    let mut params = CertificateParams::default();
    let serial: u64 = rand::random();
    let name = request.common_name.clone().unwrap_or_else(|| format!("Consul Agent CA {serial}"));
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    if request.name_constraint {
        let domain = request.domain.trim_end_matches('.').to_string();
        let permitted = [domain, "localhost".to_string()].into_iter().chain(request.additional_domains.iter().cloned());
        params.name_constraints = Some(NameConstraints { permitted_subtrees: permitted.map(rcgen::GeneralSubtree::DnsName).collect(), excluded_subtrees: Vec::new() });
    }
    validity(&mut params, request.days)?;
    let key = KeyPair::generate().map_err(rcgen_error)?;
    let cert = params.self_signed(&key).map_err(rcgen_error)?;
    Ok(Pem { cert: cert.pem(), key: key.serialize_pem() })
}

/// A certificate signed by the CA in `ca_cert`/`ca_key` (PEM).
pub fn create_cert(request: &CertRequest, ca_cert: &str, ca_key: &str) -> Result<Pem, TlsError> {
    let domain = request.domain.trim_end_matches('.');
    let own_name = format!("{}.{}.{domain}", request.kind.label(), request.datacenter);
    let mut names = vec![own_name.clone(), "localhost".to_string()];
    names.extend(request.additional_dns_names.iter().cloned());
    let mut params = CertificateParams::new(names).map_err(rcgen_error)?;
    params.distinguished_name.push(DnType::CommonName, own_name);
    if request.kind != CertKind::Cli {
        params.subject_alt_names.push(SanType::IpAddress(IpAddr::from([127, 0, 0, 1])));
    }
    params.subject_alt_names.extend(request.additional_ips.iter().map(|ip| SanType::IpAddress(*ip)));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = match request.kind {
        CertKind::Cli => vec![ExtendedKeyUsagePurpose::ClientAuth],
        _ => vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
    };
    validity(&mut params, request.days)?;
    let ca_key = KeyPair::from_pem(ca_key).map_err(|e| TlsError::Config(format!("the CA key: {e}")))?;
    let issuer = Issuer::from_ca_cert_pem(ca_cert, ca_key).map_err(|e| TlsError::Config(format!("the CA certificate: {e}")))?;
    let key = KeyPair::generate().map_err(rcgen_error)?;
    let cert = params.signed_by(&key, &issuer).map_err(rcgen_error)?;
    Ok(Pem { cert: cert.pem(), key: key.serialize_pem() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tls::{TlsSettings, TlsMinVersion};
    use crate::tls::{CertRole, AgentTls};

    fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// A CA and server/client certificates made here load into the server port's TLS, and a
    /// server certificate is told from a client's by its name.
    #[test]
    fn made_certificates_load_and_carry_their_role() {
        let dir = tempfile::tempdir().unwrap();
        let ca = create_ca(&CaRequest { domain: "consul".into(), days: 30, common_name: None, name_constraint: true, additional_domains: Vec::new() }).unwrap();
        let request = |kind| CertRequest { kind, datacenter: "dc1".into(), domain: "consul".into(), days: 30, additional_dns_names: Vec::new(), additional_ips: Vec::new() };
        let server = create_cert(&request(CertKind::Server), &ca.cert, &ca.key).unwrap();
        let client = create_cert(&request(CertKind::Client), &ca.cert, &ca.key).unwrap();
        let options = TlsSettings {
            ca_file: Some(write(dir.path(), "ca.pem", &ca.cert)),
            ca_path: None,
            cert_file: Some(write(dir.path(), "s.pem", &server.cert)),
            key_file: Some(write(dir.path(), "s-key.pem", &server.key)),
            verify_incoming: true,
            verify_outgoing: true,
            verify_server_hostname: true,
            min_version: TlsMinVersion::Tls12,
        };
        let tls = AgentTls::load(&options, "server.dc1.consul").unwrap();
        assert!(tls.acceptor().is_some() && tls.client_config().is_some());
        let der = |pem: &str| rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        use rustls::pki_types::pem::PemObject;
        assert_eq!(tls.role_of(Some(&[der(&server.cert)])), Some(CertRole::Server));
        assert_eq!(tls.role_of(Some(&[der(&client.cert)])), Some(CertRole::Agent));
        assert_eq!(tls.role_of(None), None);
        assert!(create_cert(&request(CertKind::Server), &ca.cert, "not a key").is_err());
        let bad_days = CaRequest { domain: "consul".into(), days: 0, common_name: None, name_constraint: false, additional_domains: Vec::new() };
        assert!(create_ca(&bad_days).is_err());
    }
}
