//! The HTTP port's fuzzer: a valid request from `http_seeds`, mutated (method, path, query
//! values, filters, headers and tokens, the JSON body, the framing, the raw bytes), sent raw
//! over TCP whole, slowly or cut short, and judged by its status line.
//!
//! Expected: a 1xx/2xx/3xx/4xx status, or no answer for a request cut short on purpose, or a
//! 500 where Consul answers 500 too (`consul_answers_500`). Any other 5xx is a finding, and so
//! is no answer at all within the deadline to a request that was sent whole with its framing
//! intact. Requests that would legitimately stop the cluster (leave,
//! force-leave, join, raft peer removal, snapshot restore, node maintenance, the agent's own
//! tokens) are never sent: they are counted as skipped.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::http_seeds::{self, Body, HttpSeed, IDENTITY_KEYS, Known};
use super::mutate::{self, NESTING_DEPTH_MAX, hostile_string, mutate_bytes, mutate_text};
use super::report::Tally;
use super::wire::{self, Answer, Delivery};

/// Longest wait for a status line to a request sent whole with intact framing: a blocking
/// query parks at most the soak's `max_query_time` (8 s) plus jitter.
const ANSWER_TIMEOUT_MS: u64 = 20_000;
/// Longest wait when the framing was damaged on purpose (a Content-Length past the body waits
/// for the agent's 30 s body deadline).
const DAMAGED_ANSWER_TIMEOUT_MS: u64 = 40_000;
/// Longest wait, after the status line, for the agent to close the connection it was asked to
/// close.
const DRAIN_MS: u64 = 1_000;
/// Largest body put on the wire (a little over the agent's 576 KiB limit, to reach its 413).
const BODY_BYTES_MAX: usize = 600 * 1024;
/// Paths (lowercased, percent-decoded) never sent: each would legitimately take an agent out
/// of the cluster, replace its data, or change its own credentials.
const DENIED_PATH_PARTS: &[&str] =
    &["leave", "/join", "agent/token", "agent/maintenance", "monitor", "raft/peer", "transfer-leader", "snapshot", "reload", "acl/bootstrap"];

/// Where the HTTP fuzzers send, and as whom.
#[derive(Clone)]
pub(crate) struct HttpTarget {
    pub(crate) addrs: Vec<SocketAddr>,
    /// Loopback addresses the fuzzers' connections leave from.
    pub(crate) sources: Vec<IpAddr>,
    pub(crate) management_token: String,
    pub(crate) known: Arc<Mutex<Known>>,
}

/// A request ready for the wire.
pub(crate) struct FuzzRequest {
    pub(crate) bytes: Vec<u8>,
    pub(crate) delivery: Delivery,
    /// False once the framing or raw bytes were damaged on purpose.
    pub(crate) intact: bool,
}

/// Runs one fuzzing loop until `stop`.
pub(crate) async fn worker(target: HttpTarget, seed: u64, tally: Arc<Tally>, stop: Arc<AtomicBool>) {
    let mut rng = StdRng::seed_from_u64(seed);
    while !stop.load(Ordering::Relaxed) {
        let known = target.known.lock().expect("known ids lock").clone();
        let seed = http_seeds::seed(&mut rng, &known);
        let request = build(&mut rng, seed, &target.management_token);
        if denied(&request.bytes) {
            tally.count("http.skipped_denied");
            continue;
        }
        let addr = *target.addrs.choose(&mut rng).expect("a target");
        let source = *target.sources.choose(&mut rng).expect("a source");
        send(addr, source, &request, &tally).await;
    }
}

