//! `/v1/txn`: atomic transactions of KV, Node, Service and Check operations; a rolled-back
//! transaction leaves nothing half applied, in the catalog or in the persisted rows.

use serde_json::{Value, json};

use crate::util::TestAgent;

fn b64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[tokio::test]
async fn transactions_apply_atomically_or_roll_back_with_409() {
    let agent = TestAgent::start().await;
    let ok = json!([
        {"KV": {"Verb": "set", "Key": "t/a", "Value": b64("1")}},
        {"KV": {"Verb": "set", "Key": "t/b", "Value": b64("2"), "Flags": 7}},
        {"KV": {"Verb": "get", "Key": "t/a"}},
    ]);
    let response = agent.put("/v1/txn", ok.to_string()).await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["Errors"], json!(null));
    assert_eq!(body["Results"].as_array().unwrap().len(), 3);
    assert_eq!(body["Results"][2]["KV"]["Value"], b64("1"));
    let index = body["Results"][0]["KV"]["ModifyIndex"].as_u64().unwrap();

    // The third operation fails, so the first two must not stick.
    let failing = json!([
        {"KV": {"Verb": "set", "Key": "t/a", "Value": b64("changed")}},
        {"KV": {"Verb": "delete", "Key": "t/b"}},
        {"KV": {"Verb": "cas", "Key": "t/c", "Value": b64("x"), "Index": index + 1000}},
        {"KV": {"Verb": "set", "Key": "t/d", "Value": b64("never")}},
    ]);
    let response = agent.put("/v1/txn", failing.to_string()).await;
    assert_eq!(response.status(), 409);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["Results"], json!(null));
    assert_eq!(body["Errors"][0]["OpIndex"], 2);
    assert_eq!(agent.get("/v1/kv/t/a?raw").await.text().await.unwrap(), "1");
    assert_eq!(agent.get("/v1/kv/t/b?raw").await.text().await.unwrap(), "2");
    assert_eq!(agent.get("/v1/kv/t/d").await.status(), 404);

    // Checks and CAS that hold commit together.
    let guarded = json!([
        {"KV": {"Verb": "check-index", "Key": "t/a", "Index": index}},
        {"KV": {"Verb": "check-not-exists", "Key": "t/zzz"}},
        {"KV": {"Verb": "cas", "Key": "t/a", "Value": b64("3"), "Index": index}},
        {"KV": {"Verb": "delete-tree", "Key": "t/b"}},
    ]);
    assert_eq!(agent.put("/v1/txn", guarded.to_string()).await.status(), 200);
    assert_eq!(agent.get("/v1/kv/t/a?raw").await.text().await.unwrap(), "3");
    assert_eq!(agent.get("/v1/kv/t/b").await.status(), 404);

    // Bad input: too many operations, unknown verb, bad base64, not a list.
    let many: Vec<_> = (0..129).map(|i| json!({"KV": {"Verb": "get-or-empty", "Key": format!("k{i}")}})).collect();
    assert_eq!(agent.put("/v1/txn", json!(many).to_string()).await.status(), 413);
    assert_eq!(agent.put("/v1/txn", json!([{"KV": {"Verb": "explode", "Key": "k"}}]).to_string()).await.status(), 400);
    assert_eq!(agent.put("/v1/txn", json!([{"KV": {"Verb": "set", "Key": "k", "Value": "%%%"}}]).to_string()).await.status(), 400);
    assert_eq!(agent.put("/v1/txn", "{}").await.status(), 400);
}

/// Registers node `txn-node` with service `web-1` (passing check `web-alive`) and a KV key,
/// all in one transaction, and returns the response body.
async fn seed_catalog(agent: &TestAgent) -> Value {
    let ops = json!([
        {"KV": {"Verb": "set", "Key": "svc/web/config", "Value": b64("on")}},
        {"Node": {"Verb": "set", "Node": {"Node": "txn-node", "Address": "10.1.2.3", "Meta": {"rack": "r1"}}}},
        {"Service": {"Verb": "set", "Node": "txn-node", "Service": {"ID": "web-1", "Service": "web", "Tags": ["v1"], "Port": 8080}}},
        {"Check": {"Verb": "set", "Check": {"Node": "txn-node", "CheckID": "web-alive", "Name": "web alive", "Status": "passing", "ServiceID": "web-1"}}},
        {"Node": {"Verb": "get", "Node": {"Node": "txn-node"}}},
    ]);
    let response = agent.put("/v1/txn", ops.to_string()).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Everything a client can see of the transaction's rows (the agent's own node excluded).
