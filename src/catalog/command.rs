//! The replicated commands: every change to the catalog is one of these, committed through Raft.
//!
//! **Append-only.** postcard encodes the variant by its position, so the position *is* the
//! wire tag: never reorder, remove or reuse a variant, and add fields only in new variants. A
//! golden-bytes test in `catalog::tests` pins the encoding of each variant.
//!
//! Commands carry everything `apply` needs, including time (`now_ms`) stamped by the proposer,
//! so that applying is deterministic on every server.

use std::cell::Cell;
use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::catalog::codec::{FORMAT_NEWEST, FORMAT_V1, FORMAT_V2};
use crate::catalog::model::{CheckDefinition, HealthStatus, ServiceAddress, SessionBehavior, Weights};

/// One replicated change. See the module docs for the compatibility rules.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Register (or update) a node and optionally one service and some checks on it.
    /// Used by `PUT /v1/catalog/register` and by an agent's anti-entropy sync.
    Register(Registration),
    /// Remove a node with all its services and checks.
    DeregisterNode { node: String },
    /// Remove one service and the checks bound to it.
    DeregisterService { node: String, service_id: String },
    /// Remove one check.
    DeregisterCheck { node: String, check_id: String },
    /// Set a check's status and output (health check results from an agent).
    UpdateCheck { node: String, check_id: String, status: HealthStatus, output: String },
    /// Write a KV entry, optionally guarded by a check-and-set index (0 = create only).
    KvSet { key: String, value: Vec<u8>, flags: u64, cas_index: Option<u64> },
    /// Delete one key, optionally guarded by a check-and-set index.
    KvDelete { key: String, cas_index: Option<u64> },
    /// Delete every key with this prefix.
    KvDeleteTree { prefix: String },
    /// Write a key and take its lock for a session.
    KvLock { key: String, value: Vec<u8>, flags: u64, session: String, now_ms: u64 },
    /// Write a key and release its lock, if the session holds it.
    KvUnlock { key: String, value: Vec<u8>, flags: u64, session: String },
    /// Create a session with an ID chosen by the proposer.
    SessionCreate(SessionRequest),
    /// Destroy a session, releasing or deleting its locks per its behavior.
    SessionDestroy { session: String, now_ms: u64 },
    /// Create or replace a config entry, optionally guarded by a check-and-set index.
    ConfigSet { kind: String, name: String, body_json: String, cas_index: Option<u64> },
    /// Delete a config entry, optionally guarded by a check-and-set index.
    ConfigDelete { kind: String, name: String, cas_index: Option<u64> },
    /// Replace the whole state with the rows of a snapshot (`PUT /v1/snapshot`).
    Restore { rows: Vec<(Vec<u8>, Vec<u8>)> },
    /// Apply KV operations atomically (`/v1/txn`).
    Txn { ops: Vec<crate::catalog::txn::TxnKvOp> },
    /// Apply `command` knowing the proposer's wall clock, so that sessions it invalidates
    /// start their lock-delay. See [`Command::stamped`]. Never nested.
    At {
        now_ms: u64,
        #[serde(deserialize_with = "nested_command")]
        command: Box<Command>,
    },
    /// Forget KV tombstones at or below this index (the leader's tombstone GC).
    KvReapTombstones { up_to_index: u64 },
    /// Set how many versions of each KV key are kept (`kv_history_versions`).
    SetKvHistoryVersions { versions: u32 },
    /// Apply KV, Node, Service and Check operations atomically (`/v1/txn`). Supersedes `Txn`,
    /// which stays for the log entries older builds wrote.
    TxnOps { ops: Vec<crate::catalog::txn::TxnOp> },
    /// Several independent client writes committed as one Raft entry (the leader's write
    /// batching, `raft::write_batch`). Each is applied in turn at its own index, exactly as if
    /// it had its own entry, and has its own outcome ([`Outcome::Batch`]). Never nested.
    ///
    /// [`Outcome::Batch`]: crate::catalog::Outcome::Batch
    Batch(#[serde(deserialize_with = "nested_commands")] Vec<Command>),
    /// Store nodes' network coordinates (Consul's `Coordinate.Update`, batched): at most
    /// `COORDINATE_BATCH_UPDATES_MAX` updates; updates for unknown nodes are skipped.
    CoordinateBatchUpdate(Vec<crate::catalog::coordinates::CoordinateUpdate>),
    /// One ACL write: a token, policy, role, auth method or binding rule, or the bootstrap.
    Acl(crate::catalog::acl::AclOp),
    /// One prepared-query write: create, update or delete (`/v1/query`).
    PreparedQuery(crate::catalog::prepared_query::PreparedQueryOp),
    /// [`Command::SessionCreate`] with the TTL kept to the millisecond: `ttl_ms` replaces
    /// `request.ttl_s`. Format 2 ([`Command::format_needed`]): proposed only once every server
    /// reads format 2; until then a session's TTL is rounded up to whole seconds.
    SessionCreateExact { request: SessionRequest, ttl_ms: u64 },
    /// Replace the autopilot configuration, optionally check-and-set on its `ModifyIndex`
    /// (0: only while none exists). Answers `Outcome::Bool`. Format 2: it has no older form,
    /// so it is refused until every server reads format 2.
    SetAutopilotConfig { settings: crate::catalog::model::AutopilotSettings, cas_index: Option<u64> },
}

