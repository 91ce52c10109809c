//! A cluster of real `cairn` server processes, each on its own loopback address
//! (127.x.y.z) with ephemeral ports, joined through `-retry-join` (their gossip addresses) and
//! `-bootstrap-expect`.

use std::net::{IpAddr, Ipv4Addr};

use crate::util::free_port_on;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Raft timings for tests: fast elections so failover tests run in seconds.
const TEST_CONFIG: &str = r#"
raft_snapshot_threshold = 64
raft_trailing_logs = 16
raft.heartbeat_interval = "50ms"
raft.election_timeout_min = "400ms"
raft.election_timeout_max = "800ms"
autopilot.server_stabilization_time = "1s"
retry_interval = "1s"
"#;

fn random_loopback() -> IpAddr {
    let bytes: [u8; 3] = rand::random();
    IpAddr::V4(Ipv4Addr::new(127, bytes[0].max(1), bytes[1], bytes[2].clamp(2, 254)))
}

pub(crate) struct Server {
    pub(crate) name: String,
    /// False for a client agent (no `-server`, joined through server 0's gossip address).
    pub(crate) is_server: bool,
    /// More flags for this agent only.
    pub(crate) extra_args: Vec<String>,
    /// The `cairn` binary it runs: this build's, unless a test replaces it (`tests/it/upgrade.rs`
    /// runs the previous release's).
    pub(crate) binary: PathBuf,
    pub(crate) ip: IpAddr,
    pub(crate) http_port: u16,
    pub(crate) server_port: u16,
    dns_port: u16,
    serf_port: u16,
    data_dir: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
}

impl Server {
    pub(crate) fn http(&self) -> String {
        format!("http://{}:{}", self.ip, self.http_port)
    }

    pub(crate) fn server_addr(&self) -> String {
        format!("{}:{}", self.ip, self.server_port)
    }

    pub(crate) fn serf_addr(&self) -> String {
        format!("{}:{}", self.ip, self.serf_port)
    }

    pub(crate) fn dns_addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::new(self.ip, self.dns_port)
    }

    pub(crate) fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

pub(crate) struct TestCluster {
    pub(crate) servers: Vec<Server>,
    dir: tempfile::TempDir,
    pub(crate) client: reqwest::Client,
    expect: usize,
}

impl TestCluster {
    /// Starts `size` servers that form one cluster with `-bootstrap-expect=size`.
    pub(crate) async fn start(size: usize) -> TestCluster {
        Self::start_with_args(size, |_| Vec::new()).await
    }

    /// [`TestCluster::start`], with `extra(i)` flags for server `i`.
    pub(crate) async fn start_with_args(size: usize, extra: impl Fn(usize) -> Vec<String>) -> TestCluster {
        Self::start_with_binary(size, extra, std::path::Path::new(env!("CARGO_BIN_EXE_cairn"))).await
    }

