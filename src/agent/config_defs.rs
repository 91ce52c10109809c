//! Services and checks defined in config files, and how a reload brings them in line.
//!
//! Consul registers every `service`/`check` of its config files at start and re-reads them on
//! reload (SIGHUP, `consul reload`, `PUT /v1/agent/reload`). cairn does the same with a diff:
//! [`diff`] (PURE) compares the definitions applied last with the ones just read and the IDs the
//! local state holds, and returns the registrations and deregistrations that bring the two in
//! line. A definition that did not change is not touched: its check runner keeps running and
//! keeps its status, and nothing is written to the catalog. Entries registered through the HTTP
//! API are never in these sets, so a reload leaves them alone.
//!
//! Which IDs came from config is kept in memory only ([`ConfigDefs`]): like Consul, config
//! entries are not persisted to the data dir (the next start reads them from the files again),
//! while API ones are.
//!
//! Definitions are decoded by `http` (the same decoder as the registration bodies) and the
//! reload itself (re-reading the files) is run by `daemon`; the agent only holds the request
//! queue between the two ([`Agent::reload`]).

use std::collections::{BTreeMap, BTreeSet};

use tokio::sync::{mpsc, oneshot};

use crate::agent::local::{self, CheckRunner, DefinitionSource, LocalCheck};
use crate::agent::operations::{LOCAL_CHECKS_MAX, LOCAL_SERVICES_MAX, SCRIPTS_DISABLED};
use crate::agent::{Agent, AgentError};
use crate::catalog::command::ServiceRegistration;

/// Reload requests waiting for the daemon's reload loop; more wait for a free slot.
const RELOAD_REQUESTS_MAX: usize = 16;

/// One service definition: the service and its embedded `check`/`checks`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceDefinition {
    pub registration: ServiceRegistration,
    pub checks: Vec<LocalCheck>,
}

/// Every definition of the config files, decoded, keyed by ID.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigDefinitions {
    pub services: BTreeMap<String, ServiceDefinition>,
    /// Standalone checks (`check`/`checks` at the top level).
    pub checks: BTreeMap<String, LocalCheck>,
}

/// The service and check IDs the local state holds right now.
#[derive(Clone, Debug, Default)]
pub struct LocalIds {
    pub services: BTreeSet<String>,
    pub checks: BTreeSet<String>,
}

/// One step of bringing the local state in line with the config files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigAction {
    DeregisterCheck(String),
    DeregisterService(String),
    /// Registers the service (an unchanged registration is rewritten as it was, which the
    /// catalog does not see) with only the listed embedded checks, so unchanged checks keep
    /// their runner and status.
    RegisterService { id: String, check_ids: Vec<String> },
    RegisterCheck(String),
}

/// A reload request for the daemon; the answer is the error to report, if any.
pub type ReloadRequest = oneshot::Sender<Result<(), String>>;

/// The agent's record of its config-defined entries, and the reload request queue.
pub struct ConfigDefs {
    /// The definitions applied last. The lock is held for a whole apply, so two reloads (or
    /// the start-up apply and a reload) never interleave.
    applied: tokio::sync::Mutex<ConfigDefinitions>,
    /// IDs that come from config (applied or being applied), read by the persistence path so
    /// that config entries stay out of the data dir. Short critical sections only.
    ids: std::sync::Mutex<LocalIds>,
    /// Senders side of the reload queue: `Agent::reload` (HTTP) puts requests here.
    reload_tx: mpsc::Sender<ReloadRequest>,
    /// Taken once by the daemon's reload loop.
    reload_rx: std::sync::Mutex<Option<mpsc::Receiver<ReloadRequest>>>,
}

impl Default for ConfigDefs {
    fn default() -> ConfigDefs {
        let (reload_tx, reload_rx) = mpsc::channel(RELOAD_REQUESTS_MAX);
        ConfigDefs {
            applied: tokio::sync::Mutex::new(ConfigDefinitions::default()),
            ids: std::sync::Mutex::new(LocalIds::default()),
            reload_tx,
            reload_rx: std::sync::Mutex::new(Some(reload_rx)),
        }
    }
}

impl ConfigDefs {
    /// Whether a service ID comes from config (so it must not be persisted).
    pub(crate) fn is_config_service(&self, id: &str) -> bool {
        self.ids.lock().expect("config ids lock is never poisoned").services.contains(id)
    }

    /// Whether a check ID comes from config (so it must not be persisted).
    pub(crate) fn is_config_check(&self, id: &str) -> bool {
        self.ids.lock().expect("config ids lock is never poisoned").checks.contains(id)
    }
}

impl ConfigDefinitions {
    /// Every check ID, embedded or standalone.
    fn check_ids(&self) -> impl Iterator<Item = &String> {
        let embedded = self.services.values().flat_map(|s| s.checks.iter().map(|c| &c.registration.check_id));
        embedded.chain(self.checks.keys())
    }

