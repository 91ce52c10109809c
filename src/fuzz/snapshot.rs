//! Fuzzes `raft::snapshot::decode`, the reader of snapshot files (`PUT /v1/snapshot` bodies,
//! and the snapshots a leader streams to a lagging follower), and what a restore does with
//! the rows: `Catalog::load_row` on each (`decode_row_key`, `decode_row_value`), then
//! `Command::Restore` applied to a live catalog, then the reads and writes that follow it.
//! The attack: an operator is handed a crafted snapshot (or a leader sends one) whose rows
//! decode one by one but contradict each other (a service on a node that does not exist, a
//! lock held by a missing session, a token linked to a missing policy), hoping that the
//! restore, or the first query or command after it, panics on every server at once.
//!
//! A snapshot is checksummed, so each input is also tried with its CRC-32 recomputed: a
//! forger computes it too.
//!
//! `archive` fuzzes `raft::archive::open`, the reader of Consul's snapshot archive that every
//! `PUT /v1/snapshot` body goes through first: each input is tried as it is and as the tar
//! inside a gzip stream (so mutations reach the tar, JSON and checksum parsing, not only
//! gzip's CRC), and may never make it hold more than the unpack limits allow.

use crate::catalog::{Catalog, Command};
use crate::fuzz::command::apply_and_check;
use crate::fuzz::{FUZZ_ALLOC_BYTES_MAX_DEFAULT, Target, Verdict, fuzz, samples};
use crate::raft::snapshot::{SnapshotHeader, decode, encode};

/// Largest snapshot generated, in bytes.
const SNAPSHOT_INPUT_BYTES_MAX: usize = 64 * 1024;

fn header(row_count: usize) -> SnapshotHeader {
    SnapshotHeader { last_log_id: None, membership: Default::default(), snapshot_id: "3-42-1".into(), row_count: row_count as u64 }
}

/// `bytes` with a correct checksum in its last four bytes.
fn checksummed(bytes: &[u8]) -> Option<Vec<u8>> {
    let content = bytes.get(..bytes.len().checked_sub(4)?)?;
    Some([content, &crc32fast::hash(content).to_be_bytes()].concat())
}

/// Every read the HTTP API and DNS make of a catalog.
pub(super) fn read_everything(catalog: &Catalog) {
    let _ = catalog.digest();
    for (name, _) in catalog.service_names() {
        let _ = catalog.health_instances(&name);
        let _ = catalog.service_name_checks(&name);
        let _ = catalog.service_index(&name);
    }
    for node in catalog.nodes() {
        let _ = catalog.node_services(&node.name);
        let _ = catalog.node_checks(&node.name);
        let _ = catalog.node_coordinates(&node.name).count();
    }
    let _ = catalog.kv_keys("", Some("/"));
    let _ = (catalog.kv_prefix("").count(), catalog.kv_prefix_index(""), catalog.kv_tombstones());
    for entry in catalog.kv_prefix("") {
        let _ = (catalog.kv_history(&entry.key), catalog.kv_key_index(&entry.key));
    }
    let _ = (catalog.sessions().count(), catalog.checks().count(), catalog.coordinates().count());
    let acl = catalog.acl();
    for token in acl.tokens() {
        let _ = acl.token_by_secret(&token.secret_id);
    }
    for policy in acl.policies() {
        let _ = crate::acl::parse_rules(&policy.rules);
    }
}

/// The commands a cluster typically applies after a restore, about what the snapshot holds.
fn follow_ups(catalog: &Catalog) -> Vec<Command> {
    let mut commands: Vec<Command> = catalog.nodes().take(2).map(|node| Command::At { now_ms: 1_800_000_000_000, command: Box::new(Command::DeregisterNode { node: node.name.clone() }) }).collect();
    commands.extend(catalog.sessions().take(2).map(|session| Command::SessionDestroy { session: session.id.clone(), now_ms: 1_800_000_000_000 }));
    commands.extend(catalog.checks().take(2).map(|check| Command::At {
        now_ms: 1_800_000_000_000,
        command: Box::new(Command::UpdateCheck { node: check.node.clone(), check_id: check.check_id.clone(), status: crate::catalog::model::HealthStatus::Critical, output: String::new() }),
    }));
    commands.extend([
        Command::KvReapTombstones { up_to_index: u64::MAX },
        Command::KvDeleteTree { prefix: String::new() },
        Command::Register(samples::registration("node-1", "web-1")),
    ]);
    commands
}

/// Snapshot files: decoded, restored into a live catalog, then read and written.
#[test]
fn restore() {
    let (catalog, _) = samples::catalog();
    let rows = samples::rows(&catalog);
    let seeds = vec![encode(&header(rows.len()), &rows), encode(&header(2), &rows[..2]), encode(&header(0), &[])];
    let target = Target { name: "snapshot::restore", seeds, dictionary: Vec::new(), input_bytes_max: SNAPSHOT_INPUT_BYTES_MAX, alloc_bytes_max: FUZZ_ALLOC_BYTES_MAX_DEFAULT };
    fuzz(target, || {
        let (base, index) = samples::catalog();
        move |input: &[u8]| {
            let mut verdict = Verdict::Refused;
            for bytes in [Some(input.to_vec()), checksummed(input)].into_iter().flatten() {
                let Ok((_, rows)) = decode(&bytes) else { continue };
                // A follower installing it: every row must load, or the snapshot is refused.
                let mut installed = Catalog::new();
                if rows.iter().any(|(key, value)| installed.load_row(key, value).is_err()) {
                    continue;
                }
                // `PUT /v1/snapshot`: the rows travel as a `Restore` command.
                let restore = Command::Restore { rows };
                let _ = apply_and_check(&base, index, &restore);
                read_everything(&installed);
                for command in follow_ups(&installed) {
                    let _ = apply_and_check(&installed, index + 1, &command);
                }
                verdict = Verdict::Accepted;
            }
            verdict
        }
    });
}

/// The tar inside an archive (what `archive` mutates besides whole gzip streams).
fn tar_of(archive: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(archive).read_to_end(&mut tar).expect("an archive we wrote unpacks");
    tar
}

fn gzipped(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}

/// Snapshot archives: unpacked and verified within their limits, or refused.
#[test]
fn archive() {
    let (catalog, _) = samples::catalog();
    let rows = samples::rows(&catalog);
    let state = encode(&header(rows.len()), &rows);
    let archive = crate::raft::archive::write(&header(rows.len()), &state, 1_700_000_000);
    let seeds = vec![tar_of(&archive), archive];
    let dictionary = [&b"meta.json"[..], b"state.bin", b"SHA256SUMS", b"ustar", b"CAIRNSNAP"].iter().map(|t| t.to_vec()).collect();
    // What one restore may hold: the body, the unpacked state and a copy of its rows.
    let alloc_bytes_max = 4 * crate::raft::archive::SNAPSHOT_UNPACKED_BYTES_MAX;
    let target = Target { name: "snapshot::archive", seeds, dictionary, input_bytes_max: SNAPSHOT_INPUT_BYTES_MAX, alloc_bytes_max };
    fuzz(target, || {
        move |input: &[u8]| {
            let mut verdict = Verdict::Refused;
            for bytes in [input.to_vec(), gzipped(input)] {
                if let Ok(opened) = crate::raft::archive::open(&bytes) {
                    assert_eq!(opened.rows.len() as u64, opened.header.row_count, "an opened snapshot holds what its header says");
                    verdict = Verdict::Accepted;
                }
            }
            verdict
        }
    });
}
