//! DNS answers of issue 12 against the real binary: CNAMEs for host-name addresses, PTR for
//! IPv4 and IPv6, `alt_domain`, per-service TTLs, SOA/NS below the apex, one A glue record per
//! SRV record, and large answers (300 instances over TCP, EDNS truncation that keeps the OPT
//! record and the glue, name compression). Queries are raw DNS packets over real UDP and TCP
//! sockets, decoded with hickory-proto.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_server::proto::op::{Edns, Message, Query, ResponseCode};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::util::{TestAgent, dns_query};

/// How long one DNS exchange may take.
const DNS_REPLY_TIMEOUT_MS: u64 = 5_000;

fn query_message(name: &str, record_type: RecordType, edns_payload_bytes: Option<u16>) -> Message {
    let mut message = Message::query();
    message.metadata.id = rand::random();
    message.add_query(Query::query(Name::from_ascii(name).expect("query name"), record_type));
    if let Some(payload) = edns_payload_bytes {
        let mut edns = Edns::new();
        edns.set_max_payload(payload);
        message.edns = Some(edns);
    }
    message
}

/// One query over TCP (2-byte length prefix); returns the reply and its size in bytes.
pub(crate) async fn dns_tcp(server: SocketAddr, name: &str, record_type: RecordType) -> (Message, usize) {
    let bytes = query_message(name, record_type, None).to_vec().expect("encode");
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(server).await.expect("connect");
        stream.write_all(&(bytes.len() as u16).to_be_bytes()).await.expect("write length");
        stream.write_all(&bytes).await.expect("write query");
        let mut length = [0u8; 2];
        stream.read_exact(&mut length).await.expect("read length");
        let mut reply = vec![0u8; u16::from_be_bytes(length) as usize];
        stream.read_exact(&mut reply).await.expect("read reply");
        reply
    };
    let reply = tokio::time::timeout(Duration::from_millis(DNS_REPLY_TIMEOUT_MS), exchange).await.expect("tcp reply in time");
    (Message::from_vec(&reply).expect("parse reply"), reply.len())
}

/// One query over UDP with an EDNS OPT record offering `payload_bytes`; reply and its size.
async fn dns_udp_edns(server: SocketAddr, name: &str, record_type: RecordType, payload_bytes: u16) -> (Message, usize) {
    let bytes = query_message(name, record_type, Some(payload_bytes)).to_vec().expect("encode");
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    socket.send_to(&bytes, server).await.expect("send");
    let mut buffer = vec![0u8; 65_536];
    let (len, _) = tokio::time::timeout(Duration::from_millis(DNS_REPLY_TIMEOUT_MS), socket.recv_from(&mut buffer))
        .await
        .expect("udp reply in time")
        .expect("recv");
    (Message::from_vec(&buffer[..len]).expect("parse reply"), len)
}

async fn register(agent: &TestAgent, path: &str, body: serde_json::Value) {
    let response = agent.put(path, body.to_string()).await;
    assert_eq!(response.status(), 200, "{path}: {}", response.text().await.unwrap_or_default());
}

fn only_cname(reply: &Message) -> String {
    match reply.answers.as_slice() {
        [Record { data: RData::CNAME(cname), .. }] => cname.0.to_ascii(),
        other => panic!("expected one CNAME, got {other:?}"),
    }
}

fn srv_targets(reply: &Message) -> Vec<String> {
    reply.answers.iter().filter_map(|r| match &r.data { RData::SRV(srv) => Some(srv.target.to_ascii()), _ => None }).collect()
}

fn glue_owners(reply: &Message) -> Vec<String> {
    reply.additionals.iter().filter(|r| matches!(r.data, RData::A(_) | RData::AAAA(_))).map(|r| r.name.to_ascii()).collect()
}

