//! `cairn lock [-n N] PREFIX COMMAND...`: runs COMMAND while holding a lock (or, with N > 1, one
//! of N semaphore slots) under PREFIX, as `consul lock` does.
//!
//! - Lock (N = 1): a session (TTL 15 s, renewed every 5 s by a helper thread) acquires
//!   `PREFIX/.lock`; contenders wait with blocking queries until it is free.
//! - Semaphore (N > 1): each contender holds `PREFIX/<session>` and joins the holder set in
//!   `PREFIX/.lock` (`{"Limit": N, "Holders": {"<session>": true}}`) by check-and-set; holders
//!   whose session is gone are pruned.
//!
//! The child runs through `sh -c`; when it exits, the lock or slot is released, the session
//! destroyed, and cairn exits with the child's exit code.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use clap::Parser;

use crate::cli::client::{self, Client, HttpFlags};
use crate::cli::{Fail, Io, fail, parse};

const LOCK_SESSION_TTL: &str = "15s";
const LOCK_RENEW_INTERVAL_S: u64 = 5;
/// Each wait for the lock to change blocks at most this long.
const LOCK_WAIT_S: u64 = 25;

#[derive(Parser, Debug)]
#[command(name = "cairn lock", disable_version_flag = true)]
pub(super) struct LockArgs {
    /// Slots of the semaphore; 1 is a plain lock.
    #[arg(short = 'n', default_value_t = 1)]
    n: u32,
    /// Give up if the lock is not acquired within this many seconds (0 = wait forever).
    #[arg(long, default_value_t = 0)]
    timeout_s: u64,
    #[command(flatten)]
    http: HttpFlags,
    /// PREFIX, then the command and its arguments.
    #[arg(trailing_var_arg = true)]
    args: Vec<String>,
}

fn session_create(c: &Client, prefix: &str) -> Result<String, Fail> {
    let body = serde_json::json!({"Name": format!("cairn lock {prefix}"), "TTL": LOCK_SESSION_TTL, "Behavior": "release", "LockDelay": "0s"});
    let reply: serde_json::Value = c.put("/v1/session/create", &[], body.to_string().into_bytes())?.json()?;
    reply["ID"].as_str().map(str::to_owned).ok_or_else(|| Fail::Msg("Error! The agent returned no session ID".into()))
}

fn kv_path(key: &str) -> String {
    format!("/v1/kv/{}", client::encode(key, true))
}

/// Waits until the key's (or prefix's) index moves past `index`.
fn wait_change(c: &Client, path: &str, index: u64, recurse: bool) -> Result<(), Fail> {
    let mut params = vec![("index", Some(index.to_string())), ("wait", Some(format!("{LOCK_WAIT_S}s")))];
    if recurse {
        params.push(("recurse", None));
    }
    c.get(path, &params)?;
    Ok(())
}

fn acquire_lock(c: &Client, key: &str, session: &str, deadline: Option<Instant>) -> Result<(), Fail> {
    loop {
        let acquired: bool = c.put(&kv_path(key), &[("acquire", Some(session.to_owned()))], Vec::new())?.json()?;
        if acquired {
            return Ok(());
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return fail("Error! Lock acquisition timed out");
        }
        let reply = c.get(&kv_path(key), &[])?;
        wait_change(c, &kv_path(key), reply.index.unwrap_or(0), false)?;
    }
}

fn acquire_slot(c: &Client, prefix: &str, limit: u32, session: &str, deadline: Option<Instant>) -> Result<(), Fail> {
    let contender = format!("{prefix}/{session}");
    let taken: bool = c.put(&kv_path(&contender), &[("acquire", Some(session.to_owned()))], Vec::new())?.json()?;
    if !taken {
        return fail("Error! Cannot register as a semaphore contender");
    }
    let lock_key = format!("{prefix}/.lock");
    loop {
        let reply = c.get(&kv_path(&lock_key), &[])?;
        let (mut holders, modify_index) = if reply.status == 404 {
            (serde_json::Map::new(), 0)
        } else {
            let rows: serde_json::Value = client::decode_json(&reply.body)?;
            let value = rows[0]["Value"].as_str().map(|v| base64::engine::general_purpose::STANDARD.decode(v).unwrap_or_default()).unwrap_or_default();
            let document: serde_json::Value = serde_json::from_slice(&value).unwrap_or_default();
            (document["Holders"].as_object().cloned().unwrap_or_default(), rows[0]["ModifyIndex"].as_u64().unwrap_or(0))
        };
        // Prune holders whose contender key is no longer locked (their session ended).
        let live: serde_json::Value = match c.get(&kv_path(&format!("{prefix}/")), &[("recurse", None)]) {
            Ok(r) if r.status == 200 => client::decode_json(&r.body)?,
            _ => serde_json::Value::Array(Vec::new()),
        };
        let locked: Vec<String> = live.as_array().into_iter().flatten().filter_map(|e| e["Session"].as_str().map(str::to_owned)).collect();
        holders.retain(|holder, _| locked.contains(holder));
        if (holders.len() as u32) < limit {
            holders.insert(session.to_owned(), serde_json::Value::Bool(true));
            let document = serde_json::json!({"Limit": limit, "Holders": holders});
            let written: bool = c.put(&kv_path(&lock_key), &[("cas", Some(modify_index.to_string()))], document.to_string().into_bytes())?.json()?;
            if written {
                return Ok(());
            }
            continue;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return fail("Error! Semaphore acquisition timed out");
        }
        wait_change(c, &kv_path(&format!("{prefix}/")), reply.index.unwrap_or(0), true)?;
    }
}

