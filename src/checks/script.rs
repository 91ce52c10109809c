//! Script checks: run `args[0]` with the remaining arguments (no shell) and
//! map the exit code the Nagios way, as Consul does: 0 passing, 1 warning,
//! anything else (or death by signal) critical.
//!
//! stdout and stderr share one pipe so the output interleaves as written.
//! Like Consul's circular buffer we keep the *last* bytes, prefixed with
//! `Captured N of M bytes\n...\n` when cut, but sized so the whole output
//! fits the limit. On timeout the child is killed and reaped before the run
//! ends, so two instances of one check never overlap, and the output is
//! `Timed out (<timeout>) running check` followed by what was captured.

use std::collections::VecDeque;
use std::io;
use std::os::fd::OwnedFd;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::process::{Child, Command};
use tokio::time::Instant;

use super::CheckStatus;
use super::runner::{go_duration, truncate_to_bytes};

/// How long to keep reading output after the child exited. A grandchild that
/// inherited the pipe could keep it open forever; this bounds the wait.
const DRAIN_AFTER_EXIT_MAX: Duration = Duration::from_millis(100);

/// How long to wait for a killed child to be reaped. SIGKILL cannot be
/// ignored, so this only guards against a wedged kernel; past it the child
/// is left to tokio's background reaper.
const REAP_AFTER_KILL_MAX: Duration = Duration::from_secs(5);

pub(super) async fn run(
    args: &[String],
    timeout: Duration,
    output_bytes_max: usize,
) -> (CheckStatus, String) {
    let Some((program, rest)) = args.split_first() else {
        return (
            CheckStatus::Critical,
            "script check has no arguments".to_owned(),
        );
    };
    let (reader, mut child) = match spawn(program, rest) {
        Ok(spawned) => spawned,
        Err(err) => {
            tracing::error!(program = %program, error = %err, "script check failed to start");
            return (
                CheckStatus::Critical,
                format!("failed to run {program:?}: {err}"),
            );
        }
    };
    let mut capture = Capture::new(output_bytes_max);
    let mut reader = Some(reader);
    let deadline = Instant::now() + timeout;
    let exit = loop {
        tokio::select! {
            status = child.wait() => break Some(status),
            () = tokio::time::sleep_until(deadline) => break None,
            () = capture.read_from(&mut reader) => {}
        }
    };
    match exit {
        Some(Ok(status)) => {
            let drain_until = deadline.min(Instant::now() + DRAIN_AFTER_EXIT_MAX);
            capture.drain(&mut reader, drain_until).await;
            (classify(status), capture.into_output())
        }
        Some(Err(err)) => {
            tracing::error!(program = %program, error = %err, "script check: waiting for the child failed");
            kill_and_reap(&mut child, program).await;
            (
                CheckStatus::Critical,
                format!("failed waiting for {program:?}: {err}"),
            )
        }
        None => {
            tracing::warn!(program = %program, timeout_ms = timeout.as_millis() as u64, "script check timed out; killing it");
            kill_and_reap(&mut child, program).await;
            capture
                .drain(&mut reader, Instant::now() + DRAIN_AFTER_EXIT_MAX)
                .await;
            let mut text = format!("Timed out ({}) running check", go_duration(timeout));
            let captured = capture.into_output();
            if !captured.is_empty() {
                text.push_str("\n\n");
                text.push_str(&captured);
            }
            (CheckStatus::Critical, text)
        }
    }
}

/// The umask a script runs with, when the agent changed its own (`u32::MAX`: inherit).
static SCRIPT_UMASK: AtomicU32 = AtomicU32::new(u32::MAX);

/// Scripts run with `mask` as their umask from now on (the agent's is stricter).
pub(super) fn set_umask(mask: u32) {
    SCRIPT_UMASK.store(mask, Ordering::Relaxed);
}

