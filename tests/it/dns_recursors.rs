//! Recursors (issue 12) against the real binary: names outside the domain are forwarded to a
//! small upstream DNS server the test starts on loopback (UDP and TCP), whose answer, rcode
//! and RA come back; a recursor that refuses the connection or never answers gives SERVFAIL
//! in bounded time; `sequential` fails over from a dead first recursor to a live second; a
//! service at a host name gets its CNAME plus the A record the upstream resolved; a PTR for
//! an unknown address is asked upstream; and without recursors, foreign names stay REFUSED
//! and RA stays clear.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_server::proto::op::{Message, MessageType, ResponseCode};
use hickory_server::proto::rr::rdata::A;
use hickory_server::proto::rr::{RData, Record, RecordType};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

use crate::dns_answers::dns_tcp;
use crate::util::{TestAgent, dns_query};

/// The address the upstream answers for every name under `example.org.`.
const UPSTREAM_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);

/// The recursor timeout the agents under test use, in milliseconds.
const RECURSOR_TIMEOUT_MS: u64 = 400;

/// What the upstream answers to one raw query: `nx.example.org.` is NXDOMAIN, anything else
/// an A record, with RA set.
fn upstream_reply(request: &[u8]) -> Option<Vec<u8>> {
    let request = Message::from_vec(request).ok()?;
    let query = request.queries.first()?.clone();
    let mut reply = Message::query();
    reply.metadata.id = request.metadata.id;
    reply.metadata.message_type = MessageType::Response;
    reply.metadata.recursion_desired = request.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.add_query(query.clone());
    if query.name().to_ascii() == "nx.example.org." {
        reply.metadata.response_code = ResponseCode::NXDomain;
    } else if query.query_type() == RecordType::A {
        reply.add_answer(Record::from_rdata(query.name().clone(), 60, RData::A(A(UPSTREAM_IP))));
    }
    reply.to_vec().ok()
}

/// A small DNS server on 127.0.0.1 (UDP and TCP on one ephemeral port), answering as
/// [`upstream_reply`] says until the test ends.
async fn start_upstream() -> SocketAddr {
    // The ephemeral UDP port may be taken for TCP by another test: then try another one.
    let mut attempts = 0;
    let (udp, tcp, addr) = loop {
        let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind upstream udp");
        let addr = udp.local_addr().expect("upstream addr");
        match TcpListener::bind(addr).await {
            Ok(tcp) => break (udp, tcp, addr),
            Err(error) if attempts < 20 => {
                attempts += 1;
                eprintln!("upstream tcp port {addr} taken ({error}); trying another");
            }
            Err(error) => panic!("bind upstream tcp: {error}"),
        }
    };
    tokio::spawn(async move {
        let mut buffer = vec![0u8; 65_535];
        while let Ok((length, from)) = udp.recv_from(&mut buffer).await {
            if let Some(reply) = upstream_reply(&buffer[..length]) {
                let _ = udp.send_to(&reply, from).await;
            }
        }
    });
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = tcp.accept().await {
            tokio::spawn(async move {
                let mut length = [0u8; 2];
                stream.read_exact(&mut length).await.ok()?;
                let mut request = vec![0u8; usize::from(u16::from_be_bytes(length))];
                stream.read_exact(&mut request).await.ok()?;
                let reply = upstream_reply(&request)?;
                stream.write_all(&(reply.len() as u16).to_be_bytes()).await.ok()?;
                stream.write_all(&reply).await.ok()
            });
        }
    });
    addr
}

/// A port where nothing listens: connections are refused (ICMP port unreachable over UDP).
fn closed_port() -> SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.local_addr().expect("addr")
}

/// An agent forwarding to `recursors` in order, with a short recursor timeout. The returned
/// directory holds its config file.
async fn agent_with_recursors(recursors: &[SocketAddr]) -> (TestAgent, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("config dir");
    let config = json!({
        "recursors": recursors.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "dns_config": {"recursor_strategy": "sequential", "recursor_timeout": format!("{RECURSOR_TIMEOUT_MS}ms")},
    });
    let path = dir.path().join("recursors.json");
    std::fs::write(&path, config.to_string()).expect("write config");
    let agent = TestAgent::start_with(&[&format!("-config-file={}", path.display())]).await;
    (agent, dir)
}

