//! What the soak counts and finds, and how it is reported: counters per port and outcome, the
//! findings (each with the request that produced it), the agents' RSS samples, and the verdict
//! "RSS flat within N%" as the table on stdout and as JSON.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde_json::json;

/// Findings kept with their request; the rest are only counted.
const FINDINGS_KEPT_MAX: usize = 100;

/// One thing the cluster should not have done, and what made it do it.
#[derive(Clone, Debug)]
pub(crate) struct Finding {
    /// Seconds into the run.
    pub(crate) at_s: f64,
    /// `http`, `dns`, `server` or `cluster`.
    pub(crate) port: &'static str,
    pub(crate) what: String,
    /// The request (escaped bytes, `wire::shown`), or empty for cluster-wide findings.
    pub(crate) request: String,
}

/// Counters and findings, shared by every task of the run.
pub(crate) struct Tally {
    started: Instant,
    counts: Mutex<BTreeMap<String, u64>>,
    findings: Mutex<Vec<Finding>>,
    findings_total: AtomicU64,
}

impl Tally {
    pub(crate) fn new() -> Tally {
        Tally { started: Instant::now(), counts: Mutex::new(BTreeMap::new()), findings: Mutex::new(Vec::new()), findings_total: AtomicU64::new(0) }
    }

    /// Adds one to the counter `key` (`port.outcome`).
    pub(crate) fn count(&self, key: &str) {
        self.add(key, 1);
    }

    /// Adds `amount` to the counter `key`.
    pub(crate) fn add(&self, key: &str, amount: u64) {
        let mut counts = self.counts.lock().expect("tally lock");
        match counts.get_mut(key) {
            Some(count) => *count += amount,
            None => {
                counts.insert(key.to_string(), amount);
            }
        }
    }

    /// Records a finding and prints it at once (a long run shows its findings as they come).
    pub(crate) fn finding(&self, port: &'static str, what: impl Into<String>, request: impl Into<String>) {
        let finding = Finding { at_s: self.started.elapsed().as_secs_f64(), port, what: what.into(), request: request.into() };
        eprintln!("FINDING [{port}] at {:.1} s: {}\n  request: {}", finding.at_s, finding.what, finding.request);
        self.findings_total.fetch_add(1, Ordering::Relaxed);
        let mut findings = self.findings.lock().expect("tally lock");
        if findings.len() < FINDINGS_KEPT_MAX {
            findings.push(finding);
        }
    }

    pub(crate) fn findings_total(&self) -> u64 {
        self.findings_total.load(Ordering::Relaxed)
    }

    pub(crate) fn elapsed_s(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    fn counts(&self) -> BTreeMap<String, u64> {
        self.counts.lock().expect("tally lock").clone()
    }

    fn findings(&self) -> Vec<Finding> {
        self.findings.lock().expect("tally lock").clone()
    }
}

/// One agent's RSS over the run: (seconds into the run, KiB).
pub(crate) struct RssSeries {
    pub(crate) agent: String,
    pub(crate) samples: Vec<(f64, u64)>,
    /// The agent's own memory counters at each sample (`/v1/agent/self`: the catalog's table
    /// sizes, RocksDB's memory, the heap), to tell growing state from a growing process.
    pub(crate) stats: Vec<(f64, BTreeMap<String, u64>)>,
}

/// One agent's RSS figures: at the end of the warm-up, then the least, most and last after it,
/// and the means of two windows as long as the warm-up: the one right after it ("early") and
/// the run's last ("late").
///
/// The verdict compares the two means, not two samples: RSS follows RocksDB's memtables, which
/// fill and are flushed over and over (a sawtooth of 10-20 MiB on a 50 MiB agent), so any one
/// sample says more about where a memtable was in its cycle than about growth.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RssFigures {
    pub(crate) warm_kib: u64,
    pub(crate) min_kib: u64,
    pub(crate) max_kib: u64,
    pub(crate) end_kib: u64,
    pub(crate) early_mean_kib: u64,
    pub(crate) late_mean_kib: u64,
}

impl RssFigures {
    /// (late mean - early mean) / early mean, in percent: what the verdict judges.
    pub(crate) fn trend_pct(&self) -> f64 {
        percent(self.late_mean_kib, self.early_mean_kib)
    }

    /// (end - warm) / warm, in percent.
    pub(crate) fn end_growth_pct(&self) -> f64 {
        percent(self.end_kib, self.warm_kib)
    }

    /// (max - warm) / warm, in percent.
    pub(crate) fn max_drift_pct(&self) -> f64 {
        percent(self.max_kib, self.warm_kib)
    }
}

/// The mean of the samples' KiB; `None` for no sample.
fn mean<'a>(samples: impl Iterator<Item = &'a (f64, u64)>) -> Option<u64> {
    let (count, total) = samples.fold((0u64, 0u64), |(n, sum), (_, kib)| (n + 1, sum + kib));
    (count > 0).then(|| total / count)
}

