//! Mutual TLS on the server port (issue 11): a 3-server cluster with `verify_incoming`,
//! `verify_outgoing` and `verify_server_hostname` forms and serves (Raft, forwarding and a
//! client agent all over TLS), with certificates made by `cairn tls`; a plaintext caller, a
//! caller with another CA's certificate, a client certificate on the Raft routes, and a server
//! whose certificate comes from another CA are all refused.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::cluster_util::TestCluster;

/// Runs `cairn tls ...` in `dir`; panics with its output if it fails.
fn cairn_tls(dir: &Path, args: &[&str]) {
    let output = Command::new(env!("CARGO_BIN_EXE_cairn")).arg("tls").args(args).current_dir(dir).output().expect("run cairn tls");
    assert!(output.status.success(), "cairn tls {args:?}: {}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
}

/// A CA and `servers` server certificates and one client certificate, made in `dir`.
fn make_pki(dir: &Path, servers: usize) {
    cairn_tls(dir, &["ca", "create"]);
    for _ in 0..servers {
        cairn_tls(dir, &["cert", "create", "-server"]);
    }
    cairn_tls(dir, &["cert", "create", "-client"]);
}

/// An agent config using `cert` from `dir`, with every verification on.
fn tls_config(dir: &Path, cert: &str, name: &str) -> PathBuf {
    let path = dir.join(format!("{name}.json"));
    let config = serde_json::json!({
        "tls": {
            "defaults": {
                "ca_file": dir.join("consul-agent-ca.pem"),
                "cert_file": dir.join(format!("{cert}.pem")),
                "key_file": dir.join(format!("{cert}-key.pem")),
                "verify_incoming": true,
                "verify_outgoing": true,
            },
            "internal_rpc": { "verify_server_hostname": true },
        }
    });
    std::fs::write(&path, config.to_string()).expect("write tls config");
    path
}

/// An HTTPS client presenting `cert` from `dir`, trusting any server certificate (the attacker
/// does not care who answers).
fn client_with(dir: &Path, cert: &str) -> reqwest::Client {
    let pem = [std::fs::read(dir.join(format!("{cert}.pem"))).unwrap(), std::fs::read(dir.join(format!("{cert}-key.pem"))).unwrap()].concat();
    reqwest::Client::builder()
        .identity(reqwest::Identity::from_pem(&pem).expect("identity"))
        .tls_danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutual_tls_cluster_serves_and_refuses_what_its_ca_did_not_sign() {
    let (pki, evil) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    make_pki(pki.path(), 3);
    make_pki(evil.path(), 1);
    let configs: Vec<PathBuf> = (0..3).map(|i| tls_config(pki.path(), &format!("dc1-server-consul-{i}"), &format!("s{i}"))).collect();
    let mut cluster = TestCluster::start_with_args(3, |i| vec![format!("-config-file={}", configs[i].display())]).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    // Raft over TLS: a write commits and reaches every server; a follower forwards over TLS.
    assert!(cluster.put(leader, "tls/one", "1").await);
    assert!(cluster.put((leader + 1) % 3, "tls/two", "2").await, "a follower forwards the write to the leader over TLS");
    cluster.wait_identical(Duration::from_secs(10)).await;

    // A client agent with a client certificate joins and writes through the servers over TLS.
    let client_config = tls_config(pki.path(), "dc1-client-consul-0", "c1");
    let c1 = cluster.add_client(&[&format!("-config-file={}", client_config.display())]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let put = cluster.client.put(format!("{}/v1/kv/tls/through-client", cluster.servers[c1].http())).body("3").send().await;
        if put.as_ref().is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "a client agent never wrote over TLS: {put:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let target = cluster.servers[leader].server_addr();
    // Plaintext is closed, even from a server's own address.
    let plain = reqwest::Client::builder().local_address(cluster.servers[(leader + 1) % 3].ip).timeout(Duration::from_secs(5)).build().unwrap();
    assert!(plain.get(format!("http://{target}/raft/info")).send().await.is_err(), "plaintext is refused with verify_incoming");
    // Another CA's certificate fails the handshake.
    let forged = client_with(evil.path(), "dc1-server-consul-0");
    assert!(forged.post(format!("https://{target}/raft/forward")).body(vec![1, 0]).send().await.is_err(), "another CA's certificate is refused");
    // Our CA's client certificate may not speak Raft, join or forward writes as a server.
    let agent_cert = client_with(pki.path(), "dc1-client-consul-0");
    for path in ["/raft/vote", "/raft/append", "/raft/snapshot", "/raft/join", "/raft/forward"] {
        let response = agent_cert.post(format!("https://{target}{path}")).body(vec![1, 0]).send().await.unwrap();
        assert_eq!(response.status(), 403, "{path} with a client certificate");
    }
    assert_eq!(agent_cert.get(format!("https://{target}/raft/info")).send().await.unwrap().status(), 403);
    // Positive control: a server certificate of our CA is admitted.
    let server_cert = client_with(pki.path(), "dc1-server-consul-1");
    assert_eq!(server_cert.get(format!("https://{target}/raft/info")).send().await.unwrap().status(), 200);

    // A server whose certificate another CA signed never becomes a member of the Raft cluster.
    let rogue_config = tls_config(evil.path(), "dc1-server-consul-0", "rogue");
    let rogue = cluster.add_server_with(&[format!("-config-file={}", rogue_config.display())]);
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(cluster.voters_seen_by(0).await.len(), 3, "the rogue server is not a voter");
    let status: serde_json::Value = cluster.client.get(format!("{}/v1/operator/raft/configuration", cluster.servers[0].http())).send().await.unwrap().json().await.unwrap();
    assert_eq!(status["Servers"].as_array().map(Vec::len), Some(3), "nor a learner: {status}");
    assert_eq!(cluster.leader_seen_by(rogue).await, None, "the rogue knows no leader");
    assert!(cluster.put(0, "tls/after-rogue", "4").await, "the cluster still serves");
}
