//! `cairn watch -type=key|keyprefix|services|nodes|service|checks|event [handler ...]`: runs a
//! blocking query in a loop and, on every change, prints the result as one line of JSON to
//! stdout or feeds it to the handler's stdin (run through `sh -c`, as Consul does).
//!
//! The index never goes to 0; when the server's index goes backwards (a snapshot restore) the
//! watch starts over, as Consul's documentation asks of clients. Errors back off from 1 s to
//! `WATCH_BACKOFF_MS_MAX`.
//!
//! `-type=event [-name=...]` follows Consul's `eventWatch` (`api/watch/funcs.go`): the event
//! list's index is derived from the last event's ID and is not monotonic, so only equality
//! means "no change", and each result after the first is pruned to the events after the one
//! whose ID gave the previous index.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use clap::Parser;

use crate::cli::client::{self, HttpFlags, Param};
use crate::cli::{Fail, Io, fail, parse};

/// Each blocking request waits at most this long (under the client's request timeout).
const WATCH_WAIT_S: u64 = 25;
const WATCH_BACKOFF_MS_MAX: u64 = 10_000;

#[derive(Parser, Debug)]
#[command(name = "cairn watch", disable_version_flag = true)]
pub(super) struct WatchArgs {
    /// key, keyprefix, services, nodes, service, checks or event.
    #[arg(long = "type")]
    watch_type: String,
    #[arg(long)]
    key: Option<String>,
    #[arg(long)]
    prefix: Option<String>,
    #[arg(long)]
    service: Option<String>,
    #[arg(long)]
    tag: Option<String>,
    /// With -type=service: only instances whose checks all pass.
    #[arg(long)]
    passing: bool,
    /// With -type=checks: only checks in this state.
    #[arg(long)]
    state: Option<String>,
    /// With -type=event: only events of this name.
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    http: HttpFlags,
    /// A command to run on each change, with the JSON on its stdin.
    handler: Vec<String>,
}

fn target(a: &WatchArgs) -> Result<(String, Vec<Param<'static>>), Fail> {
    let need = |value: &Option<String>, flag: &str| value.clone().ok_or_else(|| Fail::Msg(format!("Error! -{flag} is required for -type={}", a.watch_type)));
    Ok(match a.watch_type.as_str() {
        "key" => (format!("/v1/kv/{}", client::encode(&need(&a.key, "key")?, true)), Vec::new()),
        "keyprefix" => (format!("/v1/kv/{}", client::encode(&need(&a.prefix, "prefix")?, true)), vec![("recurse", None)]),
        "services" => ("/v1/catalog/services".to_owned(), Vec::new()),
        "nodes" => ("/v1/catalog/nodes".to_owned(), Vec::new()),
        "service" => {
            let mut params: Vec<Param<'static>> = Vec::new();
            if let Some(tag) = &a.tag {
                params.push(("tag", Some(tag.clone())));
            }
            if a.passing {
                params.push(("passing", None));
            }
            (format!("/v1/health/service/{}", client::encode(&need(&a.service, "service")?, false)), params)
        }
        "checks" => match (&a.service, &a.state) {
            (Some(service), _) => (format!("/v1/health/checks/{}", client::encode(service, false)), Vec::new()),
            (None, state) => (format!("/v1/health/state/{}", state.clone().unwrap_or_else(|| "any".to_owned())), Vec::new()),
        },
        "event" => ("/v1/event/list".to_owned(), a.name.iter().map(|name| ("name", Some(name.clone()))).collect()),
        other => return fail(format!("Error! Unsupported watch type: {other:?}")),
    })
}