#[tokio::test]
async fn host_name_addresses_are_answered_with_cnames() {
    let agent = TestAgent::start().await;
    register(&agent, "/v1/agent/service/register", json!({"Name": "backend", "Address": "backend.example.org", "Port": 443})).await;
    register(&agent, "/v1/catalog/register", json!({"Node": "ext", "Address": "db.example.org", "Service": {"Service": "db", "Port": 5432}})).await;

    let reply = dns_query(agent.dns_addr(), "backend.service.consul.", RecordType::A).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert_eq!(only_cname(&reply), "backend.example.org.", "never the node's IP");
    let reply = dns_query(agent.dns_addr(), "backend.service.consul.", RecordType::SRV).await;
    assert_eq!(srv_targets(&reply), ["backend.example.org."]);

    let reply = dns_query(agent.dns_addr(), "ext.node.consul.", RecordType::A).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert_eq!(only_cname(&reply), "db.example.org.", "a node at a host name is a CNAME, not NODATA");
    let reply = dns_query(agent.dns_addr(), "db.service.consul.", RecordType::A).await;
    assert_eq!(only_cname(&reply), "db.example.org.");
    let reply = dns_query(agent.dns_addr(), "db.service.consul.", RecordType::SRV).await;
    assert_eq!(srv_targets(&reply), ["db.example.org."]);
}

fn only_ptr(reply: &Message) -> String {
    match reply.answers.as_slice() {
        [Record { data: RData::PTR(ptr), .. }] => ptr.0.to_ascii(),
        other => panic!("expected one PTR, got {other:?} ({:?})", reply.metadata.response_code),
    }
}

#[tokio::test]
async fn ptr_answers_name_nodes_and_services_for_ipv4_and_ipv6() {
    let agent = TestAgent::start().await;
    register(&agent, "/v1/catalog/register", json!({"Node": "v6node", "Address": "2001:db8::7"})).await;
    register(&agent, "/v1/catalog/register", json!({"Node": "n2", "Address": "10.0.0.2", "Service": {"Service": "api", "Address": "10.9.9.9", "Port": 80}})).await;

    let reply = dns_query(agent.dns_addr(), "1.0.0.127.in-addr.arpa.", RecordType::PTR).await;
    assert!(reply.metadata.authoritative);
    assert_eq!(only_ptr(&reply), "test-node.node.dc1.consul.");
    let nibbles = "7.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.";
    let reply = dns_query(agent.dns_addr(), nibbles, RecordType::PTR).await;
    assert_eq!(only_ptr(&reply), "v6node.node.dc1.consul.");
    let reply = dns_query(agent.dns_addr(), "9.9.9.10.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(only_ptr(&reply), "api.service.dc1.consul.", "a service's own address");

    for unknown in ["4.3.2.1.in-addr.arpa.", "0.0.127.in-addr.arpa.", "x.ip6.arpa."] {
        let reply = dns_query(agent.dns_addr(), unknown, RecordType::PTR).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain, "{unknown}");
        assert_eq!(reply.authorities[0].record_type(), RecordType::SOA, "{unknown}");
    }
}

