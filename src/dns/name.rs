//! Query-name parsing: turns the name of a DNS question into the lookup Consul would do.
//!
//! This module is pure (no I/O, no catalog access) so that the grammar can be tested on its own.
//! It follows the dispatcher of Consul's `agent/dns.go`:
//!
//! - the labels under the domain are searched from the right for the *kind* label (`service`,
//!   `node`, `addr`, ...); the labels left of it are the query parts, those right of it the
//!   locality (an optional datacenter, written `<dc>` or `<dc>.dc`);
//! - `[<tag>.]<service>.service`: every label before the service name is the tag, re-joined
//!   with dots (Consul 0.3 syntax, so a tag may contain dots);
//! - `_<service>._<tag>.service`: RFC 2782 form, `_tcp` meaning "no tag filter";
//! - for SRV questions the `service` label is optional (`_web._tcp.consul`), as in Consul;
//! - `<node>.node`: all labels before `node`, joined with dots, are the node name;
//! - `<hex>.addr`: 8 hex digits are an IPv4 address, 32 an IPv6 address. Consul ignores the
//!   locality of `addr` names, and so do we.
//!
//! - `<query>.query`: a prepared query by name or ID, every label before `query` joined with
//!   dots; `_<query>._<proto>.query` (first and last labels starting with `_`) is the RFC 2782
//!   form, whose last label is ignored (Consul's `handlePreparedQuery` dispatch).
//!
//! Names are matched case-insensitively: every label is lower-cased (ASCII) before use. The
//! kinds Consul knows but cairn does not serve yet (`connect`, `ingress`, `virtual`) are still
//! recognised as kinds so that, for instance, `web.connect.consul` is an unknown name rather
//! than a node called `web.connect`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_server::proto::rr::Name;

/// Hex digits in an `<hex>.addr` label that encodes an IPv4 address.
const ADDR_IPV4_HEX_DIGITS: usize = 8;
/// Hex digits in an `<hex>.addr` label that encodes an IPv6 address.
const ADDR_IPV6_HEX_DIGITS: usize = 32;

/// What a question name asks for, before any catalog lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum QueryName {
    /// Not under our domain at all: cairn has no recursors, so the answer is REFUSED.
    Foreign,
    /// The domain apex itself (`consul.`), where SOA and NS records live.
    Apex,
    /// A service lookup, with an optional tag filter.
    Service(ServiceQuery),
    /// A node lookup by name.
    Node {
        /// Node name, lower-cased; may contain dots.
        node: String,
        /// Datacenter label, if the name had one.
        datacenter: Option<String>,
    },
    /// A prepared query by name or ID (`<query>.query.consul`).
    PreparedQuery {
        /// The query's name or ID, lower-cased; may contain dots.
        name: String,
        /// Datacenter label, if the name had one.
        datacenter: Option<String>,
    },
    /// An address encoded in the name (`<hex>.addr.consul`), answered without any lookup.
    Addr(IpAddr),
    /// A reverse lookup (`4.3.2.1.in-addr.arpa`, `….ip6.arpa`): who has this address.
    Ptr(IpAddr),
    /// Under our domain but not a name Consul would answer: NXDOMAIN.
    Invalid,
}

/// The parts of a `<tag>.<service>.service[.<dc>].<domain>` name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ServiceQuery {
    /// Service name, lower-cased.
    pub service: String,
    /// Tag to filter on, lower-cased; `None` means every instance.
    pub tag: Option<String>,
    /// Datacenter label, if the name had one.
    pub datacenter: Option<String>,
}

/// Parses `name` (the question name, any case) relative to `domain` (e.g. `consul.`).
///
/// `srv_question` says whether the question type is SRV, because Consul accepts the RFC 2782
/// form without the `service` label only for SRV questions.
pub(crate) fn parse_query_name(name: &Name, domain: &Name, srv_question: bool) -> QueryName {
    if !domain.zone_of(name) {
        return QueryName::Foreign;
    }
    // `iter()` counts every label (unlike `num_labels`, which skips a leading `*`).
    let own_label_count = name.iter().count().saturating_sub(domain.iter().count());
    let mut labels = Vec::with_capacity(own_label_count);
    for label in name.iter().take(own_label_count) {
        match std::str::from_utf8(label) {
            Ok(text) => labels.push(text.to_ascii_lowercase()),
            // Consul's names are text; a binary label cannot name anything we hold.
            Err(_) => return QueryName::Invalid,
        }
    }
    if labels.is_empty() {
        return QueryName::Apex;
    }
    parse_labels(&labels, srv_question)
}

