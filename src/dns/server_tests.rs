//! End-to-end tests: a real [`DnsServer`] on 127.0.0.1, queried with real DNS packets over UDP
//! and TCP (2-byte length prefix), backed by an in-memory [`DnsCatalog`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::proto::op::{Edns, Message, Query, ResponseCode};
use hickory_server::proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::time::timeout;

use super::tests::{instance, node};
use super::{DnsAddressOwner, DnsCatalog, DnsConfig, DnsHealth, DnsInstance, DnsNode, DnsServer};

/// How long a test waits for any one reply before failing.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Default)]
struct MemoryCatalog {
    services: HashMap<String, Vec<DnsInstance>>,
    nodes: HashMap<String, DnsNode>,
}

#[async_trait::async_trait]
impl DnsCatalog for MemoryCatalog {
    async fn service_instances(&self, service: &str) -> Option<Vec<DnsInstance>> {
        self.services.get(service).cloned()
    }
    async fn node(&self, node: &str) -> Option<DnsNode> {
        self.nodes.get(node).cloned()
    }
    async fn address_owner(&self, ip: std::net::IpAddr) -> Option<DnsAddressOwner> {
        let ip = ip.to_string();
        self.nodes
            .values()
            .find(|node| node.address == ip)
            .map(|node| DnsAddressOwner::Node(node.name.clone()))
    }
}

fn catalog() -> MemoryCatalog {
    let mut prod = instance("web1", "10.0.0.1", DnsHealth::Passing);
    prod.tags = vec!["prod".to_owned()];
    let mut warning = instance("web2", "10.0.0.2", DnsHealth::Warning);
    warning.tags = vec!["canary".to_owned()];
    let critical = instance("web3", "10.0.0.3", DnsHealth::Critical);
    let many = (0..200)
        .map(|i| {
            instance(
                &format!("bulk{i}"),
                &format!("10.2.{}.{}", i / 100, i % 100),
                DnsHealth::Passing,
            )
        })
        .collect();
    let mut catalog = MemoryCatalog::default();
    catalog
        .services
        .insert("web".to_owned(), vec![prod, warning, critical]);
    catalog.services.insert(
        "down".to_owned(),
        vec![instance("web3", "10.0.0.3", DnsHealth::Critical)],
    );
    catalog.services.insert("many".to_owned(), many);
    catalog
        .nodes
        .insert("web1".to_owned(), node("web1", "10.0.0.1"));
    catalog.services.insert(
        "consul".to_owned(),
        vec![
            instance("server1", "10.0.9.1", DnsHealth::Passing),
            instance("server2", "10.0.9.2", DnsHealth::Critical),
            instance("server3", "10.0.9.3", DnsHealth::Warning),
        ],
    );
    catalog
}

struct Running {
    server: DnsServer,
    udp: SocketAddr,
    tcp: SocketAddr,
}

async fn start(config: DnsConfig) -> Running {
    let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind tcp");
    let (udp_addr, tcp_addr) = (udp.local_addr().unwrap(), tcp.local_addr().unwrap());
    let server = DnsServer::start(udp, tcp, config, Arc::new(catalog()));
    Running {
        server,
        udp: udp_addr,
        tcp: tcp_addr,
    }
}

fn config() -> DnsConfig {
    DnsConfig {
        node_ttl_s: 30,
        service_ttls_s: [("*".to_owned(), 5)].into(),
        enable_truncate: true,
        ..DnsConfig::default()
    }
}

fn query(name: &str, rtype: RecordType, edns_payload: Option<u16>) -> Message {
    let mut message = Message::query();
    message.metadata.id = rand::random();
    message.add_query(Query::query(
        Name::from_ascii(name).expect("valid name"),
        rtype,
    ));
    if let Some(payload) = edns_payload {
        let mut edns = Edns::new();
        edns.set_max_payload(payload);
        message.set_edns(edns);
    }
    message
}

async fn udp_exchange(server: SocketAddr, request: &[u8]) -> Vec<u8> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind client");
    socket.send_to(request, server).await.expect("send");
    let mut buffer = vec![0; 65_535];
    let length = timeout(REPLY_TIMEOUT, socket.recv(&mut buffer))
        .await
        .expect("udp reply")
        .expect("recv");
    buffer.truncate(length);
    buffer
}

async fn udp(server: SocketAddr, message: &Message) -> Message {
    let reply = udp_exchange(server, &message.to_vec().expect("encode")).await;
    let reply = Message::from_vec(&reply).expect("decode reply");
    assert_eq!(reply.metadata.id, message.metadata.id);
    reply
}

