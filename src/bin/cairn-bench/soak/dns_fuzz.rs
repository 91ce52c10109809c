//! The DNS port's fuzzer, over UDP and TCP: valid queries for names under `.consul`
//! (services, tags, datacenters, RFC 2782 `_name._tcp`, nodes, `in-addr.arpa` PTR, prepared
//! queries, `addr`) of every type and class, with and without EDNS (odd payload sizes,
//! versions, options), then damaged: header bits flipped, bogus section counts, compression
//! pointer loops and pointers past the end, over-long labels and names, cuts and garbage.
//!
//! Expected: an answer or a drop, never a server that stops answering. After every few
//! packets a worker asks a normal question (the canary) and a canary left unanswered is a
//! finding, with the packets sent just before it. A SERVFAIL to an undamaged query is a
//! finding too.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tokio::net::UdpSocket;

use super::mutate::mutate_bytes;
use super::report::Tally;
use super::wire::{self, Answer, Delivery};

/// Longest wait for a UDP answer before the packet counts as dropped.
const UDP_ANSWER_TIMEOUT_MS: u64 = 1_000;
/// Longest wait for a TCP answer before the connection is closed.
const TCP_ANSWER_TIMEOUT_MS: u64 = 3_000;
/// Packets between two canaries of one worker.
const CANARY_EVERY_PACKETS: u64 = 64;
/// Tries of one canary (one second each) before it is a finding.
const CANARY_TRIES: usize = 5;
/// Packets remembered to show with an unanswered canary.
const RECENT_PACKETS_SHOWN: usize = 4;

const NAMES: &[&str] = &[
    "soak-base.service.consul", "primary.soak-base.service.consul", "soak-base.service.dc1.consul", "_soak-base._tcp.service.consul",
    "_soak-base._primary.service.consul", "b1.node.consul", "b2.node.dc1.consul", "1.0.0.127.in-addr.arpa", "soak-base.query.consul",
    "7f000001.addr.dc1.consul", "fuzz-s0.service.consul", "consul", "service.consul", "x.x.x.x.x.x.x.consul", "SOAK-BASE.SERVICE.CONSUL",
    "soak-base.connect.consul", "soak-base.ingress.consul", "soak-base.virtual.consul", "*.service.consul", "nope.service.dc9.consul",
    "b1.node.consul.", "",
];
const TYPES: &[u16] = &[1, 2, 5, 6, 12, 15, 16, 28, 33, 41, 251, 252, 255, 257, 0, 65535];
const CLASSES: &[u16] = &[1, 1, 1, 1, 3, 4, 254, 255, 0];

/// Where the DNS fuzzers send.
#[derive(Clone)]
pub(crate) struct DnsTarget {
    pub(crate) addrs: Vec<SocketAddr>,
    pub(crate) sources: Vec<IpAddr>,
    /// A name that must always answer (a service the base load keeps registered).
    pub(crate) canary: String,
}

/// A name in wire format (labels, no compression); over-long labels are cut at 63 bytes.
fn name_bytes(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.split('.').filter(|l| !l.is_empty()) {
        let label = &label.as_bytes()[..label.len().min(63)];
        out.push(label.len() as u8);
        out.extend_from_slice(label);
    }
    out.push(0);
    out
}

/// A query for `name`; with `edns`, an OPT record `(payload, version, do bit, options)`.
fn query(id: u16, name: &str, qtype: u16, class: u16, edns: Option<(u16, u8, bool, Vec<(u16, Vec<u8>)>)>) -> Vec<u8> {
    let mut packet = Vec::with_capacity(64);
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns.is_some())]);
    packet.extend_from_slice(&name_bytes(name));
    packet.extend_from_slice(&qtype.to_be_bytes());
    packet.extend_from_slice(&class.to_be_bytes());
    if let Some((payload, version, dnssec_ok, options)) = edns {
        packet.push(0);
        packet.extend_from_slice(&41u16.to_be_bytes());
        packet.extend_from_slice(&payload.to_be_bytes());
        packet.extend_from_slice(&[0, version, if dnssec_ok { 0x80 } else { 0 }, 0]);
        let data: Vec<u8> = options.iter().flat_map(|(code, value)| [&code.to_be_bytes()[..], &(value.len() as u16).to_be_bytes(), value].concat()).collect();
        packet.extend_from_slice(&(data.len() as u16).to_be_bytes());
        packet.extend_from_slice(&data);
    }
    packet
}

