//! Safety under faults: partitions, kills and pauses against a 3-server cluster, judged by
//! the linearizability checker; and proof that the checker catches a planted stale read.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;

use crate::cluster_util::TestCluster;
use crate::linearizability::{Event, Operation, check};

/// Per-request time limit for the recorded clients.
const CLIENT_TIMEOUT_MS: u64 = 3_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_minority_partition_cannot_commit_or_serve_consistent_reads() {
    let cluster = TestCluster::start(3).await;
    let old_leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    assert!(cluster.put(old_leader, "load/before", "1").await);
    cluster.partition(&[old_leader]).await;

    // The isolated leader cannot commit: the write fails instead of being acknowledged.
    let url = format!("{}/v1/kv/load/minority", cluster.servers[old_leader].http());
    let response = cluster.client.put(url).body("lost").timeout(Duration::from_secs(15)).send().await;
    assert!(response.is_err() || response.unwrap().status() != 200, "the minority side acknowledged a write");
    // And a ?consistent read there fails rather than answer possibly stale data.
    let url = format!("{}/v1/kv/load/before?consistent", cluster.servers[old_leader].http());
    let response = cluster.client.get(url).timeout(Duration::from_secs(15)).send().await;
    assert!(response.is_err() || response.unwrap().status() == 500, "a consistent read was served by the minority");

    // The majority elects a leader and keeps committing.
    let majority: Vec<usize> = (0..3).filter(|i| *i != old_leader).collect();
    let mut committed = false;
    for _ in 0..100 {
        if cluster.put(majority[0], "load/majority", "2").await {
            committed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(committed, "the majority side commits");

    // After healing, every state machine is identical and the minority's write is gone.
    cluster.heal().await;
    cluster.wait_identical(Duration::from_secs(20)).await;
    let url = format!("{}/v1/kv/load/minority?stale", cluster.servers[old_leader].http());
    assert_eq!(cluster.client.get(url).send().await.unwrap().status(), 404);
    let url = format!("{}/v1/kv/load/majority?stale&raw", cluster.servers[old_leader].http());
    assert_eq!(cluster.client.get(url).send().await.unwrap().text().await.unwrap(), "2");
}

/// One recorded client: random gets (`?consistent`), puts and CAS on two keys, each against a
/// random server.
async fn client_loop(id: usize, servers: Vec<String>, history: Arc<Mutex<Vec<Event>>>, start: Instant, run_for: Duration) {
    let client = reqwest::Client::builder().timeout(Duration::from_millis(CLIENT_TIMEOUT_MS)).build().unwrap();
    let now = || start.elapsed().as_nanos() as u64;
    let mut n = 0u64;
    while start.elapsed() < run_for {
        n += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
        let key = format!("lin/k{}", rand::random::<u8>() % 2);
        let server = &servers[rand::random::<usize>() % servers.len()];
        let value = format!("c{id}-{n}");
        let call_ns = now();
        match rand::random::<u8>() % 10 {
            0..=3 => {
                let response = client.get(format!("{server}/v1/kv/{key}?consistent")).send().await;
                let observed = match response {
                    Ok(r) if r.status() == 404 => Some(None),
                    Ok(r) if r.status() == 200 => r.json::<serde_json::Value>().await.ok().map(|v| {
                        v[0]["Value"].as_str().map(|b| String::from_utf8_lossy(&base64::engine::general_purpose::STANDARD.decode(b).unwrap_or_default()).into_owned())
                    }),
                    _ => None,
                };
                if let Some(observed) = observed {
                    history.lock().unwrap().push(Event { key, call_ns, return_ns: now(), operation: Operation::Get { observed } });
                }
            }
            4..=7 => {
                let response = client.put(format!("{server}/v1/kv/{key}")).body(value.clone()).send().await;
                let acknowledged = match response {
                    Ok(r) if r.status() == 200 => r.text().await.is_ok_and(|t| t == "true"),
                    _ => false,
                };
                let return_ns = if acknowledged { now() } else { u64::MAX };
                history.lock().unwrap().push(Event { key, call_ns, return_ns, operation: Operation::Put { value, acknowledged } });
            }
            _ => {
                // Read value and index, then CAS on the index.
                let Ok(read) = client.get(format!("{server}/v1/kv/{key}?consistent")).send().await else { continue };
                if read.status() != 200 {
                    continue;
                }
                let Ok(body) = read.json::<serde_json::Value>().await else { continue };
                let read_ns = now();
                let Some(expected) = body[0]["Value"].as_str().map(|b| String::from_utf8_lossy(&base64::engine::general_purpose::STANDARD.decode(b).unwrap_or_default()).into_owned()) else { continue };
                let index = body[0]["ModifyIndex"].as_u64().unwrap_or(0);
                history.lock().unwrap().push(Event { key: key.clone(), call_ns, return_ns: read_ns, operation: Operation::Get { observed: Some(expected.clone()) } });
                let cas_call = now();
                let response = client.put(format!("{server}/v1/kv/{key}?cas={index}")).body(value.clone()).send().await;
                let outcome = match response {
                    Ok(r) if r.status() == 200 => r.text().await.ok().map(|t| t == "true"),
                    _ => None,
                };
                let return_ns = if outcome.is_some() { now() } else { u64::MAX };
                history.lock().unwrap().push(Event { key, call_ns: cas_call, return_ns, operation: Operation::Cas { expected, new: value, outcome } });
            }
        }
    }
}

fn spawn_clients(cluster: &TestCluster, history: &Arc<Mutex<Vec<Event>>>, start: Instant, run_for: Duration) -> Vec<tokio::task::JoinHandle<()>> {
    let servers: Vec<String> = cluster.servers.iter().map(|s| s.http()).collect();
    (0..4).map(|id| tokio::spawn(client_loop(id, servers.clone(), history.clone(), start, run_for))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn histories_under_kills_pauses_and_partitions_are_linearizable() {
    let mut cluster = TestCluster::start(3).await;
    let history = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let run_for = Duration::from_secs(12);
    let clients = spawn_clients(&cluster, &history, start, run_for);
    // The nemesis: a partition, a pause and a kill, each healed before the next.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    cluster.partition(&[leader]).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    cluster.heal().await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let victim = (leader + 1) % 3;
    cluster.signal(victim, "STOP");
    tokio::time::sleep(Duration::from_millis(2000)).await;
    cluster.signal(victim, "CONT");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    cluster.kill9(leader);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    cluster.spawn(leader);
    for client in clients {
        client.await.unwrap();
    }
    let history = history.lock().unwrap().clone();
    let acknowledged = history.iter().filter(|e| e.return_ns != u64::MAX && !matches!(e.operation, Operation::Get { .. })).count();
    assert!(history.len() > 50 && acknowledged > 10, "enough history to judge: {} events, {acknowledged} acknowledged writes", history.len());
    if let Err(violation) = check(&history) {
        panic!("history of {} events is not linearizable: {violation}", history.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_checker_catches_consistent_reads_served_by_a_follower() {
    let cluster = TestCluster::start(3).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    let stale = (leader + 1) % 3;
    // The planted bug: `?consistent` served from local state. Cut the follower off so its
    // state goes stale, then read from it while writes continue on the majority.
    cluster.set_faults(stale, &[leader, (leader + 2) % 3], true).await;
    cluster.set_faults(leader, &[stale], false).await;
    cluster.set_faults((leader + 2) % 3, &[stale], false).await;
    let start = Instant::now();
    let mut history = Vec::new();
    for n in 0..20 {
        let value = format!("v{n}");
        let call_ns = start.elapsed().as_nanos() as u64;
        let acknowledged = cluster.put(leader, "lin/k0", &value).await;
        history.push(Event { key: "lin/k0".into(), call_ns, return_ns: if acknowledged { start.elapsed().as_nanos() as u64 } else { u64::MAX }, operation: Operation::Put { value, acknowledged } });
        let call_ns = start.elapsed().as_nanos() as u64;
        let url = format!("{}/v1/kv/lin/k0?consistent&raw", cluster.servers[stale].http());
        let response = cluster.client.get(url).send().await.unwrap();
        let observed = if response.status() == 404 { None } else { Some(response.text().await.unwrap()) };
        history.push(Event { key: "lin/k0".into(), call_ns, return_ns: start.elapsed().as_nanos() as u64, operation: Operation::Get { observed } });
    }
    assert!(check(&history).is_err(), "the checker must reject stale consistent reads");
}
