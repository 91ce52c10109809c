//! The whole command line as one clap `Command` tree, for what is generated from it: the
//! shell completions and the man page that the .deb ships, written by the hidden
//! `cairn generate-assets DIR` (ARCHITECTURE.md, "Packaging", says why not a build script).
//!
//! Dispatch stays the hand-written match in `cli::run_with`, so this tree is a second list of
//! the verbs; `tests::every_verb_of_the_tree_dispatches` walks it through the dispatcher, so
//! a verb in one list and not the other fails the build's tests.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Arg, ArgAction, Command, CommandFactory};

use crate::cli::{Fail, Io, fail};

/// Every verb with its own flags, each named by its path (`#[command(name = "cairn kv get")]`).
fn leaves() -> Vec<Command> {
    use crate::cli::*;
    vec![
        acl::BootstrapArgs::command(),
        acl::AgentTokenArgs::command(),
        acl_policy::CreateArgs::command(),
        acl_policy::ReadArgs::command(),
        acl_policy::UpdateArgs::command(),
        acl_policy::DeleteArgs::command(),
        acl_policy::ListArgs::command(),
        acl_role::CreateArgs::command(),
        acl_role::ReadArgs::command(),
        acl_role::UpdateArgs::command(),
        acl_role::DeleteArgs::command(),
        acl_role::ListArgs::command(),
        acl_token::CreateArgs::command(),
        acl_token::ReadArgs::command(),
        acl_token::UpdateArgs::command(),
        acl_token::DeleteArgs::command(),
        acl_token::ListArgs::command(),
        acl_token::CloneArgs::command(),
        autopilot::GetArgs::command(),
        autopilot::SetArgs::command(),
        autopilot::StateArgs::command(),
        catalog::ServicesArgs::command(),
        catalog::NodesArgs::command(),
        catalog::DatacentersArgs::command(),
        debug::DebugArgs::command(),
        event::EventArgs::command(),
        info::InfoArgs::command(),
        keyring::KeyringArgs::command(),
        kv::GetArgs::command(),
        kv::PutArgs::command(),
        kv::DeleteArgs::command(),
        kv_history::HistoryArgs::command(),
        kv_history::RollbackArgs::command(),
        kv_transfer::ExportArgs::command(),
        kv_transfer::ImportArgs::command(),
        lock::LockArgs::command(),
        members::MembersArgs::command(),
        membership::LeaveArgs::command(),
        membership::ForceLeaveArgs::command(),
        membership::ReloadArgs::command(),
        monitor::MonitorArgs::command(),
        operator::ListPeersArgs::command(),
        operator::RemovePeerArgs::command(),
        operator::JoinArgs::command(),
        operator::TransferArgs::command(),
        rtt::RttArgs::command(),
        services::RegisterArgs::command(),
        services::DeregisterArgs::command(),
        snapshot::SaveArgs::command(),
        snapshot::RestoreArgs::command(),
        snapshot::InspectArgs::command(),
        tls::CaArgs::command(),
        tls::CertArgs::command(),
        validate::ValidateArgs::command(),
        watch::WatchArgs::command(),
        Command::new("cairn keygen").about("Generates a new gossip encryption key"),
        Command::new("cairn version").about("Prints the Cairn version"),
    ]
}

/// The verbs that only group others, with their descriptions (from the usage texts).
const GROUPS: [(&str, &str); 13] = [
    ("acl", "Interact with the ACL system (tokens, policies, roles)"),
    ("acl policy", "Create, read, update, delete and list ACL policies"),
    ("acl role", "Create, read, update, delete and list ACL roles"),
    ("acl token", "Create, read, update, delete, list and clone ACL tokens"),
    ("catalog", "Interact with the catalog"),
    ("kv", "Interact with the key-value store"),
    ("operator", "Cluster operations"),
    ("operator autopilot", "Read and set the autopilot configuration, and its state"),
    ("operator raft", "List, remove Raft peers and transfer leadership"),
    ("services", "Interact with services"),
    ("snapshot", "Saves, restores and inspects snapshots of the state"),
    ("tls", "Creates a CA and certificates for TLS on the server port"),
    ("tls ca", "Creates a certificate authority"),
];

/// The tree: `cairn` with `agent` (its flags from `config`) and every leaf under its path.
pub(crate) fn command_tree() -> Command {
    let mut root = Command::new("cairn")
        .about("Service discovery and configuration agent that speaks Consul's HTTP API, DNS and CLI")
        .version(env!("CARGO_PKG_VERSION"))
        .subcommand_required(true)
        .subcommand(agent_command());
    for leaf in leaves() {
        let path: Vec<String> = leaf.get_name().split(' ').skip(1).map(str::to_owned).collect();
        root = insert(root, &path, 0, leaf);
    }
    root
}

/// `cairn agent`: its flags are hand-parsed (`config::flags`), so they are listed from there.
fn agent_command() -> Command {
    let about = "Runs a Cairn agent (flags are Go-style: -flag=value or -flag value)";
    crate::config::agent_flags().into_iter().fold(Command::new("agent").about(about), |command, (name, takes_value)| {
        let action = if takes_value { ArgAction::Append } else { ArgAction::SetTrue };
        command.arg(Arg::new(name).long(name).action(action))
    })
}

