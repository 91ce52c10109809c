//! Network coordinates: Serf's Vivaldi variant, so that cairn can answer Consul's
//! `/v1/coordinate` endpoints and sort by estimated round-trip time (`?near=`).
//!
//! A [`Coordinate`] places a node in an 8-dimensional Euclidean space plus a *height* (the
//! node's access link) and an *adjustment* (a per-node offset learnt from recent errors); the
//! distance between two coordinates estimates their RTT in seconds. A [`CoordinateClient`]
//! owns this node's coordinate and moves it after each RTT observation of another node, as
//! Serf's `coordinate.Client` does: a moving-median latency filter per node, the Vivaldi
//! spring update weighted by both sides' error, the adjustment window, and a little gravity
//! towards the origin against drift. The algorithm and the defaults
//! ([`CoordinateConfig::consul_default`]) are Serf's; the code is not a translation.
//!
//! Pure: no clock, no IO, and randomness (a direction when two coordinates coincide) comes from
//! a seed given to [`CoordinateClient::new`]. A coordinate arriving from the network is checked
//! before use ([`Coordinate::is_valid`], [`Coordinate::is_compatible_with`]); nothing here
//! panics on remote input. If an update ever produces a non-finite coordinate anyway, the client
//! starts over at the origin and counts a reset ([`CoordinateStats::resets`]), as Serf does.
//!
//! Limits: RTT observations above [`COORDINATE_RTT_MS_MAX`] are refused, a coordinate has at
//! most [`COORDINATE_DIMENSIONALITY_MAX`] dimensions, and the latency filter remembers at most
//! [`LATENCY_FILTER_NODES_MAX`] nodes (the least recently observed one is dropped first).
//! Differences from Serf: a zero RTT is accepted and counted (`zero_rtts`) like Serf, but a
//! coordinate with a negative error or height is refused (Serf never produces one); a distance
//! between invalid or incompatible coordinates is `Duration::MAX` instead of a panic.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Longest round-trip time an observation may report (Serf's `maxRTT`); longer means a stale
/// answer or a broken clock, not a network distance.
pub const COORDINATE_RTT_MS_MAX: u64 = 10_000;
/// Most dimensions a coordinate may have; bounds the work a remote coordinate can cause.
pub const COORDINATE_DIMENSIONALITY_MAX: usize = 64;
/// Most nodes whose recent RTT samples the latency filter keeps (about 5 MiB at the limit).
pub const LATENCY_FILTER_NODES_MAX: usize = 16_384;

/// Below this, two positions coincide and a distance or an RTT counts as zero (Serf's value).
const ZERO_THRESHOLD_S: f64 = 1.0e-6;

/// A node's network coordinate. Every value is in seconds except `error` (dimensionless).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Coordinate {
    /// The Euclidean part.
    pub vec: Vec<f64>,
    /// Confidence in the coordinate: near 0 is good, [`CoordinateConfig::vivaldi_error_max`]
    /// is "no idea yet".
    pub error: f64,
    /// Offset learnt from the recent errors of this node's estimates.
    pub adjustment: f64,
    /// The non-Euclidean part: the node's access link, never below the configured minimum.
    pub height: f64,
}

/// The tuning of the algorithm; see [`CoordinateConfig::consul_default`].
#[derive(Clone, Debug, PartialEq)]
pub struct CoordinateConfig {
    /// Dimensions of the Euclidean part (1..=[`COORDINATE_DIMENSIONALITY_MAX`]).
    pub dimensionality: usize,
    /// Error of a fresh coordinate, and the ceiling of the error.
    pub vivaldi_error_max: f64,
    /// How much one observation may move the error estimate.
    pub vivaldi_ce: f64,
    /// How much one observation may move the coordinate.
    pub vivaldi_cc: f64,
    /// Samples of (RTT − estimate) averaged into the adjustment; 0 turns adjustment off.
    pub adjustment_window_size: usize,
    /// Smallest height, in seconds (a height must stay positive).
    pub height_min: f64,
    /// RTT samples per node whose median the update uses (at least 1).
    pub latency_filter_size: usize,
    /// How weakly gravity pulls towards the origin (larger is weaker).
    pub gravity_rho: f64,
}

