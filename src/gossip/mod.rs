//! LAN gossip: Serf-style membership and failure detection, SWIM over foca on tokio.
//!
//! `Gossip::start` takes a bound UDP socket and TCP listener (same port) and spawns two
//! tasks: the gossip task (`driver`), which owns foca (SWIM with suspicion, indirect probes
//! and piggy-backed updates), the UDP socket, foca's timers and the member list; and the
//! push/pull listener (`push_pull`), which answers joins. `Gossip` is a cheap handle to both.
//! This module decides nothing about the catalog: it only reports members and emits
//! `MemberEvent`s (the agent's leader turns them into Consul's serfHealth check).
//!
//! Design, by concern:
//! - identity (`identity`): foca's identity is small, `name@addr#bump`, keyed by name; `bump`
//!   orders restarts and renewals, so a restarted or wrongly-declared-down member rejoins;
//! - tags, leave intents and user events (`broadcasts`) ride foca's custom broadcasts and the
//!   push/pull; tags are capped at `TAGS_BYTES_MAX` encoded bytes, user events at
//!   `USER_EVENT_BYTES_MAX` (Serf's limits);
//! - statuses (`view`): foca knows up and down; a leave intent seen before the down makes it
//!   `Left` rather than `Failed`. Failed members are reaped after `reconnect_timeout_ms`, left
//!   ones after `tombstone_timeout_ms`;
//! - joins (`join`, `push_pull`): a TCP push/pull of the full state with each address;
//! - wire (`envelope`, `keyring`): every UDP packet and TCP message is `[version][kind]...`,
//!   sealed with AES-GCM when a keyring is set; anything refused is dropped and counted
//!   (`stats`), never a panic; an agent with another key never appears in anyone's members;
//! - key rotation (`keyring_ops`, `keyring_wire`, `keyring_file`): the ring is shared by every
//!   clone of the sealer and replaced whole by an install, use or remove, saved first to
//!   `<data_dir>/serf/local.keyring` when the agent has one; `Gossip::keyring_cluster` applies
//!   an operation here and on every alive member over the push/pull listener;
//! - RTT samples for network coordinates come from our own ping/pong to one random member
//!   every probe interval (foca keeps its probe timings to itself); the pong carries the
//!   member's coordinate (`rtt`), and the gossip task moves this agent's own (`coordinate`,
//!   `Gossip::coordinate`) with each sample, as Serf does with its ping acks;
//! - timing (`timing`): Consul's `gossip_lan` knobs, scaled with the pool size as memberlist;
//! - stale timers (`suspicion`): a suspicion timer is dropped once its member refuted, so that
//!   foca 2.0.0 does not tell a live member it is down (shared with `cairn-bench --gossip-sim`).
//!
//! Limits: `GOSSIP_PACKET_BYTES_MAX` (envelope), `PUSH_PULL_BYTES_MAX`,
//! `PUSH_PULL_MEMBERS_MAX`, `JOIN_TIMEOUT_MS`, `TCP_CONNS_MAX` (push_pull), `MEMBERS_MAX`,
//! `NODE_NAME_BYTES_MAX` (identity), `KEYRING_KEYS_MAX` (keyring),
//! `KEYRING_DIALS_IN_FLIGHT_MAX`, `KEYRING_MEMBER_TIMEOUT_MS` (keyring_wire), and the channel
//! capacities below.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use self::broadcasts::{UserEventItem, check_tags, check_user_event};
use self::driver::{Command, Driver, DriverParts};
use self::envelope::Sealer;
use self::identity::{NodeId, NodeName};
use self::keyring::{Cipher, KEYRING_KEYS_MAX};
use self::keyring_ops::LocalKeyring;
use self::stats::Counters;

mod broadcasts;
pub mod coordinate;
mod driver;
mod envelope;
#[cfg(test)]
pub(crate) mod fuzz_seam;
mod handle;
mod identity;
mod join;
mod keyring;
mod keyring_file;
pub mod keyring_ops;
mod keyring_wire;
mod push_pull;
mod rtt;
mod stats;
pub mod suspicion;
#[cfg(test)]
mod tests;
pub mod timing;
mod view;

/// Serf's limit on a user event's name plus payload, in bytes.
pub const USER_EVENT_BYTES_MAX: usize = 512;

/// memberlist's limit on node meta: a node's encoded tags, in bytes.
pub const TAGS_BYTES_MAX: usize = 512;

/// The most members (the local node included) one agent tracks: well above the 5,000-member
/// pools we size for, still a bound on memory (the member view, the tag and leave tables,
/// and a push/pull message of at most `PUSH_PULL_BYTES_MAX` = 16 MiB).
const MEMBERS_MAX: usize = 16_384;

