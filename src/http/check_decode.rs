//! Check definitions in Consul's JSON (`/v1/agent/check/register`, a service's `Check` and
//! `Checks`) → a `LocalCheck`: the catalog registration, the runner and its options.
//!
//! Validation follows Consul's `CheckType.Validate`, with its messages behind
//! `Invalid check: `. Unlike Consul, which accepts any address and lets the check fail at
//! run time, addresses of gRPC, H2PING and UDP checks must be `host:port` (a clear 400 beats
//! a check that can never pass).

use std::time::Duration;

use serde_json::Value;

use crate::agent::local::{CheckOptions, CheckRunner, LocalCheck};
use crate::catalog::command::CheckRegistration;
use crate::catalog::model::{CheckDefinition, HealthStatus};
use crate::http::decode::{Fields, bad};
use crate::http::error::ApiError;

/// Consul's default timeouts: 10s for network checks, 30s for scripts.
const NETWORK_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
const SCRIPT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);
/// Most values of one header, and most headers, on an HTTP check.
const HEADER_ENTRIES_MAX: usize = 64;

fn ms(duration: Option<Duration>, default: Duration) -> u64 {
    duration.unwrap_or(default).as_millis().min(u64::MAX as u128) as u64
}

fn invalid(reason: &str) -> ApiError {
    ApiError::BadRequest(format!("Invalid check: {reason}"))
}

/// `host:port` with a numeric port and a non-empty host.
fn is_host_port(text: &str) -> bool {
    match text.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && !host.contains(['/', ' ']) && port.parse::<u16>().is_ok(),
        None => false,
    }
}

fn require_host_port(field: &str, text: &str, shape: &str) -> Result<(), ApiError> {
    if is_host_port(text) { Ok(()) } else { Err(invalid(&format!("{field} must be \"{shape}\", got {text:?}"))) }
}

/// Decodes one check definition. `service` is the owning service (for service checks) and
/// `default_id` the ID used when the definition names none.
pub fn check_definition(fields: &Fields, service: Option<(&str, &str)>, default_id: String) -> Result<LocalCheck, ApiError> {
    let explicit_id = fields.name(&["CheckID", "ID"])?;
    let check_id = if explicit_id.is_empty() {
        if service.is_none() { fields.name(&["Name"])? } else { default_id }
    } else {
        explicit_id
    };
    let mut name = fields.name(&["Name"])?;
    if name.is_empty() {
        match service {
            Some((_, service_name)) => name = format!("Service '{service_name}' check"),
            None => return Err(ApiError::BadRequest("Missing check name".into())),
        }
    }
    let service_id = match service {
        Some((id, _)) => id.to_string(),
        None => fields.name(&["ServiceID"])?,
    };
    let (check_type, runner) = check_runner(fields)?;
    let options = check_options(fields)?;
    let status = match fields.string(&["Status"])?.as_str() {
        "" => HealthStatus::Critical,
        text => HealthStatus::parse(text).ok_or_else(|| bad("Status", "one of passing, warning, critical"))?,
    };
    let deregister_text = match fields.get(&["DeregisterCriticalServiceAfter"]) {
        Some(Value::String(text)) => text.clone(),
        _ => String::new(),
    };
    Ok(LocalCheck {
        registration: CheckRegistration {
            check_id,
            name,
            status,
            notes: fields.string(&["Notes"])?,
            output: String::new(),
            service_id,
            definition: CheckDefinition {
                check_type: check_type.to_string(),
                http: fields.string(&["HTTP"])?,
                tcp: fields.string(&["TCP"])?,
                interval: fields.string(&["Interval"]).unwrap_or_default(),
                timeout: fields.string(&["Timeout"]).unwrap_or_default(),
                deregister_critical_service_after: deregister_text,
            },
        },
        runner: Some(runner),
        options,
    })
}

/// The counters, the reaper's delay and the output cap.
fn check_options(fields: &Fields) -> Result<CheckOptions, ApiError> {
    let count = |name: &str| -> Result<u32, ApiError> {
        match fields.get(&[name]) {
            Some(Value::Number(n)) if n.as_i64().is_some_and(|v| v < 0) => Ok(0),
            _ => u32::try_from(fields.u64(&[name])?).map_err(|_| bad(name, "a count below 2^32")),
        }
    };
    let output_max_size = match fields.get(&["OutputMaxSize"]) {
        Some(Value::Number(n)) if n.as_i64().is_some_and(|v| v < 0) => return Err(invalid("MaxOutputMaxSize must be positive")),
        _ => fields.u64(&["OutputMaxSize"])?,
    };
    let options = CheckOptions {
        success_before_passing: count("SuccessBeforePassing")?,
        failures_before_warning: count("FailuresBeforeWarning")?,
        failures_before_critical: count("FailuresBeforeCritical")?,
        deregister_critical_service_after_ms: ms(fields.duration(&["DeregisterCriticalServiceAfter"])?, Duration::ZERO),
        output_max_size,
    };
    if options.failures_before_warning > options.failures_before_critical {
        return Err(invalid("FailuresBeforeWarning can't be higher than FailuresBeforeCritical"));
    }
    Ok(options)
}

