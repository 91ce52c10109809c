//! The dashboard's endpoints (`/v1/internal/ui/*`, `docs/ui-endpoints.md`) on a real agent:
//! the summaries agree with `/v1/health/service`, `/v1/catalog/*` and `/v1/health/*`; they
//! block on check changes and not on KV writes; `?filter=` and ACLs apply as in Consul; an
//! unknown node is a 404; bad input gets Consul's 400s. On a 3-server cluster, the Raft view
//! shows one leader, and after `kill -9` of the leader a new one and the dead server failed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cluster_util::TestCluster;
use crate::util::{TestAgent, Watched, eventually, index_of};

async fn register(agent: &TestAgent, body: Value) {
    register_with(agent, body, None).await;
}

async fn register_with(agent: &TestAgent, body: Value, token: Option<&str>) {
    let mut request = agent.client.put(agent.url("/v1/catalog/register")).body(body.to_string());
    if let Some(token) = token {
        request = request.header("X-Consul-Token", token);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
}

fn check(id: &str, service_id: &str, status: &str) -> Value {
    json!({"CheckID": id, "Name": id, "ServiceID": service_id, "Status": status})
}

/// ext1: a warning node check; web1 (tags a, b; from k8s) passing, web2 (tag c) passing.
/// ext2: a passing node check; web3 critical, db1 passing. ext3: nothing but its node.
async fn seed(agent: &TestAgent) {
    seed_with(agent, None).await;
}

async fn seed_with(agent: &TestAgent, token: Option<&str>) {
    register_with(agent, json!({"Node": "ext1", "Address": "10.1.0.1", "Check": check("ext1-disk", "", "warning")}), token).await;
    register_with(agent, json!({"Node": "ext2", "Address": "10.1.0.2", "Check": check("ext2-disk", "", "passing")}), token).await;
    register_with(agent, json!({"Node": "ext3", "Address": "10.1.0.3"}), token).await;
    let instances = [
        ("ext1", "web1", "web", json!(["b", "a"]), json!({"external-source": "k8s"}), "passing"),
        ("ext1", "web2", "web", json!(["c"]), json!({}), "passing"),
        ("ext2", "web3", "web", json!([]), json!({}), "critical"),
        ("ext2", "db1", "db", json!([]), json!({}), "passing"),
    ];
    for (node, id, name, tags, meta, status) in instances {
        let address = if node == "ext1" { "10.1.0.1" } else { "10.1.0.2" };
        let service = json!({"ID": id, "Service": name, "Tags": tags, "Meta": meta, "Port": 80});
        register_with(agent, json!({"Node": node, "Address": address, "Service": service, "Checks": [check(&format!("{id}-alive"), id, status)]}), token).await;
    }
}

/// What a service's summary must say, from `/v1/health/service/<name>`: instances, nodes, and
/// the distinct (node, check) statuses.
async fn expected_from_health(agent: &TestAgent, name: &str) -> (usize, Vec<String>, BTreeMap<String, usize>) {
    let entries = agent.get_json(&format!("/v1/health/service/{name}")).await;
    let entries = entries.as_array().unwrap();
    let nodes: BTreeSet<String> = entries.iter().map(|e| e["Node"]["Node"].as_str().unwrap().to_string()).collect();
    let mut distinct = BTreeMap::new();
    for entry in entries {
        for check in entry["Checks"].as_array().unwrap() {
            distinct.insert((check["Node"].to_string(), check["CheckID"].to_string()), check["Status"].as_str().unwrap().to_string());
        }
    }
    let mut counts = BTreeMap::new();
    for status in distinct.values() {
        *counts.entry(status.clone()).or_insert(0) += 1;
    }
    (entries.len(), nodes.into_iter().collect(), counts)
}

fn strings(value: &Value) -> Vec<String> {
    value.as_array().map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect()).unwrap_or_default()
}

