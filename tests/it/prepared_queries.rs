//! Prepared queries (issue 12) against the real binary: `/v1/query` create, list, read,
//! update, delete, execute and explain over HTTP; `<name|id>.query.consul` and
//! `_<name>._tcp.query.consul` over DNS (raw packets over UDP) by name, by ID and by template;
//! a query created on one server executed on another and on a client agent; a query that
//! survives a restart.

use std::time::Duration;

use hickory_server::proto::op::{Message, ResponseCode};
use hickory_server::proto::rr::{RData, RecordType};
use serde_json::{Value, json};

use crate::cluster_util::TestCluster;
use crate::util::{TestAgent, dns_query, eventually};

async fn post(agent: &TestAgent, path: &str, body: Value) -> reqwest::Response {
    agent.client.post(agent.url(path)).body(body.to_string()).send().await.expect("POST")
}

async fn create(agent: &TestAgent, body: Value) -> String {
    let response = post(agent, "/v1/query", body).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap_or_default());
    let created: Value = response.json().await.expect("JSON");
    created["ID"].as_str().expect("an ID").to_string()
}

async fn register(agent: &TestAgent, body: Value) {
    let response = agent.put("/v1/catalog/register", body.to_string()).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap_or_default());
}

fn addresses(reply: &Message) -> Vec<String> {
    let mut found: Vec<String> = reply.answers.iter().filter_map(|r| match &r.data { RData::A(a) => Some(a.0.to_string()), _ => None }).collect();
    found.sort();
    found
}

/// web on n1 (10.0.0.1, tag primary, passing), n2 (10.0.0.2, tag canary, warning) and n3
/// (10.0.0.3, critical).
async fn three_webs(agent: &TestAgent) {
    for (node, address, tag, status) in [("n1", "10.0.0.1", "primary", "passing"), ("n2", "10.0.0.2", "canary", "warning"), ("n3", "10.0.0.3", "primary", "critical")] {
        register(agent, json!({
            "Node": node, "Address": address, "NodeMeta": {"rack": node},
            "Service": {"Service": "web", "Port": 80, "Tags": [tag]},
            "Check": {"CheckID": "web-check", "Name": "web", "ServiceID": "web", "Status": status},
        }))
        .await;
    }
}

#[tokio::test]
async fn create_list_read_update_delete_execute_and_explain_over_http() {
    let agent = TestAgent::start().await;
    three_webs(&agent).await;
    tracing::info!("create: a named query, and Consul's refusals");
    let id = create(&agent, json!({"Name": "webq", "Service": {"Service": "web", "Tags": ["!canary"]}, "DNS": {"TTL": "10s"}})).await;
    let duplicate = post(&agent, "/v1/query", json!({"Name": "WEBQ", "Service": {"Service": "web"}})).await;
    assert_eq!(duplicate.status(), 500);
    assert_eq!(duplicate.text().await.unwrap(), "name 'WEBQ' aliases an existing query name");
    let unbound = post(&agent, "/v1/query", json!({"Service": {"Service": "web"}})).await;
    assert_eq!((unbound.status().as_u16(), unbound.text().await.unwrap()), (500, "Invalid prepared query: Must be bound to a session".into()));
    let bad = post(&agent, "/v1/query", json!({"Name": "x", "Service": {"Service": "web"}, "Template": {"Type": "name_prefix_match", "Regexp": "("}})).await;
    assert_eq!(bad.status(), 500);
    assert!(bad.text().await.unwrap().starts_with("failed compiling template: Bad Regexp"));
    assert_eq!(post(&agent, "/v1/query", json!({"Name": 7})).await.status(), 400);

    tracing::info!("list and read");
    let listed = agent.get_json("/v1/query").await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    assert_eq!(listed[0]["ID"], id.as_str());
    let read = agent.get_json(&format!("/v1/query/{id}")).await;
    assert_eq!((read[0]["Name"].as_str(), read[0]["DNS"]["TTL"].as_str()), (Some("webq"), Some("10s")));
    assert_eq!(agent.get(&format!("/v1/query/{}", "00000000-0000-0000-0000-00000000000f")).await.status(), 404);

    tracing::info!("execute: critical and !canary instances go");
    let executed = agent.get_json("/v1/query/webq/execute").await;
    assert_eq!((executed["Service"].as_str(), executed["Failovers"].as_u64(), executed["Datacenter"].as_str()), (Some("web"), Some(0), Some("dc1")));
    let nodes: Vec<&str> = executed["Nodes"].as_array().unwrap().iter().map(|n| n["Node"]["Node"].as_str().unwrap()).collect();
    assert_eq!(nodes, ["n1"]);
    assert_eq!(agent.get("/v1/query/nope/execute").await.status(), 404);

    tracing::info!("update, then execute with ?limit");
    let response = agent.client.put(agent.url(&format!("/v1/query/{id}"))).body(json!({"Name": "webq", "Service": {"Service": "web"}}).to_string()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let executed = agent.get_json(&format!("/v1/query/{id}/execute")).await;
    assert_eq!(executed["Nodes"].as_array().map(Vec::len), Some(2), "n1 and n2 (warning passes)");
    let limited = agent.get_json(&format!("/v1/query/{id}/execute?limit=1&near=_agent")).await;
    assert_eq!(limited["Nodes"].as_array().map(Vec::len), Some(1));

    tracing::info!("a template, explained and executed");
    create(&agent, json!({"Name": "geo-", "Template": {"Type": "name_prefix_match", "Regexp": "^geo-([^-]+)-(.*)$"},
        "Service": {"Service": "${match(1)}", "Tags": ["${match(2)}"], "OnlyPassing": true}})).await;
    let explained = agent.get_json("/v1/query/geo-web-primary/explain").await;
    assert_eq!(explained["Query"]["Service"]["Service"], "web");
    assert_eq!(explained["Query"]["Service"]["Tags"], json!(["primary"]));
    let executed = agent.get_json("/v1/query/geo-web-primary/execute").await;
    assert_eq!(executed["Nodes"].as_array().map(Vec::len), Some(1));

    tracing::info!("delete");
    assert_eq!(agent.delete(&format!("/v1/query/{id}")).await.status(), 200);
    assert_eq!(agent.get(&format!("/v1/query/{id}")).await.status(), 404);
    assert_eq!(agent.delete(&format!("/v1/query/{id}")).await.status(), 500, "Consul: cannot modify a non-existent query");
}

#[tokio::test]
async fn dns_answers_queries_by_name_id_and_template() {
    let agent = TestAgent::start().await;
    three_webs(&agent).await;
    let id = create(&agent, json!({"Name": "webq", "Service": {"Service": "web", "OnlyPassing": false}, "DNS": {"TTL": "7s"}})).await;
    create(&agent, json!({"Name": "", "Template": {"Type": "name_prefix_match"}, "Service": {"Service": "${name.full}", "Tags": ["primary"]}})).await;

    tracing::info!("by name and by ID: n1 and n2, with the query's TTL");
    for name in ["webq.query.consul.".to_string(), format!("{id}.query.consul."), "webq.query.dc1.consul.".to_string()] {
        let reply = dns_query(agent.dns_addr(), &name, RecordType::A).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError, "{name}");
        assert_eq!(addresses(&reply), ["10.0.0.1", "10.0.0.2"], "{name}");
        assert!(reply.answers.iter().all(|r| r.ttl == 7), "{name}");
    }
    tracing::info!("RFC 2782 SRV, with glue");
    let reply = dns_query(agent.dns_addr(), "_webq._tcp.query.consul.", RecordType::SRV).await;
    assert_eq!(reply.answers.len(), 2);
    assert!(reply.answers.iter().all(|r| matches!(r.data, RData::SRV(ref srv) if srv.port == 80)));
    assert_eq!(reply.additionals.iter().filter(|r| matches!(r.data, RData::A(_))).count(), 2);

    tracing::info!("the catch-all template: any name is a service, tag primary");
    let reply = dns_query(agent.dns_addr(), "web.query.consul.", RecordType::A).await;
    assert_eq!(addresses(&reply), ["10.0.0.1"]);
    assert!(reply.answers.iter().all(|r| r.ttl == 0), "no query TTL: the service TTL (0)");
    let reply = dns_query(agent.dns_addr(), "nothing.query.consul.", RecordType::A).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain, "no instances");
    let reply = dns_query(agent.dns_addr(), "webq.query.dc9.consul.", RecordType::A).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain, "another datacenter");
}

