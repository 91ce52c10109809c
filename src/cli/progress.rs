//! Progress bars for the verbs that move a whole backup or KV tree (`cairn snapshot
//! save|restore`, `cairn kv import|export`).
//!
//! A bar is drawn on stderr only when stderr is a terminal (`Io::progress`, decided once in
//! `cli::run`); piped or in tests it is hidden, so scripts see only the verbs' own lines. Bars
//! are redrawn from the calling thread only (no ticker thread): `cli::run` holds the stderr
//! lock for the whole verb, which the same thread may take again but another could not.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::Io;

const BYTES_TEMPLATE: &str = "{msg} [{bar:30}] {bytes}/{total_bytes}";
const ITEMS_TEMPLATE: &str = "{msg} [{bar:30}] {pos}/{len}";

/// A bar counting `len` bytes (0 while the length is not known yet).
pub(crate) fn bytes(io: &Io<'_>, message: &'static str, len: u64) -> ProgressBar {
    bar(io, message, len, BYTES_TEMPLATE)
}

/// A bar counting `len` items.
pub(crate) fn items(io: &Io<'_>, message: &'static str, len: u64) -> ProgressBar {
    bar(io, message, len, ITEMS_TEMPLATE)
}

fn bar(io: &Io<'_>, message: &'static str, len: u64, template: &str) -> ProgressBar {
    // Set up hidden, so that nothing is drawn before there is something to count.
    let bar = ProgressBar::hidden();
    bar.set_length(len);
    bar.set_style(ProgressStyle::with_template(template).expect("the progress templates are valid").progress_chars("=> "));
    bar.set_message(message);
    if io.progress {
        bar.set_draw_target(ProgressDrawTarget::stderr());
    }
    bar
}
