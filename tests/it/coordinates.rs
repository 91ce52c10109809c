//! Network coordinates (issue 10, item 9) on 3 servers and 3 client agents: every agent's
//! gossip coordinate reaches the catalog, `cairn rtt` estimates between nodes, `?near=` sorts
//! results by estimated RTT (nodes without a coordinate last, `_agent` being the asking
//! client's own node), bad updates are refused, and a node's coordinate goes with the node.

use std::time::Duration;

use serde_json::{Value, json};

use crate::cluster_util::TestCluster;
use crate::util::eventually;

const CLIENTS: usize = 3;

async fn get(cluster: &TestCluster, i: usize, path: &str) -> Option<(reqwest::StatusCode, reqwest::header::HeaderMap, Value)> {
    let url = format!("{}{path}", cluster.servers[i].http());
    let response = cluster.client.get(url).timeout(Duration::from_secs(5)).send().await.ok()?;
    let (status, headers) = (response.status(), response.headers().clone());
    let body = response.json().await.unwrap_or(Value::Null);
    Some((status, headers, body))
}

async fn put(cluster: &TestCluster, i: usize, path: &str, body: &str) -> (u16, String) {
    let url = format!("{}{path}", cluster.servers[i].http());
    let response = cluster.client.put(url).body(body.to_string()).timeout(Duration::from_secs(10)).send().await.expect("PUT");
    (response.status().as_u16(), response.text().await.unwrap_or_default())
}

/// The node names `/v1/coordinate/nodes` lists through agent `i`.
async fn coordinate_nodes(cluster: &TestCluster, i: usize) -> Vec<String> {
    let Some((_, _, body)) = get(cluster, i, "/v1/coordinate/nodes").await else { return Vec::new() };
    body.as_array().map(|a| a.iter().filter_map(|e| e["Node"].as_str().map(String::from)).collect()).unwrap_or_default()
}

/// An 8-dimensional coordinate `x_s` seconds along the first axis.
fn far_coordinate(x_s: f64) -> Value {
    json!({"Vec": [x_s, 0, 0, 0, 0, 0, 0, 0], "Error": 0.1, "Adjustment": 0, "Height": 0.00001})
}

