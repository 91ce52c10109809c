//! Attacks on the server port (`:8300`) from an address that is not a member of the cluster
//! (issue 11): each must be refused before the request is decoded, and the cluster must go on
//! as if nothing happened. The servers run on distinct 127.x.y.z addresses; the attacker
//! connects from 127.0.0.1, which no member uses. A positive control from a server's own
//! address shows that the refusals come from the caller's address, not from the request.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cluster_util::TestCluster;

/// The address the attacker connects from: a loopback address no test member is given.
const STRANGER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// An HTTP client whose connections leave from `source`.
fn client_from(source: IpAddr) -> reqwest::Client {
    reqwest::Client::builder().local_address(source).timeout(Duration::from_secs(10)).build().expect("client")
}

/// `[rpc format 1] + postcard(value)`, as the server port's bodies are.
fn body<T: serde::Serialize>(value: &T) -> Vec<u8> {
    cairn::rpc::encode(value)
}

/// A Raft frame connection from `source` to `addr`: sends one request frame of `kind` and
/// returns the answer's status byte and text.
async fn frame_from(source: IpAddr, addr: &str, kind: u8, payload: &[u8]) -> (u8, String) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    let mut stream = socket.connect(addr.parse().unwrap()).await.unwrap();
    let rest = [&[kind, 0, 0][..], payload].concat();
    let frame = [&[0xCB][..], &(rest.len() as u32).to_be_bytes(), &rest].concat();
    stream.write_all(&frame).await.unwrap();
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).await.unwrap();
    let mut text = vec![0u8; u32::from_be_bytes(head[..4].try_into().unwrap()) as usize - 1];
    stream.read_exact(&mut text).await.unwrap();
    (head[4], String::from_utf8_lossy(&text).into_owned())
}