pub(crate) fn watch(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: WatchArgs = parse("cairn watch", args)?;
    let (path, base_params) = target(&a)?;
    let c = client::connect(&a.http, io.env)?;
    let events = a.watch_type == "event";
    let mut index: u64 = 0;
    let mut backoff_ms: u64 = 0;
    loop {
        if backoff_ms > 0 {
            std::thread::sleep(Duration::from_millis(backoff_ms));
        }
        let mut params = base_params.clone();
        if index > 0 {
            params.push(("index", Some(index.to_string())));
            params.push(("wait", Some(format!("{WATCH_WAIT_S}s"))));
        }
        let reply = match c.get(&path, &params) {
            Ok(reply) if reply.status == 200 || reply.status == 404 => reply,
            Ok(reply) => {
                io.note(format_args!("Error! Unexpected response code: {} ({})", reply.status, String::from_utf8_lossy(&reply.body)));
                backoff_ms = (backoff_ms * 2).clamp(1_000, WATCH_BACKOFF_MS_MAX);
                continue;
            }
            Err(error) => {
                io.note(format_args!("Error! {error}"));
                backoff_ms = (backoff_ms * 2).clamp(1_000, WATCH_BACKOFF_MS_MAX);
                continue;
            }
        };
        backoff_ms = 0;
        let new_index = reply.index.unwrap_or(1).max(1);
        if new_index == index {
            continue;
        }
        if new_index < index && !events {
            index = 0;
            continue;
        }
        let previous_index = std::mem::replace(&mut index, new_index);
        let body = if reply.status == 404 { b"null".to_vec() } else { reply.body };
        let mut document: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        if events {
            prune_seen_events(&mut document, previous_index);
        }
        let line = document.to_string();
        if a.handler.is_empty() {
            io.line(&line)?;
        } else {
            run_handler(&a.handler, &line, io);
        }
    }
}

/// Consul's `eventWatch` pruning: drops the events up to the one whose ID gave `previous_index`.
fn prune_seen_events(document: &mut serde_json::Value, previous_index: u64) {
    let Some(events) = document.as_array_mut() else {
        return;
    };
    let seen = events.iter().position(|event| event["ID"].as_str().and_then(event_id_index) == Some(previous_index));
    if let Some(position) = seen {
        events.drain(..=position);
    }
}

/// Consul's `IDToIndex`: the xor of the UUID's two 64-bit halves (the agent computes the same
/// from the ID's bytes; `cli` may not use `agent`). `None` for text that is not a UUID.
fn event_id_index(id: &str) -> Option<u64> {
    let hex: String = id.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 {
        return None;
    }
    let high = u64::from_str_radix(hex.get(..16)?, 16).ok()?;
    let low = u64::from_str_radix(hex.get(16..)?, 16).ok()?;
    Some(high ^ low)
}

fn run_handler(handler: &[String], json: &str, io: &mut Io<'_>) {
    let spawned = Command::new("sh").arg("-c").arg(handler.join(" ")).stdin(Stdio::piped()).spawn();
    match spawned {
        Ok(mut child) => {
            if let Some(mut stdin) = child.stdin.take() {
                let _ = stdin.write_all(json.as_bytes());
                let _ = stdin.write_all(b"\n");
            }
            match child.wait() {
                Ok(status) if !status.success() => io.note(format_args!("Warning! Handler exited with {status}")),
                Ok(_) => {}
                Err(error) => io.note(format_args!("Error! Handler failed: {error}")),
            }
        }
        Err(error) => io.note(format_args!("Error! Cannot run the handler: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_index_as_consuls_id_to_index() {
        assert_eq!(event_id_index("01234567-89ab-4cde-8001-020304050607"), Some(0x0123_4567_89ab_4cde ^ 0x8001_0203_0405_0607));
        assert_eq!(event_id_index("not-a-uuid"), None);
        assert_eq!(event_id_index("zz234567-89ab-4cde-8001-020304050607"), None);
    }

    #[test]
    fn event_results_are_pruned_to_the_events_after_the_previous_index() {
        let first = "00000000-0000-0000-0000-000000000001";
        let second = "00000000-0000-0000-0000-000000000002";
        let list = serde_json::json!([{"ID": first}, {"ID": second}]);
        let mut pruned = list.clone();
        prune_seen_events(&mut pruned, 1);
        assert_eq!(pruned, serde_json::json!([{"ID": second}]));
        let mut unknown = list.clone();
        prune_seen_events(&mut unknown, 77);
        assert_eq!(unknown, list, "an index no event gave keeps the whole list");
    }
}
