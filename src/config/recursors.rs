//! Consul's `recursors` (the `-recursor` flag) and `dns_config.recursor_strategy` /
//! `dns_config.recursor_timeout`: the upstream DNS servers that names outside the agent's
//! domains are forwarded to.
//!
//! Pure: text in, typed values out. An address is read like Consul's `recursorAddr`: `host`
//! or `host:port`, the host an IP address (IPv6 bare or in brackets) or a host name, the port
//! 53 when none is given. A host name is resolved when the agent starts (`daemon`), not here,
//! because this module does no IO. Consul also accepts go-sockaddr templates
//! (`{{ GetPrivateIP }}`); cairn does not evaluate them and refuses them with an error rather
//! than forwarding to a literal template.

use std::fmt;
use std::net::IpAddr;

use super::ConfigError;

/// Port of a recursor given without one: DNS's own.
pub const DEFAULT_RECURSOR_PORT: u16 = 53;

/// Consul's default `dns_config.recursor_timeout`: 2 s for one exchange with one recursor.
pub const DEFAULT_RECURSOR_TIMEOUT_MS: u64 = 2_000;

/// Longest host name, in bytes (RFC 1035 section 2.3.4, without the root's dot).
const HOST_NAME_BYTES_MAX: usize = 253;

/// Longest label of a host name, in bytes.
const LABEL_BYTES_MAX: usize = 63;

/// Where a recursor is: an address, or a name resolved when the agent starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecursorHost {
    Ip(IpAddr),
    Name(String),
}

/// One upstream DNS server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recursor {
    pub host: RecursorHost,
    pub port: u16,
}

impl fmt::Display for Recursor {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            RecursorHost::Ip(IpAddr::V6(ip)) => write!(formatter, "[{ip}]:{}", self.port),
            RecursorHost::Ip(ip) => write!(formatter, "{ip}:{}", self.port),
            RecursorHost::Name(name) => write!(formatter, "{name}:{}", self.port),
        }
    }
}

/// Consul's `dns_config.recursor_strategy`: the order in which recursors are tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecursorStrategy {
    /// In the configured order, each until one answers (Consul's default).
    #[default]
    Sequential,
    /// In a new random order for every question.
    Random,
}

/// Reads every recursor address; the first bad one stops the agent with its reason.
pub(super) fn parse_recursors(texts: &[String]) -> Result<Vec<Recursor>, ConfigError> {
    texts
        .iter()
        .map(|text| {
            parse_recursor(text).map_err(|reason| {
                ConfigError::Invalid(format!("recursors: invalid address {text:?}: {reason}"))
            })
        })
        .collect()
}

/// Reads `recursor_strategy`: `sequential` or `random`, as Consul spells them.
pub(super) fn parse_strategy(text: Option<&str>) -> Result<RecursorStrategy, ConfigError> {
    match text {
        None | Some("sequential") => Ok(RecursorStrategy::Sequential),
        Some("random") => Ok(RecursorStrategy::Random),
        Some(other) => Err(ConfigError::Invalid(format!(
            "dns_config.recursor_strategy: invalid value {other:?}: expected \"sequential\" or \"random\""
        ))),
    }
}

/// Reads `recursor_timeout` (already a duration): it must be positive, or every forwarded
/// question would fail at once.
pub(super) fn recursor_timeout_ms(
    timeout: Option<std::time::Duration>,
) -> Result<u64, ConfigError> {
    let Some(timeout) = timeout else {
        return Ok(DEFAULT_RECURSOR_TIMEOUT_MS);
    };
    let milliseconds = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    if milliseconds == 0 {
        return Err(ConfigError::Invalid(format!(
            "dns_config.recursor_timeout: {timeout:?} is too short: it must be at least 1ms"
        )));
    }
    Ok(milliseconds)
}

