//! `cairn operator autopilot get-config|set-config|state`: Consul's verbs, flags and output
//! over `/v1/operator/autopilot/*`.
//!
//! `set-config` reads the configuration, changes what its flags name and writes it back with
//! a check-and-set on the `ModifyIndex` it read, as Consul's does, so a concurrent change is
//! never lost ("could not be atomically updated"). A setting the agent keeps but does not act
//! on comes back in a `Warning` header, printed to stderr.

use std::fmt::Write as _;

use clap::Parser;
use serde_json::{Value, json};

use crate::cli::client::{self, HttpFlags, Reply};
use crate::cli::{Fail, Io, fail, parse, parse_go_bool};
use crate::config::parse_go_duration;

#[derive(Parser, Debug)]
#[command(name = "cairn operator autopilot get-config", disable_version_flag = true)]
pub(super) struct GetArgs {
    #[command(flatten)]
    http: HttpFlags,
}

/// The flags of `set-config` other than its two booleans, which [`take_go_bool`] reads first
/// (Consul's `BoolValue`: `-flag`, `-flag=true|false`, or left unset).
#[derive(Parser, Debug)]
#[command(name = "cairn operator autopilot set-config", disable_version_flag = true)]
pub(super) struct SetArgs {
    /// Entries a server may trail the leader by and still be healthy.
    #[arg(long)]
    max_trailing_logs: Option<u64>,
    /// Servers the cluster keeps before autopilot may prune dead ones (cairn prunes none).
    #[arg(long)]
    min_quorum: Option<u64>,
    /// Longest time without leader contact for a healthy server, such as `200ms`.
    #[arg(long)]
    last_contact_threshold: Option<String>,
    /// How long a new server must stay healthy before it votes, such as `10s`.
    #[arg(long)]
    server_stabilization_time: Option<String>,
    /// (Consul Enterprise; refused by cairn) the node-meta tag naming a server's zone.
    #[arg(long)]
    redundancy_zone_tag: Option<String>,
    /// (Consul Enterprise; refused by cairn) the node-meta tag holding a server's version.
    #[arg(long)]
    upgrade_version_tag: Option<String>,
    #[command(flatten)]
    http: HttpFlags,
}

#[derive(Parser, Debug)]
#[command(name = "cairn operator autopilot state", disable_version_flag = true)]
pub(super) struct StateArgs {
    /// Output format: pretty or json.
    #[arg(long, default_value = "pretty")]
    format: String,
    #[command(flatten)]
    http: HttpFlags,
}

const CONFIG_PATH: &str = "/v1/operator/autopilot/configuration";

fn print_warning(io: &mut Io<'_>, reply: &Reply) {
    if let Some(warning) = &reply.warning {
        io.note(format_args!("Warning: {warning}"));
    }
}

pub(crate) fn get_config(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: GetArgs = parse("cairn operator autopilot get-config", args)?;
    let c = client::connect(&a.http, io.env)?;
    let reply = c.get(CONFIG_PATH, &[]).map_err(|e| Fail::Msg(format!("Error querying Autopilot configuration: {e}")))?;
    print_warning(io, &reply);
    let config: Value = reply.json().map_err(|e| Fail::Msg(format!("Error querying Autopilot configuration: {e}")))?;
    let text = |name: &str| config.get(name).map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)).unwrap_or_default();
    let quoted = |name: &str| config.get(name).map(Value::to_string).unwrap_or_else(|| "\"\"".to_owned());
    let mut out = String::new();
    for name in ["CleanupDeadServers", "LastContactThreshold", "MaxTrailingLogs", "MinQuorum", "ServerStabilizationTime"] {
        let _ = writeln!(out, "{name} = {}", text(name));
    }
    let _ = writeln!(out, "RedundancyZoneTag = {}", quoted("RedundancyZoneTag"));
    let _ = writeln!(out, "DisableUpgradeMigration = {}", text("DisableUpgradeMigration"));
    let _ = write!(out, "UpgradeVersionTag = {}", quoted("UpgradeVersionTag"));
    io.line(out)
}

