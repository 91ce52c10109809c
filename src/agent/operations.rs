//! Agent operations behind the `/v1/agent/*` endpoints, plus the loop that feeds check results
//! into the local state.
//!
//! Every operation follows the same order: validate, change local state, persist it (synced),
//! start or stop check runners, then run an anti-entropy sync so the catalog reflects the
//! change before the HTTP request returns.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::agent::anti_entropy::SyncScope;
use crate::agent::local::{CheckOptions, CheckRunner, DefinitionSource, LocalCheck, LocalService};
use crate::agent::{Agent, AgentError, alias, check_status};
use crate::catalog::command::{CheckRegistration, ServiceRegistration};
use crate::catalog::model::{CheckDefinition, HealthStatus};
use crate::checks::{CheckKind, CheckResult, CheckStatus, RunOptions, Thresholds};

/// Consul's ID of the node maintenance check.
pub(crate) const NODE_MAINTENANCE_CHECK_ID: &str = "_node_maintenance";
/// Prefix of a service maintenance check ID (`_service_maintenance:<service id>`).
pub(crate) const SERVICE_MAINTENANCE_CHECK_PREFIX: &str = "_service_maintenance:";
/// Most services one agent may hold (a bound on local state and sync work).
pub(crate) const LOCAL_SERVICES_MAX: usize = 4096;
/// Most checks one agent may hold.
pub(crate) const LOCAL_CHECKS_MAX: usize = 8192;

/// Consul's error for a script check from a config file while scripts are disabled.
pub(crate) const SCRIPTS_DISABLED: &str =
    "Scripts are disabled on this agent; to enable, configure 'enable_script_checks' or 'enable_local_script_checks' to true";
/// Consul's error for a script check from the API without `enable_script_checks`.
pub(crate) const SCRIPTS_DISABLED_FROM_API: &str =
    "Scripts are disabled on this agent from remote calls; to enable, configure 'enable_script_checks' to true";

/// What the scheduler runs for a persisted runner; `None` for alias checks, whose task the
/// alias supervisor (`agent::alias`) starts.
pub(crate) fn check_kind(runner: &CheckRunner) -> Option<CheckKind> {
    let ms = Duration::from_millis;
    Some(match runner {
        CheckRunner::Ttl { ttl_ms } => CheckKind::Ttl { ttl: ms(*ttl_ms) },
        CheckRunner::Http { url, method, headers, body, tls_skip_verify, tls_server_name, interval_ms, timeout_ms } => CheckKind::Http {
            url: url.clone(),
            method: method.clone(),
            headers: headers.clone(),
            body: body.clone(),
            tls_skip_verify: *tls_skip_verify,
            tls_server_name: tls_server_name.clone(),
            interval: ms(*interval_ms),
            timeout: ms(*timeout_ms),
        },
        CheckRunner::Tcp { address, interval_ms, timeout_ms } => {
            CheckKind::Tcp { address: address.clone(), interval: ms(*interval_ms), timeout: ms(*timeout_ms) }
        }
        CheckRunner::Script { args, interval_ms, timeout_ms } => {
            CheckKind::Script { args: args.clone(), interval: ms(*interval_ms), timeout: ms(*timeout_ms) }
        }
        CheckRunner::Grpc { target, use_tls, tls_skip_verify, tls_server_name, interval_ms, timeout_ms } => CheckKind::Grpc {
            target: target.clone(),
            use_tls: *use_tls,
            tls_skip_verify: *tls_skip_verify,
            tls_server_name: tls_server_name.clone(),
            interval: ms(*interval_ms),
            timeout: ms(*timeout_ms),
        },
        CheckRunner::H2Ping { address, use_tls, tls_skip_verify, tls_server_name, interval_ms, timeout_ms } => CheckKind::H2Ping {
            address: address.clone(),
            use_tls: *use_tls,
            tls_skip_verify: *tls_skip_verify,
            tls_server_name: tls_server_name.clone(),
            interval: ms(*interval_ms),
            timeout: ms(*timeout_ms),
        },
        CheckRunner::Udp { address, interval_ms, timeout_ms } => {
            CheckKind::Udp { address: address.clone(), interval: ms(*interval_ms), timeout: ms(*timeout_ms) }
        }
        CheckRunner::Alias { .. } => return None,
    })
}

