//! `cairn catalog services|nodes|datacenters`: read-only catalog listings.
//!
//! Output mirrors Consul's `consul catalog` commands, including its
//! `columnize` tables (two-space gutters, last column unpadded) and the
//! "No ... match the given query" notes, which go to stderr with exit 0
//! because an empty listing is not an error.

use std::collections::{BTreeMap, HashMap};

use clap::Parser;
use serde::Deserialize;

use crate::cli::client::{self, HttpFlags};
use crate::cli::{Fail, Io, fail, parse};

/// Lists all registered services in a datacenter.
#[derive(Parser, Debug)]
#[command(name = "cairn catalog services", disable_version_flag = true)]
pub(super) struct ServicesArgs {
    /// Only list services on this node (id or name).
    #[arg(long)]
    node: Option<String>,
    /// Show each service's tags, comma-separated, beside its name.
    #[arg(long)]
    tags: bool,
    #[command(flatten)]
    http: HttpFlags,
    #[arg(hide = true)]
    args: Vec<String>,
}

/// Lists all nodes in the given datacenter.
#[derive(Parser, Debug)]
#[command(name = "cairn catalog nodes", disable_version_flag = true)]
pub(super) struct NodesArgs {
    /// Also show full node IDs, tagged addresses and metadata.
    #[arg(long)]
    detailed: bool,
    /// Only list nodes providing this service.
    #[arg(long)]
    service: Option<String>,
    #[command(flatten)]
    http: HttpFlags,
    #[arg(hide = true)]
    args: Vec<String>,
}

/// Lists all known datacenters.
#[derive(Parser, Debug)]
#[command(name = "cairn catalog datacenters", disable_version_flag = true)]
pub(super) struct DatacentersArgs {
    #[command(flatten)]
    http: HttpFlags,
    #[arg(hide = true)]
    args: Vec<String>,
}

/// A catalog node as returned by `/v1/catalog/nodes`. `/v1/catalog/service/<s>`
/// rows carry the same fields, with node metadata under `NodeMeta`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Node {
    #[serde(default, rename = "ID")]
    pub(crate) id: String,
    pub(crate) node: String,
    #[serde(default)]
    pub(crate) address: String,
    #[serde(default)]
    pub(crate) datacenter: String,
    #[serde(default)]
    pub(crate) tagged_addresses: Option<BTreeMap<String, String>>,
    #[serde(default, alias = "NodeMeta")]
    pub(crate) meta: Option<BTreeMap<String, String>>,
}

/// `/v1/catalog/node/<n>`: only the services part matters here.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NodeServices {
    #[serde(default)]
    services: Option<HashMap<String, NodeService>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NodeService {
    service: String,
    #[serde(default)]
    tags: Option<Vec<String>>,
}

fn no_positional(args: &[String]) -> Result<(), Fail> {
    if args.is_empty() {
        Ok(())
    } else {
        fail(format!(
            "Too many arguments (expected 0, got {})",
            args.len()
        ))
    }
}

pub(crate) fn services(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: ServicesArgs = parse("cairn catalog services", args)?;
    no_positional(&a.args)?;
    let c = client::connect(&a.http, io.env)?;
    let services: BTreeMap<String, Vec<String>> = match &a.node {
        Some(node) => {
            let reply = c.get(
                &format!("/v1/catalog/node/{}", client::encode(node, false)),
                &[],
            )?;
            // Consul answers an unknown node with `null` (older versions 404).
            let found: Option<NodeServices> = if reply.status == 404 {
                None
            } else {
                reply.json()?
            };
            let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for svc in found
                .and_then(|n| n.services)
                .unwrap_or_default()
                .into_values()
            {
                out.entry(svc.service)
                    .or_default()
                    .extend(svc.tags.unwrap_or_default());
            }
            out
        }
        None => {
            let raw: BTreeMap<String, Option<Vec<String>>> =
                c.get("/v1/catalog/services", &[])?.json()?;
            raw.into_iter()
                .map(|(k, v)| (k, v.unwrap_or_default()))
                .collect()
        }
    };
    if services.is_empty() {
        io.note("No services match the given query - try expanding your search.");
        return Ok(());
    }
    io.line(format_services(&services, a.tags))
}

/// One service per line, sorted; with `tags`, a tabwriter-style second column.
pub(crate) fn format_services(services: &BTreeMap<String, Vec<String>>, tags: bool) -> String {
    if !tags {
        return services.keys().cloned().collect::<Vec<_>>().join("\n");
    }
    let width = services
        .keys()
        .map(|k| k.chars().count())
        .max()
        .unwrap_or(0)
        + 6;
    services
        .iter()
        .map(|(name, tags)| {
            let mut tags = tags.clone();
            tags.sort();
            tags.dedup();
            format!("{name:<width$}{}", tags.join(","))
                .trim_end()
                .to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub(crate) fn nodes(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: NodesArgs = parse("cairn catalog nodes", args)?;
    no_positional(&a.args)?;
    let c = client::connect(&a.http, io.env)?;
    let nodes: Vec<Node> = match &a.service {
        Some(s) => c
            .get(
                &format!("/v1/catalog/service/{}", client::encode(s, false)),
                &[],
            )?
            .json()?,
        None => c.get("/v1/catalog/nodes", &[])?.json()?,
    };
    if nodes.is_empty() {
        io.note("No nodes match the given query - try expanding your search.");
        return Ok(());
    }
    io.line(format_nodes(&nodes, a.detailed))
}

/// Consul's node table. Without `detailed` the ID is cut to its first
/// UUID group, which is enough to tell nodes apart at a glance.
pub(crate) fn format_nodes(nodes: &[Node], detailed: bool) -> String {
    let mut rows: Vec<Vec<String>> = Vec::with_capacity(nodes.len() + 1);
    let mut header = vec!["Node", "ID", "Address", "DC"];
    if detailed {
        header.extend(["TaggedAddresses", "Meta"]);
    }
    rows.push(header.into_iter().map(str::to_owned).collect());
    for n in nodes {
        let id = match n.id.find('-') {
            Some(i) if i > 0 && !detailed => n.id[..i].to_owned(),
            _ => n.id.clone(),
        };
        let mut row = vec![n.node.clone(), id, n.address.clone(), n.datacenter.clone()];
        if detailed {
            row.push(map_to_kv(n.tagged_addresses.as_ref()));
            row.push(map_to_kv(n.meta.as_ref()));
        }
        rows.push(row);
    }
    columnize(&rows)
}

/// `k=v, k2=v2` in key order, as Consul's `mapToKV`.
fn map_to_kv(m: Option<&BTreeMap<String, String>>) -> String {
    m.map(|m| {
        m.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    })
    .unwrap_or_default()
}

pub(crate) fn datacenters(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: DatacentersArgs = parse("cairn catalog datacenters", args)?;
    no_positional(&a.args)?;
    let c = client::connect(&a.http, io.env)?;
    let dcs: Vec<String> = c.get("/v1/catalog/datacenters", &[])?.json()?;
    dcs.iter().try_for_each(|dc| io.line(dc))
}

/// Go's `columnize.Format` with default config: every column but the last is
/// left-aligned to its widest cell and followed by two spaces.
pub(crate) fn columnize(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.trim().chars().count());
        }
    }
    rows.iter()
        .map(|row| {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell.trim());
                } else {
                    line.push_str(&format!("{:<w$}  ", cell.trim(), w = widths[i]));
                }
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}