/// Member events buffered per subscriber before the slowest one lags.
const MEMBER_EVENTS_CAPACITY: usize = 1024;

/// User events buffered per subscriber.
const USER_EVENTS_CAPACITY: usize = 256;

/// RTT samples buffered per subscriber.
const RTT_SAMPLES_CAPACITY: usize = 256;

/// Requests queued for the gossip task.
const COMMANDS_QUEUE_MAX: usize = 256;

/// The gossip settings of one agent.
#[derive(Clone, Debug)]
pub struct GossipConfig {
    pub node_name: String,
    /// What others dial (UDP and TCP on the same port).
    pub advertise: SocketAddr,
    /// Opaque to gossip (Consul's serf tags: role, dc, id, port, build, vsn...).
    pub tags: BTreeMap<String, String>,
    /// From Consul's `encrypt`, or the keyring file that wins over it (`None`: no encryption).
    pub keyring: Option<Keyring>,
    /// Where every keyring change is saved (Consul's `<data_dir>/serf/local.keyring`); `None`:
    /// changes live in memory only (dev mode, no data dir).
    pub keyring_file: Option<PathBuf>,
    /// Consul semantics: false = also accept plaintext packets.
    pub encrypt_verify_incoming: bool,
    /// false = send plaintext.
    pub encrypt_verify_outgoing: bool,
    pub timing: timing::GossipTiming,
    /// Failed members are reaped (event `Reap`) after this.
    pub reconnect_timeout_ms: u64,
    /// Left members are forgotten after this (Consul: 24h).
    pub tombstone_timeout_ms: u64,
    /// The port a bare-host join address gets (serf LAN 8301).
    pub default_port: u16,
}

/// The gossip encryption keys: the primary encrypts, every key decrypts.
#[derive(Clone)]
pub struct Keyring {
    ciphers: Vec<Cipher>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "Keyring({} keys)", self.ciphers.len())
    }
}

impl Keyring {
    /// A keyring of one key: 16, 24 or 32 bytes in base64 (AES-128/192/256-GCM).
    pub fn from_base64(key_base64: &str) -> Result<Keyring, GossipError> {
        Keyring::from_base64_keys(key_base64, &[])
    }

    /// A keyring whose `primary` encrypts and whose `secondaries` also decrypt (rotation).
    pub fn from_base64_keys(primary: &str, secondaries: &[String]) -> Result<Keyring, GossipError> {
        if secondaries.len() + 1 > KEYRING_KEYS_MAX {
            return Err(GossipError::InvalidKey { reason: format!("more than {KEYRING_KEYS_MAX} keys") });
        }
        let keys = std::iter::once(primary).chain(secondaries.iter().map(String::as_str));
        let ciphers = keys.map(Cipher::from_base64).collect::<Result<Vec<_>, _>>();
        Ok(Keyring { ciphers: ciphers.map_err(|reason| GossipError::InvalidKey { reason })? })
    }

    /// A new key for `cairn keygen`: base64 of 32 random bytes.
    pub fn generate() -> String {
        keyring::generate_key_base64()
    }

    /// The keyring saved at `path` (Consul's `serf/local.keyring`), `None` when there is no
    /// file; a file that does not hold a valid ring is an error.
    pub fn load_file(path: &Path) -> Result<Option<Keyring>, GossipError> {
        let ring = keyring_file::read(path).map_err(|reason| GossipError::KeyringFile { reason })?;
        Ok(ring.map(|ciphers| Keyring { ciphers }))
    }

    /// Saves this keyring at `path` (directory 0700, file 0600, written whole).
    pub fn write_file(&self, path: &Path) -> Result<(), GossipError> {
        keyring_file::write(path, &self.ciphers)
            .map_err(|error| GossipError::KeyringFile { reason: format!("{}: {error}", path.display()) })
    }

    /// Whether the ring holds `key_base64` (false for a key that does not decode).
    pub fn contains(&self, key_base64: &str) -> bool {
        Cipher::from_base64(key_base64).is_ok_and(|key| self.ciphers.iter().any(|installed| installed.same_key(&key)))
    }
}

/// A member as Serf reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub addr: IpAddr,
    pub port: u16,
    pub tags: BTreeMap<String, String>,
    pub status: MemberStatus,
}

/// Serf's member status, with Consul's numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MemberStatus {
    None = 0,
    Alive = 1,
    Leaving = 2,
    Left = 3,
    Failed = 4,
}

