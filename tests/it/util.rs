//! Test harness: [`TestAgent`] runs the built binary as a `-dev` server on free loopback ports,
//! waits until it leads, and can be killed with SIGKILL and restarted on the same data dir.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hickory_server::proto::op::{Message, Query};
use hickory_server::proto::rr::{Name, RecordType};

/// How long an agent may take to start and elect itself.
const START_TIMEOUT_MS: u64 = 15_000;

/// Agents listen on ports below Linux's ephemeral range (32768-60999), so that no outgoing
/// connection (a gossip push/pull, an HTTP client) can take a port between the probe below and
/// the agent's bind.
const AGENT_PORTS: std::ops::Range<u16> = 12_000..32_000;

/// A port that is free for both TCP and UDP on `ip` right now, outside the ephemeral range.
pub(crate) fn free_port_on(ip: std::net::IpAddr) -> u16 {
    loop {
        let port = AGENT_PORTS.start + rand::random::<u16>() % (AGENT_PORTS.end - AGENT_PORTS.start);
        if TcpListener::bind((ip, port)).is_ok() && UdpSocket::bind((ip, port)).is_ok() {
            return port;
        }
    }
}

/// A port that is free for both TCP and UDP on 127.0.0.1 right now.
pub(crate) fn free_port() -> u16 {
    free_port_on(std::net::IpAddr::from([127, 0, 0, 1]))
}

/// `n` distinct free ports: a port freed after one probe can come back for the next.
pub(crate) fn distinct_free_ports(n: usize) -> Vec<u16> {
    let mut ports: Vec<u16> = Vec::new();
    while ports.len() < n {
        let port = free_port();
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    ports
}

pub(crate) struct TestAgent {
    child: Option<Child>,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) http_port: u16,
    pub(crate) dns_port: u16,
    pub(crate) server_port: u16,
    pub(crate) serf_port: u16,
    pub(crate) extra_args: Vec<String>,
    pub(crate) client: reqwest::Client,
    /// The token `wait_ready` reads with (an agent with ACLs and `default_policy = deny`).
    pub(crate) ready_token: Option<String>,
}

impl TestAgent {
    pub(crate) async fn start() -> TestAgent {
        TestAgent::start_with(&[]).await
    }

    pub(crate) async fn start_with(extra_args: &[&str]) -> TestAgent {
        TestAgent::start_with_token(extra_args, None).await
    }

    /// Starts an agent whose readiness can only be read with `token` (ACLs on).
    pub(crate) async fn start_with_token(extra_args: &[&str], token: Option<&str>) -> TestAgent {
        let mut agent = TestAgent::unstarted(extra_args, token);
        agent.spawn().await;
        agent
    }

    /// Starts an agent once `prepare` has run on its data dir (which exists, empty), e.g. to
    /// mount a small filesystem there.
    /// Returns what `prepare` returned (a guard that unmounts, say) beside the agent.
    pub(crate) async fn start_prepared<T>(extra_args: &[&str], prepare: impl FnOnce(&std::path::Path) -> T) -> (TestAgent, T) {
        let mut agent = TestAgent::unstarted(extra_args, None);
        std::fs::create_dir_all(agent.data_dir()).expect("create the data dir");
        let prepared = prepare(&agent.data_dir());
        agent.spawn().await;
        (agent, prepared)
    }

    fn unstarted(extra_args: &[&str], token: Option<&str>) -> TestAgent {
        let ports = distinct_free_ports(4);
        TestAgent {
            child: None,
            dir: tempfile::tempdir().expect("temp dir"),
            http_port: ports[0],
            dns_port: ports[1],
            server_port: ports[2],
            serf_port: ports[3],
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            client: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("http client"),
            ready_token: token.map(str::to_string),
        }
    }

    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub(crate) fn log_path(&self) -> PathBuf {
        self.dir.path().join("agent.log")
    }

