//! Consul's `StatusHandler`: `SuccessBeforePassing`, `FailuresBeforeWarning` and
//! `FailuresBeforeCritical` as consecutive counters between a probe and the report.
//!
//! Pure: it is fed each run's status and says what, if anything, to report. As in Consul the
//! counters start at their thresholds, so the first run reports at once; passing and warning
//! results count as successes; a failure below the critical threshold but at the warning one
//! reports warning; anything under the thresholds is not reported (the check keeps its
//! previous status).

use super::CheckStatus;

/// The three thresholds (0 means not set, which behaves as 1 would: report at once).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Thresholds {
    pub success_before_passing: u32,
    /// Consul defaults this to `failures_before_critical` when not set.
    pub failures_before_warning: u32,
    pub failures_before_critical: u32,
}

/// The counters of one check.
#[derive(Clone, Debug)]
pub(super) struct StatusHandler {
    thresholds: Thresholds,
    successes: u32,
    failures: u32,
}

impl StatusHandler {
    pub(super) fn new(mut thresholds: Thresholds) -> StatusHandler {
        if thresholds.failures_before_warning == 0 {
            thresholds.failures_before_warning = thresholds.failures_before_critical;
        }
        StatusHandler { thresholds, successes: thresholds.success_before_passing, failures: thresholds.failures_before_critical }
    }

    /// The status to report for this run's `status`, or `None` to report nothing.
    pub(super) fn update(&mut self, status: CheckStatus) -> Option<CheckStatus> {
        if status != CheckStatus::Critical {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
            if self.successes >= self.thresholds.success_before_passing {
                return Some(status);
            }
            tracing::warn!(
                success_count = self.successes,
                success_threshold = self.thresholds.success_before_passing,
                "check passed but has not reached success threshold"
            );
            return None;
        }
        self.failures = self.failures.saturating_add(1);
        self.successes = 0;
        if self.failures >= self.thresholds.failures_before_critical {
            return Some(CheckStatus::Critical);
        }
        if self.failures >= self.thresholds.failures_before_warning {
            return Some(CheckStatus::Warning);
        }
        tracing::warn!(
            failure_count = self.failures,
            warning_threshold = self.thresholds.failures_before_warning,
            failure_threshold = self.thresholds.failures_before_critical,
            "check failed but has not reached warning/failure threshold"
        );
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CheckStatus::{Critical, Passing, Warning};

    fn run(thresholds: Thresholds, statuses: &[CheckStatus]) -> Vec<Option<CheckStatus>> {
        let mut handler = StatusHandler::new(thresholds);
        statuses.iter().map(|status| handler.update(*status)).collect()
    }

    #[test]
    fn without_thresholds_every_result_is_reported() {
        assert_eq!(run(Thresholds::default(), &[Passing, Critical, Warning]), [Some(Passing), Some(Critical), Some(Warning)]);
    }

    #[test]
    fn first_result_is_reported_at_once_then_counters_apply() {
        let thresholds = Thresholds { success_before_passing: 2, failures_before_warning: 0, failures_before_critical: 3 };
        let got = run(thresholds, &[Critical, Passing, Passing, Critical, Critical, Critical, Passing, Critical, Passing, Passing]);
        assert_eq!(
            got,
            // The first run reports (counters start at their thresholds); afterwards two
            // consecutive successes are needed, and three consecutive failures (warning
            // defaults to the critical threshold, so nothing in between).
            [Some(Critical), None, Some(Passing), None, None, Some(Critical), None, None, None, Some(Passing)]
        );
    }

    #[test]
    fn failures_before_warning_reports_warning_first() {
        let thresholds = Thresholds { success_before_passing: 0, failures_before_warning: 1, failures_before_critical: 3 };
        let got = run(thresholds, &[Passing, Critical, Critical, Critical, Critical, Passing]);
        assert_eq!(got, [Some(Passing), Some(Warning), Some(Warning), Some(Critical), Some(Critical), Some(Passing)]);
    }

    #[test]
    fn warnings_count_as_successes() {
        let thresholds = Thresholds { success_before_passing: 0, failures_before_warning: 0, failures_before_critical: 2 };
        assert_eq!(run(thresholds, &[Passing, Critical, Warning, Critical]), [Some(Passing), None, Some(Warning), None]);
    }
}
