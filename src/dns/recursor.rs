//! Forwarding to recursors (Consul's `recursors`): questions for names outside our domains,
//! and the host names our CNAMEs point to.
//!
//! This is the only DNS code that opens sockets besides `transport`: the exchanges with the
//! upstream servers. What to try, in which order, and what to make of a reply are pure
//! functions (`order`, `judge`, `host_targets`, `add_resolved`), tested without sockets.
//!
//! Choices, each following Consul's `handleRecurse` and `resolveCNAME` (agent/dns.go):
//! - the client's request is forwarded as it came, byte for byte (its ID, flags, EDNS), over
//!   the transport it came on (UDP or TCP), and the upstream's reply is relayed as it came:
//!   its records, its rcode, its flags (RA included), its TC bit. cairn forwards raw messages
//!   rather than going through hickory-resolver's lookup API, because a resolver answers a
//!   name, not a message: it caches, retries on its own, turns NXDOMAIN and NODATA into
//!   errors and drops the authority section and the flags, where Consul relays the
//!   upstream's message unchanged;
//! - a reply over UDP that is truncated is relayed with TC set, as Consul does, so that the
//!   client asks again over TCP, which is then forwarded over TCP;
//! - recursors are tried in the configured order (`sequential`) or in a random order drawn
//!   for every question (`random`); a recursor that cannot be reached, does not answer within
//!   `recursor_timeout` (the whole exchange: connect, send, receive), sends something that is
//!   not a reply to our request, or answers with an rcode other than NOERROR or NXDOMAIN,
//!   is skipped for the next. When none is left the client gets SERVFAIL (with RA set);
//! - CNAME targets are resolved with an A question over UDP (AAAA when the client asked for
//!   AAAA: Consul always asks A, which puts A records in an AAAA answer), and the first reply
//!   is used whatever its rcode; its CNAME, A and AAAA records are added after our CNAME in
//!   the answer section, or in the additional section for an SRV target, with the TTL of our
//!   record, and at most [`RESOLVED_RECORDS_NO_EDNS_MAX`] of them without EDNS (Consul's
//!   `maxRecurseRecords`). Host names inside our own domains are not resolved (Consul
//!   resolves them internally; cairn leaves the CNAME alone).
//!
//! Bounds: at most [`RECURSOR_REQUESTS_IN_FLIGHT_MAX`] exchanges with recursors at once,
//! questions past it get SERVFAIL at once (so a flood of foreign names cannot take every
//! slot of the UDP loop, and answers for our own domain keep flowing); every exchange ends
//! within `recursor_timeout`; at most [`HOST_NAMES_RESOLVED_MAX`] host names are resolved for
//! one answer.

use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_server::proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use rand::Rng;
use rand::seq::SliceRandom;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use super::answer::Answer;
use super::transport::Transport;
use super::{DnsConfig, RecursorStrategy};

/// Most exchanges with recursors at once (forwarded questions and CNAME resolutions).
pub(crate) const RECURSOR_REQUESTS_IN_FLIGHT_MAX: usize = 256;

/// Most records a resolved host name adds to an answer without EDNS (Consul's
/// `maxRecurseRecords`); with EDNS, all of the upstream's.
pub(crate) const RESOLVED_RECORDS_NO_EDNS_MAX: usize = 5;

/// Most distinct host names resolved for one answer; the others keep their CNAME or SRV
/// target alone.
pub(crate) const HOST_NAMES_RESOLVED_MAX: usize = 8;

/// Largest reply read from a recursor, in bytes: the largest DNS message.
const UPSTREAM_REPLY_BYTES_MAX: usize = 65_535;

/// Size of a DNS header, in bytes.
const HEADER_BYTES: usize = 12;

/// Why one exchange with one recursor gave nothing to relay.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RecursorError {
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    #[error("network error: {0}")]
    Io(#[from] std::io::Error),
    #[error("request of {0} bytes cannot be framed over TCP")]
    TooLong(usize),
    #[error("the reply is not usable: {0}")]
    Unusable(String),
    #[error("the recursor answered {0}")]
    Rcode(ResponseCode),
}

/// The configured recursors; present only when at least one is configured.
pub(crate) struct Recursors {
    addrs: Vec<SocketAddr>,
    strategy: RecursorStrategy,
    /// One whole exchange with one recursor.
    timeout: Duration,
    /// Exchanges in flight, at most [`RECURSOR_REQUESTS_IN_FLIGHT_MAX`].
    in_flight: Semaphore,
}

impl Recursors {
    /// `None` when `config` names no recursor: names outside our domains are then REFUSED.
    pub(crate) fn new(config: &DnsConfig) -> Option<Recursors> {
        (!config.recursors.is_empty()).then(|| Recursors {
            addrs: config.recursors.clone(),
            strategy: config.recursor_strategy,
            timeout: config.recursor_timeout,
            in_flight: Semaphore::new(RECURSOR_REQUESTS_IN_FLIGHT_MAX),
        })
    }

