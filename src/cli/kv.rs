//! `cairn kv get|put|delete`: Consul's `consul kv` verbs over `/v1/kv/<key>`.
//!
//! Behaviour and messages follow Consul's command implementations (so scripts
//! keep working), except that success notes go to stderr: only data (values,
//! key lists) is written to stdout. Like Consul's `kv get`/`kv delete`, a
//! leading `/` on a key is stripped; `kv put` does the same so the three agree.

use std::io::Read;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use clap::Parser;
use serde::Deserialize;

use crate::cli::client::{self, HttpFlags, Param};
use crate::cli::{Fail, Io, fail, parse};

/// One entry of a `GET /v1/kv/...` answer. `Value` is base64 or null.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct KvPair {
    pub(crate) key: String,
    #[serde(default)]
    pub(crate) value: Option<String>,
    #[serde(default)]
    pub(crate) flags: u64,
    #[serde(default)]
    pub(crate) create_index: u64,
    #[serde(default)]
    pub(crate) modify_index: u64,
    #[serde(default)]
    pub(crate) lock_index: u64,
    #[serde(default)]
    pub(crate) session: Option<String>,
}

impl KvPair {
    /// The decoded value; an undecodable value is an agent bug worth reporting.
    pub(crate) fn bytes(&self) -> Result<Vec<u8>, Fail> {
        match &self.value {
            None => Ok(Vec::new()),
            Some(v) => B64.decode(v).map_err(|e| {
                Fail::Msg(format!(
                    "Error! Agent returned a bad value for {}: {e}",
                    self.key
                ))
            }),
        }
    }
}

/// Retrieves or lists data from the KV store.
#[derive(Parser, Debug)]
#[command(name = "cairn kv get", disable_version_flag = true)]
pub(super) struct GetArgs {
    /// Base64 encode the value.
    #[arg(long)]
    base64: bool,
    /// Show metadata (ModifyIndex, Flags, ...) in addition to the value.
    #[arg(long)]
    detailed: bool,
    /// List keys with the given prefix, but not their values.
    #[arg(long)]
    keys: bool,
    /// Look at all keys prefixed with the given path.
    #[arg(long)]
    recurse: bool,
    /// Separator between keys; only used with -keys.
    #[arg(long, default_value = "/")]
    separator: String,
    #[command(flatten)]
    http: HttpFlags,
    /// Key to read; a prefix with -recurse or -keys (default: the root).
    #[arg(value_name = "KEY_OR_PREFIX")]
    args: Vec<String>,
}

/// Sets or updates data in the KV store.
#[derive(Parser, Debug)]
#[command(name = "cairn kv put", disable_version_flag = true)]
pub(super) struct PutArgs {
    /// Perform a Check-And-Set operation; requires -modify-index.
    #[arg(long)]
    cas: bool,
    /// Unsigned integer stored with the key, not read by the agent.
    #[arg(long, default_value_t = 0)]
    flags: u64,
    /// Treat the data as base64 encoded.
    #[arg(long)]
    base64: bool,
    /// ModifyIndex the key must have for -cas (0 = only if absent).
    #[arg(long)]
    modify_index: Option<u64>,
    /// Take the key's lock for -session while writing.
    #[arg(long)]
    acquire: bool,
    /// Release the key's lock held by -session while writing.
    #[arg(long)]
    release: bool,
    /// The session for -acquire or -release.
    #[arg(long)]
    session: Option<String>,
    #[command(flatten)]
    http: HttpFlags,
    /// KEY, then DATA: a literal, @FILE to read a file, or - for stdin.
    #[arg(value_name = "KEY [DATA]")]
    args: Vec<String>,
}

/// Removes data from the KV store.
#[derive(Parser, Debug)]
#[command(name = "cairn kv delete", disable_version_flag = true)]
pub(super) struct DeleteArgs {
    /// Perform a Check-And-Set operation; requires -modify-index.
    #[arg(long)]
    cas: bool,
    /// ModifyIndex the key must have for -cas.
    #[arg(long)]
    modify_index: Option<u64>,
    /// Delete all keys with the given prefix.
    #[arg(long)]
    recurse: bool,
    #[command(flatten)]
    http: HttpFlags,
    /// Key to delete; a prefix with -recurse.
    #[arg(value_name = "KEY_OR_PREFIX")]
    args: Vec<String>,
}

