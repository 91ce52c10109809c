//! Blocking queries: `?index` returns on a change, and on timeout after `?wait`.

use std::time::{Duration, Instant};

use crate::util::{TestAgent, Watched, index_of};

#[tokio::test]
async fn blocking_query_returns_on_change_and_on_timeout() {
    let agent = TestAgent::start().await;
    agent.put("/v1/kv/watched", "one").await;
    let first = agent.get("/v1/kv/watched").await;
    let index = index_of(&first);
    assert!(first.headers().get("x-consul-knownleader").is_some());

    // Timeout: nothing changes, the query returns after about `wait` with the same index.
    let started = Instant::now();
    let timed_out = agent.get(&format!("/v1/kv/watched?index={index}&wait=300ms")).await;
    let elapsed = started.elapsed();
    assert_eq!(index_of(&timed_out), index);
    assert!(elapsed >= Duration::from_millis(300), "returned after {elapsed:?}, before the wait");
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");

    // Change: a write during the wait wakes the query with a larger index.
    let url = agent.url(&format!("/v1/kv/watched?index={index}&wait=30s"));
    let client = agent.client.clone();
    let waiter = tokio::spawn(async move {
        let started = Instant::now();
        let response = client.get(url).send().await.unwrap();
        (started.elapsed(), index_of(&response), response.text().await.unwrap())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    agent.put("/v1/kv/watched", "two").await;
    let (elapsed, new_index, body) = waiter.await.unwrap();
    assert!(new_index > index);
    assert!(elapsed < Duration::from_secs(10), "woke after {elapsed:?}");
    assert!(body.contains("dHdv"), "saw the new value: {body}");

    // A blocking read of a missing key returns when the key is created.
    let missing = agent.get("/v1/kv/later").await;
    assert_eq!(missing.status(), 404);
    let index = index_of(&missing);
    let url = agent.url(&format!("/v1/kv/later?index={index}&wait=30s"));
    let client = agent.client.clone();
    let waiter = tokio::spawn(async move { client.get(url).send().await.unwrap().status() });
    tokio::time::sleep(Duration::from_millis(200)).await;
    agent.put("/v1/kv/later", "now").await;
    assert_eq!(waiter.await.unwrap(), 200);
}

#[tokio::test]
async fn watchers_wake_only_for_their_own_key_or_prefix() {
    let agent = TestAgent::start().await;
    agent.put("/v1/kv/mine/a", "1").await;
    agent.put("/v1/kv/theirs/b", "1").await;
    let key_index = index_of(&agent.get("/v1/kv/mine/a").await);
    let prefix_index = index_of(&agent.get("/v1/kv/mine/?recurse").await);
    let key_watch = agent.watch("/v1/kv/mine/a", key_index, "1500ms");
    let prefix_watch = agent.watch("/v1/kv/mine/?recurse", prefix_index, "1500ms");
    let sibling_index = index_of(&agent.get("/v1/kv/mine/b").await);
    let sibling_watch = agent.watch("/v1/kv/mine/b", sibling_index, "1500ms");
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Writes elsewhere, and even a key that merely shares a prefix string, wake none of them.
    for i in 0..20 {
        agent.put(&format!("/v1/kv/theirs/{i}"), "x").await;
        agent.put("/v1/kv/mine-not/a", "x").await;
    }
    let watches = [("key", key_watch, key_index), ("prefix", prefix_watch, prefix_index), ("sibling", sibling_watch, sibling_index)];
    for (name, handle, started_at) in watches {
        let Watched { elapsed, index, .. } = handle.await.unwrap();
        assert!(elapsed >= Duration::from_millis(1400), "{name} watcher woke early, after {elapsed:?}");
        assert_eq!(index, started_at, "{name} watcher's index moved without a change");
    }
}

#[tokio::test]
async fn prefix_index_does_not_go_backwards_on_delete() {
    let agent = TestAgent::start().await;
    agent.put("/v1/kv/app/a", "1").await;
    agent.put("/v1/kv/app/b", "2").await;
    let before = index_of(&agent.get("/v1/kv/app/?recurse").await);
    let waiter = agent.watch("/v1/kv/app/?recurse", before, "30s");
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Deleting the newest key would move max(ModifyIndex) back to app/a's; the tombstone
    // keeps it moving forward, and the delete wakes the watcher.
    assert_eq!(agent.delete("/v1/kv/app/b").await.status(), 200);
    let Watched { elapsed, index: woke_at, status, .. } = waiter.await.unwrap();
    assert_eq!(status, 200);
    assert!(woke_at > before, "index went from {before} to {woke_at}");
    assert!(elapsed < Duration::from_secs(10));
    let after = agent.get("/v1/kv/app/?recurse").await;
    assert_eq!(index_of(&after), woke_at);
    // A deleted single key reports its delete's index too, never 0.
    let gone = agent.get("/v1/kv/app/b").await;
    assert_eq!(gone.status(), 404);
    assert_eq!(index_of(&gone), woke_at);
    assert!(index_of(&agent.get("/v1/kv/never/written").await) >= 1);
}

#[tokio::test]
async fn health_watchers_wake_for_their_service_only() {
    let agent = TestAgent::start().await;
    for (id, port) in [("web", 80), ("db", 5432)] {
        let body = serde_json::json!({"Name": id, "Port": port, "Check": {"TTL": "60s", "CheckID": format!("{id}-ttl")}});
        assert_eq!(agent.put("/v1/agent/service/register", body.to_string()).await.status(), 200);
    }
    let web_index = index_of(&agent.get("/v1/health/service/web").await);
    let web_watch = agent.watch("/v1/health/service/web", web_index, "30s");
    let db_index = index_of(&agent.get("/v1/health/service/db").await);
    let db_watch = agent.watch("/v1/health/service/db", db_index, "1500ms");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(agent.put("/v1/agent/check/pass/web-ttl", "").await.status(), 200);
    let woke_at = web_watch.await.unwrap().index;
    assert!(woke_at > web_index);
    let Watched { elapsed, index: db_after, .. } = db_watch.await.unwrap();
    assert!(elapsed >= Duration::from_millis(1400), "db watcher woke after {elapsed:?} for a web change");
    assert_eq!(db_after, db_index);
}

#[tokio::test]
async fn agent_endpoints_block_on_their_content_hash() {
    let agent = TestAgent::start().await;
    let body = serde_json::json!({"Name": "api", "ID": "api-1", "Port": 9000});
    assert_eq!(agent.put("/v1/agent/service/register", body.to_string()).await.status(), 200);
    let hash_of = |r: &reqwest::Response| r.headers()["x-consul-contenthash"].to_str().unwrap().to_string();
    for path in ["/v1/agent/services", "/v1/agent/service/api-1", "/v1/agent/checks"] {
        let first = agent.get(path).await;
        assert_eq!(first.status(), 200);
        let hash = hash_of(&first);
        assert_eq!(hash.len(), 16);
        // Unchanged content: the query waits out `wait` and returns the same hash.
        let started = Instant::now();
        let same = agent.get(&format!("{path}?hash={hash}&wait=300ms")).await;
        assert!(started.elapsed() >= Duration::from_millis(300), "{path} returned early");
        assert_eq!(hash_of(&same), hash);
        // A stale hash returns at once.
        let started = Instant::now();
        agent.get(&format!("{path}?hash=0000000000000000&wait=30s")).await;
        assert!(started.elapsed() < Duration::from_secs(5), "{path} blocked on a stale hash");
    }
    // A change wakes a blocked query with a new hash.
    let hash = hash_of(&agent.get("/v1/agent/service/api-1").await);
    let url = agent.url(&format!("/v1/agent/service/api-1?hash={hash}&wait=30s"));
    let client = agent.client.clone();
    let waiter = tokio::spawn(async move {
        let response = client.get(url).send().await.unwrap();
        let hash = response.headers()["x-consul-contenthash"].to_str().unwrap().to_string();
        (hash, response.json::<serde_json::Value>().await.unwrap())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let changed = serde_json::json!({"Name": "api", "ID": "api-1", "Port": 9001});
    assert_eq!(agent.put("/v1/agent/service/register", changed.to_string()).await.status(), 200);
    let (new_hash, service) = tokio::time::timeout(Duration::from_secs(10), waiter).await.expect("woke").unwrap();
    assert_ne!(new_hash, hash);
    assert_eq!(service["Port"], 9001);
    assert_eq!(service["ContentHash"], serde_json::json!(new_hash), "body and header agree");
}

#[tokio::test]
async fn connections_per_client_ip_are_limited() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("limits.json");
    std::fs::write(&path, r#"{"limits": {"http_max_conns_per_client": 3}}"#).unwrap();
    let agent = TestAgent::start_with(&[&format!("-config-file={}", path.display())]).await;
    let addr = agent.http_addr();
    // Three parked blocking queries hold the client's three connections...
    let mut parked = Vec::new();
    for _ in 0..3 {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        stream.write_all(b"GET /v1/kv/x?index=999999&wait=30s HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
        parked.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // ...so a fourth is answered 429 and closed, and the agent keeps serving the others.
    let mut fourth = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), fourth.read_to_string(&mut answer)).await.expect("closed").unwrap();
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    drop(parked);
    assert!(crate::util::eventually(3_000, async || agent.get("/v1/status/leader").await.status() == 200).await);
}