/// One address: `ip`, `[ipv6]`, `ip:port`, `[ipv6]:port`, `name` or `name:port`.
pub(super) fn parse_recursor(text: &str) -> Result<Recursor, String> {
    if text.contains("{{") {
        return Err("go-sockaddr templates are not supported; give an address".to_string());
    }
    if text.is_empty() {
        return Err("empty address".to_string());
    }
    // A bare IP, IPv6 included (its colons are not a port).
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(Recursor {
            host: RecursorHost::Ip(ip),
            port: DEFAULT_RECURSOR_PORT,
        });
    }
    if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest
            .split_once(']')
            .ok_or_else(|| "missing ']' after an IPv6 address".to_string())?;
        let ip = inside
            .parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("{inside:?} is not an IPv6 address"))?;
        let port = match after {
            "" => DEFAULT_RECURSOR_PORT,
            _ => parse_port(after.strip_prefix(':').ok_or("unexpected text after ']'")?)?,
        };
        return Ok(Recursor {
            host: RecursorHost::Ip(IpAddr::V6(ip)),
            port,
        });
    }
    let (host, port) = match text.split_once(':') {
        Some((_, port)) if port.contains(':') => {
            return Err("too many colons (put an IPv6 address in brackets)".to_string());
        }
        Some((host, port)) => (host, parse_port(port)?),
        None => (text, DEFAULT_RECURSOR_PORT),
    };
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(Recursor {
            host: RecursorHost::Ip(ip),
            port,
        });
    }
    check_host_name(host)?;
    Ok(Recursor {
        host: RecursorHost::Name(host.to_ascii_lowercase()),
        port,
    })
}

fn parse_port(text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("{text:?} is not a port (1 to 65535)")),
        Ok(port) => Ok(port),
    }
}

/// Letters, digits, `-` and `_` in dot-separated labels of 1 to 63 bytes, none starting or
/// ending with `-`; a trailing dot is allowed (a fully qualified name).
fn check_host_name(host: &str) -> Result<(), String> {
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.is_empty() || name.len() > HOST_NAME_BYTES_MAX {
        return Err(format!("{host:?} is neither an IP address nor a host name"));
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= LABEL_BYTES_MAX
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
    };
    if name.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(format!("{host:?} is neither an IP address nor a host name"))
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn ip(text: &str, port: u16) -> Recursor {
        Recursor {
            host: RecursorHost::Ip(text.parse().expect("ip")),
            port,
        }
    }

    #[test]
    fn addresses_take_port_53_unless_given() {
        assert_eq!(parse_recursor("8.8.8.8"), Ok(ip("8.8.8.8", 53)));
        assert_eq!(parse_recursor("127.0.0.1:5353"), Ok(ip("127.0.0.1", 5353)));
        assert_eq!(parse_recursor("::1"), Ok(ip("::1", 53)));
        assert_eq!(parse_recursor("[2001:db8::1]"), Ok(ip("2001:db8::1", 53)));
        assert_eq!(parse_recursor("[::1]:1053"), Ok(ip("::1", 1053)));
        assert_eq!(
            parse_recursor("DNS.Example.org:54"),
            Ok(Recursor {
                host: RecursorHost::Name("dns.example.org".into()),
                port: 54
            })
        );
        assert_eq!(
            parse_recursor("resolver."),
            Ok(Recursor {
                host: RecursorHost::Name("resolver.".into()),
                port: 53
            })
        );
    }

    #[test]
    fn bad_addresses_are_refused_with_a_reason() {
        for bad in [
            "",
            "8.8.8.8:",
            "8.8.8.8:0",
            "8.8.8.8:65536",
            "8.8.8.8:dns",
            "host:1:2",
            "[::1",
            "[::1]x",
            "[example.org]:53",
            "bad host",
            "a..b",
            "-",
            "{{ GetPrivateIP }}",
            "http://8.8.8.8",
        ] {
            assert!(parse_recursor(bad).is_err(), "{bad:?} was accepted");
        }
        let error = parse_recursors(&["1.1.1.1".into(), "{{ GetPrivateIP }}".into()])
            .expect_err("a template is refused");
        assert!(
            error
                .to_string()
                .contains("go-sockaddr templates are not supported"),
            "{error}"
        );
    }

    #[test]
    fn strategy_and_timeout_follow_consul() {
        assert_eq!(
            parse_strategy(None).ok(),
            Some(RecursorStrategy::Sequential)
        );
        assert_eq!(
            parse_strategy(Some("sequential")).ok(),
            Some(RecursorStrategy::Sequential)
        );
        assert_eq!(
            parse_strategy(Some("random")).ok(),
            Some(RecursorStrategy::Random)
        );
        assert!(parse_strategy(Some("round-robin")).is_err());
        assert_eq!(recursor_timeout_ms(None).ok(), Some(2_000));
        let half = std::time::Duration::from_millis(500);
        assert_eq!(recursor_timeout_ms(Some(half)).ok(), Some(500));
        assert!(recursor_timeout_ms(Some(std::time::Duration::ZERO)).is_err());
    }

    #[test]
    fn display_is_a_dialable_address() {
        assert_eq!(ip("::1", 53).to_string(), "[::1]:53");
        assert_eq!(
            Recursor {
                host: RecursorHost::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                port: 5
            }
            .to_string(),
            "127.0.0.1:5"
        );
    }
}
