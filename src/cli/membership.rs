//! `cairn leave`, `cairn force-leave`, `cairn reload` and `cairn keygen`: the verbs that
//! change this agent's place in the LAN pool, with Consul's wording.

use base64::Engine as _;
use clap::Parser;

use crate::cli::client::{self, HttpFlags, Param};
use crate::cli::{Fail, Io, fail, parse};

/// Bytes of a new gossip key: AES-256, as `consul keygen`.
const GOSSIP_KEY_BYTES: usize = 32;

/// Gracefully leaves the cluster and stops the local agent.
#[derive(Parser, Debug)]
#[command(name = "cairn leave", disable_version_flag = true)]
pub(super) struct LeaveArgs {
    #[command(flatten)]
    http: HttpFlags,
}

/// Forces a failed member of the cluster into the "left" state.
#[derive(Parser, Debug)]
#[command(name = "cairn force-leave", disable_version_flag = true)]
pub(super) struct ForceLeaveArgs {
    /// Also forget the member at once instead of keeping it as "left" for a while.
    #[arg(long)]
    prune: bool,
    #[command(flatten)]
    http: HttpFlags,
    node: Vec<String>,
}

/// Triggers the local agent to reload its configuration files.
#[derive(Parser, Debug)]
#[command(name = "cairn reload", disable_version_flag = true)]
pub(super) struct ReloadArgs {
    #[command(flatten)]
    http: HttpFlags,
}

pub(crate) fn leave(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: LeaveArgs = parse("cairn leave", args)?;
    let c = client::connect(&a.http, io.env)?;
    c.put("/v1/agent/leave", &[], Vec::new()).and_then(|r| r.ok()).map_err(|e| Fail::Msg(format!("Error leaving: {e}")))?;
    io.line("Graceful leave complete")
}

pub(crate) fn force_leave(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: ForceLeaveArgs = parse("cairn force-leave", args)?;
    let [node] = a.node.as_slice() else {
        return fail("A single node name must be specified to force leave.");
    };
    let c = client::connect(&a.http, io.env)?;
    let params: Vec<Param<'_>> = if a.prune { vec![("prune", None)] } else { Vec::new() };
    let path = format!("/v1/agent/force-leave/{}", client::encode(node, false));
    c.put(&path, &params, Vec::new()).and_then(|r| r.ok()).map_err(|e| Fail::Msg(format!("Error force leaving: {e}")))?;
    Ok(())
}

pub(crate) fn reload(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: ReloadArgs = parse("cairn reload", args)?;
    let c = client::connect(&a.http, io.env)?;
    c.put("/v1/agent/reload", &[], Vec::new()).and_then(|r| r.ok()).map_err(|e| Fail::Msg(format!("Error reloading: {e}")))?;
    io.line("Configuration reload triggered")
}

pub(crate) fn keygen(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    if !args.is_empty() {
        return fail("This command takes no arguments");
    }
    let key: [u8; GOSSIP_KEY_BYTES] = rand::random();
    io.line(base64::engine::general_purpose::STANDARD.encode(key))
}