    pub(crate) fn args(&self) -> Vec<String> {
        let mut args = vec![
            "agent".to_string(),
            "-dev".to_string(),
            "-node=test-node".to_string(),
            format!("-data-dir={}", self.data_dir().display()),
            format!("-http-port={}", self.http_port),
            format!("-dns-port={}", self.dns_port),
            format!("-server-port={}", self.server_port),
            format!("-serf-lan-port={}", self.serf_port),
        ];
        args.extend(self.extra_args.iter().cloned());
        args
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(self.args())
            .stdout(Stdio::from(log.try_clone().expect("clone log handle")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start cairn");
        self.child = Some(child);
        self.wait_ready().await;
    }

    /// Waits until the agent answers, leads, and has registered itself in the catalog.
    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_millis(START_TIMEOUT_MS);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("agent exited early with {status}; log:\n{}", self.log());
            }
            let ready = async {
                let leader = self.client.get(self.url("/v1/status/leader")).send().await.ok()?.text().await.ok()?;
                let mut request = self.client.get(self.url("/v1/health/node/test-node"));
                if let Some(token) = &self.ready_token {
                    request = request.header("X-Consul-Token", token);
                }
                let nodes: serde_json::Value = request.send().await.ok()?.json().await.ok()?;
                let serf_passing = nodes.as_array()?.iter().any(|c| c["CheckID"] == "serfHealth" && c["Status"] == "passing");
                Some(leader.len() > 2 && serf_passing)
            };
            if ready.await == Some(true) {
                return;
            }
            assert!(Instant::now() < deadline, "agent did not become ready; log:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }

    pub(crate) fn http_addr(&self) -> String {
        format!("127.0.0.1:{}", self.http_port)
    }

    pub(crate) fn dns_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.dns_port))
    }

    /// SIGKILL, no chance to flush anything.
    pub(crate) fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill -9 the agent");
            child.wait().expect("reap the agent");
        }
    }

    /// The running agent's process id (for tests that signal it).
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().expect("the agent is running").id()
    }

    /// Hands over the running process (for tests that stop it themselves).
    pub(crate) fn take_child(&mut self) -> Child {
        self.child.take().expect("the agent is running")
    }

    pub(crate) async fn restart(&mut self) {
        self.kill9();
        self.spawn().await;
    }

    pub(crate) async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("GET")
    }

    /// Starts a blocking GET of `path` at `index` with `?wait=`, and returns its handle.
    pub(crate) fn watch(&self, path: &str, index: u64, wait: &str) -> tokio::task::JoinHandle<Watched> {
        let separator = if path.contains('?') { '&' } else { '?' };
        let url = self.url(&format!("{path}{separator}index={index}&wait={wait}"));
        let client = self.client.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let response = client.get(url).send().await.unwrap();
            let (index, status) = (index_of(&response), response.status().as_u16());
            Watched { elapsed: started.elapsed(), index, status, body: response.json().await.unwrap_or(serde_json::Value::Null) }
        })
    }

    pub(crate) async fn get_json(&self, path: &str) -> serde_json::Value {
        let response = self.get(path).await;
        assert!(response.status().is_success(), "GET {path} -> {}", response.status());
        response.json().await.expect("JSON body")
    }

    pub(crate) async fn put(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.client.put(self.url(path)).body(body).send().await.expect("PUT")
    }

    pub(crate) async fn delete(&self, path: &str) -> reqwest::Response {
        self.client.delete(self.url(path)).send().await.expect("DELETE")
    }

    /// Runs the CLI against this agent; returns (exit code, stdout, stderr).
    pub(crate) fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let output = Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(args)
            .env("CONSUL_HTTP_ADDR", self.http_addr())
            .env_remove("CAIRN_HTTP_ADDR")
            .output()
            .expect("run the cli");
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Sends one DNS query over UDP and returns the parsed reply.
pub(crate) async fn dns_query(server: SocketAddr, name: &str, record_type: RecordType) -> Message {
    let mut message = Message::query();
    message.metadata.id = rand::random();
    message.add_query(Query::query(Name::from_ascii(name).expect("query name"), record_type));
    let bytes = message.to_vec().expect("encode query");
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
    socket.send_to(&bytes, server).await.expect("send query");
    let mut buffer = vec![0u8; 4096];
    let (len, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buffer))
        .await
        .expect("dns reply within 5 s")
        .expect("recv");
    let reply = Message::from_vec(&buffer[..len]).expect("parse reply");
    assert_eq!(reply.metadata.id, message.metadata.id, "a reply carries its own request's ID");
    reply
}

/// Polls `check` every 50 ms until it returns true or `timeout_ms` passes.
pub(crate) async fn eventually(timeout_ms: u64, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `cairn watch ARGS` against `agent`; returns the child and a channel of its stdout lines.
pub(crate) fn spawn_watch(agent: &TestAgent, args: &[&str]) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let mut watch_args = vec!["watch"];
    watch_args.extend_from_slice(args);
    spawn_cli(agent, &watch_args)
}

/// Runs `cairn ARGS` against `agent`; returns the child and a channel of its stdout lines.
pub(crate) fn spawn_cli(agent: &TestAgent, args: &[&str]) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .env("CONSUL_HTTP_ADDR", agent.http_addr())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the cli");
    let stdout = child.stdout.take().expect("piped stdout");
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    (child, lines)
}

/// What a blocking GET ([`TestAgent::watch`]) came back with: how long it waited, its index,
/// its status and its JSON body (`Null` when it has none).
pub(crate) struct Watched {
    pub(crate) elapsed: Duration,
    pub(crate) index: u64,
    pub(crate) status: u16,
    pub(crate) body: serde_json::Value,
}

/// A response's `X-Consul-Index` (every blocking endpoint sets it).
pub(crate) fn index_of(response: &reqwest::Response) -> u64 {
    response.headers()["x-consul-index"].to_str().unwrap().parse().unwrap()
}
