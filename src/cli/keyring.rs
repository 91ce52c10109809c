//! `cairn keyring -list | -list-primary | -install KEY | -use KEY | -remove KEY`: gossip key
//! rotation over `/v1/operator/keyring`, with Consul's flags, checks and wording
//! (`command/keyring`). Progress lines (`==> Installing new gossip encryption key...`) go to
//! stderr, the lists (`dc1 (LAN):` blocks of `key [n/N]`) to stdout; any member's failure
//! exits 1.

use std::collections::BTreeMap;

use clap::Parser;
use serde::Deserialize;

use crate::cli::client::{self, HttpFlags, Param};
use crate::cli::{Fail, Io, fail, parse};

/// Consul's largest `-relay-factor`.
const RELAY_FACTOR_MAX: i64 = 5;

const USAGE: &str = "Usage: cairn keyring [options]

  Manages encryption keys used for gossip messages. Gossip encryption is
  optional. When enabled, this command may be used to examine active encryption
  keys in the cluster, add new keys, and remove old ones. When combined, this
  functionality provides the ability to perform key rotation cluster-wide,
  without disrupting the cluster.

  All variations of the keyring command return 0 if all nodes reply and there
  are no errors. If any node fails to reply or reports failure, the exit code
  will be 1.

Options: -list, -list-primary, -install=KEY, -use=KEY, -remove=KEY, -relay-factor=N,
-local-only, and the HTTP flags of every client command (-http-addr, -token, ...).";

/// Manages the gossip encryption keys of the cluster.
#[derive(Parser, Debug)]
#[command(name = "cairn keyring", disable_version_flag = true)]
pub(super) struct KeyringArgs {
    /// Install a new encryption key. This will broadcast the new key to all members in the cluster.
    #[arg(long)]
    install: Option<String>,
    /// Change the primary encryption key, which is used to encrypt messages. The key must
    /// already be installed before this operation can succeed.
    #[arg(long = "use")]
    use_key: Option<String>,
    /// Remove the given key from the cluster. This operation may only be performed on keys
    /// which are not currently the primary key.
    #[arg(long)]
    remove: Option<String>,
    /// List all keys currently in use within the cluster.
    #[arg(long)]
    list: bool,
    /// List all primary keys currently in use within the cluster.
    #[arg(long)]
    list_primary: bool,
    /// Accepted as Consul's (0 to 5); cairn asks every member directly, so nothing is relayed.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    relay_factor: i64,
    /// Only the local datacenter's pools (no WAN); lists only.
    #[arg(long)]
    local_only: bool,
    #[command(flatten)]
    http: HttpFlags,
}

/// One pool's answer, as `/v1/operator/keyring` lists it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KeyringResponse {
    #[serde(rename = "WAN", default)]
    wan: bool,
    #[serde(default)]
    datacenter: String,
    #[serde(default)]
    segment: String,
    #[serde(default)]
    messages: Option<BTreeMap<String, String>>,
    #[serde(default)]
    keys: Option<BTreeMap<String, u64>>,
    #[serde(default)]
    primary_keys: Option<BTreeMap<String, u64>>,
    #[serde(default)]
    num_nodes: u64,
}

pub(crate) fn keyring(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: KeyringArgs = parse("cairn keyring", args)?;
    let actions = [a.list, a.list_primary, a.install.is_some(), a.use_key.is_some(), a.remove.is_some()];
    match actions.iter().filter(|chosen| **chosen).count() {
        0 => return fail(USAGE),
        1 => {}
        _ => return fail("Only a single action is allowed"),
    }
    if !(0..=RELAY_FACTOR_MAX).contains(&a.relay_factor) {
        return fail(format!("Error parsing relay factor: Relay factor must be in range: [0, {RELAY_FACTOR_MAX}]"));
    }
    // Consul checks `-local-only` against `-list` alone, so `-list-primary -local-only` is refused.
    if a.local_only && !a.list {
        return fail("Error validating local-only: local-only can only be set for list requests");
    }
    let c = client::connect(&a.http, io.env)?;
    let relay_factor = a.relay_factor.to_string();
    let mut params: Vec<Param<'_>> = Vec::new();
    if a.relay_factor != 0 {
        params.push(("relay-factor", Some(relay_factor)));
    }
    if a.list || a.list_primary {
        if a.local_only {
            params.push(("local-only", Some("true".to_owned())));
        }
        let primary = a.list_primary;
        io.note(if primary { "==> Gathering installed primary encryption keys..." } else { "==> Gathering installed encryption keys..." });
        let reply = c.get("/v1/operator/keyring", &params).and_then(|reply| reply.json::<Vec<KeyringResponse>>());
        let responses = reply.map_err(|error| Fail::Msg(format!("error: {error}")))?;
        for response in &responses {
            io.line(format_response(response, primary))?;
        }
        return Ok(());
    }
    let (method, key, note) = match (a.install, a.use_key, a.remove) {
        (Some(key), _, _) => (reqwest::Method::POST, key, "==> Installing new gossip encryption key..."),
        (_, Some(key), _) => (reqwest::Method::PUT, key, "==> Changing primary gossip encryption key..."),
        (_, _, Some(key)) => (reqwest::Method::DELETE, key, "==> Removing gossip encryption key..."),
        // Exactly one action was chosen above, and it was not a list.
        (None, None, None) => return fail(USAGE),
    };
    io.note(note);
    let body = serde_json::to_vec(&serde_json::json!({ "Key": key })).expect("a JSON object encodes");
    c.send_body(method, "/v1/operator/keyring", &params, body)
        .and_then(|reply| reply.ok())
        .map_err(|error| Fail::Msg(format!("error: {error}")))?;
    Ok(())
}

/// Consul's `formatResponse`: a blank line, the pool's name, each member's message, then each
/// key with how many of the pool's members hold it (as primary, for `-list-primary`).
fn format_response(response: &KeyringResponse, primary: bool) -> String {
    let mut pool = if response.wan { "WAN".to_owned() } else { format!("{} (LAN)", response.datacenter) };
    if !response.segment.is_empty() {
        pool.push_str(&format!(" [{}]", response.segment));
    }
    let mut text = format!("\n{pool}:\n");
    for (node, message) in response.messages.iter().flatten() {
        text.push_str(&format!("  ===> {node}: {message}\n"));
    }
    let keys = if primary { &response.primary_keys } else { &response.keys };
    for (key, count) in keys.iter().flatten() {
        text.push_str(&format!("  {key} [{count}/{}]\n", response.num_nodes));
    }
    text.trim_end_matches('\n').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_reads_as_consuls() {
        let response: KeyringResponse = serde_json::from_str(
            r#"{"WAN":false,"Datacenter":"dc1","Segment":"","Messages":{"c":"no answer"},"Keys":{"new":3,"old":2},"PrimaryKeys":{"new":3},"NumNodes":3}"#,
        )
        .expect("decodes");
        assert_eq!(format_response(&response, false), "\ndc1 (LAN):\n  ===> c: no answer\n  new [3/3]\n  old [2/3]");
        assert_eq!(format_response(&response, true), "\ndc1 (LAN):\n  ===> c: no answer\n  new [3/3]");
    }
}
