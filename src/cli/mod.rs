//! The `cairn` command line: top-level dispatch plus the client verbs.
//!
//! The CLI mirrors Consul's (`cairn kv get -recurse foo`), so it has to accept
//! Go `flag`-package syntax: single-dash long flags (`-http-addr=x`,
//! `-http-addr x`), bare booleans (`-recurse`), `-flag=true|false`, and `--flag`.
//! Rather than hand-roll a parser we keep clap (derive) for each verb's flags
//! and help text, and first *normalise* the Go-style argv into clap's syntax
//! ([`normalize_go_flags`]). The normaliser also reproduces Go's rule that
//! flags end at the first positional argument, by inserting `--` there; that is
//! what makes `cairn kv put key -value` store the string `-value` like Consul.
//!
//! Verb words (`kv get`, `catalog nodes`, ...) are matched by hand here, so
//! the top-level and group usage texts read like Consul's.
//!
//! Everything is reachable through [`run_with`], which takes the environment
//! lookup and the output streams as parameters so tests never touch the real
//! process environment. Data goes to stdout; human messages (success notes,
//! errors, usage) go to stderr. Exit codes: 0 ok, 1 any error, like Consul.

mod acl;
mod acl_format;
mod acl_policy;
mod acl_role;
mod acl_token;
mod autopilot;
mod catalog;
mod client;
mod client_tls;
mod command_tree;
mod debug;
mod event;
mod info;
mod kv;
mod kv_history;
mod kv_transfer;
mod keyring;
mod lock;
mod members;
mod monitor;
mod rtt;
mod membership;
mod operator;
mod progress;
mod snapshot;
mod watch;
mod services;
mod tls;
mod validate;
#[cfg(test)]
mod tests;

use std::io::Write;
use std::process::ExitCode;

/// The streams and environment a verb runs against; injected for tests.
pub(crate) struct Io<'a> {
    pub(crate) env: &'a dyn Fn(&str) -> Option<String>,
    pub(crate) out: &'a mut dyn Write,
    pub(crate) err: &'a mut dyn Write,
    /// Whether progress bars may be drawn: stderr is a terminal (`progress`).
    pub(crate) progress: bool,
}

impl Io<'_> {
    /// Write one human-facing line to stderr. A closed stderr is not worth
    /// failing the command over, so write errors are ignored.
    pub(crate) fn note(&mut self, msg: impl std::fmt::Display) {
        let _ = writeln!(self.err, "{msg}");
    }

    /// Write one data line to stdout.
    pub(crate) fn line(&mut self, data: impl std::fmt::Display) -> Result<(), Fail> {
        writeln!(self.out, "{data}")
            .map_err(|e| Fail::Msg(format!("Error! Failed to write output: {e}")))
    }

    /// Write raw bytes (a KV value may be binary) followed by a newline.
    pub(crate) fn raw_line(&mut self, data: &[u8]) -> Result<(), Fail> {
        self.out
            .write_all(data)
            .and_then(|()| self.out.write_all(b"\n"))
            .map_err(|e| Fail::Msg(format!("Error! Failed to write output: {e}")))
    }
}

/// Why a verb stopped early. Verbs return `Result<(), Fail>` so `?` works on
/// client errors; [`finish`] turns it into the printed message and exit code.
#[derive(Debug)]
pub(crate) enum Fail {
    /// Print to stderr, exit 1.
    Msg(String),
    /// Help was asked for: print to stderr, exit 0.
    Help(String),
    /// Exit with this code and print nothing (`cairn lock` passes on its child's code).
    Exit(i32),
}

impl From<client::ClientError> for Fail {
    fn from(e: client::ClientError) -> Self {
        Fail::Msg(format!("Error! {e}"))
    }
}

/// Shorthand for the common "print this and exit 1" case.
pub(crate) fn fail<T>(msg: impl Into<String>) -> Result<T, Fail> {
    Err(Fail::Msg(msg.into()))
}

/// Process entry point, called by `main`.
pub fn run(argv: Vec<String>) -> ExitCode {
    // The agent logs from many threads to the process's stdout: it must not run while this
    // thread holds the stdout lock, so it is dispatched before the streams are locked.
    if argv.get(1).is_some_and(|verb| verb == "agent") {
        return run_agent(&argv[2..]);
    }
    let env = |k: &str| std::env::var(k).ok();
    let (stdout, stderr) = (std::io::stdout(), std::io::stderr());
    let progress = std::io::IsTerminal::is_terminal(&stderr);
    let (mut out, mut err) = (stdout.lock(), stderr.lock());
    dispatch(&argv, Io { env: &env, out: &mut out, err: &mut err, progress })
}

