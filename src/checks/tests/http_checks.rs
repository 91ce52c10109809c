//! HTTP check tests against a hand-rolled HTTP/1.1 server on 127.0.0.1 whose
//! status code the test flips through an `AtomicU16`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use super::{closed_port, scheduler, wait_for};
use crate::checks::{CheckKind, CheckStatus};

/// Minimal HTTP/1.1 server answering every request with `code` and `body`.
struct TestServer {
    addr: SocketAddr,
    code: Arc<AtomicU16>,
    requests: Arc<Mutex<Vec<String>>>,
}

async fn start_server(body: String) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let code = Arc::new(AtomicU16::new(200));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let (code_c, requests_c) = (Arc::clone(&code), Arc::clone(&requests));
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(serve(
                sock,
                code_c.load(Ordering::SeqCst),
                body.clone(),
                Arc::clone(&requests_c),
            ));
        }
    });
    TestServer {
        addr,
        code,
        requests,
    }
}

async fn serve(mut sock: TcpStream, code: u16, body: String, requests: Arc<Mutex<Vec<String>>>) {
    let mut request = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let Ok(Ok(read)) =
            tokio::time::timeout(Duration::from_secs(2), sock.read(&mut chunk)).await
        else {
            return;
        };
        if read == 0 {
            return;
        }
        request.extend_from_slice(&chunk[..read]);
        let text = String::from_utf8_lossy(&request).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|line| {
                    line.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if request.len() >= end + 4 + length {
                break;
            }
        }
    }
    requests
        .lock()
        .unwrap()
        .push(String::from_utf8_lossy(&request).to_string());
    let reason = match code {
        200 => "OK",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        _ => "Whatever",
    };
    let response = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = sock.write_all(response.as_bytes()).await;
    let _ = sock.shutdown().await;
}

fn http_check(url: String, interval: Duration) -> CheckKind {
    CheckKind::Http {
        url,
        method: String::new(),
        headers: vec![],
        body: None,
        tls_skip_verify: false,
        tls_server_name: String::new(),
        interval,
        timeout: Duration::from_secs(2),
    }
}

#[tokio::test]
async fn http_follows_status_code_flips() {
    let server = start_server("hello".to_owned()).await;
    let (sched, mut rx) = scheduler(16, 4096);
    let url = format!("http://{}/health", server.addr);
    let started = Instant::now();
    sched.add("web", http_check(url.clone(), Duration::from_secs(1)));

    let first = wait_for(
        &mut rx,
        "web",
        CheckStatus::Passing,
        Duration::from_millis(1500),
    )
    .await;
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert_eq!(
        first.output,
        format!("HTTP GET {url}: 200 OK Output: hello")
    );
    let request = server.requests.lock().unwrap()[0].to_ascii_lowercase();
    assert!(request.starts_with("get /health http/1.1"), "{request}");
    assert!(
        request.contains("user-agent: consul health check"),
        "{request}"
    );

    server.code.store(500, Ordering::SeqCst);
    let critical = wait_for(
        &mut rx,
        "web",
        CheckStatus::Critical,
        Duration::from_millis(1500),
    )
    .await;
    assert_eq!(
        critical.output,
        format!("HTTP GET {url}: 500 Internal Server Error Output: hello")
    );

    server.code.store(200, Ordering::SeqCst);
    wait_for(
        &mut rx,
        "web",
        CheckStatus::Passing,
        Duration::from_millis(1500),
    )
    .await;

    server.code.store(429, Ordering::SeqCst);
    let warning = wait_for(
        &mut rx,
        "web",
        CheckStatus::Warning,
        Duration::from_millis(1500),
    )
    .await;
    assert!(
        warning
            .output
            .contains(": 429 Too Many Requests Output: hello"),
        "{}",
        warning.output
    );
    sched.shutdown();
}

