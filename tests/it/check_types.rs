//! The check types beyond TTL/HTTP/TCP/script, through the real binary: gRPC (against a real
//! tonic-health server in this process), alias (of a local service, and through the catalog
//! with `AliasNode`), `check_update_interval`, `DeregisterCriticalServiceAfter`, and the 400s
//! for bad definitions.

use serde_json::{Value, json};

use crate::util::{TestAgent, eventually};

/// A gRPC server with the standard health service; the reporter flips statuses.
async fn grpc_health_server() -> (u16, tonic_health::server::HealthReporter) {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter.set_service_status("api", tonic_health::ServingStatus::Serving).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let incoming = futures::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| stream);
        Some((accepted, listener))
    });
    tokio::spawn(tonic::transport::Server::builder().add_service(service).serve_with_incoming(incoming));
    (port, reporter)
}

/// The check as `/v1/health/checks/<service>` shows it (from the catalog).
async fn catalog_check(agent: &TestAgent, service: &str, check_id: &str) -> Value {
    let checks = agent.get_json(&format!("/v1/health/checks/{service}")).await;
    checks.as_array().unwrap().iter().find(|c| c["CheckID"] == check_id).cloned().unwrap_or(Value::Null)
}

async fn reaches(agent: &TestAgent, service: &str, check_id: &str, status: &str) -> bool {
    eventually(8_000, async || catalog_check(agent, service, check_id).await["Status"] == status).await
}

#[tokio::test]
async fn grpc_and_alias_checks_follow_their_targets() {
    let (port, reporter) = grpc_health_server().await;
    let agent = TestAgent::start().await;
    let target = format!("127.0.0.1:{port}/api");
    let api = json!({"Name": "api", "Port": port, "Check": {"GRPC": target, "Interval": "1s"}});
    assert_eq!(agent.put("/v1/agent/service/register", api.to_string()).await.status(), 200);
    assert!(reaches(&agent, "api", "service:api", "passing").await, "gRPC check never passing");
    let check = catalog_check(&agent, "api", "service:api").await;
    assert_eq!((check["Type"].as_str(), check["Output"].as_str()), (Some("grpc"), Some(format!("gRPC check {target}: success").as_str())));
    reporter.set_service_status("api", tonic_health::ServingStatus::NotServing).await;
    assert!(reaches(&agent, "api", "service:api", "critical").await, "gRPC check never critical");
    let output = catalog_check(&agent, "api", "service:api").await["Output"].as_str().unwrap().to_string();
    assert_eq!(output, format!("gRPC {target} serving status: NOT_SERVING"));

    // A local alias: "proxy" mirrors "web", whose health is a TTL check.
    let web = json!({"Name": "web", "Port": 80, "Check": {"CheckID": "web-ttl", "TTL": "30s"}});
    assert_eq!(agent.put("/v1/agent/service/register", web.to_string()).await.status(), 200);
    let proxy = json!({"Name": "proxy", "Port": 81, "Check": {"AliasService": "web"}});
    assert_eq!(agent.put("/v1/agent/service/register", proxy.to_string()).await.status(), 200);
    // Through the catalog too: AliasNode names this agent's node.
    let remote = json!({"Name": "remote-alias", "ServiceID": "proxy", "AliasNode": "test-node", "AliasService": "web"});
    assert_eq!(agent.put("/v1/agent/check/register", remote.to_string()).await.status(), 200);
    assert!(reaches(&agent, "proxy", "service:proxy", "critical").await, "the alias must follow web's critical start");
    assert_eq!(agent.put("/v1/agent/check/pass/web-ttl?note=fine", "").await.status(), 200);
    assert!(reaches(&agent, "proxy", "service:proxy", "passing").await, "alias never passing");
    assert!(reaches(&agent, "proxy", "remote-alias", "passing").await, "node alias never passing");
    assert_eq!(catalog_check(&agent, "proxy", "service:proxy").await["Output"], "All checks passing.");
    assert_eq!(agent.put("/v1/agent/check/fail/web-ttl?note=down", "").await.status(), 200);
    assert!(reaches(&agent, "proxy", "service:proxy", "critical").await, "alias never back to critical");
    assert!(reaches(&agent, "proxy", "remote-alias", "critical").await, "node alias never back to critical");
    assert_eq!(catalog_check(&agent, "proxy", "service:proxy").await["Output"], "Aliased check \"Service 'web' check\" failing: down");

    // An alias of a service that does not exist is critical, with Consul's output.
    let ghost = json!({"Name": "ghost", "AliasService": "nope"});
    assert_eq!(agent.put("/v1/agent/check/register", ghost.to_string()).await.status(), 200);
    let found = eventually(5_000, async || {
        let checks = agent.get_json("/v1/agent/checks").await;
        checks["ghost"]["Output"] == "Service nope could not be found on node "
    })
    .await;
    assert!(found, "ghost alias output");
    // The agent shows each check's definition from its local state.
    let checks = agent.get_json("/v1/agent/checks").await;
    assert_eq!(checks["service:api"]["Definition"]["GRPC"], target);
    assert_eq!(checks["service:proxy"]["Definition"]["AliasService"], "web");
    assert_eq!(checks["remote-alias"]["Definition"]["AliasNode"], "test-node");
    assert_eq!(checks["service:proxy"]["Type"], "alias");
}