/// A valid query, and whether it asks about our own zone (where SERVFAIL is never right).
fn seed_query(rng: &mut impl Rng) -> (Vec<u8>, bool) {
    let name = *NAMES.choose(rng).expect("non-empty");
    let qtype = if rng.gen_ratio(1, 10) { rng.r#gen() } else { *TYPES.choose(rng).expect("non-empty") };
    let class = *CLASSES.choose(rng).expect("non-empty");
    let edns = rng.gen_bool(0.3).then(|| {
        let payload = *[0u16, 1, 511, 512, 1232, 4096, 65535].choose(rng).expect("non-empty");
        let options = (0..rng.gen_range(0..4))
            .map(|_| (*[8u16, 10, 12, 15, 3, 65001].choose(rng).expect("non-empty"), (0..rng.gen_range(0..40)).map(|_| rng.r#gen()).collect()))
            .collect();
        (payload, if rng.gen_ratio(1, 5) { 1 } else { 0 }, rng.gen_bool(0.3), options)
    });
    let ours = (name.ends_with("consul") || name.ends_with("consul.") || name.ends_with("arpa")) && class == 1 && edns.as_ref().is_none_or(|e| e.1 == 0);
    (query(rng.r#gen(), name, qtype, class, edns), ours)
}

/// Damages a query in one of the ways a decoder must survive.
fn damage(rng: &mut impl Rng, packet: &mut Vec<u8>) {
    match rng.gen_range(0..9) {
        0 => packet[2 + rng.gen_range(0..2)] ^= 1 << rng.gen_range(0..8),
        1 => {
            let at = 4 + 2 * rng.gen_range(0..4);
            packet[at..at + 2].copy_from_slice(&[0u16, 2, 255, 0xffff].choose(rng).expect("non-empty").to_be_bytes());
        }
        // The question's name replaced by a pointer to itself, or a label then a pointer back.
        2 => {
            let tail = packet.split_off(12);
            packet.extend_from_slice(if rng.gen_bool(0.5) { &[0xC0, 12][..] } else { &[1, b'a', 0xC0, 12][..] });
            packet.extend_from_slice(&tail[tail.iter().position(|&b| b == 0).map_or(0, |p| p + 1)..]);
        }
        3 => {
            let far = rng.gen_range(packet.len() as u16..0x3fff);
            packet.splice(12..12, [0xC0 | (far >> 8) as u8, far as u8]);
        }
        4 => {
            packet.splice(12..12, [rng.gen_range(64..=255u8), b'x']);
        }
        5 => {
            let long: Vec<u8> = (0..rng.gen_range(5..12)).flat_map(|_| std::iter::once(63).chain(std::iter::repeat_n(b'l', 63))).collect();
            packet.splice(12..12, long);
        }
        6 => packet.truncate(rng.gen_range(0..packet.len())),
        7 => packet.extend((0..rng.gen_range(1..2_000)).map(|_| rng.r#gen::<u8>())),
        _ => {
            let rounds = rng.gen_range(1..6);
            mutate_bytes(rng, packet, rounds)
        }
    }
}

/// Runs one UDP fuzzing loop until `stop`.
pub(crate) async fn udp_worker(target: DnsTarget, seed: u64, tally: Arc<Tally>, stop: Arc<AtomicBool>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let source = *target.sources.choose(&mut rng).expect("a source");
    let Ok(socket) = UdpSocket::bind(SocketAddr::new(source, 0)).await else {
        tally.finding("dns", format!("cannot bind a UDP socket on {source}"), "");
        return;
    };
    let mut recent = VecDeque::new();
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let addr = *target.addrs.choose(&mut rng).expect("a target");
        let (mut packet, ours) = seed_query(&mut rng);
        let damaged = rng.gen_bool(0.7);
        if damaged {
            damage(&mut rng, &mut packet);
        }
        remember(&mut recent, &packet);
        tally.count("dns_udp.sent");
        if socket.send_to(&packet, addr).await.is_err() {
            tally.count("dns_udp.send_failed");
            continue;
        }
        match receive_reply(&socket, &packet, Duration::from_millis(UDP_ANSWER_TIMEOUT_MS)).await {
            Some(answer) => judge("dns_udp", &answer, ours && !damaged, &packet, &tally),
            None => tally.count("dns_udp.dropped"),
        }
        sent += 1;
        if sent.is_multiple_of(CANARY_EVERY_PACKETS) && !canary_answers(&socket, addr, &target.canary).await {
            let shown: Vec<String> = recent.iter().map(|p: &Vec<u8>| wire::shown(p)).collect();
            tally.finding("dns", format!("{addr} did not answer the canary {} over UDP", target.canary), shown.join(" ; "));
        }
    }
}

/// Runs one TCP fuzzing loop until `stop`: one connection per query, sometimes with a wrong
/// length prefix, slowly, or cut short.
pub(crate) async fn tcp_worker(target: DnsTarget, seed: u64, tally: Arc<Tally>, stop: Arc<AtomicBool>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let addr = *target.addrs.choose(&mut rng).expect("a target");
        let source = *target.sources.choose(&mut rng).expect("a source");
        let (mut packet, ours) = seed_query(&mut rng);
        let damaged = rng.gen_bool(0.6);
        if damaged {
            damage(&mut rng, &mut packet);
        }
        let length = match rng.gen_range(0..20) {
            0 => rng.r#gen::<u16>(),
            1 => 0,
            _ => packet.len().min(u16::MAX as usize) as u16,
        };
        let mut bytes = [&length.to_be_bytes()[..], &packet].concat();
        if rng.gen_ratio(1, 10) {
            let again = bytes.clone();
            bytes.extend_from_slice(&again);
        }
        let delivery = Delivery::pick(&mut rng, bytes.len());
        tally.count("dns_tcp.sent");
        let Ok(mut stream) = wire::connect_from(source, addr).await else {
            tally.finding("dns", format!("cannot connect to DNS over TCP at {addr} from {source}"), "");
            continue;
        };
        let answer = wire::exchange(&mut stream, &bytes, delivery, Duration::from_millis(TCP_ANSWER_TIMEOUT_MS), tcp_message_complete).await;
        match answer {
            Answer::Complete(answer) => judge("dns_tcp", &answer[2..], ours && !damaged && usize::from(length) == packet.len(), &packet, &tally),
            Answer::Closed(_) => tally.count("dns_tcp.closed_unanswered"),
            Answer::TimedOut(_) => tally.count("dns_tcp.timed_out"),
            Answer::NotAwaited => tally.count("dns_tcp.cut_short"),
        }
        sent += 1;
        if sent.is_multiple_of(CANARY_EVERY_PACKETS / 4) && !tcp_canary_answers(source, addr, &target.canary).await {
            tally.finding("dns", format!("{addr} did not answer the canary {} over TCP", target.canary), wire::shown(&bytes));
        }
    }
}

fn tcp_message_complete(buffer: &[u8]) -> bool {
    buffer.len() >= 2 && buffer.len() >= 2 + usize::from(u16::from_be_bytes([buffer[0], buffer[1]]))
}

fn remember(recent: &mut VecDeque<Vec<u8>>, packet: &[u8]) {
    if recent.len() == RECENT_PACKETS_SHOWN {
        recent.pop_front();
    }
    recent.push_back(packet.to_vec());
}

async fn receive(socket: &UdpSocket, timeout: Duration) -> Option<Vec<u8>> {
    let mut buffer = vec![0u8; 65_536];
    match tokio::time::timeout(timeout, socket.recv_from(&mut buffer)).await {
        Ok(Ok((length, _))) => Some(buffer[..length].to_vec()),
        _ => None,
    }
}

/// The answer to `packet` (same id), skipping late answers to earlier packets.
async fn receive_reply(socket: &UdpSocket, packet: &[u8], timeout: Duration) -> Option<Vec<u8>> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let answer = receive(socket, deadline.saturating_duration_since(tokio::time::Instant::now())).await?;
        if packet.len() < 2 || answer.get(..2) == packet.get(..2) {
            return Some(answer);
        }
    }
}

/// Counts an answer by its RCODE; SERVFAIL to an undamaged query in our zone is a finding.
fn judge(label: &str, answer: &[u8], undamaged_ours: bool, packet: &[u8], tally: &Tally) {
    let Some(&flags) = answer.get(3) else {
        tally.count(&format!("{label}.short_answer"));
        return;
    };
    let rcode = flags & 0x0f;
    const RCODES: [&str; 6] = ["noerror", "formerr", "servfail", "nxdomain", "notimp", "refused"];
    tally.count(&format!("{label}.{}", RCODES.get(usize::from(rcode)).copied().unwrap_or("rcode_other")));
    if rcode == 2 && undamaged_ours {
        tally.finding("dns", format!("SERVFAIL ({label}) to an undamaged query"), wire::shown(packet));
    }
}

/// The canary: an SRV question for `name` gets a NOERROR answer with records.
async fn canary_answers(socket: &UdpSocket, addr: SocketAddr, name: &str) -> bool {
    for _ in 0..CANARY_TRIES {
        let id: u16 = rand::random();
        if socket.send_to(&query(id, name, 33, 1, None), addr).await.is_err() {
            continue;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_millis(1_000);
        while let Some(answer) = receive(socket, deadline.saturating_duration_since(tokio::time::Instant::now())).await {
            // Late answers to fuzzed packets may still arrive: only the canary's id counts.
            if answer.len() >= 8 && answer[..2] == id.to_be_bytes() {
                return answer[3] & 0x0f == 0 && u16::from_be_bytes([answer[6], answer[7]]) > 0;
            }
        }
    }
    false
}

async fn tcp_canary_answers(source: IpAddr, addr: SocketAddr, name: &str) -> bool {
    for _ in 0..CANARY_TRIES {
        let packet = query(rand::random(), name, 33, 1, None);
        let Ok(mut stream) = wire::connect_from(source, addr).await else { continue };
        let bytes = [&(packet.len() as u16).to_be_bytes()[..], &packet].concat();
        if let Answer::Complete(answer) = wire::exchange(&mut stream, &bytes, Delivery::Whole, Duration::from_secs(1), tcp_message_complete).await
            && answer.len() >= 10
        {
            return answer[5] & 0x0f == 0 && u16::from_be_bytes([answer[8], answer[9]]) > 0;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_query_parses_as_dns() {
        let packet = query(7, "soak-base.service.consul", 33, 1, Some((4096, 0, true, vec![(10, vec![1; 8])])));
        let message = hickory_server::proto::op::Message::from_vec(&packet).unwrap();
        assert_eq!(message.queries[0].name().to_ascii(), "soak-base.service.consul.");
        assert!(message.edns.is_some());
    }

    #[test]
    fn damage_never_panics() {
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..20_000 {
            let (mut packet, _) = seed_query(&mut rng);
            damage(&mut rng, &mut packet);
        }
    }
}
