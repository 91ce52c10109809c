//! Services and checks from config files: registered at start, brought in line by reload
//! (SIGHUP, `cairn reload`, `PUT /v1/agent/reload`), with API registrations left alone; and
//! `cairn services register|deregister <file>`.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::util::{TestAgent, distinct_free_ports, eventually};

/// A tiny HTTP server answering every request with 200, for the config's HTTP check.
async fn ok_server() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = [0u8; 2048];
                let _ = stream.read(&mut buffer).await;
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").await;
            });
        }
    });
    port
}

fn write_json(path: &Path, value: &Value) {
    std::fs::write(path, value.to_string()).expect("write config file");
}

async fn agent_services(agent: &TestAgent) -> Value {
    agent.get_json("/v1/agent/services").await
}

async fn catalog_has(agent: &TestAgent, service: &str) -> bool {
    agent.get_json(&format!("/v1/catalog/service/{service}")).await.as_array().is_some_and(|rows| !rows.is_empty())
}

async fn check_status(agent: &TestAgent, check_id: &str) -> String {
    let checks = agent.get_json("/v1/agent/checks").await;
    checks[check_id]["Status"].as_str().unwrap_or("").to_string()
}

/// Waits until the agent's services are exactly `ids` and the catalog agrees.
async fn wait_for_services(agent: &TestAgent, ids: &[&str]) {
    let settled = eventually(10_000, async || {
        let services = agent_services(agent).await;
        let mut present: Vec<&str> = services.as_object().map(|m| m.keys().map(String::as_str).collect()).unwrap_or_default();
        present.sort_unstable();
        let mut wanted = ids.to_vec();
        wanted.sort_unstable();
        if present != wanted {
            return false;
        }
        for id in ids {
            if !catalog_has(agent, id).await {
                return false;
            }
        }
        true
    })
    .await;
    assert!(settled, "services never became {ids:?}: {}\nlog:\n{}", agent_services(agent).await, agent.log());
}

fn web_definition(http_port: u16) -> Value {
    json!({"service": {"name": "web", "port": 8080, "tags": ["v1"], "enable_tag_override": false,
        "checks": [
            {"check_id": "web-ttl", "name": "web ttl", "ttl": "10m"},
            {"id": "web-http", "http": format!("http://127.0.0.1:{http_port}/health"), "interval": "500ms"}
        ]}})
}