/// What an update did that is worth a metric.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CoordinateStats {
    /// Times the coordinate became non-finite and was reset to the origin.
    pub resets: u64,
    /// Observations that reported a zero RTT (coarse clocks; Consul issue 3789).
    pub zero_rtts: u64,
    /// Nodes dropped from the latency filter to stay under [`LATENCY_FILTER_NODES_MAX`].
    pub filters_evicted: u64,
}

/// Why a configuration or an observation was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CoordinateError {
    #[error("invalid coordinate config: {reason}")]
    InvalidConfig { reason: &'static str },
    #[error("coordinate is invalid")]
    InvalidCoordinate,
    #[error("dimensions aren't compatible: expected {expected}, got {actual}")]
    IncompatibleDimensions { expected: usize, actual: usize },
    #[error("round trip time {rtt:?} is not in 0..={COORDINATE_RTT_MS_MAX} ms")]
    RttOutOfRange { rtt: Duration },
}

/// This node's coordinate and what it needs to move it: see the module doc.
#[derive(Clone, Debug)]
pub struct CoordinateClient {
    config: CoordinateConfig,
    coordinate: Coordinate,
    origin: Coordinate,
    /// Ring of the last `adjustment_window_size` (RTT − raw distance) samples.
    adjustment_samples: Vec<f64>,
    adjustment_position: usize,
    latency_filters: HashMap<String, LatencyFilter>,
    /// Counts observations; orders the latency filters for eviction.
    observation_sequence: u64,
    /// splitmix64 state for random directions.
    random_state: u64,
    stats: CoordinateStats,
}

/// The last few RTT samples of one node, oldest first.
#[derive(Clone, Debug)]
struct LatencyFilter {
    samples_s: Vec<f64>,
    observed_at_sequence: u64,
}

impl CoordinateConfig {
    /// Consul's values (Serf's `DefaultConfig`), which every Consul agent uses on the LAN.
    pub fn consul_default() -> CoordinateConfig {
        CoordinateConfig {
            dimensionality: 8,
            vivaldi_error_max: 1.5,
            vivaldi_ce: 0.25,
            vivaldi_cc: 0.25,
            adjustment_window_size: 20,
            height_min: 10.0e-6,
            latency_filter_size: 3,
            gravity_rho: 150.0,
        }
    }

    fn validate(&self) -> Result<(), CoordinateError> {
        let reason = if self.dimensionality == 0 || self.dimensionality > COORDINATE_DIMENSIONALITY_MAX {
            "dimensionality must be in 1..=64"
        } else if self.latency_filter_size == 0 {
            "latency filter size must be at least 1"
        } else if ![self.vivaldi_error_max, self.vivaldi_ce, self.vivaldi_cc, self.height_min].iter().all(|v| v.is_finite() && *v >= 0.0) {
            "error max, ce, cc and height min must be finite and not negative"
        } else if !(self.gravity_rho.is_finite() && self.gravity_rho > 0.0) {
            "gravity rho must be finite and positive"
        } else {
            return Ok(());
        };
        Err(CoordinateError::InvalidConfig { reason })
    }
}

impl Coordinate {
    /// A coordinate at the origin that knows nothing yet (maximal error).
    pub fn new(config: &CoordinateConfig) -> Coordinate {
        Coordinate { vec: vec![0.0; config.dimensionality], error: config.vivaldi_error_max, adjustment: 0.0, height: config.height_min }
    }

    /// Every value is finite, error and height are not negative, and the dimensionality is in
    /// 1..=[`COORDINATE_DIMENSIONALITY_MAX`]. Does not compare with anyone's dimensionality.
    pub fn is_valid(&self) -> bool {
        (1..=COORDINATE_DIMENSIONALITY_MAX).contains(&self.vec.len())
            && self.vec.iter().all(|v| v.is_finite())
            && self.adjustment.is_finite()
            && self.error.is_finite()
            && self.error >= 0.0
            && self.height.is_finite()
            && self.height >= 0.0
    }

    /// Both have the same dimensionality, so a distance between them means something.
    pub fn is_compatible_with(&self, other: &Coordinate) -> bool {
        self.vec.len() == other.vec.len()
    }

