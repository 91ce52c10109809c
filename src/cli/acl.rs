//! `cairn acl ...`: Consul's `consul acl` verbs over the documented `/v1/acl/*` API and
//! `/v1/agent/token/*`. This file dispatches the verb words and holds what the verbs share
//! (reading `-rules`-style data sources, parsing `-service-identity`/`-node-identity`,
//! printing in `-format=pretty|json`), plus `bootstrap` and `set-agent-token`; the token verbs
//! are in `acl_token.rs`, the policy and role verbs in `acl_policy.rs` and `acl_role.rs`, the
//! output formats in `acl_format.rs`.
//!
//! Messages are Consul's (`Failed to create new token: Unexpected response code: 403
//! (Permission denied: ...)`), since scripts match them. Like every cairn verb, the printed
//! object goes to stdout and notes ("... deleted successfully") to stderr. Consul's
//! "unique ID prefix" shortcut for IDs is not supported: IDs are sent as given.

use std::io::Read;

use clap::Parser;
use serde_json::{Value, json};

use crate::cli::acl_format::{self, Format};
use crate::cli::client::{self, ClientError, HttpFlags};
use crate::cli::{Fail, Io, acl_policy, acl_role, acl_token, fail, group_usage, parse};

/// The most a `-rules`, token or other data source (`@file`, `-` for stdin) may hold.
pub(crate) const DATA_SOURCE_BYTES_MAX: usize = 1024 * 1024;

/// `cairn acl <args>`: pick the verb.
pub(crate) fn run(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let word = |i: usize| args.get(i).map(String::as_str);
    let rest = |n: usize| args.get(n..).unwrap_or_default();
    match (word(0), word(1)) {
        (Some("bootstrap"), _) => bootstrap(rest(1), io),
        (Some("set-agent-token"), _) => set_agent_token(rest(1), io),
        (Some("token"), Some("create")) => acl_token::create(rest(2), io),
        (Some("token"), Some("read")) => acl_token::read(rest(2), io),
        (Some("token"), Some("update")) => acl_token::update(rest(2), io),
        (Some("token"), Some("delete")) => acl_token::delete(rest(2), io),
        (Some("token"), Some("list")) => acl_token::list(rest(2), io),
        (Some("token"), Some("clone")) => acl_token::clone(rest(2), io),
        (Some("token"), sub) => group_usage(sub, TOKEN_USAGE),
        (Some("policy"), Some("create")) => acl_policy::create(rest(2), io),
        (Some("policy"), Some("read")) => acl_policy::read(rest(2), io),
        (Some("policy"), Some("update")) => acl_policy::update(rest(2), io),
        (Some("policy"), Some("delete")) => acl_policy::delete(rest(2), io),
        (Some("policy"), Some("list")) => acl_policy::list(rest(2), io),
        (Some("policy"), sub) => group_usage(sub, POLICY_USAGE),
        (Some("role"), Some("create")) => acl_role::create(rest(2), io),
        (Some("role"), Some("read")) => acl_role::read(rest(2), io),
        (Some("role"), Some("update")) => acl_role::update(rest(2), io),
        (Some("role"), Some("delete")) => acl_role::delete(rest(2), io),
        (Some("role"), Some("list")) => acl_role::list(rest(2), io),
        (Some("role"), sub) => group_usage(sub, ROLE_USAGE),
        (sub, _) => group_usage(sub, ACL_USAGE),
    }
}

/// A failed request, worded as Consul's commands word it: `<context>: <error>`.
pub(crate) fn failed(context: impl std::fmt::Display) -> impl FnOnce(ClientError) -> Fail {
    move |e| Fail::Msg(format!("{context}: {e}"))
}

