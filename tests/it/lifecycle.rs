//! Agent lifecycle: a dev server leads within a second and says so; SIGTERM and
//! `PUT /v1/agent/leave` stop it cleanly.

use std::time::{Duration, Instant};

use crate::util::TestAgent;

fn wait_exit(child: &mut std::process::Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[tokio::test]
async fn dev_server_leads_fast_and_logs_it() {
    let agent = TestAgent::start().await;
    let log = agent.log();
    let line = log.lines().find(|l| l.contains("New leader elected")).expect("a 'New leader elected' line");
    assert!(line.contains("payload=test-node"), "{line}");
    // Leadership within 1 s of start: compare the first log line's timestamp with the leader line's.
    let stamp = |l: &str| -> f64 {
        let time = l.split_whitespace().next().unwrap_or("");
        let clock = time.split('T').nth(1).unwrap_or("").trim_end_matches('Z');
        clock.split(':').fold(0.0, |acc, part| acc * 60.0 + part.parse::<f64>().unwrap_or(0.0))
    };
    let first = log.lines().next().expect("some log");
    let elapsed_s = stamp(line) - stamp(first);
    assert!(elapsed_s < 1.0, "leader after {elapsed_s} s");
}

#[tokio::test]
async fn sigterm_and_leave_stop_the_agent_cleanly() {
    let mut agent = TestAgent::start().await;
    let mut child = agent.take_child();
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    let status = wait_exit(&mut child, Duration::from_secs(10)).expect("exits after SIGTERM");
    assert!(status.success(), "clean exit, got {status}");

    agent.restart().await;
    let response = agent.put("/v1/agent/leave", "").await;
    assert_eq!(response.status(), 200);
    let mut child = agent.take_child();
    let status = wait_exit(&mut child, Duration::from_secs(10)).expect("exits after leave");
    assert!(status.success(), "clean exit, got {status}");
}