/// [`run`] with the environment and output streams injected (for tests).
/// `argv[0]` is the program name and is ignored.
#[cfg(test)]
pub(crate) fn run_with(
    argv: &[String],
    env: &dyn Fn(&str) -> Option<String>,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> ExitCode {
    dispatch(argv, Io { env, out: stdout, err: stderr, progress: false })
}

/// Runs the verb `argv` names against `io`.
fn dispatch(argv: &[String], mut io: Io<'_>) -> ExitCode {
    let args = argv.get(1..).unwrap_or_default();
    let Some((verb, rest)) = args.split_first() else {
        return finish(&mut io, fail(USAGE));
    };
    let result = match (verb.as_str(), rest.first().map(String::as_str)) {
        ("agent", _) => {
            // Hand the streams back: the agent writes to the real process ones.
            let _ = io.out.flush();
            return run_agent(rest);
        }
        ("version" | "-v" | "-version" | "--version", _) => version(&mut io),
        (h, _) if is_help(h) => Err(Fail::Help(USAGE.to_owned())),
        ("acl", _) => acl::run(rest, &mut io),
        ("kv", Some("get")) => kv::get(&rest[1..], &mut io),
        ("kv", Some("put")) => kv::put(&rest[1..], &mut io),
        ("kv", Some("delete")) => kv::delete(&rest[1..], &mut io),
        ("kv", Some("export")) => kv_transfer::export(&rest[1..], &mut io),
        ("kv", Some("import")) => kv_transfer::import(&rest[1..], &mut io),
        ("kv", Some("history")) => kv_history::history(&rest[1..], &mut io),
        ("kv", Some("rollback")) => kv_history::rollback(&rest[1..], &mut io),
        ("kv", sub) => group_usage(sub, KV_USAGE),
        ("catalog", Some("services")) => catalog::services(&rest[1..], &mut io),
        ("catalog", Some("nodes")) => catalog::nodes(&rest[1..], &mut io),
        ("catalog", Some("datacenters")) => catalog::datacenters(&rest[1..], &mut io),
        ("catalog", sub) => group_usage(sub, CATALOG_USAGE),
        ("services", Some("register")) => services::register(&rest[1..], &mut io),
        ("services", Some("deregister")) => services::deregister(&rest[1..], &mut io),
        ("services", sub) => group_usage(sub, SERVICES_USAGE),
        ("members", _) => members::members(rest, &mut io),
        ("monitor", _) => monitor::monitor(rest, &mut io),
        ("join", _) => operator::join(rest, &mut io),
        ("leave", _) => membership::leave(rest, &mut io),
        ("force-leave", _) => membership::force_leave(rest, &mut io),
        ("reload", _) => membership::reload(rest, &mut io),
        ("validate", _) => validate::validate(rest, &mut io),
        ("info", _) => info::info(rest, &mut io),
        ("debug", _) => debug::debug(rest, &mut io),
        ("generate-assets", _) => command_tree::generate_assets(rest, &mut io),
        ("keygen", _) => membership::keygen(rest, &mut io),
        ("keyring", _) => keyring::keyring(rest, &mut io),
        ("event", _) => event::event(rest, &mut io),
        ("rtt", _) => rtt::rtt(rest, &mut io),
        ("watch", _) => watch::watch(rest, &mut io),
        ("lock", _) => lock::lock(rest, &mut io),
        ("operator", Some("raft")) => match rest.get(1).map(String::as_str) {
            Some("list-peers") => operator::list_peers(&rest[2..], &mut io),
            Some("remove-peer") => operator::remove_peer(&rest[2..], &mut io),
            Some("transfer-leader") => operator::transfer_leader(&rest[2..], &mut io),
            _ => fail("usage: cairn operator raft list-peers|remove-peer|transfer-leader"),
        },
        ("operator", Some("autopilot")) => match rest.get(1).map(String::as_str) {
            Some("get-config") => autopilot::get_config(&rest[2..], &mut io),
            Some("set-config") => autopilot::set_config(&rest[2..], &mut io),
            Some("state") => autopilot::state(&rest[2..], &mut io),
            _ => fail("usage: cairn operator autopilot get-config|set-config|state"),
        },
        ("operator", _) => fail("usage: cairn operator raft list-peers|remove-peer|transfer-leader | cairn operator autopilot get-config|set-config|state"),
        ("snapshot", Some("save")) => snapshot::save(&rest[1..], &mut io),
        ("snapshot", Some("restore")) => snapshot::restore(&rest[1..], &mut io),
        ("snapshot", Some("inspect")) => snapshot::inspect(&rest[1..], &mut io),
        ("snapshot", _) => fail("usage: cairn snapshot save|restore|inspect FILE"),
        ("tls", Some("ca")) if rest.get(1).is_some_and(|s| s == "create") => tls::ca_create(&rest[2..], &mut io),
        ("tls", Some("cert")) if rest.get(1).is_some_and(|s| s == "create") => tls::cert_create(&rest[2..], &mut io),
        ("tls", _) => fail("usage: cairn tls ca create [options] | cairn tls cert create -server|-client|-cli [options]"),
        (other, _) => fail(format!("Unknown command: {other:?}\n\n{USAGE}")),
    };
    finish(&mut io, result)
}

/// Print a verb's failure (or requested help) and pick the exit code.
fn finish(io: &mut Io<'_>, result: Result<(), Fail>) -> ExitCode {
    let _ = io.out.flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail::Help(text)) => {
            io.note(text.trim_end());
            ExitCode::SUCCESS
        }
        Err(Fail::Msg(text)) => {
            io.note(text.trim_end());
            ExitCode::FAILURE
        }
        Err(Fail::Exit(code)) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
    }
}