/// Puts `leaf` under `path[depth..]` (`path`: the words after `cairn`), making group
/// commands on the way.
fn insert(parent: Command, path: &[String], depth: usize, leaf: Command) -> Command {
    let Some(word) = path.get(depth) else { return parent };
    if depth + 1 == path.len() {
        return parent.subcommand(leaf.name(word.clone()));
    }
    let parent = if parent.get_subcommands().any(|c| c.get_name() == word) {
        parent
    } else {
        let group_path = path[..=depth].join(" ");
        let about = GROUPS.iter().find(|(group, _)| *group == group_path).map(|(_, about)| *about);
        parent.subcommand(Command::new(word.clone()).about(about).subcommand_required(true))
    };
    parent.mut_subcommand(word.clone(), |group| insert(group, path, depth + 1, leaf))
}

/// `cairn generate-assets DIR`: writes `completions/cairn.bash`, `completions/_cairn` (zsh),
/// `completions/cairn.fish` and a man page per command (`man/cairn.1.gz`,
/// `man/cairn-kv-get.1.gz`, ...) under DIR. Hidden: packaging runs it.
pub(crate) fn generate_assets(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let [dir] = args else {
        return fail("usage: cairn generate-assets DIR");
    };
    let dir = Path::new(dir);
    let written = write_assets(dir).map_err(|e| Fail::Msg(format!("Error writing to {}: {e}", dir.display())))?;
    for path in written {
        io.line(path)?;
    }
    Ok(())
}

fn write_assets(dir: &Path) -> std::io::Result<Vec<String>> {
    use clap_complete::Shell;
    let completions = dir.join("completions");
    std::fs::create_dir_all(&completions)?;
    std::fs::create_dir_all(dir.join("man"))?;
    let mut written = Vec::new();
    for (shell, name) in [(Shell::Bash, "cairn.bash"), (Shell::Zsh, "_cairn"), (Shell::Fish, "cairn.fish")] {
        let mut file = std::fs::File::create(completions.join(name))?;
        clap_complete::generate(shell, &mut command_tree(), "cairn", &mut file);
        file.flush()?;
        written.push(completions.join(name).display().to_string());
    }
    // One page per command (cairn.1, cairn-kv-get.1, ...), gzipped as Debian ships them.
    let man = dir.join("man");
    clap_mangen::generate_to(command_tree(), &man)?;
    let mut pages: Vec<_> = std::fs::read_dir(&man)?.map(|entry| entry.map(|e| e.path())).collect::<std::io::Result<_>>()?;
    pages.retain(|page| page.extension().is_some_and(|ext| ext == "1"));
    pages.sort();
    for page in pages {
        let path = PathBuf::from(format!("{}.gz", page.display()));
        let mut gzip = flate2::write::GzEncoder::new(std::fs::File::create(&path)?, flate2::Compression::best());
        gzip.write_all(&std::fs::read(&page)?)?;
        gzip.finish()?.sync_all()?;
        std::fs::remove_file(&page)?;
        written.push(path.display().to_string());
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every leaf path of `command`, as the words after `cairn`.
    fn leaf_paths(command: &Command, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
        if command.get_subcommands().next().is_none() {
            out.push(prefix);
            return;
        }
        for sub in command.get_subcommands() {
            let mut path = prefix.clone();
            path.push(sub.get_name().to_owned());
            leaf_paths(sub, path, out);
        }
    }

    #[test]
    fn every_verb_of_the_tree_dispatches() {
        let mut paths = Vec::new();
        leaf_paths(&command_tree(), Vec::new(), &mut paths);
        assert!(paths.len() > 40, "{paths:?}");
        for path in paths {
            // `agent` would run an agent; `keygen` and `version` have no flags to ask help of.
            if matches!(path[0].as_str(), "agent" | "keygen" | "version") {
                continue;
            }
            let argv: Vec<String> = std::iter::once("cairn".to_owned()).chain(path.iter().cloned()).chain(["-h".to_owned()]).collect();
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let code = crate::cli::run_with(&argv, &|_| None, &mut out, &mut err);
            let help = String::from_utf8_lossy(&err);
            assert_eq!(code, std::process::ExitCode::SUCCESS, "{path:?}: {help}");
            assert!(help.contains(&format!("Usage: cairn {}", path.join(" "))), "{path:?} dispatches elsewhere: {help}");
        }
    }

    #[test]
    fn every_verb_of_the_usage_is_in_the_tree() {
        let tree = command_tree();
        let verbs = crate::cli::USAGE.lines().skip_while(|line| !line.starts_with("Available")).skip(1);
        let verbs: Vec<&str> = verbs.take_while(|line| !line.trim().is_empty()).filter_map(|line| line.split_whitespace().next()).collect();
        assert!(verbs.len() > 20, "{verbs:?}");
        for verb in verbs {
            assert!(tree.find_subcommand(verb).is_some(), "{verb} is in the usage, not in the tree");
        }
    }
}