/// Parses a name under `arpa.`, which Consul serves beside its domain (PTR answers).
///
/// `None` when `name` is not under `arpa.`. A name there that is not a whole IPv4
/// (`<d>.<c>.<b>.<a>.in-addr.arpa`, decimal octets) or IPv6 (32 hex nibbles, then `ip6.arpa`)
/// address is [`QueryName::Invalid`], as in Consul (NXDOMAIN).
pub(crate) fn parse_arpa_name(name: &Name) -> Option<QueryName> {
    let mut labels: Vec<String> = Vec::with_capacity(ARPA_IPV6_LABELS + 2);
    for label in name.iter() {
        match std::str::from_utf8(label) {
            Ok(text) => labels.push(text.to_ascii_lowercase()),
            Err(_) => labels.push(String::new()),
        }
    }
    let (suffix, reversed) = match labels.as_slice() {
        [rest @ .., arpa] if arpa == "arpa" => match rest {
            [rest @ .., kind] if kind == "in-addr" || kind == "ip6" => (kind.as_str(), rest),
            _ => return Some(QueryName::Invalid),
        },
        _ => return None,
    };
    let ip = match suffix {
        "in-addr" => parse_in_addr(reversed).map(IpAddr::V4),
        _ => parse_ip6_nibbles(reversed).map(IpAddr::V6),
    };
    Some(ip.map_or(QueryName::Invalid, QueryName::Ptr))
}

/// Labels of an IPv6 reverse name before `ip6.arpa`: one per nibble.
const ARPA_IPV6_LABELS: usize = 32;

fn parse_in_addr(reversed: &[String]) -> Option<Ipv4Addr> {
    let [d, c, b, a] = reversed else { return None };
    let octet = |text: &String| -> Option<u8> {
        // Decimal without sign or leading zeros beyond a lone "0", as addresses are written.
        if text.is_empty() || text.len() > 3 || (text.len() > 1 && text.starts_with('0')) {
            return None;
        }
        text.bytes()
            .all(|byte| byte.is_ascii_digit())
            .then_some(())?;
        text.parse().ok()
    };
    Some(Ipv4Addr::new(octet(a)?, octet(b)?, octet(c)?, octet(d)?))
}

fn parse_ip6_nibbles(reversed: &[String]) -> Option<Ipv6Addr> {
    if reversed.len() != ARPA_IPV6_LABELS {
        return None;
    }
    let mut value: u128 = 0;
    for label in reversed.iter().rev() {
        let [digit] = label.as_bytes() else {
            return None;
        };
        value = (value << 4) | u128::from(char::from(*digit).to_digit(16)?);
    }
    Some(Ipv6Addr::from(value))
}

/// Where the kind label was found, splitting the labels into parts and locality.
struct Split<'a> {
    kind: &'a str,
    parts: &'a [String],
    locality: &'a [String],
}

fn split_at_kind(labels: &[String], srv_question: bool) -> Option<Split<'_>> {
    for (index, label) in labels.iter().enumerate().rev() {
        match label.as_str() {
            "service" | "node" | "addr" | "connect" | "ingress" | "virtual" | "query" => {
                return Some(Split {
                    kind: label.as_str(),
                    parts: &labels[..index],
                    locality: &labels[index + 1..],
                });
            }
            _ if srv_question && label.starts_with('_') => {
                return Some(Split {
                    kind: "service",
                    parts: &labels[..=index],
                    locality: &labels[index + 1..],
                });
            }
            _ => {}
        }
    }
    None
}

fn parse_labels(labels: &[String], srv_question: bool) -> QueryName {
    let Some(split) = split_at_kind(labels, srv_question) else {
        return QueryName::Invalid;
    };
    if split.kind == "addr" {
        return match split.parts {
            [hex] => parse_hex_address(hex).map_or(QueryName::Invalid, QueryName::Addr),
            _ => QueryName::Invalid,
        };
    }
    let Some(datacenter) = parse_locality(split.locality) else {
        return QueryName::Invalid;
    };
    match split.kind {
        "service" => parse_service(split.parts, datacenter),
        "node" if !split.parts.is_empty() => QueryName::Node {
            node: split.parts.join("."),
            datacenter,
        },
        "query" => parse_prepared_query(split.parts, datacenter),
        _ => QueryName::Invalid,
    }
}

/// `<name>.query` (dots allowed in the name) or the RFC 2782 `_<name>._<proto>.query`.
fn parse_prepared_query(parts: &[String], datacenter: Option<String>) -> QueryName {
    let name = match parts {
        [] => return QueryName::Invalid,
        [first, .., last] if first.starts_with('_') && last.starts_with('_') => {
            let joined = parts[..parts.len() - 1].join(".");
            joined.strip_prefix('_').unwrap_or(&joined).to_owned()
        }
        _ => parts.join("."),
    };
    if name.is_empty() {
        return QueryName::Invalid;
    }
    QueryName::PreparedQuery { name, datacenter }
}

