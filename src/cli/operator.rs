//! `cairn operator raft list-peers|remove-peer` and `cairn join`: cluster membership from the
//! command line, over `/v1/operator/raft/*` and `/v1/agent/join/:address`.

use clap::Parser;
use serde::Deserialize;

use crate::cli::catalog::columnize;
use crate::cli::client::{self, HttpFlags, Param};
use crate::cli::{Fail, Io, fail, parse};

/// Lists the Raft peers as the agent's server sees them.
#[derive(Parser, Debug)]
#[command(name = "cairn operator raft list-peers", disable_version_flag = true)]
pub(super) struct ListPeersArgs {
    /// Also show each server's Raft state (term, log and applied indexes, last contact).
    #[arg(long)]
    detailed: bool,
    #[command(flatten)]
    http: HttpFlags,
}

/// Removes a server from the Raft configuration.
#[derive(Parser, Debug)]
#[command(name = "cairn operator raft remove-peer", disable_version_flag = true)]
pub(super) struct RemovePeerArgs {
    /// The server's Raft ID, as `list-peers` prints it.
    #[arg(long)]
    id: Option<String>,
    /// The server's `ip:port` (server port).
    #[arg(long)]
    address: Option<String>,
    #[command(flatten)]
    http: HttpFlags,
}

/// Tells the local agent to join the LAN pool through the agent at each ADDRESS.
#[derive(Parser, Debug)]
#[command(name = "cairn join", disable_version_flag = true)]
pub(super) struct JoinArgs {
    #[command(flatten)]
    http: HttpFlags,
    /// `host` (the serf LAN port, 8301) or `host:port`.
    addresses: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Configuration {
    servers: Vec<Peer>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Peer {
    #[serde(rename = "ID")]
    id: String,
    node: String,
    address: String,
    leader: bool,
    voter: bool,
    #[serde(default)]
    raft: Option<serde_json::Value>,
}

pub(crate) fn list_peers(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: ListPeersArgs = parse("cairn operator raft list-peers", args)?;
    let c = client::connect(&a.http, io.env)?;
    let configuration: Configuration = c.get("/v1/operator/raft/configuration", &[])?.json()?;
    let mut header = vec!["Node", "ID", "Address", "State", "Voter", "RaftProtocol"];
    if a.detailed {
        header.extend(["Term", "LastIndex", "Applied", "LastContact"]);
    }
    let mut rows = vec![header.into_iter().map(str::to_owned).collect::<Vec<_>>()];
    for peer in configuration.servers {
        let state = if peer.leader { "leader" } else if peer.voter { "follower" } else { "non-voter" };
        let mut row = vec![peer.node, peer.id, peer.address, state.to_owned(), peer.voter.to_string(), "3".to_owned()];
        if a.detailed {
            let raft = peer.raft.unwrap_or_default();
            let field = |name: &str| raft.get(name).map(|v| v.to_string()).unwrap_or_else(|| "-".to_owned());
            let last_index = raft.get("LastLogIndex").or_else(|| raft.get("MatchedIndex")).map(|v| v.to_string()).unwrap_or_else(|| "-".to_owned());
            let contact = raft.get("LastContactMs").map(|v| format!("{v}ms")).unwrap_or_else(|| "-".to_owned());
            row.extend([field("Term"), last_index, field("AppliedIndex"), contact]);
        }
        rows.push(row);
    }
    io.line(columnize(&rows))
}

pub(crate) fn remove_peer(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: RemovePeerArgs = parse("cairn operator raft remove-peer", args)?;
    let c = client::connect(&a.http, io.env)?;
    let (params, what): (Vec<Param<'_>>, String) = match (a.id, a.address) {
        (Some(id), None) => (vec![("id", Some(id.clone()))], id),
        (None, Some(address)) => (vec![("address", Some(address.clone()))], address),
        _ => return fail("Exactly one of -id or -address is required"),
    };
    c.delete("/v1/operator/raft/peer", &params)?.ok()?;
    io.note(format_args!("Removed peer with id {what:?}"));
    Ok(())
}

/// Moves leadership to another voter.
#[derive(Parser, Debug)]
#[command(name = "cairn operator raft transfer-leader", disable_version_flag = true)]
pub(super) struct TransferArgs {
    #[command(flatten)]
    http: HttpFlags,
}

pub(crate) fn transfer_leader(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: TransferArgs = parse("cairn operator raft transfer-leader", args)?;
    let c = client::connect(&a.http, io.env)?;
    c.send_post("/v1/operator/raft/transfer-leader")?.ok()?;
    io.note("Success! Leadership transfer started");
    Ok(())
}

pub(crate) fn join(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: JoinArgs = parse("cairn join", args)?;
    if a.addresses.is_empty() {
        return fail("At least one address to join must be specified.");
    }
    let c = client::connect(&a.http, io.env)?;
    let mut joined = 0;
    for address in &a.addresses {
        match c.put(&format!("/v1/agent/join/{}", client::encode(address, false)), &[], Vec::new()).and_then(|r| r.ok()) {
            Ok(_) => joined += 1,
            Err(error) => io.note(format_args!("Error joining address '{address}': {error}")),
        }
    }
    if joined == 0 {
        return fail("Failed to join any nodes.");
    }
    io.note(format_args!("Successfully joined cluster by contacting {joined} nodes."));
    Ok(())
}