    fn ids(&self) -> LocalIds {
        LocalIds { services: self.services.keys().cloned().collect(), checks: self.check_ids().cloned().collect() }
    }
}

/// The actions that take the local state from the `applied` definitions to the `wanted` ones.
///
/// Removed entries are deregistered (a removed service takes its checks with it); new,
/// changed and missing ones (say, deregistered through the API since) are registered;
/// unchanged ones that are present are left alone. Deregistrations come first, then services,
/// then standalone checks (which may name a service registered just before).
pub fn diff(applied: &ConfigDefinitions, wanted: &ConfigDefinitions, present: &LocalIds) -> Vec<ConfigAction> {
    let mut actions = Vec::new();
    for (id, old) in &applied.services {
        match wanted.services.get(id) {
            None if present.services.contains(id) => actions.push(ConfigAction::DeregisterService(id.clone())),
            None => {}
            Some(new) => {
                let kept: BTreeSet<&String> = new.checks.iter().map(|c| &c.registration.check_id).collect();
                for check in &old.checks {
                    let check_id = &check.registration.check_id;
                    if !kept.contains(check_id) && present.checks.contains(check_id) && !wanted.checks.contains_key(check_id) {
                        actions.push(ConfigAction::DeregisterCheck(check_id.clone()));
                    }
                }
            }
        }
    }
    let wanted_check_ids: BTreeSet<&String> = wanted.check_ids().collect();
    for (id, check) in &applied.checks {
        let service_gone = !check.registration.service_id.is_empty() && !wanted.services.contains_key(&check.registration.service_id);
        // A check of a removed service already goes with its service.
        if !wanted_check_ids.contains(id) && present.checks.contains(id) && !(service_gone && applied.services.contains_key(&check.registration.service_id)) {
            actions.push(ConfigAction::DeregisterCheck(id.clone()));
        }
    }
    let mut registered_services = BTreeSet::new();
    for (id, new) in &wanted.services {
        let old = applied.services.get(id);
        let service_changed = old.is_none_or(|old| old.registration != new.registration) || !present.services.contains(id);
        let check_ids: Vec<String> = new
            .checks
            .iter()
            .filter(|check| {
                let old_check = old.and_then(|old| old.checks.iter().find(|c| c.registration.check_id == check.registration.check_id));
                old_check != Some(*check) || !present.checks.contains(&check.registration.check_id)
            })
            .map(|check| check.registration.check_id.clone())
            .collect();
        if service_changed || !check_ids.is_empty() {
            registered_services.insert(id);
            actions.push(ConfigAction::RegisterService { id: id.clone(), check_ids });
        }
    }
    for (id, check) in &wanted.checks {
        let unchanged = applied.checks.get(id) == Some(check) && present.checks.contains(id);
        if !unchanged {
            actions.push(ConfigAction::RegisterCheck(id.clone()));
        }
    }
    actions
}

fn runner_is_script(check: &LocalCheck) -> bool {
    matches!(check.runner, Some(CheckRunner::Script { .. }))
}

impl Agent {
    /// The reload request queue, for the daemon's reload loop (`None` after the first call).
    pub fn take_reload_requests(&self) -> Option<mpsc::Receiver<ReloadRequest>> {
        self.config_defs.reload_rx.lock().expect("reload queue lock is never poisoned").take()
    }

    /// Asks the daemon to re-read the config files and apply them (`PUT /v1/agent/reload`).
    /// The error is the message to show (Consul answers it with a 500).
    pub async fn reload(&self) -> Result<(), String> {
        let (answer_tx, answer_rx) = oneshot::channel();
        let unavailable = || "Reload is not available: the agent is shutting down".to_string();
        self.config_defs.reload_tx.send(answer_tx).await.map_err(|_| unavailable())?;
        answer_rx.await.map_err(|_| unavailable())?
    }

    /// The checks that the agent would refuse, found before anything changes: a standalone
    /// check naming a service that neither the config nor the API registered, a script check
    /// while scripts are disabled, more entries than the agent holds.
    pub async fn validate_config_definitions(&self, wanted: &ConfigDefinitions) -> Result<(), AgentError> {
        let applied = self.config_defs.applied.lock().await;
        self.validate_against(&applied, wanted)
    }

    fn validate_against(&self, applied: &ConfigDefinitions, wanted: &ConfigDefinitions) -> Result<(), AgentError> {
        let local = self.local.read();
        // API entries stay through a reload; config entries are replaced by `wanted`.
        let api_services: BTreeSet<&String> = local.services.keys().filter(|id| !applied.services.contains_key(*id)).collect();
        let applied_checks: BTreeSet<&String> = applied.check_ids().collect();
        let api_checks = local.checks.keys().filter(|id| !applied_checks.contains(id)).count();
        let scripts_allowed = self.config.enable_script_checks || self.config.enable_local_script_checks;
        check_definitions(wanted, &api_services, api_checks, scripts_allowed)
    }

