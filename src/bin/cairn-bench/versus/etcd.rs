//! The etcd side of `--vs-etcd`: a 3-member etcd cluster on loopback, and its workloads
//! through etcd's native gRPC API.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, GetOptions};

use crate::Stats;
use crate::drive;
use crate::versus::key;

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

pub(crate) struct EtcdCluster {
    members: Vec<Member>,
    dir: std::path::PathBuf,
}

/// The member that leads, with its client endpoint.
pub(crate) struct Leader {
    pub(crate) name: String,
    endpoint: String,
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for member in &mut self.members {
            if let Some(mut child) = member.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl EtcdCluster {
    pub(crate) fn start(size: usize) -> Result<EtcdCluster, String> {
        let etcd = std::env::var("ETCD_BIN").unwrap_or_else(|_| "etcd".into());
        let dir = std::env::temp_dir().join(format!("cairn-bench-etcd-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let members: Vec<Member> = (0..size)
            .map(|i| Member { name: format!("e{}", i + 1), client_port: crate::free_port(), peer_port: crate::free_port(), child: None })
            .collect();
        let initial = members.iter().map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port)).collect::<Vec<_>>().join(",");
        let mut cluster = EtcdCluster { members, dir, };
        for member in &mut cluster.members {
            let client_url = format!("http://127.0.0.1:{}", member.client_port);
            let peer_url = format!("http://127.0.0.1:{}", member.peer_port);
            let log = std::fs::File::create(cluster.dir.join(format!("{}.log", member.name))).map_err(|e| e.to_string())?;
            let child = Command::new(&etcd)
                .args(["--name", &member.name])
                .arg(format!("--data-dir={}", cluster.dir.join(&member.name).display()))
                .args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url])
                .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
                .args(["--initial-cluster", &initial, "--initial-cluster-state", "new", "--initial-cluster-token", "cairn-bench"])
                .args(["--logger", "zap", "--log-level", "error"])
                .stdout(Stdio::null())
                .stderr(Stdio::from(log))
                .spawn()
                .map_err(|e| format!("cannot start {etcd} (install Debian's etcd-server or set ETCD_BIN): {e}"))?;
            member.child = Some(child);
        }
        Ok(cluster)
    }

    pub(crate) fn pids(&self) -> Vec<u32> {
        self.members.iter().filter_map(|m| m.child.as_ref().map(Child::id)).collect()
    }

    /// Waits until a member reports itself the leader.
    pub(crate) async fn leader(&self, timeout: Duration) -> Result<Leader, String> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            for member in &self.members {
                let endpoint = format!("127.0.0.1:{}", member.client_port);
                let Ok(mut client) = Client::connect([endpoint.as_str()], None).await else { continue };
                let Ok(status) = client.status().await else { continue };
                if status.header().is_some_and(|h| h.member_id() == status.leader()) {
                    return Ok(Leader { name: member.name.clone(), endpoint });
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err("etcd: no leader".into())
    }
}

impl Leader {
    /// `n` gRPC connections to the leader (each multiplexes many requests over HTTP/2).
    pub(crate) async fn connections(&self, n: usize) -> Result<Arc<Vec<Client>>, String> {
        let mut clients = Vec::with_capacity(n);
        for _ in 0..n {
            clients.push(Client::connect([self.endpoint.as_str()], None).await.map_err(|e| format!("etcd connect: {e}"))?);
        }
        Ok(Arc::new(clients))
    }
}

pub(crate) async fn drive_put(conns: &Arc<Vec<Client>>, clients: usize, duration: Duration, value: Arc<Vec<u8>>) -> Stats {
    let conns = conns.clone();
    drive(clients, duration, move |w, n| {
        let mut client = conns[w % conns.len()].clone();
        let value = value.clone();
        async move { client.put(key(w, n), value.as_ref().clone(), None).await.is_ok() }
    })
    .await
}

pub(crate) async fn drive_get(conns: &Arc<Vec<Client>>, clients: usize, duration: Duration, serializable: bool) -> Stats {
    let conns = conns.clone();
    drive(clients, duration, move |w, n| {
        let mut client = conns[w % conns.len()].clone();
        let options = serializable.then(|| GetOptions::new().with_serializable());
        async move { client.get(key(w, n), options).await.is_ok_and(|r| !r.kvs().is_empty()) }
    })
    .await
}

/// 90% linearizable gets, 10% puts.
pub(crate) async fn drive_mix(conns: &Arc<Vec<Client>>, clients: usize, duration: Duration, value: Arc<Vec<u8>>) -> Stats {
    let conns = conns.clone();
    drive(clients, duration, move |w, n| {
        let mut client = conns[w % conns.len()].clone();
        let value = value.clone();
        async move {
            if n % 10 == 0 {
                client.put(key(w, n), value.as_ref().clone(), None).await.is_ok()
            } else {
                client.get(key(w, n), None).await.is_ok()
            }
        }
    })
    .await
}

impl EtcdCluster {
    /// One client per member, in member order.
    pub(crate) async fn member_clients(&self) -> Result<Vec<Client>, String> {
        let mut clients = Vec::new();
        for member in &self.members {
            let endpoint = format!("127.0.0.1:{}", member.client_port);
            clients.push(Client::connect([endpoint.as_str()], None).await.map_err(|e| format!("etcd connect: {e}"))?);
        }
        Ok(clients)
    }

    pub(crate) fn kill9(&mut self, name: &str) {
        for member in self.members.iter_mut().filter(|m| m.name == name) {
            if let Some(mut child) = member.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// Members still running, as endpoints.
    pub(crate) fn live_endpoints(&self) -> Vec<String> {
        self.members.iter().filter(|m| m.child.is_some()).map(|m| format!("127.0.0.1:{}", m.client_port)).collect()
    }
}

pub(crate) async fn failover(cluster: &mut EtcdCluster, leader: &Leader) -> Result<crate::versus::Failover, String> {
    let clients = Arc::new(cluster.member_clients().await?);
    let (acks, stop, writers) = crate::versus::start_writers(move |i, key| {
        let mut client = clients[i % clients.len()].clone();
        async move { tokio::time::timeout(Duration::from_millis(crate::versus::FAILOVER_WRITE_TIMEOUT_MS), client.put(key.clone(), key, None)).await.is_ok_and(|r| r.is_ok()) }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let killed_at = Instant::now();
    cluster.kill9(&leader.name);
    let survivors = cluster.live_endpoints();
    let checker = Client::connect(survivors.iter().map(String::as_str).collect::<Vec<_>>(), None).await.map_err(|e| format!("etcd connect: {e}"))?;
    Ok(crate::versus::finish_failover(acks, stop, writers, killed_at, |key| {
        let mut checker = checker.clone();
        async move { checker.get(key, None).await.is_ok_and(|r| !r.kvs().is_empty()) }
    })
    .await)
}

/// Writes `held/0 .. held/count-1`; returns the number of failed writes.
pub(crate) async fn fill(conns: &Arc<Vec<Client>>, count: usize, value: Arc<Vec<u8>>) -> usize {
    let conns = conns.clone();
    crate::versus::fill(count, move |i| {
        let mut client = conns[i % conns.len()].clone();
        let value = value.clone();
        async move { client.put(format!("held/{i}"), value.as_ref().clone(), None).await.is_ok() }
    })
    .await
}
