//! `-log-file`: the agent's log also written to a file, rotated as Consul's `LogFile` does.
//!
//! - A path ending in `/` names a directory; the file is then `cairn.log` in it. Otherwise the
//!   last part is the file name (`-log-file=/var/log/cairn/agent.log`).
//! - The active file keeps its name and is appended to. It is rotated when it holds
//!   `log_rotate_bytes` (0: no size limit) or is `log_rotate_duration` old (Consul's default
//!   24h): it is renamed `<name>-<unix nanoseconds><ext>` (`.log` when the name has no
//!   extension) and a new active file is started.
//! - `log_rotate_max_files` archives are kept (0: all; -1: none), the oldest removed first,
//!   at start and after each rotation.
//!
//! Writes come from the logging layers under one mutex; a line is never split across files.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing_subscriber::fmt::MakeWriter;

/// The file name in a `-log-file` that names a directory.
const DEFAULT_FILE_NAME: &str = "cairn.log";
/// Owner read-write, group read (Consul's 0640; the agent's umask may narrow it).
const LOG_FILE_MODE: u32 = 0o640;

/// Consul's `log_file`, `log_rotate_bytes`, `log_rotate_duration`, `log_rotate_max_files`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogFileSettings {
    pub path: PathBuf,
    /// 0: rotate by age only.
    pub rotate_bytes: u64,
    pub rotate_duration: Duration,
    /// 0: keep every archive; -1: keep none.
    pub rotate_max_files: i64,
}

/// The open log file and when it must rotate.
pub(super) struct LogFile {
    directory: PathBuf,
    file_name: String,
    settings: LogFileSettings,
    file: File,
    bytes_written: u64,
    opened: Instant,
}

impl LogFile {
    /// Prunes old archives and opens (appends to) the active file.
    pub(super) fn open(settings: LogFileSettings) -> Result<LogFile, std::io::Error> {
        let text = settings.path.to_string_lossy();
        let (directory, file_name) = if text.ends_with('/') {
            (settings.path.clone(), DEFAULT_FILE_NAME.to_string())
        } else {
            let name = settings.path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_else(|| DEFAULT_FILE_NAME.to_string());
            (settings.path.parent().map(Path::to_path_buf).unwrap_or_default(), name)
        };
        let directory = if directory.as_os_str().is_empty() { PathBuf::from(".") } else { directory };
        let file = open_append(&directory.join(&file_name))?;
        let log_file = LogFile { directory, file_name, settings, file, bytes_written: 0, opened: Instant::now() };
        log_file.prune()?;
        Ok(log_file)
    }

    /// The archive name's parts: `(stem + "-", ext)`.
    fn archive_pattern(&self) -> (String, String) {
        let path = Path::new(&self.file_name);
        match path.extension() {
            Some(ext) => {
                let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                (format!("{stem}-"), format!(".{}", ext.to_string_lossy()))
            }
            None => (format!("{}-", self.file_name), ".log".to_string()),
        }
    }

    fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        let too_big = self.settings.rotate_bytes > 0 && self.bytes_written >= self.settings.rotate_bytes;
        if too_big || self.opened.elapsed() >= self.settings.rotate_duration {
            self.rotate()?;
        }
        self.file.write_all(line)?;
        self.bytes_written += line.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let (stem, ext) = self.archive_pattern();
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_nanos());
        std::fs::rename(self.directory.join(&self.file_name), self.directory.join(format!("{stem}{nanos}{ext}")))?;
        self.file = open_append(&self.directory.join(&self.file_name))?;
        self.bytes_written = 0;
        self.opened = Instant::now();
        self.prune()
    }

    /// Removes the oldest archives beyond `rotate_max_files` (their names sort by age).
    fn prune(&self) -> std::io::Result<()> {
        let keep = match self.settings.rotate_max_files {
            0 => return Ok(()),
            negative if negative < 0 => 0,
            positive => positive as usize,
        };
        let (stem, ext) = self.archive_pattern();
        let mut archives: Vec<String> = std::fs::read_dir(&self.directory)?
            .filter_map(|entry| entry.ok().map(|entry| entry.file_name().to_string_lossy().into_owned()))
            .filter(|name| {
                let middle = name.strip_prefix(&stem).and_then(|rest| rest.strip_suffix(&ext));
                middle.is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
            })
            .collect();
        archives.sort();
        let stale = archives.len().saturating_sub(keep);
        for name in &archives[..stale] {
            std::fs::remove_file(self.directory.join(name))?;
        }
        Ok(())
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).mode(LOG_FILE_MODE).open(path)
}

/// The log file as tracing's writer: each event's line is written whole under the lock.
#[derive(Clone)]
pub(super) struct SharedLogFile(pub(super) Arc<Mutex<LogFile>>);

/// One event's bytes, written to the file when the formatter is done with them.
pub(super) struct LogFileLine {
    file: Arc<Mutex<LogFile>>,
    line: Vec<u8>,
}

impl Write for LogFileLine {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogFileLine {
    fn drop(&mut self) {
        if self.line.is_empty() {
            return;
        }
        let mut file = self.file.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(error) = file.write_line(&self.line) {
            // Logging cannot log its own failure; stderr is where the operator looks next.
            let _ = writeln!(std::io::stderr(), "cairn: cannot write the log file: {error}");
        }
    }
}

impl<'a> MakeWriter<'a> for SharedLogFile {
    type Writer = LogFileLine;

    fn make_writer(&'a self) -> LogFileLine {
        LogFileLine { file: self.0.clone(), line: Vec::new() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn a_full_file_is_archived_and_old_archives_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let settings = LogFileSettings { path: dir.path().join("agent.log"), rotate_bytes: 10, rotate_duration: Duration::from_secs(3600), rotate_max_files: 2 };
        let mut file = LogFile::open(settings).unwrap();
        for line in 0..5 {
            file.write_line(format!("line number {line}\n").as_bytes()).unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
        let names = names(dir.path());
        assert_eq!(names.len(), 3, "the active file and two archives: {names:?}");
        assert_eq!(names.last().map(String::as_str), Some("agent.log"));
        assert!(names[..2].iter().all(|name| name.starts_with("agent-") && name.ends_with(".log")), "{names:?}");
        assert_eq!(std::fs::read_to_string(dir.path().join("agent.log")).unwrap(), "line number 4\n");
        assert_eq!(std::fs::read_to_string(dir.path().join(&names[1])).unwrap(), "line number 3\n");
    }

    #[test]
    fn a_directory_gets_the_default_name_and_minus_one_keeps_no_archive() {
        let dir = tempfile::tempdir().unwrap();
        let path = PathBuf::from(format!("{}/", dir.path().display()));
        let settings = LogFileSettings { path, rotate_bytes: 1, rotate_duration: Duration::from_secs(3600), rotate_max_files: -1 };
        let mut file = LogFile::open(settings).unwrap();
        file.write_line(b"one\n").unwrap();
        file.write_line(b"two\n").unwrap();
        assert_eq!(names(dir.path()), vec![DEFAULT_FILE_NAME.to_string()]);
        assert_eq!(std::fs::read_to_string(dir.path().join(DEFAULT_FILE_NAME)).unwrap(), "two\n");
    }
}
