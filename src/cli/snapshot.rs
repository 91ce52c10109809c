//! `cairn snapshot save|restore|inspect`: point-in-time backups over `/v1/snapshot`, and an
//! offline look at a backup file, with `consul snapshot`'s output.
//!
//! Files are Consul's archive (`raft::archive`); `restore` and `inspect` also read the bare
//! cairn snapshots saved before it. A saved file is written next to its name first, verified,
//! then renamed into place, with mode 0600: a backup holds ACL secrets.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use clap::Parser;
use serde_json::json;

use crate::cli::client::{self, HttpFlags};
use crate::cli::{Fail, Io, fail, parse, progress};
use crate::raft::archive::{self, OpenedSnapshot, TableStat};

/// Backup files are written readable by their owner only.
const BACKUP_FILE_MODE: u32 = 0o600;
/// Largest backup file `restore` and `inspect` read (a restore is bounded well below this).
const BACKUP_FILE_BYTES_MAX: u64 = 64 * 1024 * 1024;

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
    /// Output format: pretty or json.
    #[arg(long, default_value = "pretty")]
    format: String,
    /// The snapshot file to describe.
    file: PathBuf,
}

fn read(file: &Path) -> Result<Vec<u8>, Fail> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(file)
        .and_then(|f| f.take(BACKUP_FILE_BYTES_MAX + 1).read_to_end(&mut bytes))
        .or_else(|e| fail(format!("Error reading snapshot {}: {e}", file.display())))?;
    if bytes.len() as u64 > BACKUP_FILE_BYTES_MAX {
        return fail(format!("Error reading snapshot {}: larger than {BACKUP_FILE_BYTES_MAX} bytes", file.display()));
    }
    Ok(bytes)
}

