//! Forged Raft messages on the server port (issue 11): terms and indexes that openraft would
//! overflow on are refused before openraft sees them, and a server whose saved Raft state is
//! impossible refuses to start with a clear error instead of panicking on every start.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest};
use openraft::{CommittedLeaderId, LogId, Vote};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::util::{TestAgent, eventually};

/// A server-port body (and a saved Raft record): format byte 1, then postcard.
fn rpc_body<T: serde::Serialize>(value: &T) -> Vec<u8> {
    [vec![1u8], postcard::to_allocvec(value).unwrap()].concat()
}

/// One Raft frame (`rpc::frames`) from no one in particular, and its answer (status, text).
async fn frame_call(stream: &mut tokio::net::TcpStream, kind: u8, body: &[u8]) -> (u8, String) {
    let rest = [&[kind, 0, 0][..], body].concat();
    stream.write_all(&[&(rest.len() as u32).to_be_bytes()[..], &rest].concat()).await.unwrap();
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).await.unwrap();
    let mut answer = vec![0u8; u32::from_be_bytes(head[..4].try_into().unwrap()) as usize - 1];
    stream.read_exact(&mut answer).await.unwrap();
    (head[4], String::from_utf8_lossy(&answer).into_owned())
}

/// Regression (issue 11): an AppendEntries carrying a vote of term 2^64-1 was saved; the next
/// election's `term + 1` wrapped and openraft panicked, on every restart after that.
#[tokio::test]
async fn a_forged_term_of_2_64_minus_1_is_refused_and_the_agent_keeps_serving_and_restarts() {
    let mut agent = TestAgent::start().await;
    let addr = format!("127.0.0.1:{}", agent.server_port);
    let append = AppendEntriesRequest::<cairn::raft::TypeConfig> {
        vote: Vote::new_committed(u64::MAX, 99),
        prev_log_id: None,
        entries: vec![],
        leader_commit: None,
    };
    let vote = VoteRequest::new(Vote::new(u64::MAX, 99), Some(LogId::new(CommittedLeaderId::new(u64::MAX, 99), u64::MAX)));
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stream.write_all(&[0xCB]).await.unwrap();
    for (kind, body) in [(1u8, rpc_body(&append)), (2u8, rpc_body(&vote))] {
        let (status, text) = frame_call(&mut stream, kind, &body).await;
        assert_eq!(status, 1, "frame kind {kind} refused: {text}");
        assert!(text.contains("above RAFT_TERM_MAX"), "frame kind {kind}: {text}");
    }
    for (path, body) in [("/raft/append", rpc_body(&append)), ("/raft/vote", rpc_body(&vote))] {
        let response = agent.client.post(format!("http://{addr}{path}")).body(body).send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(status, 400, "{path}: {text}");
        assert!(text.contains("above RAFT_TERM_MAX"), "{path}: {text}");
    }
    assert!(agent.log().contains("refused a Raft message from a peer"), "the refusal is logged");
    // Several election timeouts later (dev: 500-1000 ms) the agent still leads and writes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(agent.put("/v1/kv/after-forged-term", "ok").await.status(), 200);
    assert!(agent.get("/v1/status/leader").await.text().await.unwrap().len() > 2);
    agent.restart().await;
    assert_eq!(agent.get("/v1/kv/after-forged-term?raw").await.text().await.unwrap(), "ok");
    assert_eq!(agent.put("/v1/kv/after-restart", "ok").await.status(), 200);
}

/// A data dir that an unchecked version let a forged message write a vote of term 2^64-1
/// into: the agent stops at start with an error that says what happened, instead of
/// panicking inside openraft (and doing so again at every restart).
#[tokio::test]
async fn a_saved_impossible_vote_stops_the_agent_with_a_clear_error() {
    let mut agent = TestAgent::start().await;
    agent.kill9();
    {
        // The vote as `raft::log_store` saves it: format byte 1, then postcard.
        let store = cairn::store::Store::open(&agent.data_dir().join("rocksdb")).expect("open the agent's store");
        store.raft_meta_put("vote", rpc_body(&Vote::new_committed(u64::MAX, 99))).expect("plant the vote");
    }
    let log_file = std::fs::File::create(agent.dir.path().join("refused.log")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(agent.args())
        .stdout(Stdio::from(log_file.try_clone().unwrap()))
        .stderr(Stdio::from(log_file))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let output = std::fs::read_to_string(agent.dir.path().join("refused.log")).unwrap();
    let status = status.unwrap_or_else(|| panic!("the agent did not stop on an impossible vote; output:\n{output}"));
    assert!(!status.success(), "exit status {status}; output:\n{output}");
    assert!(output.contains("above RAFT_TERM_MAX") && output.contains("forged"), "output:\n{output}");
    assert!(!output.contains("panicked"), "output:\n{output}");
}

/// A forged InstallSnapshot chunk at a huge offset: openraft writes chunks into an in-memory
/// buffer at their offset, so it would have tried to allocate that much and aborted. Refused,
/// and the agent keeps its data and leads again.
#[tokio::test]
async fn a_forged_snapshot_chunk_far_past_the_start_is_refused() {
    let agent = TestAgent::start().await;
    assert_eq!(agent.put("/v1/kv/before-snapshot", "kept").await.status(), 200);
    let addr = format!("127.0.0.1:{}", agent.server_port);
    let mut request = InstallSnapshotRequest::<cairn::raft::TypeConfig> {
        vote: Vote::new_committed(1_000, 99),
        meta: Default::default(),
        offset: 1 << 40,
        data: vec![0; 16],
        done: true,
    };
    request.meta.snapshot_id = "forged".into();
    // Beyond RAFT_INDEX_MAX: refused outright.
    request.offset = u64::MAX - 1;
    let response = agent.client.post(format!("http://{addr}/raft/snapshot")).body(rpc_body(&request)).send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("above RAFT_INDEX_MAX"), "{text}");
    // A first chunk starts a snapshot (the forged vote, higher than the agent's, is accepted:
    // refusing strangers is the server port's authentication, not this check). A chunk far
    // past what arrived then gets openraft's own SnapshotMismatch instead of reaching its
    // buffer; one that continues it is taken.
    request.done = false;
    for (offset, mismatch) in [(0u64, false), (1 << 40, true), (16, false), (33, true)] {
        request.offset = offset;
        let response = agent.client.post(format!("http://{addr}/raft/snapshot")).body(rpc_body(&request)).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let body = response.bytes().await.unwrap();
        let answer: Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>> = postcard::from_bytes(&body[1..]).unwrap();
        let refused = matches!(answer, Err(RaftError::APIError(InstallSnapshotError::SnapshotMismatch(_))));
        assert_eq!(refused, mismatch, "offset {offset}: {answer:?}");
    }
    assert!(agent.log().contains("refused a snapshot chunk"), "the refusal is logged");
    // The agent elects itself again once the forged leader stays silent, with its data.
    assert!(eventually(15_000, async || agent.put("/v1/kv/after-snapshot", "ok").await.status() == 200).await, "{}", agent.log());
    assert_eq!(agent.get("/v1/kv/before-snapshot?raw").await.text().await.unwrap(), "kept");
}
