//! Agent lifecycle: a dev server leads within a second and says so; SIGTERM and
//! `PUT /v1/agent/leave` stop it cleanly; `-pid-file` is written once its dir exists, or the
//! start fails.

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

/// `-pid-file` inside a data dir that does not exist yet is written once the dir is made
/// (it used to be tried first and silently skipped), holds the pid, and goes at exit; a pid
/// file that cannot be written stops the start with an error.
#[tokio::test]
async fn the_pid_file_is_written_in_a_new_data_dir_and_a_failure_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("fresh");
    let pid_file = data_dir.join("cairn.pid");
    // The later `-data-dir` wins over the test agent's own, as Go's flags do.
    let data_dir_flag = format!("-data-dir={}", data_dir.display());
    let mut agent = TestAgent::start_with(&[&data_dir_flag, &format!("-pid-file={}", pid_file.display())]).await;
    let written = std::fs::read_to_string(&pid_file).expect("the pid file exists");
    assert_eq!(written, agent.pid().to_string(), "Consul's format: the pid, no newline");
    let mut child = agent.take_child();
    assert!(std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill").success());
    assert!(wait_exit(&mut child, Duration::from_secs(10)).is_some_and(|s| s.success()));
    assert!(!pid_file.exists(), "removed at exit");

    let log = dir.path().join("failed-start.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["agent", "-dev", &format!("-data-dir={}", dir.path().join("data").display())])
        .arg(format!("-pid-file={}", dir.path().join("no/such/dir/cairn.pid").display()))
        .args(["-http-port", "-dns-port", "-server-port", "-serf-lan-port"].iter().zip(crate::util::distinct_free_ports(4)).map(|(flag, port)| format!("{flag}={port}")))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("run the agent");
    let status = wait_exit(&mut child, Duration::from_secs(20));
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(status.is_some_and(|s| !s.success()), "a pid file that cannot be written stops the start: {status:?}");
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(stderr.contains("Could not write pid file") && stderr.contains("no/such/dir/cairn.pid"), "{stderr}");
}

/// `-ui-dir` (Consul's `ui_config.dir`) serves the dashboard from a directory, client routes
/// with dots included, and never a file outside it; `-ui=false` turns the dashboard off with
/// Consul's words at `/`.
#[tokio::test]
async fn ui_dir_serves_the_dashboard_from_disk_and_ui_false_turns_it_off() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "<p>from disk</p>").unwrap();
    let ui_dir = dir.path().to_str().unwrap();
    let agent = TestAgent::start_with(&["-ui-dir", ui_dir]).await;
    for route in ["/ui/", "/ui/services/vault.proxy", "/ui/kv/config/web/flags.json", "/ui/dc1/services/web"] {
        let response = agent.get(route).await;
        assert_eq!(response.status(), 200, "{route}");
        assert_eq!(response.text().await.unwrap(), "<p>from disk</p>", "{route}");
    }
    assert_eq!(agent.get("/ui/lib/missing.js").await.status(), 404);
    assert_eq!(agent.get("/ui/lib/..%2F..%2Fetc%2Fpasswd").await.status(), 404);
    drop(agent);

    let agent = TestAgent::start_with(&["-ui=false"]).await;
    assert_eq!(agent.get("/ui/").await.status(), 404);
    let index = agent.get("/").await.text().await.unwrap();
    assert!(index.contains("UI disabled"), "{index}");
    drop(agent);

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["agent", "-dev", "-ui-dir", "/nonexistent-ui"])
        .output()
        .expect("run the agent");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("does not contain an index.html"), "{stderr}");
}
