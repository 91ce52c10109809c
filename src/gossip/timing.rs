//! Gossip timing: Consul's `gossip_lan` settings and the foca configuration derived from them.
//!
//! `GossipTiming` carries the knobs Consul exposes (memberlist's `DefaultLANConfig` values are
//! the defaults); `foca_config` turns them into a `foca::Config` for a pool of a given size,
//! scaling dissemination and suspicion with the pool the way memberlist does. The gossip task
//! re-applies `foca_config` whenever the number of members changes.
//!
//! Invariant: `foca_config` always returns a configuration foca accepts (non-zero periods,
//! probe RTT strictly below the probe period) and always the same `periodic_*` shape for the
//! same timing, because foca refuses to turn a periodic task on after start.

use std::num::{NonZeroU8, NonZeroUsize};
use std::time::Duration;

/// The largest foca payload, in bytes, before the envelope (version, nonce, tag) is added.
/// memberlist's UDP buffer is 1400 bytes too; with the 30 envelope bytes and the IP and UDP
/// headers a packet still fits a 1500-byte Ethernet MTU.
pub(super) const FOCA_PACKET_BYTES_MAX: usize = 1400;

/// How many members are asked to probe a member that did not answer a direct probe
/// (memberlist's `IndirectChecks`).
const INDIRECT_PROBES: usize = 3;

/// How often foca announces itself to one random member to discover members it missed.
const PERIODIC_ANNOUNCE_MS: u64 = 30_000;

/// How often foca announces itself to members it believes down, so that partitions heal
/// without a new `join`.
const PERIODIC_ANNOUNCE_DOWN_MS: u64 = 65_000;

/// How many down members each announce to down members reaches.
const PERIODIC_ANNOUNCE_DOWN_MEMBERS: usize = 2;

/// How long foca remembers a down identity. Identities renew themselves (a bumped
/// incarnation), so this only bounds memory; Consul forgets left members after 24 hours too.
const REMOVE_DOWN_AFTER_MS: u64 = 24 * 60 * 60 * 1000;

/// Consul's `gossip_lan` settings (memberlist's DefaultLANConfig values as defaults).
#[derive(Clone, Debug, PartialEq)]
pub struct GossipTiming {
    /// Members gossiped to every gossip interval (memberlist `GossipNodes`, 3).
    pub gossip_nodes: usize,
    /// Period of the piggy-back gossip, in milliseconds (`GossipInterval`, 200); 0 disables it.
    pub gossip_interval_ms: u64,
    /// Period between probes of a random member, in milliseconds (`ProbeInterval`, 1000).
    pub probe_interval_ms: u64,
    /// Wait for a direct probe's ack before indirect probes, in milliseconds
    /// (`ProbeTimeout`, 500).
    pub probe_timeout_ms: u64,
    /// Multiplier of the retransmissions of each update (`RetransmitMult`, 4).
    pub retransmit_mult: u32,
    /// Multiplier of the suspicion timeout (`SuspicionMult`, 4).
    pub suspicion_mult: u32,
}

impl GossipTiming {
    /// memberlist's `DefaultLANConfig`, which is also what Consul uses for `gossip_lan`.
    pub fn lan_default() -> GossipTiming {
        GossipTiming {
            gossip_nodes: 3,
            gossip_interval_ms: 200,
            probe_interval_ms: 1000,
            probe_timeout_ms: 500,
            retransmit_mult: 4,
            suspicion_mult: 4,
        }
    }
}

