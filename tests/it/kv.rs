//! KV round trips: binary values, flags, CAS, recurse, keys with separator, delete-tree.

use base64::Engine;
use serde_json::json;

use crate::util::TestAgent;

#[tokio::test]
async fn kv_round_trip_binary_values_and_cas() {
    let agent = TestAgent::start().await;
    let value: Vec<u8> = (0..=255u8).collect();
    let response = agent.put("/v1/kv/app/blob?flags=42", value.clone()).await;
    assert_eq!(response.text().await.unwrap(), "true");

    let raw = agent.get("/v1/kv/app/blob?raw").await;
    assert!(raw.headers().get("x-consul-index").is_some());
    assert_eq!(raw.bytes().await.unwrap().to_vec(), value);

    let entries = agent.get_json("/v1/kv/app/blob").await;
    let entry = &entries[0];
    assert_eq!(entry["Flags"], 42);
    let decoded = base64::engine::general_purpose::STANDARD.decode(entry["Value"].as_str().unwrap()).unwrap();
    assert_eq!(decoded, value);
    let modify_index = entry["ModifyIndex"].as_u64().unwrap();

    // CAS: a stale index fails, the current one succeeds; cas=0 only creates.
    let stale = agent.put(&format!("/v1/kv/app/blob?cas={}", modify_index - 1), "x").await;
    assert_eq!(stale.text().await.unwrap(), "false");
    let fresh = agent.put(&format!("/v1/kv/app/blob?cas={modify_index}"), "y").await;
    assert_eq!(fresh.text().await.unwrap(), "true");
    assert_eq!(agent.put("/v1/kv/app/blob?cas=0", "z").await.text().await.unwrap(), "false");
    assert_eq!(agent.put("/v1/kv/app/new?cas=0", "z").await.text().await.unwrap(), "true");
    assert_eq!(agent.get("/v1/kv/app/blob?raw").await.text().await.unwrap(), "y");

    // An empty value comes back as null.
    agent.put("/v1/kv/app/empty", "").await;
    assert_eq!(agent.get_json("/v1/kv/app/empty").await[0]["Value"], json!(null));

    // Recurse, keys with a separator, delete-cas and delete-tree.
    agent.put("/v1/kv/app/sub/one", "1").await;
    let keys = agent.get_json("/v1/kv/app/?keys&separator=/").await;
    assert_eq!(keys, json!(["app/blob", "app/empty", "app/new", "app/sub/"]));
    let all = agent.get_json("/v1/kv/app?recurse").await;
    assert_eq!(all.as_array().unwrap().len(), 4);
    let index = agent.get_json("/v1/kv/app/new").await[0]["ModifyIndex"].as_u64().unwrap();
    assert_eq!(agent.delete(&format!("/v1/kv/app/new?cas={}", index + 100)).await.text().await.unwrap(), "false");
    assert_eq!(agent.delete(&format!("/v1/kv/app/new?cas={index}")).await.text().await.unwrap(), "true");
    assert_eq!(agent.get("/v1/kv/app/new").await.status(), 404);
    assert_eq!(agent.delete("/v1/kv/app?recurse").await.text().await.unwrap(), "true");
    let missing = agent.get("/v1/kv/app?recurse").await;
    assert_eq!(missing.status(), 404);
    let index: u64 = missing.headers()["x-consul-index"].to_str().unwrap().parse().unwrap();
    assert!(index >= 1, "X-Consul-Index is never 0");
}

#[tokio::test]
async fn sessions_lock_and_release_keys() {
    let agent = TestAgent::start().await;
    let s1 = agent.put("/v1/session/create", "{}").await.json::<serde_json::Value>().await.unwrap()["ID"].as_str().unwrap().to_string();
    let s2 = agent.put("/v1/session/create", r#"{"name":"two","behavior":"delete"}"#).await.json::<serde_json::Value>().await.unwrap()["ID"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(agent.put(&format!("/v1/kv/lock?acquire={s1}"), "a").await.text().await.unwrap(), "true");
    assert_eq!(agent.put(&format!("/v1/kv/lock?acquire={s2}"), "b").await.text().await.unwrap(), "false");
    assert_eq!(agent.get_json("/v1/kv/lock").await[0]["Session"], json!(s1));
    assert_eq!(agent.put("/v1/kv/lock?acquire=not-a-session", "c").await.status(), 500);
    assert_eq!(agent.put(&format!("/v1/session/destroy/{s1}"), "").await.status(), 200);
    assert_eq!(agent.get_json("/v1/kv/lock").await[0].get("Session"), None);
    assert_eq!(agent.put(&format!("/v1/kv/owned?acquire={s2}"), "b").await.text().await.unwrap(), "true");
    agent.put(&format!("/v1/session/destroy/{s2}"), "").await;
    assert_eq!(agent.get("/v1/kv/owned").await.status(), 404, "behavior=delete deletes held keys");
    assert_eq!(agent.put("/v1/session/renew/unknown-id", "").await.status(), 404);

    // The CLI takes and releases locks too.
    let s3 = agent.put("/v1/session/create", "{}").await.json::<serde_json::Value>().await.unwrap()["ID"].as_str().unwrap().to_string();
    let (code, _, stderr) = agent.cli(&["kv", "put", "-acquire", &format!("-session={s3}"), "cli/lock", "held"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(agent.get_json("/v1/kv/cli/lock").await[0]["Session"], json!(s3));
    let (code, _, stderr) = agent.cli(&["kv", "put", "-acquire", "-session=not-mine", "cli/lock", "x"]);
    assert_ne!(code, 0, "{stderr}");
    let (code, _, stderr) = agent.cli(&["kv", "put", "-release", &format!("-session={s3}"), "cli/lock", "free"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(agent.get_json("/v1/kv/cli/lock").await[0].get("Session"), None);
}

/// Consul's KVSGet: `GET /v1/kv/` names no key, so only a listing (`?recurse`, `?keys`) may
/// leave it out; otherwise 400 `Missing key name` at once, even for a blocking read (it was a
/// 404 that then parked a watcher for its whole wait).
#[tokio::test]
async fn a_read_without_a_key_is_a_400_unless_it_lists() {
    let agent = TestAgent::start().await;
    agent.put("/v1/kv/a", "1").await;
    let started = std::time::Instant::now();
    for path in ["/v1/kv/", "/v1/kv/?raw", "/v1/kv/?index=1000000&wait=30s"] {
        let response = agent.get(path).await;
        assert_eq!(response.status(), 400, "{path}");
        assert_eq!(response.text().await.unwrap(), "Missing key name", "{path}");
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "the blocking read was answered at once");
    assert_eq!(agent.get_json("/v1/kv/?recurse").await[0]["Key"], "a");
    assert_eq!(agent.get_json("/v1/kv/?keys").await, json!(["a"]));
    assert_eq!(agent.put("/v1/kv/", "x").await.status(), 400, "a write needs a key too");
}
