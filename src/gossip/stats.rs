//! Gossip counters, and rate-limited logging of dropped input.
//!
//! Every packet or message that is refused is counted here by reason, so that hostile or
//! misconfigured peers show up in `Gossip::stats` instead of in panics or log floods.
//! Counters only grow (relaxed atomics: they are statistics, not synchronisation).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::GossipStats;
use super::envelope::Refused;

/// At most one debug line per reason in this period.
const DROP_LOG_PERIOD: Duration = Duration::from_secs(1);

/// The live counters behind `GossipStats`.
#[derive(Default)]
pub(super) struct Counters {
    pub(super) packets_received: AtomicU64,
    pub(super) packets_sent: AtomicU64,
    pub(super) bytes_received: AtomicU64,
    pub(super) bytes_sent: AtomicU64,
    pub(super) send_errors: AtomicU64,
    pub(super) dropped_malformed: AtomicU64,
    pub(super) dropped_decrypt: AtomicU64,
    pub(super) dropped_oversized: AtomicU64,
    pub(super) dropped_plaintext: AtomicU64,
    pub(super) foca_errors: AtomicU64,
    pub(super) push_pulls_served: AtomicU64,
    pub(super) push_pulls_failed: AtomicU64,
    pub(super) tcp_conns_refused: AtomicU64,
    pub(super) coordinates_refused: AtomicU64,
}

/// Adds one to `counter`.
pub(super) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub(super) fn received(&self, bytes: usize) {
        bump(&self.packets_received);
        self.bytes_received.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(super) fn sent(&self, bytes: usize) {
        bump(&self.packets_sent);
        self.bytes_sent.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Counts an envelope refusal under its reason.
    pub(super) fn refused(&self, refused: Refused) {
        bump(match refused {
            Refused::Malformed => &self.dropped_malformed,
            Refused::Decrypt => &self.dropped_decrypt,
            Refused::Plaintext => &self.dropped_plaintext,
        });
    }

    pub(super) fn snapshot(&self) -> GossipStats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        GossipStats {
            packets_received: load(&self.packets_received),
            packets_sent: load(&self.packets_sent),
            bytes_received: load(&self.bytes_received),
            bytes_sent: load(&self.bytes_sent),
            send_errors: load(&self.send_errors),
            dropped_malformed: load(&self.dropped_malformed),
            dropped_decrypt: load(&self.dropped_decrypt),
            dropped_oversized: load(&self.dropped_oversized),
            dropped_plaintext: load(&self.dropped_plaintext),
            foca_errors: load(&self.foca_errors),
            push_pulls_served: load(&self.push_pulls_served),
            push_pulls_failed: load(&self.push_pulls_failed),
            tcp_conns_refused: load(&self.tcp_conns_refused),
            coordinates_refused: load(&self.coordinates_refused),
        }
    }
}

/// Logs dropped input at debug level, at most once per `DROP_LOG_PERIOD` per reason.
#[derive(Default)]
pub(super) struct DropLog {
    last: HashMap<&'static str, Instant>,
}

impl DropLog {
    /// Whether a line about `reason` may be logged now (and records that it was).
    pub(super) fn allow(&mut self, reason: &'static str, now: Instant) -> bool {
        match self.last.get(reason) {
            Some(last) if now.saturating_duration_since(*last) < DROP_LOG_PERIOD => false,
            _ => {
                self.last.insert(reason, now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_log_is_rate_limited_per_reason() {
        let mut log = DropLog::default();
        let now = Instant::now();
        assert!(log.allow("decrypt", now));
        assert!(!log.allow("decrypt", now + Duration::from_millis(10)));
        assert!(log.allow("malformed", now));
        assert!(log.allow("decrypt", now + DROP_LOG_PERIOD));
    }

    #[test]
    fn refusals_land_in_their_counter() {
        let counters = Counters::default();
        counters.refused(Refused::Decrypt);
        counters.refused(Refused::Plaintext);
        counters.refused(Refused::Plaintext);
        let stats = counters.snapshot();
        assert_eq!((stats.dropped_decrypt, stats.dropped_plaintext, stats.dropped_malformed), (1, 2, 0));
    }
}
