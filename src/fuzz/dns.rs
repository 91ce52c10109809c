//! Fuzzes the DNS port: raw query packets handed to our handler exactly as the sockets do
//! (`dns::Handler::respond`: decoding, EDNS, the question checks, `dns::name` parsing, the
//! `dns::answer` and `dns::zone` code over a small catalog, the UDP answer limit, and the
//! `dns::wire` encoder with its size budget). The attack: anyone who
//! can reach port 8600 (often the whole network) sends crafted queries, hoping to crash the
//! agent, make it answer with more than the client's buffer (amplification), or answer with
//! a message that does not parse.
//!
//! Every answer must encode, parse back, carry the query's ID, and fit the size the
//! transport allows (512 bytes over UDP without EDNS, the clamped EDNS size with it).

use std::collections::BTreeMap;
use std::sync::Arc;

use hickory_server::proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_server::proto::rr::{Name, RecordType};

use crate::dns::{DnsAddressOwner, DnsCatalog, DnsConfig, DnsHealth, DnsInstance, DnsNode, Handler, Transport};
use crate::fuzz::{FUZZ_ALLOC_BYTES_MAX_DEFAULT, Target, Verdict, fuzz};

/// Largest query generated: a UDP query is at most 512 bytes without EDNS; TCP allows 64 KiB.
const DNS_INPUT_BYTES_MAX: usize = 4 * 1024;

/// A catalog with every shape of answer: healthy and failing instances, IPv6, host-name
/// addresses, node metadata, and more instances than fit a UDP answer.
struct FuzzCatalog {
    services: BTreeMap<String, Vec<DnsInstance>>,
    nodes: BTreeMap<String, DnsNode>,
}

fn node(name: &str, address: &str) -> DnsNode {
    DnsNode { name: name.into(), address: address.into(), meta: BTreeMap::from([("rack".into(), "r1".into()), ("k=v".into(), "a b\"c".into())]) }
}

fn instance(node_name: &str, address: &str, service_address: &str, health: DnsHealth) -> DnsInstance {
    DnsInstance {
        node: node(node_name, address),
        service_id: format!("web-{node_name}"),
        service_address: service_address.into(),
        port: 8080,
        tags: vec!["prod".into(), "v1".into()],
        weight_passing: 10,
        weight_warning: 1,
        health,
    }
}

impl FuzzCatalog {
    fn new() -> FuzzCatalog {
        let web = vec![
            instance("web1", "10.0.0.1", "", DnsHealth::Passing),
            instance("web2", "fd00::2", "10.0.1.2", DnsHealth::Warning),
            instance("web3", "host.example.com", "", DnsHealth::Critical),
            instance("web4", "10.0.0.4", "svc.example.com", DnsHealth::Passing),
        ];
        let many = (0..300).map(|i| instance(&format!("bulk{i}"), &format!("10.2.{}.{}", i / 250, i % 250), "", DnsHealth::Passing)).collect();
        let nodes = [node("web1", "10.0.0.1"), node("web2", "fd00::2"), node("server1", "10.0.9.1")].into_iter().map(|n| (n.name.clone(), n)).collect();
        let consul = vec![instance("server1", "10.0.9.1", "", DnsHealth::Passing)];
        FuzzCatalog { services: BTreeMap::from([("web".into(), web), ("many".into(), many), ("consul".into(), consul)]), nodes }
    }
}

#[async_trait::async_trait]
impl DnsCatalog for FuzzCatalog {
    async fn service_instances(&self, service: &str) -> Option<Vec<DnsInstance>> {
        self.services.get(service).cloned()
    }
    async fn node(&self, node: &str) -> Option<DnsNode> {
        self.nodes.get(node).cloned()
    }
    async fn address_owner(&self, ip: std::net::IpAddr) -> Option<DnsAddressOwner> {
        let ip = ip.to_string();
        self.nodes.values().find(|node| node.address == ip).map(|node| DnsAddressOwner::Node(node.name.clone()))
    }
}

fn query(name: &str, record_type: RecordType, edns_payload: Option<u16>) -> Vec<u8> {
    let mut message = Message::query();
    message.metadata.id = 0x4242;
    message.add_query(Query::query(Name::from_ascii(name).expect("a valid name"), record_type));
    if let Some(payload) = edns_payload {
        let mut edns = Edns::new();
        edns.set_max_payload(payload);
        message.set_edns(edns);
    }
    message.to_vec().expect("a query encodes")
}

