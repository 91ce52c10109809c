//! `cairn debug`: Consul's `debug`, a bundle for operators. It records the agent's self
//! description (`agent.json`), the LAN members (`members.json`) and the host (`host.json`)
//! once, the metrics every `-interval` (`<time>/metrics.json`), and the agent's log for
//! `-duration` (`consul.log`, from `/v1/agent/monitor`), then packs the directory into
//! `<output>.tar.gz` with `index.json` at its root. The file names are Consul's, so tools
//! that read Consul's bundles read these.
//!
//! A target that fails (an endpoint this agent does not serve, a refused token) is recorded
//! under `Errors` in `index.json` and on stderr, and the rest is still captured. Consul's
//! minimums (10 s duration, 5 s interval) bound the cost of the Go profiles it takes; cairn
//! takes none (`-capture pprof` is skipped with a warning), so its minimums are 1 s.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Parser;
use serde::Serialize;
use serde_json::Value;

use crate::cli::client::{self, Client, HttpFlags};
use crate::cli::{Fail, Io, fail, parse};

/// Consul's defaults.
const DEBUG_INTERVAL_DEFAULT: &str = "30s";
const DEBUG_DURATION_DEFAULT: &str = "5m";
const DEBUG_DURATION_MIN_MS: u64 = 1_000;
const DEBUG_INTERVAL_MIN_MS: u64 = 1_000;
/// A bundle is for a look at an incident, not a recorder left running.
const DEBUG_DURATION_MAX_MS: u64 = 24 * 3600 * 1000;
/// The most log kept in one bundle.
const DEBUG_LOG_BYTES_MAX: usize = 256 * 1024 * 1024;
/// Consul's `debugProtocolVersion`: the layout of the bundle.
const DEBUG_PROTOCOL_VERSION: u32 = 1;
/// What can be captured, in Consul's words and order (less `pprof`).
const TARGETS: [&str; 5] = ["metrics", "logs", "host", "agent", "members"];

/// Records a debugging archive of the local agent for operators.
#[derive(Parser, Debug)]
#[command(name = "cairn debug", disable_version_flag = true)]
pub(super) struct DebugArgs {
    /// How often metrics are captured (Go duration).
    #[arg(long, default_value = DEBUG_INTERVAL_DEFAULT)]
    interval: String,
    /// How long to capture metrics and logs (Go duration).
    #[arg(long, default_value = DEBUG_DURATION_DEFAULT)]
    duration: String,
    /// The bundle's path, without `.tar.gz` (default: cairn-debug-<UTC time>).
    #[arg(long)]
    output: Option<String>,
    /// What to capture (repeatable): metrics, logs, host, agent, members. Default: all.
    #[arg(long)]
    capture: Vec<String>,
    #[command(flatten)]
    http: HttpFlags,
}

/// `index.json`: Consul's `debugIndex`, plus the targets that failed.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Index {
    version: u32,
    agent_version: String,
    interval: String,
    duration: String,
    targets: Vec<String>,
    errors: Vec<CaptureError>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct CaptureError {
    target: String,
    error: String,
}

pub(crate) fn debug(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: DebugArgs = parse("cairn debug", args)?;
    let (interval, duration) = timing(&a.interval, &a.duration).map_err(|e| Fail::Msg(format!("Capture validation failed: {e}")))?;
    let targets = targets(&a.capture, io)?;
    let c = client::connect(&a.http, io.env)?;
    let agent_self: Value = c.get("/v1/agent/self", &[]).and_then(|reply| reply.json()).map_err(|e| {
        Fail::Msg(format!("Capture validation failed: error querying target agent: {e}. verify connectivity and agent address"))
    })?;
    let version = agent_self["Config"]["Version"].as_str().unwrap_or_default().to_owned();
    let output = PathBuf::from(a.output.unwrap_or_else(|| format!("cairn-debug-{}", timestamp())));
    let archive = PathBuf::from(format!("{}.tar.gz", output.display()));
    if output.exists() || archive.exists() {
        return fail(format!("Capture validation failed: output directory already exists: {}", output.display()));
    }
    std::fs::create_dir_all(&output).map_err(|e| Fail::Msg(format!("Capture validation failed: could not create output directory: {e}")))?;
    io.note("==> Starting debugger and capturing static information...");
    io.note(format_args!("     Agent Version: '{version}'"));
    io.note(format_args!("          Interval: '{}'", a.interval));
    io.note(format_args!("          Duration: '{}'", a.duration));
    io.note(format_args!("            Output: '{}'", archive.display()));
    io.note(format_args!("           Capture: '{}'", targets.join(", ")));
    let wanted = |target: &str| targets.iter().any(|t| t == target);
    let mut errors = Vec::new();
    for (target, path) in [("host", "/v1/agent/host"), ("agent", "/v1/agent/self"), ("members", "/v1/agent/members")] {
        if wanted(target) {
            let captured = c.get(path, &[]).and_then(|reply| reply.json::<Value>()).map_err(|e| e.to_string());
            record(&mut errors, target, captured.and_then(|json| write_json(&output.join(format!("{target}.json")), &json)));
        }
    }
    let log_client = if wanted("logs") { Some(client::connect(&a.http, io.env)?) } else { None };
    std::thread::scope(|scope| {
        let logs = log_client.map(|log_client| scope.spawn(|| capture_logs(log_client, &output, duration)));
        if wanted("metrics") {
            capture_metrics(&c, &output, interval, duration, &mut errors, io);
        }
        if let Some(logs) = logs {
            let captured = logs.join().unwrap_or_else(|_| Err("the log capture panicked".to_owned()));
            record(&mut errors, "logs", captured);
        }
    });
    for error in &errors {
        io.note(format_args!("==> Capture of {} failed: {}", error.target, error.error));
    }
    let index = Index { version: DEBUG_PROTOCOL_VERSION, agent_version: version, interval: a.interval, duration: a.duration, targets, errors };
    let index = serde_json::to_value(&index).map_err(|e| Fail::Msg(format!("Error creating index document: {e}")))?;
    write_json(&output.join("index.json"), &index).map_err(|e| Fail::Msg(format!("Error creating index document: {e}")))?;
    pack(&output, &archive).map_err(|e| Fail::Msg(format!("Archive creation failed: {e}")))?;
    io.note(format_args!("    Saved debug archive: {}", archive.display()));
    Ok(())
}

