//! Session lifetimes: TTL expiry enforced by the leader, renewal, and invalidation when a
//! linked health check goes critical.

use std::time::Duration;

use serde_json::json;

use crate::util::{TestAgent, eventually, index_of};

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
    let releasing = create(&agent, json!({"TTL": "1s", "LockDelay": "0s"})).await;
    assert_eq!(agent.put(&format!("/v1/kv/owned?acquire={lapsing}"), "x").await.text().await.unwrap(), "true");
    assert_eq!(agent.put(&format!("/v1/kv/released?acquire={releasing}"), "r").await.text().await.unwrap(), "true");
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
    let released = agent.get_json("/v1/kv/released").await;
    assert!(released[0].get("Session").is_none(), "behavior=release freed the lock and kept the key: {released}");
    assert_eq!(agent.get_json(&format!("/v1/session/info/{renewed}")).await.as_array().unwrap().len(), 1);
    assert_eq!(agent.get_json("/v1/kv/held").await[0]["Session"], json!(renewed));
    assert_eq!(agent.put(&format!("/v1/session/renew/{lapsing}"), "").await.status(), 404);
}

/// Consul's `Session.Apply`: a TTL outside `[session_ttl_min, 24h]` is a 500 whose body starts
/// `Invalid Session TTL`, with the TTL in nanoseconds and the bounds as Go prints them; the
/// minimum is kept to the millisecond and reported in `/v1/agent/self`.
#[tokio::test]
async fn session_ttls_are_checked_with_consuls_status_and_words() {
    let agent = agent_with_short_ttls().await;
    for (ttl, expected) in [
        ("100000s", "Invalid Session TTL '100000000000000', must be between [1s=24h0m0s]"),
        ("999ms", "Invalid Session TTL '999000000', must be between [1s=24h0m0s]"),
        ("soon", "Session TTL 'soon' invalid: time: invalid duration \"soon\""),
    ] {
        let response = agent.put("/v1/session/create", json!({"TTL": ttl}).to_string()).await;
        assert_eq!(response.status(), 500, "{ttl}");
        assert_eq!(response.text().await.unwrap(), expected);
    }
    assert_eq!(agent.put("/v1/session/create", r#"{"TTL": 10}"#).await.status(), 400, "TTL is a string");
    assert_eq!(agent.get_json("/v1/session/list").await, json!([]), "nothing was created");

    // A fractional TTL is kept exactly (format 2: `Command::SessionCreateExact`), so a lock
    // never outlives its holder's own TTL; sub-millisecond parts round up.
    let id = create(&agent, json!({"TTL": "7.5s"})).await;
    assert_eq!(agent.get_json(&format!("/v1/session/info/{id}")).await[0]["TTL"], "7.5s");
    let id = create(&agent, json!({"TTL": "2.0004s"})).await;
    assert_eq!(agent.get_json(&format!("/v1/session/info/{id}")).await[0]["TTL"], "2.001s");
    let id = create(&agent, json!({"TTL": "1s"})).await;
    assert_eq!(agent.get_json(&format!("/v1/session/info/{id}")).await[0]["TTL"], "1s", "the minimum itself is allowed");

    let this = agent.get_json("/v1/agent/self").await;
    assert_eq!(this["Config"]["SessionTTLMin"], 1_000_000_000u64, "nanoseconds, as Consul's time.Duration");
    assert_eq!(this["DebugConfig"]["SessionTTLMin"], "1s");
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

async fn acquire(agent: &TestAgent, key: &str, session: &str) -> bool {
    agent.put(&format!("/v1/kv/{key}?acquire={session}"), session.to_string()).await.text().await.unwrap() == "true"
}

#[tokio::test]
async fn a_lock_is_handed_off_to_a_waiting_client_on_release() {
    let agent = TestAgent::start().await;
    let alice = create(&agent, json!({"Name": "alice"})).await;
    let bob = create(&agent, json!({"Name": "bob"})).await;
    assert!(acquire(&agent, "service/leader", &alice).await);
    assert!(!acquire(&agent, "service/leader", &bob).await, "the lock is exclusive");

    // Bob waits for the lock the way `consul lock` does: a blocking read of the key.
    let held = agent.get("/v1/kv/service/leader").await;
    let index = index_of(&held);
    let url = agent.url(&format!("/v1/kv/service/leader?index={index}&wait=30s"));
    let client = agent.client.clone();
    let waiter = tokio::spawn(async move { client.get(url).send().await.unwrap().json::<serde_json::Value>().await.unwrap() });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let released = agent.put(&format!("/v1/kv/service/leader?release={alice}"), "").await;
    assert_eq!(released.text().await.unwrap(), "true");
    let seen = waiter.await.unwrap();
    assert!(seen[0].get("Session").is_none(), "bob's watch saw the lock free: {seen}");

    // A voluntary release sets no lock-delay: bob takes it at once.
    assert!(acquire(&agent, "service/leader", &bob).await);
    let entry = agent.get_json("/v1/kv/service/leader").await;
    assert_eq!(entry[0]["Session"], json!(bob));
    assert_eq!(entry[0]["LockIndex"], 2, "each acquisition by a new holder counts");
    assert!(!acquire(&agent, "service/leader", &alice).await);
}

#[tokio::test]
async fn lock_delay_blocks_reacquisition_after_invalidation() {
    let agent = TestAgent::start().await;
    let check = json!({"Name": "alive", "CheckID": "alive", "TTL": "60s", "Status": "passing"});
    assert_eq!(agent.put("/v1/agent/check/register", check.to_string()).await.status(), 200);
    let contender = create(&agent, json!({"LockDelay": "0s"})).await;

    // 1. Destroying a session starts its lock-delay on the keys it held.
    let destroyed = create(&agent, json!({"LockDelay": "2s"})).await;
    assert!(acquire(&agent, "a", &destroyed).await);
    assert_eq!(agent.put(&format!("/v1/session/destroy/{destroyed}"), "").await.status(), 200);
    let freed_at = std::time::Instant::now();
    assert!(agent.get_json("/v1/kv/a").await[0].get("Session").is_none());
    assert!(!acquire(&agent, "a", &contender).await, "lock-delay refuses an immediate acquire");
    // 2. So does a linked check going critical (the command carries the proposer's clock).
    let linked = create(&agent, json!({"Checks": ["alive"], "LockDelay": "2s"})).await;
    assert!(acquire(&agent, "b", &linked).await);
    assert_eq!(agent.put("/v1/agent/check/fail/alive", "").await.status(), 200);
    assert!(eventually(3_000, async || agent.get_json("/v1/kv/b").await[0].get("Session").is_none()).await);
    assert!(!acquire(&agent, "b", &contender).await, "lock-delay after a critical check");
    // Both delays run out and the contender gets the locks.
    assert!(eventually(5_000, async || acquire(&agent, "a", &contender).await).await);
    assert!(freed_at.elapsed() >= Duration::from_millis(1_900), "the delay lasted only {:?}", freed_at.elapsed());
    assert!(eventually(5_000, async || acquire(&agent, "b", &contender).await).await);
    assert_eq!(agent.get_json("/v1/kv/b").await[0]["Session"], json!(contender));
}
