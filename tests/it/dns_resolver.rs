//! cairn's DNS read through a real stub resolver: hickory-resolver, as applications embed it,
//! over UDP and over TCP, with its cache off so that every lookup reaches the agent (issue 12).
//! The record-level details are in `dns_answers.rs`; here the point is that a resolver library
//! accepts the answers: SRV with one glue record each, CNAMEs for host-name addresses of
//! services and nodes, PTR, a prepared query, and 300 instances over TCP.

use hickory_resolver::Resolver;
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use serde_json::json;

use crate::util::TestAgent;

fn resolver(agent: &TestAgent, tcp: bool) -> Resolver<TokioRuntimeProvider> {
    let address = agent.dns_addr();
    let mut server = if tcp { NameServerConfig::tcp(address.ip()) } else { NameServerConfig::udp(address.ip()) };
    for connection in &mut server.connections {
        connection.port = address.port();
    }
    let mut builder = Resolver::builder_with_config(ResolverConfig::from_name_servers(vec![server]), TokioRuntimeProvider::default());
    builder.options_mut().cache_size = 0;
    builder.options_mut().use_hosts_file = ResolveHosts::Never;
    builder.build().expect("a resolver")
}

async fn register(agent: &TestAgent, path: &str, body: serde_json::Value) {
    let response = agent.put(path, body.to_string()).await;
    assert_eq!(response.status(), 200, "{path}: {}", response.text().await.unwrap_or_default());
}

#[tokio::test]
async fn a_resolver_library_reads_services_nodes_addresses_and_queries() {
    let agent = TestAgent::start().await;
    for port in [8001, 8002, 8003] {
        register(&agent, "/v1/agent/service/register", json!({"ID": format!("web-{port}"), "Name": "web", "Port": port})).await;
    }
    register(&agent, "/v1/catalog/register", json!({"Node": "ext", "Address": "ext.example.org", "Service": {"Service": "db", "Port": 5432}})).await;
    register(&agent, "/v1/catalog/register", json!({"Node": "n2", "Address": "10.0.0.2", "Service": {"Service": "api", "Address": "api.example.org", "Port": 80}})).await;
    let query = agent.client.post(agent.url("/v1/query")).body(json!({"Name": "web-q", "Service": {"Service": "web"}}).to_string()).send().await.unwrap();
    assert_eq!(query.status(), 200);

    for tcp in [false, true] {
        let resolver = resolver(&agent, tcp);
        let srv = resolver.srv_lookup("_web._tcp.service.consul.").await.expect("SRV");
        let ports: Vec<u16> = srv.answers().iter().filter_map(|r| match &r.data { RData::SRV(srv) => Some(srv.port), _ => None }).collect();
        assert_eq!(ports.len(), 3, "tcp={tcp}: {ports:?}");
        let glue = srv.additionals().iter().filter(|r| r.record_type() == RecordType::A).count();
        assert_eq!(glue, 3, "tcp={tcp}: one A glue record per SRV record");

        let ips = resolver.lookup_ip("web.service.consul.").await.expect("A");
        // Three instances on one node: one A record, as Consul dedups addresses.
        assert_eq!(ips.iter().map(|ip| ip.to_string()).collect::<Vec<_>>(), ["127.0.0.1"], "tcp={tcp}");

        for (name, target) in [("api.service.consul.", "api.example.org."), ("ext.node.consul.", "ext.example.org.")] {
            let cname = resolver.lookup(name, RecordType::CNAME).await.expect("CNAME");
            let targets: Vec<String> = cname.answers().iter().filter_map(|r| match &r.data { RData::CNAME(c) => Some(c.0.to_ascii()), _ => None }).collect();
            assert_eq!(targets, [target], "tcp={tcp}: {name}");
        }

        // (Not 127.0.0.1: the resolver answers loopback PTRs itself, RFC 6761.)
        let ptr = resolver.reverse_lookup("2.0.0.10.in-addr.arpa.").await.expect("PTR");
        let names: Vec<String> = ptr.answers().iter().filter_map(|r| match &r.data { RData::PTR(p) => Some(p.0.to_ascii()), _ => None }).collect();
        assert_eq!(names, ["n2.node.dc1.consul."], "tcp={tcp}");

        let query = resolver.lookup_ip("web-q.query.consul.").await.expect("a prepared query");
        assert_eq!(query.iter().map(|ip| ip.to_string()).collect::<Vec<_>>(), ["127.0.0.1"], "tcp={tcp}");

        let missing = resolver.lookup_ip("nothing.service.consul.").await;
        assert!(missing.is_err(), "tcp={tcp}: an unknown service resolves to nothing");
    }
}

#[tokio::test]
async fn three_hundred_instances_reach_a_resolver_over_tcp() {
    let agent = TestAgent::start().await;
    for i in 0..300 {
        let body = json!({"Node": format!("big-{i}"), "Address": format!("10.7.{}.{}", i / 250, i % 250 + 1), "Service": {"Service": "many", "Port": 8080}});
        register(&agent, "/v1/catalog/register", body).await;
    }
    let srv = resolver(&agent, true).srv_lookup("_many._tcp.service.consul.").await.expect("SRV over TCP");
    assert_eq!(srv.answers().len(), 300);
    assert_eq!(srv.additionals().iter().filter(|r| r.record_type() == RecordType::A).count(), 300);
}
