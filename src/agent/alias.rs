//! Alias checks (Consul's `CheckAlias`): a check that mirrors another service instance's
//! health. The status itself is computed by the pure `checks::alias_status`; this module
//! feeds it.
//!
//! - Without `AliasNode`, the service is one of this agent's: the task re-reads the local
//!   state on every local change (`LocalCell::subscribe`), and at least once a minute, as
//!   Consul's `runLocal` does.
//! - With `AliasNode`, the node's checks come from the catalog: on a server, from its own
//!   copy, woken by the node's watch topic (or after `ALIAS_WAIT_MS_MAX`); on a client,
//!   from a server through the agent's read path (`Agent::node_view`), every
//!   `ALIAS_REMOTE_POLL_MS`. Failures back off like Consul's (1s, then doubling after the
//!   third, capped at a minute); from the second one the check is critical.
//!
//! The supervisor starts every alias check that is not running (after a registration, or at
//! start-up); the scheduler stops and replaces them like any other runner.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::agent::Agent;
use crate::agent::local::CheckRunner;
use crate::catalog::Catalog;
use crate::catalog::model::HealthStatus;
use crate::checks::{AliasInput, AliasTarget, CheckReporter, CheckStatus, alias_status};
use crate::watch::Topic;

/// Longest wait between two reads of the local state (Consul's `maxDurationBetweenUpdates`).
const ALIAS_LOCAL_REFRESH_MS: u64 = 60_000;
/// Longest a server's alias task waits on the aliased node's topic before re-reading.
const ALIAS_WAIT_MS_MAX: u64 = 60_000;
/// A client agent's polling interval for another node's checks.
const ALIAS_REMOTE_POLL_MS: u64 = 5_000;
/// Consul's alias backoff: attempts before backing off, and the longest wait.
const ALIAS_BACKOFF_ATTEMPTS_MIN: u32 = 3;
const ALIAS_BACKOFF_MS_MAX: u64 = 60_000;

/// One check as read, owned (borrowed into `AliasInput` for the computation).
struct Row {
    node: String,
    check_id: String,
    name: String,
    service_id: String,
    status: CheckStatus,
    output: String,
}

fn status(health: HealthStatus) -> CheckStatus {
    match health {
        HealthStatus::Passing => CheckStatus::Passing,
        HealthStatus::Warning => CheckStatus::Warning,
        HealthStatus::Critical => CheckStatus::Critical,
    }
}

fn compute(target: &AliasTarget<'_>, rows: &[Row], service_exists: bool) -> (CheckStatus, String) {
    let inputs: Vec<AliasInput<'_>> = rows
        .iter()
        .map(|row| AliasInput {
            node: &row.node,
            check_id: &row.check_id,
            name: &row.name,
            service_id: &row.service_id,
            status: row.status,
            output: &row.output,
        })
        .collect();
    alias_status(target, &inputs, || service_exists)
}

/// Starts the alias checks of the local state that are not running; ends at shutdown.
pub(crate) async fn alias_supervisor(agent: Arc<Agent>) {
    let mut changes = agent.local_changes();
    let mut shutdown = agent.shutdown_requested();
    let mut started: HashMap<String, (String, String)> = HashMap::new();
    loop {
        changes.borrow_and_update();
        let wanted: Vec<(String, String, String)> = agent
            .local
            .read()
            .checks
            .iter()
            .filter_map(|(id, check)| match &check.runner {
                Some(CheckRunner::Alias { service_id, node }) => Some((id.clone(), service_id.clone(), node.clone())),
                _ => None,
            })
            .collect();
        for (id, service_id, node) in &wanted {
            let definition = (service_id.clone(), node.clone());
            if started.get(id) != Some(&definition) || !agent.scheduler.is_running(id) {
                let task_agent = agent.clone();
                let (task_id, task_service, task_node) = (id.clone(), service_id.clone(), node.clone());
                agent.scheduler.add_task(id, move |reporter| run_alias(task_agent, task_id, task_service, task_node, reporter));
                started.insert(id.clone(), definition);
            }
        }
        started.retain(|id, _| wanted.iter().any(|(wanted_id, _, _)| wanted_id == id));
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            _ = shutdown.changed() => return,
        }
    }
}

