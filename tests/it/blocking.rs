//! Blocking queries: `?index` returns on a change, and on timeout after `?wait`.

use std::time::{Duration, Instant};

use crate::util::TestAgent;

fn index_of(response: &reqwest::Response) -> u64 {
    response.headers()["x-consul-index"].to_str().unwrap().parse().unwrap()
}

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
