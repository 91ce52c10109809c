//! Tests of the recursor rules without a server: the order recursors are tried in, which
//! replies are relayed, which host names are resolved and where their records go; and one
//! exchange with a responder on a loopback socket, for the sequential failover and the
//! timeout.

use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::time::{Duration, Instant};

use hickory_server::proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_server::proto::rr::rdata::{A, CNAME, SRV};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::answer::Answer;
use super::recursor::{
    HOST_NAMES_RESOLVED_MAX, RESOLVED_RECORDS_NO_EDNS_MAX, Recursors, add_resolved, host_targets,
    judge, order,
};
use super::transport::Transport;
use super::{DnsConfig, RecursorStrategy};

fn name(text: &str) -> Name {
    Name::from_str(text).expect("name")
}

fn a(owner: &str, last: u8, ttl: u32) -> Record {
    Record::from_rdata(name(owner), ttl, RData::A(A(Ipv4Addr::new(192, 0, 2, last))))
}

fn cname(owner: &str, target: &str, ttl: u32) -> Record {
    Record::from_rdata(name(owner), ttl, RData::CNAME(CNAME(name(target))))
}

fn srv(target: &str) -> Record {
    Record::from_rdata(name("web.service.consul."), 7, RData::SRV(SRV::new(1, 1, 80, name(target))))
}

fn ours(candidate: &Name) -> bool {
    name("consul.").zone_of(candidate)
}

fn reply(id: u16, response_code: ResponseCode) -> Vec<u8> {
    let mut message = Message::query();
    message.metadata.id = id;
    message.metadata.message_type = MessageType::Response;
    message.metadata.response_code = response_code;
    message.add_query(Query::query(name("example.org."), RecordType::A));
    message.add_answer(a("example.org.", 1, 60));
    message.to_vec().expect("encode")
}

#[test]
fn sequential_keeps_the_configured_order_and_random_shuffles_it() {
    let mut rng = StdRng::seed_from_u64(7);
    assert_eq!(order(RecursorStrategy::Sequential, 4, &mut rng), [0, 1, 2, 3]);
    assert_eq!(order(RecursorStrategy::Random, 0, &mut rng), Vec::<usize>::new());
    let orders: std::collections::HashSet<Vec<usize>> =
        (0..50).map(|_| order(RecursorStrategy::Random, 4, &mut rng)).collect();
    assert!(orders.len() > 5, "random draws many orders: {orders:?}");
    for drawn in &orders {
        let mut sorted = drawn.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [0, 1, 2, 3], "every recursor is tried once");
    }
}

#[test]
fn only_noerror_and_nxdomain_replies_to_our_id_are_relayed() {
    assert!(judge(&reply(9, ResponseCode::NoError), 9).is_ok());
    assert!(judge(&reply(9, ResponseCode::NXDomain), 9).is_ok());
    for refused in [ResponseCode::ServFail, ResponseCode::Refused, ResponseCode::NotImp] {
        assert!(judge(&reply(9, refused), 9).is_err(), "{refused}");
    }
    assert!(judge(&reply(8, ResponseCode::NoError), 9).is_err(), "another ID");
    let mut query = reply(9, ResponseCode::NoError);
    query[2] &= 0x7F;
    assert!(judge(&query, 9).is_err(), "a query is no reply");
    assert!(judge(&[0, 9, 0x80], 9).is_err(), "shorter than a header");
    // A truncated reply is relayed even when it does not decode whole.
    let mut truncated = reply(9, ResponseCode::NoError);
    truncated.truncate(truncated.len() - 3);
    assert!(judge(&truncated, 9).is_err());
    truncated[2] |= 0x02;
    assert!(judge(&truncated, 9).is_ok());
}

#[test]
fn host_names_outside_our_domains_are_resolved_once_each() {
    let answer = Answer {
        answers: vec![
            srv("db.example.org."),
            srv("DB.example.org."),
            srv("node-a.node.dc1.consul."),
            srv("cache.example.net."),
        ],
        ..Answer::default()
    };
    assert_eq!(host_targets(&answer, ours), [name("db.example.org."), name("cache.example.net.")]);
    let many = Answer {
        answers: (0..20).map(|n| srv(&format!("h{n}.example.org."))).collect(),
        ..Answer::default()
    };
    assert_eq!(host_targets(&many, ours).len(), HOST_NAMES_RESOLVED_MAX);
}