#[tokio::test]
async fn summaries_agree_with_the_catalog_and_health_endpoints() {
    let agent = TestAgent::start().await;
    seed(&agent).await;
    tracing::info!("phase: every service summary matches /v1/health/service and /v1/catalog/services");
    let response = agent.get("/v1/internal/ui/services").await;
    assert_eq!(response.status(), 200);
    assert!(index_of(&response) > 0);
    let summaries: Value = response.json().await.unwrap();
    let catalog_services = agent.get_json("/v1/catalog/services").await;
    let names: Vec<&str> = summaries.as_array().unwrap().iter().map(|s| s["Name"].as_str().unwrap()).collect();
    let catalog_names: Vec<&str> = catalog_services.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(names, catalog_names, "one summary per service, by name");
    for summary in summaries.as_array().unwrap() {
        let name = summary["Name"].as_str().unwrap();
        let (instances, nodes, counts) = expected_from_health(&agent, name).await;
        assert_eq!(summary["InstanceCount"], instances, "{summary}");
        assert_eq!(strings(&summary["Nodes"]), nodes, "{summary}");
        assert_eq!(strings(&summary["Tags"]), strings(&catalog_services[name]), "{summary}");
        for (field, status) in [("ChecksPassing", "passing"), ("ChecksWarning", "warning"), ("ChecksCritical", "critical")] {
            assert_eq!(summary[field], counts.get(status).copied().unwrap_or(0), "{field} of {summary}");
        }
        assert_eq!(summary["GatewayConfig"], json!({}));
        assert!(summary.get("Kind").is_none(), "typical services omit Kind: {summary}");
    }
    let web = summaries.as_array().unwrap().iter().find(|s| s["Name"] == "web").unwrap();
    assert_eq!((web["ChecksPassing"].as_u64(), web["ChecksWarning"].as_u64(), web["ChecksCritical"].as_u64()), (Some(3), Some(1), Some(1)));
    assert_eq!(web["ExternalSources"], json!(["k8s"]));
    assert_eq!(web["Tags"], json!(["a", "b", "c"]));

    tracing::info!("phase: the node dump matches /v1/catalog/node-services and /v1/health/node");
    let dump = agent.get_json("/v1/internal/ui/nodes").await;
    let catalog_nodes = agent.get_json("/v1/catalog/nodes").await;
    assert_eq!(dump.as_array().unwrap().len(), catalog_nodes.as_array().unwrap().len());
    for info in dump.as_array().unwrap() {
        let node = info["Node"].as_str().unwrap();
        let services = agent.get_json(&format!("/v1/catalog/node-services/{node}")).await;
        let checks = agent.get_json(&format!("/v1/health/node/{node}")).await;
        assert_eq!(info["Services"], services["Services"], "{node}");
        assert_eq!(info["Checks"], checks, "{node}");
        assert_eq!(info["ID"], services["Node"]["ID"]);
        assert_eq!(agent.get_json(&format!("/v1/internal/ui/node/{node}")).await, *info, "node/:node is the dump's entry");
    }
    let unknown = agent.get("/v1/internal/ui/node/nowhere").await;
    assert_eq!(unknown.status(), 404);
    assert!(unknown.headers().get("x-consul-index").is_some());
    assert_eq!(unknown.text().await.unwrap(), "", "Consul's 404 has an empty body");

    tracing::info!("phase: the overview's totals");
    let overview = agent.get_json("/v1/internal/ui/catalog-overview").await;
    assert_eq!(overview["Nodes"][0]["Total"], catalog_nodes.as_array().unwrap().len());
    assert!(overview["Nodes"][0].get("Name").is_none());
    let overview_names: Vec<&str> = overview["Services"].as_array().unwrap().iter().map(|s| s["Name"].as_str().unwrap()).collect();
    assert_eq!(overview_names, catalog_names);
    let web = overview["Services"].as_array().unwrap().iter().find(|s| s["Name"] == "web").unwrap();
    assert_eq!(*web, json!({"Name": "web", "Total": 3, "Passing": 2, "Warning": 0, "Critical": 1}), "instances by their service checks");
    let all_checks = agent.get_json("/v1/health/state/any").await;
    let total: u64 = overview["Checks"].as_array().unwrap().iter().map(|c| c["Total"].as_u64().unwrap()).sum();
    assert_eq!(total as usize, all_checks.as_array().unwrap().len());
}

