//! Config definitions → registrations: the HTTP decoder's rules, both key spellings, and the
//! errors that stop the agent.

use std::path::PathBuf;

use serde_json::{Value, json};

use super::decode_definitions;
use crate::agent::local::CheckRunner;
use crate::catalog::model::HealthStatus;
use crate::config::{ConfigDefinition, RuntimeConfig};

fn config_with(services: Vec<Value>, checks: Vec<Value>) -> RuntimeConfig {
    let mut config = crate::config::load(&["-dev".to_string(), "-node=n1".to_string()]).expect("dev config").config;
    let tag = |definition| ConfigDefinition { source: PathBuf::from("/etc/cairn/web.json"), definition };
    config.services = services.into_iter().map(tag).collect();
    config.checks = checks.into_iter().map(tag).collect();
    config
}

fn error_of(services: Vec<Value>, checks: Vec<Value>) -> String {
    match decode_definitions(&config_with(services, checks)) {
        Ok(decoded) => panic!("expected an error, decoded {decoded:?}"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn snake_case_and_camel_case_definitions_decode_alike() {
    let snake = json!({"name": "web", "port": 8080, "tags": ["a"], "enable_tag_override": true, "meta": {"Env_Name": "x"},
        "check": {"check_id": "web-ttl", "ttl": "30s", "status": "passing"},
        "checks": [{"http": "http://127.0.0.1:8080/health", "interval": "10s", "tls_skip_verify": true}]});
    let camel = json!({"Name": "web", "Port": 8080, "Tags": ["a"], "EnableTagOverride": true, "Meta": {"Env_Name": "x"},
        "Check": {"CheckID": "web-ttl", "TTL": "30s", "Status": "passing"},
        "Checks": [{"HTTP": "http://127.0.0.1:8080/health", "Interval": "10s", "TLSSkipVerify": true}]});
    let (from_snake, _) = decode_definitions(&config_with(vec![snake], vec![])).expect("snake_case decodes");
    let (from_camel, _) = decode_definitions(&config_with(vec![camel], vec![])).expect("CamelCase decodes");
    assert_eq!(from_snake, from_camel);
    let web = &from_snake.services["web"];
    // The ID defaults to the name, as over HTTP; user map keys keep their case.
    assert_eq!((web.registration.id.as_str(), web.registration.port), ("web", 8080));
    assert!(web.registration.enable_tag_override && web.registration.meta.contains_key("Env_Name"));
    let ids: Vec<&str> = web.checks.iter().map(|c| c.registration.check_id.as_str()).collect();
    assert_eq!(ids, ["web-ttl", "service:web:1"]);
    assert_eq!(web.checks[0].registration.status, HealthStatus::Passing);
    assert!(matches!(web.checks[1].runner, Some(CheckRunner::Http { tls_skip_verify: true, interval_ms: 10_000, .. })));
}

#[test]
fn standalone_checks_default_their_id_to_the_name() {
    let checks = vec![json!({"name": "disk", "args": ["/bin/true"], "interval": "30s"}), json!({"id": "mem", "name": "Memory", "ttl": "1m", "service_id": "web"})];
    let (decoded, warnings) = decode_definitions(&config_with(vec![json!({"name": "web"})], checks)).expect("decodes");
    assert!(warnings.is_empty());
    assert_eq!(decoded.checks.keys().collect::<Vec<_>>(), ["disk", "mem"]);
    assert!(matches!(&decoded.checks["disk"].runner, Some(CheckRunner::Script { args, .. }) if args == &["/bin/true"]));
    assert_eq!(decoded.checks["mem"].registration.service_id, "web");
}

#[test]
fn invalid_definitions_name_the_file_and_the_entry() {
    let message = error_of(vec![json!({"name": "web", "check": {"http": "http://x"}})], vec![]);
    assert!(message.contains("/etc/cairn/web.json") && message.contains("service \"web\"") && message.contains("Interval"), "{message}");
    let message = error_of(vec![json!({"port": 80})], vec![]);
    assert!(message.contains("Missing service name"), "{message}");
    let message = error_of(vec![], vec![json!({"name": "c", "ttl": "bad"})]);
    assert!(message.contains("check \"c\"") && message.contains("TTL"), "{message}");
}

#[test]
fn keys_cairn_would_ignore_are_refused_and_token_warns() {
    let message = error_of(vec![json!({"name": "web", "socket_path": "/tmp/s"})], vec![]);
    assert!(message.contains("socket_path") && message.contains("not supported"), "{message}");
    let message = error_of(vec![json!({"name": "web", "checks": [{"ttl": "10s", "failures_before_critical": 3}]})], vec![]);
    assert!(message.contains("failures_before_critical"), "{message}");
    let message = error_of(vec![json!({"name": "web", "connect": {"sidecar_service": {}}})], vec![]);
    assert!(message.contains("sidecar_service"), "{message}");
    let (_, warnings) = decode_definitions(&config_with(vec![json!({"name": "web", "token": "t"})], vec![])).expect("token is accepted");
    assert!(warnings.iter().any(|w| w.contains("token")), "{warnings:?}");
}

#[test]
fn duplicate_ids_are_refused() {
    let message = error_of(vec![json!({"name": "web"}), json!({"name": "web", "port": 1})], vec![]);
    assert!(message.contains("service ID \"web\" is defined twice"), "{message}");
    let message = error_of(vec![json!({"name": "web", "check": {"id": "c", "ttl": "1s"}})], vec![json!({"name": "c", "ttl": "1s"})]);
    assert!(message.contains("check ID \"c\" is defined twice"), "{message}");
}