/// `check_update_interval`: an output-only change reaches the catalog at once with "0s",
/// and waits with the default (5m) while the agent shows it at once.
#[tokio::test]
async fn output_only_changes_wait_for_check_update_interval() {
    let body = json!({"Name": "web", "Port": 80, "Check": {"CheckID": "ttl", "TTL": "60s"}});
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("interval.json");
    std::fs::write(&path, r#"{"check_update_interval": "0s"}"#).unwrap();
    let eager = TestAgent::start_with(&[&format!("-config-file={}", path.display())]).await;
    let deferring = TestAgent::start().await;
    for agent in [&eager, &deferring] {
        assert_eq!(agent.put("/v1/agent/service/register", body.to_string()).await.status(), 200);
        assert_eq!(agent.put("/v1/agent/check/pass/ttl?note=first", "").await.status(), 200);
        assert_eq!(catalog_check(agent, "web", "ttl").await["Output"], "first", "a status change is written at once");
        assert_eq!(agent.put("/v1/agent/check/pass/ttl?note=second", "").await.status(), 200);
        assert_eq!(agent.get_json("/v1/agent/checks").await["ttl"]["Output"], "second");
    }
    assert!(eventually(3_000, async || catalog_check(&eager, "web", "ttl").await["Output"] == "second").await);
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(catalog_check(&deferring, "web", "ttl").await["Output"], "first", "deferred by the 5m interval");
}

/// Consul raises `DeregisterCriticalServiceAfter` to one minute and reaps every 30s, so this
/// takes 60 to 90 seconds; it runs beside the other tests.
#[tokio::test]
async fn a_service_critical_too_long_is_deregistered() {
    let agent = TestAgent::start().await;
    let doomed = json!({"Name": "doomed", "Port": 80, "Check": {"TTL": "1s", "DeregisterCriticalServiceAfter": "1s"}});
    let kept = json!({"Name": "kept", "Port": 81, "Check": {"TTL": "1s", "DeregisterCriticalServiceAfter": "10m"}});
    for body in [doomed, kept] {
        assert_eq!(agent.put("/v1/agent/service/register", body.to_string()).await.status(), 200);
    }
    let started = std::time::Instant::now();
    let gone = eventually(120_000, async || agent.get_json("/v1/catalog/service/doomed").await.as_array().is_some_and(Vec::is_empty)).await;
    assert!(gone, "the critical service was never deregistered");
    assert!(started.elapsed() >= std::time::Duration::from_secs(59), "deregistered before Consul's one-minute minimum");
    assert!(agent.get_json("/v1/agent/services").await.get("doomed").is_none());
    assert_eq!(agent.get_json("/v1/catalog/service/kept").await.as_array().map(Vec::len), Some(1), "10m has not passed");
}

#[tokio::test]
async fn bad_check_definitions_get_consuls_400s() {
    let agent = TestAgent::start().await;
    let cases = [
        (json!({"Name": "g", "GRPC": "no-port", "Interval": "1s"}), "Invalid check: GRPC must be \"host:port[/service]\""),
        (json!({"Name": "h", "H2PING": "host:http", "Interval": "1s"}), "Invalid check: H2PING must be \"host:port\""),
        (json!({"Name": "u", "UDP": "/tmp/sock", "Interval": "1s"}), "Invalid check: UDP must be \"host:port\""),
        (json!({"Name": "g", "GRPC": "127.0.0.1:1"}), "Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks"),
        (json!({"Name": "a", "AliasService": "web", "TTL": "5s"}), "Invalid check: TTL must be not be set for Alias checks"),
        (json!({"Name": "a", "AliasService": "web", "TCP": "127.0.0.1:1", "Interval": "1s"}), "Invalid check: Interval cannot be set for Alias checks"),
        (json!({"Name": "t", "TTL": "5s", "Interval": "1s"}), "Invalid check: Interval and TTL cannot both be specified"),
        (json!({"Name": "t", "TTL": "5s", "DeregisterCriticalServiceAfter": "soon"}), "\"DeregisterCriticalServiceAfter\" must be a duration"),
        (json!({"Name": "t", "TTL": "5s", "FailuresBeforeWarning": 3, "FailuresBeforeCritical": 1}), "FailuresBeforeWarning can't be higher than FailuresBeforeCritical"),
        (json!({"Name": "t", "TTL": "5s", "OutputMaxSize": -1}), "Invalid check: MaxOutputMaxSize must be positive"),
        (json!({"Name": "t"}), "Invalid check: TTL must be > 0 for TTL checks"),
    ];
    for (body, message) in cases {
        let response = agent.put("/v1/agent/check/register", body.to_string()).await;
        assert_eq!(response.status(), 400, "{body}");
        let text = response.text().await.unwrap();
        assert!(text.contains(message), "{body}: {text}");
    }
    assert!(agent.get_json("/v1/agent/checks").await.as_object().unwrap().is_empty(), "nothing was registered");
}