/// The check's type name (Consul's `CheckType.Type()`) and runner, after Consul's checks.
fn check_runner(fields: &Fields) -> Result<(&'static str, CheckRunner), ApiError> {
    let interval = fields.duration(&["Interval"])?.filter(|i| !i.is_zero());
    let timeout = fields.duration(&["Timeout"])?;
    let ttl = fields.duration(&["TTL"])?.filter(|t| !t.is_zero());
    let http = fields.string(&["HTTP"])?;
    let tcp = fields.string(&["TCP"])?;
    let udp = fields.string(&["UDP"])?;
    let grpc = fields.string(&["GRPC"])?;
    let h2ping = fields.string(&["H2PING"])?;
    let alias_service = fields.name(&["AliasService"])?;
    let alias_node = fields.name(&["AliasNode"])?;
    let mut args = fields.strings(&["Args", "ScriptArgs"])?;
    let script = fields.string(&["Script"])?;
    if args.is_empty() && !script.is_empty() {
        args = vec!["/bin/sh".into(), "-c".into(), script];
    }
    if fields.get(&["DockerContainerID", "OSService"]).is_some() {
        return Err(invalid("Docker and OS service checks are not supported by cairn"));
    }
    let interval_check = !args.is_empty() || !http.is_empty() || !tcp.is_empty() || !udp.is_empty() || !grpc.is_empty() || !h2ping.is_empty();
    let alias = !alias_service.is_empty() || !alias_node.is_empty();
    if interval.is_some() && ttl.is_some() {
        return Err(invalid("Interval and TTL cannot both be specified"));
    }
    if interval_check && interval.is_none() {
        return Err(invalid("Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks"));
    }
    if interval_check && alias {
        return Err(invalid("Interval cannot be set for Alias checks"));
    }
    if alias && ttl.is_some() {
        return Err(invalid("TTL must be not be set for Alias checks"));
    }
    let interval_ms = ms(interval, Duration::ZERO);
    let network_timeout_ms = ms(timeout, NETWORK_TIMEOUT_DEFAULT);
    let tls_skip_verify = fields.bool(&["TLSSkipVerify"])?;
    let tls_server_name = fields.string(&["TLSServerName"])?;
    // Consul's precedence when several are set: TTL, HTTP, TCP, UDP, script, gRPC, H2PING, alias.
    Ok(if let Some(ttl) = ttl {
        ("ttl", CheckRunner::Ttl { ttl_ms: ms(Some(ttl), Duration::ZERO).max(1) })
    } else if !http.is_empty() {
        if !tls_server_name.is_empty() {
            return Err(invalid("TLSServerName is not supported for HTTP checks by cairn yet"));
        }
        let body = fields.string(&["Body"])?;
        let runner = CheckRunner::Http {
            url: http,
            method: fields.string(&["Method"])?,
            headers: headers(fields)?,
            body: (!body.is_empty()).then_some(body),
            tls_skip_verify,
            tls_server_name,
            interval_ms,
            timeout_ms: network_timeout_ms,
        };
        ("http", runner)
    } else if !tcp.is_empty() {
        ("tcp", CheckRunner::Tcp { address: tcp, interval_ms, timeout_ms: network_timeout_ms })
    } else if !udp.is_empty() {
        require_host_port("UDP", &udp, "host:port")?;
        ("udp", CheckRunner::Udp { address: udp, interval_ms, timeout_ms: network_timeout_ms })
    } else if !args.is_empty() {
        ("script", CheckRunner::Script { args, interval_ms, timeout_ms: ms(timeout, SCRIPT_TIMEOUT_DEFAULT) })
    } else if !grpc.is_empty() {
        require_host_port("GRPC", grpc.split_once('/').map_or(grpc.as_str(), |(server, _)| server), "host:port[/service]")?;
        let use_tls = fields.bool(&["GRPCUseTLS"])?;
        ("grpc", CheckRunner::Grpc { target: grpc, use_tls, tls_skip_verify, tls_server_name, interval_ms, timeout_ms: network_timeout_ms })
    } else if !h2ping.is_empty() {
        require_host_port("H2PING", &h2ping, "host:port")?;
        // Consul's `H2PingUseTLS` defaults to true.
        let use_tls = match fields.get(&["H2PingUseTLS"]) {
            None => true,
            Some(_) => fields.bool(&["H2PingUseTLS"])?,
        };
        ("h2ping", CheckRunner::H2Ping { address: h2ping, use_tls, tls_skip_verify, tls_server_name, interval_ms, timeout_ms: network_timeout_ms })
    } else if alias {
        // AliasNode alone aliases the node's own checks, as in Consul.
        ("alias", CheckRunner::Alias { service_id: alias_service, node: alias_node })
    } else {
        return Err(invalid("TTL must be > 0 for TTL checks"));
    })
}

