//! `cairn event -name=<name> [-node=re] [-service=re] [-tag=re] [payload]`: fires a user event
//! through the local agent, as `consul event` (`command/event/event.go`): the flags are
//! checked here first (name required, filters must compile, a tag filter needs a service
//! filter, at most one payload argument), the agent is asked who it is, and the event ID is
//! printed as `Event ID: <id>`.

use clap::Parser;
use serde::Deserialize;

use crate::cli::client::{self, HttpFlags, Param};
use crate::cli::{Fail, Io, fail, parse};

/// Dispatches a custom user event across a datacenter. An event must provide a name, but a
/// payload is optional. Events support filtering using regular expressions on node name,
/// service, and tag definitions.
#[derive(Parser, Debug)]
#[command(name = "cairn event", disable_version_flag = true)]
pub(super) struct EventArgs {
    /// Name of the event.
    #[arg(long, default_value = "")]
    name: String,
    /// Regular expression to filter on node names.
    #[arg(long, default_value = "")]
    node: String,
    /// Regular expression to filter on service instances.
    #[arg(long, default_value = "")]
    service: String,
    /// Regular expression to filter on service tags. Must be used with -service.
    #[arg(long, default_value = "")]
    tag: String,
    #[command(flatten)]
    http: HttpFlags,
    /// The payload (optional).
    payload: Vec<String>,
}

/// The part of the fire answer the command reads.
#[derive(Deserialize)]
struct Fired {
    #[serde(rename = "ID")]
    id: String,
}

pub(crate) fn event(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: EventArgs = parse("cairn event", args)?;
    if a.name.is_empty() {
        return fail(format!("Event name must be specified\n\n{USAGE}"));
    }
    for (what, pattern) in [("node", &a.node), ("service", &a.service), ("tag", &a.tag)] {
        if let Err(error) = check_regex(pattern) {
            return fail(format!("Failed to compile {what} filter regexp: {error}"));
        }
    }
    if !a.tag.is_empty() && a.service.is_empty() {
        return fail("Cannot provide tag filter without service filter.");
    }
    let payload = match a.payload.as_slice() {
        [] => Vec::new(),
        [one] => one.clone().into_bytes(),
        _ => return fail(format!("Too many command line arguments.\n\n{USAGE}")),
    };
    let c = client::connect(&a.http, io.env)?;
    c.get("/v1/agent/self", &[]).and_then(|reply| reply.ok()).map_err(|e| Fail::Msg(format!("Error querying Consul agent: {e}")))?;
    let mut params: Vec<Param<'_>> = Vec::new();
    for (key, value) in [("node", &a.node), ("service", &a.service), ("tag", &a.tag)] {
        if !value.is_empty() {
            params.push((key, Some(value.clone())));
        }
    }
    let path = format!("/v1/event/fire/{}", client::encode(&a.name, true));
    let fired: Fired = c.put(&path, &params, payload).and_then(|reply| reply.json()).map_err(|e| Fail::Msg(format!("Error firing event: {e}")))?;
    io.line(format_args!("Event ID: {}", fired.id))
}

/// An empty pattern is no filter; others must compile (the agent checks again).
fn check_regex(pattern: &str) -> Result<(), regex::Error> {
    if pattern.is_empty() {
        return Ok(());
    }
    regex::Regex::new(pattern).map(|_| ())
}

const USAGE: &str = "Usage: cairn event [options] [payload]

  Dispatches a custom user event across a datacenter. An event must provide
  a name, but a payload is optional. Events support filtering using
  regular expressions on node name, service, and tag definitions.

Options: -name, -node, -service, -tag, -http-addr, -token, -datacenter";
