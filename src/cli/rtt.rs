//! `cairn rtt <node1> [<node2>]`: the estimated round-trip time between two nodes from their
//! network coordinates, as `consul rtt` (`command/rtt/rtt.go`): the second node defaults to the
//! agent's own (`/v1/agent/self`), the LAN coordinates come from `/v1/coordinate/nodes`, node
//! names match case-insensitively, the two are compared in one segment, and the answer is printed as
//! `Estimated a <-> b rtt: 1.234 ms (using LAN coordinates)`.
//!
//! Consul's `-wan` (server coordinates across datacenters) is not offered: cairn has no WAN pool.

use clap::Parser;
use serde::Deserialize;

use crate::cli::client::{self, HttpFlags};
use crate::cli::{Fail, Io, fail, parse};
use crate::gossip::coordinate::Coordinate;

/// Estimates the network round trip time between two nodes using Cairn's network coordinate
/// model of the cluster.
#[derive(Parser, Debug)]
#[command(name = "cairn rtt", disable_version_flag = true)]
pub(super) struct RttArgs {
    #[command(flatten)]
    http: HttpFlags,
    /// One or two node names.
    nodes: Vec<String>,
}

/// One entry of `/v1/coordinate/nodes`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    node: String,
    #[serde(default)]
    segment: String,
    coord: Option<CoordIn>,
}

/// Serf's coordinate in JSON.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CoordIn {
    #[serde(default)]
    vec: Vec<f64>,
    #[serde(default)]
    error: f64,
    #[serde(default)]
    adjustment: f64,
    #[serde(default)]
    height: f64,
}

/// What the command reads of `/v1/agent/self`.
#[derive(Deserialize)]
struct SelfInfo {
    #[serde(rename = "Config")]
    config: SelfConfig,
}

#[derive(Deserialize)]
struct SelfConfig {
    #[serde(rename = "NodeName")]
    node_name: String,
}

pub(crate) fn rtt(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: RttArgs = parse("cairn rtt", args)?;
    if a.nodes.is_empty() || a.nodes.len() > 2 {
        return fail(format!("One or two node names must be specified\n\n{USAGE}"));
    }
    let c = client::connect(&a.http, io.env)?;
    let mut nodes = a.nodes.clone();
    if nodes.len() < 2 {
        let own: SelfInfo = c
            .get("/v1/agent/self", &[])
            .and_then(|reply| reply.json())
            .map_err(|e| Fail::Msg(format!("Unable to look up agent info: {e}")))?;
        nodes.push(own.config.node_name);
    }
    let entries: Vec<Entry> =
        c.get("/v1/coordinate/nodes", &[]).and_then(|reply| reply.json()).map_err(|e| Fail::Msg(format!("Error getting coordinates: {e}")))?;
    let (first, second) = match_coordinates(&entries, &nodes[0], &nodes[1]);
    let (first, second) = match (first, second) {
        (None, _) => return fail(format!("Could not find a coordinate for node {:?}", nodes[0])),
        (_, None) => return fail(format!("Could not find a coordinate for node {:?}", nodes[1])),
        (Some(first), Some(second)) => (first, second),
    };
    let distance_ms = first.distance_to(&second).as_secs_f64() * 1000.0;
    io.line(format!("Estimated {} <-> {} rtt: {distance_ms:.3} ms (using LAN coordinates)", nodes[0], nodes[1]))
}

/// The coordinates of `a` and `b` in one segment, as Consul's `CoordinateSet.Intersect`: the
/// default segment, unless a node has exactly one segment (a client), which then wins (the
/// second node's over the first's).
fn match_coordinates(entries: &[Entry], a: &str, b: &str) -> (Option<Coordinate>, Option<Coordinate>) {
    let of = |node: &str| -> Vec<(&str, Coordinate)> {
        entries
            .iter()
            .filter(|e| e.node.eq_ignore_ascii_case(node))
            .filter_map(|e| e.coord.as_ref().map(|c| (e.segment.as_str(), to_coordinate(c))))
            .collect()
    };
    let (of_a, of_b) = (of(a), of(b));
    let mut segment = "";
    for set in [&of_a, &of_b] {
        if let [(only, _)] = set.as_slice() {
            segment = only;
        }
    }
    let find = |set: &[(&str, Coordinate)]| set.iter().find(|(s, _)| *s == segment).map(|(_, c)| c.clone());
    (find(&of_a), find(&of_b))
}

fn to_coordinate(c: &CoordIn) -> Coordinate {
    Coordinate { vec: c.vec.clone(), error: c.error, adjustment: c.adjustment, height: c.height }
}

const USAGE: &str = "Usage: cairn rtt [options] node1 [node2]

  Estimates the round trip time between two nodes using Cairn's network
  coordinate model of the cluster. If node2 is omitted, the local agent's
  node is used.

Options: -http-addr, -token, -datacenter";

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(node: &str, segment: &str, x: f64) -> Entry {
        Entry { node: node.into(), segment: segment.into(), coord: Some(CoordIn { vec: vec![x, 0.0], error: 0.2, adjustment: 0.0, height: 0.0 }) }
    }

    #[test]
    fn coordinates_match_by_name_ignoring_case_and_by_segment() {
        let entries = vec![entry("Alpha", "", 0.0), entry("beta", "", 0.002), entry("gamma", "s1", 0.001)];
        let (a, b) = match_coordinates(&entries, "alpha", "BETA");
        let distance = a.expect("alpha").distance_to(&b.expect("beta"));
        assert_eq!(format!("{:.3}", distance.as_secs_f64() * 1000.0), "2.000");
        // gamma's only segment wins, and alpha has no coordinate there.
        assert!(match_coordinates(&entries, "alpha", "gamma").0.is_none());
        assert!(match_coordinates(&entries, "ghost", "alpha").0.is_none());
    }
}
