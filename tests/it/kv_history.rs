//! The KV history extension: `?history`, `cairn kv history`, `cairn kv rollback`, the
//! `kv_history_versions` bound, and history surviving restarts until tombstone GC.

use serde_json::json;

use crate::util::{TestAgent, eventually};

async fn agent_with(config: serde_json::Value) -> TestAgent {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let agent = TestAgent::start_with(&[&format!("-config-file={}", path.display())]).await;
    std::mem::forget(dir);
    agent
}

fn values(history: &serde_json::Value) -> Vec<String> {
    use base64::Engine;
    let decode = |v: &serde_json::Value| String::from_utf8(base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap_or("")).unwrap()).unwrap();
    history.as_array().unwrap().iter().map(|v| decode(&v["Value"])).collect()
}

#[tokio::test]
async fn history_lists_versions_and_rollback_restores_one() {
    let agent = agent_with(json!({"kv_history_versions": 3})).await;
    // The leader replicates the setting within a housekeeping tick: wait until a key written
    // over and over keeps exactly 3 versions.
    for _ in 0..4 {
        agent.put("/v1/kv/warmup", "w").await;
    }
    let settled = eventually(5_000, async || {
        agent.put("/v1/kv/warmup", "w").await;
        values(&agent.get_json("/v1/kv/warmup?history").await).len() == 3
    })
    .await;
    assert!(settled, "history bounded to 3 versions");
    for (i, value) in ["v1", "v2", "v3", "v4"].iter().enumerate() {
        assert_eq!(agent.put(&format!("/v1/kv/cfg/db?flags={i}"), *value).await.status(), 200);
    }
    let history = agent.get_json("/v1/kv/cfg/db?history").await;
    assert_eq!(values(&history), vec!["v4", "v3", "v2"], "newest first, the live version included");
    assert_eq!(history[2]["Flags"], 1);
    let newest = history[0]["ModifyIndex"].as_u64().unwrap();
    let oldest = history[2]["ModifyIndex"].as_u64().unwrap();
    assert!(newest > oldest, "newest first");

    // The CLI lists the same versions...
    let (code, stdout, stderr) = agent.cli(&["kv", "history", "cfg/db"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("ModifyIndex"), "{stdout}");
    assert_eq!(stdout.lines().count(), 4, "a header and 3 versions: {stdout}");
    assert!(stdout.contains(&oldest.to_string()));

    // ...and rolls back to one of them as a CAS write with its value and flags.
    let (code, _, stderr) = agent.cli(&["kv", "rollback", "cfg/db", &oldest.to_string()]);
    assert_eq!(code, 0, "{stderr}");
    let now = agent.get_json("/v1/kv/cfg/db").await;
    assert_eq!(now[0]["Value"], history[2]["Value"]);
    assert_eq!(now[0]["Flags"], history[2]["Flags"]);
    assert!(now[0]["ModifyIndex"].as_u64().unwrap() > newest, "a rollback is a new write");

    // Bad input: an index the key never had, a missing key, a non-numeric index.
    let (code, _, stderr) = agent.cli(&["kv", "rollback", "cfg/db", "999999"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("no version at index 999999"), "{stderr}");
    let (code, _, stderr) = agent.cli(&["kv", "history", "no/such/key"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("No history"), "{stderr}");
    let (code, _, _) = agent.cli(&["kv", "rollback", "cfg/db", "latest"]);
    assert_ne!(code, 0);
}

#[tokio::test]
async fn a_deleted_key_keeps_its_history_across_restart_until_its_tombstone_is_reaped() {
    // History is opt-in (agent default 1): ask for it, or it depends on when the leader
    // replicates the setting.
    let mut agent = agent_with(json!({"kv_tombstone_ttl": "3s", "kv_history_versions": 10})).await;
    agent.put("/v1/kv/gone", "first").await;
    agent.put("/v1/kv/gone", "second").await;
    assert_eq!(agent.delete("/v1/kv/gone").await.status(), 200);
    agent.restart().await;
    let history = agent.get_json("/v1/kv/gone?history").await;
    assert_eq!(values(&history), vec!["second", "first"], "history survives delete and restart");
    // Rolling back a deleted key re-creates it (CAS index 0 = create only).
    let index = history[0]["ModifyIndex"].as_u64().unwrap().to_string();
    let (code, _, stderr) = agent.cli(&["kv", "rollback", "gone", &index]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(agent.get("/v1/kv/gone?raw").await.text().await.unwrap(), "second");
    // Delete again; once the tombstone TTL passes, the leader reaps tombstone and history.
    assert_eq!(agent.delete("/v1/kv/gone").await.status(), 200);
    let reaped = eventually(15_000, async || agent.get("/v1/kv/gone?history").await.status() == 404).await;
    assert!(reaped, "history of a deleted key is reaped with its tombstone");
}

#[tokio::test]
async fn too_many_history_versions_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.json");
    std::fs::write(&path, r#"{"kv_history_versions": 5000}"#).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["agent", "-dev", "-http-port=0", "-dns-port=0", &format!("-config-file={}", path.display())])
        .output()
        .unwrap();
    assert_ne!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stderr).contains("kv_history_versions"), "{}", String::from_utf8_lossy(&output.stderr));
}
