//! `cairn kv history KEY` and `cairn kv rollback KEY INDEX`: the KV history extension.
//!
//! Each key keeps its last `kv_history_versions` versions (`GET /v1/kv/<key>?history`,
//! newest first). `rollback` writes an old version's value and flags back as a check-and-set
//! against the key's current `ModifyIndex` (0 when the key is deleted), so a rollback never
//! overwrites a change it has not seen: it fails instead, and can be retried.

use clap::Parser;

use crate::cli::client::{self, HttpFlags};
use crate::cli::kv::{KvPair, kv_path};
use crate::cli::{Fail, Io, fail, parse};

/// Longest value shown in the history table; longer ones are cut with `...`.
const VALUE_SHOWN_CHARS_MAX: usize = 40;

/// Lists the versions the KV store keeps of a key.
#[derive(Parser, Debug)]
#[command(name = "cairn kv history", disable_version_flag = true)]
pub(super) struct HistoryArgs {
    #[command(flatten)]
    http: HttpFlags,
    /// The key.
    key: String,
}

/// Restores an earlier version of a key (a check-and-set write).
#[derive(Parser, Debug)]
#[command(name = "cairn kv rollback", disable_version_flag = true)]
pub(super) struct RollbackArgs {
    #[command(flatten)]
    http: HttpFlags,
    /// The key.
    key: String,
    /// The ModifyIndex of the version to restore, as `cairn kv history` lists it.
    index: u64,
}

fn versions(c: &client::Client, key: &str) -> Result<Vec<KvPair>, Fail> {
    let reply = c.get(&kv_path(key), &[("history", None)])?;
    if reply.status == 404 {
        return fail(format!("Error! No history exists for: {key}"));
    }
    Ok(reply.json()?)
}

pub(crate) fn history(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: HistoryArgs = parse("cairn kv history", args)?;
    let key = a.key.trim_start_matches('/').to_string();
    let c = client::connect(&a.http, io.env)?;
    let versions = versions(&c, &key)?;
    io.line(format!("{:<14}{:<8}{:<38}{}", "ModifyIndex", "Flags", "Session", "Value"))?;
    for version in &versions {
        let value = String::from_utf8_lossy(&version.bytes()?).into_owned();
        let value = match value.char_indices().nth(VALUE_SHOWN_CHARS_MAX) {
            Some((cut, _)) => format!("{}...", &value[..cut]),
            None => value,
        };
        let session = version.session.as_deref().unwrap_or("-");
        io.line(format!("{:<14}{:<8}{:<38}{}", version.modify_index, version.flags, session, value.escape_debug()))?;
    }
    Ok(())
}

pub(crate) fn rollback(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: RollbackArgs = parse("cairn kv rollback", args)?;
    let key = a.key.trim_start_matches('/').to_string();
    let c = client::connect(&a.http, io.env)?;
    let versions = versions(&c, &key)?;
    let Some(target) = versions.iter().find(|v| v.modify_index == a.index) else {
        let kept: Vec<String> = versions.iter().map(|v| v.modify_index.to_string()).collect();
        return fail(format!("Error! {key} has no version at index {}; kept: {}", a.index, kept.join(", ")));
    };
    // The live version, if the key exists, is listed first with the current ModifyIndex.
    let live = c.get(&kv_path(&key), &[])?;
    let current = if live.status == 404 { 0 } else { live.json::<Vec<KvPair>>()?.first().map_or(0, |p| p.modify_index) };
    if current == a.index {
        io.note(format_args!("{key} is already at index {}", a.index));
        return Ok(());
    }
    let params = [("cas", Some(current.to_string())), ("flags", Some(target.flags.to_string()))];
    let written = c.put(&kv_path(&key), &params, target.bytes()?)?.ok()?;
    if written.as_slice().trim_ascii() != b"true" {
        return fail(format!("Error! {key} changed during the rollback (CAS at index {current} failed); run it again"));
    }
    io.note(format_args!("Success! Rolled back {key} to the version of index {}", a.index));
    Ok(())
}