async fn run_alias(agent: Arc<Agent>, check_id: String, service_id: String, node: String, reporter: CheckReporter) {
    if node.is_empty() {
        run_local(agent, check_id, service_id, reporter).await;
    } else {
        run_remote(agent, check_id, service_id, node, reporter).await;
    }
}

async fn run_local(agent: Arc<Agent>, check_id: String, service_id: String, reporter: CheckReporter) {
    let mut changes = agent.local_changes();
    let target = AliasTarget { node: "", service_id: &service_id, own_check_id: &check_id };
    let mut last: Option<(CheckStatus, String)> = None;
    loop {
        changes.borrow_and_update();
        let (rows, exists) = {
            let local = agent.local.read();
            let rows: Vec<Row> = local
                .checks
                .values()
                .map(|check| Row {
                    node: String::new(),
                    check_id: check.registration.check_id.clone(),
                    name: check.registration.name.clone(),
                    service_id: check.registration.service_id.clone(),
                    status: status(check.registration.status),
                    output: check.registration.output.clone(),
                })
                .collect();
            (rows, local.services.contains_key(&service_id))
        };
        let result = compute(&target, &rows, exists);
        // Report only changes: every report writes the local state, which wakes this loop.
        if last.as_ref() != Some(&result) {
            if !reporter.report(result.0, result.1.clone()) {
                return;
            }
            last = Some(result);
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(Duration::from_millis(ALIAS_LOCAL_REFRESH_MS)) => {}
        }
    }
}

/// The node's checks and whether the service is on it, from a catalog.
fn node_rows(catalog: &Catalog, node: &str, service_id: &str) -> (Vec<Row>, bool) {
    let rows = catalog
        .node_checks(node)
        .into_iter()
        .map(|check| Row {
            node: check.node.clone(),
            check_id: check.check_id.clone(),
            name: check.name.clone(),
            service_id: check.service_id.clone(),
            status: status(check.status),
            output: check.output.clone(),
        })
        .collect();
    (rows, catalog.service(node, service_id).is_some())
}

async fn run_remote(agent: Arc<Agent>, check_id: String, service_id: String, node: String, reporter: CheckReporter) {
    let target = AliasTarget { node: &node, service_id: &service_id, own_check_id: &check_id };
    let mut last: Option<(CheckStatus, String)> = None;
    let mut failures: u32 = 0;
    loop {
        let mut subscription = agent.raft().is_some().then(|| agent.view.watches().subscribe(Topic::Node(node.clone())));
        if let Some(subscription) = subscription.as_mut() {
            subscription.mark_seen();
        }
        let read = match agent.raft() {
            Some(_) => Ok(agent.view.read(|catalog| node_rows(catalog, &node, &service_id))),
            None => agent.node_view(&node).await.map(|catalog| node_rows(&catalog, &node, &service_id)),
        };
        let result = match read {
            Ok((rows, exists)) => {
                failures = 0;
                Some(compute(&target, &rows, exists))
            }
            Err(error) => {
                failures += 1;
                tracing::debug!(%error, failures, "alias check cannot read the aliased node");
                (failures > 1).then(|| (CheckStatus::Critical, format!("Failure checking aliased node or service: {error}")))
            }
        };
        if let Some(result) = result
            && last.as_ref() != Some(&result)
        {
            if !reporter.report(result.0, result.1.clone()) {
                return;
            }
            last = Some(result);
        }
        let pause = if failures > ALIAS_BACKOFF_ATTEMPTS_MIN {
            let shift = (failures - ALIAS_BACKOFF_ATTEMPTS_MIN).min(16);
            Duration::from_millis((1_000u64 << shift).min(ALIAS_BACKOFF_MS_MAX))
        } else if failures > 0 {
            Duration::from_secs(1)
        } else if let Some(subscription) = subscription.as_mut() {
            let _ = tokio::time::timeout(Duration::from_millis(ALIAS_WAIT_MS_MAX), subscription.changed()).await;
            Duration::ZERO
        } else {
            Duration::from_millis(ALIAS_REMOTE_POLL_MS)
        };
        tokio::time::sleep(pause).await;
    }
}