fn is_help(arg: &str) -> bool {
    matches!(arg, "-h" | "-help" | "--help" | "help")
}

/// `cairn kv` alone is bad usage (exit 1); `cairn kv -h` is a help request.
fn group_usage(sub: Option<&str>, usage: &str) -> Result<(), Fail> {
    match sub {
        Some(s) if is_help(s) => Err(Fail::Help(usage.to_owned())),
        Some(s) => fail(format!("Unknown subcommand: {s:?}\n\n{usage}")),
        None => fail(usage),
    }
}

/// `cairn agent ...`: load configuration and run the agent in the foreground.
/// The agent owns its tokio runtime, so nothing async happens here.
fn run_agent(args: &[String]) -> ExitCode {
    let rest_args: Vec<String> = args.to_vec();
    let loaded = match crate::config::load(&rest_args) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("==> Error loading configuration: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    for warning in &loaded.warnings {
        eprintln!("==> warning: {warning}");
    }
    match crate::daemon::run(loaded.config, rest_args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("==> Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `cairn version`: same shape as `consul version`, and needs no agent.
fn version(io: &mut Io<'_>) -> Result<(), Fail> {
    io.line(format_args!("Cairn v{}", env!("CARGO_PKG_VERSION")))?;
    io.line(
        "Protocol 2 spoken by default, understands 2 to 3 \
         (agent will automatically use protocol >2 when speaking to compatible agents)",
    )
}

/// Parse a verb's (already split off) arguments with clap after Go-style
/// normalisation. Clap's own errors become exit 1 (Consul's code, not clap's 2).
pub(crate) fn parse<T: clap::Parser>(name: &str, args: &[String]) -> Result<T, Fail> {
    // The verb's own boolean flags never consume the next argument (`-prune NODE`): read them
    // off its clap definition, so a new boolean flag cannot be forgotten in a list.
    let command = T::command();
    let booleans: Vec<&str> = command
        .get_arguments()
        .filter(|arg| matches!(arg.get_action(), clap::ArgAction::SetTrue | clap::ArgAction::SetFalse))
        .filter_map(|arg| arg.get_long())
        .collect();
    let is_boolean = |flag: &str| matches!(flag, "h" | "help") || booleans.contains(&flag);
    let argv = std::iter::once(name.to_owned()).chain(normalize_go_flags(args, &is_boolean));
    T::try_parse_from(argv).map_err(|e| {
        use clap::error::ErrorKind;
        match e.kind() {
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => Fail::Help(e.to_string()),
            _ => Fail::Msg(e.to_string()),
        }
    })
}

/// Rewrite Go `flag`-style arguments into the form clap expects.
///
/// * `-name`, `-name=v`, `--name=v` → `--name`, `--name=v`; single-letter
///   flags (`-h`) keep one dash.
/// * A value-taking flag given as `-name v` is joined to `--name=v`, so a
///   value that itself starts with `-` is not mistaken for a flag.
/// * Booleans accept Go's `-b=true|false|1|0|t|f`: true becomes the bare flag,
///   false drops it.
/// * At the first positional argument (or `-`, or a negative number) flag
///   parsing stops, as in Go: a `--` is inserted and the rest passed verbatim.
/// `is_boolean(name)` says which flags never take a value.
pub(crate) fn normalize_go_flags(args: &[String], is_boolean: &dyn Fn(&str) -> bool) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len() + 1);
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        i += 1;
        let is_flag = arg.starts_with('-')
            && arg.len() > 1
            && !arg[1..].starts_with(|c: char| c.is_ascii_digit());
        if arg == "--" || !is_flag {
            if arg != "--" {
                out.push("--".to_owned());
            }
            out.extend(args[i - 1..].iter().cloned());
            break;
        }
        let body = arg.strip_prefix("--").unwrap_or(&arg[1..]);
        if body.starts_with('-') || body.is_empty() {
            out.push(arg.clone()); // `---x`: let clap report it
            continue;
        }
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        let dashes = if name.chars().count() == 1 { "-" } else { "--" };
        if is_boolean(name) {
            match value.map(parse_go_bool) {
                None | Some(Some(true)) => out.push(format!("{dashes}{name}")),
                Some(Some(false)) => {}
                Some(None) => out.push(format!("{dashes}{body}")),
            }
            continue;
        }
        match value {
            Some(v) => out.push(format!("{dashes}{name}={v}")),
            None => match args.get(i) {
                Some(v) => {
                    out.push(format!("{dashes}{name}={v}"));
                    i += 1;
                }
                None => out.push(format!("{dashes}{name}")),
            },
        }
    }
    out
}