    /// [`TestCluster::start_with_args`] with every server running `binary`.
    pub(crate) async fn start_with_binary(size: usize, extra: impl Fn(usize) -> Vec<String>, binary: &std::path::Path) -> TestCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("test.toml"), TEST_CONFIG).expect("write test config");
        let mut cluster = TestCluster {
            servers: Vec::new(),
            dir,
            client: reqwest::Client::builder().timeout(Duration::from_secs(20)).build().expect("client"),
            expect: size,
        };
        // Every server knows every other one's address before any starts.
        for i in 0..size {
            cluster.declare();
            cluster.servers[i].extra_args = extra(i);
            cluster.servers[i].binary = binary.to_path_buf();
        }
        for i in 0..size {
            cluster.spawn(i);
        }
        cluster.wait_for_leader(Duration::from_secs(30)).await;
        cluster
    }

    /// [`TestCluster::start`], after `prepare(data_dir)` has run for every server (the data
    /// dir exists, empty): what it returns lives as long as the caller keeps it.
    pub(crate) async fn start_prepared<T>(size: usize, prepare: impl Fn(&std::path::Path) -> T) -> (TestCluster, Vec<T>) {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("test.toml"), TEST_CONFIG).expect("write test config");
        let client = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().expect("client");
        let mut cluster = TestCluster { servers: Vec::new(), dir, client, expect: size };
        let mut prepared = Vec::new();
        for i in 0..size {
            cluster.declare();
            std::fs::create_dir_all(&cluster.servers[i].data_dir).expect("create the data dir");
            prepared.push(prepare(&cluster.servers[i].data_dir));
        }
        for i in 0..size {
            cluster.spawn(i);
        }
        cluster.wait_for_leader(Duration::from_secs(30)).await;
        (cluster, prepared)
    }

    /// Server `i`'s data dir.
    pub(crate) fn data_dir_of(&self, i: usize) -> &std::path::Path {
        &self.servers[i].data_dir
    }

    /// Adds a server's addresses and paths without starting it.
    fn declare(&mut self) -> usize {
        let i = self.servers.len();
        let ip = random_loopback();
        // Four distinct ports: a port freed after one probe can come back for the next.
        let mut ports: Vec<u16> = Vec::new();
        while ports.len() < 4 {
            let port = free_port_on(ip);
            if !ports.contains(&port) {
                ports.push(port);
            }
        }
        self.servers.push(Server {
            name: format!("s{}", i + 1),
            is_server: true,
            extra_args: Vec::new(),
            binary: PathBuf::from(env!("CARGO_BIN_EXE_cairn")),
            ip,
            http_port: ports[0],
            server_port: ports[1],
            dns_port: ports[2],
            serf_port: ports[3],
            data_dir: self.dir.path().join(format!("s{}", i + 1)),
            log_path: self.dir.path().join(format!("s{}.log", i + 1)),
            child: None,
        });
        i
    }

    /// Starts a client agent (no `-server`) named `c<n>` that joins through server 0's gossip
    /// address only, with `extra` flags.
    pub(crate) fn add_client(&mut self, extra: &[&str]) -> usize {
        let binary = self.servers.first().map(|s| s.binary.clone());
        let i = self.declare();
        // A client runs what the first server runs (an upgrade test starts both old).
        if let Some(binary) = binary {
            self.servers[i].binary = binary;
        }
        let clients = self.servers.iter().filter(|s| !s.is_server).count();
        let agent = &mut self.servers[i];
        agent.is_server = false;
        agent.name = format!("c{}", clients + 1);
        agent.data_dir = self.dir.path().join(&agent.name);
        agent.log_path = self.dir.path().join(format!("{}.log", agent.name));
        agent.extra_args = extra.iter().map(|a| a.to_string()).collect();
        self.spawn(i);
        i
    }

    /// Starts one more server that joins the running cluster through `-retry-join`.
    pub(crate) fn add_server(&mut self) -> usize {
        self.add_server_with(&[])
    }

    /// [`TestCluster::add_server`] with `extra` flags.
    pub(crate) fn add_server_with(&mut self, extra: &[String]) -> usize {
        let i = self.declare();
        self.servers[i].extra_args = extra.to_vec();
        self.spawn(i);
        i
    }

    /// The voters server `i` reports, as server addresses.
    pub(crate) async fn voters_seen_by(&self, i: usize) -> Vec<String> {
        let url = format!("{}/v1/status/peers", self.servers[i].http());
        match self.client.get(url).send().await {
            Ok(response) => response.json().await.unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    }

    fn args(&self, i: usize) -> Vec<String> {
        let s = &self.servers[i];
        let mut args = vec!["agent".to_string()];
        if s.is_server {
            args.extend(["-server".to_string(), format!("-bootstrap-expect={}", self.expect)]);
        }
        args.extend([
            format!("-node={}", s.name),
            format!("-data-dir={}", s.data_dir.display()),
            format!("-bind={}", s.ip),
            format!("-client={}", s.ip),
            format!("-advertise={}", s.ip),
            format!("-http-port={}", s.http_port),
            format!("-dns-port={}", s.dns_port),
            format!("-server-port={}", s.server_port),
            format!("-serf-lan-port={}", s.serf_port),
            format!("-config-file={}", self.dir.path().join("test.toml").display()),
        ]);
        args.extend(s.extra_args.iter().cloned());
        if !s.is_server {
            args.push(format!("-retry-join={}", self.servers[0].serf_addr()));
            return args;
        }
        for (j, other) in self.servers.iter().enumerate() {
            if j != i && other.is_server {
                args.push(format!("-retry-join={}", other.serf_addr()));
            }
        }
        args
    }

    pub(crate) fn spawn(&mut self, i: usize) {
        let args = self.args(i);
        let server = &mut self.servers[i];
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&server.log_path).expect("log file");
        let child = Command::new(&server.binary)
            .args(args)
            .env("CAIRN_FAULT_INJECTION", "1")
            .stdout(Stdio::from(log.try_clone().expect("clone log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start cairn");
        server.child = Some(child);
    }

    /// Stops server `i` with SIGTERM and waits until it has exited (SIGKILL after 20 s).
    pub(crate) fn terminate(&mut self, i: usize) {
        self.signal(i, "TERM");
        let mut child = self.servers[i].child.take().expect("server is running");
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().expect("wait for the server").is_none() {
            if Instant::now() > deadline {
                child.kill().ok();
                child.wait().ok();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends a signal (`STOP`, `CONT`, `TERM`) to server `i`.
    pub(crate) fn signal(&self, i: usize, signal: &str) {
        let pid = self.servers[i].child.as_ref().expect("server is running").id().to_string();
        let status = Command::new("kill").args([format!("-{signal}"), pid]).status().expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// `(applied index, state digest)` of server `i`'s state machine.
    pub(crate) async fn digest(&self, i: usize) -> Option<(String, String)> {
        let url = format!("{}/v1/agent/self?fsm-digest", self.servers[i].http());
        let me: serde_json::Value = self.client.get(url).timeout(Duration::from_secs(2)).send().await.ok()?.json().await.ok()?;
        let raft = &me["Stats"]["raft"];
        Some((raft["fsm_applied_index"].as_str()?.to_string(), raft["fsm_digest"].as_str()?.to_string()))
    }

    /// Waits until every running server reports the same applied index and digest.
    pub(crate) async fn wait_identical(&self, timeout: Duration) -> (String, String) {
        let deadline = Instant::now() + timeout;
        loop {
            let mut seen = Vec::new();
            for (i, server) in self.servers.iter().enumerate() {
                if server.is_running() && server.is_server {
                    seen.push(self.digest(i).await);
                }
            }
            if let Some(Some(first)) = seen.first()
                && seen.iter().all(|d| d.as_ref() == Some(first))
            {
                return first.clone();
            }
            assert!(Instant::now() < deadline, "state machines differ: {seen:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) async fn put(&self, i: usize, key: &str, value: &str) -> bool {
        let url = format!("{}/v1/kv/{key}", self.servers[i].http());
        match self.client.put(url).body(value.to_string()).send().await {
            Ok(response) => response.text().await.is_ok_and(|t| t == "true"),
            Err(_) => false,
        }
    }

    /// Installs a fault plan on server `i` (see `rpc::fault`).
    pub(crate) async fn set_faults(&self, i: usize, partitioned_from: &[usize], consistent_reads_from_follower: bool) {
        let addrs: Vec<String> = partitioned_from.iter().map(|&j| self.servers[j].server_addr()).collect();
        let plan = serde_json::json!({"partitioned_from": addrs, "consistent_reads_from_follower": consistent_reads_from_follower});
        let url = format!("http://{}/raft/fault", self.servers[i].server_addr());
        let response = self.client.post(url).body(plan.to_string()).send().await.expect("set faults");
        assert_eq!(response.status(), 200, "fault plan accepted");
    }

    /// Splits the running servers into `side` and the rest.
    pub(crate) async fn partition(&self, side: &[usize]) {
        let others: Vec<usize> = (0..self.servers.len()).filter(|i| !side.contains(i)).collect();
        for i in 0..self.servers.len() {
            if self.servers[i].is_running() && self.servers[i].is_server {
                let cut = if side.contains(&i) { &others } else { side };
                self.set_faults(i, cut, false).await;
            }
        }
    }

    pub(crate) async fn heal(&self) {
        for i in 0..self.servers.len() {
            if self.servers[i].is_running() && self.servers[i].is_server {
                self.set_faults(i, &[], false).await;
            }
        }
    }

    pub(crate) fn kill9(&mut self, i: usize) {
        if let Some(mut child) = self.servers[i].child.take() {
            child.kill().expect("kill -9");
            child.wait().expect("reap");
        }
    }

    /// `(index, leader address)` as server `i` reports it, if it answers.
    pub(crate) async fn leader_seen_by(&self, i: usize) -> Option<String> {
        let url = format!("{}/v1/status/leader", self.servers[i].http());
        let text = self.client.get(url).timeout(Duration::from_secs(2)).send().await.ok()?.text().await.ok()?;
        let leader: String = serde_json::from_str(&text).ok()?;
        (!leader.is_empty()).then_some(leader)
    }

    /// Waits until every running server agrees on one leader; returns the leader's position.
    pub(crate) async fn wait_for_leader(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let mut seen = Vec::new();
            for (i, server) in self.servers.iter().enumerate() {
                if server.is_running() && server.is_server {
                    seen.push(self.leader_seen_by(i).await);
                }
            }
            if let Some(Some(first)) = seen.first()
                && seen.iter().all(|s| s.as_ref() == Some(first))
                && let Some(position) = self.servers.iter().position(|s| s.is_running() && s.server_addr() == *first)
            {
                return position;
            }
            if Instant::now() >= deadline {
                let logs: Vec<String> = self.servers.iter().map(|s| format!("--- {}\n{}", s.name, s.log())).collect();
                panic!("no agreed leader after {timeout:?}: {seen:?}\n{}", logs.join("\n"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for i in 0..self.servers.len() {
            self.kill9(i);
        }
    }
}