fn run_options(options: &CheckOptions) -> RunOptions {
    RunOptions {
        thresholds: Thresholds {
            success_before_passing: options.success_before_passing,
            failures_before_warning: options.failures_before_warning,
            failures_before_critical: options.failures_before_critical,
        },
        output_bytes_max: usize::try_from(options.output_max_size).unwrap_or(usize::MAX),
    }
}

fn health(status: CheckStatus) -> HealthStatus {
    match status {
        CheckStatus::Passing => HealthStatus::Passing,
        CheckStatus::Warning => HealthStatus::Warning,
        CheckStatus::Critical => HealthStatus::Critical,
    }
}

impl Agent {
    /// Starts, replaces or stops the runner of a check as its definition says.
    pub(crate) fn start_runner(&self, check_id: &str, check: &LocalCheck) {
        match check.runner.as_ref().and_then(check_kind) {
            Some(kind) => self.scheduler.add_with(check_id, kind, run_options(&check.options)),
            None => {
                self.scheduler.remove(check_id);
                if matches!(check.runner, Some(CheckRunner::Alias { .. })) {
                    // Announce a local change after the stop, so the alias supervisor, which
                    // starts every alias check that is not running, cannot miss it.
                    drop(self.local.write());
                }
            }
        }
    }

    /// Consul's `addCheckLocked` rule: a script check from a config file needs
    /// `enable_local_script_checks` (or `enable_script_checks`); one from the API needs
    /// `enable_script_checks`, since anyone who reaches the API could run commands otherwise.
    fn validate_runner(&self, runner: &Option<CheckRunner>, source: DefinitionSource) -> Result<(), AgentError> {
        if !matches!(runner, Some(CheckRunner::Script { .. })) {
            return Ok(());
        }
        match source {
            DefinitionSource::ConfigFile if !(self.config.enable_script_checks || self.config.enable_local_script_checks) => {
                Err(AgentError::Disabled(SCRIPTS_DISABLED.into()))
            }
            DefinitionSource::Api if !self.config.enable_script_checks => Err(AgentError::Disabled(SCRIPTS_DISABLED_FROM_API.into())),
            _ => Ok(()),
        }
    }

    /// Registers (or replaces) a service and its checks with this agent.
    pub async fn register_service(
        &self,
        service: ServiceRegistration,
        checks: Vec<LocalCheck>,
        replace_existing_checks: bool,
        source: DefinitionSource,
    ) -> Result<(), AgentError> {
        if service.name.is_empty() {
            return Err(AgentError::Invalid("Missing service name".into()));
        }
        for check in &checks {
            self.validate_runner(&check.runner, source)?;
        }
        let service = LocalService { registration: service };
        let id = service.registration.id.clone();
        let removed: Vec<String> = {
            let mut local = self.local.write();
            if !local.services.contains_key(&id) && local.services.len() >= LOCAL_SERVICES_MAX {
                return Err(AgentError::Invalid(format!("this agent already holds {LOCAL_SERVICES_MAX} services")));
            }
            local.services.insert(id.clone(), service.clone());
            let removed = if replace_existing_checks {
                let keep: Vec<&str> = checks.iter().map(|c| c.registration.check_id.as_str()).collect();
                let doomed: Vec<String> =
                    local.checks.of_service(&id).filter(|(check_id, _)| !keep.contains(&check_id.as_str())).map(|(check_id, _)| check_id.clone()).collect();
                for check_id in &doomed {
                    local.checks.remove(check_id);
                }
                doomed
            } else {
                Vec::new()
            };
            for check in &checks {
                local.checks.insert(check.registration.check_id.clone(), check.clone());
            }
            removed
        };
        let mut persisted: Vec<String> = checks.iter().map(|c| c.registration.check_id.clone()).collect();
        persisted.extend(removed.iter().cloned());
        // On disk and in the catalog at once: the change is written (not yet synced), the sync
        // to the servers runs, and only then does the request wait for the disk (`Persisting`:
        // a WAL sync has nearly always covered the write by then). The request answers once
        // both are done; a failed persist fails it.
        let persisting = self.persist_queue(vec![id.clone()], persisted)?;
        for check_id in &removed {
            self.scheduler.remove(check_id);
        }
        for check in &checks {
            self.start_runner(&check.registration.check_id, check);
        }
        let synced = self.sync_local_change(&SyncScope::Service(id.clone())).await;
        persisting.done().await?;
        synced
    }

