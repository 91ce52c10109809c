//! The pure parts of check state: the output deferral, the critical clock, the reaper's pick.

use std::time::{Duration, Instant};

use super::*;
use crate::agent::local::{CheckOptions, CheckRunner, LocalCheck};

fn check(id: &str, service_id: &str, deregister_after_ms: u64) -> LocalCheck {
    LocalCheck {
        runner: Some(CheckRunner::Ttl { ttl_ms: 1000 }),
        options: CheckOptions { deregister_critical_service_after_ms: deregister_after_ms, ..CheckOptions::default() },
        ..LocalCheck::for_test(id, service_id)
    }
}

fn state(checks: Vec<LocalCheck>) -> LocalState {
    let mut local = LocalState::default();
    for check in checks {
        local.checks.insert(check.registration.check_id.clone(), check);
    }
    local
}

#[test]
fn a_status_change_syncs_at_once_and_is_persisted() {
    let mut local = state(vec![check("c", "", 0)]);
    let now = Instant::now();
    let (sync_now, persist) = record(&mut local, "c", HealthStatus::Passing, "ok", now, 300_000);
    assert!(sync_now);
    assert_eq!(persist.expect("persisted").registration.status, HealthStatus::Passing);
    assert!(local.deferred_output.is_empty() && local.critical_since.is_empty());
}

#[test]
fn an_output_change_alone_is_deferred_by_the_update_interval() {
    let mut local = state(vec![check("c", "", 0)]);
    let now = Instant::now();
    let (sync_now, persist) = record(&mut local, "c", HealthStatus::Critical, "new output", now, 60_000);
    assert!(!sync_now && persist.is_none());
    assert_eq!(local.checks["c"].registration.output, "new output", "the agent shows the new output at once");
    let deadline = local.deferred_output["c"];
    assert!(deadline >= now + Duration::from_secs(30) && deadline < now + Duration::from_secs(90), "Consul's interval/2 + stagger");
    // A second output change rides on the pending deferral.
    record(&mut local, "c", HealthStatus::Critical, "newer", now + Duration::from_secs(1), 60_000);
    assert_eq!(local.deferred_output["c"], deadline);
    // With the interval at 0, an output change syncs at once.
    let mut undeferred = state(vec![check("c", "", 0)]);
    assert_eq!(record(&mut undeferred, "c", HealthStatus::Critical, "x", now, 0), (true, None));
    assert!(undeferred.deferred_output.is_empty());
}

#[test]
fn classify_sees_the_critical_clock_too() {
    let registration = check("c", "", 0).registration;
    assert_eq!(classify(&registration, true, HealthStatus::Critical, ""), Change::None);
    assert_eq!(classify(&registration, false, HealthStatus::Critical, ""), Change::Changed, "the clock must start");
    assert_eq!(classify(&registration, true, HealthStatus::Critical, "other"), Change::Changed);
}

#[test]
fn services_critical_longer_than_their_limit_are_reaped_with_the_one_minute_minimum() {
    let mut local = state(vec![check("short", "web", 1_000), check("long", "db", 600_000), check("never", "api", 0), check("node", "", 1_000)]);
    let start = Instant::now();
    for id in ["short", "long", "never", "node"] {
        record(&mut local, id, HealthStatus::Critical, "", start, 0);
    }
    assert!(services_to_reap(&local, start + Duration::from_secs(30)).is_empty(), "1s is raised to the 1m minimum");
    assert_eq!(services_to_reap(&local, start + Duration::from_secs(61)), ["web"]);
    assert_eq!(services_to_reap(&local, start + Duration::from_secs(601)), ["db", "web"]);
    // A passing result stops the clock.
    record(&mut local, "short", HealthStatus::Passing, "", start, 0);
    assert_eq!(services_to_reap(&local, start + Duration::from_secs(601)), ["db"]);
}