    /// The estimated RTT between the two nodes. Symmetric; `Duration::MAX` ("unknown, sort
    /// last") when either coordinate is invalid or they are not compatible.
    pub fn distance_to(&self, other: &Coordinate) -> Duration {
        if !(self.is_valid() && other.is_valid() && self.is_compatible_with(other)) {
            return Duration::MAX;
        }
        let raw_s = self.raw_distance_s(other);
        // One sum of both adjustments keeps the result exactly symmetric.
        let adjusted_s = raw_s + (self.adjustment + other.adjustment);
        let distance_s = if adjusted_s > 0.0 { adjusted_s } else { raw_s };
        Duration::try_from_secs_f64(distance_s).unwrap_or(Duration::MAX)
    }

    /// Vivaldi distance without adjustments; assumes compatible dimensions.
    fn raw_distance_s(&self, other: &Coordinate) -> f64 {
        let squares: f64 = self.vec.iter().zip(&other.vec).map(|(a, b)| (a - b) * (a - b)).sum();
        squares.sqrt() + self.height + other.height
    }
}

impl CoordinateClient {
    /// A client at the origin. `seed` drives the random directions (coinciding coordinates).
    pub fn new(config: CoordinateConfig, seed: u64) -> Result<CoordinateClient, CoordinateError> {
        config.validate()?;
        Ok(CoordinateClient {
            coordinate: Coordinate::new(&config),
            origin: Coordinate::new(&config),
            adjustment_samples: vec![0.0; config.adjustment_window_size],
            adjustment_position: 0,
            latency_filters: HashMap::new(),
            observation_sequence: 0,
            random_state: seed,
            stats: CoordinateStats::default(),
            config,
        })
    }

    /// This node's current coordinate.
    pub fn coordinate(&self) -> Coordinate {
        self.coordinate.clone()
    }

    /// Counters since the client was created.
    pub fn stats(&self) -> CoordinateStats {
        self.stats
    }

    /// Drops what the latency filter remembers about `node` (it left the cluster).
    pub fn forget(&mut self, node: &str) {
        self.latency_filters.remove(node);
    }

    /// Moves this node's coordinate after observing `rtt` to `node`, whose coordinate is
    /// `other`, and returns the new coordinate. Nothing changes when the observation is refused.
    pub fn update(&mut self, node: &str, other: &Coordinate, rtt: Duration) -> Result<Coordinate, CoordinateError> {
        if !other.is_valid() {
            return Err(CoordinateError::InvalidCoordinate);
        }
        if !self.coordinate.is_compatible_with(other) {
            return Err(CoordinateError::IncompatibleDimensions { expected: self.coordinate.vec.len(), actual: other.vec.len() });
        }
        if rtt > Duration::from_millis(COORDINATE_RTT_MS_MAX) {
            return Err(CoordinateError::RttOutOfRange { rtt });
        }
        if rtt.is_zero() {
            self.stats.zero_rtts += 1;
        }
        let rtt_s = self.filtered_rtt_s(node, rtt.as_secs_f64());
        self.update_vivaldi(other, rtt_s);
        self.update_adjustment(other, rtt_s);
        self.update_gravity();
        if !self.coordinate.is_valid() {
            self.stats.resets += 1;
            self.coordinate = Coordinate::new(&self.config);
        }
        Ok(self.coordinate.clone())
    }

    /// Adds a sample to `node`'s moving window and returns the window's median.
    fn filtered_rtt_s(&mut self, node: &str, rtt_s: f64) -> f64 {
        self.observation_sequence += 1;
        let window = self.config.latency_filter_size;
        if !self.latency_filters.contains_key(node) {
            if self.latency_filters.len() >= LATENCY_FILTER_NODES_MAX {
                self.evict_least_recent_filter();
            }
            let filter = LatencyFilter { samples_s: Vec::with_capacity(window), observed_at_sequence: 0 };
            self.latency_filters.insert(node.to_string(), filter);
        }
        let Some(filter) = self.latency_filters.get_mut(node) else { return rtt_s };
        filter.observed_at_sequence = self.observation_sequence;
        if filter.samples_s.len() >= window {
            filter.samples_s.remove(0);
        }
        filter.samples_s.push(rtt_s);
        let mut sorted = filter.samples_s.clone();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    }

