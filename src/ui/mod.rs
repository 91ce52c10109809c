//! The web dashboard: the files under `web-ui/`, embedded into the binary with rust-embed.
//!
//! In debug builds rust-embed reads the files from disk, so edits show on reload; release builds
//! carry them inside the binary. Paths under `/ui/` that name no file get `index.html`, so the
//! dashboard's client-side routes survive a reload.

use std::borrow::Cow;

#[derive(rust_embed::Embed)]
#[folder = "web-ui/"]
struct Assets;

/// A file to serve: its bytes and MIME type.
pub struct Asset {
    pub bytes: Cow<'static, [u8]>,
    pub mime: String,
}

/// The file for `path` (relative to `/ui/`), falling back to `index.html`.
pub fn asset(path: &str) -> Option<Asset> {
    let path = path.trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    let file = Assets::get(path).or_else(|| if path.contains('.') { None } else { Assets::get("index.html") })?;
    let mime = file.metadata.mimetype().to_string();
    Some(Asset { bytes: file.data, mime })
}
