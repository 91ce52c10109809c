//! `/v1/txn`: atomic KV transactions; a rolled-back transaction leaves nothing half applied.

use serde_json::json;

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
