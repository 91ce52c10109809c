//! `cairn acl token create|read|update|delete|list|clone`, as Consul's `consul acl token`
//! (command/acl/token/*): same flags, messages and output, over `/v1/acl/token*`.

use clap::Parser;
use serde_json::{Value, json};

use crate::cli::acl::{FormatFlag, failed, links, node_identities, print, service_identities};
use crate::cli::acl_format::{Format, Token, pretty_token, pretty_token_list};
use crate::cli::client::{self, HttpFlags};
use crate::cli::{Fail, Io, fail, parse};

/// Creates an ACL token.
#[derive(Parser, Debug)]
#[command(name = "cairn acl token create", disable_version_flag = true)]
pub(super) struct CreateArgs {
    /// Create the token with this Accessor ID (a UUID; generated when not given).
    #[arg(long)]
    accessor: Option<String>,
    /// Create the token with this Secret ID (a UUID; generated when not given).
    #[arg(long)]
    secret: Option<String>,
    /// A description of the token.
    #[arg(long, default_value = "")]
    description: String,
    /// ID of a policy for the token (repeatable).
    #[arg(long = "policy-id")]
    policy_ids: Vec<String>,
    /// Name of a policy for the token (repeatable).
    #[arg(long = "policy-name")]
    policy_names: Vec<String>,
    /// ID of a role for the token (repeatable).
    #[arg(long = "role-id")]
    role_ids: Vec<String>,
    /// Name of a role for the token (repeatable).
    #[arg(long = "role-name")]
    role_names: Vec<String>,
    /// SERVICENAME or SERVICENAME:DC1,DC2 (repeatable).
    #[arg(long = "service-identity")]
    service_identities: Vec<String>,
    /// NODENAME:DATACENTER (repeatable).
    #[arg(long = "node-identity")]
    node_identities: Vec<String>,
    /// Name of a templated policy (e.g. builtin/service); its variables come from -var.
    #[arg(long = "templated-policy")]
    templated_policy: Option<String>,
    /// A templated policy variable, `name:VALUE` (the only variable Consul's templates use).
    #[arg(long = "var")]
    vars: Vec<String>,
    /// Create a token local to this datacenter.
    #[arg(long)]
    local: bool,
    /// How long the token is valid for (a Go duration: 30m, 1h).
    #[arg(long = "expires-ttl")]
    expires_ttl: Option<String>,
    /// Also show the hash and Raft indexes.
    #[arg(long)]
    meta: bool,
    #[command(flatten)]
    format: FormatFlag,
    #[command(flatten)]
    http: HttpFlags,
}

pub(crate) fn create(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: CreateArgs = parse("cairn acl token create", args)?;
    let format = Format::parse(&a.format.format)?;
    let grants = [&a.policy_ids, &a.policy_names, &a.role_ids, &a.role_names, &a.service_identities, &a.node_identities];
    if grants.iter().all(|g| g.is_empty()) && a.templated_policy.is_none() {
        return fail("Cannot create a token without specifying -policy-name, -policy-id, -role-name, -role-id, -service-identity, -node-identity, or -templated-policy at least once");
    }
    let mut token = json!({ "Description": a.description, "Local": a.local });
    let set = |token: &mut Value, key: &str, value: Vec<Value>| {
        if !value.is_empty() {
            token[key] = Value::Array(value);
        }
    };
    set(&mut token, "Policies", links(&a.policy_names, &a.policy_ids));
    set(&mut token, "Roles", links(&a.role_names, &a.role_ids));
    set(&mut token, "ServiceIdentities", service_identities(&a.service_identities)?);
    set(&mut token, "NodeIdentities", node_identities(&a.node_identities)?);
    if let Some(name) = &a.templated_policy {
        set(&mut token, "TemplatedPolicies", vec![templated_policy(name, &a.vars)?]);
    } else if !a.vars.is_empty() {
        return fail("Cannot use -var without -templated-policy");
    }
    for (key, value) in [("AccessorID", &a.accessor), ("SecretID", &a.secret)] {
        if let Some(v) = value.as_ref().filter(|v| !v.is_empty()) {
            token[key] = json!(v);
        }
    }
    if let Some(ttl) = &a.expires_ttl {
        // Consul sends a TTL only when it is positive; the API takes Go duration strings.
        if go_duration_ns(ttl).ok_or_else(|| Fail::Msg(format!("invalid value {ttl:?} for flag -expires-ttl: parse error")))? > 0 {
            token["ExpirationTTL"] = json!(ttl);
        }
    }
    let c = client::connect(&a.http, io.env)?;
    let body = c
        .put("/v1/acl/token", &[], token.to_string().into_bytes())
        .and_then(|r| r.ok())
        .map_err(failed("Failed to create new token"))?;
    print(io, format, &body, |t| pretty_token(t, a.meta))
}

