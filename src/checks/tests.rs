//! Tests against real parts: a hand-rolled HTTP/1.1 server and TCP listeners
//! on 127.0.0.1, real child processes, and tokio's real clock.

mod http_checks;
mod network_checks;
mod script_checks;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::runner::go_duration;
use super::*;

fn scheduler(capacity: usize, output_bytes_max: usize) -> (Scheduler, mpsc::Receiver<CheckResult>) {
    let (tx, rx) = mpsc::channel(capacity);
    (Scheduler::new(tx, CheckLimits { output_bytes_max }), rx)
}

/// Waits for the next result of `check_id` with `status`, skipping others.
async fn wait_for(
    rx: &mut mpsc::Receiver<CheckResult>,
    check_id: &str,
    status: CheckStatus,
    within: Duration,
) -> CheckResult {
    let deadline = Instant::now() + within;
    loop {
        let result = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no {status:?} result for {check_id} within {within:?}"))
            .expect("channel open");
        if result.check_id == check_id && result.status == status {
            return result;
        }
    }
}

/// The first result of each of `check_ids`, whatever order they arrive in.
async fn first_results(
    rx: &mut mpsc::Receiver<CheckResult>,
    check_ids: &[&str],
    within: Duration,
) -> HashMap<String, CheckResult> {
    let deadline = Instant::now() + within;
    let mut found = HashMap::new();
    while found.len() < check_ids.len() {
        let result = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "only {:?} of {check_ids:?} reported within {within:?}",
                    found.keys()
                )
            })
            .expect("channel open");
        if check_ids.contains(&result.check_id.as_str()) {
            found.entry(result.check_id.clone()).or_insert(result);
        }
    }
    found
}

async fn next_result(rx: &mut mpsc::Receiver<CheckResult>, within: Duration) -> CheckResult {
    tokio::time::timeout(within, rx.recv())
        .await
        .expect("a result in time")
        .expect("channel open")
}

/// A port nothing listens on: bind, note the port, close.
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

#[tokio::test]
async fn tcp_open_port_passes_and_closed_port_fails() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let open = listener.local_addr().unwrap();
    let closed = closed_port().await;
    let (sched, mut rx) = scheduler(16, 4096);
    let tcp = |address: String| CheckKind::Tcp {
        address,
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
    };
    sched.add("open", tcp(open.to_string()));
    sched.add("closed", tcp(closed.to_string()));
    let results = first_results(&mut rx, &["open", "closed"], Duration::from_millis(1500)).await;
    let passing = &results["open"];
    assert_eq!(
        (passing.status, passing.output.clone()),
        (CheckStatus::Passing, format!("TCP connect {open}: Success"))
    );
    let critical = &results["closed"];
    assert_eq!(critical.status, CheckStatus::Critical);
    assert!(
        critical.output.starts_with(&format!("dial tcp {closed}: ")),
        "{}",
        critical.output
    );
    drop(listener);
}

#[tokio::test]
async fn ttl_lapses_to_critical_and_is_revived() {
    let (sched, mut rx) = scheduler(16, 4096);
    let started = Instant::now();
    sched.add(
        "ttl",
        CheckKind::Ttl {
            ttl: Duration::from_millis(100),
        },
    );
    let expired = next_result(&mut rx, Duration::from_millis(500)).await;
    let lapse = started.elapsed();
    assert!(
        lapse >= Duration::from_millis(100) && lapse < Duration::from_millis(200),
        "{lapse:?}"
    );
    assert_eq!(
        (expired.status, expired.output.as_str()),
        (CheckStatus::Critical, "TTL expired")
    );
    // One expiry is reported once, not on every tick.
    assert!(
        tokio::time::timeout(Duration::from_millis(250), rx.recv())
            .await
            .is_err()
    );

    sched
        .ttl_update("ttl", CheckStatus::Passing, "all good")
        .unwrap();
    let revived = rx.try_recv().expect("update emitted at once");
    assert_eq!(
        (revived.status, revived.output.as_str()),
        (CheckStatus::Passing, "all good")
    );

    // Updates within the TTL keep it alive.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        sched
            .ttl_update("ttl", CheckStatus::Warning, "busy")
            .unwrap();
        assert_eq!(rx.try_recv().unwrap().status, CheckStatus::Warning);
    }
    let expired = next_result(&mut rx, Duration::from_millis(500)).await;
    assert_eq!(expired.status, CheckStatus::Critical);
    assert_eq!(
        expired.output,
        "TTL expired (last output before timeout follows): busy"
    );
}