/// `/v1/kv/<key>` with the key percent-encoded but its `/`s kept.
pub(crate) fn kv_path(key: &str) -> String {
    format!("/v1/kv/{}", client::encode(key, true))
}

/// Zero or one positional KEY, leading `/` stripped (Consul does the same).
fn one_key(args: &[String]) -> Result<String, Fail> {
    match args {
        [] => Ok(String::new()),
        [k] => Ok(k.strip_prefix('/').unwrap_or(k).to_owned()),
        _ => fail(format!(
            "Too many arguments (expected 1, got {})",
            args.len()
        )),
    }
}

pub(crate) fn get(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: GetArgs = parse("cairn kv get", args)?;
    let key = one_key(&a.args)?;
    if key.is_empty() && !(a.recurse || a.keys) {
        return fail("Error! Missing KEY argument");
    }
    let c = client::connect(&a.http, io.env)?;
    let path = kv_path(&key);
    if a.keys {
        let reply = c.get(
            &path,
            &[("keys", None), ("separator", Some(a.separator.clone()))],
        )?;
        // 404 means "no keys under this prefix", which is not an error.
        let keys: Vec<String> = if reply.status == 404 {
            Vec::new()
        } else {
            reply.json()?
        };
        return keys.iter().try_for_each(|k| io.line(k));
    }
    if a.recurse {
        let reply = c.get(&path, &[("recurse", None)])?;
        let pairs: Vec<KvPair> = if reply.status == 404 {
            Vec::new()
        } else {
            reply.json()?
        };
        for (i, pair) in pairs.iter().enumerate() {
            if a.detailed {
                io.line(format_detailed(pair, &pair.bytes()?, a.base64))?;
                if i + 1 < pairs.len() {
                    io.line("")?;
                }
            } else {
                let mut line = format!("{}:", pair.key).into_bytes();
                line.extend(render_value(&pair.bytes()?, a.base64));
                io.raw_line(&line)?;
            }
        }
        return Ok(());
    }
    let reply = c.get(&path, &[])?;
    if reply.status == 404 {
        return fail(format!("Error! No key exists at: {key}"));
    }
    let pairs: Vec<KvPair> = reply.json()?;
    let Some(pair) = pairs.into_iter().next() else {
        return fail(format!("Error! No key exists at: {key}"));
    };
    let value = pair.bytes()?;
    if a.detailed {
        io.line(format_detailed(&pair, &value, a.base64))
    } else {
        io.raw_line(&render_value(&value, a.base64))
    }
}

fn render_value(value: &[u8], base64: bool) -> Vec<u8> {
    if base64 {
        B64.encode(value).into_bytes()
    } else {
        value.to_vec()
    }
}

