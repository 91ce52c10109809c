//! Record builders shared by every answer: address and TXT records, and how a catalog address
//! (an IP or a host name) is read.
//!
//! Pure: values in, records out.

use std::collections::BTreeMap;
use std::net::IpAddr;

use hickory_server::proto::rr::rdata::{A, AAAA, CNAME, TXT};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};

/// Most TXT records built from one node's metadata.
pub(crate) const META_TXT_RECORDS_MAX: usize = 64;

/// Longest character-string inside a TXT record, in bytes (RFC 1035 section 3.3).
const TXT_STRING_BYTES_MAX: usize = 255;

/// A catalog address as DNS reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Address {
    /// No address at all (`""`).
    Empty,
    /// An IP address (`::ffff:a.b.c.d` read as IPv4, like Go's `To4` in Consul).
    Ip(IpAddr),
    /// A host name: Consul answers it with a CNAME (or as the SRV target).
    Host(Name),
    /// Neither an IP nor a valid DNS name: nothing can be answered for it.
    Unusable,
}

impl Address {
    /// Reads `text`: an IP, else a fully qualified host name, else unusable.
    pub(crate) fn parse(text: &str) -> Address {
        let text = text.trim();
        if text.is_empty() {
            return Address::Empty;
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Address::Ip(ip.to_canonical());
        }
        let host_name_bytes = |byte: u8| byte.is_ascii_alphanumeric() || b"-_.".contains(&byte);
        if !text.bytes().all(host_name_bytes) {
            return Address::Unusable;
        }
        match Name::from_ascii(text) {
            Ok(mut name) if !name.is_root() => {
                name.set_fqdn(true);
                Address::Host(name)
            }
            _ => Address::Unusable,
        }
    }

    pub(crate) fn ip(&self) -> Option<IpAddr> {
        match self {
            Address::Ip(ip) => Some(*ip),
            _ => None,
        }
    }
}

/// An A or AAAA record for `ip`.
pub(crate) fn address_record(name: Name, ttl: u32, ip: IpAddr) -> Record {
    let data = match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Record::from_rdata(name, ttl, data)
}

/// `name CNAME target`.
pub(crate) fn cname_record(name: Name, ttl: u32, target: Name) -> Record {
    Record::from_rdata(name, ttl, RData::CNAME(CNAME(target)))
}

/// A answers carry IPv4, AAAA answers IPv6; ANY, TXT and SRV take either; CNAME neither.
pub(crate) fn family_wanted(record_type: RecordType, ip: IpAddr) -> bool {
    match record_type {
        RecordType::A => ip.is_ipv4(),
        RecordType::AAAA => ip.is_ipv6(),
        RecordType::CNAME => false,
        _ => true,
    }
}

/// Consul's `enable_additional_node_meta_txt` encoding: one TXT record per metadata entry,
/// `key=value` escaped as in RFC 1464, or the bare value for keys starting with `rfc1035-`.
pub(crate) fn meta_txt_records(
    owner: &Name,
    ttl: u32,
    meta: &BTreeMap<String, String>,
) -> Vec<Record> {
    meta.iter()
        .take(META_TXT_RECORDS_MAX)
        .map(|(key, value)| {
            let text = if key.to_ascii_lowercase().starts_with("rfc1035-") {
                value.clone()
            } else {
                rfc1464_pair(key, value)
            };
            let mut strings: Vec<&[u8]> = text.as_bytes().chunks(TXT_STRING_BYTES_MAX).collect();
            if strings.is_empty() {
                // A TXT record holds at least one (possibly empty) character-string.
                strings.push(&[]);
            }
            Record::from_rdata(owner.clone(), ttl, RData::TXT(TXT::from_bytes(strings)))
        })
        .collect()
}

/// `key=value` with RFC 1464 quoting: a backquote escapes `` ` ``, `=` and the spaces at either
/// end of the key; only backquotes are escaped in the value.
fn rfc1464_pair(key: &str, value: &str) -> String {
    let leading = key.len() - key.trim_start_matches(' ').len();
    let rest = &key[leading..];
    let core = rest.trim_end_matches(' ');
    let trailing = rest.len() - core.len();
    let core = core.replace('`', "``").replace('=', "`=");
    format!(
        "{}{core}{}={}",
        "` ".repeat(leading),
        "` ".repeat(trailing),
        value.replace('`', "``")
    )
}

/// Consul's check for server names usable in NS records: letters, digits and `-` only.
pub(crate) fn is_plain_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
}