async fn visible_state(agent: &TestAgent) -> Value {
    let nodes: Vec<Value> = agent.get_json("/v1/catalog/nodes").await.as_array().unwrap().iter().filter(|n| n["Node"] != "test-node").cloned().collect();
    json!({
        "nodes": nodes,
        "node": agent.get_json("/v1/catalog/node/txn-node").await,
        "node_checks": agent.get_json("/v1/health/node/txn-node").await,
        "web": agent.get_json("/v1/catalog/service/web").await,
        "web_health": agent.get_json("/v1/health/service/web").await,
        "ghost": agent.get_json("/v1/catalog/service/ghost-svc").await,
        "kv": agent.get_json("/v1/kv/?recurse").await,
    })
}

#[tokio::test]
async fn catalog_operations_commit_together_and_show_in_catalog_and_health() {
    let agent = TestAgent::start().await;
    let body = seed_catalog(&agent).await;
    assert_eq!(body["Errors"], json!(null));
    let results = body["Results"].as_array().unwrap();
    assert_eq!(results.len(), 5, "{body}");
    assert_eq!(results[0]["KV"]["Key"], "svc/web/config");
    assert_eq!(results[1]["Node"]["Node"], "txn-node");
    assert_eq!(results[1]["Node"]["Address"], "10.1.2.3");
    assert_eq!(results[1]["Node"]["Meta"]["rack"], "r1");
    assert_eq!(results[1]["Node"]["Datacenter"], "dc1", "the agent's datacenter by default");
    assert_eq!(results[2]["Service"]["ID"], "web-1");
    assert_eq!(results[2]["Service"]["Service"], "web");
    assert_eq!(results[2]["Service"]["Port"], 8080);
    assert_eq!(results[3]["Check"]["CheckID"], "web-alive");
    assert_eq!(results[3]["Check"]["ServiceName"], "web");
    assert_eq!(results[3]["Check"]["Status"], "passing");
    assert_eq!(results[4]["Node"]["ModifyIndex"], results[1]["Node"]["ModifyIndex"]);

    let catalog = agent.get_json("/v1/catalog/service/web").await;
    assert_eq!(catalog.as_array().unwrap().len(), 1, "{catalog}");
    assert_eq!(catalog[0]["Node"], "txn-node");
    assert_eq!(catalog[0]["Address"], "10.1.2.3");
    assert_eq!(catalog[0]["ServiceID"], "web-1");
    assert_eq!(catalog[0]["ServiceTags"], json!(["v1"]));
    let healthy = agent.get_json("/v1/health/service/web?passing").await;
    assert_eq!(healthy.as_array().unwrap().len(), 1, "{healthy}");
    assert!(healthy[0]["Checks"].as_array().unwrap().iter().any(|c| c["CheckID"] == "web-alive" && c["Status"] == "passing"));

    // CAS with the indexes the first transaction returned: fail the check, retag the service.
    let service_index = results[2]["Service"]["ModifyIndex"].as_u64().unwrap();
    let check_index = results[3]["Check"]["ModifyIndex"].as_u64().unwrap();
    let ops = json!([
        {"Check": {"Verb": "cas", "Check": {"Node": "txn-node", "CheckID": "web-alive", "Name": "web alive", "Status": "critical", "ServiceID": "web-1", "ModifyIndex": check_index}}},
        // Retagging the service rewrites its checks' ServiceTags, so the check CAS goes first.
        {"Service": {"Verb": "cas", "Node": "txn-node", "Service": {"ID": "web-1", "Service": "web", "Tags": ["v2"], "Port": 8080, "ModifyIndex": service_index}}},
        {"Service": {"Verb": "get", "Node": "txn-node", "Service": {"ID": "web-1"}}},
        {"Check": {"Verb": "get", "Check": {"Node": "txn-node", "CheckID": "web-alive"}}},
    ]);
    let response = agent.put("/v1/txn", ops.to_string()).await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["Results"][2]["Service"]["Tags"], json!(["v2"]));
    assert_eq!(body["Results"][3]["Check"]["Status"], "critical");
    assert_eq!(body["Results"][3]["Check"]["ServiceTags"], json!(["v2"]));
    assert_eq!(agent.get_json("/v1/health/service/web?passing").await, json!([]));
    assert_eq!(agent.get_json("/v1/catalog/service/web?tag=v2").await.as_array().unwrap().len(), 1);

    // Deletes: the check, then the node with everything on it.
    let node_index = results[1]["Node"]["ModifyIndex"].as_u64().unwrap();
    let ops = json!([
        {"Check": {"Verb": "delete", "Check": {"Node": "txn-node", "CheckID": "web-alive"}}},
        {"Node": {"Verb": "delete-cas", "Node": {"Node": "txn-node", "ModifyIndex": node_index}}},
    ]);
    let response = agent.put("/v1/txn", ops.to_string()).await;
    let status = response.status();
    assert_eq!(status, 200, "{}", response.text().await.unwrap());
    assert_eq!(agent.get_json("/v1/catalog/service/web").await, json!([]));
    assert_eq!(agent.get_json("/v1/health/node/txn-node").await, json!([]));
}

