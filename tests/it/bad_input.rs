//! Bad input gets the right 4xx, and the agent keeps serving afterwards.

use crate::util::TestAgent;

#[tokio::test]
async fn bad_input_gets_4xx_and_agent_keeps_serving() {
    let agent = TestAgent::start().await;
    let cases: Vec<(reqwest::Response, u16, &str)> = vec![
        (agent.put("/v1/agent/service/register", "{not json").await, 400, "malformed JSON"),
        (agent.put("/v1/agent/service/register", r#"{"Name": 42}"#).await, 400, "Name of the wrong type"),
        (agent.put("/v1/agent/service/register", r#"{"Name": "x", "Port": "eighty"}"#).await, 400, "Port of the wrong type"),
        (agent.put("/v1/agent/service/register", r#"{"Name": "x", "Port": 70000}"#).await, 400, "Port out of range"),
        (agent.put("/v1/agent/service/register", r#"{"Name": "x", "Check": {"HTTP": "http://x"}}"#).await, 400, "HTTP check without interval"),
        (agent.put("/v1/kv/big", vec![b'x'; 512 * 1024 + 1]).await, 413, "value over 512 KiB"),
        (agent.get("/v1/kv/x?index=abc").await, 400, "invalid index"),
        (agent.get("/v1/kv/x?index=-1").await, 400, "negative index"),
        (agent.get("/v1/kv/x?index=1&wait=forever").await, 400, "absurd wait"),
        (agent.get("/v1/kv/x?index=1&wait=-5s").await, 400, "negative wait"),
        (agent.put("/v1/kv/bad%0akey", "v").await, 400, "key containing %0a"),
        (agent.get("/v1/kv/bad%0akey").await, 400, "key containing %0a on read"),
        (agent.get("/v1/kv/x?stale&consistent").await, 400, "stale and consistent"),
        (agent.get("/v1/catalog/nodes?filter=not%20a%20valid%20expression((").await, 400, "bad filter"),
        (agent.put("/v1/kv/x?flags=abc", "v").await, 400, "bad flags"),
        (agent.put("/v1/kv/x?cas=abc", "v").await, 400, "bad cas"),
        (agent.put("/v1/agent/check/pass/no-such-check", "").await, 404, "unknown check"),
        (agent.put("/v1/agent/service/deregister/no-such-service", "").await, 404, "unknown service"),
        (agent.client.post(agent.url("/v1/kv/x")).send().await.unwrap(), 405, "wrong method"),
        (agent.get("/v1/no/such/endpoint").await, 404, "unknown endpoint"),
        (agent.get("/v1/health/state/sideways").await, 400, "bad health state"),
        (agent.put("/v1/config", r#"{"Kind":"no-such-kind","Name":"x"}"#).await, 400, "unknown config entry kind"),
        (agent.put("/v1/config", r#"["not","an","object"]"#).await, 400, "config entry not an object"),
        (agent.put("/v1/config", r#"{"Kind":"service-defaults"}"#).await, 400, "config entry without a name"),
        (agent.put("/v1/config?cas=abc", r#"{"Kind":"service-defaults","Name":"x"}"#).await, 400, "bad config cas"),
        (agent.client.delete(agent.url("/v1/operator/raft/peer")).send().await.unwrap(), 400, "remove-peer without id or address"),
        (agent.client.post(agent.url("/v1/operator/raft/transfer-leader?id=x")).send().await.unwrap(), 400, "transfer to a chosen server"),
        (agent.put("/v1/snapshot", "garbage").await, 400, "not a snapshot"),
        (agent.put("/v1/session/create", r#"{"Behavior":"explode"}"#).await, 400, "bad session behavior"),
        (agent.put("/v1/agent/join/", "").await, 404, "join without an address"),
    ];
    for (response, expected, what) in cases {
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        assert_eq!(status, expected, "{what}: got {status} {body}");
        assert!(!body.contains('\n'), "{what}: error is one line: {body:?}");
    }
    // An absurdly long wait is clamped, not an error: it returns 200 at once (no index).
    assert_eq!(agent.get("/v1/kv/x?wait=87600h").await.status(), 404);
    // Nothing was lost and the agent still serves.
    assert_eq!(agent.get("/v1/kv/big").await.status(), 404, "the oversized value was not stored");
    assert_eq!(agent.put("/v1/kv/ok", "fine").await.status(), 200);
    assert_eq!(agent.get("/v1/kv/ok?raw").await.text().await.unwrap(), "fine");
    assert!(agent.get("/v1/status/leader").await.status().is_success());
}

/// Hostile bytes on the server port's Raft frame protocol (`rpc::frames`): a frame of an
/// unknown kind or a garbled one is refused with an answer, an oversized length closes the
/// connection, and the agent goes on serving Raft and HTTP.
#[tokio::test]
async fn malformed_raft_frames_are_refused_and_the_agent_keeps_serving() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let agent = TestAgent::start().await;
    let addr = format!("127.0.0.1:{}", agent.server_port);
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    // Magic byte, then a frame of kind 9 from "x" with a body of "zz".
    let frame = [&[0xCB][..], &5u32.to_be_bytes(), &[9, 0, 1, b'x'], b"z"].concat();
    stream.write_all(&frame).await.unwrap();
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).await.unwrap();
    assert_eq!(head[4], 1, "refused");
    let mut reason = vec![0u8; u32::from_be_bytes(head[..4].try_into().unwrap()) as usize - 1];
    stream.read_exact(&mut reason).await.unwrap();
    assert!(String::from_utf8_lossy(&reason).contains("unknown frame kind 9"));
    // An append whose body does not decode: refused, same connection still usable after.
    stream.write_all(&[&4u32.to_be_bytes()[..], &[1, 0, 0, 7]].concat()).await.unwrap();
    stream.read_exact(&mut head).await.unwrap();
    assert_eq!(head[4], 1, "refused");
    let mut reason = vec![0u8; u32::from_be_bytes(head[..4].try_into().unwrap()) as usize - 1];
    stream.read_exact(&mut reason).await.unwrap();
    // A length over the limit: the server hangs up rather than allocate it.
    stream.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
    assert!(matches!(closed, Ok(Ok(0))), "connection closed: {closed:?}");
    // Still a working agent: a write commits through Raft, HTTP answers on the server port too.
    assert_eq!(agent.put("/v1/kv/after-frames", "ok").await.status(), 200);
    let info = agent.client.get(format!("http://{addr}/raft/info")).send().await.unwrap();
    assert_eq!(info.status(), 200);
}

/// Regression (issue 10): a `Command::At` nested a million deep, posted by anyone to the
/// server port's `/raft/forward` and `/rpc/write`, used to overflow the stack and abort the
/// server. It is now refused with 400 while decoding, and the agent keeps serving.
#[tokio::test]
async fn deeply_nested_commands_on_the_server_port_are_refused() {
    let agent = TestAgent::start().await;
    let addr = format!("127.0.0.1:{}", agent.server_port);
    // [rpc format 1] + postcard(Command::At { now_ms: 0, command: .. }) a million times around
    // Command::KvDeleteTree { prefix: "" }: variant 16 (At), now_ms 0, ..., variant 7, "".
    let mut body = vec![1u8];
    for _ in 0..1_000_000 {
        body.extend_from_slice(&[16, 0]);
    }
    body.extend_from_slice(&[7, 0]);
    for path in ["/raft/forward", "/rpc/write"] {
        let response = agent.client.post(format!("http://{addr}{path}")).body(body.clone()).send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(status, 400, "{path}: {text}");
        assert!(text.contains("malformed"), "{path}: {text}");
    }
    assert_eq!(agent.put("/v1/kv/after-nesting", "ok").await.status(), 200);
    assert_eq!(agent.get("/v1/kv/after-nesting?raw").await.text().await.unwrap(), "ok");
}

/// A body that starts and never finishes is cut off after `RPC_BODY_TIMEOUT_MS` (10 s) with
/// 408, instead of holding the connection and its buffer forever.
#[tokio::test]
async fn a_stalled_body_on_the_server_port_times_out() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let agent = TestAgent::start().await;
    let addr = format!("127.0.0.1:{}", agent.server_port);
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!("POST /rpc/write HTTP/1.1\r\nhost: {addr}\r\ncontent-length: 10000000\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&[1u8; 1000]).await.unwrap();
    let started = std::time::Instant::now();
    let mut answer = vec![0u8; 1024];
    let read = tokio::time::timeout(std::time::Duration::from_secs(20), stream.read(&mut answer)).await;
    let n = read.expect("answered before 20 s").unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() >= std::time::Duration::from_secs(9), "not before the deadline");
    assert_eq!(agent.put("/v1/kv/after-stall", "ok").await.status(), 200);
}

/// Joining an address where nothing listens fails at once with Consul's wording, and
/// force-leave of a node the pool does not know gets Consul's error; the agent is unharmed.
#[tokio::test]
async fn join_to_nowhere_and_force_leave_of_a_stranger_get_clear_errors() {
    let agent = TestAgent::start().await;
    let started = std::time::Instant::now();
    let response = agent.put("/v1/agent/join/127.0.0.1:9", "").await;
    assert_eq!(response.status(), 500);
    let text = response.text().await.unwrap();
    assert!(text.contains("127.0.0.1:9") && text.contains("refused"), "{text}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "fails fast");
    let response = agent.put("/v1/agent/force-leave/no-such-node", "").await;
    assert_eq!(response.status(), 500);
    assert!(response.text().await.unwrap().contains("No node found with name 'no-such-node'"));
    let (code, _, stderr) = agent.cli(&["force-leave", "no-such-node"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("No node found"), "{stderr}");
    let members = agent.get_json("/v1/agent/members").await;
    assert_eq!(members.as_array().map(Vec::len), Some(1), "{members}");
    assert_eq!(members[0]["Status"], 1);
}

/// Issue 11: on the API port, a snapshot restore whose body starts and goes silent used to hold
/// its connection and its buffer forever. Now a second restore meanwhile is refused with 429
/// before its body is read, the stalled one fails once `HTTP_BODY_TIMEOUT_MS` (30 s) has
/// passed, and a restore after that is taken again.
#[tokio::test]
async fn a_stalled_body_on_the_api_port_is_cut_off_and_restores_take_turns() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let agent = TestAgent::start().await;
    let addr = format!("127.0.0.1:{}", agent.http_port);
    let mut stalled = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!("PUT /v1/snapshot HTTP/1.1\r\nhost: {addr}\r\ncontent-length: 11000000\r\n\r\n");
    stalled.write_all(head.as_bytes()).await.unwrap();
    stalled.write_all(&[0u8; 64 * 1024]).await.unwrap();
    let started = std::time::Instant::now();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let second = agent.client.put(agent.url("/v1/snapshot")).body(vec![0u8; 1024]).send().await.unwrap();
    assert_eq!(second.status(), 429, "{}", second.text().await.unwrap());
    let mut answer = vec![0u8; 1024];
    let read = tokio::time::timeout(std::time::Duration::from_secs(60), stalled.read(&mut answer)).await;
    let n = read.expect("answered before 60 s").unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 400") && answer.contains("not received within"), "{answer}");
    assert!(started.elapsed() >= std::time::Duration::from_secs(29), "not before the deadline");
    // The turn is free again: a (bad) snapshot is read and judged on its content.
    let third = agent.client.put(agent.url("/v1/snapshot")).body(vec![0u8; 1024]).send().await.unwrap();
    assert_eq!(third.status(), 400, "{}", third.text().await.unwrap());
    assert_eq!(agent.put("/v1/kv/after-stalled-restore", "ok").await.status(), 200);
}

/// DNS rebinding (issue 11): a page on `evil.example` that makes its name resolve to
/// 127.0.0.1 reaches a loopback-only agent with `Host: evil.example:8500`; the agent refuses
/// that, and still answers local clients that name it by IP address or `localhost`.
#[tokio::test]
async fn a_loopback_agent_refuses_requests_for_other_hosts_names() {
    let agent = TestAgent::start().await;
    let with_host = |host: &str| agent.client.get(agent.url("/v1/kv/?recurse")).header("Host", host.to_string()).send();
    for host in ["evil.example:8500", "127.0.0.1.nip.io", "localhost.evil.example"] {
        let response = with_host(host).await.expect("GET");
        assert_eq!(response.status(), 403, "Host {host}");
        assert!(response.text().await.unwrap().contains("DNS rebinding"), "the refusal says why");
    }
    let write = agent.client.put(agent.url("/v1/kv/rebound")).header("Host", "evil.example").body("x").send().await.expect("PUT");
    assert_eq!(write.status(), 403);
    assert_eq!(agent.get("/v1/kv/rebound").await.status(), 404, "the refused write did nothing");
    for host in [format!("127.0.0.1:{}", agent.http_port), format!("localhost:{}", agent.http_port), "[::1]".to_string()] {
        let response = with_host(&host).await.expect("GET");
        assert_ne!(response.status(), 403, "Host {host}");
    }
}