/// Sends one request from `source` and counts (or reports) what came back. Also used by the
/// server-port fuzzer for `/fwd`.
pub(crate) async fn send(addr: SocketAddr, source: IpAddr, request: &FuzzRequest, tally: &Tally) -> Option<u16> {
    tally.count("http.sent");
    let mut stream = match wire::connect_from(source, addr).await {
        Ok(stream) => stream,
        Err(error) => {
            tally.count("http.connect_failed");
            tally.finding("http", format!("cannot connect to {addr} from {source}: {error}"), "");
            return None;
        }
    };
    let timeout = Duration::from_millis(if request.intact { ANSWER_TIMEOUT_MS } else { DAMAGED_ANSWER_TIMEOUT_MS });
    let answer = wire::exchange(&mut stream, &request.bytes, request.delivery, timeout, |b| final_status(b).is_some()).await;
    if let Answer::Complete(_) = answer {
        wire::drain(&mut stream, Duration::from_millis(DRAIN_MS)).await;
    }
    let shown = || format!("to {addr} from {source}, {:?}: {}", request.delivery, wire::shown(&request.bytes));
    match answer {
        Answer::Complete(bytes) | Answer::Closed(bytes) if final_status(&bytes).is_some() => {
            let status = final_status(&bytes).expect("checked");
            tally.count(&format!("http.{}xx", status / 100));
            if status == 500 && consul_answers_500(&bytes) {
                tally.count("http.status_500_as_consul");
            } else if status >= 500 {
                tally.count(&format!("http.status_{status}"));
                let line = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
                tally.finding("http", format!("answered {status}: {line:?}"), shown());
            } else if matches!(status, 408 | 413 | 429 | 431) {
                tally.count(&format!("http.status_{status}"));
            }
            Some(status)
        }
        Answer::NotAwaited => {
            tally.count("http.cut_short");
            None
        }
        Answer::Complete(_) | Answer::Closed(_) => {
            tally.count(if request.intact && request.delivery.expects_answer() { "http.closed_unanswered_intact" } else { "http.closed_unanswered" });
            None
        }
        Answer::TimedOut(_) if request.intact => {
            tally.count("http.timed_out");
            tally.finding("http", format!("no status line within {} ms", timeout.as_millis()), shown());
            None
        }
        Answer::TimedOut(_) => {
            tally.count("http.timed_out_damaged");
            None
        }
    }
}

/// The status of the first non-1xx status line in `bytes`, once it is complete.
pub(crate) fn final_status(bytes: &[u8]) -> Option<u16> {
    let mut rest = bytes;
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let line = std::str::from_utf8(&rest[..line_end]).ok()?;
        let status: u16 = line.strip_prefix("HTTP/1.")?.get(2..5)?.parse().ok()?;
        if status >= 200 {
            return Some(status);
        }
        // An interim answer (100 Continue): the final one follows its blank line.
        let head_end = rest.windows(4).position(|w| w == b"\r\n\r\n")?;
        rest = &rest[head_end + 4..];
    }
}

/// True when the request line names a path in [`DENIED_PATH_PARTS`].
pub(crate) fn denied(bytes: &[u8]) -> bool {
    let line_end = bytes.iter().position(|&b| b == b'\n').unwrap_or(bytes.len());
    let line = String::from_utf8_lossy(&bytes[..line_end]).to_lowercase();
    let decoded = percent_decode(&line);
    DENIED_PATH_PARTS.iter().any(|part| line.contains(part) || decoded.contains(part))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut position = 0;
    while position < bytes.len() {
        let hex = bytes.get(position + 1..position + 3).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[position], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                position += 3;
            }
            (byte, _) => {
                out.push(byte);
                position += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).to_lowercase()
}

