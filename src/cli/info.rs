//! `cairn info`: Consul's `info`, the `Stats` of `/v1/agent/self` as sorted sections of
//! sorted `key = value` lines (`agent`, `build`, `consul`, `raft`, `runtime`, `serf_lan`, and
//! cairn's own `catalog` and `store`).

use std::collections::BTreeMap;

use clap::Parser;
use serde_json::Value;

use crate::cli::client::{self, HttpFlags};
use crate::cli::{Fail, Io, fail, parse};

/// Prints the local agent's debugging information.
#[derive(Parser, Debug)]
#[command(name = "cairn info", disable_version_flag = true)]
pub(super) struct InfoArgs {
    #[command(flatten)]
    http: HttpFlags,
}

pub(crate) fn info(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: InfoArgs = parse("cairn info", args)?;
    let c = client::connect(&a.http, io.env)?;
    let agent_self: Value = c.get("/v1/agent/self", &[]).and_then(|reply| reply.json()).map_err(|e| Fail::Msg(format!("Error querying agent: {e}")))?;
    let Some(Value::Object(stats)) = agent_self.get("Stats") else {
        return fail("Agent response did not contain 'Stats' key");
    };
    // Sorted like Consul's output (`sort.Strings` on sections and keys).
    let sections: BTreeMap<&String, &Value> = stats.iter().collect();
    for (section, values) in sections {
        io.line(format_args!("{section}:"))?;
        let Value::Object(values) = values else { continue };
        let values: BTreeMap<&String, &Value> = values.iter().collect();
        for (key, value) in values {
            match value {
                Value::String(text) => io.line(format_args!("\t{key} = {text}"))?,
                other => io.line(format_args!("\t{key} = {other}"))?,
            }
        }
    }
    Ok(())
}
