//! Join addresses: Consul's `host`, `host:port`, `[v6]`, `[v6]:port` forms, resolved to
//! socket addresses.
//!
//! A bare host gets the configured default port (serf LAN 8301); a bare IPv6 address without
//! brackets is a host too. Names resolve through the system resolver, bounded by
//! `RESOLVE_TIMEOUT_MS`, and at most `JOIN_ADDRESSES_PER_NAME_MAX` of their addresses are tried.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Deadline for resolving one join address.
const RESOLVE_TIMEOUT_MS: u64 = 5_000;

/// The most addresses of one resolved name that a join tries.
const JOIN_ADDRESSES_PER_NAME_MAX: usize = 8;

/// Splits a join address into host and port.
pub(super) fn parse_join_address(address: &str, default_port: u16) -> Result<(String, u16), String> {
    let address = address.trim();
    if address.is_empty() {
        return Err("empty address".to_owned());
    }
    if let Ok(ip) = address.parse::<IpAddr>() {
        return Ok((ip.to_string(), default_port));
    }
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(|| format!("address {address}: missing ']' in address"))?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("address {address}: not an IPv6 address in brackets"));
        }
        match after {
            "" => (host, None),
            _ => (
                host,
                Some(after.strip_prefix(':').ok_or_else(|| format!("address {address}: unexpected text after ']'"))?),
            ),
        }
    } else {
        match address.split_once(':') {
            Some((_, after)) if after.contains(':') => {
                return Err(format!("address {address}: too many colons in address"));
            }
            Some((host, port)) => (host, Some(port)),
            None => (address, None),
        }
    };
    if host.is_empty() {
        return Err(format!("address {address}: missing host"));
    }
    let port = match port {
        None => default_port,
        Some(port) => match port.parse::<u16>() {
            Ok(port) if port != 0 => port,
            _ => return Err(format!("address {address}: invalid port")),
        },
    };
    Ok((host.to_owned(), port))
}

/// The socket addresses of `host:port`, literal or resolved.
pub(super) async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let lookup = tokio::net::lookup_host((host, port));
    match tokio::time::timeout(Duration::from_millis(RESOLVE_TIMEOUT_MS), lookup).await {
        Err(_elapsed) => Err(format!("lookup {host}: i/o timeout")),
        Ok(Err(error)) => Err(format!("lookup {host}: {error}")),
        Ok(Ok(addrs)) => {
            let addrs: Vec<SocketAddr> = addrs.take(JOIN_ADDRESSES_PER_NAME_MAX).collect();
            if addrs.is_empty() {
                return Err(format!("lookup {host}: no such host"));
            }
            Ok(addrs)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consul_address_forms() {
        let parse = |address| parse_join_address(address, 8301);
        assert_eq!(parse("10.0.0.1"), Ok(("10.0.0.1".to_owned(), 8301)));
        assert_eq!(parse("10.0.0.1:9000"), Ok(("10.0.0.1".to_owned(), 9000)));
        assert_eq!(parse("node.example"), Ok(("node.example".to_owned(), 8301)));
        assert_eq!(parse("node.example:9"), Ok(("node.example".to_owned(), 9)));
        assert_eq!(parse("[::1]"), Ok(("::1".to_owned(), 8301)));
        assert_eq!(parse("[::1]:9000"), Ok(("::1".to_owned(), 9000)));
        assert_eq!(parse("fe80::1"), Ok(("fe80::1".to_owned(), 8301)));
        assert_eq!(parse(" 10.0.0.1 "), Ok(("10.0.0.1".to_owned(), 8301)));
    }

    #[test]
    fn bad_addresses_say_why() {
        let parse = |address| parse_join_address(address, 8301);
        assert!(parse("").is_err());
        assert!(parse(":8301").expect_err("no host").contains("missing host"));
        assert!(parse("host:0").expect_err("port 0").contains("invalid port"));
        assert!(parse("host:http").expect_err("not a number").contains("invalid port"));
        assert!(parse("[::1").expect_err("unclosed").contains("missing ']'"));
        assert!(parse("[::1]9").is_err());
        assert!(parse("[host]:9").is_err());
        assert!(parse("a:b:c").expect_err("colons").contains("too many colons"));
    }
}
