//! `cairn services register|deregister`: manage the local agent's services.
//!
//! Services come from flags or from Consul service-definition files: JSON
//! (`{"service": {...}}` or `{"services": [...]}`), or TOML when the name ends in
//! `.toml` (`[service]` or `[[services]]`, as in `agent.toml`), read like the
//! agent's own config files (`config::read_definition_file`); HCL is not
//! supported. Definition files use Consul's config spelling (`name`, `check_id`,
//! `deregister_critical_service_after`) while `PUT /v1/agent/service/register`
//! takes the API spelling (`Name`, `CheckID`, ...), so keys are translated
//! ([`api_keys`]); keys that already contain an upper-case letter are taken
//! to be API spelling and left alone, and user-defined map keys (`meta`,
//! `header`, proxy `config`) are never touched.

use clap::Parser;
use serde_json::{Map, Value};

use crate::cli::client::{self, HttpFlags};
use crate::cli::{Fail, Io, fail, parse};

/// Register services with the local agent.
#[derive(Parser, Debug)]
#[command(name = "cairn services register", disable_version_flag = true)]
pub(super) struct RegisterArgs {
    /// Service ID (defaults to the name).
    #[arg(long)]
    id: Option<String>,
    /// Service name.
    #[arg(long)]
    name: Option<String>,
    /// Service address (defaults to the node's).
    #[arg(long)]
    address: Option<String>,
    /// Service port.
    #[arg(long)]
    port: Option<u16>,
    /// Tag to add; repeat for several.
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// Metadata as key=value; repeat for several.
    #[arg(long, value_name = "KEY=VALUE")]
    meta: Vec<String>,
    #[command(flatten)]
    http: HttpFlags,
    /// Service definition files (JSON).
    #[arg(value_name = "FILE")]
    files: Vec<String>,
}

/// Deregister services with the local agent.
#[derive(Parser, Debug)]
#[command(name = "cairn services deregister", disable_version_flag = true)]
pub(super) struct DeregisterArgs {
    /// ID of the service to deregister; must not be combined with files.
    #[arg(long)]
    id: Option<String>,
    #[command(flatten)]
    http: HttpFlags,
    /// Service definition files (JSON) whose services to deregister.
    #[arg(value_name = "FILE")]
    files: Vec<String>,
}

pub(crate) fn register(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: RegisterArgs = parse("cairn services register", args)?;
    let name_flag = a.name.as_deref().filter(|n| !n.is_empty());
    if a.files.is_empty() && name_flag.is_none() {
        return fail("Service registration requires at least one argument or flags.");
    }
    if !a.files.is_empty() && name_flag.is_some() {
        return fail("Service registration requires arguments or -name, not both.");
    }
    let from_flags = service_from_flags(&a)?;
    let services = if a.files.is_empty() {
        vec![from_flags]
    } else {
        let mut svcs = services_from_files(&a.files)?;
        // As Consul's CombineArgs: flags fill what the file left unset.
        for svc in &mut svcs {
            combine(svc, &from_flags);
        }
        svcs
    };
    let c = client::connect(&a.http, io.env)?;
    for svc in services {
        let body = serde_json::to_vec(&svc).or_else(|e| fail(format!("Error! {e}")))?;
        c.put("/v1/agent/service/register", &[], body)?.ok()?;
        io.note(format_args!(
            "Registered service: {}",
            str_field(&svc, "Name")
        ));
    }
    Ok(())
}

pub(crate) fn deregister(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: DeregisterArgs = parse("cairn services deregister", args)?;
    let id_flag = a.id.as_deref().filter(|i| !i.is_empty());
    let ids: Vec<String> = match (id_flag, a.files.is_empty()) {
        (None, true) => {
            return fail("Service deregistration requires at least one argument or -id.");
        }
        (Some(_), false) => {
            return fail("Service deregistration requires arguments or -id, not both.");
        }
        (Some(id), true) => vec![id.to_owned()],
        (None, false) => services_from_files(&a.files)?
            .iter()
            .map(|s| match str_field(s, "ID") {
                "" => str_field(s, "Name").to_owned(),
                id => id.to_owned(),
            })
            .filter(|id| !id.is_empty())
            .collect(),
    };
    let c = client::connect(&a.http, io.env)?;
    for id in ids {
        c.put(
            &format!(
                "/v1/agent/service/deregister/{}",
                client::encode(&id, false)
            ),
            &[],
            Vec::new(),
        )?
        .ok()?;
        io.note(format_args!("Deregistered service: {id}"));
    }
    Ok(())
}

fn str_field<'v>(svc: &'v Map<String, Value>, key: &str) -> &'v str {
    svc.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The registration body the flags describe, with unset fields omitted.
