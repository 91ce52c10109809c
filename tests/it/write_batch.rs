//! Write batching (`raft::write_batch`) seen from outside: concurrent writes to a 3-server
//! cluster share Raft entries, yet each gets its own `ModifyIndex` and its own answer, CAS
//! stays exactly-once, and every server ends with the same state.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::cluster_util::TestCluster;

/// Concurrent writers in each round; enough that writes queue behind one another.
const WRITERS: usize = 48;

#[tokio::test]
async fn concurrent_writes_are_batched_yet_each_gets_its_own_index_and_answer() {
    let cluster = TestCluster::start(3).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let http = cluster.servers[leader].http();
    let client = cluster.client.clone();

    // Distinct keys, written all at once, through the leader and (forwarded) the followers.
    let writes = (0..WRITERS).map(|i| {
        let (client, url) = (client.clone(), format!("{}/v1/kv/batch/k{i:02}", cluster.servers[i % 3].http()));
        tokio::spawn(async move { client.put(url).body(format!("v{i}")).send().await.unwrap().text().await.unwrap() })
    });
    for write in writes.collect::<Vec<_>>() {
        assert_eq!(write.await.unwrap(), "true");
    }

    // Many CAS writes against the same index at once: exactly one may win, batched or not.
    let created: serde_json::Value = client.get(format!("{http}/v1/kv/batch/k00")).send().await.unwrap().json().await.unwrap();
    let cas = created[0]["ModifyIndex"].as_u64().unwrap();
    let attempts = (0..WRITERS).map(|i| {
        let (client, url) = (client.clone(), format!("{http}/v1/kv/batch/k00?cas={cas}"));
        tokio::spawn(async move { client.put(url).body(format!("cas{i}")).send().await.unwrap().text().await.unwrap() })
    });
    let mut won = 0;
    for attempt in attempts.collect::<Vec<_>>() {
        if attempt.await.unwrap() == "true" {
            won += 1;
        }
    }
    assert_eq!(won, 1, "exactly one CAS against index {cas} succeeds");

    let entries: serde_json::Value = client.get(format!("{http}/v1/kv/batch/?recurse")).send().await.unwrap().json().await.unwrap();
    let entries = entries.as_array().unwrap();
    assert_eq!(entries.len(), WRITERS);
    let indexes: BTreeSet<u64> = entries.iter().map(|e| e["ModifyIndex"].as_u64().unwrap()).collect();
    assert_eq!(indexes.len(), WRITERS, "every write has its own ModifyIndex: {indexes:?}");

    // Batches took more indexes than Raft entries: the catalog's index ran ahead of the log.
    let me: serde_json::Value = client.get(format!("{http}/v1/agent/self")).send().await.unwrap().json().await.unwrap();
    let raft_applied: u64 = me["Stats"]["raft"]["fsm_applied_index"].as_str().unwrap().parse().unwrap();
    let highest = *indexes.last().unwrap();
    assert!(highest > raft_applied, "writes were batched: ModifyIndex {highest} > Raft index {raft_applied}");

    // Every server applied the same batches to the same state.
    cluster.wait_identical(Duration::from_secs(10)).await;
}