    /// Forwards `request` (raw, as the client sent it over `transport`) to the recursors in
    /// turn and returns the first usable reply, raw. `None` = every recursor failed, or too
    /// many exchanges are in flight: the caller answers SERVFAIL.
    pub(crate) async fn forward(&self, request: &[u8], transport: Transport) -> Option<Vec<u8>> {
        let Ok(_permit) = self.in_flight.try_acquire() else {
            debug!("too many questions forwarded to recursors; answering SERVFAIL");
            return None;
        };
        let id = request_id(request)?;
        // The rng is dropped before the first await: it cannot be held across one.
        let indexes = order(self.strategy, self.addrs.len(), &mut rand::thread_rng());
        for index in indexes {
            let recursor = self.addrs[index];
            let outcome = match exchange(recursor, request, transport, self.timeout).await {
                Ok(reply) => judge(&reply, id).map(|()| reply),
                Err(error) => Err(error),
            };
            match outcome {
                Ok(reply) => return Some(reply),
                Err(error) => debug!(%recursor, %error, "recursor failed; trying the next"),
            }
        }
        warn!(
            recursors = self.addrs.len(),
            "every recursor failed; answering SERVFAIL"
        );
        None
    }

    /// Consul's `resolveCNAME` for a name outside our domains: the answer section of the
    /// first recursor that replies to a `record_type` question for `name` (over UDP). Empty
    /// when none replies.
    pub(crate) async fn resolve(&self, name: &Name, record_type: RecordType) -> Vec<Record> {
        let Ok(_permit) = self.in_flight.try_acquire() else {
            return Vec::new();
        };
        let mut question = Message::query();
        let id: u16 = rand::random();
        question.metadata.id = id;
        question.metadata.recursion_desired = true;
        question.add_query(Query::query(name.clone(), record_type));
        let Ok(request) = question.to_vec() else {
            return Vec::new();
        };
        // The rng is dropped before the first await: it cannot be held across one.
        let indexes = order(self.strategy, self.addrs.len(), &mut rand::thread_rng());
        for index in indexes {
            let recursor = self.addrs[index];
            let reply = exchange(recursor, &request, Transport::Udp, self.timeout).await;
            match reply.map(|bytes| Message::from_vec(&bytes)) {
                Ok(Ok(reply)) if reply.metadata.id == id => return reply.answers,
                Ok(Ok(_)) => debug!(%recursor, %name, "recursor replied with another ID"),
                Ok(Err(error)) => debug!(%recursor, %name, %error, "undecodable reply"),
                Err(error) => debug!(%recursor, %name, %error, "resolving a CNAME target failed"),
            }
        }
        Vec::new()
    }

    /// Resolves the host names `answer` points to outside our domains (`is_ours` tells ours)
    /// and adds their records, as Consul does for CNAME and SRV targets.
    pub(crate) async fn resolve_host_names(
        &self,
        answer: &mut Answer,
        question_type: RecordType,
        edns: bool,
        is_ours: impl Fn(&Name) -> bool,
    ) {
        let targets = host_targets(answer, is_ours);
        if targets.is_empty() {
            return;
        }
        let record_type = match question_type {
            RecordType::AAAA => RecordType::AAAA,
            _ => RecordType::A,
        };
        let lookups = targets
            .iter()
            .map(|target| self.resolve(target, record_type));
        let resolved = futures::future::join_all(lookups).await;
        for (target, records) in targets.iter().zip(resolved) {
            add_resolved(answer, target, &records, edns);
        }
    }
}

/// The order in which to try `count` recursors: as configured, or shuffled.
pub(crate) fn order(strategy: RecursorStrategy, count: usize, rng: &mut impl Rng) -> Vec<usize> {
    let mut indexes: Vec<usize> = (0..count).collect();
    if strategy == RecursorStrategy::Random {
        indexes.shuffle(rng);
    }
    indexes
}

/// The ID of a raw request; `None` when it is shorter than a header (the handler has read
/// the header already, so this does not happen).
fn request_id(request: &[u8]) -> Option<u16> {
    (request.len() >= HEADER_BYTES).then(|| u16::from_be_bytes([request[0], request[1]]))
}