fn service_from_flags(a: &RegisterArgs) -> Result<Map<String, Value>, Fail> {
    let mut svc = Map::new();
    let mut set = |k: &str, v: Option<&String>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            svc.insert(k.to_owned(), Value::String(v.clone()));
        }
    };
    set("Name", a.name.as_ref());
    set("ID", a.id.as_ref());
    set("Address", a.address.as_ref());
    if let Some(port) = a.port {
        svc.insert("Port".into(), port.into());
    }
    if !a.tags.is_empty() {
        svc.insert("Tags".into(), a.tags.clone().into());
    }
    if !a.meta.is_empty() {
        svc.insert("Meta".into(), Value::Object(parse_meta(&a.meta)?));
    }
    Ok(svc)
}

/// `-meta k=v` pairs, as Consul's `FlagMapValue`.
pub(crate) fn parse_meta(pairs: &[String]) -> Result<Map<String, Value>, Fail> {
    let mut meta = Map::new();
    for p in pairs {
        let Some((k, v)) = p.split_once('=') else {
            return fail(format!("Error! Missing = in argument: {p}"));
        };
        meta.insert(k.to_owned(), Value::String(v.to_owned()));
    }
    Ok(meta)
}

/// File values win; flags fill gaps, meta is merged and tags appended.
fn combine(file: &mut Map<String, Value>, flags: &Map<String, Value>) {
    for (k, v) in flags {
        match (k.as_str(), file.get_mut(k)) {
            ("Meta", Some(Value::Object(m))) => {
                if let Value::Object(extra) = v {
                    m.extend(extra.clone());
                }
            }
            ("Tags", Some(Value::Array(t))) => {
                if let Value::Array(extra) = v {
                    t.extend(extra.iter().cloned());
                }
            }
            (_, Some(existing)) if !existing.is_null() && existing != "" && existing != 0 => {}
            _ => {
                file.insert(k.clone(), v.clone());
            }
        }
    }
}

fn services_from_files(files: &[String]) -> Result<Vec<Map<String, Value>>, Fail> {
    let mut out = Vec::new();
    for f in files {
        let document = crate::config::read_definition_file(std::path::Path::new(f))
            .or_else(|e| fail(format!("Error! {e}")))?;
        out.extend(parse_definition(document).or_else(|e| fail(format!("Error! {f}: {e}")))?);
    }
    Ok(out)
}

/// The API-spelled registration objects of one definition document, as
/// `config::read_definition_file` returns it (`service` already folded into the
/// `services` list).
pub(crate) fn parse_definition(mut document: Map<String, Value>) -> Result<Vec<Map<String, Value>>, String> {
    let Some(Value::Array(definitions)) = document.remove("services") else {
        return Err("no \"service\" or \"services\" key".into());
    };
    definitions
        .into_iter()
        .map(|d| match api_keys(d) {
            Value::Object(m) => Ok(m),
            _ => Err("each service definition must be an object".into()),
        })
        .collect()
}

/// Recursively translate config-file keys to API keys (see the module doc).
pub(crate) fn api_keys(v: Value) -> Value {
    match v {
        Value::Array(items) => Value::Array(items.into_iter().map(api_keys).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let api = pascal(&k);
                    let v = match api.as_str() {
                        "Meta" | "Header" | "Config" | "NodeMeta" => v,
                        // User-named keys, but the values are {address, port}.
                        "TaggedAddresses" => match v {
                            Value::Object(m) => Value::Object(
                                m.into_iter().map(|(k, v)| (k, api_keys(v))).collect(),
                            ),
                            other => other,
                        },
                        _ => api_keys(v),
                    };
                    (api, v)
                })
                .collect(),
        ),
        other => other,
    }
}

/// `deregister_critical_service_after` → `DeregisterCriticalServiceAfter`,
/// with Consul's initialisms (`check_id` → `CheckID`, `grpc_use_tls` →
/// `GRPCUseTLS`). Keys with an upper-case letter are already API spelling.
pub(crate) fn pascal(key: &str) -> String {
    if key.chars().any(|c| c.is_ascii_uppercase()) {
        return key.to_owned();
    }
    if key == "args" {
        return "ScriptArgs".to_owned(); // the API's name for a check's args
    }
    key.split(['_', '-'])
        .map(|part| match part {
            "id" | "http" | "https" | "tcp" | "udp" | "ttl" | "grpc" | "tls" | "h2ping" | "os"
            | "dns" | "ip" => part.to_ascii_uppercase(),
            _ => {
                let mut c = part.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            }
        })
        .collect()
}
