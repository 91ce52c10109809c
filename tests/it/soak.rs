//! The soak under fuzzed requests (issue 11), kept from rotting: `cairn-bench --soak` runs a
//! 3-server cluster for a short while under its base load and its HTTP, DNS and server-port
//! fuzzers, and must find nothing (no crash, panic, 5xx, unanswered request, stranger
//! admitted or failed probe). RSS flatness is not judged here: a debug build over half a
//! minute says nothing about it; `.ci/soak` runs the ten-minute release soak that does.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long the fuzzing runs (the cluster's start comes on top).
const SOAK_DURATION_S: u64 = 25;
/// Longest the whole bench may take before the test gives up on it.
const SOAK_TIMEOUT_S: u64 = 240;

#[test]
fn a_short_soak_under_fuzzed_requests_finds_nothing() {
    let seed = std::env::var("CAIRN_SOAK_SEED").unwrap_or_else(|_| rand::random::<u32>().to_string());
    tracing::info!(seed, "running the soak; rerun with CAIRN_SOAK_SEED={seed}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cairn-bench"))
        .args(["--soak", "--duration-s", &SOAK_DURATION_S.to_string(), "--workers", "2", "--no-rss-verdict", "--seed", &seed])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start cairn-bench (it starts the cairn binary next to it)");
    let deadline = Instant::now() + Duration::from_secs(SOAK_TIMEOUT_S);
    while child.try_wait().expect("wait on cairn-bench").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let output = child.wait_with_output().expect("cairn-bench output");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "soak failed (seed {seed}, {}):\n{stdout}\n{stderr}", output.status);
    // The fuzzers really ran on every port, strangers were really refused, probes really ran.
    let result: serde_json::Value = stdout
        .lines()
        .find_map(|line| line.strip_prefix("RESULT "))
        .map(|json| serde_json::from_str(json).expect("RESULT is JSON"))
        .unwrap_or_else(|| panic!("no RESULT line in:\n{stdout}"));
    for counter in ["http.sent", "dns_udp.sent", "dns_tcp.sent", "server_stranger.frames_sent", "server_stranger.frame_refused", "server_member.frames_sent", "probe.kv", "probe.dns", "base.kv_put", "cleanup.passes"] {
        assert!(result["counts"][counter].as_u64().unwrap_or(0) > 0, "no {counter} in:\n{stdout}");
    }
    assert_eq!(result["findings_total"], 0, "{stdout}");
}
