//! The data dir is private to the agent's user: the dir is 0700 and every file the agent
//! creates is 0600 (issue 11: with 0755 and 0644 any local user could read the KV store).
//!
//! RocksDB opens its files with mode 0644 and offers no setting for it, so the agent sets the
//! process umask to [`AGENT_UMASK`] before it opens the store; script checks still run with
//! the umask the agent started with (`checks::run_scripts_with_umask`). A data dir that already
//! exists and belongs to the agent's user is tightened to 0700 (logged); one owned by someone
//! else is left alone with a warning.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

use crate::agent::AgentError;

/// The umask of the agent process: no permissions for the group or others on new files.
pub(crate) const AGENT_UMASK: u32 = 0o077;
/// The mode of the data dir.
pub(crate) const DATA_DIR_MODE: u32 = 0o700;

/// Sets the umask (once per process), then creates the data dir or tightens it.
pub(crate) fn prepare(path: &Path) -> Result<(), AgentError> {
    restrict_new_files();
    let error = |source| AgentError::DataDir { path: path.to_path_buf(), source };
    std::fs::DirBuilder::new().recursive(true).mode(DATA_DIR_MODE).create(path).map_err(error)?;
    let metadata = std::fs::metadata(path).map_err(error)?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & !DATA_DIR_MODE == 0 {
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if metadata.uid() != unsafe { libc::geteuid() } {
        tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "the data dir belongs to another user; leaving its permissions alone");
        return Ok(());
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(DATA_DIR_MODE)).map_err(error)?;
    tracing::info!(path = %path.display(), from = format!("{mode:o}"), to = format!("{DATA_DIR_MODE:o}"), "tightened the data dir's permissions");
    Ok(())
}

/// Sets the process umask to [`AGENT_UMASK`], handing the previous one to script checks.
fn restrict_new_files() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: umask only swaps the process's file mode mask.
        let started_with = unsafe { libc::umask(AGENT_UMASK as libc::mode_t) };
        crate::checks::run_scripts_with_umask(started_with as u32);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_data_dir_is_0700_and_an_open_one_is_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("a/b");
        prepare(&fresh).unwrap();
        assert_eq!(std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777, 0o700);
        let file = fresh.join("f");
        std::fs::write(&file, "x").unwrap();
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600, "files are created 0600");
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        prepare(&open).unwrap();
        assert_eq!(std::fs::metadata(&open).unwrap().permissions().mode() & 0o777, 0o700);
    }
}