    /// O(nodes), but only when a new node arrives with the filter full.
    fn evict_least_recent_filter(&mut self) {
        let oldest = self.latency_filters.iter().min_by_key(|(_, filter)| filter.observed_at_sequence).map(|(node, _)| node.clone());
        if let Some(node) = oldest {
            self.latency_filters.remove(&node);
            self.stats.filters_evicted += 1;
        }
    }

    fn update_vivaldi(&mut self, other: &Coordinate, rtt_s: f64) {
        let rtt_s = rtt_s.max(ZERO_THRESHOLD_S);
        let distance_s = self.coordinate.distance_to(other).as_secs_f64();
        let wrongness = (distance_s - rtt_s).abs() / rtt_s;
        let total_error = (self.coordinate.error + other.error).max(ZERO_THRESHOLD_S);
        let weight = self.coordinate.error / total_error;
        let ce = self.config.vivaldi_ce;
        let error = ce * weight * wrongness + self.coordinate.error * (1.0 - ce * weight);
        self.coordinate.error = error.min(self.config.vivaldi_error_max);
        let force = self.config.vivaldi_cc * weight * (rtt_s - distance_s);
        self.apply_force(force, other.clone());
    }

    fn update_adjustment(&mut self, other: &Coordinate, rtt_s: f64) {
        let window = self.adjustment_samples.len();
        if window == 0 {
            return;
        }
        // The raw distance: the current adjustments must not feed back into themselves.
        self.adjustment_samples[self.adjustment_position] = rtt_s - self.coordinate.raw_distance_s(other);
        self.adjustment_position = (self.adjustment_position + 1) % window;
        self.coordinate.adjustment = self.adjustment_samples.iter().sum::<f64>() / (2.0 * window as f64);
    }

    fn update_gravity(&mut self) {
        let distance_s = self.origin.distance_to(&self.coordinate).as_secs_f64();
        let force = -(distance_s / self.config.gravity_rho).powi(2);
        self.apply_force(force, self.origin.clone());
    }

    /// Pushes this coordinate away from `other` by `force` seconds (towards it if negative).
    fn apply_force(&mut self, force: f64, other: Coordinate) {
        let (unit, magnitude) = self.unit_vector_from(&other.vec);
        for (value, direction) in self.coordinate.vec.iter_mut().zip(&unit) {
            *value += direction * force;
        }
        if magnitude > ZERO_THRESHOLD_S {
            let height = (self.coordinate.height + other.height) * force / magnitude + self.coordinate.height;
            self.coordinate.height = height.max(self.config.height_min);
        }
    }

    /// The unit vector from `from` towards this coordinate, and the distance between them; a
    /// random direction (distance 0) when they coincide.
    fn unit_vector_from(&mut self, from: &[f64]) -> (Vec<f64>, f64) {
        let mut unit: Vec<f64> = self.coordinate.vec.iter().zip(from).map(|(a, b)| a - b).collect();
        let magnitude = norm(&unit);
        if magnitude > ZERO_THRESHOLD_S {
            unit.iter_mut().for_each(|v| *v /= magnitude);
            return (unit, magnitude);
        }
        unit.iter_mut().for_each(|v| *v = next_unit_f64(&mut self.random_state) - 0.5);
        let random_magnitude = norm(&unit);
        if random_magnitude > ZERO_THRESHOLD_S {
            unit.iter_mut().for_each(|v| *v /= random_magnitude);
        } else {
            // Vanishingly rare: fall back to the first axis.
            unit.iter_mut().enumerate().for_each(|(position, v)| *v = if position == 0 { 1.0 } else { 0.0 });
        }
        (unit, 0.0)
    }
}

fn norm(vector: &[f64]) -> f64 {
    vector.iter().map(|v| v * v).sum::<f64>().sqrt()
}

/// splitmix64, mapped to [0, 1): enough for directions, and reproducible from a seed.
fn next_unit_f64(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests;
