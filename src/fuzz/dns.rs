//! Fuzzes the DNS port: raw query packets parsed by hickory (`Request::from_bytes`, as its
//! server does for each datagram), then answered by our handler (`dns::Handler`: EDNS, the
//! question checks, `dns::name` parsing, the `dns::answer` and `dns::zone` code over a small
//! catalog, the UDP answer limit), then encoded as hickory sends it. The attack: anyone who
//! can reach port 8600 (often the whole network) sends crafted queries, hoping to crash the
//! agent, make it answer with more than the client's buffer (amplification), or answer with
//! a message that does not parse.
//!
//! Every answer must encode, parse back, carry the query's ID, and fit the size the
//! transport allows (512 bytes over UDP without EDNS, the clamped EDNS size with it).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use hickory_server::net::NetError;
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{Edns, Header, HeaderCounts, Message, MessageType, Metadata, OpCode, Query, ResponseCode};
use hickory_server::proto::rr::{Name, Record, RecordType};
use hickory_server::proto::serialize::binary::{BinEncodable, BinEncoder};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;

use crate::dns::{DnsAddressOwner, DnsCatalog, DnsConfig, DnsHealth, DnsInstance, DnsNode, Handler};
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
        FuzzCatalog { services: BTreeMap::from([("web".into(), web), ("many".into(), many)]), nodes }
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
    async fn servers(&self) -> Vec<DnsNode> {
        vec![self.nodes["server1"].clone()]
    }
    async fn address_owner(&self, ip: std::net::IpAddr) -> Option<DnsAddressOwner> {
        let ip = ip.to_string();
        self.nodes.values().find(|node| node.address == ip).map(|node| DnsAddressOwner::Node(node.name.clone()))
    }
}

/// Keeps the encoded response, encoded exactly as hickory's `ResponseHandle` does.
#[derive(Clone)]
struct Capture {
    protocol: Protocol,
    sent: Arc<Mutex<Option<Vec<u8>>>>,
}

#[async_trait::async_trait]
impl ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let id = response.metadata().id;
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(max_response_bytes(self.protocol, response.edns()));
        let info = match response.destructive_emit(&mut encoder) {
            Ok(info) => info,
            Err(_) => {
                // hickory's fallback: a bare SERVFAIL header.
                bytes.clear();
                let mut encoder = BinEncoder::new(&mut bytes);
                let mut metadata = Metadata::new(id, MessageType::Response, OpCode::Query);
                metadata.response_code = ResponseCode::ServFail;
                let header = Header { metadata, counts: HeaderCounts::default() };
                header.emit(&mut encoder)?;
                ResponseInfo::from(header)
            }
        };
        *self.sent.lock().expect("capture lock") = Some(bytes);
        Ok(info)
    }
}

/// What the transport lets a response take, as hickory's encoder is told.
fn max_response_bytes(protocol: Protocol, edns: Option<&Edns>) -> u16 {
    match (protocol, edns) {
        (Protocol::Udp, Some(edns)) => edns.max_payload(),
        (Protocol::Udp, None) => 512,
        _ => u16::MAX,
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
        notify.to_vec().expect("encodes"),
    ]
}

/// Answers `request` over `protocol` and checks the encoded response.
async fn answer(handler: &Handler, request: &Request, protocol: Protocol) {
    let capture = Capture { protocol, sent: Arc::new(Mutex::new(None)) };
    handler.handle_request::<_, TokioTime>(request, capture.clone()).await;
    let sent = capture.sent.lock().expect("capture lock").take().expect("every query is answered");
    let response = Message::from_vec(&sent).unwrap_or_else(|error| panic!("our response does not parse ({error}): {sent:?}"));
    assert_eq!(response.metadata.id, request.metadata.id, "the response answers another query");
    assert_eq!(response.metadata.message_type, MessageType::Response);
    if protocol == Protocol::Udp {
        // Ours offers max(request size, 512) capped at 65,467 bytes; without EDNS, 512.
        let offered = request.edns.as_ref().map_or(512, |edns| usize::from(edns.max_payload().clamp(512, u16::MAX - 68)));
        assert!(sent.len() <= offered, "a UDP answer of {} bytes exceeds the {offered} bytes the client offered", sent.len());
    }
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
        let client: SocketAddr = "10.9.9.9:53000".parse().expect("an address");
        move |input: &[u8]| {
            let Ok(request) = Request::from_bytes(input.to_vec(), client, Protocol::Udp) else { return Verdict::Refused };
            // hickory's server drops responses unanswered (no reflection).
            if request.metadata.message_type == MessageType::Response {
                return Verdict::Refused;
            }
            runtime.block_on(answer(&handler, &request, Protocol::Udp));
            let over_tcp = Request::from_bytes(input.to_vec(), client, Protocol::Tcp).expect("parsed once, parses again");
            runtime.block_on(answer(&handler, &over_tcp, Protocol::Tcp));
            Verdict::Accepted
        }
    });
}
