//! The web dashboard: the files under `web-ui/`, embedded into the binary with rust-embed, or
//! read from `ui_config.dir` (`-ui-dir`) when the operator sets one, as Consul does.
//!
//! In debug builds rust-embed reads the files from disk, so edits show on reload; release builds
//! carry them inside the binary. Paths under `/ui/` that name no file get `index.html`, so the
//! dashboard's client-side routes survive a reload.

use std::borrow::Cow;
use std::path::{Component, Path};

#[derive(rust_embed::Embed)]
#[folder = "web-ui/"]
struct Assets;

/// The largest file served from `ui_config.dir`; the embedded files are far smaller.
const UI_DIR_FILE_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// A file to serve: its bytes and MIME type.
pub struct Asset {
    pub bytes: Cow<'static, [u8]>,
    pub mime: String,
}

/// The file for `path` (relative to `/ui/`), falling back to `index.html` for paths that are
/// client-side routes. Client routes may hold dots (`/ui/kv/config/flags.json`,
/// `/ui/services/vault.proxy`), so every path that names no file gets the index, except the
/// asset folders (`lib/`, `views/`) and top-level files with an extension (`app.js`), whose
/// absence is a real 404.
pub fn asset(path: &str, dir: Option<&Path>) -> Option<Asset> {
    let path = path.trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    let found = match dir {
        Some(dir) => from_dir(dir, path),
        None => Assets::get(path).map(|file| file.data),
    };
    let (bytes, path) = match found {
        Some(bytes) => (bytes, path),
        None if is_route(path) => {
            let index = match dir {
                Some(dir) => from_dir(dir, "index.html"),
                None => Assets::get("index.html").map(|file| file.data),
            };
            (index?, "index.html")
        }
        None => return None,
    };
    let mime = mime_guess::from_path(path).first_or_octet_stream().to_string();
    Some(Asset { bytes, mime })
}

/// Whether a missing `path` is one of the dashboard's own routes rather than a missing asset.
fn is_route(path: &str) -> bool {
    let asset_folder = path.starts_with("lib/") || path.starts_with("views/");
    let top_level_file = !path.contains('/') && path.contains('.');
    !asset_folder && !top_level_file
}

/// Reads `path` under `dir`, refusing anything that could leave it (`..`, absolute paths).
fn from_dir(dir: &Path, path: &str) -> Option<Cow<'static, [u8]>> {
    let relative = Path::new(path);
    if !relative.components().all(|part| matches!(part, Component::Normal(_))) {
        return None;
    }
    let full = dir.join(relative);
    let meta = std::fs::metadata(&full).ok()?;
    if !meta.is_file() || meta.len() > UI_DIR_FILE_BYTES_MAX {
        return None;
    }
    std::fs::read(full).ok().map(Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_with_dots_get_the_index_and_missing_assets_do_not() {
        assert!(is_route("services/vault.proxy"));
        assert!(is_route("kv/config/web/flags.json"));
        assert!(is_route("dc1/services/web"));
        assert!(!is_route("lib/missing.js"));
        assert!(!is_route("nothing.js"));
        assert_eq!(asset("kv/config/flags.json", None).unwrap().mime, "text/html");
        assert!(asset("nothing.js", None).is_none());
    }

    #[test]
    fn a_ui_dir_serves_its_files_and_never_leaves_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), "<p>mine</p>").unwrap();
        std::fs::write(dir.path().join("app.js"), "x()").unwrap();
        let index = asset("services/web", Some(dir.path())).unwrap();
        assert_eq!(&*index.bytes, b"<p>mine</p>");
        assert_eq!(asset("app.js", Some(dir.path())).unwrap().mime, "text/javascript");
        assert!(from_dir(dir.path(), "../etc/passwd").is_none());
        assert!(from_dir(dir.path(), "/etc/passwd").is_none());
    }
}
