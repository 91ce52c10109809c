//! `cairn snapshot save|restore|inspect`: point-in-time backups over `/v1/snapshot`, and an
//! offline look at a snapshot file.

use std::path::PathBuf;

use clap::Parser;

use crate::cli::client::{self, HttpFlags};
use crate::cli::{Fail, Io, fail, parse};
use crate::raft::snapshot;

#[derive(Parser, Debug)]
#[command(name = "cairn snapshot save", disable_version_flag = true)]
pub(super) struct SaveArgs {
    #[command(flatten)]
    http: HttpFlags,
    /// Where to write the snapshot.
    file: PathBuf,
}

#[derive(Parser, Debug)]
#[command(name = "cairn snapshot restore", disable_version_flag = true)]
pub(super) struct RestoreArgs {
    #[command(flatten)]
    http: HttpFlags,
    /// The snapshot file to restore.
    file: PathBuf,
}

#[derive(Parser, Debug)]
#[command(name = "cairn snapshot inspect", disable_version_flag = true)]
pub(super) struct InspectArgs {
    /// The snapshot file to describe.
    file: PathBuf,
}

fn read(file: &PathBuf) -> Result<Vec<u8>, Fail> {
    std::fs::read(file).or_else(|e| fail(format!("Error reading snapshot {}: {e}", file.display())))
}

pub(crate) fn save(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: SaveArgs = parse("cairn snapshot save", args)?;
    let c = client::connect(&a.http, io.env)?;
    let bytes = c.get("/v1/snapshot", &[])?.ok()?;
    if let Err(e) = snapshot::decode(&bytes) {
        return fail(format!("Error verifying snapshot: {e}"));
    }
    let tmp = a.file.with_extension("part");
    std::fs::write(&tmp, &bytes).and_then(|()| std::fs::rename(&tmp, &a.file)).or_else(|e| fail(format!("Error writing snapshot: {e}")))?;
    io.note(format_args!("Saved and verified snapshot to {}", a.file.display()));
    Ok(())
}

pub(crate) fn restore(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: RestoreArgs = parse("cairn snapshot restore", args)?;
    let bytes = read(&a.file)?;
    if let Err(e) = snapshot::decode(&bytes) {
        return fail(format!("Error restoring snapshot: {e}"));
    }
    let c = client::connect(&a.http, io.env)?;
    c.put("/v1/snapshot", &[], bytes)?.ok()?;
    io.note("Restored snapshot");
    Ok(())
}

pub(crate) fn inspect(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: InspectArgs = parse("cairn snapshot inspect", args)?;
    let bytes = read(&a.file)?;
    let (header, rows) = match snapshot::decode(&bytes) {
        Ok(decoded) => decoded,
        Err(e) => return fail(format!("Error inspecting snapshot: {e}")),
    };
    let index = header.last_log_id.map_or(0, |l| l.index);
    let term = header.last_log_id.map_or(0, |l| l.leader_id.term);
    io.line(format_args!(" ID           {}\n Size         {}\n Index        {index}\n Term         {term}\n Rows         {}", header.snapshot_id, bytes.len(), rows.len()))
}
