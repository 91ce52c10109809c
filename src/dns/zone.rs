//! The zones cairn serves: the validated domain (and alt domain) with the datacenter, the names
//! derived from them, and the per-service TTLs.
//!
//! Pure, like `answer`: built once from [`DnsConfig`] when the server starts, so that a bad
//! domain is found then rather than on every query, and so that the SOA and the
//! `<node>.node.<dc>.<domain>` names handed out in answers cannot fail to build later for any
//! reason but the node name itself.
//!
//! Consul (1.11+) answers a question under `alt_domain` with names under `alt_domain`: node
//! and `addr` targets, SOA and NS all use the domain the question was asked in (its router's
//! "response domain"). PTR answers always use the primary domain. [`Zones::for_name`] picks
//! the zone; each [`Zone`] carries the names of its own domain.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use hickory_server::proto::rr::rdata::SOA;
use hickory_server::proto::rr::{Name, RData, Record};

use super::name::hex_address;
use super::{DnsConfig, DnsError, DnsHealth};

/// SOA timers, Consul's defaults (`dns_config.soa`), in seconds.
const SOA_REFRESH_S: i32 = 3600;
const SOA_RETRY_S: i32 = 600;
const SOA_EXPIRE_S: i32 = 86_400;
/// SOA minimum (the negative-caching TTL) and TTL of the SOA record itself, in seconds. Zero,
/// like Consul, so that a service that appears is found at once.
const SOA_MINIMUM_TTL_S: u32 = 0;

/// The primary zone and, when `alt_domain` is set, the alternative one.
#[derive(Clone, Debug)]
pub(crate) struct Zones {
    pub primary: Zone,
    pub alt: Option<Zone>,
}

impl Zones {
    /// Checks the domains and datacenter of `config` and builds both zones.
    pub(crate) fn new(config: &DnsConfig) -> Result<Zones, DnsError> {
        let primary = Zone::new(config, &config.domain)?;
        let alt = match config.alt_domain.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(alt_domain) => Some(Zone::new(config, alt_domain)?),
        };
        Ok(Zones { primary, alt })
    }

    /// The zone `name` is in: the one whose domain is the longest suffix of `name` (as
    /// Consul's router matches from the full name down), or `None`.
    pub(crate) fn for_name(&self, name: &Name) -> Option<&Zone> {
        let candidates = std::iter::once(&self.primary).chain(self.alt.as_ref());
        candidates
            .filter(|zone| zone.domain.zone_of(name))
            .max_by_key(|zone| zone.domain.num_labels())
    }
}

/// The validated, pre-computed settings of one domain we serve.
#[derive(Clone, Debug)]
pub(crate) struct Zone {
    /// Our domain, lower-case and fully qualified (`consul.`).
    pub domain: Name,
    /// Our datacenter, lower-case.
    pub datacenter: String,
    /// `<datacenter>.<domain>`, the suffix of every node and addr name we hand out.
    datacenter_domain: Name,
    soa_mname: Name,
    soa_rname: Name,
    pub only_passing: bool,
    pub node_ttl_s: u32,
    service_ttls: ServiceTtls,
    /// Most address records in a service answer; 0 = no limit besides
    /// [`super::DNS_ANSWER_RECORDS_MAX`].
    pub a_record_limit: usize,
}

impl Zone {
    /// Checks `domain` and the datacenter of `config` and builds the names derived from them.
    fn new(config: &DnsConfig, domain_text: &str) -> Result<Zone, DnsError> {
        let invalid_domain = |reason: String| DnsError::InvalidDomain {
            domain: domain_text.to_owned(),
            reason,
        };
        let mut domain = Name::from_ascii(domain_text.trim())
            .map_err(|error| invalid_domain(error.to_string()))?
            .to_lowercase();
        domain.set_fqdn(true);
        if domain.is_root() {
            return Err(invalid_domain("the root zone cannot be served".to_owned()));
        }
        let datacenter = config.datacenter.trim().to_ascii_lowercase();
        let invalid_datacenter = |reason: String| DnsError::InvalidDatacenter {
            datacenter: config.datacenter.clone(),
            reason,
        };
        if datacenter.is_empty() || datacenter.contains('.') {
            return Err(invalid_datacenter(
                "must be one non-empty DNS label".to_owned(),
            ));
        }
        let datacenter_domain = prefixed(&[datacenter.as_str()], &domain)
            .ok_or_else(|| invalid_datacenter("does not fit in a DNS name".to_owned()))?;
        let soa_mname = prefixed(&["ns"], &domain)
            .ok_or_else(|| invalid_domain("ns.<domain> is too long".to_owned()))?;
        let soa_rname = prefixed(&["hostmaster"], &domain)
            .ok_or_else(|| invalid_domain("hostmaster.<domain> is too long".to_owned()))?;
        Ok(Zone {
            domain,
            datacenter,
            datacenter_domain,
            soa_mname,
            soa_rname,
            only_passing: config.only_passing,
            node_ttl_s: config.node_ttl_s,
            service_ttls: ServiceTtls::new(&config.service_ttls_s),
            a_record_limit: config.a_record_limit,
        })
    }

