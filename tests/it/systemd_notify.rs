//! systemd's readiness protocol, as the packaged `Type=notify` unit sees it: the test plays
//! the service manager, a Unix datagram socket named in `NOTIFY_SOCKET`. `READY=1` comes
//! once the agent serves HTTP (and, with `retry_join`, only once it has joined), then
//! `RELOADING=1` and `READY=1` around a SIGHUP, and `STOPPING=1` on SIGTERM.

use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{TestAgent, distinct_free_ports};

/// How long the agent may take to start, join or answer a signal.
const NOTIFY_WAIT_MS: u64 = 20_000;

/// The test's end of `NOTIFY_SOCKET`.
struct ServiceManager {
    socket: UnixDatagram,
    dir: tempfile::TempDir,
}

impl ServiceManager {
    fn new() -> ServiceManager {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = UnixDatagram::bind(dir.path().join("notify")).expect("bind the notify socket");
        socket.set_read_timeout(Some(Duration::from_millis(NOTIFY_WAIT_MS))).expect("read timeout");
        ServiceManager { socket, dir }
    }

    /// Starts `cairn ARGS` with `NOTIFY_SOCKET` set, its output in `<dir>/agent.log`.
    fn spawn(&self, args: &[String]) -> Child {
        let log = std::fs::File::create(self.dir.path().join("agent.log")).expect("log file");
        Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(args)
            .env("NOTIFY_SOCKET", self.dir.path().join("notify"))
            .stdout(Stdio::from(log.try_clone().expect("clone the log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start cairn")
    }

    /// The next message, its lines; panics after `NOTIFY_WAIT_MS`.
    fn next(&self) -> Vec<String> {
        let mut buffer = [0u8; 4096];
        let len = self.socket.recv(&mut buffer).unwrap_or_else(|e| panic!("no notification: {e}; log:\n{}", self.log()));
        String::from_utf8_lossy(&buffer[..len]).lines().map(str::to_owned).collect()
    }

    /// The message waiting right now, if any.
    fn waiting(&self) -> Option<String> {
        let mut buffer = [0u8; 4096];
        self.socket.set_nonblocking(true).expect("nonblocking");
        let received = self.socket.recv(&mut buffer);
        self.socket.set_nonblocking(false).expect("blocking");
        received.ok().map(|len| String::from_utf8_lossy(&buffer[..len]).into_owned())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }
}

fn signal(child: &Child, signal: i32) {
    let pid = i32::try_from(child.id()).expect("a pid");
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "signal the agent");
}

/// The arguments of an agent on fresh loopback ports, data in `data_dir`; returns them and
/// the HTTP port.
fn agent_args(node: &str, data_dir: &std::path::Path, extra: &[String]) -> (Vec<String>, u16) {
    let ports = distinct_free_ports(4);
    let mut args: Vec<String> = vec![
        "agent".into(),
        format!("-node={node}"),
        "-bind=127.0.0.1".into(),
        format!("-data-dir={}", data_dir.display()),
        format!("-http-port={}", ports[0]),
        format!("-dns-port={}", ports[1]),
        format!("-server-port={}", ports[2]),
        format!("-serf-lan-port={}", ports[3]),
    ];
    args.extend(extra.iter().cloned());
    (args, ports[0])
}

async fn serves_http(port: u16) -> bool {
    let client = reqwest::Client::new();
    client.get(format!("http://127.0.0.1:{port}/v1/agent/self")).send().await.is_ok_and(|r| r.status().is_success())
}

#[tokio::test]
async fn ready_once_serving_reloading_around_sighup_stopping_on_sigterm() {
    let manager = ServiceManager::new();
    let (args, http_port) = agent_args("notified", &manager.dir.path().join("data"), &["-dev".to_string()]);
    let mut child = manager.spawn(&args);
    let started = Instant::now();
    assert!(manager.next().contains(&"READY=1".to_string()), "the first message is READY=1");
    assert!(serves_http(http_port).await, "READY=1 only once HTTP answers; log:\n{}", manager.log());
    tracing::info!(ready_ms = started.elapsed().as_millis() as u64, "ready");

    tracing::info!("SIGHUP: RELOADING=1 (with the monotonic time), then READY=1 again");
    signal(&child, libc::SIGHUP);
    let reloading = manager.next();
    assert!(reloading.contains(&"RELOADING=1".to_string()), "{reloading:?}");
    assert!(reloading.iter().any(|line| line.starts_with("MONOTONIC_USEC=")), "{reloading:?}");
    assert!(manager.next().contains(&"READY=1".to_string()));

    tracing::info!("SIGTERM: STOPPING=1, then a clean exit");
    signal(&child, libc::SIGTERM);
    assert!(manager.next().contains(&"STOPPING=1".to_string()));
    let status = child.wait().expect("wait for the agent");
    assert!(status.success(), "{status}; log:\n{}", manager.log());
}

#[tokio::test]
async fn with_retry_join_ready_only_once_joined() {
    let server = TestAgent::start().await;
    let manager = ServiceManager::new();
    tracing::info!("a client agent that joins a free port first: serving, not ready");
    let nobody = distinct_free_ports(1)[0];
    let retry = |port: u16| vec![format!("-retry-join=127.0.0.1:{port}"), "-retry-interval=1s".to_string()];
    let (args, http_port) = agent_args("joiner", &manager.dir.path().join("data"), &retry(nobody));
    let mut child = manager.spawn(&args);
    let deadline = Instant::now() + Duration::from_millis(NOTIFY_WAIT_MS);
    while !serves_http(http_port).await {
        assert!(Instant::now() < deadline, "the client never served HTTP; log:\n{}", manager.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(manager.waiting(), None, "nothing before any join");
    child.kill().expect("stop the first client");
    child.wait().expect("reap it");

    tracing::info!("the same client joining the server: READY=1 once it is in the pool");
    let manager = ServiceManager::new();
    let (args, _) = agent_args("joiner", &manager.dir.path().join("data"), &retry(server.serf_port));
    let mut child = manager.spawn(&args);
    assert!(manager.next().contains(&"READY=1".to_string()));
    let members = server.get_json("/v1/agent/members").await;
    assert!(members.as_array().expect("members").iter().any(|m| m["Name"] == "joiner"), "{members}");
    child.kill().expect("stop the client");
    child.wait().expect("reap it");
}