/// Removes `-name`, `-name=value` (and the `--` spellings) from `args`: `Some(value)` if given.
fn take_go_bool(args: &mut Vec<String>, name: &str) -> Result<Option<bool>, Fail> {
    let mut found = None;
    let mut kept = Vec::with_capacity(args.len());
    for arg in args.drain(..) {
        let body = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')).unwrap_or("");
        let (flag, value) = body.split_once('=').map_or((body, None), |(flag, value)| (flag, Some(value)));
        if flag != name {
            kept.push(arg);
            continue;
        }
        match parse_go_bool(value.unwrap_or("true")) {
            Some(parsed) => found = Some(parsed),
            None => return fail(format!("Failed to parse args: invalid boolean value {:?} for -{name}", value.unwrap_or_default())),
        }
    }
    *args = kept;
    Ok(found)
}

/// A duration flag's text, once it reads as a Go duration (the agent parses it again).
fn duration_text(flag: &str, text: &str) -> Result<String, Fail> {
    match parse_go_duration(text) {
        Ok(_) => Ok(text.to_owned()),
        Err(e) => fail(format!("Failed to parse args: invalid value {text:?} for -{flag}: {e}")),
    }
}

pub(crate) fn set_config(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let mut args = args.to_vec();
    let cleanup = take_go_bool(&mut args, "cleanup-dead-servers")?;
    let disable_migration = take_go_bool(&mut args, "disable-upgrade-migration")?;
    let a: SetArgs = parse("cairn operator autopilot set-config", &args)?;
    let c = client::connect(&a.http, io.env)?;
    let mut config: Value =
        c.get(CONFIG_PATH, &[]).and_then(Reply::json).map_err(|e| Fail::Msg(format!("Error querying Autopilot configuration: {e}")))?;
    let mut set = |name: &str, value: Value| {
        if let Some(object) = config.as_object_mut() {
            object.insert(name.to_owned(), value);
        }
    };
    if let Some(value) = cleanup {
        set("CleanupDeadServers", json!(value));
    }
    if let Some(value) = disable_migration {
        set("DisableUpgradeMigration", json!(value));
    }
    if let Some(value) = a.max_trailing_logs {
        set("MaxTrailingLogs", json!(value));
    }
    if let Some(value) = a.min_quorum {
        set("MinQuorum", json!(value));
    }
    if let Some(text) = &a.last_contact_threshold {
        set("LastContactThreshold", json!(duration_text("last-contact-threshold", text)?));
    }
    if let Some(text) = &a.server_stabilization_time {
        set("ServerStabilizationTime", json!(duration_text("server-stabilization-time", text)?));
    }
    if let Some(value) = a.redundancy_zone_tag {
        set("RedundancyZoneTag", json!(value));
    }
    if let Some(value) = a.upgrade_version_tag {
        set("UpgradeVersionTag", json!(value));
    }
    let modify_index = config.get("ModifyIndex").and_then(Value::as_u64).unwrap_or(0);
    let body = serde_json::to_vec(&config).expect("a JSON value serializes");
    let reply = c
        .put(CONFIG_PATH, &[("cas", Some(modify_index.to_string()))], body)
        .and_then(|reply| {
            print_warning(io, &reply);
            reply.ok()
        })
        .map_err(|e| Fail::Msg(format!("Error setting Autopilot configuration: {e}")))?;
    if String::from_utf8_lossy(&reply).contains("true") {
        return io.line("Configuration updated!");
    }
    io.line("Configuration could not be atomically updated, please try again")?;
    Err(Fail::Exit(1))
}