    /// Whether a datacenter label from a query names our datacenter (absent = ours).
    pub(crate) fn is_local_datacenter(&self, datacenter: Option<&str>) -> bool {
        datacenter.is_none_or(|dc| dc.eq_ignore_ascii_case(&self.datacenter))
    }

    /// `<node>.node.<dc>.<domain>`; `None` when the node name cannot be a DNS name.
    pub(crate) fn node_name(&self, node: &str) -> Option<Name> {
        let mut labels: Vec<&str> = node.split('.').collect();
        labels.push("node");
        prefixed(&labels, &self.datacenter_domain)
    }

    /// `<service>.service.<dc>.<domain>`, the name Consul gives a service in PTR answers.
    pub(crate) fn service_name(&self, service: &str) -> Option<Name> {
        let mut labels: Vec<&str> = service.split('.').collect();
        labels.push("service");
        prefixed(&labels, &self.datacenter_domain)
    }

    /// `<hex>.addr.<dc>.<domain>`, the SRV target Consul uses for a service's own IP.
    pub(crate) fn addr_name(&self, ip: IpAddr) -> Option<Name> {
        let hex = hex_address(ip);
        prefixed(&[hex.as_str(), "addr"], &self.datacenter_domain)
    }

    /// Keeps an instance only if its health is good enough to be handed out.
    pub(crate) fn admits(&self, health: DnsHealth) -> bool {
        match health {
            DnsHealth::Passing => true,
            DnsHealth::Warning => !self.only_passing,
            DnsHealth::Critical => false,
        }
    }

    /// The TTL of records in an answer about `service` (lower-case), in seconds.
    pub(crate) fn service_ttl_s(&self, service: &str) -> u32 {
        self.service_ttls.for_service(service)
    }
}

/// Consul's `dns_config.service_ttl`: an exact service name wins; otherwise the longest
/// `prefix*` entry that matches (`*` alone matches every service); otherwise 0.
///
/// Consul keeps the exact names in a map and the `prefix*` entries in a radix tree queried for
/// the longest prefix (`GetTTLForService`). When nothing matches, Consul's documentation and
/// its pre-1.19 DNS server give 0; its 1.19+ server falls back to `node_ttl` instead. cairn
/// follows the documented 0. Keys are lower-cased, because DNS questions are: Consul compares
/// the lower-cased question with the keys as written, so a key with capitals never matches
/// there.
#[derive(Clone, Debug, Default)]
struct ServiceTtls {
    exact: HashMap<String, u32>,
    /// `(prefix, ttl)`, longest prefix first.
    prefixes: Vec<(String, u32)>,
}

impl ServiceTtls {
    fn new(entries: &BTreeMap<String, u32>) -> ServiceTtls {
        let mut ttls = ServiceTtls::default();
        for (key, ttl_s) in entries {
            let key = key.to_ascii_lowercase();
            match key.strip_suffix('*') {
                Some(prefix) => ttls.prefixes.push((prefix.to_owned(), *ttl_s)),
                None => {
                    ttls.exact.insert(key, *ttl_s);
                }
            }
        }
        ttls.prefixes
            .sort_by(|(a, _), (b, _)| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        ttls
    }

    fn for_service(&self, service: &str) -> u32 {
        if let Some(ttl_s) = self.exact.get(service) {
            return *ttl_s;
        }
        self.prefixes
            .iter()
            .find(|(prefix, _)| service.starts_with(prefix.as_str()))
            .map_or(0, |(_, ttl_s)| *ttl_s)
    }
}

/// `labels` (raw bytes, no escaping) in front of `base`; `None` if any label is empty or too
/// long, or the result exceeds 255 bytes.
fn prefixed(labels: &[&str], base: &Name) -> Option<Name> {
    Name::from_labels(labels.iter().map(|label| label.as_bytes()))
        .ok()?
        .append_domain(base)
        .ok()
}

/// `<domain> 0 IN SOA ns.<domain> hostmaster.<domain> <serial> 3600 600 86400 0`.
pub(crate) fn soa_record(zone: &Zone, serial: u32) -> Record {
    let soa = SOA::new(
        zone.soa_mname.clone(),
        zone.soa_rname.clone(),
        serial,
        SOA_REFRESH_S,
        SOA_RETRY_S,
        SOA_EXPIRE_S,
        SOA_MINIMUM_TTL_S,
    );
    Record::from_rdata(zone.domain.clone(), SOA_MINIMUM_TTL_S, RData::SOA(soa))
}
