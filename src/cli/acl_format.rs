//! How `cairn acl ...` prints tokens, policies and roles: Consul's `-format=pretty` blocks
//! (command/acl/{token,policy,role}/formatter.go, field for field and space for space) and its
//! `-format=json` (the agent's JSON re-indented with four spaces, keeping the agent's key order).
//!
//! The pretty blocks read the agent's JSON leniently (every field optional), so an agent that
//! answers with more or fewer fields than Consul still prints.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;

use crate::cli::{Fail, fail};

/// `-format` values, as Consul's `GetSupportedFormats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Pretty,
    Json,
}

impl Format {
    /// Consul checks the format only after the request; we check first, so a typo never
    /// leaves a created token unprinted.
    pub(crate) fn parse(value: &str) -> Result<Format, Fail> {
        match value {
            "pretty" => Ok(Format::Pretty),
            "json" => Ok(Format::Json),
            other => fail(format!("Unknown format: {other}")),
        }
    }
}

/// `{ID, Name}` of a linked policy or role.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct Link {
    #[serde(rename = "ID")]
    pub(crate) id: String,
    pub(crate) name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct ServiceIdentity {
    pub(crate) service_name: String,
    pub(crate) datacenters: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct NodeIdentity {
    pub(crate) node_name: String,
    pub(crate) datacenter: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct TemplatedPolicy {
    pub(crate) template_name: String,
    pub(crate) template_variables: Option<TemplateVariables>,
    pub(crate) datacenters: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct TemplateVariables {
    pub(crate) name: String,
}

/// A token, or an entry of the token list (same fields, no rules).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct Token {
    /// Only newer Consul versions have token names: the line is printed when the agent sends one.
    pub(crate) name: Option<String>,
    #[serde(rename = "AccessorID")]
    pub(crate) accessor_id: String,
    #[serde(rename = "SecretID")]
    pub(crate) secret_id: String,
    pub(crate) partition: Option<String>,
    pub(crate) namespace: Option<String>,
    pub(crate) description: String,
    pub(crate) local: bool,
    pub(crate) auth_method: Option<String>,
    pub(crate) auth_method_namespace: Option<String>,
    pub(crate) create_time: Option<String>,
    pub(crate) expiration_time: Option<String>,
    pub(crate) hash: Option<String>,
    pub(crate) create_index: u64,
    pub(crate) modify_index: u64,
    pub(crate) policies: Option<Vec<Link>>,
    pub(crate) roles: Option<Vec<Link>>,
    pub(crate) service_identities: Option<Vec<ServiceIdentity>>,
    pub(crate) node_identities: Option<Vec<NodeIdentity>>,
    pub(crate) templated_policies: Option<Vec<TemplatedPolicy>>,
}

/// A policy, or an entry of the policy list (no rules).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct Policy {
    #[serde(rename = "ID")]
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) partition: Option<String>,
    pub(crate) namespace: Option<String>,
    pub(crate) description: String,
    pub(crate) datacenters: Option<Vec<String>>,
    pub(crate) hash: Option<String>,
    pub(crate) create_index: u64,
    pub(crate) modify_index: u64,
    pub(crate) rules: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct Role {
    #[serde(rename = "ID")]
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) partition: Option<String>,
    pub(crate) namespace: Option<String>,
    pub(crate) description: String,
    pub(crate) hash: Option<String>,
    pub(crate) create_index: u64,
    pub(crate) modify_index: u64,
    pub(crate) policies: Option<Vec<Link>>,
    pub(crate) service_identities: Option<Vec<ServiceIdentity>>,
    pub(crate) node_identities: Option<Vec<NodeIdentity>>,
    pub(crate) templated_policies: Option<Vec<TemplatedPolicy>>,
}