/// How deep [`Command::At`] and [`Command::Batch`] may nest in decoded bytes. A batch of
/// stamped commands is 2 deep; deeper bytes are refused as they are decoded, before the
/// recursion can exhaust the stack (bytes arrive from the network: a forwarded write, an
/// AppendEntries). The limit only reads what `Command::stamped` and write batching produce.
pub const COMMAND_NESTING_DEPTH_MAX: u32 = 2;

thread_local! {
    /// The [`Command::At`]/[`Command::Batch`] depth of the decode running on this thread.
    /// Decoding is synchronous, so one counter per thread is exact.
    static COMMAND_NESTING_DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// One level of nesting, released when dropped (also when decoding fails).
struct NestingLevel;

impl NestingLevel {
    fn enter() -> Result<NestingLevel, String> {
        COMMAND_NESTING_DEPTH.with(|depth| {
            if depth.get() >= COMMAND_NESTING_DEPTH_MAX {
                return Err(format!("commands nested deeper than {COMMAND_NESTING_DEPTH_MAX}"));
            }
            depth.set(depth.get() + 1);
            Ok(NestingLevel)
        })
    }
}

impl Drop for NestingLevel {
    fn drop(&mut self) {
        COMMAND_NESTING_DEPTH.with(|depth| depth.set(depth.get().saturating_sub(1)));
    }
}

fn nested_command<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Box<Command>, D::Error> {
    let _level = NestingLevel::enter().map_err(serde::de::Error::custom)?;
    Command::deserialize(deserializer).map(Box::new)
}

fn nested_commands<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Command>, D::Error> {
    let _level = NestingLevel::enter().map_err(serde::de::Error::custom)?;
    Vec::<Command>::deserialize(deserializer)
}

impl Command {
    /// Wraps a command that can invalidate sessions (a check turning critical, a node or
    /// service going away, a transaction taking locks) in [`Command::At`], so that `apply`
    /// knows the time. Commands that carry their own time, or cannot need it, pass unchanged.
    pub fn stamped(self, now_ms: u64) -> Command {
        match self {
            Command::Register(_)
            | Command::DeregisterNode { .. }
            | Command::DeregisterService { .. }
            | Command::DeregisterCheck { .. }
            | Command::UpdateCheck { .. }
            | Command::Txn { .. }
            | Command::TxnOps { .. } => Command::At { now_ms, command: Box::new(self) },
            other => other,
        }
    }
}

impl Command {
    /// The oldest format that holds this command: what a server must read before it may be
    /// proposed, and the format byte it is written with (`codec::encode_command`, log entries,
    /// AppendEntries). A restore needs the newest format of the rows it carries.
    pub fn format_needed(&self) -> u8 {
        match self {
            Command::SessionCreateExact { .. } | Command::SetAutopilotConfig { .. } => FORMAT_V2,
            Command::At { command, .. } => command.format_needed(),
            Command::Batch(commands) => commands.iter().map(Command::format_needed).max().unwrap_or(FORMAT_V1),
            Command::Restore { rows } => {
                rows.iter().filter_map(|(_, value)| value.first().copied()).max().unwrap_or(FORMAT_V1).clamp(FORMAT_V1, FORMAT_NEWEST)
            }
            _ => FORMAT_V1,
        }
    }

    /// The same change in a format no newer than `format`, or the command back when it has no
    /// older form. An exact-TTL session becomes one whose TTL is rounded up to whole seconds.
    pub fn downgraded(self, format: u8) -> Result<Command, Command> {
        if self.format_needed() <= format {
            return Ok(self);
        }
        match self {
            Command::SessionCreateExact { request, .. } => Ok(Command::SessionCreate(request)),
            Command::At { now_ms, command } => Ok(Command::At { now_ms, command: Box::new(command.downgraded(format)?) }),
            other => Err(other),
        }
    }

    /// Roughly how many bytes the command adds to a log entry: its keys and values, which
    /// dominate every large command. Write batching caps a batch's size with it.
    pub fn payload_bytes(&self) -> usize {
        /// What the fields of a command without a value amount to, generously.
        const SMALL_COMMAND_BYTES: usize = 256;
        match self {
            Command::KvSet { key, value, .. } | Command::KvLock { key, value, .. } | Command::KvUnlock { key, value, .. } => {
                SMALL_COMMAND_BYTES + key.len() + value.len()
            }
            Command::Restore { rows } => rows.iter().map(|(k, v)| k.len() + v.len()).sum(),
            Command::Txn { ops } => ops.iter().map(|op| SMALL_COMMAND_BYTES + op.key.len() + op.value.len()).sum(),
            Command::TxnOps { ops } => ops
                .iter()
                .map(|op| match op {
                    crate::catalog::txn::TxnOp::Kv(kv) => SMALL_COMMAND_BYTES + kv.key.len() + kv.value.len(),
                    _ => SMALL_COMMAND_BYTES,
                })
                .sum(),
            Command::At { command, .. } => SMALL_COMMAND_BYTES + command.payload_bytes(),
            Command::Batch(commands) => commands.iter().map(Command::payload_bytes).sum(),
            Command::CoordinateBatchUpdate(updates) => updates
                .iter()
                .map(|u| SMALL_COMMAND_BYTES + u.node.len() + u.segment.len() + 8 * u.coord.vec.len())
                .sum(),
            _ => SMALL_COMMAND_BYTES,
        }
    }
}

/// A node, optionally with one service and checks, as submitted for registration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub node_id: String,
    pub node: String,
    pub address: String,
    pub datacenter: String,
    pub tagged_addresses: BTreeMap<String, String>,
    pub node_meta: BTreeMap<String, String>,
    /// Leave an existing node's fields alone (Consul's `SkipNodeUpdate`).
    pub skip_node_update: bool,
    pub service: Option<ServiceRegistration>,
    pub checks: Vec<CheckRegistration>,
}

/// The service part of a registration. `Default` is for tests and tools: the decoders name
/// every field.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRegistration {
    pub id: String,
    pub name: String,
    pub tags: Vec<String>,
    pub address: String,
    pub tagged_addresses: BTreeMap<String, ServiceAddress>,
    pub meta: BTreeMap<String, String>,
    pub port: u16,
    pub kind: String,
    pub enable_tag_override: bool,
    pub weights: Weights,
    pub opaque_json: BTreeMap<String, String>,
}

/// The check part of a registration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckRegistration {
    pub check_id: String,
    pub name: String,
    pub status: HealthStatus,
    pub notes: String,
    pub output: String,
    pub service_id: String,
    pub definition: CheckDefinition,
}

/// A session as requested, with its ID already chosen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRequest {
    pub id: String,
    pub name: String,
    pub node: String,
    pub node_checks: Vec<String>,
    pub service_checks: Vec<String>,
    pub lock_delay_ms: u64,
    pub behavior: SessionBehavior,
    pub ttl_s: u64,
}