#[tokio::test]
async fn filters_and_bad_input_get_consuls_answers() {
    let agent = TestAgent::start().await;
    seed(&agent).await;
    tracing::info!("phase: ?filter= runs on instances before the summary, and on node infos");
    let filtered = agent.get_json("/v1/internal/ui/services?filter=Node.Node%20%3D%3D%20%22ext2%22").await;
    let names: Vec<&str> = filtered.as_array().unwrap().iter().map(|s| s["Name"].as_str().unwrap()).collect();
    assert_eq!(names, ["db", "web"]);
    let web = &filtered[1];
    assert_eq!((web["InstanceCount"].as_u64(), web["Nodes"].clone()), (Some(1), json!(["ext2"])));
    assert_eq!((web["ChecksPassing"].as_u64(), web["ChecksCritical"].as_u64()), (Some(1), Some(1)));
    let tagged = agent.get_json("/v1/internal/ui/services?filter=%22c%22%20in%20Service.Tags").await;
    assert_eq!(tagged.as_array().unwrap().len(), 1);
    assert_eq!(tagged[0]["InstanceCount"], 1);
    let nodes = agent.get_json("/v1/internal/ui/nodes?filter=Node%20%3D%3D%20%22ext1%22").await;
    assert_eq!(nodes.as_array().unwrap().len(), 1);
    assert_eq!(nodes[0]["Services"].as_array().unwrap().len(), 2);

    tracing::info!("phase: bad input");
    for path in ["/v1/internal/ui/services?filter=Node.Node%20%3D%3D", "/v1/internal/ui/nodes?filter=%3D%3D%3D"] {
        let response = agent.get(path).await;
        assert_eq!(response.status(), 400, "{path}");
        assert!(response.text().await.unwrap().contains("Failed to create boolean expression evaluator"));
    }
    for path in ["/v1/internal/ui/services?index=abc", "/v1/internal/ui/nodes?index=-1", "/v1/internal/ui/catalog-overview?index=x", "/v1/internal/ui/node/ext1?index=1.5"] {
        let response = agent.get(path).await;
        assert_eq!(response.status(), 400, "{path}");
        assert_eq!(response.text().await.unwrap(), "Invalid index");
    }
    assert_eq!(agent.get("/v1/internal/ui/services?wait=forever&index=1").await.status(), 400);
    assert_eq!(agent.get("/v1/internal/ui/services?dc=elsewhere").await.status(), 500);
}