/// The locality after the kind label: nothing, `<dc>`, or the explicit `<dc>.dc`.
///
/// `Some(None)` = no datacenter given; `None` = a locality we do not understand (peers,
/// namespaces, partitions), which makes the whole name invalid.
fn parse_locality(locality: &[String]) -> Option<Option<String>> {
    match locality {
        [] => Some(None),
        [dc] => Some(Some(dc.clone())),
        [dc, marker] if marker == "dc" => Some(Some(dc.clone())),
        _ => None,
    }
}

fn parse_service(parts: &[String], datacenter: Option<String>) -> QueryName {
    if let [service, tag] = parts
        && let (Some(service), Some(tag)) = (service.strip_prefix('_'), tag.strip_prefix('_'))
    {
        if service.is_empty() {
            return QueryName::Invalid;
        }
        // `_tcp` is the protocol label of RFC 2782, not a tag: Consul treats it as "no filter".
        let tag = (tag != "tcp" && !tag.is_empty()).then(|| tag.to_owned());
        return QueryName::Service(ServiceQuery {
            service: service.to_owned(),
            tag,
            datacenter,
        });
    }
    let Some((service, tag_parts)) = parts.split_last() else {
        return QueryName::Invalid;
    };
    let tag = (!tag_parts.is_empty()).then(|| tag_parts.join("."));
    QueryName::Service(ServiceQuery {
        service: service.clone(),
        tag,
        datacenter,
    })
}

/// Decodes the `<hex>` of `<hex>.addr`: 8 digits for IPv4, 32 for IPv6.
pub(crate) fn parse_hex_address(hex: &str) -> Option<IpAddr> {
    let bytes = decode_hex(hex)?;
    match hex.len() {
        ADDR_IPV4_HEX_DIGITS => {
            let octets: [u8; 4] = bytes.try_into().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(octets)))
        }
        ADDR_IPV6_HEX_DIGITS => {
            let octets: [u8; 16] = bytes.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(octets)))
        }
        _ => None,
    }
}