/// A change in the member list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberEvent {
    Join(Member),
    Update(Member),
    Failed(Member),
    Left(Member),
    Reap(Member),
}

/// A user event (Consul's `event fire`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserEvent {
    pub ltime: u64,
    pub name: String,
    pub payload: Vec<u8>,
}

/// A round-trip time to a member, measured by gossip, for network coordinates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RttSample {
    pub node: String,
    pub rtt: Duration,
}

/// Gossip counters since start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GossipStats {
    pub packets_received: u64,
    pub packets_sent: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    /// UDP sends that failed (full socket buffer, unreachable network).
    pub send_errors: u64,
    /// Packets or messages too short, of unknown version or kind, or that do not decode.
    pub dropped_malformed: u64,
    /// Encrypted packets or messages no key of the ring opens.
    pub dropped_decrypt: u64,
    /// Packets above `GOSSIP_PACKET_BYTES_MAX`, messages above `PUSH_PULL_BYTES_MAX`.
    pub dropped_oversized: u64,
    /// Plaintext refused because `encrypt_verify_incoming` is set.
    pub dropped_plaintext: u64,
    /// Protocol noise foca recovered from (stale identities, crossed probes).
    pub foca_errors: u64,
    pub push_pulls_served: u64,
    /// Push/pull exchanges that failed on the network or timed out.
    pub push_pulls_failed: u64,
    /// Push/pull connections closed because `TCP_CONNS_MAX` were being served.
    pub tcp_conns_refused: u64,
    /// Peer coordinates refused: malformed, invalid, of another dimensionality, or with an
    /// RTT out of range.
    pub coordinates_refused: u64,
}

/// Errors of the gossip facade.
#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    #[error("invalid node name {name:?}: {reason}")]
    InvalidNodeName { name: String, reason: String },
    #[error("node tags too large: {reason}")]
    TagsTooLarge { reason: String },
    #[error("invalid gossip encryption key: {reason}")]
    InvalidKey { reason: String },
    #[error("invalid gossip keyring file: {reason}")]
    KeyringFile { reason: String },
    #[error("user event exceeds the limit of {limit} bytes before encoding: {bytes} bytes (name and payload)")]
    UserEventTooLarge { bytes: usize, limit: usize },
    #[error("user event name must not be empty")]
    UserEventNameEmpty,
    #[error("agent: No node found with name '{node}'")]
    NoSuchMember { node: String },
    /// Worded like Consul's multierror: `1 error occurred:\n\t* Failed to join ...`.
    #[error("{}", multierror(errors))]
    JoinFailed { errors: Vec<String> },
    #[error("gossip has shut down")]
    ShutDown,
    #[error("gossip is busy: {COMMANDS_QUEUE_MAX} requests queued")]
    Busy,
}

/// go-multierror's wording, which Consul prints for a failed join.
fn multierror(errors: &[String]) -> String {
    let plural = if errors.len() == 1 { "" } else { "s" };
    let lines: Vec<String> = errors.iter().map(|error| format!("\t* {error}")).collect();
    format!("{} error{plural} occurred:\n{}\n", errors.len(), lines.join("\n"))
}

/// State shared by the handle, the gossip task and the push/pull listener.
struct Shared {
    counters: Counters,
    /// The member list, republished by the gossip task after every change.
    members: Mutex<Arc<Vec<Member>>>,
    member_events: broadcast::Sender<MemberEvent>,
    user_events: broadcast::Sender<UserEvent>,
    rtt_samples: broadcast::Sender<RttSample>,
    /// This agent's network coordinate, republished by the gossip task after every update.
    coordinate: Mutex<coordinate::Coordinate>,
    /// Serf's user-event Lamport clock: the next time to stamp; witnessed on receipt.
    user_event_clock: Arc<AtomicU64>,
}

/// A cheap-to-clone handle on a running gossip agent.
#[derive(Clone)]
pub struct Gossip {
    inner: Arc<Inner>,
}

struct Inner {
    /// Requests for the gossip task; when the last handle goes, the task ends.
    commands: mpsc::Sender<Command>,
    shared: Arc<Shared>,
    sealer: Sealer,
    /// This agent's side of keyring operations, shared with the push/pull listener.
    keyring: Arc<LocalKeyring>,
    /// This agent's node name: the member a keyring operation applies locally, not by dialing.
    node_name: String,
    default_port: u16,
    /// The gossip task and the push/pull listener: aborted by `shutdown` or on drop.
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let tasks = self.tasks.get_mut().map(std::mem::take).unwrap_or_default();
        tasks.iter().for_each(JoinHandle::abort);
    }
}
