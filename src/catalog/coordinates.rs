//! Network coordinates in the catalog: Consul's `coordinates` table, one Vivaldi coordinate per
//! (node, network segment), written by `Command::CoordinateBatchUpdate` and read by the
//! `/v1/coordinate` endpoints and `?near=` sorting.
//!
//! As in Consul's state store (`CoordinateBatchUpdate`), an update for a node the catalog does
//! not know is skipped (coordinates are deleted with their node, so accepting one would leak a
//! row forever), and deregistering a node deletes its coordinates. Unlike Consul, which checks
//! validity only in the RPC endpoint, `apply` itself refuses a batch holding an invalid
//! coordinate, so that no log entry, however it was proposed, can store one.
//!
//! The catalog cannot use `gossip`, which owns the algorithm, so the validity rule is restated
//! here ([`NodeCoordinate::is_valid`], the same as `gossip::coordinate::Coordinate::is_valid`).
//! Coordinates hold `f64`s but the catalog is `Eq`: equality compares bit patterns.

use serde::{Deserialize, Serialize};

use crate::catalog::apply::Outcome;
use crate::catalog::{Catalog, ChangeSet, RowKey};

/// Most dimensions a stored coordinate may have (the same bound as gossip's).
pub const COORDINATE_DIMENSIONS_MAX: usize = 64;
/// Most updates one command may carry: Consul's `coordinate_update_batch_size` (128) times
/// `coordinate_update_max_batches` (5), what its leader commits per update period at most.
pub const COORDINATE_BATCH_UPDATES_MAX: usize = 640;
/// Longest segment name accepted (Consul's segment names are short DNS labels).
pub const COORDINATE_SEGMENT_BYTES_MAX: usize = 64;

/// A node's network coordinate as stored: Serf's `Coordinate` (seconds, error dimensionless).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeCoordinate {
    pub vec: Vec<f64>,
    pub error: f64,
    pub adjustment: f64,
    pub height: f64,
}

impl PartialEq for NodeCoordinate {
    /// Bitwise, so that equality is an equivalence (`Catalog` is `Eq`) and a row that did not
    /// change is recognised byte for byte.
    fn eq(&self, other: &NodeCoordinate) -> bool {
        let bits = |c: &NodeCoordinate| (c.error.to_bits(), c.adjustment.to_bits(), c.height.to_bits());
        bits(self) == bits(other)
            && self.vec.len() == other.vec.len()
            && self.vec.iter().zip(&other.vec).all(|(a, b)| a.to_bits() == b.to_bits())
    }
}

impl Eq for NodeCoordinate {}

impl NodeCoordinate {
    /// Every value finite, error and height not negative, 1..=[`COORDINATE_DIMENSIONS_MAX`]
    /// dimensions: gossip's rule (`Coordinate::is_valid`).
    pub fn is_valid(&self) -> bool {
        (1..=COORDINATE_DIMENSIONS_MAX).contains(&self.vec.len())
            && self.vec.iter().all(|v| v.is_finite())
            && self.adjustment.is_finite()
            && self.error.is_finite()
            && self.error >= 0.0
            && self.height.is_finite()
            && self.height >= 0.0
    }
}

/// One node's new coordinate in one segment (`""` is the default segment).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordinateUpdate {
    pub node: String,
    pub segment: String,
    pub coord: NodeCoordinate,
}

/// A stored coordinate with its key, as queries return it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoordinateEntry<'a> {
    pub node: &'a str,
    pub segment: &'a str,
    pub coord: &'a NodeCoordinate,
}

/// Applies a batch of updates: all or nothing on invalid input, unknown nodes skipped.
pub(super) fn update_batch(catalog: &mut Catalog, index: u64, updates: &[CoordinateUpdate], changes: &mut ChangeSet) -> Outcome {
    if updates.len() > COORDINATE_BATCH_UPDATES_MAX {
        return Outcome::Rejected(format!("more than {COORDINATE_BATCH_UPDATES_MAX} coordinate updates in one batch"));
    }
    if let Some(bad) = updates.iter().find(|u| !u.coord.is_valid()) {
        return Outcome::Rejected(format!("invalid coordinate for node {:?}", bad.node));
    }
    if let Some(bad) = updates.iter().find(|u| u.segment.len() > COORDINATE_SEGMENT_BYTES_MAX) {
        return Outcome::Rejected(format!("segment name of node {:?} is longer than {COORDINATE_SEGMENT_BYTES_MAX} bytes", bad.node));
    }
    for update in updates.iter().filter(|u| catalog.nodes.contains_key(&u.node)) {
        let key = (update.node.clone(), update.segment.clone());
        if catalog.coordinates.get(&key) == Some(&update.coord) {
            continue;
        }
        catalog.coordinates.insert(key.clone(), update.coord.clone());
        catalog.coordinates_index = index;
        changes.touch(RowKey::Coordinate(key.0, key.1));
        changes.touch(RowKey::CoordinatesIndex);
    }
    Outcome::Done
}

/// Deletes every coordinate of `node` (its deregistration).
pub(super) fn remove_node(catalog: &mut Catalog, index: u64, node: &str, changes: &mut ChangeSet) {
    let keys: Vec<(String, String)> = node_keys(catalog, node).collect();
    for key in keys {
        catalog.coordinates.remove(&key);
        catalog.coordinates_index = index;
        changes.touch(RowKey::Coordinate(key.0, key.1));
        changes.touch(RowKey::CoordinatesIndex);
    }
}

/// The keys of `node`'s coordinates, every segment.
pub(super) fn node_keys<'a>(catalog: &'a Catalog, node: &'a str) -> impl Iterator<Item = (String, String)> + 'a {
    let from = (node.to_string(), String::new());
    catalog.coordinates.range(from..).take_while(move |((n, _), _)| n == node).map(|(key, _)| key.clone())
}

impl Catalog {
    /// Every stored coordinate, by node then segment.
    pub fn coordinates(&self) -> impl Iterator<Item = CoordinateEntry<'_>> {
        self.coordinates.iter().map(|((node, segment), coord)| CoordinateEntry { node, segment, coord })
    }

    /// `node`'s coordinates, one per segment.
    pub fn node_coordinates<'a>(&'a self, node: &'a str) -> impl Iterator<Item = CoordinateEntry<'a>> + 'a {
        let from = (node.to_string(), String::new());
        self.coordinates
            .range(from..)
            .take_while(move |((n, _), _)| n == node)
            .map(|((node, segment), coord)| CoordinateEntry { node, segment, coord })
    }

    /// `node`'s coordinate in `segment`.
    pub fn coordinate(&self, node: &str, segment: &str) -> Option<&NodeCoordinate> {
        self.coordinates.get(&(node.to_string(), segment.to_string()))
    }

    /// The index of the last change to the coordinates table (Consul's `coordinates` index),
    /// never below a snapshot restore's.
    pub fn coordinates_index(&self) -> u64 {
        self.coordinates_index.max(self.restore_floor)
    }
}

#[cfg(test)]
mod tests;