/// Consul's pretty token block (`FormatToken`; the list entry is the same block).
pub(crate) fn pretty_token(t: &Token, meta: bool) -> String {
    let mut out = String::new();
    if let Some(name) = &t.name {
        out += &format!("Name:             {name}\n");
    }
    out += &format!("AccessorID:       {}\n", t.accessor_id);
    out += &format!("SecretID:         {}\n", t.secret_id);
    if let Some(p) = t.partition.as_deref().filter(|p| !p.is_empty()) {
        out += &format!("Partition:        {p}\n");
    }
    if let Some(ns) = t.namespace.as_deref().filter(|n| !n.is_empty()) {
        out += &format!("Namespace:        {ns}\n");
    }
    out += &format!("Description:      {}\n", t.description);
    out += &format!("Local:            {}\n", t.local);
    if let Some(method) = t.auth_method.as_deref().filter(|m| !m.is_empty()) {
        let ns = t.auth_method_namespace.as_deref().unwrap_or_default();
        out += &format!("Auth Method:      {method} (Namespace: {ns})\n");
    }
    out += &format!("Create Time:      {}\n", go_time(t.create_time.as_deref().unwrap_or(GO_ZERO_TIME)));
    if let Some(exp) = t.expiration_time.as_deref().filter(|e| !is_zero_time(e)) {
        out += &format!("Expiration Time:  {}\n", go_time(exp));
    }
    if meta {
        out += &format!("Hash:             {}\n", hash_hex(t.hash.as_deref()));
        out += &format!("Create Index:     {}\n", t.create_index);
        out += &format!("Modify Index:     {}\n", t.modify_index);
    }
    out += &links("Policies:", "   ", t.policies.as_deref());
    out += &links("Roles:", "   ", t.roles.as_deref());
    out += &identities("", t.service_identities.as_deref(), t.node_identities.as_deref());
    out += &templated("", t.templated_policies.as_deref());
    out
}

/// Consul's token list: the blocks separated by an empty line.
pub(crate) fn pretty_token_list(tokens: &[Token], meta: bool) -> String {
    tokens.iter().map(|t| pretty_token(t, meta)).collect::<Vec<_>>().join("\n")
}

pub(crate) fn pretty_policy(p: &Policy, meta: bool) -> String {
    let mut out = format!("ID:           {}\nName:         {}\n", p.id, p.name);
    if let Some(part) = p.partition.as_deref().filter(|s| !s.is_empty()) {
        out += &format!("Partition:    {part}\n");
    }
    if let Some(ns) = p.namespace.as_deref().filter(|s| !s.is_empty()) {
        out += &format!("Namespace:    {ns}\n");
    }
    out += &format!("Description:  {}\n", p.description);
    out += &format!("Datacenters:  {}\n", p.datacenters.as_deref().unwrap_or_default().join(", "));
    if meta {
        out += &meta_lines("", p.hash.as_deref(), p.create_index, p.modify_index);
    }
    out + "Rules:\n" + &p.rules
}

pub(crate) fn pretty_policy_list(policies: &[Policy], meta: bool) -> String {
    let mut out = String::new();
    for p in policies {
        out += &format!("{}:\n   ID:           {}\n", p.name, p.id);
        if let Some(part) = p.partition.as_deref().filter(|s| !s.is_empty()) {
            out += &format!("   Partition:    {part}\n");
        }
        if let Some(ns) = p.namespace.as_deref().filter(|s| !s.is_empty()) {
            out += &format!("   Namespace:    {ns}\n");
        }
        out += &format!("   Description:  {}\n", p.description);
        out += &format!("   Datacenters:  {}\n", p.datacenters.as_deref().unwrap_or_default().join(", "));
        if meta {
            out += &meta_lines("   ", p.hash.as_deref(), p.create_index, p.modify_index);
        }
    }
    out
}

/// `FormatRole` (indent "") and one entry of `FormatRoleList` (indent "   ", name first).
pub(crate) fn pretty_role(r: &Role, meta: bool, listed: bool) -> String {
    let indent = if listed { "   " } else { "" };
    let mut out = if listed {
        format!("{}:\n   ID:           {}\n", r.name, r.id)
    } else {
        format!("ID:           {}\nName:         {}\n", r.id, r.name)
    };
    if let Some(part) = r.partition.as_deref().filter(|s| !s.is_empty()) {
        out += &format!("{indent}Partition:    {part}\n");
    }
    if let Some(ns) = r.namespace.as_deref().filter(|s| !s.is_empty()) {
        out += &format!("{indent}Namespace:    {ns}\n");
    }
    out += &format!("{indent}Description:  {}\n", r.description);
    if meta {
        out += &meta_lines(indent, r.hash.as_deref(), r.create_index, r.modify_index);
    }
    out += &links(&format!("{indent}Policies:"), &format!("{indent}   "), r.policies.as_deref());
    out += &identities(indent, r.service_identities.as_deref(), r.node_identities.as_deref());
    out + &templated(indent, r.templated_policies.as_deref())
}

