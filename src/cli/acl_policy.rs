//! `cairn acl policy create|read|update|delete|list`, as Consul's `consul acl policy`
//! (command/acl/policy/*), over `/v1/acl/policy*`. `-rules` takes the rules text, `@file`, or
//! `-` for stdin.

use clap::Parser;
use serde_json::{Value, json};

use crate::cli::acl::{FormatFlag, failed, load_data_source, print};
use crate::cli::acl_format::{Format, Policy, pretty_policy, pretty_policy_list};
use crate::cli::client::{self, Client, ClientError, HttpFlags};
use crate::cli::{Fail, Io, fail, parse};

/// Creates an ACL policy.
#[derive(Parser, Debug)]
#[command(name = "cairn acl policy create", disable_version_flag = true)]
pub(super) struct CreateArgs {
    /// The new policy's name (required).
    #[arg(long, default_value = "")]
    name: String,
    /// A description of the policy.
    #[arg(long, default_value = "")]
    description: String,
    /// A datacenter the policy is valid in (repeatable; default all).
    #[arg(long = "valid-datacenter")]
    datacenters: Vec<String>,
    /// The policy rules: the text, `@file`, or `-` for stdin.
    #[arg(long, default_value = "")]
    rules: String,
    /// Also show the hash and Raft indexes.
    #[arg(long)]
    meta: bool,
    #[command(flatten)]
    format: FormatFlag,
    #[command(flatten)]
    http: HttpFlags,
}

pub(crate) fn create(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: CreateArgs = parse("cairn acl policy create", args)?;
    let format = Format::parse(&a.format.format)?;
    if a.name.is_empty() {
        return fail("Missing require '-name' flag\nUsage: cairn acl policy create -name NAME [options]");
    }
    let rules = load_data_source(&a.rules).map_err(|e| Fail::Msg(format!("Error loading rules: {e}")))?;
    let mut policy = json!({ "Name": a.name, "Description": a.description, "Rules": rules });
    if !a.datacenters.is_empty() {
        policy["Datacenters"] = json!(a.datacenters);
    }
    let c = client::connect(&a.http, io.env)?;
    let body = c
        .put("/v1/acl/policy", &[], policy.to_string().into_bytes())
        .and_then(|r| r.ok())
        .map_err(failed("Failed to create new policy"))?;
    print(io, format, &body, |p| pretty_policy(p, a.meta))
}

/// `-id` or `-name` of the policy a verb acts on.
#[derive(clap::Args, Debug, Clone)]
struct Which {
    /// The policy's ID.
    #[arg(long, default_value = "")]
    id: String,
    /// The policy's name.
    #[arg(long)]
    name: Option<String>,
}

impl Which {
    fn given(&self) -> Result<(), Fail> {
        if self.id.is_empty() && self.name.as_deref().unwrap_or_default().is_empty() {
            return fail("Must specify either the -id or -name parameters");
        }
        Ok(())
    }
}

fn policy_path(id: &str) -> String {
    format!("/v1/acl/policy/{}", client::encode(id, false))
}

fn name_path(name: &str) -> String {
    format!("/v1/acl/policy/name/{}", client::encode(name, false))
}

/// The policy's ID: `-id` as given, or the ID of the policy named `-name`.
fn resolve_id(c: &Client, which: &Which) -> Result<String, Fail> {
    if !which.id.is_empty() {
        return Ok(which.id.clone());
    }
    let name = which.name.clone().unwrap_or_default();
    let reply = c.get(&name_path(&name), &[]).map_err(failed("Error determining policy ID"))?;
    if reply.status == 404 {
        return fail(format!("Error determining policy ID: No such policy with name {name}"));
    }
    let policy: Policy = reply.json().map_err(failed("Error determining policy ID"))?;
    Ok(policy.id)
}

/// Reads one policy by -id or -name.
#[derive(Parser, Debug)]
#[command(name = "cairn acl policy read", disable_version_flag = true)]
pub(super) struct ReadArgs {
    #[command(flatten)]
    which: Which,
    /// Also show the hash and Raft indexes.
    #[arg(long)]
    meta: bool,
    #[command(flatten)]
    format: FormatFlag,
    #[command(flatten)]
    http: HttpFlags,
}