fn seeds() -> Vec<Vec<u8>> {
    let mut notify = Message::query();
    notify.metadata.op_code = OpCode::Notify;
    notify.add_query(Query::query(Name::from_ascii("consul.").expect("valid"), RecordType::SOA));
    vec![
        query("web.service.consul.", RecordType::SRV, None),
        query("prod.web.service.dc1.consul.", RecordType::A, None),
        query("_web._tcp.service.consul.", RecordType::SRV, Some(4096)),
        query("many.service.consul.", RecordType::ANY, None),
        query("many.service.consul.", RecordType::A, Some(1232)),
        query("web.service.consul.", RecordType::AAAA, Some(512)),
        query("web1.node.consul.", RecordType::TXT, None),
        query("web2.node.dc1.consul.", RecordType::ANY, None),
        query("0a000001.addr.consul.", RecordType::A, None),
        query("fd000000000000000000000000000002.addr.dc1.consul.", RecordType::AAAA, None),
        query("consul.", RecordType::NS, None),
        query("consul.", RecordType::SOA, Some(65535)),
        query("nothing.service.dc2.consul.", RecordType::SRV, None),
        query("example.com.", RecordType::A, None),
        query("1.0.0.10.in-addr.arpa.", RecordType::PTR, None),
        query("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.", RecordType::PTR, Some(1232)),
        query("web.service.consul.", RecordType::SOA, None),
        query("many.service.consul.", RecordType::SRV, Some(1232)),
        notify.to_vec().expect("encodes"),
    ]
}

/// Answers the raw `input` over `transport` and checks the encoded response. `request` is the
/// input decoded, when it decodes; then the response must carry its EDNS size limit.
async fn answer(handler: &Handler, input: &[u8], request: Option<&Message>, transport: Transport) {
    let Some(sent) = handler.respond(input, transport).await else {
        assert!(request.is_none_or(|request| request.metadata.message_type == MessageType::Response), "a query went unanswered");
        return;
    };
    let response = Message::from_vec(&sent).unwrap_or_else(|error| panic!("our response does not parse ({error}): {sent:?}"));
    assert_eq!(response.metadata.id, u16::from_be_bytes([input[0], input[1]]), "the response answers another query");
    assert_eq!(response.metadata.message_type, MessageType::Response);
    if transport == Transport::Udp {
        // Ours offers max(request size, 512) capped at 65,467 bytes; without EDNS, 512.
        let edns = request.and_then(|request| request.edns.as_ref());
        let offered = edns.map_or(512, |edns| usize::from(edns.max_payload().clamp(512, u16::MAX - 68)));
        assert!(sent.len() <= offered, "a UDP answer of {} bytes exceeds the {offered} bytes the client offered", sent.len());
    }
    assert!(sent.len() <= usize::from(u16::MAX), "no DNS message exceeds 65535 bytes");
}

/// Raw query packets, answered over UDP and over TCP.
#[test]
fn packets() {
    let dictionary = ["service", "node", "addr", "consul", "dc1", "_tcp", "_udp", "web", "many", "query"]
        .iter()
        .map(|label| [&[label.len() as u8][..], label.as_bytes()].concat())
        .chain([vec![0xc0, 0x0c], vec![0xc0, 0xff], vec![0x00, 0x29, 0x10, 0x00]])
        .collect();
    let target = Target { name: "dns::packets", seeds: seeds(), dictionary, input_bytes_max: DNS_INPUT_BYTES_MAX, alloc_bytes_max: FUZZ_ALLOC_BYTES_MAX_DEFAULT };
    fuzz(target, || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        let config = DnsConfig { node_ttl_s: 30, service_ttls_s: [("*".to_owned(), 5), ("we*".to_owned(), 7)].into(), enable_truncate: true, a_record_limit: 5, ..DnsConfig::default() };
        let handler = Handler::new(&config, Arc::new(FuzzCatalog::new()));
        move |input: &[u8]| {
            let request = Message::from_vec(input).ok();
            runtime.block_on(answer(&handler, input, request.as_ref(), Transport::Udp));
            runtime.block_on(answer(&handler, input, request.as_ref(), Transport::Tcp));
            // Responses are dropped unanswered (no reflection); undecodable queries get FORMERR.
            match request {
                Some(request) if request.metadata.message_type == MessageType::Query => Verdict::Accepted,
                _ => Verdict::Refused,
            }
        }
    });
}
