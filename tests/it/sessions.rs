//! Session lifetimes: TTL expiry enforced by the leader, renewal, and invalidation when a
//! linked health check goes critical.

use std::time::Duration;

use serde_json::json;

use crate::util::{TestAgent, eventually};

async fn agent_with_short_ttls() -> TestAgent {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.json");
    std::fs::write(&path, r#"{"session_ttl_min": "1s"}"#).unwrap();
    let agent = TestAgent::start_with(&[&format!("-config-file={}", path.display())]).await;
    std::mem::forget(dir);
    agent
}

async fn create(agent: &TestAgent, body: serde_json::Value) -> String {
    let response = agent.put("/v1/session/create", body.to_string()).await;
    assert_eq!(response.status(), 200);
    response.json::<serde_json::Value>().await.unwrap()["ID"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn ttl_sessions_expire_unless_renewed() {
    let agent = agent_with_short_ttls().await;
    let lapsing = create(&agent, json!({"TTL": "1s", "Behavior": "delete", "LockDelay": "0s"})).await;
    let renewed = create(&agent, json!({"ttl": "1.0s"})).await;
    assert_eq!(agent.put(&format!("/v1/kv/owned?acquire={lapsing}"), "x").await.text().await.unwrap(), "true");
    assert_eq!(agent.put(&format!("/v1/kv/held?acquire={renewed}"), "y").await.text().await.unwrap(), "true");
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let response = agent.put(&format!("/v1/session/renew/{renewed}"), "").await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.json::<serde_json::Value>().await.unwrap()[0]["TTL"], "1s");
    }
    // 4 s have passed: the unrenewed session (TTL 1 s, up to 2× grace) is gone with its key.
    assert_eq!(agent.get_json(&format!("/v1/session/info/{lapsing}")).await, json!([]));
    assert_eq!(agent.get("/v1/kv/owned").await.status(), 404, "behavior=delete removed the key");
    assert_eq!(agent.get_json(&format!("/v1/session/info/{renewed}")).await.as_array().unwrap().len(), 1);
    assert_eq!(agent.get_json("/v1/kv/held").await[0]["Session"], json!(renewed));
    assert_eq!(agent.put(&format!("/v1/session/renew/{lapsing}"), "").await.status(), 404);
    // Bad TTLs are refused.
    assert_eq!(agent.put("/v1/session/create", r#"{"TTL": "100000s"}"#).await.status(), 400);
    assert_eq!(agent.put("/v1/session/create", r#"{"TTL": "soon"}"#).await.status(), 400);
}

#[tokio::test]
async fn a_critical_check_invalidates_its_sessions_and_releases_locks() {
    let agent = TestAgent::start().await;
    let check = json!({"Name": "db-alive", "CheckID": "db-alive", "TTL": "60s", "Status": "passing"});
    assert_eq!(agent.put("/v1/agent/check/register", check.to_string()).await.status(), 200);
    let session = create(&agent, json!({"Checks": ["serfHealth", "db-alive"]})).await;
    assert_eq!(agent.put(&format!("/v1/kv/leader?acquire={session}"), "me").await.text().await.unwrap(), "true");
    assert_eq!(agent.put("/v1/agent/check/fail/db-alive", "").await.status(), 200);
    let released = eventually(3_000, async || agent.get_json("/v1/kv/leader").await[0].get("Session").is_none()).await;
    assert!(released, "the lock was released when the check went critical");
    assert_eq!(agent.get_json(&format!("/v1/session/info/{session}")).await, json!([]));
    // A session cannot be created on a critical check.
    let response = agent.put("/v1/session/create", json!({"Checks": ["db-alive"]}).to_string()).await;
    assert_eq!(response.status(), 500);
}