fn a_records(records: &[Record]) -> Vec<(String, Ipv4Addr)> {
    records
        .iter()
        .filter_map(|record| match &record.data {
            RData::A(a) => Some((record.name.to_ascii(), a.0)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn foreign_names_are_forwarded_and_the_upstream_answer_relayed_with_ra() {
    let upstream = start_upstream().await;
    let (agent, _config) = agent_with_recursors(&[upstream]).await;

    let reply = dns_query(agent.dns_addr(), "www.example.org.", RecordType::A).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.metadata.recursion_available, "RA set");
    assert_eq!(a_records(&reply.answers), [("www.example.org.".to_string(), UPSTREAM_IP)]);

    let (reply, _) = dns_tcp(agent.dns_addr(), "tcp.example.org.", RecordType::A).await;
    assert_eq!(a_records(&reply.answers), [("tcp.example.org.".to_string(), UPSTREAM_IP)], "over TCP too");

    let reply = dns_query(agent.dns_addr(), "nx.example.org.", RecordType::A).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain, "the upstream's rcode is relayed");

    // A PTR for an address nobody in the catalog has is asked upstream (Consul's `handlePtr`):
    // the upstream's NOERROR comes back, not our authoritative NXDOMAIN.
    let reply = dns_query(agent.dns_addr(), "10.2.0.192.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(!reply.metadata.authoritative && reply.metadata.recursion_available);

    // Our own answers carry RA too once recursors exist, and stay authoritative.
    let reply = dns_query(agent.dns_addr(), "consul.service.consul.", RecordType::A).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.metadata.recursion_available && reply.metadata.authoritative);
}

#[tokio::test]
async fn a_recursor_that_refuses_or_never_answers_gives_servfail_in_bounded_time() {
    let black_hole = UdpSocket::bind("127.0.0.1:0").await.expect("bind black hole");
    for (what, recursor) in [("refused", closed_port()), ("timeout", black_hole.local_addr().expect("addr"))] {
        let (agent, _config) = agent_with_recursors(&[recursor]).await;
        let started = Instant::now();
        let reply = dns_query(agent.dns_addr(), "www.example.org.", RecordType::A).await;
        let elapsed = started.elapsed();
        assert_eq!(reply.metadata.response_code, ResponseCode::ServFail, "{what}");
        assert!(reply.metadata.recursion_available, "{what}: RA set on SERVFAIL");
        assert!(reply.answers.is_empty(), "{what}");
        assert!(elapsed < Duration::from_millis(RECURSOR_TIMEOUT_MS + 1_500), "{what}: took {elapsed:?}");
        if what == "timeout" {
            assert!(elapsed >= Duration::from_millis(RECURSOR_TIMEOUT_MS), "waited for the recursor: {elapsed:?}");
        } else {
            assert!(elapsed < Duration::from_millis(RECURSOR_TIMEOUT_MS), "a refusal is known at once: {elapsed:?}");
        }
        let (reply, _) = dns_tcp(agent.dns_addr(), "www.example.org.", RecordType::A).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::ServFail, "{what} over TCP");
    }
}

#[tokio::test]
async fn sequential_recursors_fail_over_from_a_dead_first_to_a_live_second() {
    let black_hole = UdpSocket::bind("127.0.0.1:0").await.expect("bind black hole");
    let upstream = start_upstream().await;
    let (agent, _config) = agent_with_recursors(&[black_hole.local_addr().expect("addr"), upstream]).await;
    let started = Instant::now();
    let reply = dns_query(agent.dns_addr(), "www.example.org.", RecordType::A).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a_records(&reply.answers), [("www.example.org.".to_string(), UPSTREAM_IP)]);
    assert!(started.elapsed() >= Duration::from_millis(RECURSOR_TIMEOUT_MS), "the first was tried first");
}

#[tokio::test]
async fn host_name_addresses_get_their_cname_and_the_resolved_a_record() {
    let upstream = start_upstream().await;
    let (agent, _config) = agent_with_recursors(&[upstream]).await;
    let body = json!({"Name": "backend", "Address": "backend.example.org", "Port": 443});
    let response = agent.put("/v1/agent/service/register", body.to_string()).await;
    assert_eq!(response.status(), 200);

    let reply = dns_query(agent.dns_addr(), "backend.service.consul.", RecordType::A).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    let cname = reply.answers.first().map(|record| record.data.clone());
    assert!(matches!(&cname, Some(RData::CNAME(target)) if target.0.to_ascii() == "backend.example.org."), "{:?}", reply.answers);
    assert_eq!(a_records(&reply.answers), [("backend.example.org.".to_string(), UPSTREAM_IP)]);

    let reply = dns_query(agent.dns_addr(), "backend.service.consul.", RecordType::SRV).await;
    assert_eq!(a_records(&reply.additionals), [("backend.example.org.".to_string(), UPSTREAM_IP)], "SRV glue");

    let body = json!({"Node": "ext", "Address": "db.example.org", "Service": {"Service": "db", "Port": 5432}});
    let response = agent.put("/v1/catalog/register", body.to_string()).await;
    assert_eq!(response.status(), 200);
    let reply = dns_query(agent.dns_addr(), "ext.node.consul.", RecordType::A).await;
    assert!(matches!(reply.answers.first().map(|record| &record.data), Some(RData::CNAME(_))), "{:?}", reply.answers);
    assert_eq!(a_records(&reply.answers), [("db.example.org.".to_string(), UPSTREAM_IP)], "a node at a host name too");
}

#[tokio::test]
async fn without_recursors_foreign_names_are_refused_and_ra_is_clear() {
    let agent = TestAgent::start().await;
    let reply = dns_query(agent.dns_addr(), "www.example.org.", RecordType::A).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
    assert!(!reply.metadata.recursion_available);
    let reply = dns_query(agent.dns_addr(), "consul.service.consul.", RecordType::A).await;
    assert!(!reply.metadata.recursion_available);
}