/// Consul's `prettyKVPair`: a tabwriter block (padding 6) with no trailing
/// newline. Non-UTF-8 values are shown lossily here; use -base64 for those.
pub(crate) fn format_detailed(pair: &KvPair, value: &[u8], base64: bool) -> String {
    let session = pair
        .session
        .as_deref()
        .filter(|s| !s.is_empty())
        .unwrap_or("-");
    let value = String::from_utf8_lossy(&render_value(value, base64)).into_owned();
    let rows = [
        ("CreateIndex", pair.create_index.to_string()),
        ("Flags", pair.flags.to_string()),
        ("Key", pair.key.clone()),
        ("LockIndex", pair.lock_index.to_string()),
        ("ModifyIndex", pair.modify_index.to_string()),
        ("Session", session.to_owned()),
        ("Value", value),
    ];
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 6;
    rows.iter()
        .map(|(k, v)| format!("{k:<width$}{v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

pub(crate) fn put(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: PutArgs = parse("cairn kv put", args)?;
    let (key, data) = match a.args.as_slice() {
        [] => return fail("Error! Missing KEY argument"),
        [k] => (k.clone(), Vec::new()),
        [k, d] => (k.clone(), read_data(d)?),
        more => {
            return fail(format!(
                "Error! Too many arguments (expected 1 or 2, got {})",
                more.len()
            ));
        }
    };
    let key = key.strip_prefix('/').map(str::to_owned).unwrap_or(key);
    if key.is_empty() {
        return fail("Error! Missing KEY argument");
    }
    let data = if a.base64 {
        let text = String::from_utf8_lossy(&data);
        B64.decode(text.trim())
            .or_else(|e| fail(format!("Error! Cannot base 64 decode data: {e}")))?
    } else {
        data
    };
    let cas = match (a.cas, a.modify_index) {
        (true, None) => return fail("Must specify -modify-index with -cas!"),
        (true, Some(idx)) => Some(idx),
        (false, _) => None,
    };
    let mut params: Vec<Param<'_>> = Vec::new();
    if a.flags != 0 {
        params.push(("flags", Some(a.flags.to_string())));
    }
    if let Some(idx) = cas {
        params.push(("cas", Some(idx.to_string())));
    }
    match (a.acquire, a.release, &a.session) {
        (true, true, _) => return fail("Error! -acquire and -release are mutually exclusive"),
        (true, false, Some(session)) => params.push(("acquire", Some(session.clone()))),
        (false, true, Some(session)) => params.push(("release", Some(session.clone()))),
        (true, false, None) | (false, true, None) => return fail("Error! Missing -session (required with -acquire and -release)"),
        (false, false, _) => {}
    }
    let lock = a.acquire || a.release;
    let c = client::connect(&a.http, io.env)?;
    let written: bool = c.put(&kv_path(&key), &params, data)?.json()?;
    match (written, cas.is_some()) {
        (true, _) => {
            io.note(format_args!("Success! Data written to: {key}"));
            Ok(())
        }
        (false, true) => fail(format!("Error! Did not write to {key}: CAS failed")),
        (false, false) if lock => fail(format!("Error! Did not write to {key}: the lock is held by another session")),
        (false, false) => fail(format!(
            "Error! Did not write to {key}: agent refused the write"
        )),
    }
}

/// Consul's DATA conventions: `@path` reads a file, `-` reads stdin, anything
/// else (including `-foo`) is the literal value.
pub(crate) fn read_data(arg: &str) -> Result<Vec<u8>, Fail> {
    if let Some(path) = arg.strip_prefix('@') {
        return std::fs::read(path).or_else(|e| fail(format!("Error! Failed to read file: {e}")));
    }
    if arg == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .or_else(|e| fail(format!("Error! Failed to read stdin: {e}")))?;
        return Ok(buf);
    }
    Ok(arg.as_bytes().to_vec())
}

pub(crate) fn delete(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: DeleteArgs = parse("cairn kv delete", args)?;
    let key = one_key(&a.args)?;
    if key.is_empty() && !a.recurse {
        return fail("Error! Missing KEY argument");
    }
    if a.cas && a.modify_index.unwrap_or(0) == 0 {
        return fail(
            "Cannot delete a key that does not exist. Provide a -modify-index greater than 0.",
        );
    }
    if a.modify_index.is_some_and(|i| i != 0) && !a.cas {
        return fail("Cannot specify -modify-index without -cas!");
    }
    if a.recurse && a.cas {
        return fail("Cannot specify both -cas and -recurse!");
    }
    let c = client::connect(&a.http, io.env)?;
    let path = kv_path(&key);
    if a.recurse {
        c.delete(&path, &[("recurse", None)])?.ok()?;
        io.note(format_args!("Success! Deleted keys with prefix: {key}"));
        return Ok(());
    }
    if a.cas {
        let idx = a.modify_index.unwrap_or(0).to_string();
        let deleted: bool = c.delete(&path, &[("cas", Some(idx))])?.json()?;
        if !deleted {
            return fail(format!("Error! Did not delete key {key}: CAS failed"));
        }
    } else {
        c.delete(&path, &[])?.ok()?;
    }
    io.note(format_args!("Success! Deleted key: {key}"));
    Ok(())
}
