//! `cairn members`: the gossip member table from `GET /v1/agent/members`.
//!
//! Columns and their derivation follow Consul's `consul members`: the Type
//! column comes from the serf `role` tag, Build from `build` (cut at `:`),
//! Protocol from `vsn`, and servers sort first. The one deliberate
//! difference: a member with no `role = consul` tag is shown as a client
//! (Consul says "unknown" unless the tag is `node`), since our agents may not
//! set the tag on clients.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use clap::Parser;
use serde::Deserialize;

use crate::cli::catalog::columnize;
use crate::cli::client::{self, HttpFlags, Param};
use crate::cli::{Fail, Io, fail, parse};

/// Lists the members of a Cairn cluster.
#[derive(Parser, Debug)]
#[command(name = "cairn members", disable_version_flag = true)]
pub(super) struct MembersArgs {
    /// Show every tag of each member instead of the summary columns.
    #[arg(long)]
    detailed: bool,
    /// List the WAN pool (servers in all datacenters) instead of the LAN pool.
    #[arg(long)]
    wan: bool,
    /// Only members whose status (alive, leaving, left, failed) matches this regular
    /// expression (unanchored, as Consul's).
    #[arg(long)]
    status: Option<String>,
    #[command(flatten)]
    http: HttpFlags,
    #[arg(hide = true)]
    args: Vec<String>,
}

/// One serf member as the agent reports it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Member {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) addr: String,
    #[serde(default)]
    pub(crate) port: u16,
    #[serde(default)]
    pub(crate) tags: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub(crate) status: i64,
}

impl Member {
    fn tag(&self, k: &str) -> &str {
        self.tags
            .as_ref()
            .and_then(|t| t.get(k))
            .map(String::as_str)
            .unwrap_or("")
    }

    fn is_server(&self) -> bool {
        self.tag("role") == "consul"
    }

    /// `ip:port` as Go's `net.TCPAddr` prints it (IPv6 in brackets).
    fn address(&self) -> String {
        match self.addr.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, self.port).to_string(),
            Err(_) => format!("{}:{}", self.addr, self.port),
        }
    }
}

/// Serf's `MemberStatus` names.
pub(crate) fn status_name(status: i64) -> &'static str {
    match status {
        0 => "none",
        1 => "alive",
        2 => "leaving",
        3 => "left",
        4 => "failed",
        _ => "unknown",
    }
}

pub(crate) fn members(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: MembersArgs = parse("cairn members", args)?;
    if !a.args.is_empty() {
        return fail(format!(
            "Too many arguments (expected 0, got {})",
            a.args.len()
        ));
    }
    let status = match &a.status {
        Some(pattern) => Some(regex::Regex::new(pattern).map_err(|e| Fail::Msg(format!("Failed to compile status regexp: {e}")))?),
        None => None,
    };
    let c = client::connect(&a.http, io.env)?;
    let params: Vec<Param<'_>> = if a.wan {
        vec![("wan", Some("1".to_owned()))]
    } else {
        Vec::new()
    };
    let mut members: Vec<Member> = c.get("/v1/agent/members", &params)?.json()?;
    if let Some(status) = &status {
        members.retain(|m| status.is_match(status_name(m.status)));
    }
    sort_members(&mut members);
    io.line(format_members(&members, a.detailed))
}

/// Servers first, then by segment, then by name (Consul's order, minus
/// the enterprise partition key).
pub(crate) fn sort_members(members: &mut [Member]) {
    members.sort_by(|x, y| {
        (!x.is_server(), x.tag("segment"), &x.name).cmp(&(
            !y.is_server(),
            y.tag("segment"),
            &y.name,
        ))
    });
}

pub(crate) fn format_members(members: &[Member], detailed: bool) -> String {
    let mut rows: Vec<Vec<String>> = Vec::with_capacity(members.len() + 1);
    if detailed {
        rows.push(
            ["Node", "Address", "Status", "Tags"]
                .map(str::to_owned)
                .to_vec(),
        );
        for m in members {
            let tags = m
                .tags
                .iter()
                .flatten()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            rows.push(vec![
                m.name.clone(),
                m.address(),
                status_name(m.status).to_owned(),
                tags,
            ]);
        }
        return columnize(&rows);
    }
    let header = [
        "Node",
        "Address",
        "Status",
        "Type",
        "Build",
        "Protocol",
        "DC",
        "Partition",
        "Segment",
    ];
    rows.push(header.map(str::to_owned).to_vec());
    for m in members {
        let build = m.tag("build");
        let build = build.split_once(':').map_or(build, |(b, _)| b);
        let partition = match m.tag("ap") {
            "" => "default",
            p => p,
        };
        let segment = match (m.is_server(), m.tag("segment")) {
            (true, _) => "<all>",
            (false, "") => "<default>",
            (false, s) => s,
        };
        rows.push(
            [
                m.name.as_str(),
                &m.address(),
                status_name(m.status),
                if m.is_server() { "server" } else { "client" },
                build,
                m.tag("vsn"),
                m.tag("dc"),
                partition,
                segment,
            ]
            .map(str::to_owned)
            .to_vec(),
        );
    }
    columnize(&rows)
}
