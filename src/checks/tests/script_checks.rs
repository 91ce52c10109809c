//! Script check tests with real child processes.

use std::time::Duration;

use tokio::time::Instant;

use super::{first_results, next_result, scheduler, wait_for};
use crate::checks::{CheckKind, CheckStatus};

pub(super) fn script(args: &[&str], timeout: Duration) -> CheckKind {
    CheckKind::Script {
        args: args.iter().map(|a| a.to_string()).collect(),
        interval: Duration::from_secs(1),
        timeout,
    }
}

#[tokio::test]
async fn script_exit_codes_map_to_status() {
    let (sched, mut rx) = scheduler(16, 4096);
    let timeout = Duration::from_secs(3);
    sched.add("true", script(&["/bin/true"], timeout));
    sched.add("false", script(&["/bin/false"], timeout));
    sched.add("exit1", script(&["sh", "-c", "exit 1"], timeout));
    sched.add(
        "exit2",
        script(&["sh", "-c", "echo out; echo err >&2; exit 2"], timeout),
    );
    sched.add("missing", script(&["/nonexistent/check-script"], timeout));
    let ids = ["true", "false", "exit1", "exit2", "missing"];
    let results = first_results(&mut rx, &ids, Duration::from_millis(1500)).await;
    let statuses: Vec<CheckStatus> = ids.iter().map(|id| results[*id].status).collect();
    use CheckStatus::{Critical, Passing, Warning};
    assert_eq!(statuses, [Passing, Warning, Warning, Critical, Critical]);
    assert_eq!(results["exit2"].output, "out\nerr\n");
    assert!(
        results["missing"].output.contains("No such file"),
        "{}",
        results["missing"].output
    );
}

/// Children of this process whose command name is `name` (zombies included).
fn children_named(name: &str) -> Vec<String> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((head, tail)) = stat.rsplit_once(") ") else {
            continue;
        };
        let comm = head.split_once(" (").map(|(_, comm)| comm).unwrap_or("");
        let ppid = tail.split(' ').nth(1).unwrap_or("");
        if comm == name && ppid == me {
            found.push(stat);
        }
    }
    found
}

#[tokio::test]
async fn script_timeout_kills_and_reaps_child() {
    let (sched, mut rx) = scheduler(16, 4096);
    let started = Instant::now();
    sched.add("slow", script(&["sleep", "5"], Duration::from_millis(200)));
    let result = next_result(&mut rx, Duration::from_millis(1500)).await;
    assert_eq!(
        (result.status, result.output.as_str()),
        (CheckStatus::Critical, "Timed out (200ms) running check")
    );
    assert!(started.elapsed() < Duration::from_millis(1000));
    assert!(
        children_named("sleep").is_empty(),
        "{:?}",
        children_named("sleep")
    );
    sched.remove("slow");
}

#[tokio::test]
async fn script_output_keeps_tail_within_limit() {
    let (sched, mut rx) = scheduler(16, 256);
    sched.add(
        "loud",
        script(
            &[
                "sh",
                "-c",
                "i=0; while [ $i -lt 1000 ]; do echo line$i; i=$((i+1)); done",
            ],
            Duration::from_secs(3),
        ),
    );
    let result = wait_for(
        &mut rx,
        "loud",
        CheckStatus::Passing,
        Duration::from_millis(2000),
    )
    .await;
    assert!(result.output.len() <= 256, "{}", result.output.len());
    assert!(
        result.output.starts_with("Captured ") && result.output.contains(" of 7890 bytes\n...\n"),
        "{}",
        result.output
    );
    assert!(result.output.ends_with("line999\n"), "{}", result.output);
}
