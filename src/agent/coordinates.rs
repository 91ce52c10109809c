//! This agent's network coordinate: read from gossip, sent to the catalog periodically.
//!
//! As Consul's agent (`sendCoordinate`): every `interval + random stagger` the agent writes its
//! LAN coordinate for its node through the one write path (`Agent::write`, which a client
//! forwards to a server). The interval is Consul's `RateScaledInterval`: the pool's size
//! divided by [`COORDINATE_SYNC_RATE_TARGET`] updates per second, never below
//! [`COORDINATE_SYNC_INTERVAL_MIN_MS`], so the whole cluster sends at most about 64 updates a
//! second however large it grows.
//!
//! Consul's leader also buffers updates and commits them in batches every 5 s
//! (`coordinate_update_period`); here each update is one small command that the leader's write
//! batching (`raft::write_batch`) already joins with concurrent writes into one Raft entry, and
//! the rate target bounds how many arrive. A command holds at most
//! `COORDINATE_BATCH_UPDATES_MAX` updates (Consul's batch size times max batches).
//!
//! Differences from Consul, on purpose: the first update goes out
//! [`COORDINATE_SYNC_FIRST_DELAY_MS`] after start rather than a whole interval later, so a new
//! node can be sorted by `?near=` early; `-dev` agents use [`COORDINATE_SYNC_INTERVAL_DEV_MS`].

use std::sync::Arc;
use std::time::Duration;

use crate::agent::Agent;
use crate::catalog::command::Command;
use crate::catalog::coordinates::{CoordinateUpdate, NodeCoordinate};
use crate::gossip::coordinate::Coordinate;

/// Consul's `sync_coordinate_interval_min`: the shortest time between two updates of a node.
pub const COORDINATE_SYNC_INTERVAL_MIN_MS: u64 = 15_000;
/// Consul's `sync_coordinate_rate_target`: updates per second the whole cluster aims at.
pub const COORDINATE_SYNC_RATE_TARGET: f64 = 64.0;
/// The interval of a `-dev` agent, alone or nearly: short, so that it has a coordinate at once.
pub const COORDINATE_SYNC_INTERVAL_DEV_MS: u64 = 1_000;
/// How long after start the first update goes out (the agent has registered its node by then).
pub const COORDINATE_SYNC_FIRST_DELAY_MS: u64 = 3_000;
/// The pause before retrying a failed update (no leader, no server known yet).
const COORDINATE_SYNC_RETRY_MS: u64 = 2_000;

impl Agent {
    /// This agent's LAN coordinate, as gossip keeps it (Serf's `GetCoordinate`).
    pub fn lan_coordinate(&self) -> Coordinate {
        self.gossip.coordinate()
    }
}

/// The stored form of a gossip coordinate.
pub fn to_catalog(coordinate: &Coordinate) -> NodeCoordinate {
    NodeCoordinate { vec: coordinate.vec.clone(), error: coordinate.error, adjustment: coordinate.adjustment, height: coordinate.height }
}

/// The gossip form of a stored coordinate, to compute distances with.
pub fn from_catalog(coordinate: &NodeCoordinate) -> Coordinate {
    Coordinate { vec: coordinate.vec.clone(), error: coordinate.error, adjustment: coordinate.adjustment, height: coordinate.height }
}

/// Consul's `lib.RateScaledInterval`: `members / rate` seconds, at least `min`.
pub fn rate_scaled_interval(rate_per_s: f64, min: Duration, members: usize) -> Duration {
    if rate_per_s <= 0.0 {
        return min;
    }
    Duration::try_from_secs_f64(members as f64 / rate_per_s).unwrap_or(min).max(min)
}

/// Sends this agent's coordinate to the catalog until shutdown.
pub(crate) async fn coordinate_sync_loop(agent: Arc<Agent>) {
    let mut shutdown = agent.shutdown_requested();
    let mut delay = Duration::from_millis(COORDINATE_SYNC_FIRST_DELAY_MS + rand::random::<u64>() % 1_000);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => return,
        }
        let update = CoordinateUpdate {
            node: agent.identity.node_name.clone(),
            segment: String::new(),
            coord: to_catalog(&agent.lan_coordinate()),
        };
        match agent.write(Command::CoordinateBatchUpdate(vec![update])).await {
            Ok((_, crate::catalog::Outcome::Rejected(reason))) => tracing::warn!(%reason, "coordinate update rejected"),
            Ok(_) => {}
            Err(error) => {
                tracing::debug!(%error, "coordinate update failed; will retry");
                delay = Duration::from_millis(COORDINATE_SYNC_RETRY_MS);
                continue;
            }
        }
        let min = Duration::from_millis(if agent.config.dev { COORDINATE_SYNC_INTERVAL_DEV_MS } else { COORDINATE_SYNC_INTERVAL_MIN_MS });
        let interval = rate_scaled_interval(COORDINATE_SYNC_RATE_TARGET, min, agent.gossip.members().len());
        let stagger_ms = rand::random::<u64>() % (interval.as_millis() as u64).max(1);
        delay = interval + Duration::from_millis(stagger_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_scales_like_consuls() {
        let min = Duration::from_secs(15);
        assert_eq!(rate_scaled_interval(64.0, min, 3), min);
        assert_eq!(rate_scaled_interval(64.0, min, 960), min);
        assert_eq!(rate_scaled_interval(64.0, min, 6400), Duration::from_secs(100));
        assert_eq!(rate_scaled_interval(0.0, min, 6400), min);
    }

    #[test]
    fn conversions_keep_every_value() {
        let gossip = Coordinate { vec: vec![0.5, -0.25], error: 1.5, adjustment: -0.001, height: 1e-5 };
        assert_eq!(from_catalog(&to_catalog(&gossip)), gossip);
    }
}