    fn local_ids(&self) -> LocalIds {
        let local = self.local.read();
        LocalIds { services: local.services.keys().cloned().collect(), checks: local.checks.keys().cloned().collect() }
    }

    /// Brings the config-defined services and checks in line with `wanted` (at start and on
    /// every reload). Nothing changes when validation fails. A failed catalog sync is only
    /// logged: the local state holds the change and anti-entropy retries, as for an API
    /// registration on a client agent.
    pub async fn apply_config_definitions(&self, wanted: ConfigDefinitions) -> Result<(), AgentError> {
        let mut applied = self.config_defs.applied.lock().await;
        self.validate_against(&applied, &wanted)?;
        let actions = diff(&applied, &wanted, &self.local_ids());
        {
            // Both sets while applying: neither old nor new config entries may be persisted.
            let mut ids = self.config_defs.ids.lock().expect("config ids lock is never poisoned");
            let new_ids = wanted.ids();
            ids.services.extend(new_ids.services);
            ids.checks.extend(new_ids.checks);
        }
        let mut failure = None;
        for action in actions {
            tracing::info!(?action, "applying config definition");
            if let Err(error) = self.apply_config_action(&action, &wanted).await {
                match error {
                    AgentError::Invalid(_) | AgentError::NotFound(_) | AgentError::TooLarge(_) => {
                        failure.get_or_insert(error);
                    }
                    error => tracing::warn!(?action, %error, "config definition applied locally; anti-entropy will sync it"),
                }
            }
        }
        *self.config_defs.ids.lock().expect("config ids lock is never poisoned") = wanted.ids();
        *applied = wanted;
        failure.map_or(Ok(()), Err)
    }

    async fn apply_config_action(&self, action: &ConfigAction, wanted: &ConfigDefinitions) -> Result<(), AgentError> {
        let result = match action {
            ConfigAction::DeregisterCheck(id) => self.deregister_check(id).await,
            ConfigAction::DeregisterService(id) => self.deregister_service(id).await,
            ConfigAction::RegisterService { id, check_ids } => {
                let definition = &wanted.services[id];
                let checks = definition.checks.iter().filter(|c| check_ids.contains(&c.registration.check_id)).cloned().collect();
                let result = self.register_service(definition.registration.clone(), checks, false, DefinitionSource::ConfigFile).await;
                // Config wins over an entry the API persisted under the same ID (Consul purges it).
                self.store.agent_delete(&format!("{}{id}", local::SERVICE_PREFIX))?;
                for check_id in check_ids {
                    self.store.agent_delete(&format!("{}{check_id}", local::CHECK_PREFIX))?;
                }
                result
            }
            ConfigAction::RegisterCheck(id) => {
                let result = self.register_check(wanted.checks[id].clone(), DefinitionSource::ConfigFile).await;
                self.store.agent_delete(&format!("{}{id}", local::CHECK_PREFIX))?;
                result
            }
        };
        match (action, result) {
            // Already gone (deregistered through the API): the wanted state holds.
            (ConfigAction::DeregisterCheck(_) | ConfigAction::DeregisterService(_), Err(AgentError::NotFound(_))) => Ok(()),
            (_, result) => result,
        }
    }
}

/// The rules config definitions must keep beside the API's registrations: script checks only
/// when allowed, a standalone check's service exists, the local limits. Pure, so that
/// `cairn validate` applies them too (with no API registrations).
pub fn check_definitions(wanted: &ConfigDefinitions, api_services: &BTreeSet<&String>, api_checks: usize, scripts_allowed: bool) -> Result<(), AgentError> {
    let all_checks = wanted.services.values().flat_map(|s| s.checks.iter()).chain(wanted.checks.values());
    for check in all_checks {
        if runner_is_script(check) && !scripts_allowed {
            return Err(AgentError::Invalid(format!("check {:?}: {SCRIPTS_DISABLED}", check.registration.check_id)));
        }
    }
    for check in wanted.checks.values() {
        let service_id = &check.registration.service_id;
        if !service_id.is_empty() && !wanted.services.contains_key(service_id) && !api_services.contains(service_id) {
            return Err(AgentError::NotFound(format!("check {:?}: ServiceID {service_id:?} does not exist", check.registration.check_id)));
        }
    }
    let services = api_services.len() + wanted.services.len();
    let checks = api_checks + wanted.check_ids().count();
    if services > LOCAL_SERVICES_MAX || checks > LOCAL_CHECKS_MAX {
        return Err(AgentError::Invalid(format!(
            "too many services or checks: an agent holds at most {LOCAL_SERVICES_MAX} services and {LOCAL_CHECKS_MAX} checks"
        )));
    }
    Ok(())
}

#[cfg(test)]
#[path = "config_defs_tests.rs"]
mod tests;
