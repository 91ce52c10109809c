//! `cairn kv export [PREFIX]` and `cairn kv import [DATA|@FILE|-]`: move a KV tree between
//! clusters as Consul's JSON (`[{"key","flags","value"}]`, value base64). Both show a progress
//! bar on a terminal (`cli::progress`).

use base64::Engine;
use clap::Parser;
use serde::{Deserialize, Serialize};

use crate::cli::client::{self, HttpFlags};
use crate::cli::kv::read_data;
use crate::cli::{Fail, Io, fail, parse, progress};

/// Most entries one import accepts (each becomes one write).
const IMPORT_ENTRIES_MAX: usize = 100_000;

#[derive(Parser, Debug)]
#[command(name = "cairn kv export", disable_version_flag = true)]
pub(super) struct ExportArgs {
    #[command(flatten)]
    http: HttpFlags,
    /// Only keys under this prefix.
    prefix: Option<String>,
}

#[derive(Parser, Debug)]
#[command(name = "cairn kv import", disable_version_flag = true)]
pub(super) struct ImportArgs {
    /// Prepend this prefix to every imported key.
    #[arg(long, default_value = "")]
    prefix: String,
    #[command(flatten)]
    http: HttpFlags,
    /// The JSON: literal, @FILE, or - for stdin.
    data: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    key: String,
    flags: u64,
    value: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KvRow {
    key: String,
    #[serde(default)]
    flags: u64,
    #[serde(default)]
    value: Option<String>,
}

pub(crate) fn export(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: ExportArgs = parse("cairn kv export", args)?;
    let c = client::connect(&a.http, io.env)?;
    let prefix = a.prefix.unwrap_or_default();
    let path = format!("/v1/kv/{}", client::encode(prefix.trim_start_matches('/'), true));
    let bar = progress::bytes(io, "Exporting", 0);
    let reply = c.get_with_progress(&path, &[("recurse", None)], &bar);
    bar.finish_and_clear();
    let reply = reply?;
    let rows: Vec<KvRow> = if reply.status == 404 { Vec::new() } else { reply.json()? };
    let entries: Vec<Entry> = rows.into_iter().map(|r| Entry { key: r.key, flags: r.flags, value: r.value.unwrap_or_default() }).collect();
    let text = serde_json::to_string_pretty(&entries).or_else(|e| fail(format!("Error! {e}")))?;
    io.line(text)
}

pub(crate) fn import(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: ImportArgs = parse("cairn kv import", args)?;
    let data = read_data(a.data.as_deref().unwrap_or("-"))?;
    let entries: Vec<Entry> = serde_json::from_slice(&data).or_else(|e| fail(format!("Error! Cannot parse the import data: {e}")))?;
    if entries.len() > IMPORT_ENTRIES_MAX {
        return fail(format!("Error! {} entries is more than the {IMPORT_ENTRIES_MAX} one import accepts", entries.len()));
    }
    let mut values = Vec::with_capacity(entries.len());
    for entry in &entries {
        let value = base64::engine::general_purpose::STANDARD
            .decode(entry.value.as_bytes())
            .or_else(|_| fail(format!("Error! The value of {:?} is not base64", entry.key)))?;
        values.push(value);
    }
    let c = client::connect(&a.http, io.env)?;
    let bar = progress::items(io, "Importing", entries.len() as u64);
    for (entry, value) in entries.iter().zip(values) {
        let key = format!("{}{}", a.prefix, entry.key);
        let path = format!("/v1/kv/{}", client::encode(&key, true));
        let written = c.put(&path, &[("flags", Some(entry.flags.to_string()))], value).and_then(|reply| reply.ok());
        if let Err(error) = written {
            bar.abandon();
            return Err(error.into());
        }
        bar.suspend(|| io.note(format_args!("Imported: {key}")));
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(())
}