/// `-templated-policy NAME -var name:VALUE` as one `TemplatedPolicies` entry.
fn templated_policy(name: &str, vars: &[String]) -> Result<Value, Fail> {
    let mut entry = json!({ "TemplateName": name });
    for var in vars {
        match var.split_once(':') {
            Some(("name", value)) => entry["TemplateVariables"] = json!({ "Name": value }),
            _ => return fail(format!("Malformed -var argument: {var:?}, expecting name:VALUE")),
        }
    }
    Ok(entry)
}

/// A Go `time.ParseDuration` string in nanoseconds (`1h30m`, `90s`, `0`); `None` if malformed.
pub(crate) fn go_duration_ns(s: &str) -> Option<i128> {
    if s == "0" {
        return Some(0);
    }
    let (negative, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    let ns = total as i128;
    Some(if negative { -ns } else { ns })
}

/// `-accessor-id`, or the deprecated `-id` Consul still accepts (with a warning).
#[derive(clap::Args, Debug, Clone)]
struct AccessorFlag {
    /// The Accessor ID of the token.
    #[arg(long = "accessor-id")]
    accessor_id: Option<String>,
    /// Deprecated: use -accessor-id.
    #[arg(long)]
    id: Option<String>,
}

impl AccessorFlag {
    fn get(&self, io: &mut Io<'_>, missing: &str) -> Result<String, Fail> {
        match (&self.accessor_id, &self.id) {
            (Some(a), _) if !a.is_empty() => Ok(a.clone()),
            (_, Some(id)) if !id.is_empty() => {
                io.note("Use the -accessor-id parameter to specify token by Accessor ID");
                Ok(id.clone())
            }
            _ => fail(missing),
        }
    }
}

fn token_path(accessor: &str) -> String {
    format!("/v1/acl/token/{}", client::encode(accessor, false))
}

/// Reads one token: by -accessor-id, or the token the request is made with (-self).
#[derive(Parser, Debug)]
#[command(name = "cairn acl token read", disable_version_flag = true)]
pub(super) struct ReadArgs {
    #[command(flatten)]
    accessor: AccessorFlag,
    /// Read the token this command authenticates with (its secret, -token), not -accessor-id.
    #[arg(long = "self")]
    self_: bool,
    /// Also show the hash and Raft indexes.
    #[arg(long)]
    meta: bool,
    #[command(flatten)]
    format: FormatFlag,
    #[command(flatten)]
    http: HttpFlags,
}

pub(crate) fn read(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: ReadArgs = parse("cairn acl token read", args)?;
    let format = Format::parse(&a.format.format)?;
    let body = if a.self_ {
        let c = client::connect(&a.http, io.env)?;
        c.get("/v1/acl/token/self", &[]).and_then(|r| r.ok()).map_err(failed("Error reading token"))?
    } else {
        let accessor = a.accessor.get(io, "Must specify the -accessor-id parameter")?;
        let c = client::connect(&a.http, io.env)?;
        let reply = c.get(&token_path(&accessor), &[]).and_then(|r| r.ok());
        reply.map_err(failed(format_args!("Error reading token {accessor:?}")))?
    };
    print(io, format, &body, |t| pretty_token(t, a.meta))
}

/// Updates a token; fields not given keep their values, except the identities (Consul's rule:
/// -service-identity/-node-identity replace them, the -append-* variants add).
#[derive(Parser, Debug)]
#[command(name = "cairn acl token update", disable_version_flag = true)]
pub(super) struct UpdateArgs {
    #[command(flatten)]
    accessor: AccessorFlag,
    /// A new description (an empty one keeps the old).
    #[arg(long, default_value = "")]
    description: String,
    /// Policy IDs replacing the token's policies (repeatable).
    #[arg(long = "policy-id")]
    policy_ids: Vec<String>,
    /// Policy names replacing the token's policies (repeatable).
    #[arg(long = "policy-name")]
    policy_names: Vec<String>,
    /// Policy IDs added to the token's policies (repeatable).
    #[arg(long = "append-policy-id")]
    append_policy_ids: Vec<String>,
    /// Policy names added to the token's policies (repeatable).
    #[arg(long = "append-policy-name")]
    append_policy_names: Vec<String>,
    /// Role IDs replacing the token's roles (repeatable).
    #[arg(long = "role-id")]
    role_ids: Vec<String>,
    /// Role names replacing the token's roles (repeatable).
    #[arg(long = "role-name")]
    role_names: Vec<String>,
    /// Role IDs added to the token's roles (repeatable).
    #[arg(long = "append-role-id")]
    append_role_ids: Vec<String>,
    /// Role names added to the token's roles (repeatable).
    #[arg(long = "append-role-name")]
    append_role_names: Vec<String>,
    /// Service identities replacing the token's (repeatable).
    #[arg(long = "service-identity")]
    service_identities: Vec<String>,
    /// Service identities added to the token's (repeatable).
    #[arg(long = "append-service-identity")]
    append_service_identities: Vec<String>,
    /// Node identities replacing the token's (repeatable).
    #[arg(long = "node-identity")]
    node_identities: Vec<String>,
    /// Node identities added to the token's (repeatable).
    #[arg(long = "append-node-identity")]
    append_node_identities: Vec<String>,
    /// Also show the hash and Raft indexes.
    #[arg(long)]
    meta: bool,
    #[command(flatten)]
    format: FormatFlag,
    #[command(flatten)]
    http: HttpFlags,
}

pub(crate) fn update(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: UpdateArgs = parse("cairn acl token update", args)?;
    let format = Format::parse(&a.format.format)?;
    let accessor = a.accessor.get(io, "Cannot update a token without specifying the -accessor-id parameter")?;
    let combine = |what: &str, set: &str, append: &str, kind: &str| {
        format!("Cannot combine the use of {what} with {append}. To set or overwrite existing {kind}, use {set}. To append to existing {kind}, use {append}.")
    };
    let conflicts = [
        (!a.policy_ids.is_empty() || !a.policy_names.is_empty()) && !(a.append_policy_ids.is_empty() && a.append_policy_names.is_empty()),
        (!a.role_ids.is_empty() || !a.role_names.is_empty()) && !(a.append_role_ids.is_empty() && a.append_role_names.is_empty()),
        !a.service_identities.is_empty() && !a.append_service_identities.is_empty(),
        !a.node_identities.is_empty() && !a.append_node_identities.is_empty(),
    ];
    // Consul's messages, word for word (the first two say "append- variants").
    match conflicts {
        [true, ..] => return fail("Cannot combine the use of policy-id/policy-name flags with append- variants. To set or overwrite existing policies, use -policy-id or -policy-name. To append to existing policies, use -append-policy-id or -append-policy-name."),
        [_, true, ..] => return fail("Cannot combine the use of role-id/role-name flags with append- variants. To set or overwrite existing roles, use -role-id or -role-name. To append to existing roles, use -append-role-id or -append-role-name."),
        [_, _, true, _] => return fail(combine("service-identity flag", "-service-identity", "-append-service-identity", "service identities").replace("with -append", "with append")),
        [_, _, _, true] => return fail(combine("node-identity flag", "-node-identity", "-append-node-identity", "node identities").replace("with -append", "with append")),
        _ => {}
    }
    let services = service_identities(if a.append_service_identities.is_empty() { &a.service_identities } else { &a.append_service_identities })?;
    let nodes = node_identities(if a.append_node_identities.is_empty() { &a.node_identities } else { &a.append_node_identities })?;
    let c = client::connect(&a.http, io.env)?;
    let current = c.get(&token_path(&accessor), &[]).and_then(|r| r.json::<Value>());
    let mut token = current.map_err(failed("Error when retrieving current token"))?;
    if !token.is_object() {
        return fail(format!("Error when retrieving current token: token {accessor:?} not found"));
    }
    if !a.description.is_empty() {
        token["Description"] = json!(a.description);
    }
    let replacing_policies = !a.policy_ids.is_empty() || !a.policy_names.is_empty();
    edit_links(&mut token, "Policies", replacing_policies, &[&a.policy_names, &a.append_policy_names], &[&a.policy_ids, &a.append_policy_ids]);
    let replacing_roles = !a.role_ids.is_empty() || !a.role_names.is_empty();
    edit_links(&mut token, "Roles", replacing_roles, &[&a.role_names, &a.append_role_names], &[&a.role_ids, &a.append_role_ids]);
    merge_identities(&mut token, "ServiceIdentities", services, !a.append_service_identities.is_empty(), &["ServiceName"]);
    merge_identities(&mut token, "NodeIdentities", nodes, !a.append_node_identities.is_empty(), &["NodeName", "Datacenter"]);
    let body = c
        .put(&token_path(&accessor), &[], token.to_string().into_bytes())
        .and_then(|r| r.ok())
        .map_err(failed(format_args!("Failed to update token {accessor}")))?;
    print(io, format, &body, |t| pretty_token(t, a.meta))
}

/// Replace a token's policy or role links (when `replace`), or append to them.
fn edit_links(token: &mut Value, key: &str, replace: bool, names: &[&Vec<String>], ids: &[&Vec<String>]) {
    let flat = |lists: &[&Vec<String>]| lists.iter().flat_map(|l| l.iter().cloned()).collect::<Vec<_>>();
    let (names, ids) = (flat(names), flat(ids));
    if !replace && names.is_empty() && ids.is_empty() {
        return;
    }
    let mut list = if replace { Vec::new() } else { token[key].as_array().cloned().unwrap_or_default() };
    list.extend(links(&names, &ids));
    token[key] = Value::Array(list);
}

/// Consul's identity update: without `append` the given identities replace the token's (so
/// none given clears them, as `consul acl token update` does); with it, an identity matching
/// an existing one on `same` replaces it and the others are added.
fn merge_identities(token: &mut Value, key: &str, given: Vec<Value>, append: bool, same: &[&str]) {
    if !append {
        token[key] = Value::Array(given);
        return;
    }
    let mut list = token[key].as_array().cloned().unwrap_or_default();
    for identity in given {
        match list.iter_mut().find(|old| same.iter().all(|k| old[*k] == identity[*k])) {
            Some(old) => *old = identity,
            None => list.push(identity),
        }
    }
    token[key] = Value::Array(list);
}

/// Deletes a token.
#[derive(Parser, Debug)]
#[command(name = "cairn acl token delete", disable_version_flag = true)]
pub(super) struct DeleteArgs {
    #[command(flatten)]
    accessor: AccessorFlag,
    #[command(flatten)]
    http: HttpFlags,
}

pub(crate) fn delete(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: DeleteArgs = parse("cairn acl token delete", args)?;
    let accessor = a.accessor.get(io, "Must specify the -accessor-id parameter")?;
    let c = client::connect(&a.http, io.env)?;
    c.delete(&token_path(&accessor), &[])
        .and_then(|r| r.ok())
        .map_err(failed(format_args!("Error deleting token {accessor:?}")))?;
    io.note(format_args!("Token {accessor:?} deleted successfully"));
    Ok(())
}

/// Lists every token.
#[derive(Parser, Debug)]
#[command(name = "cairn acl token list", disable_version_flag = true)]
pub(super) struct ListArgs {
    /// Also show the hash and Raft indexes.
    #[arg(long)]
    meta: bool,
    #[command(flatten)]
    format: FormatFlag,
    #[command(flatten)]
    http: HttpFlags,
}

pub(crate) fn list(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: ListArgs = parse("cairn acl token list", args)?;
    let format = Format::parse(&a.format.format)?;
    let c = client::connect(&a.http, io.env)?;
    let body = c
        .get("/v1/acl/tokens", &[])
        .and_then(|r| r.ok())
        .map_err(failed("Failed to retrieve the token list"))?;
    print(io, format, &body, |t: &Vec<Token>| pretty_token_list(t, a.meta))
}

/// Clones a token: same policies, roles and identities, new IDs.
#[derive(Parser, Debug)]
#[command(name = "cairn acl token clone", disable_version_flag = true)]
pub(super) struct CloneArgs {
    #[command(flatten)]
    accessor: AccessorFlag,
    /// A description for the new token.
    #[arg(long, default_value = "")]
    description: String,
    #[command(flatten)]
    format: FormatFlag,
    #[command(flatten)]
    http: HttpFlags,
}

pub(crate) fn clone(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: CloneArgs = parse("cairn acl token clone", args)?;
    let format = Format::parse(&a.format.format)?;
    let accessor = a.accessor.get(io, "Cannot update a token without specifying the -accessor-id parameter")?;
    let c = client::connect(&a.http, io.env)?;
    let body = json!({ "Description": a.description }).to_string().into_bytes();
    let body = c
        .put(&format!("{}/clone", token_path(&accessor)), &[], body)
        .and_then(|r| r.ok())
        .map_err(failed("Error cloning token"))?;
    print(io, format, &body, |t| pretty_token(t, false))
}