/// Mutates `seed` and lays it out as HTTP/1.1 bytes.
pub(crate) fn build(rng: &mut impl Rng, mut seed: HttpSeed, management_token: &str) -> FuzzRequest {
    mutate_line(rng, &mut seed);
    mutate_query(rng, &mut seed.query);
    add_headers(rng, &mut seed.headers, management_token);
    let mut body = match &seed.body {
        Body::None => Vec::new(),
        Body::Raw(raw) => raw.clone(),
        Body::Json(value) => {
            let mut value = value.clone();
            if rng.gen_bool(0.6) {
                mutate::mutate_json(rng, &mut value, IDENTITY_KEYS);
            }
            mutate::json_bytes(rng, &value)
        }
    };
    if let Body::Raw(_) = seed.body
        && rng.gen_ratio(1, 5)
    {
        let rounds = rng.gen_range(1..8);
        mutate_bytes(rng, &mut body, rounds);
    }
    body.truncate(BODY_BYTES_MAX);
    let mut intact = true;
    let version = if rng.gen_ratio(1, 40) { ["HTTP/1.0", "HTTP/2.0", "HTTP/9.9", "HTTP/1.1x", "http/1.1"].choose(rng).expect("non-empty").to_string() } else { "HTTP/1.1".into() };
    let query = seed.query.iter().map(|(k, v)| if v.is_empty() && rng.gen_bool(0.5) { k.clone() } else { format!("{k}={v}") }).collect::<Vec<_>>().join("&");
    let target = if query.is_empty() { seed.path.clone() } else { format!("{}?{query}", seed.path) };
    let mut head = format!("{} {target} {version}\r\nHost: soak\r\nConnection: close\r\n", seed.method).into_bytes();
    for (name, value) in &seed.headers {
        head.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    let body = match rng.gen_range(0..100) {
        0..=2 if !body.is_empty() => {
            intact = false;
            let claimed = if rng.gen_bool(0.5) { body.len() + rng.gen_range(1..4096) } else { rng.gen_range(0..body.len()) };
            head.extend_from_slice(format!("Content-Length: {claimed}\r\n").as_bytes());
            body
        }
        3..=4 => {
            head.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
            if rng.gen_bool(0.3) {
                intact = false;
                head.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
            }
            chunked(rng, &body, &mut intact)
        }
        _ => {
            if !body.is_empty() || seed.method != "GET" {
                head.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
            }
            body
        }
    };
    head.extend_from_slice(b"\r\n");
    head.extend_from_slice(&body);
    if rng.gen_ratio(1, 30) {
        intact = false;
        let rounds = rng.gen_range(1..8);
        mutate_bytes(rng, &mut head, rounds);
    }
    let delivery = Delivery::pick(rng, head.len());
    FuzzRequest { bytes: head, delivery, intact }
}

/// `body` as chunks, now and then with a damaged chunk size.
fn chunked(rng: &mut impl Rng, body: &[u8], intact: &mut bool) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in body.chunks(rng.gen_range(1..=body.len().max(1))) {
        let size = if rng.gen_ratio(1, 10) {
            *intact = false;
            ["zz", "-1", "ffffffffffffffff", "1;ext=\"x\""].choose(rng).expect("non-empty").to_string()
        } else {
            format!("{:x}", chunk.len())
        };
        out.extend_from_slice(format!("{size}\r\n").as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

fn mutate_line(rng: &mut impl Rng, seed: &mut HttpSeed) {
    if rng.gen_ratio(1, 10) {
        const METHODS: &[&str] = &["GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "get", "PUTT", "XXXXXXXXXXXXXXXXXXXXXXXX"];
        seed.method = METHODS.choose(rng).expect("non-empty").to_string();
    }
    match rng.gen_range(0..40) {
        0..=1 => seed.path = http_seeds::encode_segment(&mutate_text(rng, &seed.path)),
        2 => {
            const SEGMENTS: &[&str] = &["v1", "kv", "catalog", "agent", "health", "service", "node", "check", "acl", "token", "txn", "session", "..", "%2e%2e", "", "x"];
            let count = rng.gen_range(1..8);
            seed.path = (0..count).map(|_| *SEGMENTS.choose(rng).expect("non-empty")).collect::<Vec<_>>().join("/");
            seed.path.insert(0, '/');
        }
        3 => seed.path = format!("{}{}", seed.path, "/x".repeat(rng.gen_range(1..2_000))),
        _ => {}
    }
}

fn mutate_query(rng: &mut impl Rng, query: &mut Vec<(String, String)>) {
    for (name, value) in query.iter_mut() {
        if name == "filter" && rng.gen_bool(0.4) {
            *value = hostile_filter(rng, value);
        } else if rng.gen_ratio(1, 8) {
            *value = mutate_text(rng, value);
        }
        *value = http_seeds::encode_segment(value).replace('/', "%2F");
    }
    if rng.gen_ratio(1, 8) {
        const NAMES: &[&str] = &["index", "wait", "recurse", "separator", "keys", "cas", "flags", "filter", "dc", "stale", "consistent", "near", "tag", "passing", "ns", "partition", "peer", "token", "hash", "x"];
        let name = NAMES.choose(rng).expect("non-empty").to_string();
        let value = http_seeds::encode_segment(&hostile_string(rng).chars().take(512).collect::<String>());
        query.push((name, value));
    }
    if rng.gen_ratio(1, 20)
        && let Some(first) = query.first().cloned()
    {
        query.push(first);
    }
}

/// A filter expression that stresses the parser: deep parentheses, long `not` chains, long
/// `and` chains, or a damaged copy of `valid`.
fn hostile_filter(rng: &mut impl Rng, valid: &str) -> String {
    let depth = rng.gen_range(1..NESTING_DEPTH_MAX / 2);
    match rng.gen_range(0..5) {
        0 => format!("{}{valid}{}", "(".repeat(depth), ")".repeat(depth)),
        1 => format!("{}{valid}", "not ".repeat(depth)),
        2 => vec![valid; rng.gen_range(2..500)].join(" and "),
        3 => format!("{}{valid}", "(".repeat(depth)),
        _ => mutate_text(rng, valid),
    }
}

fn add_headers(rng: &mut impl Rng, headers: &mut Vec<(String, String)>, management_token: &str) {
    match rng.gen_range(0..10) {
        0..=3 => headers.push(("X-Consul-Token".into(), management_token.into())),
        4 => headers.push(("X-Consul-Token".into(), hostile_string(rng).chars().filter(|c| c.is_ascii_graphic()).take(128).collect())),
        5 => headers.push(("Authorization".into(), format!("Bearer {management_token}"))),
        6 => headers.push(("Authorization".into(), "Basic Zm9vOmJhcg==".into())),
        _ => {}
    }
    match rng.gen_range(0..60) {
        0 => headers.push(("X-Huge".into(), "h".repeat(rng.gen_range(8 * 1024..80 * 1024)))),
        1 => headers.extend((0..rng.gen_range(50..300)).map(|n| (format!("X-Many-{n}"), "v".into()))),
        2 => headers.push(("Expect".into(), "100-continue".into())),
        // A name hyper must refuse (or take), but never a line break that would end the head.
        3 => headers.push((hostile_string(rng).chars().filter(|c| !matches!(c, '\r' | '\n')).take(64).collect(), "v".into())),
        4 => headers.push(("X-Consul-Namespace".into(), "default".into())),
        5 => headers.push(("Accept-Encoding".into(), "gzip, br, *".into())),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_status_skips_interim_answers_and_waits_for_a_whole_line() {
        assert_eq!(final_status(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(final_status(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 413 Payload Too Large\r\n"), Some(413));
        assert_eq!(final_status(b"HTTP/1.1 100 Continue\r\n\r\n"), None);
        assert_eq!(final_status(b"HTTP/1.1 50"), None);
        assert_eq!(final_status(b"garbage\r\n"), None);
    }

    #[test]
    fn requests_that_stop_an_agent_are_denied_however_encoded() {
        assert!(denied(b"PUT /v1/agent/leave HTTP/1.1\r\n"));
        assert!(denied(b"PUT /v1/agent/%6Ceave HTTP/1.1\r\n"));
        assert!(denied(b"DELETE /v1/operator/raft/peer?id=x HTTP/1.1\r\n"));
        assert!(!denied(b"PUT /v1/agent/service/maintenance/fuzz-s0-0 HTTP/1.1\r\n"));
        assert!(!denied(b"GET /v1/kv/fuzz/k0 HTTP/1.1\r\n"));
    }
}

/// Consul's own 500s, which clients match on: `?dc=` naming a datacenter it has no path to
/// answers 500 `No path to datacenter` (hashicorp/consul#908, #4901; linkerd and
/// consul-template read that text), so cairn answers the same and the soak expects it.
fn consul_answers_500(answer: &[u8]) -> bool {
    let head_end = answer.windows(4).position(|w| w == b"\r\n\r\n").map_or(answer.len(), |at| at + 4);
    answer[head_end..].starts_with(b"No path to datacenter")
}
