//! Consul's in-memory metrics sink (go-metrics' `InmemSink`, as Consul configures it): values
//! are aggregated per 10-second interval, aligned on the wall clock, and the last minute of
//! intervals is kept. `/v1/agent/metrics` shows the most recent *finished* interval (the
//! current one while it is the only one), as `DisplayMetrics` does.
//!
//! Within an interval a gauge keeps its last value, and counters and samples keep an
//! [`Aggregate`] (count, sum, sum of squares, min, max). A gauge not set during the shown
//! interval is not shown, as in Consul; the agent sets its gauges every second.
//!
//! Pure: the interval number is an argument.

use std::collections::VecDeque;

/// Consul's inmem interval (`metrics.NewInmemSink(10*time.Second, time.Minute)`).
pub const INTERVAL_S: u64 = 10;
/// Intervals kept per series: one minute, Consul's retention.
pub const INTERVALS_KEPT_MAX: usize = 6;

/// The interval a wall-clock time (seconds since the epoch) falls in.
pub fn interval_of(unix_s: u64) -> u64 {
    unix_s / INTERVAL_S
}

/// What a counter or sample gathered in one interval (go-metrics' `AggregateSample`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Aggregate {
    pub count: u64,
    pub sum: f64,
    pub sum_squares: f64,
    pub min: f64,
    pub max: f64,
}

impl Aggregate {
    pub fn ingest(&mut self, value: f64) {
        self.count += 1;
        self.sum += value;
        self.sum_squares += value * value;
        if self.count == 1 || value < self.min {
            self.min = value;
        }
        if self.count == 1 || value > self.max {
            self.max = value;
        }
    }

    pub fn mean(&self) -> f64 {
        if self.count == 0 { 0.0 } else { self.sum / self.count as f64 }
    }

    /// The sample standard deviation, go-metrics' formula (0 below two values).
    pub fn stddev(&self) -> f64 {
        let count = self.count as f64;
        let divisor = count * (count - 1.0);
        if divisor == 0.0 {
            return 0.0;
        }
        ((count * self.sum_squares - self.sum * self.sum) / divisor).max(0.0).sqrt()
    }

    /// The sum per second over the interval.
    pub fn rate(&self) -> f64 {
        self.sum / INTERVAL_S as f64
    }
}

/// One series' values in the intervals kept, newest last.
#[derive(Debug, Default)]
pub struct Intervals<T> {
    kept: VecDeque<(u64, T)>,
}

impl<T: Default> Intervals<T> {
    /// The value of `interval`, started when it is newer than every kept one (dropping the
    /// oldest beyond [`INTERVALS_KEPT_MAX`]). A late write for an older interval lands in the
    /// newest one rather than reopening the past.
    pub fn current(&mut self, interval: u64) -> &mut T {
        let newest = self.kept.back().map(|(number, _)| *number);
        if newest.is_none_or(|newest| interval > newest) {
            if self.kept.len() == INTERVALS_KEPT_MAX {
                self.kept.pop_front();
            }
            self.kept.push_back((interval, T::default()));
        }
        &mut self.kept.back_mut().expect("an interval was just ensured").1
    }

    pub fn at(&self, interval: u64) -> Option<&T> {
        self.kept.iter().find(|(number, _)| *number == interval).map(|(_, value)| value)
    }
}

/// The interval `/v1/agent/metrics` shows: the last finished one, or the current one when
/// the sink started during it (Consul shows the current interval while it is the only one).
pub fn shown_interval(current: u64, first: u64) -> u64 {
    if current > first { current - 1 } else { current }
}

/// One interval of every series, as `/v1/agent/metrics` shows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricsSummary {
    /// The start of the interval, seconds since the epoch.
    pub interval_start_s: u64,
    pub gauges: Vec<GaugeValue>,
    pub counters: Vec<SampledValue>,
    pub samples: Vec<SampledValue>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct GaugeValue {
    pub name: String,
    pub value: f64,
    pub labels: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SampledValue {
    pub name: String,
    pub aggregate: Aggregate,
    pub labels: Vec<(String, String)>,
}

/// Consul sorts each list by the series' key: its name, then `;label=value` per label.
pub(super) fn sort_key(name: &str, labels: &[(String, String)]) -> String {
    let mut key = name.to_string();
    for (label, value) in labels {
        key.push(';');
        key.push_str(label);
        key.push('=');
        key.push_str(value);
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_aggregate_matches_go_metrics() {
        let mut aggregate = Aggregate::default();
        for value in [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0] {
            aggregate.ingest(value);
        }
        assert_eq!((aggregate.count, aggregate.sum, aggregate.min, aggregate.max), (8, 40.0, 2.0, 9.0));
        assert_eq!(aggregate.mean(), 5.0);
        // Sample standard deviation of that classic set: sqrt(32 / 7).
        assert!((aggregate.stddev() - (32.0f64 / 7.0).sqrt()).abs() < 1e-12);
        assert_eq!(aggregate.rate(), 4.0);
        let mut one = Aggregate::default();
        one.ingest(-3.0);
        assert_eq!((one.min, one.max, one.stddev()), (-3.0, -3.0, 0.0));
    }

    #[test]
    fn intervals_keep_the_last_minute_and_never_reopen_the_past() {
        let mut intervals: Intervals<u64> = Intervals::default();
        for interval in 100..110 {
            *intervals.current(interval) += interval;
        }
        assert_eq!(intervals.at(103), None, "older than a minute");
        assert_eq!(intervals.at(104), Some(&104));
        assert_eq!(intervals.at(109), Some(&109));
        *intervals.current(105) += 1;
        assert_eq!(intervals.at(109), Some(&110), "a late write lands in the newest interval");
        assert_eq!(shown_interval(109, 100), 108);
        assert_eq!(shown_interval(100, 100), 100);
    }
}
