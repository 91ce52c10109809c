//! The HTTPS API (`ports.https`, `tls.https`) with `verify_incoming`: a client with a
//! certificate from the agent's CA is served over HTTPS, by reqwest and by the CLI's Consul
//! flags; one without a certificate, or with another CA's, is refused in the handshake, and
//! plaintext on the HTTPS port gets nothing.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::util::{TestAgent, free_port};

/// Runs `cairn tls ...` in `dir`.
fn cairn_tls(dir: &Path, args: &[&str]) {
    let output = Command::new(env!("CARGO_BIN_EXE_cairn")).arg("tls").args(args).current_dir(dir).output().expect("run cairn tls");
    assert!(output.status.success(), "cairn tls {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

fn client(ca: &Path, identity: Option<(&Path, &Path)>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(10));
    builder = builder.add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap());
    if let Some((cert, key)) = identity {
        let pem = [std::fs::read(cert).unwrap(), std::fs::read(key).unwrap()].concat();
        builder = builder.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    builder.build().unwrap()
}

#[tokio::test]
async fn https_with_client_certificates_serves_the_api_and_the_cli() {
    let (pki, evil) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for dir in [pki.path(), evil.path()] {
        cairn_tls(dir, &["ca", "create"]);
        cairn_tls(dir, &["cert", "create", "-server"]);
        cairn_tls(dir, &["cert", "create", "-cli"]);
    }
    let file = |name: &str| pki.path().join(name);
    let config = serde_json::json!({
        "tls": {
            "defaults": { "ca_file": file("consul-agent-ca.pem") },
            "https": {
                "cert_file": file("dc1-server-consul-0.pem"),
                "key_file": file("dc1-server-consul-0-key.pem"),
                "verify_incoming": true,
            },
        }
    });
    let config_file = pki.path().join("https.json");
    std::fs::write(&config_file, config.to_string()).unwrap();
    let port = free_port();
    let agent = TestAgent::start_with(&[&format!("-https-port={port}"), &format!("-config-file={}", config_file.display())]).await;
    let url = format!("https://localhost:{port}/v1/agent/self");
    let ca = file("consul-agent-ca.pem");
    let (cli_cert, cli_key) = (file("dc1-cli-consul-0.pem"), file("dc1-cli-consul-0-key.pem"));

    let with_cert = client(&ca, Some((&cli_cert, &cli_key)));
    let mut served = None;
    for _ in 0..50 {
        if let Ok(response) = with_cert.get(&url).send().await {
            served = Some(response.status());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(served, Some(reqwest::StatusCode::OK), "served over HTTPS with a client certificate");
    assert!(client(&ca, None).get(&url).send().await.is_err(), "no client certificate: refused");
    let evil_cert = (evil.path().join("dc1-cli-consul-0.pem"), evil.path().join("dc1-cli-consul-0-key.pem"));
    assert!(client(&ca, Some((&evil_cert.0, &evil_cert.1))).get(&url).send().await.is_err(), "another CA's certificate: refused");
    let plain = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    assert!(plain.get(format!("http://127.0.0.1:{port}/v1/agent/self")).send().await.is_err(), "plaintext on the HTTPS port: refused");
    // The plain HTTP API still answers on its own port.
    assert_eq!(agent.get("/v1/agent/self").await.status(), 200);

    // The CLI with Consul's flags, and with Consul's environment variables.
    let https_addr = format!("https://localhost:{port}");
    let cli = |args: &[&str], envs: &[(&str, &Path)]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cairn"));
        command.args(args).env("CONSUL_HTTP_ADDR", &https_addr).env_remove("CAIRN_HTTP_ADDR");
        for (name, value) in envs {
            command.env(name, value);
        }
        command.output().expect("run the cli")
    };
    let flags = [ca.to_str().unwrap(), cli_cert.to_str().unwrap(), cli_key.to_str().unwrap()];
    let with_flags = cli(&["members", &format!("-ca-file={}", flags[0]), &format!("-client-cert={}", flags[1]), &format!("-client-key={}", flags[2])], &[]);
    assert!(with_flags.status.success(), "{}", String::from_utf8_lossy(&with_flags.stderr));
    assert!(String::from_utf8_lossy(&with_flags.stdout).contains("test-node"));
    let with_env = cli(&["members"], &[("CONSUL_CACERT", &ca), ("CONSUL_CLIENT_CERT", &cli_cert), ("CONSUL_CLIENT_KEY", &cli_key)]);
    assert!(with_env.status.success(), "{}", String::from_utf8_lossy(&with_env.stderr));
    let without = cli(&["members", &format!("-ca-file={}", flags[0])], &[]);
    assert!(!without.status.success(), "the CLI without a client certificate fails");
}

/// `cairn tls` refuses bad input with a message and a non-zero exit, and never overwrites.
#[test]
fn cairn_tls_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_cairn")).arg("tls").args(args).current_dir(dir.path()).output().expect("run cairn tls");
        (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let (ok, err) = run(&["cert", "create", "-server"]);
    assert!(!ok && err.contains("cairn tls ca create"), "no CA yet: {err}");
    assert!(run(&["ca", "create"]).0);
    let (ok, err) = run(&["ca", "create"]);
    assert!(!ok && err.contains("already exists"), "{err}");
    let (ok, err) = run(&["cert", "create", "-server", "-client", "-dc=dc1"]);
    assert!(!ok && err.contains("exactly one"), "{err}");
    let (ok, err) = run(&["cert", "create", "-server", "-days=0"]);
    assert!(!ok && err.contains("-days"), "{err}");
    let (ok, err) = run(&["cert", "create", "-server", "-additional-ipaddress=not-an-ip"]);
    assert!(!ok && err.contains("additional-ipaddress"), "{err}");
    let (ok, err) = run(&[]);
    assert!(!ok && err.contains("usage"), "{err}");
    // Nothing half-written: only the CA's two files are there.
    let mut files: Vec<String> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    files.sort();
    assert_eq!(files, ["consul-agent-ca-key.pem", "consul-agent-ca.pem"]);
}

/// Boolean flags come from each verb's definition: `-prune NODE` is the flag and a node, not
/// `-prune=NODE` (it was refused with "unexpected value"), and `-server -dc=dc2` makes a dc2
/// server certificate.
#[test]
fn boolean_flags_never_swallow_the_next_argument() {
    let dir = tempfile::tempdir().unwrap();
    cairn_tls(dir.path(), &["ca", "create"]);
    cairn_tls(dir.path(), &["cert", "create", "-server", "-dc=dc2"]);
    assert!(dir.path().join("dc2-server-consul-0.pem").exists());
    let output = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["force-leave", "-prune", "no-such-node", "-http-addr=127.0.0.1:1"])
        .output()
        .expect("run the cli");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(!stderr.contains("unexpected value"), "-prune took the node as its value: {stderr}");
}

/// Certificates renewed in place take effect on SIGHUP, without a restart (Consul reloads its
/// TLS configuration the same way): after the files are replaced by another CA's and the agent
/// gets SIGHUP, new HTTPS handshakes present the new certificate and trust the new CA only.
#[tokio::test]
async fn renewed_certificates_take_effect_on_sighup() {
    let (old, new, live) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for dir in [old.path(), new.path()] {
        cairn_tls(dir, &["ca", "create"]);
        cairn_tls(dir, &["cert", "create", "-server"]);
        cairn_tls(dir, &["cert", "create", "-cli"]);
    }
    let install = |from: &Path| {
        for (name, to) in [("consul-agent-ca.pem", "ca.pem"), ("dc1-server-consul-0.pem", "server.pem"), ("dc1-server-consul-0-key.pem", "server-key.pem")] {
            std::fs::copy(from.join(name), live.path().join(to)).unwrap();
        }
    };
    install(old.path());
    let live_file = |name: &str| live.path().join(name);
    let config = serde_json::json!({
        "tls": {
            "defaults": { "ca_file": live_file("ca.pem") },
            "https": { "cert_file": live_file("server.pem"), "key_file": live_file("server-key.pem"), "verify_incoming": true },
        }
    });
    let config_file = live.path().join("https.json");
    std::fs::write(&config_file, config.to_string()).unwrap();
    let port = free_port();
    let agent = TestAgent::start_with(&[&format!("-https-port={port}"), &format!("-config-file={}", config_file.display())]).await;
    let url = format!("https://localhost:{port}/v1/agent/self");
    let client_of = |pki: &Path| {
        let (cert, key) = (pki.join("dc1-cli-consul-0.pem"), pki.join("dc1-cli-consul-0-key.pem"));
        client(&pki.join("consul-agent-ca.pem"), Some((&cert, &key)))
    };
    let served_by = |pki: &Path| {
        let client = client_of(pki);
        let url = url.clone();
        async move { client.get(&url).send().await.map(|r| r.status().as_u16()).ok() }
    };
    let mut before = None;
    for _ in 0..50 {
        before = served_by(old.path()).await;
        if before.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(before, Some(200), "the old CA's client is served before the renewal");
    assert_eq!(served_by(new.path()).await, None, "the new CA's client is refused before the renewal");

    install(new.path());
    let hangup = Command::new("kill").args(["-HUP", &agent.pid().to_string()]).status().unwrap();
    assert!(hangup.success());
    let mut after = None;
    for _ in 0..100 {
        after = served_by(new.path()).await;
        if after.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(after, Some(200), "the new CA's client is served after SIGHUP; log:\n{}", agent.log());
    assert_eq!(served_by(old.path()).await, None, "the old CA's client is refused after SIGHUP");
    assert!(agent.log().contains("TLS certificates and settings reloaded"));
    assert_eq!(agent.get("/v1/agent/self").await.status(), 200, "the agent serves on, unrestarted");
}