/// The leader's Raft term, as `/v1/agent/self` reports it.
async fn term_of(cluster: &TestCluster, i: usize) -> u64 {
    let me: serde_json::Value = cluster.client.get(format!("{}/v1/agent/self", cluster.servers[i].http())).send().await.unwrap().json().await.unwrap();
    me["Stats"]["raft"]["term"].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_stranger_cannot_use_the_server_port() {
    let cluster = TestCluster::start(3).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let target = cluster.servers[leader].server_addr();
    assert_ne!(cluster.servers[leader].ip, STRANGER, "the attacker's address must not be a member's");
    let term_before = term_of(&cluster, leader).await;
    let stranger = client_from(STRANGER);
    let url = |path: &str| format!("http://{target}{path}");

    // A well-formed write, as a follower would forward it, and as a client agent would send it.
    let write = cairn::catalog::Command::KvSet { key: "owned".into(), value: b"by a stranger".to_vec(), flags: 0, cas_index: None };
    // A forged vote from a term far ahead, which would depose the leader if it were heard.
    let forged_term = term_before + 1_000;
    let log_id = openraft::LogId::new(openraft::CommittedLeaderId::new(forged_term, 99), u64::MAX / 4);
    let vote = openraft::raft::VoteRequest::<u64>::new(openraft::Vote::new(forged_term, 99), Some(log_id));
    let attacks: Vec<(&str, reqwest::RequestBuilder)> = vec![
        ("write through /raft/forward", stranger.post(url("/raft/forward")).body(body(&write))),
        ("write through /rpc/write", stranger.post(url("/rpc/write")).body(body(&write))),
        ("restore an empty snapshot through /fwd", stranger.put(url("/fwd/v1/snapshot")).body(Vec::new())),
        ("stop a server through /fwd", stranger.put(url("/fwd/v1/agent/leave"))),
        ("read all KV through /fwd", stranger.get(url("/fwd/v1/kv/?recurse"))),
        ("a forged vote over HTTP", stranger.post(url("/raft/vote")).body(body(&vote))),
        ("a forged InstallSnapshot", stranger.post(url("/raft/snapshot")).body(vec![1, 0, 0, 0])),
        ("a forged AppendEntries over HTTP", stranger.post(url("/raft/append")).body(vec![1, 0])),
        ("join as a rogue server", stranger.post(url("/raft/join")).body(vec![1, 0])),
        ("catalog rows through /rpc/read", stranger.post(url("/rpc/read")).body(vec![1, 0])),
        ("who is the leader", stranger.get(url("/raft/info"))),
    ];
    for (attack, request) in attacks {
        let response = request.send().await.unwrap_or_else(|e| panic!("{attack}: {e}"));
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(status, 403, "{attack}: {text}");
        assert!(text.contains("Permission denied"), "{attack}: {text}");
    }
    // Raft frames: a forged vote and a forged AppendEntries are refused before they are read.
    for (attack, kind, payload) in [("a forged vote frame", 2u8, body(&vote)), ("a forged AppendEntries frame", 1, vec![1, 0])] {
        let (status, text) = frame_from(STRANGER, &target, kind, &payload).await;
        assert_eq!(status, 1, "{attack}: refused");
        assert!(text.contains("Permission denied"), "{attack}: {text}");
    }

    // Positive control: from a server's own address the same port answers.
    let member = client_from(cluster.servers[(leader + 1) % 3].ip);
    let info = member.get(url("/raft/info")).send().await.unwrap();
    assert_eq!(info.status(), 200, "a member is admitted");
    let (status, text) = frame_from(cluster.servers[(leader + 1) % 3].ip, &target, 9, b"").await;
    assert_eq!(status, 1);
    assert!(text.contains("unknown frame kind 9"), "a member's frame is read and judged on its content: {text}");

    // Nothing happened: same leader, no term jump, the key was never written, every server up.
    assert_eq!(cluster.wait_for_leader(Duration::from_secs(10)).await, leader);
    assert!(term_of(&cluster, leader).await < forged_term);
    let owned = cluster.client.get(format!("{}/v1/kv/owned", cluster.servers[leader].http())).send().await.unwrap();
    assert_eq!(owned.status(), 404);
    let put = cluster.client.put(format!("{}/v1/kv/still-serving", cluster.servers[leader].http())).body("yes").send().await.unwrap();
    assert_eq!(put.status(), 200);
    for i in 0..3 {
        assert!(cluster.leader_seen_by(i).await.is_some(), "server {i} still serves");
    }
}

/// Writes travel as frames (`rpc::frames`, kinds 3 and 4) with the rights of their HTTP routes:
/// a client agent may send a write (`/rpc/write`), not a follower's forward (`/raft/forward`)
/// nor a Raft message, and a stranger none of them.
#[tokio::test]
async fn framed_writes_are_admitted_as_their_routes_are() {
    let mut cluster = TestCluster::start(3).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let target = cluster.servers[leader].server_addr();
    let client = cluster.add_client(&[]);
    let client_ip = cluster.servers[client].ip;

    // The client agent's own writes (anti-entropy) reach the catalog over frames, once the
    // agent is up and the servers know it from gossip.
    let register_url = format!("{}/v1/agent/service/register", cluster.servers[client].http());
    let catalog = format!("{}/v1/catalog/service/framed-web", cluster.servers[leader].http());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let _ = cluster.client.put(&register_url).body(r#"{"Name":"framed-web","Port":80}"#).send().await;
        let rows: serde_json::Value = cluster.client.get(&catalog).send().await.unwrap().json().await.unwrap();
        if rows.as_array().is_some_and(|rows| rows.len() == 1) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the client's registration never reached the catalog: {rows}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let write = |key: &str| body(&cairn::catalog::Command::KvSet { key: key.into(), value: b"v".to_vec(), flags: 0, cas_index: None });
    let vote = openraft::raft::VoteRequest::<u64>::new(openraft::Vote::new(1, 99), None);
    // Admitted: a client agent's write, answered with the write's own outcome (once the leader
    // knows the agent from gossip: its registration may have gone through another server).
    loop {
        let (status, text) = frame_from(client_ip, &target, 3, &write("framed")).await;
        if status == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "a client agent's framed write is never applied: {text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Refused, and nothing applied: a member's forward and vote, a stranger's write.
    for (attack, source, kind, payload) in [
        ("a client agent's forward", client_ip, 4u8, write("forwarded")),
        ("a client agent's vote", client_ip, 2, body(&vote)),
        ("a stranger's write", STRANGER, 3, write("strangers")),
        ("a stranger's forward", STRANGER, 4, write("strangers")),
    ] {
        let (status, text) = frame_from(source, &target, kind, &payload).await;
        assert_eq!(status, 1, "{attack}: refused");
        assert!(text.contains("Permission denied"), "{attack}: {text}");
    }

    let kv = |key: &str| cluster.client.get(format!("{}/v1/kv/{key}", cluster.servers[leader].http())).send();
    assert_eq!(kv("framed").await.unwrap().status(), 200);
    assert_eq!(kv("forwarded").await.unwrap().status(), 404);
    assert_eq!(kv("strangers").await.unwrap().status(), 404);
}