#[tokio::test]
async fn a_query_created_on_one_server_runs_on_the_others_on_a_client_and_after_a_restart() {
    let mut cluster = TestCluster::start(3).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let client = cluster.add_client(&[]);
    let bases: Vec<String> = cluster.servers.iter().map(|s| s.http()).collect();
    let http = |i: usize, path: &str| format!("{}{path}", bases[i]);
    let register = json!({"Node": "ext", "Address": "10.1.2.3", "Service": {"Service": "db", "Port": 5432}});
    let response = cluster.client.put(http(leader, "/v1/catalog/register")).body(register.to_string()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let other = (leader + 1) % 3;
    let body = json!({"Name": "dbq", "Service": {"Service": "db"}});
    let response = cluster.client.post(http(other, "/v1/query")).body(body.to_string()).send().await.unwrap();
    assert_eq!(response.status(), 200, "created through a follower");

    tracing::info!("every server and the client execute it, over HTTP and DNS");
    for i in [0, 1, 2, client] {
        let url = http(i, "/v1/query/dbq/execute?stale");
        let executes = eventually(15_000, async || {
            let Ok(response) = cluster.client.get(&url).send().await else { return false };
            let Ok(body) = response.json::<Value>().await else { return false };
            body["Nodes"].as_array().is_some_and(|nodes| nodes.len() == 1)
        })
        .await;
        assert!(executes, "agent {i} executes dbq");
        let dns = cluster.servers[i].dns_addr();
        let answers = eventually(15_000, async || addresses(&dns_query(dns, "dbq.query.consul.", RecordType::A).await) == ["10.1.2.3"]).await;
        assert!(answers, "agent {i} answers dbq.query.consul");
    }

    tracing::info!("restart a server: the query is still there");
    cluster.kill9(other);
    cluster.spawn(other);
    let url = http(other, "/v1/query?stale");
    let listed = eventually(30_000, async || {
        let Ok(response) = cluster.client.get(&url).send().await else { return false };
        response.json::<Value>().await.is_ok_and(|queries| queries[0]["Name"] == "dbq")
    })
    .await;
    assert!(listed, "the restarted server lists dbq");
    let back = eventually(30_000, async || addresses(&dns_query(cluster.servers[other].dns_addr(), "dbq.query.consul.", RecordType::A).await) == ["10.1.2.3"]).await;
    assert!(back, "the restarted server answers dbq from its own state");
}
