//! A full disk (issue 11): while the data dir's filesystem is full, writes fail with a clear
//! 500 and the agent keeps serving reads; once space is freed, writes succeed again by
//! themselves, with no restart; and every write acknowledged before, during or after is there,
//! also after a kill -9. The data dir is a real tmpfs of [`TMPFS_MIB`] MiB mounted for the
//! test and filled by a real file, so the agent meets a real ENOSPC (needs root, as CI runs).
//! In a cluster, a leader whose disk fills hands leadership over and catches up once freed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::cluster_util::TestCluster;
use crate::util::TestAgent;

/// Size of the filesystem the data dir lives on.
const TMPFS_MIB: u64 = 48;
/// Size of each value written: large, so that the disk's last free bytes are reached quickly.
const VALUE_BYTES: usize = 32 * 1024;
/// Writes tried while the disk is full; more than the filesystem can hold.
const FULL_WRITES_MAX: usize = 3000;
/// Failed writes to see before the space is freed.
const FAILURES_WANTED: usize = 5;
/// How long writes may take to succeed again once space is freed.
const RECOVERY_MS_MAX: u64 = 60_000;

/// Unmounts the tmpfs (lazily, so a still-running agent does not block it) when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path) -> Tmpfs {
        let size = format!("size={TMPFS_MIB}m,mode=0700");
        let status = Command::new("mount").args(["-t", "tmpfs", "-o", &size, "tmpfs"]).arg(dir).status().expect("run mount");
        assert!(status.success(), "mounting a tmpfs failed: this test needs root (CI runs as root)");
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the filesystem holding `dir` with one file until the kernel says ENOSPC.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).expect("create the filler");
    let chunk = vec![0xa5u8; 256 * 1024];
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => panic!("filling the disk: {e}"),
        }
    }
    // The last partial chunk: fill the remaining bytes too.
    while let Ok(n) = file.write(&chunk[..4096]) {
        if n == 0 {
            break;
        }
    }
    path
}

fn value(i: usize) -> Vec<u8> {
    let mut bytes = format!("value-{i}-").into_bytes();
    bytes.resize(VALUE_BYTES, b'a' + (i % 26) as u8);
    bytes
}

/// PUTs `key` = `body`: `Ok(())` when acknowledged, else the status and the body.
async fn put(agent: &TestAgent, key: &str, body: Vec<u8>) -> Result<(), (u16, String)> {
    let response = agent.client.put(agent.url(&format!("/v1/kv/{key}"))).body(body).send().await.map_err(|e| (0, e.to_string()))?;
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    if status == 200 && text.trim() == "true" { Ok(()) } else { Err((status, text)) }
}