fn percent(value: u64, base: u64) -> f64 {
    (value as f64 - base as f64) / (base.max(1) as f64) * 100.0
}

impl RssSeries {
    /// Each counter that changed between the first sample after the warm-up and the last:
    /// (name, then, now).
    pub(crate) fn stats_changed(&self, warm_s: f64) -> Vec<(String, u64, u64)> {
        let mut after = self.stats.iter().filter(|(t, _)| *t >= warm_s).map(|(_, s)| s);
        let (Some(first), Some(last)) = (after.next(), self.stats.last().map(|(_, s)| s)) else { return Vec::new() };
        last.iter().filter_map(|(name, &now)| {
            let then = first.get(name).copied().unwrap_or(0);
            (then != now).then(|| (name.clone(), then, now))
        }).collect()
    }

    /// The figures once the warm-up (`warm_s`) is over; `None` without a sample after it.
    pub(crate) fn figures(&self, warm_s: f64) -> Option<RssFigures> {
        let after: Vec<u64> = self.samples.iter().filter(|(t, _)| *t >= warm_s).map(|(_, kib)| *kib).collect();
        let (&warm_kib, &end_kib) = (after.first()?, after.last()?);
        let last_s = self.samples.last()?.0;
        let early_mean_kib = mean(self.samples.iter().filter(|(t, _)| *t >= warm_s && *t < 2.0 * warm_s))?;
        let late_mean_kib = mean(self.samples.iter().filter(|(t, _)| *t >= warm_s && *t > last_s - warm_s))?;
        Some(RssFigures { warm_kib, min_kib: *after.iter().min()?, max_kib: *after.iter().max()?, end_kib, early_mean_kib, late_mean_kib })
    }
}

/// Everything the run measured.
pub(crate) struct Report<'a> {
    pub(crate) duration_s: f64,
    pub(crate) warm_s: f64,
    pub(crate) seed: u64,
    pub(crate) build: &'static str,
    pub(crate) rss_growth_max_pct: Option<f64>,
    pub(crate) tally: &'a Tally,
    pub(crate) rss: &'a [RssSeries],
    /// Raft terms (first, last) seen by the probes: elections during the run.
    pub(crate) terms: (u64, u64),
}