/// A TTL check registered again keeps its runner (`Scheduler::restart_ttl`) but behaves as a
/// new one: nothing emitted at registration, the timer started over, the last output
/// forgotten; a different TTL gets a new runner, and so does a re-registration after a lapse.
#[tokio::test]
async fn ttl_registered_again_starts_its_timer_over() {
    let (sched, mut rx) = scheduler(16, 4096);
    let ttl = |ms| CheckKind::Ttl { ttl: Duration::from_millis(ms) };
    sched.add("ttl", ttl(300));
    sched.ttl_update("ttl", CheckStatus::Passing, "before").unwrap();
    assert_eq!(rx.try_recv().unwrap().output, "before");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let again = Instant::now();
    sched.add("ttl", ttl(300));
    assert!(rx.try_recv().is_err(), "a registration emits nothing");
    // The old deadline (100 ms from now) passes quietly; the new one (300 ms) fires.
    let expired = next_result(&mut rx, Duration::from_millis(1000)).await;
    let lapse = again.elapsed();
    assert!(lapse >= Duration::from_millis(300), "expired {lapse:?} after the re-registration");
    assert_eq!((expired.status, expired.output.as_str()), (CheckStatus::Critical, "TTL expired"));

    // After a lapse, a re-registration arms the timer again.
    let again = Instant::now();
    sched.add("ttl", ttl(300));
    let expired = next_result(&mut rx, Duration::from_millis(1000)).await;
    assert!(again.elapsed() >= Duration::from_millis(300), "{:?}", again.elapsed());
    assert_eq!(expired.status, CheckStatus::Critical);

    // A shorter TTL takes effect at once (a new runner, not the old deadline).
    sched.add("ttl", ttl(10_000));
    let again = Instant::now();
    sched.add("ttl", ttl(100));
    let expired = next_result(&mut rx, Duration::from_millis(1000)).await;
    assert_eq!(expired.status, CheckStatus::Critical, "expired {:?} after the re-registration", again.elapsed());
}

#[tokio::test]
async fn ttl_update_errors_and_truncation() {
    let (sched, mut rx) = scheduler(16, 64);
    assert!(matches!(
        sched.ttl_update("nope", CheckStatus::Passing, ""),
        Err(CheckError::Unknown { .. })
    ));
    let addr = closed_port().await;
    sched.add(
        "tcp",
        CheckKind::Tcp {
            address: addr.to_string(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
        },
    );
    assert!(matches!(
        sched.ttl_update("tcp", CheckStatus::Passing, ""),
        Err(CheckError::NotTtl { .. })
    ));

    sched.add(
        "ttl",
        CheckKind::Ttl {
            ttl: Duration::from_secs(10),
        },
    );
    sched
        .ttl_update("ttl", CheckStatus::Passing, &"é".repeat(500))
        .unwrap();
    let result = wait_for(
        &mut rx,
        "ttl",
        CheckStatus::Passing,
        Duration::from_millis(100),
    )
    .await;
    assert!(result.output.len() <= 64, "{}", result.output);
    assert!(
        result.output.starts_with('é') && result.output.ends_with(" of 1000 bytes)"),
        "{}",
        result.output
    );
    sched.remove("ttl");
    assert!(matches!(
        sched.ttl_update("ttl", CheckStatus::Passing, ""),
        Err(CheckError::Unknown { .. })
    ));
}

#[tokio::test]
async fn remove_stops_results() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (sched, mut rx) = scheduler(16, 4096);
    sched.add(
        "gone",
        CheckKind::Tcp {
            address: listener.local_addr().unwrap().to_string(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
        },
    );
    wait_for(
        &mut rx,
        "gone",
        CheckStatus::Passing,
        Duration::from_millis(1500),
    )
    .await;
    sched.remove("gone");
    while rx.try_recv().is_ok() {}
    assert!(
        tokio::time::timeout(Duration::from_millis(1400), rx.recv())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn add_replaces_existing_runner() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed = closed_port().await;
    let (sched, mut rx) = scheduler(16, 4096);
    let tcp = |address: String| CheckKind::Tcp {
        address,
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
    };
    sched.add("svc", tcp(closed.to_string()));
    wait_for(
        &mut rx,
        "svc",
        CheckStatus::Critical,
        Duration::from_millis(1500),
    )
    .await;
    sched.add("svc", tcp(listener.local_addr().unwrap().to_string()));
    wait_for(
        &mut rx,
        "svc",
        CheckStatus::Passing,
        Duration::from_millis(1500),
    )
    .await;
    // Only the new runner reports from now on.
    let next = next_result(&mut rx, Duration::from_millis(1500)).await;
    assert_eq!(next.status, CheckStatus::Passing);
}

#[tokio::test]
async fn full_channel_drops_and_counts() {
    let (sched, mut rx) = scheduler(1, 4096);
    sched.add(
        "ttl",
        CheckKind::Ttl {
            ttl: Duration::from_secs(10),
        },
    );
    sched
        .ttl_update("ttl", CheckStatus::Passing, "one")
        .unwrap();
    sched
        .ttl_update("ttl", CheckStatus::Warning, "two")
        .unwrap();
    assert_eq!(sched.dropped_results(), 1);
    assert_eq!(rx.recv().await.unwrap().output, "one");
}

#[tokio::test]
async fn shutdown_stops_everything() {
    let (sched, mut rx) = scheduler(16, 4096);
    sched.add(
        "a",
        CheckKind::Ttl {
            ttl: Duration::from_millis(50),
        },
    );
    sched.add(
        "b",
        script_checks::script(&["/bin/true"], Duration::from_secs(1)),
    );
    sched.shutdown();
    assert!(
        tokio::time::timeout(Duration::from_millis(400), rx.recv())
            .await
            .is_err()
    );
    assert!(matches!(
        sched.ttl_update("a", CheckStatus::Passing, ""),
        Err(CheckError::Unknown { .. })
    ));
}

#[test]
fn go_duration_matches_go_formatting() {
    let cases = [
        (Duration::from_millis(200), "200ms"),
        (Duration::from_secs(30), "30s"),
        (Duration::from_millis(1500), "1.5s"),
        (Duration::from_secs(90), "1m30s"),
        (Duration::from_secs(3600), "1h0m0s"),
        (Duration::from_micros(1500), "1.5ms"),
        (Duration::ZERO, "0s"),
    ];
    for (duration, text) in cases {
        assert_eq!(go_duration(duration), text);
    }
}
