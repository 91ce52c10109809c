//! `cairn acl role create|read|update|delete|list`, as Consul's `consul acl role`
//! (command/acl/role/*), over `/v1/acl/role*`.

use clap::Parser;
use serde_json::{Value, json};

use crate::cli::acl::{FormatFlag, failed, links, node_identities, print, service_identities};
use crate::cli::acl_format::{Format, Role, pretty_role};
use crate::cli::client::{self, HttpFlags};
use crate::cli::{Fail, Io, fail, parse};

/// The grants a role is made of (create and update share them).
#[derive(clap::Args, Debug, Clone)]
struct Grants {
    /// ID of a policy for the role (repeatable).
    #[arg(long = "policy-id")]
    policy_ids: Vec<String>,
    /// Name of a policy for the role (repeatable).
    #[arg(long = "policy-name")]
    policy_names: Vec<String>,
    /// SERVICENAME or SERVICENAME:DC1,DC2 (repeatable).
    #[arg(long = "service-identity")]
    service_identities: Vec<String>,
    /// NODENAME:DATACENTER (repeatable).
    #[arg(long = "node-identity")]
    node_identities: Vec<String>,
}

/// Creates an ACL role.
#[derive(Parser, Debug)]
#[command(name = "cairn acl role create", disable_version_flag = true)]
pub(super) struct CreateArgs {
    /// The new role's name (required).
    #[arg(long, default_value = "")]
    name: String,
    /// A description of the role.
    #[arg(long, default_value = "")]
    description: String,
    #[command(flatten)]
    grants: Grants,
    /// Also show the hash and Raft indexes.
    #[arg(long)]
    meta: bool,
    #[command(flatten)]
    format: FormatFlag,
    #[command(flatten)]
    http: HttpFlags,
}

pub(crate) fn create(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: CreateArgs = parse("cairn acl role create", args)?;
    let format = Format::parse(&a.format.format)?;
    if a.name.is_empty() {
        return fail("Missing require '-name' flag\nUsage: cairn acl role create -name NAME [options]");
    }
    let g = &a.grants;
    if g.policy_ids.is_empty() && g.policy_names.is_empty() && g.service_identities.is_empty() && g.node_identities.is_empty() {
        return fail("Cannot create a role without specifying -policy-name, -policy-id, -service-identity, or -node-identity at least once");
    }
    let mut role = json!({ "Name": a.name, "Description": a.description });
    for (key, list) in [
        ("Policies", links(&g.policy_names, &g.policy_ids)),
        ("ServiceIdentities", service_identities(&g.service_identities)?),
        ("NodeIdentities", node_identities(&g.node_identities)?),
    ] {
        if !list.is_empty() {
            role[key] = Value::Array(list);
        }
    }
    let c = client::connect(&a.http, io.env)?;
    let body = c
        .put("/v1/acl/role", &[], role.to_string().into_bytes())
        .and_then(|r| r.ok())
        .map_err(failed("Failed to create new role"))?;
    print(io, format, &body, |r| pretty_role(r, a.meta, false))
}

fn role_path(id: &str) -> String {
    format!("/v1/acl/role/{}", client::encode(id, false))
}

fn name_path(name: &str) -> String {
    format!("/v1/acl/role/name/{}", client::encode(name, false))
}

/// The role at `path`, or `None` when the agent has none (404, or Consul's older `null`).
fn fetch(c: &client::Client, path: &str) -> Result<Option<Vec<u8>>, client::ClientError> {
    let reply = c.get(path, &[])?;
    if reply.status == 404 {
        return Ok(None);
    }
    let body = reply.ok()?;
    Ok((body.trim_ascii() != b"null").then_some(body))
}

/// Reads one role by -id or -name.
#[derive(Parser, Debug)]
#[command(name = "cairn acl role read", disable_version_flag = true)]
pub(super) struct ReadArgs {
    /// The role's ID.
    #[arg(long, default_value = "")]
    id: String,
    /// The role's name.
    #[arg(long, default_value = "")]
    name: String,
    /// Also show the hash and Raft indexes.
    #[arg(long)]
    meta: bool,
    #[command(flatten)]
    format: FormatFlag,
    #[command(flatten)]
    http: HttpFlags,
}

pub(crate) fn read(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: ReadArgs = parse("cairn acl role read", args)?;
    let format = Format::parse(&a.format.format)?;
    if a.id.is_empty() && a.name.is_empty() {
        return fail("Must specify either the -id or -name parameters");
    }
    let c = client::connect(&a.http, io.env)?;
    let (path, what, missing) = if a.id.is_empty() {
        (name_path(&a.name), &a.name, format!("Role not found with name {:?}", a.name))
    } else {
        (role_path(&a.id), &a.id, format!("Role not found with ID {:?}", a.id))
    };
    let body = fetch(&c, &path).map_err(failed(format_args!("Error reading role {what:?}")))?;
    let Some(body) = body else { return fail(missing) };
    print(io, format, &body, |r| pretty_role(r, a.meta, false))
}