/// Consul's `helpers.LoadDataSource`: `@path` reads a file, `-` reads stdin, anything else
/// (including the empty string) is the value itself. Both reads stop at [`DATA_SOURCE_BYTES_MAX`].
pub(crate) fn load_data_source(arg: &str) -> Result<String, String> {
    if let Some(path) = arg.strip_prefix('@') {
        let file = std::fs::File::open(path).map_err(|e| format!("Failed to read file: {e}"))?;
        return read_bounded(file).map_err(|e| format!("Failed to read file: {e}"));
    }
    if arg == "-" {
        return read_bounded(std::io::stdin()).map_err(|e| format!("Failed to read stdin: {e}"));
    }
    Ok(arg.to_owned())
}

fn read_bounded(source: impl Read) -> Result<String, String> {
    let mut text = String::new();
    source
        .take(DATA_SOURCE_BYTES_MAX as u64 + 1)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    if text.len() > DATA_SOURCE_BYTES_MAX {
        return Err(format!("more than {DATA_SOURCE_BYTES_MAX} bytes"));
    }
    Ok(text)
}

/// `-service-identity NAME[:DC1,DC2]` values as the API's `ServiceIdentities`.
pub(crate) fn service_identities(raw: &[String]) -> Result<Vec<Value>, Fail> {
    raw.iter()
        .map(|s| match s.split(':').collect::<Vec<_>>()[..] {
            [name] => Ok(json!({ "ServiceName": name })),
            [name, dcs] => Ok(json!({ "ServiceName": name, "Datacenters": dcs.split(',').collect::<Vec<_>>() })),
            _ => fail(format!("Malformed -service-identity argument: {s:?}")),
        })
        .collect()
}

/// `-node-identity NAME:DC` values as the API's `NodeIdentities`.
pub(crate) fn node_identities(raw: &[String]) -> Result<Vec<Value>, Fail> {
    raw.iter()
        .map(|s| match s.split(':').collect::<Vec<_>>()[..] {
            [name, dc] => Ok(json!({ "NodeName": name, "Datacenter": dc })),
            _ => fail(format!("Malformed -node-identity argument: {s:?}")),
        })
        .collect()
}

/// `{"ID": id}` links from `-policy-id`, then `{"Name": name}` from `-policy-name` (Consul
/// sends names first; the agent resolves them).
pub(crate) fn links(names: &[String], ids: &[String]) -> Vec<Value> {
    let by_name = names.iter().map(|n| json!({ "Name": n }));
    by_name.chain(ids.iter().map(|id| json!({ "ID": id }))).collect()
}

/// Print an agent's answer: its JSON re-indented, or the pretty block `pretty` makes of it.
pub(crate) fn print<T: serde::de::DeserializeOwned>(
    io: &mut Io<'_>,
    format: Format,
    body: &[u8],
    pretty: impl FnOnce(&T) -> String,
) -> Result<(), Fail> {
    let value: T = client::decode_json(body)?;
    match format {
        Format::Json => io.line(acl_format::indent_json(&String::from_utf8_lossy(body))),
        Format::Pretty => io.line(pretty(&value)),
    }
}

/// The `-format` flag every printing verb has.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct FormatFlag {
    /// Output format {pretty|json}.
    #[arg(long, default_value = "pretty")]
    pub(crate) format: String,
}

/// Bootstraps the ACL system: creates the initial management token and prints it.
#[derive(Parser, Debug)]
#[command(name = "cairn acl bootstrap", disable_version_flag = true)]
pub(super) struct BootstrapArgs {
    #[command(flatten)]
    format: FormatFlag,
    #[command(flatten)]
    http: HttpFlags,
    /// Optional secret to use, read from a file (`@path` or a path) or `-` (stdin).
    secret: Vec<String>,
}