/// The interval and duration, checked as Consul's `prepare` checks them.
fn timing(interval: &str, duration: &str) -> Result<(Duration, Duration), String> {
    let parse = |flag: &str, text: &str| crate::config::parse_go_duration(text).map_err(|e| format!("invalid -{flag}: {e}"));
    let (interval, duration) = (parse("interval", interval)?, parse("duration", duration)?);
    if duration < Duration::from_millis(DEBUG_DURATION_MIN_MS) || duration > Duration::from_millis(DEBUG_DURATION_MAX_MS) {
        return Err(format!("duration must be between {DEBUG_DURATION_MIN_MS} ms and {DEBUG_DURATION_MAX_MS} ms"));
    }
    if interval < Duration::from_millis(DEBUG_INTERVAL_MIN_MS) {
        return Err(format!("interval must be at least {DEBUG_INTERVAL_MIN_MS} ms"));
    }
    if duration < interval {
        return Err(format!("duration ({duration:?}) must be longer than interval ({interval:?})"));
    }
    Ok((interval, duration))
}

/// The targets asked for (all by default); Consul's `cluster` is `members`.
fn targets(asked: &[String], io: &mut Io<'_>) -> Result<Vec<String>, Fail> {
    if asked.is_empty() {
        return Ok(TARGETS.iter().map(|t| (*t).to_owned()).collect());
    }
    let mut targets = Vec::new();
    for target in asked {
        let target = if target == "cluster" { "members" } else { target.as_str() };
        if target == "pprof" {
            io.note("==> [WARN] Unable to capture pprof: cairn has no Go profiles; skipped.");
        } else if !TARGETS.contains(&target) {
            return fail(format!("Capture validation failed: target not found: {target}"));
        } else if !targets.iter().any(|t| t == target) {
            targets.push(target.to_owned());
        }
    }
    Ok(targets)
}

/// `/v1/agent/metrics` at every interval until `duration` has passed, each in a directory
/// named by its time.
fn capture_metrics(c: &Client, output: &Path, interval: Duration, duration: Duration, errors: &mut Vec<CaptureError>, io: &mut Io<'_>) {
    let started = Instant::now();
    let mut round = 0u32;
    loop {
        let dir = output.join(timestamp());
        let captured = std::fs::create_dir_all(&dir).map_err(|e| e.to_string()).and_then(|()| {
            let metrics = c.get("/v1/agent/metrics", &[]).and_then(|reply| reply.json::<Value>()).map_err(|e| e.to_string())?;
            write_json(&dir.join("metrics.json"), &metrics)
        });
        if captured.is_ok() {
            io.note(format_args!("==> Capture successful {} ({round})", timestamp()));
        }
        record(errors, "metrics", captured);
        round += 1;
        let next = interval * round;
        if next >= duration {
            break;
        }
        std::thread::sleep(next.saturating_sub(started.elapsed()));
    }
}

/// The agent's log at trace level for `duration`, into `consul.log`.
fn capture_logs(c: Client, output: &Path, duration: Duration) -> Result<(), String> {
    let mut file = std::fs::File::create(output.join("consul.log")).map_err(|e| e.to_string())?;
    let params = [("loglevel", Some("trace".to_owned()))];
    c.get_streamed("/v1/agent/monitor", &params, duration, DEBUG_LOG_BYTES_MAX, &mut file).map(drop).map_err(|e| e.to_string())
}

/// Keeps the first failure of each target.
fn record(errors: &mut Vec<CaptureError>, target: &str, result: Result<(), String>) {
    if let Err(error) = result
        && !errors.iter().any(|e| e.target == target)
    {
        errors.push(CaptureError { target: target.to_owned(), error });
    }
}

fn write_json(path: &Path, json: &Value) -> Result<(), String> {
    let text = serde_json::to_string_pretty(json).map_err(|e| e.to_string())?;
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Packs `dir` as `archive` (entries under the directory's own name), written to a temporary
/// file and renamed into place, then removes `dir`, as Consul's `createArchive`.
fn pack(dir: &Path, archive: &Path) -> std::io::Result<()> {
    let name = dir.file_name().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("cairn-debug"));
    let partial = PathBuf::from(format!("{}.tmp", archive.display()));
    let file = std::fs::File::create(&partial)?;
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(file, flate2::Compression::default()));
    let packed = builder.append_dir_all(&name, dir).and_then(|()| builder.into_inner()).and_then(|gzip| gzip.finish()).and_then(|file| file.sync_all());
    if let Err(error) = packed {
        let _ = std::fs::remove_file(&partial);
        return Err(error);
    }
    std::fs::rename(&partial, archive)?;
    std::fs::remove_dir_all(dir)
}

/// Now in UTC as Consul's `timeDateFormat` (RFC 3339 with `-` for `:`, so tar takes it).
fn timestamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!("{:04}-{:02}-{:02}T{:02}-{:02}-{:02}Z", now.year(), u8::from(now.month()), now.day(), now.hour(), now.minute(), now.second())
}