/// The foca configuration for a pool of `cluster_size` members: probe period, probe RTT,
/// indirect probes (3), suspicion timeout = suspicion_mult × max(1, log10(N)) × probe interval
/// (memberlist's formula), max transmissions = retransmit_mult × ceil(log10(N+1)), periodic
/// gossip every gossip_interval to gossip_nodes members, periodic announce, max packet size
/// 1400, remove_down_after 24 h.
///
/// Out-of-range timings are clamped rather than refused: the probe period is at least 2 ms,
/// the probe RTT lies in `1 ..= period - 1` ms, the suspicion timeout is at least one probe
/// period, and transmissions lie in `1 ..= 255`.
pub fn foca_config(cluster_size: usize, timing: &GossipTiming) -> foca::Config {
    let probe_period_ms = timing.probe_interval_ms.max(2);
    let probe_rtt_ms = timing.probe_timeout_ms.clamp(1, probe_period_ms - 1);
    let periodic_gossip = (timing.gossip_interval_ms > 0).then(|| foca::PeriodicParams {
        frequency: Duration::from_millis(timing.gossip_interval_ms),
        num_members: NonZeroUsize::new(timing.gossip_nodes.max(1)).expect("max(1) is never zero"),
    });
    foca::Config {
        probe_period: Duration::from_millis(probe_period_ms),
        probe_rtt: Duration::from_millis(probe_rtt_ms),
        num_indirect_probes: NonZeroUsize::new(INDIRECT_PROBES).expect("the constant is 3"),
        max_transmissions: max_transmissions(cluster_size, timing.retransmit_mult),
        suspect_to_down_after: suspicion_timeout(cluster_size, timing.suspicion_mult, probe_period_ms),
        remove_down_after: Some(Duration::from_millis(REMOVE_DOWN_AFTER_MS)),
        max_packet_size: NonZeroUsize::new(FOCA_PACKET_BYTES_MAX).expect("the constant is 1400"),
        notify_down_members: true,
        periodic_announce: Some(foca::PeriodicParams {
            frequency: Duration::from_millis(PERIODIC_ANNOUNCE_MS),
            num_members: NonZeroUsize::new(1).expect("1 is not zero"),
        }),
        periodic_announce_to_down_members: Some(foca::PeriodicParams {
            frequency: Duration::from_millis(PERIODIC_ANNOUNCE_DOWN_MS),
            num_members: NonZeroUsize::new(PERIODIC_ANNOUNCE_DOWN_MEMBERS).expect("the constant is 2"),
        }),
        periodic_gossip,
    }
}

/// memberlist's `retransmitLimit`: `mult × ceil(log10(n + 1))`, clamped to `1 ..= 255`.
fn max_transmissions(cluster_size: usize, retransmit_mult: u32) -> NonZeroU8 {
    let scale = (cluster_size as f64 + 1.0).log10().ceil();
    let transmissions = (f64::from(retransmit_mult) * scale).clamp(1.0, 255.0);
    NonZeroU8::new(transmissions as u8).expect("clamped to 1..=255")
}

/// memberlist's `suspicionTimeout`: `mult × max(1, log10(n)) × probe interval`, at least one
/// probe period.
fn suspicion_timeout(cluster_size: usize, suspicion_mult: u32, probe_period_ms: u64) -> Duration {
    let scale = (cluster_size.max(1) as f64).log10().max(1.0);
    let timeout_ms = f64::from(suspicion_mult) * scale * probe_period_ms as f64;
    Duration::from_millis((timeout_ms as u64).max(probe_period_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lan_default_matches_memberlist() {
        let config = foca_config(10, &GossipTiming::lan_default());
        assert_eq!(config.probe_period, Duration::from_secs(1));
        assert_eq!(config.probe_rtt, Duration::from_millis(500));
        assert_eq!(config.num_indirect_probes.get(), 3);
        // 4 × ceil(log10(11)) = 8; 4 × max(1, log10(10)) × 1 s = 4 s.
        assert_eq!(config.max_transmissions.get(), 8);
        assert_eq!(config.suspect_to_down_after, Duration::from_secs(4));
        assert_eq!(config.max_packet_size.get(), 1400);
        let gossip = config.periodic_gossip.expect("gossip is on by default");
        assert_eq!(gossip.frequency, Duration::from_millis(200));
        assert_eq!(gossip.num_members.get(), 3);
    }

    #[test]
    fn scales_with_cluster_size() {
        let timing = GossipTiming::lan_default();
        assert_eq!(foca_config(1, &timing).max_transmissions.get(), 4);
        assert_eq!(foca_config(3, &timing).suspect_to_down_after, Duration::from_secs(4));
        assert_eq!(foca_config(100, &timing).suspect_to_down_after, Duration::from_secs(8));
        assert_eq!(foca_config(100, &timing).max_transmissions.get(), 12);
        assert_eq!(foca_config(1000, &timing).suspect_to_down_after, Duration::from_secs(12));
    }

    #[test]
    fn absurd_timings_are_clamped() {
        let timing = GossipTiming {
            gossip_nodes: 0,
            gossip_interval_ms: 0,
            probe_interval_ms: 0,
            probe_timeout_ms: 10_000,
            retransmit_mult: 1000,
            suspicion_mult: 0,
        };
        let config = foca_config(0, &timing);
        assert!(config.probe_rtt < config.probe_period);
        assert!(config.probe_rtt > Duration::ZERO);
        assert_eq!(config.max_transmissions.get(), 1);
        assert!(config.suspect_to_down_after >= config.probe_period);
        assert!(config.periodic_gossip.is_none());
        assert_eq!(foca_config(10, &timing).max_transmissions.get(), 255);
    }
}