/// Encodes an address the way Consul writes it in `<hex>.addr` SRV targets: the 4 (IPv4) or
/// 16 (IPv6) address bytes as lower-case hex.
pub(crate) fn hex_address(ip: IpAddr) -> String {
    let bytes: Vec<u8> = match ip.to_canonical() {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    hex.as_bytes()
        .chunks(2)
        .map(|pair| {
            // An odd number of digits leaves a last chunk of one: not an address.
            let [high, low] = pair else { return None };
            let high = char::from(*high).to_digit(16)?;
            let low = char::from(*low).to_digit(16)?;
            u8::try_from(high * 16 + low).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &str, srv_question: bool) -> QueryName {
        let name = Name::from_ascii(name).expect("test names are valid");
        let domain = Name::from_ascii("consul.").expect("valid domain");
        parse_query_name(&name, &domain, srv_question)
    }

    fn service(service: &str, tag: Option<&str>, datacenter: Option<&str>) -> QueryName {
        QueryName::Service(ServiceQuery {
            service: service.to_owned(),
            tag: tag.map(str::to_owned),
            datacenter: datacenter.map(str::to_owned),
        })
    }

    #[test]
    fn service_forms() {
        assert_eq!(
            parse("web.service.consul.", false),
            service("web", None, None)
        );
        assert_eq!(
            parse("prod.web.service.consul.", false),
            service("web", Some("prod"), None)
        );
        assert_eq!(
            parse("a.b.web.service.consul.", false),
            service("web", Some("a.b"), None)
        );
        assert_eq!(
            parse("web.service.dc2.consul.", false),
            service("web", None, Some("dc2"))
        );
        assert_eq!(
            parse("web.service.dc2.dc.consul.", false),
            service("web", None, Some("dc2"))
        );
        assert_eq!(
            parse("WEB.Service.CONSUL.", false),
            service("web", None, None)
        );
    }

    #[test]
    fn rfc2782_forms() {
        assert_eq!(
            parse("_web._tcp.service.consul.", true),
            service("web", None, None)
        );
        assert_eq!(
            parse("_web._prod.service.consul.", true),
            service("web", Some("prod"), None)
        );
        assert_eq!(
            parse("_web._tcp.service.dc1.consul.", true),
            service("web", None, Some("dc1"))
        );
        // Without the `service` label, only for SRV questions.
        assert_eq!(parse("_web._tcp.consul.", true), service("web", None, None));
        assert_eq!(parse("_web._tcp.consul.", false), QueryName::Invalid);
        assert_eq!(parse("_._tcp.service.consul.", true), QueryName::Invalid);
    }

    #[test]
    fn node_forms() {
        let node = |node: &str, dc: Option<&str>| QueryName::Node {
            node: node.to_owned(),
            datacenter: dc.map(str::to_owned),
        };
        assert_eq!(parse("foo.node.consul.", false), node("foo", None));
        assert_eq!(
            parse("Foo.Bar.node.dc1.consul.", false),
            node("foo.bar", Some("dc1"))
        );
        assert_eq!(parse("node.consul.", false), QueryName::Invalid);
    }

    #[test]
    fn addr_forms() {
        assert_eq!(
            parse("7f000001.addr.consul.", false),
            QueryName::Addr(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)))
        );
        assert_eq!(
            parse("7F000001.addr.dc1.consul.", false),
            QueryName::Addr(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)))
        );
        assert_eq!(
            parse("20010db8000000000000000000000001.addr.consul.", false),
            QueryName::Addr("2001:db8::1".parse().expect("valid"))
        );
        assert_eq!(parse("7f00001.addr.consul.", false), QueryName::Invalid);
        assert_eq!(parse("7g000001.addr.consul.", false), QueryName::Invalid);
        assert_eq!(parse("x.7f000001.addr.consul.", false), QueryName::Invalid);
    }

    #[test]
    fn prepared_query_forms() {
        let query = |name: &str, datacenter: Option<&str>| QueryName::PreparedQuery {
            name: name.to_owned(),
            datacenter: datacenter.map(str::to_owned),
        };
        assert_eq!(parse("Web.query.consul.", false), query("web", None));
        assert_eq!(parse("geo.db.query.dc1.consul.", false), query("geo.db", Some("dc1")));
        assert_eq!(parse("_web._tcp.query.consul.", true), query("web", None));
        assert_eq!(parse("_geo.db._tcp.query.consul.", true), query("geo.db", None));
        assert_eq!(parse("_web.query.consul.", true), query("_web", None));
    }

    #[test]
    fn apex_foreign_and_invalid() {
        assert_eq!(parse("consul.", false), QueryName::Apex);
        assert_eq!(parse("CONSUL.", false), QueryName::Apex);
        assert_eq!(parse("example.com.", false), QueryName::Foreign);
        assert_eq!(parse("consul.example.com.", false), QueryName::Foreign);
        assert_eq!(parse("web.consul.", false), QueryName::Invalid);
        assert_eq!(parse("service.consul.", false), QueryName::Invalid);
        assert_eq!(parse("web.connect.consul.", false), QueryName::Invalid);
        assert_eq!(parse("query.consul.", false), QueryName::Invalid);
        assert_eq!(
            parse("web.service.a.b.c.consul.", false),
            QueryName::Invalid
        );
        assert_eq!(
            parse("web.service.peer1.peer.consul.", false),
            QueryName::Invalid
        );
    }

    #[test]
    fn binary_labels_are_invalid_not_a_panic() {
        let name = Name::from_labels(vec![&[0xff_u8, 0xfe][..], b"service", b"consul"])
            .expect("raw labels are allowed");
        let domain = Name::from_ascii("consul.").expect("valid domain");
        assert_eq!(parse_query_name(&name, &domain, false), QueryName::Invalid);
    }

    #[test]
    fn arpa_forms() {
        let arpa = |text: &str| parse_arpa_name(&Name::from_ascii(text).expect("valid name"));
        let v4 = "127.0.0.1".parse().expect("valid");
        assert_eq!(arpa("1.0.0.127.in-addr.arpa."), Some(QueryName::Ptr(v4)));
        assert_eq!(arpa("1.0.0.127.IN-ADDR.ARPA."), Some(QueryName::Ptr(v4)));
        let v6: IpAddr = "2001:db8::1".parse().expect("valid");
        let nibbles = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.";
        assert_eq!(arpa(nibbles), Some(QueryName::Ptr(v6)));
        for invalid in [
            "0.0.127.in-addr.arpa.",
            "256.0.0.127.in-addr.arpa.",
            "01.0.0.127.in-addr.arpa.",
            "x.1.0.0.127.in-addr.arpa.",
            "1.0.ip6.arpa.",
            "example.arpa.",
            "arpa.",
        ] {
            assert_eq!(arpa(invalid), Some(QueryName::Invalid), "{invalid}");
        }
        assert_eq!(arpa("example.com."), None);
        assert_eq!(arpa("arpa.example.com."), None);
    }

    #[test]
    fn hex_round_trip() {
        for ip in ["10.1.2.3", "::1", "2001:db8::ff"] {
            let ip: IpAddr = ip.parse().expect("valid");
            assert_eq!(parse_hex_address(&hex_address(ip)), Some(ip));
        }
        assert_eq!(
            hex_address("::ffff:10.0.0.1".parse().expect("valid")),
            "0a000001"
        );
    }
}
