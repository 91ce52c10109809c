//! Request bodies in Consul's loose JSON: field names match case-insensitively and snake_case
//! aliases are accepted (`Name`, `name`, `enable_tag_override`, `EnableTagOverride`, ...), as
//! Consul's decoder does for the clients that send lowercase keys (python-consul, Patroni).
//!
//! [`Fields`] wraps one JSON object with keys folded to lowercase without underscores. Values of
//! map-typed fields (`Meta`, `Header`, `TaggedAddresses` keys) keep their keys untouched, since
//! those are user data. Type errors name the field, in a one-line 400.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::agent::local::LocalCheck;
use crate::catalog::command::{CheckRegistration, ServiceRegistration};
use crate::catalog::model::{CheckDefinition, HealthStatus, ServiceAddress, Weights};
use crate::config::parse_go_duration;
use crate::http::check_decode;
use crate::http::error::ApiError;

/// Most tags on one service, and most entries in one metadata map (Consul's `metaMaxKeyPairs`).
pub const SERVICE_TAGS_MAX: usize = 256;
pub const META_PAIRS_MAX: usize = 64;
/// Longest name or ID accepted for nodes, services and checks.
pub const NAME_BYTES_MAX: usize = 512;

fn fold(key: &str) -> String {
    if key.is_ascii() {
        // The common case (every name the decoders ask for): no per-char Unicode work.
        let mut folded = String::with_capacity(key.len());
        folded.extend(key.bytes().filter(|b| *b != b'_' && *b != b'-').map(|b| char::from(b.to_ascii_lowercase())));
        return folded;
    }
    key.chars().filter(|c| *c != '_' && *c != '-').flat_map(char::to_lowercase).collect()
}

pub(super) fn bad(field: &str, expected: &str) -> ApiError {
    ApiError::BadRequest(format!("Request decode failed: field {field:?} must be {expected}"))
}

/// One JSON object with case-folded field names.
pub struct Fields {
    map: BTreeMap<String, Value>,
}

impl Fields {
    pub fn parse(body: &[u8]) -> Result<Fields, ApiError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("Request decode failed: {e}")))?;
        Fields::from_value(value, "body")
    }

    pub fn from_value(value: Value, what: &str) -> Result<Fields, ApiError> {
        match value {
            Value::Object(object) => Ok(Fields::from_map(object)),
            _ => Err(bad(what, "a JSON object")),
        }
    }

    fn from_map(object: Map<String, Value>) -> Fields {
        Fields { map: object.into_iter().map(|(k, v)| (fold(&k), v)).collect() }
    }

    /// The raw value of the first present alias.
    pub fn get(&self, names: &[&str]) -> Option<&Value> {
        names.iter().find_map(|name| self.map.get(&fold(name))).filter(|v| !v.is_null())
    }

    pub fn string(&self, names: &[&str]) -> Result<String, ApiError> {
        match self.get(names) {
            None => Ok(String::new()),
            Some(Value::String(text)) => Ok(text.clone()),
            Some(_) => Err(bad(names[0], "a string")),
        }
    }

    pub fn name(&self, names: &[&str]) -> Result<String, ApiError> {
        let text = self.string(names)?;
        if text.len() > NAME_BYTES_MAX {
            return Err(bad(names[0], &format!("at most {NAME_BYTES_MAX} bytes")));
        }
        if text.chars().any(|c| c.is_control()) {
            return Err(bad(names[0], "free of control characters"));
        }
        Ok(text)
    }

    pub fn u64(&self, names: &[&str]) -> Result<u64, ApiError> {
        match self.get(names) {
            None => Ok(0),
            Some(Value::Number(n)) => n.as_u64().ok_or_else(|| bad(names[0], "a non-negative integer")),
            Some(_) => Err(bad(names[0], "a number")),
        }
    }

    pub fn port(&self, names: &[&str]) -> Result<u16, ApiError> {
        u16::try_from(self.u64(names)?).map_err(|_| bad(names[0], "a port between 0 and 65535"))
    }

    pub fn bool(&self, names: &[&str]) -> Result<bool, ApiError> {
        match self.get(names) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(bad(names[0], "a boolean")),
        }
    }

    pub fn strings(&self, names: &[&str]) -> Result<Vec<String>, ApiError> {
        match self.get(names) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => {
                if items.len() > SERVICE_TAGS_MAX {
                    return Err(bad(names[0], &format!("a list of at most {SERVICE_TAGS_MAX} strings")));
                }
                items.iter().map(|v| v.as_str().map(str::to_string).ok_or_else(|| bad(names[0], "a list of strings"))).collect()
            }
            Some(_) => Err(bad(names[0], "a list of strings")),
        }
    }

    pub fn string_map(&self, names: &[&str]) -> Result<BTreeMap<String, String>, ApiError> {
        match self.get(names) {
            None => Ok(BTreeMap::new()),
            Some(Value::Object(map)) => {
                if map.len() > META_PAIRS_MAX {
                    return Err(bad(names[0], &format!("a map of at most {META_PAIRS_MAX} pairs")));
                }
                map.iter()
                    .map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())).ok_or_else(|| bad(names[0], "a map of strings")))
                    .collect()
            }
            Some(_) => Err(bad(names[0], "a map of strings")),
        }
    }

    pub fn object(&self, names: &[&str]) -> Result<Option<Fields>, ApiError> {
        match self.get(names) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(Fields::from_map(map.clone()))),
            Some(_) => Err(bad(names[0], "an object")),
        }
    }

    /// A Go duration string (`"10s"`), or a number of nanoseconds as Go clients may send.
    pub fn duration(&self, names: &[&str]) -> Result<Option<Duration>, ApiError> {
        match self.get(names) {
            None => Ok(None),
            Some(Value::String(text)) if text.is_empty() => Ok(None),
            Some(Value::String(text)) => parse_go_duration(text).map(Some).map_err(|_| bad(names[0], "a duration such as \"10s\"")),
            Some(Value::Number(n)) => n.as_u64().map(|ns| Some(Duration::from_nanos(ns))).ok_or_else(|| bad(names[0], "a duration")),
            Some(_) => Err(bad(names[0], "a duration such as \"10s\"")),
        }
    }

    /// The JSON text of a field the catalog keeps opaque.
    pub fn raw_json(&self, names: &[&str]) -> Option<String> {
        self.get(names).map(Value::to_string)
    }
}

