//! DNS-rebinding protection: an agent whose API listens on loopback only answers only requests
//! that name it by IP address or as `localhost`.
//!
//! A web page from `evil.example` can make its own name resolve to 127.0.0.1 and then call
//! `http://evil.example:8500/v1/...` from the victim's browser: the browser sees one origin,
//! and the agent, before issue 11, answered. What gives the attack away is the `Host` header,
//! which names the attacker's domain. Consul has no such check (its answer is ACLs, which
//! cairn enforces too); cairn adds it where it breaks no legitimate client: when every
//! `client_addr` is a loopback address, a client can only be on this host, and reaches the
//! agent as `127.0.0.1`, `[::1]` or `localhost` (RFC 6761 names under `.localhost` too).
//! An agent that listens on other addresses is reached under names this agent cannot know
//! (load balancers, /etc/hosts, DNS), so there the check is off and ACLs are the protection.
//! A request without a `Host` header (HTTP/1.0 tools) is no browser's and passes.

use std::net::IpAddr;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Whether the API port checks `Host` (see the module docs): all its addresses are loopback.
#[derive(Clone, Copy, Debug)]
pub(super) struct HostCheck {
    loopback_only: bool,
}

impl HostCheck {
    pub(super) fn for_listen_addrs(addrs: &[IpAddr]) -> HostCheck {
        HostCheck { loopback_only: !addrs.is_empty() && addrs.iter().all(IpAddr::is_loopback) }
    }
}

/// Whether `host` (a `Host` header: a name or IP, maybe with a port) names a loopback agent
/// the way a local client does.
fn names_this_host_locally(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        // `[::1]:8500`: an IPv6 literal, always with brackets in a Host header.
        Some(rest) => return rest.split(']').next().is_some_and(|ip| ip.parse::<IpAddr>().is_ok()),
        None => host.rsplit_once(':').map_or(host, |(name, port)| if port.bytes().all(|b| b.is_ascii_digit()) { name } else { host }),
    };
    if name.parse::<IpAddr>().is_ok() {
        return true;
    }
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// Refuses, with 403 and the reason, a request to a loopback-only agent that names it by a
/// domain other than `localhost`.
pub(super) async fn check(State(check): State<HostCheck>, request: Request, next: Next) -> Response {
    if check.loopback_only
        && let Some(host) = request.headers().get(axum::http::header::HOST)
    {
        let allowed = host.to_str().is_ok_and(names_this_host_locally);
        if !allowed {
            let shown = String::from_utf8_lossy(host.as_bytes()).chars().take(100).collect::<String>();
            let message = format!(
                "Host {shown:?} is not allowed: this agent listens on loopback addresses only, so it answers requests \
                 addressed to an IP address or localhost (protection against DNS rebinding)"
            );
            return (StatusCode::FORBIDDEN, message).into_response();
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_names_and_ip_literals_pass_and_other_names_do_not() {
        for host in ["127.0.0.1:8500", "127.0.0.1", "[::1]:8500", "[::1]", "localhost", "LOCALHOST:8500", "app.localhost:1", "localhost.", "10.0.0.7:8500"] {
            assert!(names_this_host_locally(host), "{host}");
        }
        for host in ["evil.example:8500", "evil.example", "localhost.evil.example", "127.0.0.1.nip.io:8500", "[evil]:1", "", "consul:8500"] {
            assert!(!names_this_host_locally(host), "{host}");
        }
    }

    #[test]
    fn only_loopback_only_agents_check() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(HostCheck::for_listen_addrs(&[ip("127.0.0.1"), ip("::1")]).loopback_only);
        assert!(!HostCheck::for_listen_addrs(&[ip("127.0.0.1"), ip("0.0.0.0")]).loopback_only);
        assert!(!HostCheck::for_listen_addrs(&[ip("10.0.0.7")]).loopback_only);
        assert!(!HostCheck::for_listen_addrs(&[]).loopback_only);
    }
}