fn run_cli(args: &[&str]) -> (i32, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_cairn")).args(args).env_remove("CAIRN_HTTP_ADDR").output().expect("run the cli");
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// The node names of a list answer, in order (`Node` is a string or, in health entries, an object).
fn names(body: &Value) -> Vec<String> {
    let name = |e: &Value| e["Node"].as_str().or_else(|| e["Node"]["Node"].as_str()).unwrap_or("").to_string();
    body.as_array().map(|a| a.iter().map(name).collect()).unwrap_or_default()
}

#[tokio::test]
async fn coordinates_reach_the_catalog_and_sort_results_by_rtt() {
    let mut cluster = TestCluster::start(3).await;
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    let clients: Vec<usize> = (0..CLIENTS).map(|_| cluster.add_client(&[])).collect();
    let all: Vec<String> = cluster.servers.iter().map(|s| s.name.clone()).collect();

    // Every agent, servers and clients, sends its gossip coordinate to the catalog.
    let complete = eventually(60_000, async || {
        let seen = coordinate_nodes(&cluster, 0).await;
        all.iter().all(|name| seen.contains(name))
    })
    .await;
    assert!(complete, "coordinates of {all:?}, saw {:?}", coordinate_nodes(&cluster, 0).await);
    let (status, headers, body) = get(&cluster, clients[0], "/v1/coordinate/nodes").await.expect("through a client");
    assert_eq!(status, 200);
    assert!(headers.get("x-consul-index").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok()).is_some_and(|i| i > 0));
    let entry = body.as_array().and_then(|a| a.iter().find(|e| e["Node"] == "c1")).cloned().expect("c1's coordinate");
    assert_eq!(entry["Segment"], "");
    assert_eq!(entry["Coord"]["Vec"].as_array().map(Vec::len), Some(8), "{entry}");
    let (status, _, body) = get(&cluster, 0, "/v1/coordinate/datacenters").await.expect("datacenters");
    assert_eq!(status, 200);
    assert_eq!(body[0]["AreaID"], "WAN");
    assert_eq!(body[0]["Datacenter"], "dc1");

    // `cairn rtt`, between two named nodes and from the agent's own node.
    let http = format!("-http-addr={}", cluster.servers[clients[0]].http());
    let (code, out, err) = run_cli(&["rtt", &http, "s1", "c2"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("Estimated s1 <-> c2 rtt: ") && out.trim_end().ends_with(" ms (using LAN coordinates)"), "{out}");
    let (code, out, err) = run_cli(&["rtt", &http, "s2"]);
    assert!(code == 0 && out.starts_with("Estimated s2 <-> c1 rtt: "), "{out}{err}");
    let (code, _, err) = run_cli(&["rtt", &http, "nope"]);
    assert_eq!((code, err.trim()), (1, "Could not find a coordinate for node \"nope\""));

    // External nodes far from the agents (which sit within a few ms of the origin): ext-a,
    // ext-b and ext-c with coordinates 1 ms and 9 ms apart, ext-d without one.
    for (node, x_s) in [("ext-a", Some(0.5)), ("ext-b", Some(0.501)), ("ext-c", Some(0.51)), ("ext-d", None)] {
        let register = json!({"Node": node, "Address": "10.1.1.1", "Service": {"Service": "web", "Port": 80}});
        assert_eq!(put(&cluster, 0, "/v1/catalog/register", &register.to_string()).await.0, 200);
        if let Some(x_s) = x_s {
            let update = json!({"Node": node, "Segment": "", "Coord": far_coordinate(x_s)});
            let (status, body) = put(&cluster, clients[1], "/v1/coordinate/update", &update.to_string()).await;
            assert_eq!(status, 200, "{body}");
        }
    }
    let stored = eventually(10_000, async || get(&cluster, 0, "/v1/coordinate/node/ext-c").await.is_some_and(|(s, _, _)| s == 200)).await;
    assert!(stored, "ext-c's coordinate is stored");
    let by_rtt = ["ext-b", "ext-a", "ext-c", "ext-d"];
    for path in ["/v1/catalog/service/web?near=ext-b", "/v1/health/service/web?near=ext-b"] {
        for agent in [0, clients[2]] {
            let (_, _, body) = get(&cluster, agent, path).await.expect("answer");
            assert_eq!(names(&body), by_rtt, "{path} on agent {agent}");
        }
    }
    let (_, _, body) = get(&cluster, 1, "/v1/catalog/nodes?near=ext-b").await.expect("nodes");
    let nodes = names(&body);
    assert_eq!(nodes.len(), all.len() + 4);
    assert_eq!(nodes[..3], ["ext-b", "ext-a", "ext-c"], "{nodes:?}");
    assert_eq!(nodes.last().map(String::as_str), Some("ext-d"), "no coordinate: last");
    // Without `near`, the order is the catalog's (by name).
    let (_, _, body) = get(&cluster, 0, "/v1/catalog/service/web").await.expect("service");
    assert_eq!(names(&body), ["ext-a", "ext-b", "ext-c", "ext-d"]);

    // `near=_agent` through a client means that client's node: put c1 next to ext-c (its own
    // sync may move it back between the two requests, so try a few times).
    let near_agent = eventually(20_000, async || {
        let update = json!({"Node": "c1", "Coord": far_coordinate(0.52)});
        put(&cluster, clients[0], "/v1/coordinate/update", &update.to_string()).await;
        let answer = get(&cluster, clients[0], "/v1/catalog/service/web?near=_agent").await;
        answer.is_some_and(|(_, _, body)| names(&body) == ["ext-c", "ext-b", "ext-a", "ext-d"])
    })
    .await;
    assert!(near_agent, "near=_agent sorts from the asking client's node");

    // Bad updates: malformed bodies are 400s; Consul's 500s for invalid or incompatible ones.
    for (body, status) in [
        ("not json", 400),
        (r#"{"Node": "ext-a", "Coord": {"Vec": "x"}}"#, 400),
        (r#"{"Node": "ext-a"}"#, 400),
        (r#"{"Node": "ext-a", "Coord": {"Vec": [1, 2], "Error": 1}}"#, 500),
        (r#"{"Node": "ext-a", "Coord": {"Vec": [0,0,0,0,0,0,0,0], "Error": -1}}"#, 500),
    ] {
        for agent in [0, clients[1]] {
            assert_eq!(put(&cluster, agent, "/v1/coordinate/update", body).await.0, status, "{body} on agent {agent}");
        }
    }

    // A node's coordinate is deleted with the node.
    let deregister = json!({"Node": "ext-a"}).to_string();
    assert_eq!(put(&cluster, 0, "/v1/catalog/deregister", &deregister).await.0, 200);
    let gone = eventually(10_000, async || get(&cluster, 0, "/v1/coordinate/node/ext-a").await.is_some_and(|(s, _, _)| s == 404)).await;
    assert!(gone, "ext-a's coordinate went with the node");
}
