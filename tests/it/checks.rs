//! Health checks run by the agent: TTL lapses to critical; HTTP follows its target's status;
//! script checks come from the API only with `enable_script_checks`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::util::{TestAgent, eventually};

/// A tiny HTTP server answering every request with the status code in `status`.
async fn flipping_server(status: Arc<AtomicU16>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let status = status.load(Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buffer = [0u8; 2048];
                let _ = stream.read(&mut buffer).await;
                let response = format!("HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    port
}

async fn check_status(agent: &TestAgent, check_id: &str) -> String {
    let checks = agent.get_json("/v1/health/checks/web").await;
    checks.as_array().unwrap().iter().find(|c| c["CheckID"] == check_id).map(|c| c["Status"].as_str().unwrap().to_string()).unwrap_or_default()
}

#[tokio::test]
async fn ttl_check_goes_critical_after_its_ttl() {
    let agent = TestAgent::start().await;
    let body = json!({"Name": "web", "Port": 80, "Check": {"TTL": "1s"}});
    assert_eq!(agent.put("/v1/agent/service/register", body.to_string()).await.status(), 200);
    assert_eq!(check_status(&agent, "service:web").await, "critical", "a new check starts critical");
    assert_eq!(agent.put("/v1/agent/check/pass/service:web?note=fine", "").await.status(), 200);
    assert_eq!(check_status(&agent, "service:web").await, "passing");
    let lapsed = eventually(3_000, async || check_status(&agent, "service:web").await == "critical").await;
    assert!(lapsed, "TTL did not lapse to critical");
    let checks = agent.get_json("/v1/agent/checks").await;
    assert!(checks["service:web"]["Output"].as_str().unwrap().starts_with("TTL expired"));
}

#[tokio::test]
async fn http_check_follows_the_target_status() {
    let status = Arc::new(AtomicU16::new(200));
    let port = flipping_server(status.clone()).await;
    let agent = TestAgent::start().await;
    let body = json!({"Name": "web", "Port": port, "Check": {"HTTP": format!("http://127.0.0.1:{port}/health"), "Interval": "1s"}});
    assert_eq!(agent.put("/v1/agent/service/register", body.to_string()).await.status(), 200);
    assert!(eventually(5_000, async || check_status(&agent, "service:web").await == "passing").await, "never passing");
    status.store(500, Ordering::SeqCst);
    assert!(eventually(5_000, async || check_status(&agent, "service:web").await == "critical").await, "never critical");
    status.store(429, Ordering::SeqCst);
    assert!(eventually(5_000, async || check_status(&agent, "service:web").await == "warning").await, "never warning");
    status.store(200, Ordering::SeqCst);
    assert!(eventually(5_000, async || check_status(&agent, "service:web").await == "passing").await, "never passing again");
}

/// Consul's refusal of a script check from the API without `enable_script_checks`.
const SCRIPTS_DISABLED_FROM_API: &str = "Scripts are disabled on this agent from remote calls; to enable, configure 'enable_script_checks' to true";

async fn agent_check_status(agent: &TestAgent, check_id: &str) -> String {
    agent.get_json("/v1/agent/checks").await[check_id]["Status"].as_str().unwrap_or("").to_string()
}

/// Regression (issue 11): `enable_local_script_checks` (Consul's safe option: scripts from
/// config files only) also let anyone who reached the API, including through the server
/// port's `/fwd`, register a script check, that is run commands as the agent's user. As in
/// Consul, the API now needs `enable_script_checks` (500 with Consul's text otherwise) while
/// config files keep working.
#[tokio::test]
async fn with_only_local_script_checks_the_api_cannot_register_scripts() {
    let config_dir = tempfile::tempdir().unwrap();
    let local = json!({"checks": [{"id": "local-script", "name": "local script", "args": ["true"], "interval": "500ms"}]});
    std::fs::write(config_dir.path().join("local.json"), local.to_string()).unwrap();
    let agent = TestAgent::start_with(&["-enable-local-script-checks", &format!("-config-dir={}", config_dir.path().display())]).await;
    let marker = config_dir.path().join("pwned");
    let args = json!(["sh", "-c", format!("touch {}", marker.display())]);
    let attempts = [
        ("/v1/agent/check/register", json!({"Name": "evil", "Args": args, "Interval": "1s"})),
        ("/v1/agent/service/register", json!({"Name": "evil-svc", "Check": {"Args": args, "Interval": "1s"}})),
        ("/v1/agent/service/register", json!({"Name": "evil-svc2", "Checks": [{"TTL": "10m"}, {"Args": args, "Interval": "1s"}]})),
    ];
    let server_port = format!("http://127.0.0.1:{}/fwd", agent.server_port);
    for (path, body) in &attempts {
        for base in [format!("http://127.0.0.1:{}", agent.http_port), server_port.clone()] {
            let response = agent.client.put(format!("{base}{path}")).body(body.to_string()).send().await.unwrap();
            let status = response.status();
            assert_eq!((status.as_u16(), response.text().await.unwrap()), (500, SCRIPTS_DISABLED_FROM_API.to_string()), "{base}{path}");
        }
    }
    assert!(eventually(10_000, async || agent_check_status(&agent, "local-script").await == "passing").await, "{}", agent.log());
    let checks = agent.get_json("/v1/agent/checks").await;
    assert_eq!(checks.as_object().unwrap().keys().collect::<Vec<_>>(), ["local-script"], "only the config file's check: {checks}");
    let services = agent.get_json("/v1/agent/services").await;
    assert!(services.as_object().unwrap().is_empty(), "refused registrations left nothing: {services}");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(!marker.exists(), "a refused script ran");
}

/// With `enable_script_checks` the API may register a script check; an agent restarted
/// without it drops the persisted one (Consul's `loadChecks` purges a check it cannot add).
#[tokio::test]
async fn script_checks_from_the_api_need_enable_script_checks_also_after_a_restart() {
    let mut agent = TestAgent::start_with(&["-enable-script-checks"]).await;
    let body = json!({"ID": "api-script", "Name": "api script", "Args": ["true"], "Interval": "500ms"});
    assert_eq!(agent.put("/v1/agent/check/register", body.to_string()).await.status(), 200);
    assert!(eventually(10_000, async || agent_check_status(&agent, "api-script").await == "passing").await, "{}", agent.log());
    agent.extra_args.clear();
    agent.restart().await;
    let checks = agent.get_json("/v1/agent/checks").await;
    assert!(checks.get("api-script").is_none(), "the persisted script check was dropped: {checks}");
    assert!(agent.log().contains("dropping a persisted script check"), "{}", agent.log());
    let response = agent.put("/v1/agent/check/register", body.to_string()).await;
    assert_eq!((response.status().as_u16(), response.text().await.unwrap()), (500, SCRIPTS_DISABLED_FROM_API.to_string()));
}