/// Starts the child with stdout and stderr on one pipe; returns its read end.
fn spawn(program: &str, args: &[String]) -> io::Result<(pipe::Receiver, Child)> {
    let (read_end, write_end) = io::pipe()?;
    let reader = pipe::Receiver::from_owned_fd(OwnedFd::from(read_end))?;
    let write_end_for_stderr = write_end.try_clone()?;
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(write_end))
        .stderr(Stdio::from(write_end_for_stderr))
        // If the runner is aborted (check removed) mid-run, dropping the
        // child kills it instead of leaving it behind.
        .kill_on_drop(true);
    let umask = SCRIPT_UMASK.load(Ordering::Relaxed);
    if umask != u32::MAX {
        // SAFETY: the closure runs in the forked child before exec; umask is async-signal-safe
        // and touches nothing else.
        unsafe {
            command.pre_exec(move || {
                libc::umask(umask as libc::mode_t);
                Ok(())
            });
        }
    }
    let child = command.spawn();
    // Our copies of the write end live in `command`; drop them now or the
    // reader would never see end-of-file.
    drop(command);
    Ok((reader, child?))
}

async fn kill_and_reap(child: &mut Child, program: &str) {
    if let Err(err) = child.start_kill() {
        tracing::warn!(program = %program, error = %err, "script check: failed to kill child");
    }
    match tokio::time::timeout(REAP_AFTER_KILL_MAX, child.wait()).await {
        Ok(Ok(_)) => {}
        Ok(Err(err)) => {
            tracing::warn!(program = %program, error = %err, "script check: failed to reap killed child")
        }
        Err(_elapsed) => {
            tracing::warn!(program = %program, "script check: killed child not reaped in time")
        }
    }
}

fn classify(status: ExitStatus) -> CheckStatus {
    match status.code() {
        Some(0) => CheckStatus::Passing,
        Some(1) => CheckStatus::Warning,
        _ => CheckStatus::Critical,
    }
}

/// Keeps the last `bytes_max` bytes written, and how many were written.
struct Capture {
    bytes_max: usize,
    tail: VecDeque<u8>,
    total_bytes: u64,
    buf: Vec<u8>,
}

impl Capture {
    fn new(bytes_max: usize) -> Capture {
        Capture {
            bytes_max,
            tail: VecDeque::new(),
            total_bytes: 0,
            buf: vec![0; 4096],
        }
    }

    /// Reads one chunk; at end-of-file or on error clears `reader`. Pends
    /// forever when there is no reader, so it can sit in a `select!`.
    /// Cancel-safe: a pipe read either completes or consumes nothing.
    async fn read_from(&mut self, reader: &mut Option<pipe::Receiver>) {
        let Some(pipe) = reader.as_mut() else {
            return std::future::pending().await;
        };
        match pipe.read(&mut self.buf).await {
            Ok(0) | Err(_) => *reader = None,
            Ok(read) => {
                self.total_bytes += read as u64;
                self.tail.extend(&self.buf[..read]);
                let excess = self.tail.len().saturating_sub(self.bytes_max);
                self.tail.drain(..excess);
            }
        }
    }

    /// Reads what is left until end-of-file or `until`, whichever is first.
    async fn drain(&mut self, reader: &mut Option<pipe::Receiver>, until: Instant) {
        while reader.is_some() {
            if tokio::time::timeout_at(until, self.read_from(reader))
                .await
                .is_err()
            {
                return;
            }
        }
    }

    fn into_output(self) -> String {
        let kept = self.tail.len();
        let mut bytes: Vec<u8> = self.tail.into();
        if self.total_bytes <= kept as u64 {
            let mut text = String::from_utf8_lossy(&bytes).into_owned();
            truncate_to_bytes(&mut text, self.bytes_max);
            return text;
        }
        // The header for `kept` bytes is at least as long as the final one.
        let widest_header = format!("Captured {kept} of {} bytes\n...\n", self.total_bytes);
        let keep = kept.saturating_sub(widest_header.len());
        bytes.drain(..kept - keep);
        let tail = String::from_utf8_lossy(&bytes);
        let mut text = format!(
            "Captured {} of {} bytes\n...\n{tail}",
            bytes.len(),
            self.total_bytes
        );
        // Lossy decoding can grow invalid bytes into U+FFFD; stay in bounds.
        truncate_to_bytes(&mut text, self.bytes_max);
        text
    }
}
