//! `cairn monitor`: streams the agent's log to stdout from now on (`/v1/agent/monitor`), as
//! `consul monitor` does: `-log-level` (default info) and `-log-json`, plus the usual HTTP
//! flags. It runs until interrupted; if the agent ends the stream (it stopped), it says so
//! and exits 1. A monitor too slow for the log reads Consul's "Monitor dropped N logs" line.

use clap::Parser;

use crate::cli::client::{self, ClientError, HttpFlags, Param};
use crate::cli::{Fail, Io, fail, parse};

/// Shows recent log messages of a Cairn agent, and attaches to the agent, outputting log
/// messages as they occur in real time.
#[derive(Parser, Debug)]
#[command(name = "cairn monitor", disable_version_flag = true)]
pub(super) struct MonitorArgs {
    /// Log level of the agent's messages to show: trace, debug, info, warn or err.
    #[arg(long, default_value = "INFO")]
    log_level: String,
    /// Output the log as JSON (Consul's shape).
    #[arg(long)]
    log_json: bool,
    #[command(flatten)]
    http: HttpFlags,
    #[arg(hide = true)]
    args: Vec<String>,
}

pub(crate) fn monitor(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: MonitorArgs = parse("cairn monitor", args)?;
    if !a.args.is_empty() {
        return fail(format!("Too many arguments (expected 0, got {})", a.args.len()));
    }
    let client = client::connect(&a.http, io.env)?;
    let mut params: Vec<Param<'_>> = vec![("loglevel", Some(a.log_level.clone()))];
    if a.log_json {
        params.push(("logjson", None));
    }
    let out = &mut *io.out;
    client.stream_get("/v1/agent/monitor", &params, |bytes| {
        out.write_all(bytes).and_then(|()| out.flush()).map_err(|e| ClientError::Other(format!("Failed to write output: {e}")))
    })?;
    fail("Remote side ended the monitor! This usually means that the\nremote side has exited or crashed.")
}
