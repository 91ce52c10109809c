//! `cairn validate [-quiet] FILE_OR_DIRECTORY...`: Consul's `validate`. The files and
//! directories are loaded exactly as `cairn agent -config-file=...` loads them (`config::load`,
//! then the service and check definitions as the agent decodes them before it binds
//! anything), without starting anything.
//!
//! One difference from the agent, on purpose: an unknown key fails validation. The agent only
//! warns about it, so that whole Consul configs load; Consul fails both, and a validator that
//! passed a misspelt key would hide the very mistake it is run to catch.

use clap::Parser;

use crate::cli::{Fail, Io, fail, parse};

/// Checks configuration files or directories as the agent would load them.
#[derive(Parser, Debug)]
#[command(name = "cairn validate", disable_version_flag = true)]
pub(super) struct ValidateArgs {
    /// Print nothing when the configuration is valid.
    #[arg(long)]
    quiet: bool,
    /// The format of files whose names end in neither .json nor .toml: json or toml.
    #[arg(long)]
    config_format: Option<String>,
    /// Config files, or directories whose .json and .toml files are read in name order.
    paths: Vec<String>,
}

pub(crate) fn validate(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: ValidateArgs = parse("cairn validate", args)?;
    if a.paths.is_empty() {
        return fail("Must specify at least one config file or directory");
    }
    let mut agent_args: Vec<String> = a.paths.iter().map(|path| format!("-config-file={path}")).collect();
    if let Some(format) = &a.config_format {
        agent_args.push(format!("-config-format={format}"));
    }
    let failed = |error: &dyn std::fmt::Display| Fail::Msg(format!("Config validation failed: {error}"));
    let loaded = crate::config::load(&agent_args).map_err(|error| failed(&error))?;
    if let Some(key) = loaded.unknown_keys.first() {
        let more = loaded.unknown_keys.len() - 1;
        let others = if more > 0 { format!(" (and {more} more)") } else { String::new() };
        return Err(failed(&format_args!("invalid config key {key}{others}: the agent would ignore it")));
    }
    let definition_warnings = crate::daemon::validate_definitions(&loaded.config).map_err(|error| failed(&error))?;
    if !a.quiet {
        for warning in loaded.warnings.iter().chain(&definition_warnings) {
            io.note(format_args!("==> warning: {warning}"));
        }
        io.line("Configuration is valid!")?;
    }
    Ok(())
}