/// Consul's `Header`: a map of lists of strings (a bare string is taken as a one-item list).
fn headers(fields: &Fields) -> Result<Vec<(String, String)>, ApiError> {
    let mut headers = Vec::new();
    match fields.get(&["Header"]) {
        None => {}
        Some(Value::Object(map)) => {
            for (key, values) in map {
                match values {
                    Value::Array(items) => {
                        for item in items {
                            headers.push((key.clone(), item.as_str().ok_or_else(|| bad("Header", "a map of string lists"))?.to_string()));
                        }
                    }
                    Value::String(text) => headers.push((key.clone(), text.clone())),
                    _ => return Err(bad("Header", "a map of string lists")),
                }
            }
        }
        Some(_) => return Err(bad("Header", "a map of string lists")),
    }
    if headers.len() > HEADER_ENTRIES_MAX {
        return Err(bad("Header", &format!("at most {HEADER_ENTRIES_MAX} header values")));
    }
    Ok(headers)
}

/// Consul's `HealthCheckDefinition` of a local check for `/v1/agent/checks`: the runner's
/// settings, with Go's `omitempty` (empty, false and zero fields left out). The catalog
/// keeps only its own few definition fields; the rest come from the agent's local state.
pub fn definition_json(check: &LocalCheck) -> Value {
    let mut map = serde_json::Map::new();
    let mut put = |key: &str, value: Value| {
        let empty = match &value {
            Value::String(text) => text.is_empty(),
            Value::Bool(flag) => !flag,
            Value::Number(n) => n.as_u64() == Some(0),
            Value::Array(items) => items.is_empty(),
            Value::Object(entries) => entries.is_empty(),
            Value::Null => true,
        };
        if !empty {
            map.insert(key.to_string(), value);
        }
    };
    let definition = &check.registration.definition;
    put("Interval", definition.interval.clone().into());
    put("Timeout", definition.timeout.clone().into());
    put("DeregisterCriticalServiceAfter", definition.deregister_critical_service_after.clone().into());
    put("OutputMaxSize", check.options.output_max_size.into());
    match &check.runner {
        Some(CheckRunner::Http { url, method, headers, body, tls_skip_verify, tls_server_name, .. }) => {
            put("HTTP", url.clone().into());
            put("Method", method.clone().into());
            let mut header = serde_json::Map::new();
            for (name, value) in headers {
                if let Value::Array(values) = header.entry(name.clone()).or_insert_with(|| Value::Array(Vec::new())) {
                    values.push(value.clone().into());
                }
            }
            put("Header", Value::Object(header));
            put("Body", body.clone().unwrap_or_default().into());
            put("TLSSkipVerify", (*tls_skip_verify).into());
            put("TLSServerName", tls_server_name.clone().into());
        }
        Some(CheckRunner::Tcp { address, .. }) => put("TCP", address.clone().into()),
        Some(CheckRunner::Udp { address, .. }) => put("UDP", address.clone().into()),
        Some(CheckRunner::Script { args, .. }) => put("ScriptArgs", args.clone().into()),
        Some(CheckRunner::Ttl { ttl_ms }) => put("TTL", crate::checks::go_duration_text(Duration::from_millis(*ttl_ms)).into()),
        Some(CheckRunner::Grpc { target, use_tls, tls_skip_verify, tls_server_name, .. }) => {
            put("GRPC", target.clone().into());
            put("GRPCUseTLS", (*use_tls).into());
            put("TLSSkipVerify", (*tls_skip_verify).into());
            put("TLSServerName", tls_server_name.clone().into());
        }
        Some(CheckRunner::H2Ping { address, use_tls, tls_skip_verify, tls_server_name, .. }) => {
            put("H2PING", address.clone().into());
            put("H2PingUseTLS", (*use_tls).into());
            put("TLSSkipVerify", (*tls_skip_verify).into());
            put("TLSServerName", tls_server_name.clone().into());
        }
        Some(CheckRunner::Alias { service_id, node }) => {
            put("AliasService", service_id.clone().into());
            put("AliasNode", node.clone().into());
        }
        None => {}
    }
    Value::Object(map)
}
