//! Durability: everything acknowledged survives `kill -9` and a restart on the same data dir,
//! and the data dir is private to the agent's user.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::json;

use crate::util::{TestAgent, eventually};

const KEYS: usize = 200;

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let mut agent = TestAgent::start().await;
    let body = json!({"Name": "durable", "Port": 9000, "Check": {"TTL": "60s", "Status": "passing"}});
    assert_eq!(agent.put("/v1/agent/service/register", body.to_string()).await.status(), 200);
    for i in 0..KEYS {
        let response = agent.put(&format!("/v1/kv/durable/{i:04}"), format!("value-{i}")).await;
        assert_eq!(response.status(), 200);
    }
    // SIGKILL right after the last 200 OK: no graceful flush of any kind.
    agent.restart().await;

    let keys = agent.get_json("/v1/kv/durable/?keys").await;
    assert_eq!(keys.as_array().unwrap().len(), KEYS, "every acknowledged key is back");
    for i in [0, KEYS / 2, KEYS - 1] {
        let value = agent.get(&format!("/v1/kv/durable/{i:04}?raw")).await.text().await.unwrap();
        assert_eq!(value, format!("value-{i}"));
    }
    let services = agent.get_json("/v1/agent/services").await;
    assert!(services["durable"].is_object(), "the agent still knows its service: {services}");
    let catalog = agent.get_json("/v1/catalog/service/durable").await;
    assert_eq!(catalog.as_array().unwrap().len(), 1);
    assert!(agent.log().contains("state machine reopened from rocksdb"));
}

/// Every entry under `dir` with its permission bits.
fn modes_under(dir: &Path, out: &mut Vec<(String, u32)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let metadata = std::fs::symlink_metadata(&path).unwrap();
        out.push((path.display().to_string(), metadata.permissions().mode() & 0o777));
        if metadata.is_dir() {
            modes_under(&path, out);
        }
    }
}

/// This process's umask, as the kernel reports it (the agent inherits it).
fn own_umask() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status.lines().find_map(|line| line.strip_prefix("Umask:")).unwrap().trim().to_string()
}

/// Regression (issue 11): the data dir was 0755 with files 0644, so any local user could read
/// the KV store. Now the dir is 0700 and the agent's files 0600; an existing open data dir is
/// tightened at start; script checks still run with the umask the agent started with.
#[tokio::test]
async fn the_data_dir_is_0700_and_its_files_0600() {
    let mut agent = TestAgent::start_with(&["-enable-script-checks"]).await;
    assert_eq!(agent.put("/v1/kv/secret", "s3cret").await.status(), 200);
    let data_dir = agent.data_dir();
    assert_eq!(std::fs::metadata(&data_dir).unwrap().permissions().mode() & 0o777, 0o700);
    let mut modes = Vec::new();
    modes_under(&data_dir, &mut modes);
    assert!(modes.iter().any(|(path, _)| path.ends_with("CURRENT")), "RocksDB's files are there: {modes:?}");
    for (path, mode) in &modes {
        let is_dir = Path::new(path).is_dir();
        assert_eq!(*mode, if is_dir { 0o700 } else { 0o600 }, "{path}: {mode:o}");
    }
    let check = json!({"ID": "umask", "Name": "umask", "Args": ["sh", "-c", "umask"], "Interval": "1s"});
    assert_eq!(agent.put("/v1/agent/check/register", check.to_string()).await.status(), 200);
    let output = async || agent.get_json("/v1/agent/checks").await["umask"]["Output"].as_str().unwrap_or("").trim().to_string();
    assert!(eventually(10_000, async || !output().await.is_empty()).await, "the script ran");
    assert_eq!(output().await, own_umask(), "scripts keep the umask the agent started with");

    agent.kill9();
    std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    agent.restart().await;
    assert_eq!(std::fs::metadata(&data_dir).unwrap().permissions().mode() & 0o777, 0o700, "tightened at start");
    assert!(agent.log().contains("tightened the data dir's permissions"), "{}", agent.log());
    assert_eq!(agent.get("/v1/kv/secret?raw").await.text().await.unwrap(), "s3cret");
}