fn meta_lines(indent: &str, hash: Option<&str>, create: u64, modify: u64) -> String {
    format!(
        "{indent}Hash:         {}\n{indent}Create Index: {create}\n{indent}Modify Index: {modify}\n",
        hash_hex(hash)
    )
}

fn links(title: &str, indent: &str, links: Option<&[Link]>) -> String {
    let links = links.unwrap_or_default();
    if links.is_empty() {
        return String::new();
    }
    let mut out = format!("{title}\n");
    for l in links {
        out += &format!("{indent}{} - {}\n", l.id, l.name);
    }
    out
}

fn identities(indent: &str, services: Option<&[ServiceIdentity]>, nodes: Option<&[NodeIdentity]>) -> String {
    let mut out = String::new();
    let services = services.unwrap_or_default();
    if !services.is_empty() {
        out += &format!("{indent}Service Identities:\n");
        for s in services {
            let dcs = s.datacenters.as_deref().unwrap_or_default();
            let dcs = if dcs.is_empty() { "all".to_owned() } else { dcs.join(", ") };
            out += &format!("{indent}   {} (Datacenters: {dcs})\n", s.service_name);
        }
    }
    let nodes = nodes.unwrap_or_default();
    if !nodes.is_empty() {
        out += &format!("{indent}Node Identities:\n");
        for n in nodes {
            out += &format!("{indent}   {} (Datacenter: {})\n", n.node_name, n.datacenter);
        }
    }
    out
}

fn templated(indent: &str, policies: Option<&[TemplatedPolicy]>) -> String {
    let policies = policies.unwrap_or_default();
    if policies.is_empty() {
        return String::new();
    }
    let mut out = format!("{indent}Templated Policies:\n");
    for p in policies {
        out += &format!("{indent}   {}\n", p.template_name);
        if let Some(vars) = p.template_variables.as_ref().filter(|v| !v.name.is_empty()) {
            out += &format!("{indent}      Name: {}\n", vars.name);
        }
        let dcs = p.datacenters.as_deref().unwrap_or_default();
        let dcs = if dcs.is_empty() { "all".to_owned() } else { dcs.join(", ") };
        out += &format!("{indent}      Datacenters: {dcs}\n");
    }
    out
}

/// Go prints the `Hash` bytes (base64 in JSON) with `%x`.
fn hash_hex(hash: Option<&str>) -> String {
    let bytes = hash.and_then(|h| B64.decode(h).ok()).unwrap_or_default();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn is_zero_time(rfc3339: &str) -> bool {
    rfc3339.starts_with("0001-01-01T00:00:00") && go_time(rfc3339) == "0001-01-01 00:00:00 +0000 UTC"
}

/// An RFC 3339 time as Go's `%v` prints a `time.Time` decoded from JSON:
/// `2020-05-22 18:52:31.5 +0000 UTC` (fraction without trailing zeros; a numeric offset is
/// printed twice, as Go names such a zone by its offset). Anything else is printed unchanged.
pub(crate) fn go_time(rfc3339: &str) -> String {
    let Some((date, rest)) = rfc3339.split_once('T') else {
        return rfc3339.to_owned();
    };
    let zone_at = rest.find(['Z', 'z', '+', '-']).unwrap_or(rest.len());
    let (clock, zone) = rest.split_at(zone_at);
    let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let fraction = fraction.trim_end_matches('0');
    let clock = if fraction.is_empty() { hms.to_owned() } else { format!("{hms}.{fraction}") };
    let zone = match zone {
        "Z" | "z" | "+00:00" => "+0000 UTC".to_owned(),
        "" => return rfc3339.to_owned(),
        offset => {
            let compact = offset.replace(':', "");
            format!("{compact} {compact}")
        }
    };
    format!("{date} {clock} {zone}")
}

/// JSON re-indented as Go's `json.MarshalIndent(v, "", "    ")`, keeping the key order the
/// agent sent (serde_json's `Value` would sort it). `body` must already be valid JSON.
pub(crate) fn indent_json(body: &str) -> String {
    let mut out = String::with_capacity(body.len() * 2);
    let mut depth = 0usize;
    let (mut in_string, mut escaped) = (false, false);
    let mut chars = body.trim().chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&"    ".repeat(depth));
    };
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
                    chars.next();
                }
                let close = if c == '{' { '}' } else { ']' };
                out.push(c);
                if chars.peek() == Some(&close) {
                    out.push(close);
                    chars.next();
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(',');
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_ascii_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}