/// Writes `bytes` to `file` through a temporary file beside it, 0600 and synced.
fn write_backup(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp_name = file.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let mut out = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(BACKUP_FILE_MODE).open(&tmp)?;
    out.write_all(bytes).and_then(|()| out.sync_all()).and_then(|()| std::fs::rename(&tmp, file)).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

pub(crate) fn save(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: SaveArgs = parse("cairn snapshot save", args)?;
    let c = client::connect(&a.http, io.env)?;
    let bar = progress::bytes(io, "Saving snapshot", 0);
    let reply = c.get_with_progress("/v1/snapshot", &[], &bar);
    bar.finish_and_clear();
    let bytes = reply?.ok()?;
    let opened = archive::open(&bytes).or_else(|e| fail(format!("Error verifying snapshot file: {e}")))?;
    write_backup(&a.file, &bytes).or_else(|e| fail(format!("Error writing snapshot file: {e}")))?;
    io.note(format_args!("Saved and verified snapshot to index {}", index_of(&opened)));
    Ok(())
}

pub(crate) fn restore(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: RestoreArgs = parse("cairn snapshot restore", args)?;
    let bytes = read(&a.file)?;
    if let Err(e) = archive::open(&bytes) {
        return fail(format!("Error restoring snapshot: {e}"));
    }
    let c = client::connect(&a.http, io.env)?;
    // The upload is one request; the bar shows what is sent, and stays until the cluster has
    // applied the restore (the agent answers then).
    let bar = progress::bytes(io, "Restoring snapshot", bytes.len() as u64);
    bar.set_position(bytes.len() as u64);
    let reply = c.put("/v1/snapshot", &[], bytes);
    bar.finish_and_clear();
    reply?.ok().map_err(|e| Fail::Msg(format!("Error restoring snapshot: {e}")))?;
    io.note("Restored snapshot");
    Ok(())
}

pub(crate) fn inspect(args: &[String], io: &mut Io<'_>) -> Result<(), Fail> {
    let a: InspectArgs = parse("cairn snapshot inspect", args)?;
    if a.format != "pretty" && a.format != "json" {
        return fail(format!("Error outputting enhanced snapshot data: Unknown format: {}", a.format));
    }
    let bytes = read(&a.file)?;
    let opened = archive::open(&bytes).or_else(|e| fail(format!("Error extracting snapshot data: {e}")))?;
    let (id, size, index, term, version) = match &opened.meta {
        Some(meta) => (meta.id.clone(), meta.size, meta.index, meta.term, meta.version),
        // A bare cairn snapshot: its own header says the same.
        None => (opened.header.snapshot_id.clone(), opened.state_bytes as u64, index_of(&opened), term_of(&opened), 1),
    };
    let stats = archive::table_stats(&opened.rows);
    let total: u64 = stats.iter().map(|s| s.bytes).sum();
    if a.format == "json" {
        let stats: Vec<_> = stats.iter().map(|s| json!({"Name": s.name, "Sum": s.bytes, "Count": s.count})).collect();
        let out = json!({"Meta": {"ID": id, "Size": size, "Index": index, "Term": term, "Version": version}, "Stats": stats, "TotalSize": total});
        return io.line(serde_json::to_string_pretty(&out).expect("a JSON value serializes"));
    }
    let meta_rows = [("ID", id), ("Size", size.to_string()), ("Index", index.to_string()), ("Term", term.to_string()), ("Version", version.to_string())];
    let meta_rows: Vec<Vec<String>> = meta_rows.into_iter().map(|(name, value)| vec![format!(" {name}"), value]).collect();
    io.line(tabwrite(&meta_rows))?;
    io.line("")?;
    io.line(tabwrite(&stats_rows(&stats, total)))
}

fn index_of(opened: &OpenedSnapshot) -> u64 {
    opened.meta.as_ref().map(|m| m.index).unwrap_or_else(|| opened.header.last_log_id.map_or(0, |l| l.index))
}

fn term_of(opened: &OpenedSnapshot) -> u64 {
    opened.header.last_log_id.map_or(0, |l| l.leader_id.term)
}

/// Consul's type table: one row per table, then the total.
fn stats_rows(stats: &[TableStat], total: u64) -> Vec<Vec<String>> {
    let rule = || vec![" ----".to_owned(), "----".to_owned(), "----".to_owned()];
    let mut rows = vec![vec![" Type".to_owned(), "Count".to_owned(), "Size".to_owned()], rule()];
    rows.extend(stats.iter().map(|s| vec![format!(" {}", s.name), s.count.to_string(), byte_size(s.bytes)]));
    rows.push(rule());
    rows.push(vec![" Total".to_owned(), String::new(), byte_size(total)]);
    rows
}

/// Go's `tabwriter` as Consul's inspect sets it up (padding 6, minimum width 8): each column
/// as wide as its widest cell plus the padding.
fn tabwrite(rows: &[Vec<String>]) -> String {
    const PADDING: usize = 6;
    const MIN_WIDTH: usize = 8;
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| rows.iter().filter_map(|row| row.get(i)).map(|cell| cell.chars().count() + PADDING).max().unwrap_or(0).max(MIN_WIDTH))
        .collect();
    let lines: Vec<String> = rows
        .iter()
        .map(|row| {
            let last = row.len().saturating_sub(1);
            let cells = row.iter().enumerate().map(|(i, cell)| if i == last { cell.clone() } else { format!("{cell:<w$}", w = widths[i]) });
            cells.collect::<String>().trim_end().to_owned()
        })
        .collect();
    lines.join("\n")
}

/// Consul's `ByteSize`: one decimal, in B, KB, MB, GB or TB (powers of 1024).
fn byte_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 4] = [(1 << 40, "TB"), (1 << 30, "GB"), (1 << 20, "MB"), (1 << 10, "KB")];
    if bytes == 0 {
        return "0".to_owned();
    }
    let (divisor, unit) = UNITS.iter().copied().find(|(size, _)| bytes >= *size).unwrap_or((1, "B"));
    let text = format!("{:.1}", bytes as f64 / divisor as f64);
    format!("{}{unit}", text.strip_suffix(".0").unwrap_or(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_columns_read_like_consuls() {
        assert_eq!(byte_size(0), "0");
        assert_eq!(byte_size(313), "313B");
        assert_eq!(byte_size(1638), "1.6KB");
        assert_eq!(byte_size(2048), "2KB");
        assert_eq!(byte_size(5 << 20), "5MB");
        let text = tabwrite(&[vec![" ID".into(), "2-11-1".into()], vec![" Version".into(), "1".into()]]);
        assert_eq!(text, " ID           2-11-1\n Version      1");
    }
}