/// Decodes a service definition (`/v1/agent/service/register`) into the registration and its
/// checks, with Consul's check-ID rules: `service:<id>` for a single `Check`, and
/// `service:<id>:<n>` (from 1) for the `Checks` list.
pub fn service_definition(fields: &Fields) -> Result<(ServiceRegistration, Vec<LocalCheck>), ApiError> {
    let name = fields.name(&["Name", "Service"])?;
    if name.is_empty() {
        return Err(ApiError::BadRequest("Missing service name".into()));
    }
    let id = match fields.name(&["ID", "ServiceID"])? {
        id if id.is_empty() => name.clone(),
        id => id,
    };
    let registration = service_registration(fields, id.clone(), name.clone())?;
    let mut checks = Vec::new();
    if let Some(check) = fields.object(&["Check"])? {
        checks.push(check_definition(&check, Some((&id, &name)), format!("service:{id}"))?);
    }
    if let Some(list) = fields.get(&["Checks"]) {
        let Value::Array(items) = list else { return Err(bad("Checks", "a list of checks")) };
        let single = checks.len();
        for (n, item) in items.iter().enumerate() {
            let check = Fields::from_value(item.clone(), "Checks")?;
            let default_id = if items.len() == 1 && single == 0 { format!("service:{id}") } else { format!("service:{id}:{}", n + 1) };
            checks.push(check_definition(&check, Some((&id, &name)), default_id)?);
        }
    }
    Ok((registration, checks))
}

/// The service fields shared by agent and catalog registration.
pub fn service_registration(fields: &Fields, id: String, name: String) -> Result<ServiceRegistration, ApiError> {
    let mut tagged_addresses = BTreeMap::new();
    if let Some(Value::Object(map)) = fields.get(&["TaggedAddresses"]) {
        for (tag, value) in map {
            let entry = Fields::from_value(value.clone(), "TaggedAddresses")?;
            tagged_addresses.insert(tag.clone(), ServiceAddress { address: entry.string(&["Address"])?, port: entry.port(&["Port"])? });
        }
    }
    let weights = match fields.object(&["Weights"])? {
        Some(w) => Weights { passing: w.u64(&["Passing"])?.clamp(1, 65535) as u32, warning: w.u64(&["Warning"])?.min(65535) as u32 },
        None => Weights::default(),
    };
    let mut opaque_json = BTreeMap::new();
    for field in ["Proxy", "Connect", "Locality"] {
        if let Some(text) = fields.raw_json(&[field]) {
            opaque_json.insert(field.to_string(), text);
        }
    }
    Ok(ServiceRegistration {
        id,
        name,
        tags: fields.strings(&["Tags"])?,
        address: fields.string(&["Address"])?,
        tagged_addresses,
        meta: fields.string_map(&["Meta"])?,
        port: fields.port(&["Port"])?,
        kind: fields.string(&["Kind"])?,
        enable_tag_override: fields.bool(&["EnableTagOverride"])?,
        weights,
        opaque_json,
    })
}

/// Decodes one check definition (the rules live in `check_decode`). `service` is the owning
/// service (for service checks) and `default_id` the ID used when the definition names none.
pub fn check_definition(fields: &Fields, service: Option<(&str, &str)>, default_id: String) -> Result<LocalCheck, ApiError> {
    check_decode::check_definition(fields, service, default_id)
}

/// Decodes a check as `/v1/catalog/register` and `/v1/txn` carry it (Consul's `HealthCheck`):
/// stored as given, never run. The ID defaults to the name; the status to critical.
pub fn catalog_check(check: &Fields) -> Result<CheckRegistration, ApiError> {
    let name = check.name(&["Name"])?;
    let check_id = match check.name(&["CheckID", "ID"])? {
        id if id.is_empty() => name.clone(),
        id => id,
    };
    if check_id.is_empty() {
        return Err(ApiError::BadRequest("Missing check ID".into()));
    }
    let status = match check.string(&["Status"])?.as_str() {
        "" => HealthStatus::Critical,
        text => HealthStatus::parse(text).ok_or_else(|| ApiError::BadRequest(format!("Invalid check status: {text:?}")))?,
    };
    let definition = check.object(&["Definition"])?;
    let def_string = |name: &str| definition.as_ref().map(|d| d.string(&[name]).unwrap_or_default()).unwrap_or_default();
    Ok(CheckRegistration {
        check_id,
        name,
        status,
        notes: check.string(&["Notes"])?,
        output: check.string(&["Output"])?,
        service_id: check.name(&["ServiceID"])?,
        definition: CheckDefinition {
            check_type: check.string(&["Type"])?,
            http: def_string("HTTP"),
            tcp: def_string("TCP"),
            interval: def_string("Interval"),
            timeout: def_string("Timeout"),
            deregister_critical_service_after: def_string("DeregisterCriticalServiceAfter"),
        },
    })
}