#[tokio::test]
async fn a_failing_last_operation_leaves_no_catalog_or_kv_change_even_after_restart() {
    let mut agent = TestAgent::start().await;
    let seeded = seed_catalog(&agent).await;
    let service_index = seeded["Results"][2]["Service"]["ModifyIndex"].as_u64().unwrap();
    let before = visible_state(&agent).await;

    // Every kind of row changes, including cascades (node delete), and then the last op fails.
    let ops = json!([
        {"KV": {"Verb": "set", "Key": "svc/web/config", "Value": b64("off")}},
        {"KV": {"Verb": "set", "Key": "svc/new", "Value": b64("x")}},
        {"Node": {"Verb": "set", "Node": {"Node": "txn-node", "Address": "10.9.9.9", "Meta": {"rack": "r2"}}}},
        {"Node": {"Verb": "set", "Node": {"Node": "ghost", "Address": "10.6.6.6"}}},
        {"Service": {"Verb": "set", "Node": "ghost", "Service": {"ID": "ghost-1", "Service": "ghost-svc", "Port": 1}}},
        {"Service": {"Verb": "set", "Node": "txn-node", "Service": {"ID": "web-1", "Service": "web", "Tags": ["changed"], "Port": 9090}}},
        {"Check": {"Verb": "set", "Check": {"Node": "txn-node", "CheckID": "web-alive", "Name": "web alive", "Status": "critical", "ServiceID": "web-1"}}},
        {"Check": {"Verb": "set", "Check": {"Node": "ghost", "CheckID": "ghost-check", "Name": "ghost", "Status": "passing"}}},
        {"Node": {"Verb": "delete", "Node": {"Node": "txn-node"}}},
        {"Service": {"Verb": "cas", "Node": "txn-node", "Service": {"ID": "web-1", "Service": "web", "ModifyIndex": service_index}}},
    ]);
    let response = agent.put("/v1/txn", ops.to_string()).await;
    assert_eq!(response.status(), 409);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["Results"], json!(null));
    assert_eq!(
        body["Errors"],
        json!([{"OpIndex": 9, "What": "failed to set service \"web-1\" on node \"txn-node\", index is stale"}])
    );
    assert_eq!(visible_state(&agent).await, before, "nothing of the failed transaction is visible");

    // The state machine persisted the rows the transaction touched; they must be the restored ones.
    agent.restart().await;
    assert!(agent.log().contains("state machine reopened from rocksdb"));
    assert_eq!(visible_state(&agent).await, before, "the persisted rows are the rolled-back ones");
}

#[tokio::test]
async fn malformed_catalog_operations_get_a_one_line_400_and_nothing_applies() {
    let agent = TestAgent::start().await;
    let cases = [
        (json!([{"Node": {"Verb": "explode", "Node": {"Node": "n"}}}]), "unknown Node verb \"explode\""),
        (json!([{"Node": {"Verb": "set", "Node": {"Address": "10.0.0.1"}}}]), "Must provide node"),
        (json!([{"Service": {"Verb": "set", "Service": {"Service": "web"}}}]), "Must provide node"),
        (json!([{"Service": {"Verb": "set", "Node": "n", "Service": {"Port": 80}}}]), "Must provide service name"),
        (json!([{"Check": {"Verb": "set", "Check": {"Node": "n"}}}]), "Missing check ID"),
        (json!([{"Check": {"Verb": "set", "Check": {"Node": "n", "CheckID": "c", "Status": "sideways"}}}]), "Invalid check status"),
        (json!([{"Check": {"Verb": "get"}}]), "Check operation needs a Check object"),
        (json!([{"KV": {"Verb": "get", "Key": "k"}, "Node": {"Verb": "get", "Node": {"Node": "n"}}}]), "more than one operation type"),
        (json!([{"Session": {"Verb": "delete"}}]), "not supported"),
    ];
    for (ops, expected) in cases {
        let response = agent.put("/v1/txn", ops.to_string()).await;
        assert_eq!(response.status(), 400, "{ops}");
        let text = response.text().await.unwrap();
        assert!(text.contains(expected), "{ops} -> {text:?}, expected {expected:?}");
        assert!(text.starts_with("operation 0: ") || text.starts_with("Request decode failed"), "{text:?}");
        assert!(!text.trim_end().contains('\n'), "one line: {text:?}");
    }
    // A bad operation later in the list refuses the whole transaction before anything applies.
    let ops = json!([
        {"KV": {"Verb": "set", "Key": "bad/first", "Value": b64("1")}},
        {"Node": {"Verb": "set", "Node": {"Node": "bad-node", "Address": "10.0.0.1"}}},
        {"Node": {"Verb": "set", "Node": {"Address": "10.0.0.2"}}},
    ]);
    let response = agent.put("/v1/txn", ops.to_string()).await;
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().starts_with("operation 2: "));
    assert_eq!(agent.get("/v1/kv/bad/first").await.status(), 404);
    assert_eq!(agent.get_json("/v1/catalog/node/bad-node").await, json!(null));
}