/// Go's `strconv.ParseBool`, which is what `-flag=value` accepts for booleans.
pub(crate) fn parse_go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

const USAGE: &str = "Usage: cairn [--version] [--help] <command> [<args>]

Available commands are:
    acl            Interact with the ACL system (tokens, policies, roles)
    agent          Runs a Cairn agent
    catalog        Interact with the catalog
    debug          Records a debugging archive for operators
    event          Fires a new event
    info           Provides debugging information for operators
    kv             Interact with the key-value store
    members        Lists the members of a Cairn cluster
    monitor        Streams logs from a Cairn agent
    join           Tells the local agent to join a cluster
    leave          Gracefully leaves the cluster and stops the agent
    force-leave    Forces a member of the cluster to enter the left state
    keygen         Generates a new gossip encryption key
    keyring        Manages gossip layer encryption keys
    reload         Triggers the agent to reload its configuration files
    rtt            Estimates network round trip time between nodes
    operator       Cluster operations (operator raft ..., operator autopilot ...)
    snapshot       Saves, restores and inspects snapshots of the state
    watch          Runs a blocking query in a loop and prints or handles each change
    lock           Runs a command while holding a lock (or a semaphore slot with -n)
    services       Interact with services
    tls            Creates a CA and certificates for TLS on the server port
    validate       Validate config files/directories
    version        Prints the Cairn version

Client commands talk to an agent's HTTP API: -http-addr, or CAIRN_HTTP_ADDR,
or CONSUL_HTTP_ADDR (default http://127.0.0.1:8500).";

const KV_USAGE: &str = "Usage: cairn kv <subcommand> [options] [args]

Subcommands:
    delete    Removes data from the KV store
    export    Exports a tree from the KV store as JSON
    get       Retrieves or lists data from the KV store
    history   Lists the versions kept of a key (cairn extension)
    import    Imports a tree stored as JSON to the KV store
    put       Sets or updates data in the KV store
    rollback  Restores an earlier version of a key (cairn extension)";

const CATALOG_USAGE: &str = "Usage: cairn catalog <subcommand> [options] [args]

Subcommands:
    datacenters    Lists all known datacenters
    nodes          Lists all nodes in the given datacenter
    services       Lists all registered services in a datacenter";

const SERVICES_USAGE: &str = "Usage: cairn services <subcommand> [options] [args]

Subcommands:
    deregister    Deregister services with the local agent
    register      Register services with the local agent";