pub(crate) fn state(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: StateArgs = parse("cairn operator autopilot state", args)?;
    if a.format != "pretty" && a.format != "json" {
        return fail(format!("Error formatting the autopilot state: Unknown format: {}", a.format));
    }
    let c = client::connect(&a.http, io.env)?;
    let state: Value = c
        .get("/v1/operator/autopilot/state", &[])
        .and_then(Reply::json)
        .map_err(|e| Fail::Msg(format!("Error querying Autopilot state: {e}")))?;
    if a.format == "json" {
        let mut out = Vec::new();
        let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
        serde::Serialize::serialize(&state, &mut serializer).expect("a JSON value serializes");
        return io.line(String::from_utf8_lossy(&out));
    }
    io.line(pretty_state(&state).trim_end())
}

fn field(value: &Value, name: &str) -> String {
    value.get(name).map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)).unwrap_or_default()
}

/// Consul's pretty state: the cluster, its voters, then each server by ID.
fn pretty_state(state: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Healthy:                      {}", field(state, "Healthy"));
    let _ = writeln!(out, "Failure Tolerance:            {}", field(state, "FailureTolerance"));
    let _ = writeln!(out, "Optimistic Failure Tolerance: {}", field(state, "OptimisticFailureTolerance"));
    let _ = writeln!(out, "Leader:                       {}", field(state, "Leader"));
    out.push_str("Voters:\n");
    for voter in state.get("Voters").and_then(Value::as_array).into_iter().flatten() {
        let _ = writeln!(out, "   {}", voter.as_str().unwrap_or_default());
    }
    out.push_str("Servers:\n");
    // A JSON object's keys come sorted, as Consul sorts the servers.
    for (id, server) in state.get("Servers").and_then(Value::as_object).into_iter().flatten() {
        let _ = writeln!(out, "   {id}");
        for (label, name) in [
            ("Name:           ", "Name"),
            ("Address:        ", "Address"),
            ("Version:        ", "Version"),
            ("Status:         ", "Status"),
            ("Node Type:      ", "NodeType"),
            ("Node Status:    ", "NodeStatus"),
            ("Healthy:        ", "Healthy"),
            ("Last Contact:   ", "LastContact"),
            ("Last Term:      ", "LastTerm"),
            ("Last Index:     ", "LastIndex"),
        ] {
            let _ = writeln!(out, "      {label} {}", field(server, name));
        }
        if let Some(meta) = server.get("Meta").and_then(Value::as_object).filter(|m| !m.is_empty()) {
            out.push_str("      Meta\n");
            for (key, value) in meta {
                let _ = writeln!(out, "         {}: {}", Value::String(key.clone()), value);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_are_taken_as_go_reads_them() {
        let mut args: Vec<String> = ["-cleanup-dead-servers=false", "-max-trailing-logs", "5", "--disable-upgrade-migration"].map(String::from).to_vec();
        assert_eq!(take_go_bool(&mut args, "cleanup-dead-servers").ok(), Some(Some(false)));
        assert_eq!(take_go_bool(&mut args, "disable-upgrade-migration").ok(), Some(Some(true)));
        assert_eq!(take_go_bool(&mut args, "absent").ok(), Some(None));
        assert_eq!(args, ["-max-trailing-logs", "5"]);
        assert!(take_go_bool(&mut vec!["-cleanup-dead-servers=maybe".into()], "cleanup-dead-servers").is_err());
    }

    #[test]
    fn the_state_reads_like_consuls() {
        let state = json!({
            "Healthy": true, "FailureTolerance": 0, "OptimisticFailureTolerance": 0, "Leader": "a", "Voters": ["a"],
            "Servers": {"a": {"Name": "node1", "Address": "10.0.0.1:8300", "Version": "1.22.0", "Status": "leader", "NodeType": "voter",
                "NodeStatus": "alive", "Healthy": true, "LastContact": "0s", "LastTerm": 3, "LastIndex": 42, "Meta": {"foo": "bar"}}}
        });
        let text = pretty_state(&state);
        assert!(text.starts_with("Healthy:                      true\nFailure Tolerance:            0\n"), "{text}");
        assert!(text.contains("Voters:\n   a\nServers:\n   a\n      Name:            node1\n"), "{text}");
        assert!(text.contains("      Last Index:      42\n      Meta\n         \"foo\": \"bar\"\n"), "{text}");
    }
}
