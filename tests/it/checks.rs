//! Health checks run by the agent: TTL lapses to critical; HTTP follows its target's status.

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
