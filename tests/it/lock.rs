//! `cairn lock`: mutual exclusion, semaphores, and the child's exit code passed on.

use std::process::{Child, Command, Stdio};

use crate::util::TestAgent;

fn spawn_lock(agent: &TestAgent, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("lock")
        .args(args)
        .env("CONSUL_HTTP_ADDR", agent.http_addr())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start cairn lock")
}

/// (start, end) nanosecond pairs written by the children.
fn intervals(path: &std::path::Path) -> Vec<(u128, u128)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut starts = std::collections::HashMap::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        if let [who, what, at] = parts[..] {
            let at: u128 = at.parse().unwrap_or(0);
            if what == "start" {
                starts.insert(who.to_string(), at);
            } else if let Some(start) = starts.get(who) {
                out.push((*start, at));
            }
        }
    }
    out
}

fn max_overlap(intervals: &[(u128, u128)]) -> usize {
    intervals.iter().map(|(s, _)| intervals.iter().filter(|(a, b)| a <= s && s < b).count()).max().unwrap_or(0)
}

#[tokio::test]
async fn lock_excludes_and_semaphore_admits_n() {
    let agent = TestAgent::start().await;
    let log = agent.dir.path().join("lock.log");
    let body = |who: &str| format!("echo {who} start $(date +%s%N) >> {0}; sleep 0.7; echo {who} end $(date +%s%N) >> {0}", log.display());
    let mut children: Vec<Child> = ["a", "b", "c"].iter().map(|who| spawn_lock(&agent, &["service/app", &body(who)])).collect();
    for child in &mut children {
        assert!(child.wait().unwrap().success());
    }
    let runs = intervals(&log);
    assert_eq!(runs.len(), 3, "every contender ran");
    assert_eq!(max_overlap(&runs), 1, "a lock admits one holder at a time: {runs:?}");

    let slots = agent.dir.path().join("semaphore.log");
    let body = |who: &str| format!("echo {who} start $(date +%s%N) >> {0}; sleep 0.7; echo {who} end $(date +%s%N) >> {0}", slots.display());
    let mut children: Vec<Child> = ["a", "b", "c", "d"].iter().map(|who| spawn_lock(&agent, &["-n", "2", "service/pool", &body(who)])).collect();
    for child in &mut children {
        assert!(child.wait().unwrap().success());
    }
    let runs = intervals(&slots);
    assert_eq!(runs.len(), 4, "every contender ran");
    assert!(max_overlap(&runs) <= 2, "a semaphore of 2 admits at most 2: {runs:?}");

    let status = spawn_lock(&agent, &["service/exit", "exit 3"]).wait().unwrap();
    assert_eq!(status.code(), Some(3), "the child's exit code is passed on");
    // The lock is free again afterwards.
    let entries = agent.get_json("/v1/kv/service/app/.lock").await;
    assert_eq!(entries[0].get("Session"), None);
}