fn release_slot(c: &Client, prefix: &str, session: &str) -> Result<(), Fail> {
    let lock_key = format!("{prefix}/.lock");
    for _ in 0..10 {
        let reply = c.get(&kv_path(&lock_key), &[])?;
        if reply.status == 404 {
            break;
        }
        let rows: serde_json::Value = client::decode_json(&reply.body)?;
        let value = rows[0]["Value"].as_str().map(|v| base64::engine::general_purpose::STANDARD.decode(v).unwrap_or_default()).unwrap_or_default();
        let mut document: serde_json::Value = serde_json::from_slice(&value).unwrap_or_default();
        if let Some(holders) = document["Holders"].as_object_mut() {
            holders.remove(session);
        }
        let cas = rows[0]["ModifyIndex"].as_u64().unwrap_or(0).to_string();
        let written: bool = c.put(&kv_path(&lock_key), &[("cas", Some(cas))], document.to_string().into_bytes())?.json()?;
        if written {
            break;
        }
    }
    c.delete(&kv_path(&format!("{prefix}/{session}")), &[])?;
    Ok(())
}

pub(crate) fn lock(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: LockArgs = parse("cairn lock", args)?;
    let [prefix, command @ ..] = a.args.as_slice() else { return fail("Error! Usage: cairn lock [-n N] PREFIX COMMAND...") };
    if command.is_empty() {
        return fail("Error! Missing the command to run");
    }
    if a.n == 0 {
        return fail("Error! -n must be at least 1");
    }
    let prefix = prefix.trim_matches('/').to_owned();
    let c = client::connect(&a.http, io.env)?;
    let session = session_create(&c, &prefix)?;
    let deadline = (a.timeout_s > 0).then(|| Instant::now() + Duration::from_secs(a.timeout_s));
    let acquired = if a.n == 1 {
        acquire_lock(&c, &format!("{prefix}/.lock"), &session, deadline)
    } else {
        acquire_slot(&c, &prefix, a.n, &session, deadline)
    };
    if let Err(error) = acquired {
        let _ = c.put(&format!("/v1/session/destroy/{session}"), &[], Vec::new());
        return Err(error);
    }
    io.note(format_args!("Lock acquired on {prefix} (session {session})"));
    // Keep the session alive while the child runs.
    let stop = Arc::new(AtomicBool::new(false));
    let renewer = {
        let (stop, session, http, env_addr) = (stop.clone(), session.clone(), a.http.clone(), (io.env)("CAIRN_HTTP_ADDR").or_else(|| (io.env)("CONSUL_HTTP_ADDR")));
        std::thread::spawn(move || {
            let env = move |k: &str| if k == "CAIRN_HTTP_ADDR" { env_addr.clone() } else { None };
            let Ok(renewing) = client::connect(&http, &env) else { return };
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..LOCK_RENEW_INTERVAL_S * 10 {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                let _ = renewing.put(&format!("/v1/session/renew/{session}"), &[], Vec::new());
            }
        })
    };
    let status = std::process::Command::new("sh").arg("-c").arg(command.join(" ")).status();
    stop.store(true, Ordering::Relaxed);
    let _ = renewer.join();
    if a.n == 1 {
        let _ = c.put(&kv_path(&format!("{prefix}/.lock")), &[("release", Some(session.clone()))], Vec::new());
    } else {
        release_slot(&c, &prefix, &session)?;
    }
    c.put(&format!("/v1/session/destroy/{session}"), &[], Vec::new())?;
    match status {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(Fail::Exit(status.code().unwrap_or(1))),
        Err(error) => fail(format!("Error! Cannot run the command: {error}")),
    }
}
