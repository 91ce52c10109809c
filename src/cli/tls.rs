//! `cairn tls ca create` and `cairn tls cert create`: a CA and the certificates it signs for
//! the server port's TLS, with Consul's flags, file names and messages, written to the
//! current directory (`tls::certs` makes them).

use std::net::IpAddr;
use std::path::Path;

use clap::Parser;

use crate::cli::{Fail, Io, fail, parse};
use crate::tls::certs::{CA_DAYS_DEFAULT, CERT_DAYS_DEFAULT, CaRequest, CertKind, CertRequest, Pem, create_ca, create_cert};

/// Most certificates of one kind `tls cert create` numbers in a directory before giving up.
const CERT_FILES_MAX: usize = 10_000;

/// Creates a new certificate authority.
#[derive(Parser, Debug)]
#[command(name = "cairn tls ca create", disable_version_flag = true)]
pub(super) struct CaArgs {
    /// Days the CA is valid for.
    #[arg(long, default_value_t = CA_DAYS_DEFAULT)]
    days: u32,
    /// Domain of the cluster.
    #[arg(long, default_value = "consul")]
    domain: String,
    /// Common name of the CA (default: "Consul Agent CA" and a serial number).
    #[arg(long = "common-name")]
    common_name: Option<String>,
    /// Limit the CA to the domain, localhost and any -additional-name-constraint.
    #[arg(long = "name-constraint")]
    name_constraint: bool,
    /// Another domain the CA may sign for (repeatable; with -name-constraint).
    #[arg(long = "additional-name-constraint")]
    additional_name_constraint: Vec<String>,
}

/// Creates a new certificate signed by the CA.
#[derive(Parser, Debug)]
#[command(name = "cairn tls cert create", disable_version_flag = true)]
pub(super) struct CertArgs {
    /// A server certificate (server.<dc>.<domain>).
    #[arg(long)]
    server: bool,
    /// A client agent certificate (client.<dc>.<domain>).
    #[arg(long)]
    client: bool,
    /// A certificate for the command line (cli.<dc>.<domain>).
    #[arg(long)]
    cli: bool,
    /// The CA certificate (default: <domain>-agent-ca.pem).
    #[arg(long)]
    ca: Option<String>,
    /// The CA key (default: <domain>-agent-ca-key.pem).
    #[arg(long)]
    key: Option<String>,
    #[arg(long, default_value = "dc1")]
    dc: String,
    #[arg(long, default_value = "consul")]
    domain: String,
    #[arg(long, default_value_t = CERT_DAYS_DEFAULT)]
    days: u32,
    /// Another DNS name in the certificate (repeatable).
    #[arg(long = "additional-dnsname")]
    additional_dnsname: Vec<String>,
    /// Another IP address in the certificate (repeatable).
    #[arg(long = "additional-ipaddress")]
    additional_ipaddress: Vec<IpAddr>,
}

pub(crate) fn ca_create(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: CaArgs = parse("cairn tls ca create", args)?;
    let (cert_file, key_file) = (format!("{}-agent-ca.pem", a.domain), format!("{}-agent-ca-key.pem", a.domain));
    for file in [&cert_file, &key_file] {
        if Path::new(file).exists() {
            return fail(format!("==> {file} already exists."));
        }
    }
    let request = CaRequest { domain: a.domain, days: a.days, common_name: a.common_name, name_constraint: a.name_constraint, additional_domains: a.additional_name_constraint };
    let pem = create_ca(&request).map_err(|e| Fail::Msg(format!("==> Error generating the CA: {e}")))?;
    write_pair(io, &pem, &cert_file, &key_file)
}

pub(crate) fn cert_create(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: CertArgs = parse("cairn tls cert create", args)?;
    let kind = match (a.server, a.client, a.cli) {
        (true, false, false) => CertKind::Server,
        (false, true, false) => CertKind::Client,
        (false, false, true) => CertKind::Cli,
        _ => return fail("Please provide exactly one of -server, -client or -cli"),
    };
    let ca_file = a.ca.unwrap_or_else(|| format!("{}-agent-ca.pem", a.domain));
    let key_file = a.key.unwrap_or_else(|| format!("{}-agent-ca-key.pem", a.domain));
    let read = |file: &str, what: &str| std::fs::read_to_string(file).map_err(|e| Fail::Msg(format!("{what} file {file}: {e}; create one with `cairn tls ca create`")));
    let (ca_cert, ca_key) = (read(&ca_file, "CA")?, read(&key_file, "CA key")?);
    let prefix = format!("{}-{}-{}", a.dc, kind.label(), a.domain);
    let Some(n) = (0..CERT_FILES_MAX).find(|n| !Path::new(&format!("{prefix}-{n}.pem")).exists()) else {
        return fail(format!("==> {CERT_FILES_MAX} certificates named {prefix}-N.pem already exist"));
    };
    let request = CertRequest {
        kind,
        datacenter: a.dc,
        domain: a.domain,
        days: a.days,
        additional_dns_names: a.additional_dnsname,
        additional_ips: a.additional_ipaddress,
    };
    let pem = create_cert(&request, &ca_cert, &ca_key).map_err(|e| Fail::Msg(format!("==> Error generating the certificate: {e}")))?;
    io.line(format!("==> Using {ca_file} and {key_file}"))?;
    write_pair(io, &pem, &format!("{prefix}-{n}.pem"), &format!("{prefix}-{n}-key.pem"))
}

/// Writes a certificate (0644) and its key (0600, created so, never readable by others).
fn write_pair(io: &mut Io<'_>, pem: &Pem, cert_file: &str, key_file: &str) -> Result<(), Fail> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let write = |file: &str, text: &str, mode: u32| -> Result<(), Fail> {
        let opened = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(file);
        opened.and_then(|mut f| f.write_all(text.as_bytes())).map_err(|e| Fail::Msg(format!("==> Error writing {file}: {e}")))
    };
    write(cert_file, &pem.cert, 0o644)?;
    io.line(format!("==> Saved {cert_file}"))?;
    write(key_file, &pem.key, 0o600)?;
    io.line(format!("==> Saved {key_file}"))
}