impl Report<'_> {
    /// True when RSS grew past the limit on some agent (never without a limit).
    pub(crate) fn rss_grew(&self) -> bool {
        let Some(limit) = self.rss_growth_max_pct else { return false };
        self.rss.iter().filter_map(|s| s.figures(self.warm_s)).any(|f| f.trend_pct() > limit)
    }

    /// The table on stdout.
    pub(crate) fn print(&self) {
        println!("soak: {:.0} s ({} build), seed {}, warm-up {:.0} s, Raft term {} -> {}", self.duration_s, self.build, self.seed, self.warm_s, self.terms.0, self.terms.1);
        let counts = self.tally.counts();
        let mut ports: Vec<&str> = counts.keys().filter_map(|k| k.split('.').next()).collect();
        ports.dedup();
        for port in ports {
            let row: Vec<String> = counts.iter().filter(|(k, _)| k.split('.').next() == Some(port)).map(|(k, v)| format!("{} {v}", &k[port.len() + 1..])).collect();
            println!("  {port:<14} {}", row.join(" | "));
        }
        println!(
            "  {:<6} {:>9} {:>8} {:>8} {:>8} {:>11} {:>10} {:>10} {:>10} {:>7}",
            "agent", "warm MiB", "min MiB", "max MiB", "end MiB", "end growth", "max drift", "early MiB", "late MiB", "trend"
        );
        for series in self.rss {
            match series.figures(self.warm_s) {
                Some(f) => println!(
                    "  {:<6} {:>9.1} {:>8.1} {:>8.1} {:>8.1} {:>10.1}% {:>9.1}% {:>10.1} {:>10.1} {:>6.1}%",
                    series.agent,
                    mib(f.warm_kib),
                    mib(f.min_kib),
                    mib(f.max_kib),
                    mib(f.end_kib),
                    f.end_growth_pct(),
                    f.max_drift_pct(),
                    mib(f.early_mean_kib),
                    mib(f.late_mean_kib),
                    f.trend_pct()
                ),
                None => println!("  {:<6} no sample after the warm-up", series.agent),
            }
        }
        for series in self.rss {
            let changed: Vec<String> = series
                .stats_changed(self.warm_s)
                .into_iter()
                .map(|(name, then, now)| if name.ends_with("_bytes") { format!("{name} {:.1}->{:.1} MiB", mib(then / 1024), mib(now / 1024)) } else { format!("{name} {then}->{now}") })
                .collect();
            println!("  {:<6} after the warm-up: {}", series.agent, if changed.is_empty() { "no counter changed".to_string() } else { changed.join(", ") });
        }
        let trend = self.rss.iter().filter_map(|s| s.figures(self.warm_s)).map(|f| f.trend_pct()).fold(f64::MIN, f64::max);
        match self.rss_growth_max_pct {
            Some(limit) => println!(
                "  RSS flat within {limit:.0}% (late window's mean against the early one's): {} (largest trend {trend:+.1}%)",
                if self.rss_grew() { "NO" } else { "yes" }
            ),
            None => println!("  RSS flatness not judged (largest trend {trend:+.1}%)"),
        }
        println!("  findings: {}", self.tally.findings_total());
        for finding in self.tally.findings() {
            println!("    [{}] {:.1} s: {}\n      request: {}", finding.port, finding.at_s, finding.what, finding.request);
        }
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        let rss: Vec<serde_json::Value> = self
            .rss
            .iter()
            .map(|series| match series.figures(self.warm_s) {
                Some(f) => json!({
                    "agent": series.agent, "warm_kib": f.warm_kib, "min_kib": f.min_kib, "max_kib": f.max_kib,
                    "end_kib": f.end_kib, "end_growth_pct": round1(f.end_growth_pct()), "max_drift_pct": round1(f.max_drift_pct()),
                    "early_mean_kib": f.early_mean_kib, "late_mean_kib": f.late_mean_kib, "trend_pct": round1(f.trend_pct()),
                    "samples": series.samples.iter().map(|(t, kib)| json!([round1(*t), kib])).collect::<Vec<_>>(),
                    "stats": series.stats.iter().map(|(t, stats)| json!([round1(*t), stats])).collect::<Vec<_>>(),
                }),
                None => json!({ "agent": series.agent, "samples": [] }),
            })
            .collect();
        let findings: Vec<serde_json::Value> =
            self.tally.findings().into_iter().map(|f| json!({ "at_s": round1(f.at_s), "port": f.port, "what": f.what, "request": f.request })).collect();
        json!({
            "duration_s": round1(self.duration_s),
            "warm_up_s": round1(self.warm_s),
            "build": self.build,
            "seed": self.seed,
            "raft_term": { "first": self.terms.0, "last": self.terms.1 },
            "counts": self.tally.counts(),
            "findings_total": self.tally.findings_total(),
            "findings": findings,
            "rss": rss,
            "rss_growth_max_pct": self.rss_growth_max_pct,
            "rss_flat": !self.rss_grew(),
        })
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn round1(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_start_after_the_warm_up() {
        let series = RssSeries { agent: "b1".into(), samples: vec![(0.0, 10), (5.0, 100), (6.0, 90), (7.0, 120), (8.0, 105)], stats: Vec::new() };
        let f = series.figures(5.0).unwrap();
        assert_eq!((f.warm_kib, f.min_kib, f.max_kib, f.end_kib), (100, 90, 120, 105));
        assert!((f.end_growth_pct() - 5.0).abs() < 1e-9);
        assert!((f.max_drift_pct() - 20.0).abs() < 1e-9);
        assert!(series.figures(9.0).is_none());
    }

    #[test]
    fn the_trend_compares_the_window_after_the_warm_up_with_the_last_one() {
        // warm-up 10 s: early window [10, 20), late window (90, 100]; a sawtooth in between.
        let samples: Vec<(f64, u64)> = (0..=100).map(|t| (t as f64, if t % 2 == 0 { 100 } else { 140 })).collect();
        let flat = RssSeries { agent: "b1".into(), samples: samples.clone(), stats: Vec::new() }.figures(10.0).unwrap();
        assert_eq!((flat.early_mean_kib, flat.late_mean_kib), (120, 120));
        assert!(flat.trend_pct().abs() < 1e-9 && flat.end_growth_pct() == 0.0 && flat.max_drift_pct() == 40.0);
        let growing: Vec<(f64, u64)> = samples.iter().map(|&(t, kib)| (t, kib + t as u64)).collect();
        let grew = RssSeries { agent: "b1".into(), samples: growing, stats: Vec::new() }.figures(10.0).unwrap();
        assert_eq!((grew.early_mean_kib, grew.late_mean_kib), (134, 215));
        assert!(grew.trend_pct() > 60.0);
    }

    #[test]
    fn stats_changed_compares_the_first_sample_after_the_warm_up_with_the_last() {
        let at = |t: f64, kv: u64, heap: u64| (t, BTreeMap::from([("kv".to_string(), kv), ("heap_in_use_bytes".to_string(), heap)]));
        let series = RssSeries { agent: "b1".into(), samples: Vec::new(), stats: vec![at(1.0, 1, 5), at(5.0, 7, 9), at(6.0, 3, 9), at(8.0, 4, 9)] };
        assert_eq!(series.stats_changed(5.0), vec![("kv".to_string(), 7, 4)]);
        assert!(series.stats_changed(9.0).is_empty());
    }
}
