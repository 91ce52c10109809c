//! What happens to a check's state between its results and the catalog: the
//! `check_update_interval` deferral of output-only changes, the critical-time clock, and
//! the reaper of services whose check stayed critical past `DeregisterCriticalServiceAfter`
//! (Consul's `agent.reapServices`).
//!
//! `classify`, `record` and `services_to_reap` are pure (time is passed in); the loop here
//! flushes due deferred outputs and reaps, on Consul's cadence.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::agent::Agent;
use crate::agent::local::{LocalCheck, LocalState};
use crate::catalog::command::CheckRegistration;
use crate::catalog::model::HealthStatus;

/// Consul's `check_reap_interval` (not user-configurable there either).
const CHECK_REAP_INTERVAL: Duration = Duration::from_secs(30);
/// Consul's `check_deregister_interval_min`: a shorter `DeregisterCriticalServiceAfter` is
/// raised to it (Consul logs a warning and does the same).
pub(crate) const CHECK_DEREGISTER_INTERVAL_MIN: Duration = Duration::from_secs(60);
/// How often the loop looks for deferred outputs that are due.
const UPKEEP_TICK: Duration = Duration::from_secs(1);

/// What a result changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// Nothing, not even the critical clock.
    None,
    /// Something to record.
    Changed,
}

/// Whether a result changes anything: status, output, or the critical clock.
pub(crate) fn classify(current: &CheckRegistration, critical_tracked: bool, status: HealthStatus, output: &str) -> Change {
    let same = current.status == status && current.output == output;
    if same && critical_tracked == (status == HealthStatus::Critical) { Change::None } else { Change::Changed }
}

/// Records a result in the local state. Returns whether to sync now, and the check to
/// persist (on a status change; output alone is not worth a synced disk write).
pub(crate) fn record(
    local: &mut LocalState,
    id: &str,
    status: HealthStatus,
    output: &str,
    now: Instant,
    update_interval_ms: u64,
) -> (bool, Option<LocalCheck>) {
    // Consul's `CriticalTime`: set by the first critical result, cleared by any other.
    if status == HealthStatus::Critical {
        local.critical_since.entry(id.to_string()).or_insert(now);
    } else {
        local.critical_since.remove(id);
    }
    let recorded = local.checks.update(id, |check| {
        let status_changed = check.registration.status != status;
        let output_changed = check.registration.output != output;
        check.registration.status = status;
        check.registration.output = output.to_string();
        (output_changed, status_changed.then(|| check.clone()))
    });
    // A status change persists the check; a change of output alone does not.
    let Some((output_changed, to_persist)) = recorded else { return (false, None) };
    if let Some(persisted) = to_persist {
        local.deferred_output.remove(id);
        return (true, Some(persisted));
    }
    if !output_changed {
        return (false, None);
    }
    if update_interval_ms == 0 {
        return (true, None);
    }
    // Consul: the write-back happens after half the interval plus a random stagger of up to
    // the whole interval; later output changes ride on the pending one.
    if !local.deferred_output.contains_key(id) {
        let interval = Duration::from_millis(update_interval_ms);
        let stagger = interval.mul_f64(rand::random::<f64>());
        local.deferred_output.insert(id.to_string(), now + interval / 2 + stagger);
    }
    (false, None)
}

/// The services whose check has been critical longer than its
/// `DeregisterCriticalServiceAfter` (at least the one-minute minimum).
pub(crate) fn services_to_reap(local: &LocalState, now: Instant) -> Vec<String> {
    let mut services: Vec<String> = local
        .checks
        .iter()
        .filter(|(_, check)| check.options.deregister_critical_service_after_ms > 0 && !check.registration.service_id.is_empty())
        .filter_map(|(id, check)| {
            let since = local.critical_since.get(id)?;
            let after = Duration::from_millis(check.options.deregister_critical_service_after_ms).max(CHECK_DEREGISTER_INTERVAL_MIN);
            (now.saturating_duration_since(*since) > after).then(|| check.registration.service_id.clone())
        })
        .collect();
    services.sort();
    services.dedup();
    services
}

/// Flushes due deferred outputs to the catalog, and every `CHECK_REAP_INTERVAL` deregisters
/// the services `services_to_reap` names. Ends at shutdown.
pub(crate) async fn check_upkeep_loop(agent: Arc<Agent>) {
    let mut shutdown = agent.shutdown_requested();
    let mut next_reap = tokio::time::Instant::now() + CHECK_REAP_INTERVAL;
    loop {
        tokio::select! {
            () = tokio::time::sleep(UPKEEP_TICK) => {}
            _ = shutdown.changed() => return,
        }
        let now = Instant::now();
        let due = {
            let local = agent.local.read();
            local.deferred_output.values().any(|deadline| *deadline <= now)
                || local.critical_since.keys().chain(local.deferred_output.keys()).any(|id| !local.checks.contains_key(id))
        };
        if due {
            let flushed: Vec<String> = {
                let mut local = agent.local.write();
                let LocalState { checks, critical_since, deferred_output, .. } = &mut *local;
                let flushed = deferred_output.iter().filter(|(id, deadline)| **deadline <= now && checks.contains_key(*id)).map(|(id, _)| id.clone()).collect();
                deferred_output.retain(|id, deadline| *deadline > now && checks.contains_key(id));
                critical_since.retain(|id, _| checks.contains_key(id));
                flushed
            };
            for id in flushed {
                if let Err(error) = agent.sync_change(&agent.check_scope(&id)).await {
                    tracing::warn!(%error, "check output sync failed; anti-entropy will retry");
                }
            }
        }
        if tokio::time::Instant::now() >= next_reap {
            next_reap += CHECK_REAP_INTERVAL;
            reap(&agent).await;
        }
    }
}

async fn reap(agent: &Agent) {
    let doomed = services_to_reap(&agent.local.read(), Instant::now());
    for service_id in doomed {
        match agent.deregister_service(&service_id).await {
            Ok(()) => tracing::info!(service_id, "check for service has been critical for too long; deregistered service"),
            Err(error) => tracing::warn!(service_id, %error, "cannot deregister a service critical for too long"),
        }
    }
}

#[cfg(test)]
mod tests;