async fn tcp(server: SocketAddr, message: &Message) -> Message {
    let mut stream = TcpStream::connect(server).await.expect("connect");
    let bytes = message.to_vec().expect("encode");
    let mut framed = u16::try_from(bytes.len()).unwrap().to_be_bytes().to_vec();
    framed.extend(bytes);
    stream.write_all(&framed).await.expect("write");
    let reply = timeout(REPLY_TIMEOUT, async {
        let length = stream.read_u16().await?;
        let mut reply = vec![0; usize::from(length)];
        stream.read_exact(&mut reply).await?;
        Ok::<_, std::io::Error>(reply)
    })
    .await
    .expect("tcp reply")
    .expect("read");
    Message::from_vec(&reply).expect("decode reply")
}

fn addresses(records: &[hickory_server::proto::rr::Record]) -> Vec<String> {
    let mut out: Vec<String> = records
        .iter()
        .filter_map(|record| match &record.data {
            RData::A(a) => Some(a.0.to_string()),
            RData::AAAA(aaaa) => Some(aaaa.0.to_string()),
            _ => None,
        })
        .collect();
    out.sort();
    out
}

fn srv_targets(reply: &Message) -> Vec<String> {
    let mut out: Vec<String> = reply
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::SRV(srv) => Some(srv.target.to_string()),
            _ => None,
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn services_nodes_and_errors_over_udp() {
    let running = start(config()).await;
    let server = running.udp;

    // SRV with the target's A record in the additional section; the critical web3 is left out.
    let reply = udp(server, &query("web.service.consul.", RecordType::SRV, None)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.metadata.authoritative);
    assert_eq!(
        srv_targets(&reply),
        ["web1.node.dc1.consul.", "web2.node.dc1.consul."]
    );
    assert_eq!(addresses(&reply.additionals), ["10.0.0.1", "10.0.0.2"]);

    // Tag filter, and the RFC 2782 form with and without a tag.
    let reply = udp(
        server,
        &query("prod.web.service.consul.", RecordType::A, None),
    )
    .await;
    assert_eq!(addresses(&reply.answers), ["10.0.0.1"]);
    let reply = udp(
        server,
        &query("_web._canary.service.consul.", RecordType::SRV, None),
    )
    .await;
    assert_eq!(srv_targets(&reply), ["web2.node.dc1.consul."]);
    let reply = udp(
        server,
        &query("_web._tcp.service.dc1.consul.", RecordType::SRV, None),
    )
    .await;
    assert_eq!(srv_targets(&reply).len(), 2);

    // Case-insensitive, and the answer echoes the question's case.
    let reply = udp(server, &query("WeB.SeRvIcE.CoNsUl.", RecordType::A, None)).await;
    assert_eq!(addresses(&reply.answers), ["10.0.0.1", "10.0.0.2"]);
    assert!(
        reply.answers[0]
            .name
            .eq_case(&Name::from_ascii("WeB.SeRvIcE.CoNsUl.").unwrap())
    );
    assert_eq!(reply.answers[0].ttl, 5);

    // NXDOMAIN with the SOA: unknown service, all-critical service, unknown datacenter, bad name.
    for name in [
        "nope.service.consul.",
        "down.service.consul.",
        "web.service.dc9.consul.",
        "web.consul.",
    ] {
        let reply = udp(server, &query(name, RecordType::A, None)).await;
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::NXDomain,
            "{name}"
        );
        assert!(reply.answers.is_empty());
        assert!(
            matches!(reply.authorities[..], [ref soa] if soa.record_type() == RecordType::SOA),
            "{name}"
        );
    }

    // NODATA: the name exists, the type does not.
    let reply = udp(
        server,
        &query("web.service.consul.", RecordType::AAAA, None),
    )
    .await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.answers.is_empty());
    assert_eq!(reply.authorities[0].record_type(), RecordType::SOA);

    // Node lookup, and NODATA for SRV on a node.
    let reply = udp(server, &query("web1.node.consul.", RecordType::A, None)).await;
    assert_eq!(addresses(&reply.answers), ["10.0.0.1"]);
    assert_eq!(reply.answers[0].ttl, 30);
    let reply = udp(
        server,
        &query("web1.node.dc1.consul.", RecordType::SRV, None),
    )
    .await;
    assert_eq!(
        (reply.metadata.response_code, reply.answers.len()),
        (ResponseCode::NoError, 0)
    );

    // Apex NS with glue, never naming a critical server; a name outside the domain is refused.
    let reply = udp(server, &query("consul.", RecordType::NS, None)).await;
    assert_eq!(reply.answers.len(), 2);
    let mut glue = addresses(&reply.additionals);
    glue.sort();
    assert_eq!(glue, ["10.0.9.1", "10.0.9.3"]);
    let reply = udp(server, &query("example.com.", RecordType::A, None)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
    assert!(!reply.metadata.authoritative);

    running.server.shutdown().await;
}

#[tokio::test]
async fn only_passing_drops_warning_instances() {
    let running = start(DnsConfig {
        only_passing: true,
        ..config()
    })
    .await;
    let reply = udp(
        running.udp,
        &query("web.service.consul.", RecordType::A, None),
    )
    .await;
    assert_eq!(addresses(&reply.answers), ["10.0.0.1"]);
    // Name servers too: only passing ones, as Consul's `Filter(onlyPassing)`.
    let reply = udp(running.udp, &query("consul.", RecordType::NS, None)).await;
    assert_eq!(addresses(&reply.additionals), ["10.0.9.1"]);
    let reply = udp(
        running.udp,
        &query("canary.web.service.consul.", RecordType::A, None),
    )
    .await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    running.server.shutdown().await;
}