#[tokio::test]
async fn config_services_register_at_start_and_follow_reloads() {
    let http_port = ok_server().await;
    let config_dir = tempfile::tempdir().expect("config dir");
    write_json(&config_dir.path().join("web.json"), &web_definition(http_port));
    write_json(&config_dir.path().join("db.json"), &json!({"service": {"name": "db", "port": 5432}}));
    std::fs::write(config_dir.path().join("disk.toml"), "[[checks]]\nid = \"disk\"\nname = \"disk\"\nttl = \"10m\"\n").expect("write");
    let pid_file = config_dir.path().join("cairn.pid");
    let agent = TestAgent::start_with(&[&format!("-config-dir={}", config_dir.path().display()), &format!("-pid-file={}", pid_file.display())]).await;

    tracing::info!("at start: in the agent's services and in the catalog; the HTTP check passes");
    wait_for_services(&agent, &["db", "web"]).await;
    assert_eq!(agent_services(&agent).await["web"]["Tags"], json!(["v1"]));
    assert!(eventually(10_000, async || check_status(&agent, "web-http").await == "passing").await, "{}", agent.log());
    assert_eq!(check_status(&agent, "disk").await, "critical");
    assert_eq!(agent.put("/v1/agent/check/pass/web-ttl", "").await.status(), 200);
    let api_service = json!({"Name": "api-only", "Check": {"TTL": "10m", "Status": "passing"}});
    assert_eq!(agent.put("/v1/agent/service/register", api_service.to_string()).await.status(), 200);

    tracing::info!("SIGHUP after an edit: db removed, cache added, web unchanged");
    std::fs::remove_file(config_dir.path().join("db.json")).expect("remove db");
    write_json(&config_dir.path().join("cache.json"), &json!({"service": {"name": "cache", "port": 6379}}));
    let pid = std::fs::read_to_string(&pid_file).expect("pid file");
    let status = Command::new("kill").args(["-HUP", pid.trim()]).status().expect("run kill");
    assert!(status.success());
    wait_for_services(&agent, &["api-only", "cache", "web"]).await;
    assert_eq!(check_status(&agent, "web-ttl").await, "passing", "an unchanged TTL check keeps its status");
    assert_eq!(check_status(&agent, "service:api-only").await, "passing", "API registrations are left alone");

    tracing::info!("cairn reload applies a changed service; its unchanged check keeps its status");
    let mut changed = web_definition(http_port);
    changed["service"]["tags"] = json!(["v2"]);
    write_json(&config_dir.path().join("web.json"), &changed);
    // And two plain settings: log_level is applied at once, node_meta needs a restart.
    write_json(&config_dir.path().join("settings.json"), &json!({"log_level": "debug", "node_meta": {"rack": "r1"}}));
    let (code, stdout, stderr) = agent.cli(&["reload"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("Configuration reload triggered"), "{stdout}");
    assert_eq!(agent_services(&agent).await["web"]["Tags"], json!(["v2"]));
    let catalog_tags = agent.get_json("/v1/catalog/service/web").await[0]["ServiceTags"].clone();
    assert_eq!(catalog_tags, json!(["v2"]));
    assert_eq!(check_status(&agent, "web-ttl").await, "passing");
    let log = agent.log();
    assert!(log.contains("log level changed") || log.contains("CAIRN_LOG"), "{log}");
    assert!(log.contains("take effect only after a restart") && log.contains("node_meta"), "{log}");

    tracing::info!("a broken file fails the reload and changes nothing");
    write_json(&config_dir.path().join("cache.json"), &json!({"service": {"name": "cache", "port": 6380}}));
    std::fs::write(config_dir.path().join("broken.json"), "{\"service\": ").expect("write broken");
    let response = agent.put("/v1/agent/reload", "").await;
    assert_eq!(response.status(), 500);
    let message = response.text().await.expect("body");
    assert!(message.contains("broken.json"), "{message}");
    let (code, _, stderr) = agent.cli(&["reload"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("Error reloading") && stderr.contains("broken.json"), "{stderr}");
    std::fs::write(config_dir.path().join("broken.json"), r#"{"check": {"name": "no-interval", "http": "http://127.0.0.1:1/"}}"#).expect("write");
    let response = agent.put("/v1/agent/reload", "").await;
    assert_eq!(response.status(), 500);
    let message = response.text().await.expect("body");
    assert!(message.contains("Failed reloading checks") && message.contains("no-interval") && message.contains("Interval"), "{message}");
    assert_eq!(agent_services(&agent).await["cache"]["Port"], 6379, "the failed reload changed nothing");

    tracing::info!("with the file fixed, the pending change applies");
    std::fs::remove_file(config_dir.path().join("broken.json")).expect("remove broken");
    assert_eq!(agent.put("/v1/agent/reload", "").await.status(), 200);
    assert_eq!(agent_services(&agent).await["cache"]["Port"], 6380);
    assert_eq!(check_status(&agent, "web-ttl").await, "passing");
}

#[tokio::test]
async fn an_invalid_definition_stops_the_agent_at_start() {
    let config_dir = tempfile::tempdir().expect("config dir");
    write_json(&config_dir.path().join("bad.json"), &json!({"service": {"name": "web", "check": {"http": "http://127.0.0.1:1/"}}}));
    let data_dir = tempfile::tempdir().expect("data dir");
    let ports = distinct_free_ports(4);
    let output = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args([
            "agent".to_string(),
            "-dev".into(),
            format!("-data-dir={}", data_dir.path().display()),
            format!("-http-port={}", ports[0]),
            format!("-dns-port={}", ports[1]),
            format!("-server-port={}", ports[2]),
            format!("-serf-lan-port={}", ports[3]),
            format!("-config-dir={}", config_dir.path().display()),
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run cairn");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.json") && stderr.contains("service \"web\"") && stderr.contains("Interval"), "{stderr}");
}

#[tokio::test]
async fn services_register_and_deregister_take_definition_files() {
    let agent = TestAgent::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let json_file = dir.path().join("web.json");
    write_json(&json_file, &json!({"service": {"name": "web", "id": "web-1", "port": 80, "check": {"ttl": "10m"}}}));
    let toml_file = dir.path().join("db.toml");
    std::fs::write(&toml_file, "[[services]]\nname = \"db\"\nport = 5432\ntags = [\"primary\"]\n").expect("write");
    let json_path = json_file.display().to_string();
    let toml_path = toml_file.display().to_string();

    let (code, _, stderr) = agent.cli(&["services", "register", &json_path, &toml_path]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("Registered service: web") && stderr.contains("Registered service: db"), "{stderr}");
    let services = agent_services(&agent).await;
    assert_eq!((services["web-1"]["Port"].clone(), services["db"]["Tags"].clone()), (json!(80), json!(["primary"])));
    assert_eq!(check_status(&agent, "service:web-1").await, "critical");

    let (code, _, stderr) = agent.cli(&["services", "deregister", &json_path]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("Deregistered service: web-1"), "{stderr}");
    let (code, _, stderr) = agent.cli(&["services", "deregister", "-id=db"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("Deregistered service: db"), "{stderr}");
    assert_eq!(agent_services(&agent).await, json!({}));

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[services]\nname = ").expect("write");
    let (code, _, stderr) = agent.cli(&["services", "register", &bad.display().to_string()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("bad.toml"), "{stderr}");
}