pub(crate) fn read(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: ReadArgs = parse("cairn acl policy read", args)?;
    let format = Format::parse(&a.format.format)?;
    a.which.given()?;
    let c = client::connect(&a.http, io.env)?;
    let (path, what) = if a.which.id.is_empty() {
        let name = a.which.name.clone().unwrap_or_default();
        (name_path(&name), format!("name:{name}"))
    } else {
        (policy_path(&a.which.id), format!("id:{}", a.which.id))
    };
    let reply = c.get(&path, &[]).map_err(failed(format_args!("Error reading policy {what:?}")))?;
    if reply.status == 404 {
        return fail(format!("Error policy not found: {}", a.which.name.as_deref().unwrap_or(&a.which.id)));
    }
    let body = reply.ok().map_err(failed(format_args!("Error reading policy {what:?}")))?;
    print(io, format, &body, |p| pretty_policy(p, a.meta))
}

/// Updates a policy; fields not given keep their values unless -no-merge.
#[derive(Parser, Debug)]
#[command(name = "cairn acl policy update", disable_version_flag = true)]
pub(super) struct UpdateArgs {
    /// The ID of the policy to update.
    #[arg(long, default_value = "")]
    id: String,
    /// The policy's (new) name; without -id it names the policy to update.
    #[arg(long)]
    name: Option<String>,
    /// A new description.
    #[arg(long)]
    description: Option<String>,
    /// Datacenters the policy is valid in (repeatable; replace the old list).
    #[arg(long = "valid-datacenter")]
    datacenters: Vec<String>,
    /// New rules: the text, `@file`, or `-` for stdin.
    #[arg(long)]
    rules: Option<String>,
    /// Overwrite every field with what is given instead of merging with the current policy.
    #[arg(long = "no-merge")]
    no_merge: bool,
    /// Also show the hash and Raft indexes.
    #[arg(long)]
    meta: bool,
    #[command(flatten)]
    format: FormatFlag,
    #[command(flatten)]
    http: HttpFlags,
}

pub(crate) fn update(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: UpdateArgs = parse("cairn acl policy update", args)?;
    let format = Format::parse(&a.format.format)?;
    let which = Which { id: a.id.clone(), name: a.name.clone() };
    which.given()?;
    let c = client::connect(&a.http, io.env)?;
    let id = resolve_id(&c, &which)?;
    let rules = match &a.rules {
        Some(r) => Some(load_data_source(r).map_err(|e| Fail::Msg(format!("Error loading data source: {e}")))?),
        None => None,
    };
    let mut policy = if a.no_merge {
        json!({ "ID": id, "Name": "", "Description": "", "Rules": "" })
    } else {
        let current: Result<Value, ClientError> = c.get(&policy_path(&id), &[]).and_then(|r| r.json());
        let current = current.map_err(failed(format_args!("Error reading policy {id:?}")))?;
        let field = |k: &str| current.get(k).cloned().unwrap_or(Value::Null);
        json!({ "ID": id, "Name": field("Name"), "Description": field("Description"), "Datacenters": field("Datacenters"), "Rules": field("Rules") })
    };
    for (key, value) in [("Name", a.name), ("Description", a.description), ("Rules", rules)] {
        if let Some(v) = value {
            policy[key] = json!(v);
        }
    }
    if !a.datacenters.is_empty() {
        policy["Datacenters"] = json!(a.datacenters);
    }
    let body = c
        .put(&policy_path(&id), &[], policy.to_string().into_bytes())
        .and_then(|r| r.ok())
        .map_err(failed(format_args!("Error updating policy {id:?}")))?;
    print(io, format, &body, |p| pretty_policy(p, a.meta))
}

/// Deletes a policy by -id or -name.
#[derive(Parser, Debug)]
#[command(name = "cairn acl policy delete", disable_version_flag = true)]
pub(super) struct DeleteArgs {
    #[command(flatten)]
    which: Which,
    #[command(flatten)]
    http: HttpFlags,
}

pub(crate) fn delete(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: DeleteArgs = parse("cairn acl policy delete", args)?;
    a.which.given()?;
    let c = client::connect(&a.http, io.env)?;
    let id = resolve_id(&c, &a.which)?;
    c.delete(&policy_path(&id), &[])
        .and_then(|r| r.ok())
        .map_err(failed(format_args!("Error deleting policy {id:?}")))?;
    io.note(format_args!("Policy {id:?} deleted successfully"));
    Ok(())
}

/// Lists every policy.
#[derive(Parser, Debug)]
#[command(name = "cairn acl policy list", disable_version_flag = true)]
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
    let a: ListArgs = parse("cairn acl policy list", args)?;
    let format = Format::parse(&a.format.format)?;
    let c = client::connect(&a.http, io.env)?;
    let body = c
        .get("/v1/acl/policies", &[])
        .and_then(|r| r.ok())
        .map_err(failed("Failed to retrieve the policy list"))?;
    print(io, format, &body, |p: &Vec<Policy>| pretty_policy_list(p, a.meta))
}