#[tokio::test]
async fn the_alt_domain_is_served_with_its_own_names() {
    let agent = TestAgent::start_with(&["-alt-domain=cairn.example"]).await;
    register(&agent, "/v1/agent/service/register", json!({"Name": "web", "Port": 8080})).await;

    let reply = dns_query(agent.dns_addr(), "web.service.cairn.example.", RecordType::SRV).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert_eq!(srv_targets(&reply), ["test-node.node.dc1.cairn.example."]);
    assert_eq!(glue_owners(&reply), ["test-node.node.dc1.cairn.example."]);
    let reply = dns_query(agent.dns_addr(), "web.service.consul.", RecordType::SRV).await;
    assert_eq!(srv_targets(&reply), ["test-node.node.dc1.consul."], "the primary domain still answers");
    let reply = dns_query(agent.dns_addr(), "nope.service.cairn.example.", RecordType::A).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(reply.authorities[0].name.to_ascii(), "cairn.example.");
    let reply = dns_query(agent.dns_addr(), "1.0.0.127.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(only_ptr(&reply), "test-node.node.dc1.consul.", "PTR uses the primary domain");
    let reply = dns_query(agent.dns_addr(), "web.service.example.org.", RecordType::A).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
}

#[tokio::test]
async fn service_ttls_follow_the_exact_name_then_the_longest_prefix() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("ttl.json");
    let ttls = json!({"dns_config": {"node_ttl": "7s", "service_ttl": {"*": "5s", "web": "30s", "db-*": "60s", "db-main*": "90s"}}});
    std::fs::write(&config, ttls.to_string()).expect("write config");
    let agent = TestAgent::start_with(&[&format!("-config-file={}", config.display())]).await;
    for name in ["web", "web2", "db-x", "db-main-1"] {
        register(&agent, "/v1/agent/service/register", json!({"Name": name, "Port": 80})).await;
    }
    for (name, ttl) in [("web", 30), ("web2", 5), ("db-x", 60), ("db-main-1", 90)] {
        for record_type in [RecordType::A, RecordType::SRV] {
            let reply = dns_query(agent.dns_addr(), &format!("{name}.service.consul."), record_type).await;
            let ttls: Vec<u32> = reply.answers.iter().chain(&reply.additionals).filter(|r| r.record_type() != RecordType::OPT).map(|r| r.ttl).collect();
            assert!(!ttls.is_empty() && ttls.iter().all(|t| *t == ttl), "{name} {record_type}: {ttls:?}");
        }
    }
    let reply = dns_query(agent.dns_addr(), "test-node.node.consul.", RecordType::A).await;
    assert_eq!(reply.answers[0].ttl, 7, "nodes keep node_ttl");
}

#[tokio::test]
async fn soa_and_ns_are_answered_below_the_apex() {
    let agent = TestAgent::start().await;
    register(&agent, "/v1/agent/service/register", json!({"Name": "web", "Port": 8080})).await;
    for name in ["web.service.consul.", "test-node.node.consul.", "missing.service.consul."] {
        let reply = dns_query(agent.dns_addr(), name, RecordType::SOA).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError, "{name}");
        assert!(matches!(reply.answers.as_slice(), [Record { data: RData::SOA(_), .. }]), "{name}: {:?}", reply.answers);
        assert_eq!(reply.answers[0].name.to_ascii(), "consul.");
        let reply = dns_query(agent.dns_addr(), name, RecordType::NS).await;
        let ns: Vec<String> = reply.answers.iter().filter_map(|r| match &r.data { RData::NS(ns) => Some(ns.0.to_ascii()), _ => None }).collect();
        assert_eq!(ns, ["test-node.node.dc1.consul."], "{name}");
        assert_eq!(glue_owners(&reply), ["test-node.node.dc1.consul."], "{name}");
    }
}

#[tokio::test]
async fn three_instances_on_one_node_get_three_glue_records() {
    let agent = TestAgent::start().await;
    for port in [8081, 8082, 8083] {
        register(&agent, "/v1/agent/service/register", json!({"Name": "web", "ID": format!("web-{port}"), "Port": port})).await;
    }
    let reply = dns_query(agent.dns_addr(), "_web._tcp.service.consul.", RecordType::SRV).await;
    let mut ports: Vec<u16> = reply.answers.iter().filter_map(|r| match &r.data { RData::SRV(srv) => Some(srv.port), _ => None }).collect();
    ports.sort();
    assert_eq!(ports, [8081, 8082, 8083]);
    assert_eq!(srv_targets(&reply), ["test-node.node.dc1.consul."; 3]);
    assert_eq!(glue_owners(&reply), ["test-node.node.dc1.consul."; 3], "one A record per SRV record");
    let (reply, _) = dns_tcp(agent.dns_addr(), "web.service.consul.", RecordType::SRV).await;
    assert_eq!(glue_owners(&reply).len(), 3, "over TCP too");
}

/// Registers `count` instances of `web`, one per node `big-<i>` with its own address.
async fn register_many(agent: &TestAgent, count: usize) {
    for i in 0..count {
        let body = json!({"Node": format!("big-{i}"), "Address": format!("10.7.{}.{}", i / 250, i % 250 + 1), "Service": {"Service": "web", "Port": 8080}});
        register(agent, "/v1/catalog/register", body).await;
    }
}