/// RocksDB's own account of its error handling, for a failure message.
fn rocksdb_recovery_log(agent: &TestAgent) -> String {
    let log = std::fs::read_to_string(agent.data_dir().join("rocksdb/LOG")).unwrap_or_default();
    let lines = log.lines().filter(|l| l.contains("ErrorHandler") || l.contains("ecover") || l.contains("space") || l.contains("rror"));
    lines.collect::<Vec<_>>().join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_fails_writes_cleanly_and_they_resume_once_space_is_freed() {
    let (mut agent, _unmount) = TestAgent::start_prepared(&[], Tmpfs::mount).await;
    let mut acknowledged: Vec<(String, Vec<u8>)> = Vec::new();
    for i in 0..10 {
        let key = format!("before/{i}");
        put(&agent, &key, value(i)).await.expect("a write before the disk fills");
        acknowledged.push((key, value(i)));
    }

    let filler = fill(&agent.data_dir());
    let mut failures: Vec<(u16, String)> = Vec::new();
    for i in 0..FULL_WRITES_MAX {
        let key = format!("during/{i}");
        match put(&agent, &key, value(i)).await {
            Ok(()) => acknowledged.push((key, value(i))),
            Err(failure) => failures.push(failure),
        }
        if failures.len() >= FAILURES_WANTED {
            break;
        }
    }
    assert!(failures.len() >= FAILURES_WANTED, "the disk is full yet {FULL_WRITES_MAX} writes were all acknowledged");
    for (status, body) in &failures {
        assert_eq!(*status, 500, "a write on a full disk answers 500, got {status}: {body}");
        assert!(body.contains("disk full") || body.contains("timed out"), "the failure says why: {body}");
    }
    assert!(failures.iter().any(|(_, body)| body.contains("No space left on device")), "some failure names the cause: {failures:?}");

    // Still serving: reads of acknowledged keys, and the agent's status.
    let (key, expected) = &acknowledged[0];
    let read = agent.get(&format!("/v1/kv/{key}?raw")).await;
    assert_eq!(read.status(), 200);
    assert_eq!(&read.bytes().await.expect("body")[..], &expected[..]);

    std::fs::remove_file(&filler).expect("free the space");
    let freed = Instant::now();
    let mut after = 0;
    loop {
        let key = format!("after/{after}");
        match put(&agent, &key, value(after)).await {
            Ok(()) => break acknowledged.push((key, value(after))),
            Err(failure) => {
                let waited = freed.elapsed();
                assert!(waited < Duration::from_millis(RECOVERY_MS_MAX), "writes did not resume after {waited:?}: {failure:?}\n{}\n{}", agent.log(), rocksdb_recovery_log(&agent));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        after += 1;
    }
    eprintln!("writes resumed {:?} after the space was freed", freed.elapsed());
    for i in after + 1..after + 21 {
        let key = format!("after/{i}");
        put(&agent, &key, value(i)).await.expect("writes go on once the disk has room");
        acknowledged.push((key, value(i)));
    }

    agent.restart().await;
    for (key, expected) in &acknowledged {
        let read = agent.get(&format!("/v1/kv/{key}?raw")).await;
        assert_eq!(read.status(), 200, "acknowledged key {key} is missing after a restart");
        assert_eq!(&read.bytes().await.expect("body")[..], &expected[..], "key {key}");
    }
}

/// How long the two servers with room may take to elect a leader and take writes again.
const HANDOVER_MS_MAX: u64 = 60_000;

/// A leader whose disk fills: its core waits in the write, so it stops heartbeating; the two
/// others elect a leader with room and take writes; the stalled server does not name itself
/// leader meanwhile; once its space is freed it follows the new leader and catches up, and
/// every acknowledged write is on all three.
#[tokio::test(flavor = "multi_thread")]
async fn a_leader_whose_disk_fills_hands_over_and_catches_up_once_space_is_freed() {
    let (cluster, _unmount) = TestCluster::start_prepared(3, Tmpfs::mount).await;
    let old = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let old_addr = cluster.servers[old].server_addr();
    let via = (old + 1) % 3;
    let big = |i: usize| String::from_utf8(value(i)).expect("ascii");
    let mut acknowledged = Vec::new();
    for i in 0..10 {
        assert!(cluster.put(via, &format!("before/{i}"), &big(i)).await, "a write before the disk fills");
        acknowledged.push(format!("before/{i}"));
    }

    let filler = fill(cluster.data_dir_of(old));
    let filled = Instant::now();
    let mut failures = 0;
    let mut i = 0;
    let new_leader = loop {
        i += 1;
        let key = format!("during/{i}");
        if cluster.put(via, &key, &big(i)).await {
            acknowledged.push(key);
        } else {
            failures += 1;
        }
        let seen = cluster.leader_seen_by(via).await;
        if failures > 0 && seen.as_ref().is_some_and(|leader| *leader != old_addr) {
            break seen.expect("a leader");
        }
        let waited = filled.elapsed();
        assert!(waited < Duration::from_millis(HANDOVER_MS_MAX), "no new leader {waited:?} after the leader's disk filled (failures {failures}):\n{}", cluster.servers[old].log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("a new leader {new_leader} after {:?} ({failures} writes failed meanwhile)", filled.elapsed());
    assert_ne!(cluster.leader_seen_by(old).await, Some(old_addr.clone()), "the stalled server does not name itself leader");
    for j in 0..10 {
        let key = format!("handed-over/{j}");
        assert!(cluster.put(via, &key, "v").await, "the new leader takes writes while the old one's disk is full");
        acknowledged.push(key);
    }

    std::fs::remove_file(&filler).expect("free the space");
    let freed = Instant::now();
    let leader = cluster.wait_for_leader(Duration::from_millis(HANDOVER_MS_MAX)).await;
    cluster.wait_identical(Duration::from_millis(HANDOVER_MS_MAX)).await;
    eprintln!("all three agree on {} and on the state {:?} after the space was freed", cluster.servers[leader].name, freed.elapsed());
    // Its storage may still be between two tries of a write (every DISK_FULL_RETRY_MS, while
    // RocksDB resumes), refusing proposals meanwhile: writes through it resume by themselves.
    let mut attempt = 0;
    loop {
        let key = format!("after/{attempt}");
        if cluster.put(old, &key, "v").await {
            break acknowledged.push(key);
        }
        let waited = freed.elapsed();
        assert!(waited < Duration::from_millis(RECOVERY_MS_MAX), "writes through the formerly full server did not resume after {waited:?}:\n{}", cluster.servers[old].log());
        attempt += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("writes through the formerly full server resumed {:?} after the space was freed", freed.elapsed());
    for server in 0..3 {
        for key in &acknowledged {
            let url = format!("{}/v1/kv/{key}?stale", cluster.servers[server].http());
            let status = cluster.client.get(url).send().await.expect("read").status();
            assert_eq!(status, 200, "acknowledged key {key} is missing on server {server}");
        }
    }
}