#[test]
fn resolved_records_follow_the_cname_with_its_ttl_and_are_capped_without_edns() {
    let resolved: Vec<Record> = (0..8).map(|n| a("backend.example.org.", n, 300)).collect();
    let base = Answer {
        answers: vec![cname("backend.service.consul.", "backend.example.org.", 5)],
        ..Answer::default()
    };
    let mut answer = base.clone();
    add_resolved(&mut answer, &name("backend.example.org."), &resolved, false);
    assert_eq!(answer.answers.len(), 1 + RESOLVED_RECORDS_NO_EDNS_MAX);
    assert!(answer.answers[1..].iter().all(|record| record.ttl == 5 && record.record_type() == RecordType::A));
    let mut answer = base.clone();
    add_resolved(&mut answer, &name("backend.example.org."), &resolved, true);
    assert_eq!(answer.answers.len(), 1 + resolved.len(), "EDNS: all of them");
    // Only CNAME, A and AAAA records are taken (Consul's filter).
    let mut answer = base;
    let txt = Record::from_rdata(name("backend.example.org."), 1, RData::TXT(hickory_server::proto::rr::rdata::TXT::new(vec!["x".into()])));
    add_resolved(&mut answer, &name("backend.example.org."), &[txt], true);
    assert_eq!(answer.answers.len(), 1);
}

#[test]
fn resolved_records_are_glue_for_every_srv_record_naming_the_host() {
    let mut answer = Answer { answers: vec![srv("db.example.org."), srv("db.example.org.")], ..Answer::default() };
    let resolved = [cname("db.example.org.", "db-1.example.org.", 60), a("db-1.example.org.", 4, 60)];
    add_resolved(&mut answer, &name("db.example.org."), &resolved, true);
    assert_eq!(answer.answers.len(), 2);
    assert_eq!(answer.additionals.len(), 4, "one CNAME and one A per SRV record");
    assert!(answer.additionals.iter().all(|record| record.ttl == 7));
}

/// A responder on loopback that answers every query with `response_code`.
async fn responder(response_code: ResponseCode) -> SocketAddr {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let addr = socket.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut buffer = vec![0u8; 4096];
        while let Ok((_, from)) = socket.recv_from(&mut buffer).await {
            let id = u16::from_be_bytes([buffer[0], buffer[1]]);
            let _ = socket.send_to(&reply(id, response_code), from).await;
        }
    });
    addr
}

fn recursors(addrs: Vec<SocketAddr>, timeout_ms: u64) -> Recursors {
    let config = DnsConfig {
        recursors: addrs,
        recursor_timeout: Duration::from_millis(timeout_ms),
        ..DnsConfig::default()
    };
    Recursors::new(&config).expect("recursors configured")
}

#[tokio::test]
async fn sequential_forwarding_skips_a_silent_and_a_refusing_recursor() {
    assert!(Recursors::new(&DnsConfig::default()).is_none());
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let refusing = responder(ResponseCode::Refused).await;
    let answering = responder(ResponseCode::NoError).await;
    let all = recursors(vec![silent.local_addr().expect("addr"), refusing, answering], 300);
    let mut request = reply(42, ResponseCode::NoError);
    request[2] &= 0x7F; // a query: QR cleared
    let started = Instant::now();
    let relayed = all.forward(&request, Transport::Udp).await.expect("the third answers");
    assert!(started.elapsed() >= Duration::from_millis(300), "waited out the silent one");
    assert_eq!(Message::from_vec(&relayed).expect("decode").metadata.id, 42);
    let failing = recursors(vec![silent.local_addr().expect("addr"), refusing], 200);
    let started = Instant::now();
    assert!(failing.forward(&request, Transport::Udp).await.is_none());
    assert!(started.elapsed() < Duration::from_secs(2), "bounded by the timeout");
}
