//! Register a service through the agent API, then see it in the catalog, health and DNS.

use hickory_server::proto::op::ResponseCode;
use hickory_server::proto::rr::{RData, RecordType};
use serde_json::json;

use crate::util::{TestAgent, dns_query, eventually};

#[tokio::test]
async fn registered_service_shows_in_catalog_health_and_dns() {
    let agent = TestAgent::start().await;
    let body = json!({"Name": "web", "Port": 8080, "Tags": ["v1"], "Check": {"TTL": "30s", "Status": "passing"}});
    let response = agent.put("/v1/agent/service/register", body.to_string()).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap_or_default());

    let services = agent.get_json("/v1/catalog/services").await;
    assert_eq!(services, json!({"consul": [], "web": ["v1"]}));

    let rows = agent.get_json("/v1/catalog/service/web").await;
    assert_eq!(rows[0]["ServiceName"], "web");
    assert_eq!(rows[0]["ServicePort"], 8080);
    assert_eq!(rows[0]["Node"], "test-node");

    let health = agent.get_json("/v1/health/service/web?passing").await;
    let entries = health.as_array().expect("array");
    assert_eq!(entries.len(), 1);
    let check_ids: Vec<&str> = entries[0]["Checks"].as_array().unwrap().iter().map(|c| c["CheckID"].as_str().unwrap()).collect();
    assert_eq!(check_ids, ["serfHealth", "service:web"]);

    // SRV with the node's A record in the additional section.
    let reply = dns_query(agent.dns_addr(), "web.service.consul.", RecordType::SRV).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert_eq!(reply.answers.len(), 1);
    match &reply.answers[0].data {
        RData::SRV(srv) => {
            assert_eq!(srv.port, 8080);
            assert_eq!(srv.target.to_ascii(), "test-node.node.dc1.consul.");
        }
        other => panic!("expected SRV, got {other:?}"),
    }
    assert!(reply.additionals.iter().any(|r| matches!(r.data, RData::A(a) if a.0.to_string() == "127.0.0.1")));

    // A records, tag lookups and node lookups.
    let reply = dns_query(agent.dns_addr(), "web.service.consul.", RecordType::A).await;
    assert_eq!(reply.answers.len(), 1);
    let reply = dns_query(agent.dns_addr(), "v1.web.service.consul.", RecordType::A).await;
    assert_eq!(reply.answers.len(), 1);
    let reply = dns_query(agent.dns_addr(), "v2.web.service.consul.", RecordType::A).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    let reply = dns_query(agent.dns_addr(), "test-node.node.consul.", RecordType::A).await;
    assert_eq!(reply.answers.len(), 1);

    // Unknown names: NXDOMAIN with the SOA in authority.
    let reply = dns_query(agent.dns_addr(), "nope.service.consul.", RecordType::A).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(reply.authorities[0].record_type(), RecordType::SOA);

    // A failing check removes the instance from passing health and from DNS.
    assert_eq!(agent.put("/v1/agent/check/fail/service:web", "").await.status(), 200);
    let health = agent.get_json("/v1/health/service/web?passing").await;
    assert_eq!(health, json!([]));
    let gone = eventually(2_000, async || {
        dns_query(agent.dns_addr(), "web.service.consul.", RecordType::A).await.metadata.response_code == ResponseCode::NXDomain
    })
    .await;
    assert!(gone, "critical instance still answered in DNS");

    // Deregistration removes it from the catalog.
    assert_eq!(agent.put("/v1/agent/service/deregister/web", "").await.status(), 200);
    let services = agent.get_json("/v1/catalog/services").await;
    assert_eq!(services, json!({"consul": []}));
}

#[tokio::test]
async fn catalog_register_with_filter_and_node_endpoints() {
    let agent = TestAgent::start().await;
    for (node, tag) in [("n1", "prod"), ("n2", "staging")] {
        let body = json!({"Node": node, "Address": "10.1.0.1", "Service": {"Service": "api", "Tags": [tag], "Port": 80}});
        assert_eq!(agent.put("/v1/catalog/register", body.to_string()).await.status(), 200);
    }
    let rows = agent.get_json("/v1/catalog/service/api?filter=%22prod%22%20in%20ServiceTags").await;
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["Node"], "n1");
    let rows = agent.get_json("/v1/catalog/service/api?tag=staging").await;
    assert_eq!(rows[0]["Node"], "n2");
    let node = agent.get_json("/v1/catalog/node/n1").await;
    assert_eq!(node["Node"]["Address"], "10.1.0.1");
    assert!(node["Services"]["api"].is_object());
    let node = agent.get_json("/v1/catalog/node-services/n2").await;
    assert_eq!(node["Services"][0]["Service"], "api");
    let nodes = agent.get_json("/v1/catalog/nodes").await;
    let names: Vec<&str> = nodes.as_array().unwrap().iter().map(|n| n["Node"].as_str().unwrap()).collect();
    assert_eq!(names, ["n1", "n2", "test-node"]);
    let body = json!({"Node": "n1"});
    assert_eq!(agent.put("/v1/catalog/deregister", body.to_string()).await.status(), 200);
    let rows = agent.get_json("/v1/catalog/service/api").await;
    assert_eq!(rows.as_array().unwrap().len(), 1);
    let response = agent.get("/v1/catalog/nodes?dc=dc2").await;
    assert_eq!(response.status(), 500);
}