fn bootstrap(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: BootstrapArgs = parse("cairn acl bootstrap", args)?;
    let format = Format::parse(&a.format.format)?;
    if a.secret.len() > 1 {
        return fail("This command takes up to one argument");
    }
    // Consul's LoadDataSourceNoRaw: the argument always names a file (or stdin), never the
    // secret itself, so it does not end up in shell history.
    let secret = match a.secret.first().map(String::as_str) {
        None => String::new(),
        Some(arg) => {
            let source = if arg == "-" || arg.starts_with('@') { arg.to_owned() } else { format!("@{arg}") };
            load_data_source(&source).map_err(|e| Fail::Msg(format!("Error reading provided token: {e}")))?
        }
    };
    let body = match secret.trim() {
        "" => Vec::new(),
        s => json!({ "BootstrapSecret": s }).to_string().into_bytes(),
    };
    let c = client::connect(&a.http, io.env)?;
    let reply = c.put("/v1/acl/bootstrap", &[], body).and_then(|r| r.ok());
    let body = reply.map_err(failed("Failed ACL bootstrapping"))?;
    print(io, format, &body, |t| acl_format::pretty_token(t, false))
}

/// Sets one of the agent's own tokens: `cairn acl set-agent-token TYPE TOKEN`.
#[derive(Parser, Debug)]
#[command(name = "cairn acl set-agent-token", disable_version_flag = true)]
pub(super) struct AgentTokenArgs {
    #[command(flatten)]
    http: HttpFlags,
    /// TYPE (default, agent, recovery, replication, config_file_service_registration, dns),
    /// then TOKEN (the value, `@file` or `-` for stdin).
    args: Vec<String>,
}

/// The token types and the `/v1/agent/token/<path>` each is set through.
const AGENT_TOKEN_TYPES: [(&str, &str); 6] = [
    ("default", "default"),
    ("agent", "agent"),
    ("recovery", "agent_recovery"),
    ("replication", "replication"),
    ("config_file_service_registration", "config_file_service_registration"),
    ("dns", "dns"),
];

fn set_agent_token(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: AgentTokenArgs = parse("cairn acl set-agent-token", args)?;
    let known = |t: &str| AGENT_TOKEN_TYPES.iter().find(|(name, _)| *name == t).map(|(_, path)| *path);
    let (kind, token) = match &a.args[..] {
        [] => return fail("Error! Missing TYPE and TOKEN arguments"),
        [kind] if known(kind).is_some() => return fail("Error! Missing TOKEN argument"),
        [_] => return fail("Error! MISSING TYPE argument"),
        [kind, token] => (kind.as_str(), load_data_source(token).map_err(|e| Fail::Msg(format!("Error! {e}")))?),
        more => return fail(format!("Error! Too many arguments: expected 2 got {}", more.len())),
    };
    let Some(path) = known(kind) else {
        return fail("Unknown token type");
    };
    let c = client::connect(&a.http, io.env)?;
    let body = json!({ "Token": token }).to_string().into_bytes();
    c.put(&format!("/v1/agent/token/{path}"), &[], body)
        .and_then(|r| r.ok())
        .map_err(failed(format_args!("Failed to set ACL token {kind:?}")))?;
    io.note(format_args!("ACL token {kind:?} set successfully"));
    Ok(())
}

const ACL_USAGE: &str = "Usage: cairn acl <subcommand> [options] [args]

Subcommands:
    bootstrap          Bootstrap the ACL system
    policy             Manage ACL policies
    role               Manage ACL roles
    set-agent-token    Assign tokens for the agent's usage
    token              Manage ACL tokens";

const TOKEN_USAGE: &str = "Usage: cairn acl token <subcommand> [options]

Subcommands:
    clone     Clone an ACL token
    create    Create an ACL token
    delete    Delete an ACL token
    list      List ACL tokens
    read      Read an ACL token
    update    Update an ACL token";

const POLICY_USAGE: &str = "Usage: cairn acl policy <subcommand> [options]

Subcommands:
    create    Create an ACL policy
    delete    Delete an ACL policy
    list      List ACL policies
    read      Read an ACL policy
    update    Update an ACL policy";

const ROLE_USAGE: &str = "Usage: cairn acl role <subcommand> [options]

Subcommands:
    create    Create an ACL role
    delete    Delete an ACL role
    list      List ACL roles
    read      Read an ACL role
    update    Update an ACL role";
