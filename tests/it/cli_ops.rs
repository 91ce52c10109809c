//! The operators' verbs against real files and a real agent: `cairn validate` (files and
//! directories loaded as the agent loads them), `cairn info` (the sections of
//! `/v1/agent/self`) and `cairn debug` (a .tar.gz bundle). `cairn reload` is exercised in
//! `config_services`.

use std::io::Read;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::util::TestAgent;

/// Runs `cairn ARGS` with no agent; returns (exit code, stdout, stderr).
fn cairn(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_cairn")).args(args).output().expect("run cairn");
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config file");
    path.display().to_string()
}

#[test]
fn validate_accepts_what_the_agent_loads_and_names_what_it_refuses() {
    let dir = tempfile::tempdir().expect("temp dir");
    tracing::info!("a good file, then -quiet");
    let good = write(dir.path(), "agent.toml", "datacenter = \"dc1\"\ndata_dir = \"/var/lib/cairn\"\nports.dns = 8600\n");
    let (code, stdout, stderr) = cairn(&["validate", &good]);
    assert_eq!((code, stdout.as_str()), (0, "Configuration is valid!\n"), "{stderr}");
    let (code, stdout, _) = cairn(&["validate", "-quiet", &good]);
    assert_eq!((code, stdout.as_str()), (0, ""));

    tracing::info!("an unknown key fails, naming the key and the file");
    let typo = write(dir.path(), "typo.toml", "datacentre = \"dc1\"\ndata_dir = \"/tmp/x\"\n");
    let (code, stdout, stderr) = cairn(&["validate", &typo]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stderr.contains("Config validation failed") && stderr.contains("datacentre") && stderr.contains("typo.toml"), "{stderr}");

    tracing::info!("a bad value fails with the key's own message");
    let bad = write(dir.path(), "bad.json", r#"{"data_dir": "/tmp/x", "ports": {"http": "eighty"}}"#);
    let (code, _, stderr) = cairn(&["validate", &bad]);
    assert_eq!(code, 1);
    assert!(stderr.contains("Config validation failed") && stderr.contains("ports.http"), "{stderr}");
    let (code, _, stderr) = cairn(&["validate"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("Must specify at least one config file or directory"), "{stderr}");
    let (code, _, stderr) = cairn(&["validate", &dir.path().join("missing.toml").display().to_string()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("missing.toml"), "{stderr}");
}

#[test]
fn validate_reads_a_directory_as_the_agent_does_merged_with_its_definitions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().display().to_string();
    write(dir.path(), "10-base.toml", "data_dir = \"/var/lib/cairn\"\nbootstrap_expect = 3\n");
    tracing::info!("the rule spans two files: bootstrap_expect needs server from another one");
    let (code, _, stderr) = cairn(&["validate", &path]);
    assert_eq!(code, 1);
    assert!(stderr.contains("'bootstrap_expect > 0' requires 'server = true'"), "{stderr}");
    write(dir.path(), "20-server.json", r#"{"server": true}"#);
    write(dir.path(), "README", "not a config file");
    let (code, stdout, stderr) = cairn(&["validate", &path]);
    assert_eq!((code, stdout.as_str()), (0, "Configuration is valid!\n"), "{stderr}");
    assert!(stderr.contains("skipping config file") && stderr.contains("README"), "{stderr}");

    tracing::info!("service and check definitions are decoded and held to the agent's rules");
    write(dir.path(), "30-web.json", r#"{"service": {"name": "web", "port": 80, "check": {"http": "http://127.0.0.1/"}}}"#);
    let (code, _, stderr) = cairn(&["validate", &path]);
    assert_eq!(code, 1);
    assert!(stderr.contains("Interval"), "an HTTP check needs an interval: {stderr}");
    write(dir.path(), "30-web.json", r#"{"service": {"name": "web", "port": 80, "check": {"args": ["/bin/true"], "interval": "10s"}}}"#);
    let (code, _, stderr) = cairn(&["validate", &path]);
    assert_eq!(code, 1, "script checks are off unless enabled: {stderr}");
    write(dir.path(), "40-scripts.toml", "enable_local_script_checks = true\n");
    let (code, stdout, stderr) = cairn(&["validate", "-quiet", &path]);
    assert_eq!((code, stdout.as_str()), (0, ""), "{stderr}");
}

#[tokio::test]
async fn info_prints_the_sections_of_agent_self() {
    let agent = TestAgent::start().await;
    let (code, _, stderr) = agent.cli(&["services", "register", "-name=web", "-port=80"]);
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, stderr) = agent.cli(&["info"]);
    assert_eq!(code, 0, "{stderr}");
    let sections: Vec<&str> = stdout.lines().filter(|line| !line.starts_with('\t')).collect();
    let mut sorted = sections.clone();
    sorted.sort();
    assert_eq!(sections, sorted, "sections come sorted, as Consul's");
    for section in ["agent:", "build:", "consul:", "raft:", "runtime:", "serf_lan:"] {
        assert!(sections.contains(&section), "{section} missing from:\n{stdout}");
    }
    for line in ["\tservices = 1", "\tserver = true", "\tstate = Leader", "\tmembers = 1", &format!("\tversion = {}", env!("CARGO_PKG_VERSION"))] {
        assert!(stdout.lines().any(|l| l == line), "{line:?} missing from:\n{stdout}");
    }
    let port = crate::util::free_port();
    let (code, _, stderr) = agent.cli(&["info", &format!("-http-addr=127.0.0.1:{port}")]);
    assert_eq!(code, 1);
    assert!(stderr.contains("Error querying agent"), "{stderr}");
}

/// The bundle's files: archive path → contents.
fn unpack(archive: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let file = std::fs::File::open(archive).expect("open the bundle");
    let mut entries = std::collections::BTreeMap::new();
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    for entry in tar.entries().expect("a tar.gz") {
        let mut entry = entry.expect("an entry");
        let name = entry.path().expect("a path").display().to_string();
        let mut contents = Vec::new();
        entry.read_to_end(&mut contents).expect("read an entry");
        entries.insert(name, contents);
    }
    entries
}

#[tokio::test]
async fn debug_writes_a_bundle_and_records_what_it_could_not_capture() {
    let agent = TestAgent::start().await;
    let out = tempfile::tempdir().expect("temp dir");
    let output = out.path().join("bundle").display().to_string();
    // The capture runs while the agent logs something (a reload requested over HTTP, at info).
    let (http, bundle) = (agent.http_addr(), output.clone());
    let capture = std::thread::spawn(move || {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(["debug", "-duration=3s", "-interval=1s", &format!("-output={bundle}")])
            .env("CONSUL_HTTP_ADDR", http)
            .env_remove("CAIRN_HTTP_ADDR")
            .output()
            .expect("run the cli");
        (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
    });
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    assert_eq!(agent.put("/v1/agent/reload", "").await.status(), 200);
    let (code, stdout, stderr) = capture.join().expect("the capture thread");
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stderr.contains(&format!("Saved debug archive: {output}.tar.gz")), "{stderr}");
    assert!(!Path::new(&output).exists(), "the directory is removed once archived");
    let files = unpack(Path::new(&format!("{output}.tar.gz")));
    let json = |name: &str| -> Value { serde_json::from_slice(&files[&format!("bundle/{name}")]).unwrap_or_else(|e| panic!("{name}: {e}")) };

    tracing::info!("static targets: the agent, its members, the host");
    assert_eq!(json("agent.json")["Config"]["NodeName"], "test-node");
    assert!(json("members.json").as_array().expect("members").iter().any(|m| m["Name"] == "test-node"));
    assert!(json("host.json").is_object());
    tracing::info!("metrics at every interval: at 0 s and 1 s of 2 s");
    let metrics = files.keys().filter(|name| name.ends_with("/metrics.json")).count();
    assert!(metrics >= 2, "{:?}", files.keys());
    let index = json("index.json");
    assert_eq!(index["Version"], 1);
    assert_eq!(index["Targets"], serde_json::json!(["metrics", "logs", "host", "agent", "members"]));
    tracing::info!("the log, streamed from /v1/agent/monitor while the capture ran");
    let log = String::from_utf8_lossy(&files["bundle/consul.log"]).into_owned();
    assert_eq!(index["Errors"], serde_json::json!([]), "nothing failed to capture");
    assert!(log.contains("reload requested over HTTP"), "the log holds what the agent logged meanwhile: {log}");

    tracing::info!("bad flags fail before anything is written");
    for (args, message) in [
        (vec!["-capture=bogus"], "target not found: bogus"),
        (vec!["-duration=1s", "-interval=2s"], "must be longer than interval"),
        (vec!["-duration=soon"], "invalid -duration"),
    ] {
        let target = out.path().join("refused").display().to_string();
        let mut full = vec!["debug".to_string(), format!("-output={target}")];
        full.extend(args.iter().map(|a| a.to_string()));
        let (code, _, stderr) = agent.cli(&full.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(code, 1, "{args:?}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(!Path::new(&target).exists());
    }
    let (code, _, stderr) = agent.cli(&["debug", "-duration=1s", "-interval=1s", &format!("-output={}", out.path().display())]);
    assert_eq!(code, 1);
    assert!(stderr.contains("already exists"), "{stderr}");
}