    /// Removes a service and the checks bound to it.
    pub async fn deregister_service(&self, id: &str) -> Result<(), AgentError> {
        let removed_checks: Vec<String> = {
            let mut local = self.local.write();
            if local.services.remove(id).is_none() {
                return Err(AgentError::NotFound(format!("Unknown service ID {id:?}. Ensure that the service ID is passed, not the service name.")));
            }
            let doomed: Vec<String> = local.checks.of_service(id).map(|(check_id, _)| check_id.clone()).collect();
            for check_id in &doomed {
                local.checks.remove(check_id);
            }
            doomed
        };
        self.persist_local(vec![id.to_string()], removed_checks.clone()).await?;
        for check_id in &removed_checks {
            self.scheduler.remove(check_id);
        }
        self.sync_local_change(&SyncScope::Service(id.to_string())).await
    }

    /// Registers (or replaces) one check with this agent.
    pub async fn register_check(&self, check: LocalCheck, source: DefinitionSource) -> Result<(), AgentError> {
        self.validate_runner(&check.runner, source)?;
        if check.registration.name.is_empty() {
            return Err(AgentError::Invalid("Missing check name".into()));
        }
        let service_id = &check.registration.service_id;
        {
            let mut local = self.local.write();
            if !service_id.is_empty() && !local.services.contains_key(service_id) {
                // Consul 1.12+ answers an unknown ServiceID with 404.
                return Err(AgentError::NotFound(format!("ServiceID {service_id:?} does not exist")));
            }
            let id = &check.registration.check_id;
            if !local.checks.contains_key(id) && local.checks.len() >= LOCAL_CHECKS_MAX {
                return Err(AgentError::Invalid(format!("this agent already holds {LOCAL_CHECKS_MAX} checks")));
            }
            local.checks.insert(id.clone(), check.clone());
        }
        self.persist_local(Vec::new(), vec![check.registration.check_id.clone()]).await?;
        self.start_runner(&check.registration.check_id, &check);
        self.sync_local_change(&SyncScope::of_check(&check.registration.service_id, &check.registration.check_id)).await
    }

    pub async fn deregister_check(&self, id: &str) -> Result<(), AgentError> {
        let Some(removed) = self.local.write().checks.remove(id) else {
            return Err(AgentError::NotFound(format!("Unknown check ID {id:?}. Ensure that the check ID is passed, not the check name.")));
        };
        self.scheduler.remove(id);
        self.persist_local(Vec::new(), vec![id.to_string()]).await?;
        self.sync_local_change(&SyncScope::of_check(&removed.registration.service_id, id)).await
    }

    /// `check/pass|warn|fail|update`: sets a TTL check's status and resets its timer.
    pub async fn update_ttl(&self, id: &str, status: CheckStatus, output: &str) -> Result<(), AgentError> {
        match self.local_runner(id) {
            Some(CheckRunner::Ttl { .. }) => {}
            Some(_) => return Err(AgentError::Invalid(format!("check {id:?} is not a TTL check"))),
            None if self.local.read().checks.contains_key(id) => {
                return Err(AgentError::Invalid(format!("check {id:?} is not a TTL check")));
            }
            None => return Err(AgentError::NotFound(format!("Unknown check ID {id:?}. Ensure that the check ID is passed, not the check name."))),
        }
        self.apply_result(id, health(status), output).await?;
        if let Err(error) = self.scheduler.ttl_update(id, status, output) {
            return Err(AgentError::NotFound(error.to_string()));
        }
        self.sync_local_change(&self.check_scope(id)).await
    }

    /// The anti-entropy scope of a local check (its service's, or its own).
    pub(crate) fn check_scope(&self, check_id: &str) -> SyncScope {
        let service_id = self.local.read().checks.get(check_id).map(|c| c.registration.service_id.clone()).unwrap_or_default();
        SyncScope::of_check(&service_id, check_id)
    }

