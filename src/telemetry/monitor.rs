//! The live log stream behind `/v1/agent/monitor` (and `cairn monitor`).
//!
//! Two logging layers (text and Consul's JSON) format events only while someone watches in
//! that format, and at the most verbose level any watcher asked for — which may be more
//! verbose than the agent's own `log_level`, as in Consul, where a monitor gets its own
//! level. Each line goes into a bounded broadcast channel ([`MONITOR_LINES_BUFFERED_MAX`]
//! lines, Consul's monitor buffer); every watcher reads it at its own pace and keeps the
//! lines at or above its level. A watcher that falls behind loses the oldest lines and is told
//! how many, in Consul's words, instead of making anyone wait or buffering more: memory is
//! bounded by the channel and [`LOG_LINE_BYTES_MAX`].
//!
//! Whenever the most verbose level wanted changes, tracing's callsite interest is rebuilt, so
//! with nobody watching the layers cost nothing per event.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{LazyLock, Mutex};

use bytes::Bytes;
use tokio::sync::broadcast;
use tracing::level_filters::LevelFilter;
use tracing::subscriber::Interest;
use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Filter};

/// Lines kept for watchers that have not read them yet (Consul's monitor `BufferSize`).
pub const MONITOR_LINES_BUFFERED_MAX: usize = 512;
/// A longer line is cut here (and ends with a newline).
pub const LOG_LINE_BYTES_MAX: usize = 16 * 1024;

/// The two formats a watcher may ask for (`?logjson`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MonitorFormat {
    Text,
    Json,
}

/// One formatted log line and its level.
#[derive(Clone, Debug)]
struct LogLine {
    level: Level,
    text: Bytes,
}

/// What a watcher reads next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MonitorItem {
    /// A log line, newline included.
    Line(Bytes),
    /// This many lines were lost because the watcher fell behind.
    Dropped(u64),
}

/// Consul's notice for lines a slow monitor lost (`logging/monitor`).
pub fn dropped_notice(lines: u64) -> String {
    format!("[WARN] Monitor dropped {lines} logs during monitor request\n")
}

/// One format's channel and its watchers' levels.
struct Channel {
    sender: broadcast::Sender<LogLine>,
    /// Watchers per level: index 0 is ERROR, 4 is TRACE.
    watchers: Mutex<[usize; 5]>,
    /// The most verbose level any watcher wants ([`level_code`]; 0 with no watcher).
    max_level: AtomicU8,
}

struct Hub {
    text: Channel,
    json: Channel,
}

static HUB: LazyLock<Hub> = LazyLock::new(|| Hub { text: Channel::new(), json: Channel::new() });

fn channel(format: MonitorFormat) -> &'static Channel {
    match format {
        MonitorFormat::Text => &HUB.text,
        MonitorFormat::Json => &HUB.json,
    }
}