/// Updates a role; by default the given grants are merged into the current ones.
#[derive(Parser, Debug)]
#[command(name = "cairn acl role update", disable_version_flag = true)]
pub(super) struct UpdateArgs {
    /// The ID of the role to update (required).
    #[arg(long, default_value = "")]
    id: String,
    /// A new name.
    #[arg(long, default_value = "")]
    name: String,
    /// A new description.
    #[arg(long, default_value = "")]
    description: String,
    #[command(flatten)]
    grants: Grants,
    /// Overwrite every field with what is given instead of merging with the current role.
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
    let a: UpdateArgs = parse("cairn acl role update", args)?;
    let format = Format::parse(&a.format.format)?;
    if a.id.is_empty() {
        return fail("Cannot update a role without specifying the -id parameter");
    }
    let g = &a.grants;
    let services = service_identities(&g.service_identities)?;
    let nodes = node_identities(&g.node_identities)?;
    let c = client::connect(&a.http, io.env)?;
    // Read the current role in both cases, so a missing one fails clearly (as Consul does).
    let current = fetch(&c, &role_path(&a.id)).map_err(failed("Error when retrieving current role"))?;
    let Some(current) = current else {
        return fail(format!("Role not found with ID {:?}", a.id));
    };
    let role = if a.no_merge {
        json!({
            "ID": a.id, "Name": a.name, "Description": a.description,
            "Policies": links(&g.policy_names, &g.policy_ids),
            "ServiceIdentities": services, "NodeIdentities": nodes,
        })
    } else {
        merged(client::decode_json(&current)?, &a, services, nodes)
    };
    let body = c
        .put(&role_path(&a.id), &[], role.to_string().into_bytes())
        .and_then(|r| r.ok())
        .map_err(failed(format_args!("Error updating role {:?}", a.id)))?;
    print(io, format, &body, |r| pretty_role(r, a.meta, false))
}

/// Consul's merge: a new name or description replaces the old; policies not linked yet are
/// added; a service identity replaces the one of the same service; node identities not
/// present are added. (Consul's own node check compares datacenters with `!=`, a bug that
/// adds duplicates; here a node identity equal on name and datacenter is not added twice.)
fn merged(mut role: Value, a: &UpdateArgs, services: Vec<Value>, nodes: Vec<Value>) -> Value {
    if !a.name.is_empty() {
        role["Name"] = json!(a.name);
    }
    if !a.description.is_empty() {
        role["Description"] = json!(a.description);
    }
    let mut push_new = |key: &str, item: Value, same: &dyn Fn(&Value, &Value) -> bool, replace: bool| {
        let mut list = role[key].as_array().cloned().unwrap_or_default();
        match list.iter_mut().find(|old| same(old, &item)) {
            Some(old) if replace => *old = item,
            Some(_) => {}
            None => list.push(item),
        }
        role[key] = Value::Array(list);
    };
    for link in links(&a.grants.policy_names, &a.grants.policy_ids) {
        let same = |old: &Value, new: &Value| ["ID", "Name"].iter().any(|k| new.get(*k).is_some_and(|v| old.get(*k) == Some(v)));
        push_new("Policies", link, &same, false);
    }
    for identity in services {
        push_new("ServiceIdentities", identity, &|old, new| old["ServiceName"] == new["ServiceName"], true);
    }
    for identity in nodes {
        let same = |old: &Value, new: &Value| old["NodeName"] == new["NodeName"] && old["Datacenter"] == new["Datacenter"];
        push_new("NodeIdentities", identity, &same, false);
    }
    role
}

/// Deletes a role by -id or -name.
#[derive(Parser, Debug)]
#[command(name = "cairn acl role delete", disable_version_flag = true)]
pub(super) struct DeleteArgs {
    /// The role's ID.
    #[arg(long, default_value = "")]
    id: String,
    /// The role's name.
    #[arg(long, default_value = "")]
    name: String,
    #[command(flatten)]
    http: HttpFlags,
}

pub(crate) fn delete(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: DeleteArgs = parse("cairn acl role delete", args)?;
    if a.id.is_empty() && a.name.is_empty() {
        return fail("Must specify the -id or -name parameters");
    }
    let c = client::connect(&a.http, io.env)?;
    let id = if a.id.is_empty() {
        let found = fetch(&c, &name_path(&a.name)).map_err(failed("Error determining role ID"))?;
        let Some(body) = found else {
            return fail(format!("Error determining role ID: No such role with name {}", a.name));
        };
        client::decode_json::<Role>(&body)?.id
    } else {
        a.id.clone()
    };
    c.delete(&role_path(&id), &[])
        .and_then(|r| r.ok())
        .map_err(failed(format_args!("Error deleting role {id:?}")))?;
    io.note(format_args!("Role {id:?} deleted successfully"));
    Ok(())
}

/// Lists every role.
#[derive(Parser, Debug)]
#[command(name = "cairn acl role list", disable_version_flag = true)]
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
    let a: ListArgs = parse("cairn acl role list", args)?;
    let format = Format::parse(&a.format.format)?;
    let c = client::connect(&a.http, io.env)?;
    let body = c
        .get("/v1/acl/roles", &[])
        .and_then(|r| r.ok())
        .map_err(failed("Failed to retrieve the role list"))?;
    print(io, format, &body, |roles: &Vec<Role>| roles.iter().map(|r| pretty_role(r, a.meta, true)).collect())
}