#[tokio::test]
async fn blocking_wakes_on_a_check_change_and_not_on_a_kv_write() {
    let agent = TestAgent::start().await;
    seed(&agent).await;
    let paths = ["/v1/internal/ui/services", "/v1/internal/ui/nodes", "/v1/internal/ui/catalog-overview", "/v1/internal/ui/node/ext2"];
    tracing::info!("phase: a KV write does not wake them");
    // The agent's own early syncs may still rewrite its node meanwhile (a real catalog
    // change, which rightly wakes them): then the phase runs again.
    let mut attempts = 0;
    let indexes = loop {
        attempts += 1;
        let mut indexes = Vec::new();
        for path in paths {
            indexes.push(index_of(&agent.get(path).await));
        }
        let waiters: Vec<_> = paths.iter().zip(&indexes).map(|(path, index)| agent.watch(path, *index, "1500ms")).collect();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(agent.put("/v1/kv/unrelated", "x").await.status(), 200);
        let mut catalog_changed = false;
        for (waiter, index) in waiters.into_iter().zip(&indexes) {
            let Watched { elapsed, index: new_index, .. } = waiter.await.unwrap();
            catalog_changed |= new_index != *index;
            assert!(new_index != *index || elapsed >= Duration::from_millis(1500), "returned after {elapsed:?} with the same index");
        }
        if !catalog_changed {
            break indexes;
        }
        assert!(attempts < 5, "the catalog kept changing");
    };

    tracing::info!("phase: a check's status change wakes every one of them, shared watchers included");
    let mut waiters: Vec<_> = paths.iter().zip(&indexes).map(|(path, index)| agent.watch(path, *index, "30s")).collect();
    waiters.push(agent.watch(paths[0], indexes[0], "30s"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let service = json!({"ID": "web3", "Service": "web", "Port": 80});
    register(&agent, json!({"Node": "ext2", "Address": "10.1.0.2", "Service": service, "Checks": [check("web3-alive", "web3", "passing")]})).await;
    // The registration's index: every watcher must get there. One may first be woken by the
    // agent's own sync (a real catalog change, as in the phase above); it then watches on.
    let registered = index_of(&agent.get(paths[0]).await);
    let mut bodies = Vec::new();
    for (waiter, (path, index)) in waiters.into_iter().zip(paths.iter().chain([&paths[0]]).zip(indexes.iter().chain([&indexes[0]]))) {
        let mut watched = waiter.await.unwrap();
        let mut wakes = 1;
        loop {
            assert!(watched.elapsed < Duration::from_secs(10), "woke after {:?}", watched.elapsed);
            assert!(watched.index > *index, "{path} returned its old index {index}");
            if watched.index >= registered {
                break;
            }
            wakes += 1;
            assert!(wakes <= 5, "{path} woke {wakes} times without reaching index {registered}");
            watched = agent.watch(path, watched.index, "30s").await.unwrap();
        }
        bodies.push(watched.body);
    }
    let web = bodies[0].as_array().unwrap().iter().find(|s| s["Name"] == "web").unwrap();
    assert_eq!((web["ChecksPassing"].as_u64(), web["ChecksCritical"].as_u64()), (Some(4), Some(0)), "{web}");
    assert_eq!(bodies[0], bodies[4], "identical watchers get the same answer");
    assert_eq!(bodies[3]["Checks"].as_array().unwrap().iter().find(|c| c["CheckID"] == "web3-alive").unwrap()["Status"], "passing");
}

const MANAGEMENT: &str = "6a1f2e3d-4c5b-4a69-8877-665544332211";

async fn acl_call(agent: &TestAgent, method: reqwest::Method, path: &str, token: &str, body: Option<Value>) -> reqwest::Response {
    let mut request = agent.client.request(method, agent.url(path)).header("X-Consul-Token", token);
    if let Some(body) = body {
        request = request.body(body.to_string());
    }
    request.send().await.unwrap()
}

async fn token_with_rules(agent: &TestAgent, name: &str, rules: &str) -> String {
    use reqwest::Method;
    let policy = acl_call(agent, Method::PUT, "/v1/acl/policy", MANAGEMENT, Some(json!({"Name": name, "Rules": rules}))).await;
    let status = policy.status();
    let text = policy.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    let policy: Value = serde_json::from_str(&text).unwrap();
    let token: Value = acl_call(agent, Method::PUT, "/v1/acl/token", MANAGEMENT, Some(json!({"Policies": [{"ID": policy["ID"]}]}))).await.json().await.unwrap();
    token["SecretID"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn acls_filter_the_summaries_as_the_catalog() {
    use reqwest::Method;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acl.json");
    let config = json!({"acl": {"enabled": true, "default_policy": "deny", "tokens": {"initial_management": MANAGEMENT}}});
    std::fs::write(&file, config.to_string()).unwrap();
    let agent = TestAgent::start_with_token(&[&format!("-config-file={}", file.display())], Some(MANAGEMENT)).await;
    seed_with(&agent, Some(MANAGEMENT)).await;
    let web_reader = token_with_rules(&agent, "web-reader", "service \"web\" { policy = \"read\" }\nnode_prefix \"\" { policy = \"read\" }").await;
    tracing::info!("phase: a web-only token sees web's summary and web's rows, marked filtered");
    let services = acl_call(&agent, Method::GET, "/v1/internal/ui/services", &web_reader, None).await;
    assert_eq!(services.headers()["x-consul-results-filtered-by-acls"], "true");
    let services: Value = services.json().await.unwrap();
    let names: Vec<&str> = services.as_array().unwrap().iter().map(|s| s["Name"].as_str().unwrap()).collect();
    assert_eq!(names, ["web"]);
    let nodes = acl_call(&agent, Method::GET, "/v1/internal/ui/nodes", &web_reader, None).await;
    assert_eq!(nodes.headers()["x-consul-results-filtered-by-acls"], "true");
    let nodes: Value = nodes.json().await.unwrap();
    let ext2 = nodes.as_array().unwrap().iter().find(|n| n["Node"] == "ext2").unwrap();
    let ids: Vec<&str> = ext2["Services"].as_array().unwrap().iter().map(|s| s["ID"].as_str().unwrap()).collect();
    assert_eq!(ids, ["web3"], "db1 is hidden");
    assert!(ext2["Checks"].as_array().unwrap().iter().all(|c| c["ServiceName"] != "db"), "and so are its checks");
    let management: Value = acl_call(&agent, Method::GET, "/v1/internal/ui/services", MANAGEMENT, None).await.json().await.unwrap();
    assert!(management.as_array().unwrap().len() > 1);

    tracing::info!("phase: no token sees nothing; the overview and the raft view need operator:read");
    let anonymous: Value = agent.client.get(agent.url("/v1/internal/ui/services")).send().await.unwrap().json().await.unwrap();
    assert_eq!(anonymous, json!([]));
    let hidden = acl_call(&agent, Method::GET, "/v1/internal/ui/node/ext2", "", None).await;
    assert_eq!(hidden.status(), 404, "a node the token may not read is unknown");
    for path in ["/v1/internal/ui/catalog-overview", "/v1/internal/ui/raft"] {
        assert_eq!(acl_call(&agent, Method::GET, path, &web_reader, None).await.status(), 403, "{path}");
    }
    let operator = token_with_rules(&agent, "operator", r#"operator = "read""#).await;
    assert_eq!(acl_call(&agent, Method::GET, "/v1/internal/ui/catalog-overview", &operator, None).await.status(), 200);
    assert_eq!(acl_call(&agent, Method::GET, "/v1/internal/ui/raft", &operator, None).await.status(), 200);
}

async fn raft_view(cluster: &TestCluster, i: usize, query: &str) -> Option<(String, Value)> {
    let url = format!("{}/v1/internal/ui/raft{query}", cluster.servers[i].http());
    let response = cluster.client.get(url).timeout(Duration::from_secs(40)).send().await.ok()?;
    if response.status() != 200 {
        return None;
    }
    let hash = response.headers().get("x-consul-contenthash")?.to_str().ok()?.to_string();
    Some((hash, response.json().await.ok()?))
}

fn role_of<'a>(view: &'a Value, name: &str) -> Option<&'a Value> {
    view["Servers"].as_array()?.iter().find(|s| s["Name"] == name)
}

#[tokio::test]
async fn the_raft_view_follows_a_leader_killed_with_sigkill() {
    let mut cluster = TestCluster::start(3).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let leader_name = cluster.servers[leader].name.clone();
    let follower = (0..3).find(|i| *i != leader).unwrap();
    tracing::info!("phase: asked of a follower, the leader's view lists 3 healthy servers and one leader");
    let healthy = eventually(20_000, async || {
        raft_view(&cluster, follower, "").await.is_some_and(|(_, view)| view["Healthy"] == true && view["Servers"].as_array().is_some_and(|s| s.len() == 3))
    })
    .await;
    assert!(healthy, "{:?}", raft_view(&cluster, follower, "").await);
    let (hash, view) = raft_view(&cluster, follower, "").await.unwrap();
    let servers = view["Servers"].as_array().unwrap();
    let leaders: Vec<&Value> = servers.iter().filter(|s| s["Role"] == "leader").collect();
    assert_eq!(leaders.len(), 1, "{view}");
    assert_eq!(leaders[0]["Name"], leader_name.as_str());
    assert_eq!((view["Leader"].as_str(), view["ServedBy"].as_str()), (Some(leader_name.as_str()), Some(leader_name.as_str())));
    assert!(servers.iter().all(|s| s["SerfStatus"] == "alive" && s["Voter"] == true && s["Term"] == view["Term"]), "{view}");
    assert!(view["CommitIndex"].as_u64().unwrap() > 0 && leaders[0]["AppliedIndex"].as_u64().unwrap() > 0);
    assert!(view["LeaderChanges"].as_array().unwrap().iter().any(|c| c["Leader"] == leader_name.as_str()), "{view}");
    let unchanged = Instant::now();
    let (same, _) = raft_view(&cluster, follower, &format!("?hash={hash}&wait=1s")).await.unwrap();
    // A write meanwhile (a coordinate update, say) would change the indexes, and the answer.
    assert!(same != hash || unchanged.elapsed() >= Duration::from_millis(900), "an unchanged view waits");

    tracing::info!("phase: a client agent relays both to a server");
    let client = cluster.add_client(&[]);
    let relayed = eventually(30_000, async || {
        let services = cluster.client.get(format!("{}/v1/internal/ui/services", cluster.servers[client].http())).send().await;
        let has_consul = match services {
            Ok(response) => response.json::<Value>().await.is_ok_and(|v| v.as_array().is_some_and(|a| a.iter().any(|s| s["Name"] == "consul"))),
            Err(_) => false,
        };
        has_consul && raft_view(&cluster, client, "").await.is_some_and(|(_, view)| view["Leader"] == leader_name.as_str() && view["Servers"].as_array().is_some_and(|s| s.len() == 3))
    })
    .await;
    assert!(relayed, "a client agent answers the dashboard's endpoints through a server");

    tracing::info!("phase: kill -9 of the leader: a parked ?stale poll wakes; a new leader; the dead one failed");
    let survivor = follower;
    let (stale_hash, _) = raft_view(&cluster, survivor, "?stale").await.unwrap();
    let client = cluster.client.clone();
    let url = format!("{}/v1/internal/ui/raft?stale&hash={stale_hash}&wait=30s", cluster.servers[survivor].http());
    let parked = tokio::spawn(async move {
        let started = Instant::now();
        let response = client.get(url).timeout(Duration::from_secs(40)).send().await.unwrap();
        (started.elapsed(), response.headers()["x-consul-contenthash"].to_str().unwrap().to_string())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.kill9(leader);
    let (woke_after, new_hash) = parked.await.unwrap();
    assert!(woke_after < Duration::from_secs(20) && new_hash != stale_hash, "{woke_after:?}");
    let moved = eventually(30_000, async || {
        raft_view(&cluster, survivor, "").await.is_some_and(|(_, view)| {
            let dead = role_of(&view, &leader_name);
            view["Leader"] != leader_name.as_str()
                && view["Leader"] != ""
                && dead.is_some_and(|d| d["SerfStatus"] == "failed" && d["Healthy"] == false && d["Role"] != "leader")
        })
    })
    .await;
    assert!(moved, "{:?}", raft_view(&cluster, survivor, "").await);
    let (_, view) = raft_view(&cluster, survivor, "").await.unwrap();
    let changes = view["LeaderChanges"].as_array().unwrap();
    assert_eq!(changes.last().unwrap()["Leader"], view["Leader"], "{view}");
    assert_eq!(view["Servers"].as_array().unwrap().iter().filter(|s| s["Role"] == "leader").count(), 1);
}