    /// Records a check result locally. Returns whether the catalog must be synced now: a
    /// status change always; an output-only change only when `check_update_interval` is 0,
    /// else it is deferred (`check_status`).
    async fn apply_result(&self, id: &str, status: HealthStatus, output: &str) -> Result<bool, AgentError> {
        let now = std::time::Instant::now();
        let change = {
            // Read first: most results change nothing, and a write announces a local change.
            let local = self.local.read();
            let Some(check) = local.checks.get(id) else { return Ok(false) };
            check_status::classify(&check.registration, local.critical_since.contains_key(id), status, output)
        };
        if change == check_status::Change::None {
            return Ok(false);
        }
        let (sync_now, persist) = {
            let mut local = self.local.write();
            check_status::record(&mut local, id, status, output, now, self.config.check_update_interval_ms)
        };
        if persist.is_some() {
            self.persist_local(Vec::new(), vec![id.to_string()]).await?;
        }
        Ok(sync_now)
    }

    /// Node maintenance mode: a critical `_node_maintenance` check while enabled.
    pub async fn set_node_maintenance(&self, enable: bool, reason: &str) -> Result<(), AgentError> {
        if enable {
            let notes = if reason.is_empty() {
                "Maintenance mode is enabled for this node, but no reason was provided. This is a default message."
            } else {
                reason
            };
            self.register_check(maintenance_check(NODE_MAINTENANCE_CHECK_ID, "Node Maintenance Mode", notes, ""), DefinitionSource::Api).await
        } else {
            match self.deregister_check(NODE_MAINTENANCE_CHECK_ID).await {
                Err(AgentError::NotFound(_)) => Ok(()),
                other => other,
            }
        }
    }

    /// Service maintenance mode: a critical `_service_maintenance:<id>` check while enabled.
    pub async fn set_service_maintenance(&self, service_id: &str, enable: bool, reason: &str) -> Result<(), AgentError> {
        if self.local_service(service_id).is_none() {
            return Err(AgentError::NotFound(format!("No service registered with ID {service_id:?}")));
        }
        let check_id = format!("{SERVICE_MAINTENANCE_CHECK_PREFIX}{service_id}");
        if enable {
            let notes = if reason.is_empty() {
                "Maintenance mode is enabled for this service, but no reason was provided. This is a default message."
            } else {
                reason
            };
            self.register_check(maintenance_check(&check_id, "Service Maintenance Mode", notes, service_id), DefinitionSource::Api).await
        } else {
            match self.deregister_check(&check_id).await {
                Err(AgentError::NotFound(_)) => Ok(()),
                other => other,
            }
        }
    }
}

fn maintenance_check(id: &str, name: &str, notes: &str, service_id: &str) -> LocalCheck {
    LocalCheck {
        registration: CheckRegistration {
            check_id: id.to_string(),
            name: name.to_string(),
            status: HealthStatus::Critical,
            notes: notes.to_string(),
            output: String::new(),
            service_id: service_id.to_string(),
            definition: CheckDefinition { check_type: "maintenance".into(), ..CheckDefinition::default() },
        },
        runner: None,
        options: CheckOptions::default(),
    }
}

/// Feeds check results into the local state; a status change is synced at once, an
/// output-only change is written at most every `check_update_interval` (`check_status`).
/// Also starts the loops that keep check state: the deferred-output flush and the reaper of
/// services critical too long (`check_status`), and the alias supervisor (`alias`).
pub(crate) async fn check_results_loop(agent: Arc<Agent>, mut results: mpsc::Receiver<CheckResult>) {
    tokio::spawn(check_status::check_upkeep_loop(agent.clone()));
    tokio::spawn(alias::alias_supervisor(agent.clone()));
    let mut shutdown = agent.shutdown_requested();
    loop {
        let result = tokio::select! {
            result = results.recv() => match result { Some(r) => r, None => return },
            _ = shutdown.changed() => return,
        };
        match agent.apply_result(&result.check_id, health(result.status), &result.output).await {
            Ok(true) => {
                if let Err(error) = agent.sync_change(&agent.check_scope(&result.check_id)).await {
                    tracing::warn!(check_id = %result.check_id, %error, "check status sync failed; anti-entropy will retry");
                }
            }
            Ok(false) => {}
            Err(error) => tracing::warn!(check_id = %result.check_id, %error, "cannot record check result"),
        }
    }
}