/// Whether a raw reply from a recursor may be relayed to the client who asked `id`: a
/// response with that ID, that decodes, with NOERROR or NXDOMAIN. A truncated reply that does
/// not decode whole is relayed too (Consul relays truncated replies), so the client retries
/// over TCP.
pub(crate) fn judge(reply: &[u8], id: u16) -> Result<(), RecursorError> {
    if request_id(reply) != Some(id) || reply[2] & 0x80 == 0 {
        return Err(RecursorError::Unusable(
            "not a reply to our request".to_string(),
        ));
    }
    let truncated = reply[2] & 0x02 != 0;
    let message = match Message::from_vec(reply) {
        Ok(message) => message,
        Err(_) if truncated => return Ok(()),
        Err(error) => return Err(RecursorError::Unusable(error.to_string())),
    };
    if message.metadata.message_type != MessageType::Response {
        return Err(RecursorError::Unusable("not a response".to_string()));
    }
    match message.metadata.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => Ok(()),
        other => Err(RecursorError::Rcode(other)),
    }
}

/// One exchange with one recursor, all of it within `timeout`.
async fn exchange(
    recursor: SocketAddr,
    request: &[u8],
    transport: Transport,
    timeout: Duration,
) -> Result<Vec<u8>, RecursorError> {
    let exchange = async {
        match transport {
            Transport::Udp => exchange_udp(recursor, request).await,
            Transport::Tcp => exchange_tcp(recursor, request).await,
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| RecursorError::Timeout(timeout))?
}

/// Sends `request` from a fresh socket connected to `recursor` (so only its datagrams come
/// in, and a closed port is reported at once) and waits for the datagram that answers it:
/// others, with another ID, are dropped.
async fn exchange_udp(recursor: SocketAddr, request: &[u8]) -> Result<Vec<u8>, RecursorError> {
    let local: SocketAddr = match recursor {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(recursor).await?;
    socket.send(request).await?;
    let mut buffer = vec![0u8; UPSTREAM_REPLY_BYTES_MAX];
    loop {
        let length = socket.recv(&mut buffer).await?;
        let reply = &buffer[..length];
        if reply.len() >= HEADER_BYTES && reply[..2] == request[..2] && reply[2] & 0x80 != 0 {
            return Ok(reply.to_vec());
        }
    }
}

/// Sends `request` over a new TCP connection (RFC 1035 section 4.2.2 framing) and reads one
/// reply.
async fn exchange_tcp(recursor: SocketAddr, request: &[u8]) -> Result<Vec<u8>, RecursorError> {
    let length = u16::try_from(request.len()).map_err(|_| RecursorError::TooLong(request.len()))?;
    let mut stream = TcpStream::connect(recursor).await?;
    let mut framed = Vec::with_capacity(request.len() + 2);
    framed.extend_from_slice(&length.to_be_bytes());
    framed.extend_from_slice(request);
    stream.write_all(&framed).await?;
    let mut length = [0u8; 2];
    stream.read_exact(&mut length).await?;
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(length))];
    stream.read_exact(&mut reply).await?;
    Ok(reply)
}

/// The distinct host names outside our domains that the answer's CNAME records (answer
/// section) and SRV records point to, at most [`HOST_NAMES_RESOLVED_MAX`].
pub(crate) fn host_targets(answer: &Answer, is_ours: impl Fn(&Name) -> bool) -> Vec<Name> {
    let mut seen = HashSet::new();
    let mut targets = Vec::new();
    for record in &answer.answers {
        let target = match &record.data {
            RData::CNAME(cname) => &cname.0,
            RData::SRV(srv) => &srv.target,
            _ => continue,
        };
        if is_ours(target) || !seen.insert(target.to_lowercase()) {
            continue;
        }
        targets.push(target.clone());
        if targets.len() == HOST_NAMES_RESOLVED_MAX {
            break;
        }
    }
    targets
}

/// Adds the records resolved for `target`: its CNAME, A and AAAA records, with the TTL of
/// the record pointing to it, after a CNAME to it (answer section) or as the glue of every
/// SRV record naming it (additional section).
pub(crate) fn add_resolved(answer: &mut Answer, target: &Name, resolved: &[Record], edns: bool) {
    let limit = if edns {
        usize::MAX
    } else {
        RESOLVED_RECORDS_NO_EDNS_MAX
    };
    let usable: Vec<&Record> = resolved
        .iter()
        .filter(|record| {
            matches!(
                record.record_type(),
                RecordType::CNAME | RecordType::A | RecordType::AAAA
            )
        })
        .take(limit)
        .collect();
    if usable.is_empty() {
        return;
    }
    let mut into_answers = Vec::new();
    let mut into_additionals = Vec::new();
    for record in &answer.answers {
        let (points_here, section) = match &record.data {
            RData::CNAME(cname) => (cname.0 == *target, &mut into_answers),
            RData::SRV(srv) => (srv.target == *target, &mut into_additionals),
            _ => continue,
        };
        if points_here {
            section.extend(usable.iter().map(|resolved| {
                let mut resolved = (*resolved).clone();
                resolved.ttl = record.ttl;
                resolved
            }));
        }
    }
    answer.answers.extend(into_answers);
    answer.additionals.extend(into_additionals);
}
