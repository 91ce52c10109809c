//! TTL checks: the service reports its own health through `ttl_update`; if no
//! report arrives within the TTL the check turns critical with Consul's
//! `TTL expired` output (plus the last reported output, if there was one).
//!
//! Nothing is emitted at registration (the agent sets the initial status),
//! and an expiry is reported once, not repeatedly, until the next update —
//! the same as Consul's one-shot timer.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::CheckStatus;
use super::runner::{Emitter, lock, truncate_to_bytes};

/// Consul's output prefix for a lapsed TTL.
const EXPIRED_OUTPUT: &str = "TTL expired";

/// State shared by `Scheduler::ttl_update` and the check's expiry task.
pub(super) struct TtlShared {
    ttl: Duration,
    emitter: Emitter,
    /// Deadline and last output. Both `update` and the expiry task emit while
    /// holding it, so an update and an expiry can never reach the channel in
    /// an order that contradicts the deadline they observed.
    state: Mutex<TtlState>,
    /// Wakes the expiry task after `update` moved the deadline. `Notify`
    /// keeps a permit when nobody waits, so a wake-up is never lost.
    reset: Notify,
}

struct TtlState {
    deadline: Instant,
    /// Set once the expiry was reported; cleared by the next update.
    expired: bool,
    /// Output of the last update, quoted in the expiry output like Consul.
    last_output: String,
}

impl TtlShared {
    pub(super) fn new(ttl: Duration, emitter: Emitter) -> TtlShared {
        TtlShared {
            ttl,
            emitter,
            state: Mutex::new(TtlState {
                deadline: Instant::now() + ttl,
                expired: false,
                last_output: String::new(),
            }),
            reset: Notify::new(),
        }
    }

    /// Records a status report: emits it at once and restarts the TTL.
    pub(super) fn update(&self, status: CheckStatus, output: &str) {
        let output = truncate_update_output(output, self.emitter.output_bytes_max);
        let wake = {
            let mut state = lock(&self.state);
            let wake = restart_timer(&mut state, self.ttl);
            state.last_output.clone_from(&output);
            tracing::debug!(check_id = %self.emitter.check_id, status = status.as_str(), "TTL check updated");
            self.emitter.emit(status, output);
            wake
        };
        if wake {
            self.reset.notify_one();
        }
    }

    /// A re-registration of this check with the same `ttl` (Consul replaces the check's
    /// `CheckTTL`): the timer starts over and the last output is forgotten, as with a new
    /// runner, and nothing is emitted. Returns false, changing nothing, when `ttl` differs:
    /// the caller starts a new runner then.
    pub(super) fn restart(&self, ttl: Duration) -> bool {
        if ttl != self.ttl {
            return false;
        }
        let wake = {
            let mut state = lock(&self.state);
            state.last_output.clear();
            restart_timer(&mut state, self.ttl)
        };
        if wake {
            self.reset.notify_one();
        }
        true
    }

    /// Reports the expiry if the deadline has really passed. Returns false
    /// when the runner should end.
    fn expire_if_due(&self) -> bool {
        let mut state = lock(&self.state);
        if state.expired || Instant::now() < state.deadline {
            return true;
        }
        state.expired = true;
        let output = if state.last_output.is_empty() {
            EXPIRED_OUTPUT.to_owned()
        } else {
            format!(
                "{EXPIRED_OUTPUT} (last output before timeout follows): {}",
                state.last_output
            )
        };
        tracing::warn!(check_id = %self.emitter.check_id, ttl_ms = self.ttl.as_millis() as u64, "check missed its TTL; now critical");
        self.emitter.emit(CheckStatus::Critical, output)
    }

    /// The current deadline, or `None` once the expiry has been reported.
    fn pending_deadline(&self) -> Option<Instant> {
        let state = lock(&self.state);
        (!state.expired).then_some(state.deadline)
    }
}

/// Moves the deadline to `ttl` from now. Returns whether the expiry task must be woken: only
/// when it reported an expiry and now waits for a reset. A task sleeping toward the old
/// deadline needs no wake-up, since the new one is never earlier (the TTL is the same and the
/// clock monotonic): it wakes at the old one, finds nothing due, and sleeps on to the new one.
/// Sparing that wake-up matters for agents whose services heartbeat through `check/pass`.
fn restart_timer(state: &mut TtlState, ttl: Duration) -> bool {
    let wake = state.expired;
    state.deadline = Instant::now() + ttl;
    state.expired = false;
    wake
}

/// The expiry task: sleeps until the deadline, re-reading it whenever an
/// update resets it. Ends when aborted or when the channel is closed.
pub(super) async fn run(shared: Arc<TtlShared>) {
    loop {
        match shared.pending_deadline() {
            None => shared.reset.notified().await,
            Some(deadline) => {
                tokio::select! {
                    () = tokio::time::sleep_until(deadline) => {
                        if !shared.expire_if_due() {
                            return;
                        }
                    }
                    () = shared.reset.notified() => {}
                }
            }
        }
    }
}

/// Cuts an update's output like Consul's `SetStatus` does
/// (`<head> ... (captured N of M bytes)`), but so the whole text, suffix
/// included, stays within `bytes_max`.
fn truncate_update_output(output: &str, bytes_max: usize) -> String {
    let total = output.len();
    if total <= bytes_max {
        return output.to_owned();
    }
    // The suffix for `bytes_max` retained bytes is at least as long as the
    // final one, so sizing the head with it always fits.
    let widest_suffix = format!(" ... (captured {bytes_max} of {total} bytes)");
    let mut cut = bytes_max.saturating_sub(widest_suffix.len());
    while !output.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut text = format!("{} ... (captured {cut} of {total} bytes)", &output[..cut]);
    truncate_to_bytes(&mut text, bytes_max);
    text
}