#[tokio::test]
async fn large_answers_truncate_over_udp_and_come_whole_over_tcp() {
    let running = start(config()).await;
    // Without EDNS: Consul's udp_answer_limit (3), with TC because enable_truncate is on.
    let reply = udp(
        running.udp,
        &query("many.service.consul.", RecordType::A, None),
    )
    .await;
    assert!(reply.metadata.truncation);
    assert_eq!(reply.answers.len(), 3);
    // With EDNS: no count limit, but 200 SRV records exceed 1232 bytes, so hickory sets TC.
    let reply = udp(
        running.udp,
        &query("many.service.consul.", RecordType::SRV, Some(1232)),
    )
    .await;
    assert!(reply.metadata.truncation);
    // Over TCP everything arrives.
    let reply = tcp(
        running.tcp,
        &query("many.service.consul.", RecordType::SRV, None),
    )
    .await;
    assert!(!reply.metadata.truncation);
    assert_eq!(reply.answers.len(), 200);
    assert_eq!(reply.additionals.len(), 200);
    let reply = tcp(
        running.tcp,
        &query("MANY.service.consul.", RecordType::A, None),
    )
    .await;
    assert_eq!(reply.answers.len(), 200);
    running.server.shutdown().await;
}

#[tokio::test]
async fn edns_is_echoed_and_newer_versions_get_badvers() {
    let running = start(config()).await;
    let reply = udp(
        running.udp,
        &query("web.service.consul.", RecordType::A, Some(4096)),
    )
    .await;
    assert_eq!(reply.edns.as_ref().map(Edns::max_payload), Some(4096));
    let reply = udp(
        running.udp,
        &query("web.service.consul.", RecordType::A, Some(100)),
    )
    .await;
    assert_eq!(reply.edns.as_ref().map(Edns::max_payload), Some(512));
    let reply = udp(
        running.udp,
        &query("web.service.consul.", RecordType::A, None),
    )
    .await;
    assert!(reply.edns.is_none());

    let mut newer = query("web.service.consul.", RecordType::A, Some(1232));
    if let Some(edns) = newer.edns.as_mut() {
        edns.set_version(1);
    }
    let reply = udp(running.udp, &newer).await;
    // BADVERS and BADSIG share code 16, and the decoder names it BADSIG.
    let code = u16::from(reply.metadata.response_code);
    assert_eq!(code, u16::from(ResponseCode::BADVERS));
    assert!(reply.answers.is_empty());
    running.server.shutdown().await;
}

#[tokio::test]
async fn garbage_does_not_stop_the_server() {
    let running = start(config()).await;
    let valid = query("web1.node.consul.", RecordType::A, None)
        .to_vec()
        .unwrap();
    let mut garbage: Vec<Vec<u8>> = vec![
        Vec::new(),
        vec![0xff],
        vec![0; 11],
        vec![0xff; 12],
        vec![0xab; 512],
        // A header that promises one question and 65535 answers, then stops.
        vec![0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0xff, 0xff, 0, 0, 0, 0],
        // A compression pointer that points at itself.
        vec![
            0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1,
        ],
        // A response rather than a query.
        {
            let mut response = valid.clone();
            response[2] |= 0x80;
            response
        },
    ];
    garbage.extend((1..valid.len()).map(|cut| valid[..cut].to_vec()));
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for packet in &garbage {
        socket.send_to(packet, running.udp).await.unwrap();
    }
    // Over TCP: a length prefix followed by junk, then a connection that just hangs up.
    let mut stream = TcpStream::connect(running.tcp).await.unwrap();
    stream
        .write_all(&[0x00, 0x10, 0xde, 0xad, 0xbe, 0xef])
        .await
        .unwrap();
    drop(stream);
    drop(TcpStream::connect(running.tcp).await.unwrap());

    let reply = udp(
        running.udp,
        &query("web1.node.consul.", RecordType::A, None),
    )
    .await;
    assert_eq!(addresses(&reply.answers), ["10.0.0.1"]);
    let reply = tcp(
        running.tcp,
        &query("web1.node.consul.", RecordType::A, None),
    )
    .await;
    assert_eq!(addresses(&reply.answers), ["10.0.0.1"]);
    running.server.shutdown().await;
}

#[tokio::test]
async fn an_invalid_config_refuses_everything_instead_of_panicking() {
    let running = start(DnsConfig {
        domain: "a..b".to_owned(),
        ..config()
    })
    .await;
    let reply = udp(
        running.udp,
        &query("web.service.consul.", RecordType::A, None),
    )
    .await;
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
    running.server.shutdown().await;
}
