//! Service and check definitions from config files, decoded by the same code as the
//! `/v1/agent/service/register` and `/v1/agent/check/register` bodies (`decode.rs`).
//!
//! Config files spell keys as Consul's do, snake_case (`enable_tag_override`, `check_id`,
//! `script_args` or `args`) or CamelCase; `decode::Fields` folds both, as Consul's
//! `lib/decode.HookTranslateKeys` does for its config. Unlike an HTTP body, a config
//! definition with a key that cairn would ignore stops the agent (Consul's config decoder
//! refuses unknown keys too), so no setting is silently dropped. The one exception is `token`,
//! which only warns: cairn does not enforce ACLs on registrations.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use crate::agent::config_defs::{ConfigDefinitions, ServiceDefinition};
use crate::config::{ConfigDefinition, RuntimeConfig};
use crate::http::decode::{self, Fields};

/// Keys of a service definition that the decoder reads, folded (lowercase, no `_`).
const SERVICE_KEYS: &[&str] = &[
    "id", "serviceid", "name", "service", "kind", "tags", "address", "taggedaddresses", "meta", "port", "weights",
    "enabletagoverride", "proxy", "connect", "locality", "check", "checks",
];
/// Keys of a check definition that the decoder reads, folded. Keep in step with
/// `decode::check_definition` (the check types it refuses itself are listed, so that its own
/// message explains them).
const CHECK_KEYS: &[&str] = &[
    "id", "checkid", "name", "notes", "serviceid", "status", "args", "scriptargs", "script", "http", "header", "method",
    "body", "tlsskipverify", "tcp", "interval", "timeout", "ttl", "deregistercriticalserviceafter", "grpc", "h2ping",
    "aliasservice", "aliasnode", "dockercontainerid", "udp", "osservice",
];

/// A definition that cannot be registered, named by its file and service or check.
#[derive(Debug, thiserror::Error)]
#[error("config file {path}: {what}: {reason}")]
pub struct DefinitionError {
    pub path: String,
    pub what: String,
    pub reason: String,
}

/// Decodes every service and check definition of `config`; also returns warnings to log.
///
/// # Errors
/// The first definition that the HTTP API would refuse, or that has a key cairn would ignore,
/// or whose ID another definition already uses.
pub fn decode_definitions(config: &RuntimeConfig) -> Result<(ConfigDefinitions, Vec<String>), DefinitionError> {
    let mut definitions = ConfigDefinitions::default();
    let mut warnings = Vec::new();
    let mut check_ids = BTreeSet::new();
    for ConfigDefinition { source, definition } in &config.services {
        let name = definition_name(definition, &["name", "Name"]);
        let fail = |reason: String| DefinitionError { path: source.display().to_string(), what: format!("service {name:?}"), reason };
        let fields = Fields::from_value(definition.clone(), "service").map_err(|e| fail(e.to_string()))?;
        check_keys(definition, SERVICE_KEYS, &mut warnings, source).map_err(&fail)?;
        for check in embedded_checks(&fields) {
            check_keys(check, CHECK_KEYS, &mut warnings, source).map_err(&fail)?;
        }
        if let Some(connect) = fields.object(&["Connect"]).map_err(|e| fail(e.to_string()))?
            && connect.get(&["SidecarService"]).is_some()
        {
            return Err(fail("connect.sidecar_service is not supported in config files by cairn yet; register the sidecar through the HTTP API".into()));
        }
        let (registration, checks) = decode::service_definition(&fields).map_err(|e| fail(e.to_string()))?;
        for check in &checks {
            if !check_ids.insert(check.registration.check_id.clone()) {
                return Err(fail(format!("check ID {:?} is defined twice", check.registration.check_id)));
            }
        }
        let id = registration.id.clone();
        if definitions.services.insert(id.clone(), ServiceDefinition { registration, checks }).is_some() {
            return Err(fail(format!("service ID {id:?} is defined twice")));
        }
    }
    for ConfigDefinition { source, definition } in &config.checks {
        let name = definition_name(definition, &["name", "Name"]);
        let fail = |reason: String| DefinitionError { path: source.display().to_string(), what: format!("check {name:?}"), reason };
        check_keys(definition, CHECK_KEYS, &mut warnings, source).map_err(&fail)?;
        let fields = Fields::from_value(definition.clone(), "check").map_err(|e| fail(e.to_string()))?;
        let check = decode::check_definition(&fields, None, String::new()).map_err(|e| fail(e.to_string()))?;
        let id = check.registration.check_id.clone();
        if !check_ids.insert(id.clone()) {
            return Err(fail(format!("check ID {id:?} is defined twice")));
        }
        definitions.checks.insert(id, check);
    }
    Ok((definitions, warnings))
}

fn definition_name(definition: &Value, keys: &[&str]) -> String {
    keys.iter().find_map(|key| definition.get(key).and_then(Value::as_str)).unwrap_or("").to_string()
}

/// The embedded `check` and `checks` of a service definition, as raw JSON.
fn embedded_checks(fields: &Fields) -> Vec<&Value> {
    let single = fields.get(&["Check"]).into_iter();
    let list = fields.get(&["Checks"]).and_then(Value::as_array).into_iter().flatten();
    single.chain(list).collect()
}

fn fold(key: &str) -> String {
    key.chars().filter(|c| *c != '_' && *c != '-').flat_map(char::to_lowercase).collect()
}

/// Refuses keys the decoder would ignore; `token` only warns.
fn check_keys(definition: &Value, known: &[&str], warnings: &mut Vec<String>, source: &Path) -> Result<(), String> {
    let Some(object) = definition.as_object() else { return Ok(()) };
    for key in object.keys() {
        let folded = fold(key);
        if known.contains(&folded.as_str()) {
            continue;
        }
        if folded == "token" {
            warnings.push(format!("config file {}: `token` of a definition is ignored: cairn does not enforce ACLs on registrations", source.display()));
            continue;
        }
        return Err(format!("key `{key}` is not supported by cairn (it would be ignored)"));
    }
    Ok(())
}

#[cfg(test)]
#[path = "definitions_tests.rs"]
mod tests;
