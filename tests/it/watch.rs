//! `cairn watch`: each change is printed (or handed to a handler) once, as it happens.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::{TestAgent, eventually};

#[tokio::test]
async fn watch_prints_each_change_and_runs_handlers() {
    let agent = TestAgent::start().await;
    let (mut child, lines) = crate::util::spawn_watch(&agent, &["-type=key", "-key=w/x"]);
    let next = |what: &str| lines.recv_timeout(Duration::from_secs(10)).unwrap_or_else(|_| panic!("no output for {what}"));
    assert_eq!(next("the missing key"), "null");
    agent.put("/v1/kv/w/x", "one").await;
    assert!(next("the first write").contains("\"b25l\""), "base64 of 'one'");
    agent.put("/v1/kv/w/x", "two").await;
    assert!(next("the second write").contains("\"dHdv\""), "base64 of 'two'");
    let _ = child.kill();
    let _ = child.wait();

    // A handler receives the JSON on stdin.
    let file = agent.dir.path().join("handled.jsonl");
    let mut handler = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["watch", "-type=services", &format!("cat >> {}", file.display())])
        .env("CONSUL_HTTP_ADDR", agent.http_addr())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start cairn watch with a handler");
    agent.put("/v1/agent/service/register", r#"{"Name":"watched","Port":1}"#).await;
    let seen = eventually(10_000, async || std::fs::read_to_string(&file).is_ok_and(|t| t.contains("\"watched\""))).await;
    let _ = handler.kill();
    let _ = handler.wait();
    assert!(seen, "the handler saw the new service");
    let output = Command::new(env!("CARGO_BIN_EXE_cairn")).args(["watch", "-type=bogus"]).env("CONSUL_HTTP_ADDR", agent.http_addr()).output().unwrap();
    assert_ne!(output.status.code(), Some(0));
}