/// 1 (error) to 5 (trace).
fn level_code(level: Level) -> u8 {
    match level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

fn level_filter_of(code: u8) -> LevelFilter {
    match code {
        0 => LevelFilter::OFF,
        1 => LevelFilter::ERROR,
        2 => LevelFilter::WARN,
        3 => LevelFilter::INFO,
        4 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    }
}

impl Channel {
    fn new() -> Channel {
        let (sender, _) = broadcast::channel(MONITOR_LINES_BUFFERED_MAX);
        Channel { sender, watchers: Mutex::new([0; 5]), max_level: AtomicU8::new(0) }
    }

    fn max_level(&self) -> LevelFilter {
        level_filter_of(self.max_level.load(Ordering::Acquire))
    }

    /// Adds (`delta` 1) or removes (-1) a watcher at `level`; rebuilds tracing's interest
    /// when the most verbose level wanted changes.
    fn count_watcher(&self, level: Level, delta: isize) {
        let changed = {
            let mut watchers = self.watchers.lock().expect("monitor watchers lock poisoned");
            let slot = &mut watchers[usize::from(level_code(level)) - 1];
            *slot = slot.saturating_add_signed(delta);
            let max = watchers.iter().rposition(|count| *count > 0).map_or(0, |position| position as u8 + 1);
            self.max_level.swap(max, Ordering::AcqRel) != max
        };
        if changed {
            tracing::callsite::rebuild_interest_cache();
        }
    }
}

/// Whether an event is wanted at `max`: the agent's own caps on chatty dependencies
/// ([`super::logging::NOISY_TARGETS`], warnings and errors only) apply to watchers too.
fn wanted(metadata: &Metadata<'_>, max: LevelFilter) -> bool {
    let noisy = super::logging::NOISY_TARGETS.iter().any(|target| metadata.target().starts_with(target));
    let cap = if noisy { max.min(LevelFilter::WARN) } else { max };
    metadata.is_event() && cap >= *metadata.level()
}

/// Starts watching the log at `level` and above, in `format`.
pub fn subscribe(level: Level, format: MonitorFormat) -> MonitorStream {
    let channel = channel(format);
    let receiver = channel.sender.subscribe();
    channel.count_watcher(level, 1);
    MonitorStream { receiver, level, format }
}

/// One watcher's view of the log; dropping it stops the watching.
pub struct MonitorStream {
    receiver: broadcast::Receiver<LogLine>,
    level: Level,
    format: MonitorFormat,
}

impl MonitorStream {
    /// The next line at the watcher's level, or how many it lost; `None` never happens while
    /// the process runs (the channel lives as long as it).
    pub async fn next(&mut self) -> Option<MonitorItem> {
        loop {
            match self.receiver.recv().await {
                Ok(line) if line.level <= self.level => return Some(MonitorItem::Line(line.text)),
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(lost)) => return Some(MonitorItem::Dropped(lost)),
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

impl Drop for MonitorStream {
    fn drop(&mut self) {
        channel(self.format).count_watcher(self.level, -1);
    }
}

/// The per-layer filter of a monitor layer: what some watcher of its format wants.
pub(super) struct MonitorFilter(pub(super) MonitorFormat);

impl<S> Filter<S> for MonitorFilter {
    fn enabled(&self, metadata: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        wanted(metadata, channel(self.0).max_level())
    }

    fn callsite_enabled(&self, metadata: &'static Metadata<'static>) -> Interest {
        if wanted(metadata, channel(self.0).max_level()) { Interest::always() } else { Interest::never() }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(channel(self.0).max_level())
    }
}

/// The writer a monitor layer formats into: each event's line goes to the channel.
pub(super) struct MonitorWriter(pub(super) MonitorFormat);

pub(super) struct MonitorLine {
    channel: &'static Channel,
    level: Level,
    bytes: Vec<u8>,
}

impl std::io::Write for MonitorLine {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let room = LOG_LINE_BYTES_MAX.saturating_sub(self.bytes.len());
        self.bytes.extend_from_slice(&bytes[..bytes.len().min(room)]);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for MonitorLine {
    fn drop(&mut self) {
        if self.bytes.is_empty() {
            return;
        }
        if self.bytes.last() != Some(&b'\n') {
            self.bytes.push(b'\n');
        }
        let line = LogLine { level: self.level, text: Bytes::from(std::mem::take(&mut self.bytes)) };
        // An error means nobody watches any more: the line is not wanted.
        let _ = self.channel.sender.send(line);
    }
}

impl<'a> MakeWriter<'a> for MonitorWriter {
    type Writer = MonitorLine;

    fn make_writer(&'a self) -> MonitorLine {
        MonitorLine { channel: channel(self.0), level: Level::INFO, bytes: Vec::new() }
    }

    fn make_writer_for(&'a self, metadata: &Metadata<'_>) -> MonitorLine {
        MonitorLine { channel: channel(self.0), level: *metadata.level(), bytes: Vec::new() }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn send(format: MonitorFormat, level: Level, text: &str) {
        let mut line = MonitorWriter(format).make_writer();
        line.level = level;
        line.write_all(text.as_bytes()).unwrap();
    }

    /// A watcher that reads nothing while more lines than the buffer arrive loses the oldest,
    /// is told how many, then reads on; lines below its level never reach it.
    #[tokio::test]
    async fn a_slow_watcher_loses_the_oldest_lines_and_is_told() {
        let mut watcher = subscribe(Level::INFO, MonitorFormat::Json);
        let extra = 10;
        for number in 0..MONITOR_LINES_BUFFERED_MAX + extra {
            send(MonitorFormat::Json, Level::INFO, &format!("line {number}"));
        }
        assert_eq!(watcher.next().await, Some(MonitorItem::Dropped(extra as u64)));
        assert_eq!(watcher.next().await, Some(MonitorItem::Line(Bytes::from(format!("line {extra}\n")))));
        send(MonitorFormat::Json, Level::DEBUG, "too detailed");
        send(MonitorFormat::Json, Level::WARN, "a warning");
        let mut last = None;
        for _ in 0..MONITOR_LINES_BUFFERED_MAX {
            last = watcher.next().await;
            if matches!(&last, Some(MonitorItem::Line(text)) if !text.starts_with(b"line ")) {
                break;
            }
        }
        assert_eq!(last, Some(MonitorItem::Line(Bytes::from_static(b"a warning\n"))));
        assert_eq!(dropped_notice(3), "[WARN] Monitor dropped 3 logs during monitor request\n");
    }

    #[test]
    fn a_long_line_is_cut_and_the_level_wanted_follows_the_watchers() {
        let mut line = MonitorWriter(MonitorFormat::Text).make_writer();
        line.write_all(&vec![b'x'; LOG_LINE_BYTES_MAX * 2]).unwrap();
        assert_eq!(line.bytes.len(), LOG_LINE_BYTES_MAX);
        let text = channel(MonitorFormat::Text);
        let before = text.max_level();
        let debug = subscribe(Level::DEBUG, MonitorFormat::Text);
        assert!(text.max_level() >= LevelFilter::DEBUG);
        drop(debug);
        assert_eq!(text.max_level(), before);
    }
}
