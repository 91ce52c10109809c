//! Durability: everything acknowledged survives `kill -9` and a restart on the same data dir.

use serde_json::json;

use crate::util::TestAgent;

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