#[tokio::test]
async fn three_hundred_instances_come_whole_over_tcp_and_cut_cleanly_over_edns() {
    let agent = TestAgent::start().await;
    register_many(&agent, 300).await;

    let (reply, srv_bytes) = dns_tcp(agent.dns_addr(), "web.service.consul.", RecordType::SRV).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(!reply.metadata.truncation);
    assert_eq!(reply.answers.len(), 300, "every instance over TCP");
    let mut targets = srv_targets(&reply);
    assert_eq!(glue_owners(&reply), targets, "one glue record per SRV record");
    targets.sort();
    targets.dedup();
    assert_eq!(targets.len(), 300);
    // Fully compressed: 24 bytes of header and question, then per instance an SRV record
    // (2 + 10 + 6 + a 29-31 byte target, never compressed) and a 16-byte A record (a pointer
    // to its target); only targets past the first 16 KiB cost a few bytes more.
    assert!(srv_bytes < 300 * 70, "{srv_bytes} bytes for 300 SRV records and their glue");
    let (reply, a_bytes) = dns_tcp(agent.dns_addr(), "web.service.consul.", RecordType::A).await;
    assert_eq!(reply.answers.len(), 300);
    assert!(a_bytes <= 12 + 24 + 300 * 16, "every A record's owner is a pointer: {a_bytes} bytes");
    println!("300 instances over TCP: SRV answer {srv_bytes} bytes, A answer {a_bytes} bytes");

    let (reply, bytes) = dns_udp_edns(agent.dns_addr(), "web.service.consul.", RecordType::SRV, 4096).await;
    assert!(bytes <= 4096);
    assert!(reply.metadata.truncation, "TC set when the answer is cut");
    assert_eq!(reply.edns.as_ref().map(Edns::max_payload), Some(4096), "the OPT record is kept");
    assert!(reply.answers.len() > 30 && reply.answers.len() < 300, "{} answers", reply.answers.len());
    assert_eq!(glue_owners(&reply), srv_targets(&reply), "the glue of every kept SRV record");
}

/// Queries for the A records of `web` as ports can't be seen in A answers: the addresses.
async fn web_addresses(agent: &TestAgent) -> Vec<String> {
    let reply = dns_query(agent.dns_addr(), "web.service.consul.", RecordType::A).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    reply.answers.iter().filter_map(|r| match &r.data { RData::A(a) => Some(a.0.to_string()), _ => None }).collect()
}

#[tokio::test]
async fn shared_answers_still_shuffle_carry_the_request_id_and_follow_every_change_at_once() {
    let agent = TestAgent::start().await;
    // Three: a UDP answer without EDNS holds at most 3 addresses (`udp_answer_limit`).
    for n in 1..=3 {
        register(&agent, "/v1/catalog/register", json!({"Node": format!("n{n}"), "Address": format!("10.9.0.{n}"), "Service": {"Service": "web", "Port": 80}})).await;
    }
    // Many more queries than the answers kept per question (8): most are served shared.
    let mut firsts = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let mut addresses = web_addresses(&agent).await;
        firsts.insert(addresses[0].clone());
        addresses.sort();
        assert_eq!(addresses, ["10.9.0.1", "10.9.0.2", "10.9.0.3"]);
    }
    assert!(firsts.len() > 1, "answers rotate the instances: first records seen {firsts:?}");
    // dns_query checks that each reply carries its own request's ID.

    // A deregistration and a failing check show in the very next answer.
    register(&agent, "/v1/catalog/deregister", json!({"Node": "n2", "ServiceID": "web"})).await;
    let mut addresses = web_addresses(&agent).await;
    addresses.sort();
    assert_eq!(addresses, ["10.9.0.1", "10.9.0.3"]);
    register(&agent, "/v1/catalog/register", json!({"Node": "n3", "Address": "10.9.0.3", "Service": {"Service": "web", "Port": 80}, "Check": {"CheckID": "c", "Name": "c", "ServiceID": "web", "Status": "critical"}})).await;
    for _ in 0..20 {
        let mut addresses = web_addresses(&agent).await;
        addresses.sort();
        assert_eq!(addresses, ["10.9.0.1"], "a critical instance is never served from a shared answer");
    }
}