#[tokio::test]
async fn http_sends_method_headers_and_body() {
    let server = start_server(String::new()).await;
    let (sched, mut rx) = scheduler(16, 4096);
    let url = format!("http://{}/post", server.addr);
    sched.add(
        "post",
        CheckKind::Http {
            url: url.clone(),
            method: "POST".to_owned(),
            headers: vec![
                ("X-Probe".to_owned(), "yes".to_owned()),
                ("User-Agent".to_owned(), "mine".to_owned()),
            ],
            body: Some("ping-body".to_owned()),
            tls_skip_verify: false,
            tls_server_name: String::new(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
        },
    );
    let result = wait_for(
        &mut rx,
        "post",
        CheckStatus::Passing,
        Duration::from_millis(1500),
    )
    .await;
    assert_eq!(result.output, format!("HTTP POST {url}: 200 OK Output: "));
    let request = server.requests.lock().unwrap()[0].clone();
    let lower = request.to_ascii_lowercase();
    assert!(lower.starts_with("post /post http/1.1"), "{request}");
    assert!(lower.contains("x-probe: yes"), "{request}");
    assert!(
        lower.contains("user-agent: mine") && !lower.contains("consul health check"),
        "{request}"
    );
    assert!(request.ends_with("ping-body"), "{request}");
}

#[tokio::test]
async fn http_connection_refused_is_critical() {
    let addr = closed_port().await;
    let (sched, mut rx) = scheduler(16, 4096);
    sched.add(
        "down",
        http_check(format!("http://{addr}/"), Duration::from_secs(1)),
    );
    let result = wait_for(
        &mut rx,
        "down",
        CheckStatus::Critical,
        Duration::from_millis(1500),
    )
    .await;
    eprintln!("refused output: {}", result.output);
    assert!(
        result.output.to_lowercase().contains("refused"),
        "{}",
        result.output
    );
}

#[tokio::test]
async fn http_output_is_truncated_to_limit() {
    let server = start_server("x".repeat(10_000)).await;
    let (sched, mut rx) = scheduler(16, 256);
    sched.add(
        "big",
        http_check(format!("http://{}/", server.addr), Duration::from_secs(1)),
    );
    let result = wait_for(
        &mut rx,
        "big",
        CheckStatus::Passing,
        Duration::from_millis(1500),
    )
    .await;
    assert_eq!(result.output.len(), 256);
    assert!(
        result.output.starts_with("HTTP GET http://") && result.output.ends_with("xxx"),
        "{}",
        result.output
    );
}

#[tokio::test]
async fn interval_below_minimum_is_raised_to_one_second() {
    let server = start_server("ok".to_owned()).await;
    let (sched, mut rx) = scheduler(64, 4096);
    sched.add(
        "fast",
        http_check(
            format!("http://{}/", server.addr),
            Duration::from_millis(100),
        ),
    );
    tokio::time::sleep(Duration::from_millis(1600)).await;
    sched.remove("fast");
    let mut runs = 0;
    while rx.try_recv().is_ok() {
        runs += 1;
    }
    // Stagger (< 250 ms) + one 1 s interval: two runs, not sixteen.
    assert!((1..=2).contains(&runs), "{runs} runs");
}

#[tokio::test]
async fn http_timeout_is_critical() {
    // Accepts connections but never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let (sched, mut rx) = scheduler(16, 4096);
    let started = Instant::now();
    sched.add(
        "hang",
        CheckKind::Http {
            url: format!("http://{addr}/"),
            method: "GET".to_owned(),
            headers: vec![],
            body: None,
            tls_skip_verify: true,
            tls_server_name: String::new(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(200),
        },
    );
    let result = wait_for(
        &mut rx,
        "hang",
        CheckStatus::Critical,
        Duration::from_millis(1500),
    )
    .await;
    assert!(started.elapsed() < Duration::from_millis(1000));
    eprintln!("timeout output: {}", result.output);
    assert!(result.output.contains("timed out"), "{}", result.output);
}
