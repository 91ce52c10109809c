//! systemd's readiness protocol for the packaged `Type=notify` unit (`sd_notify(3)`):
//! `READY=1` once the agent serves HTTP and, when `retry_join` names addresses, has joined the
//! LAN pool; `RELOADING=1` then `READY=1` around a reload; `STOPPING=1` when it shuts down.
//!
//! Consul sends `READY=1` only after a LAN join, so its `Type=notify` unit never starts a
//! server or client that joins nobody (hashicorp/consul#18097). Here an agent with no
//! `retry_join` is ready as soon as it serves. Every message is a no-op when `NOTIFY_SOCKET`
//! is unset (not under systemd), and a failed send is logged and otherwise ignored: systemd
//! then times the start out, which is its own report.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sd_notify::NotifyState;

use crate::agent::Agent;

/// What this process has told systemd. Shared by the start-up task and the reloader.
#[derive(Debug, Default)]
pub(super) struct Notifier {
    /// Set once `READY=1` was sent: a reload before that must not announce readiness early.
    ready: AtomicBool,
}

impl Notifier {
    /// Waits until the agent has joined (when it is meant to), then sends `READY=1`. Returns
    /// early, without a word to systemd, if shutdown is requested first.
    pub(super) async fn ready_when_joined(self: Arc<Self>, agent: Arc<Agent>) {
        if !agent.config().retry_join.is_empty() && !joined(&agent).await {
            return;
        }
        send(&[NotifyState::Ready, NotifyState::Status("serving")]);
        self.ready.store(true, Ordering::SeqCst);
        tracing::debug!("told the service manager the agent is ready");
    }

    /// `RELOADING=1`, before a reload starts.
    pub(super) fn reloading(&self) {
        if self.ready.load(Ordering::SeqCst) {
            let mut states = vec![NotifyState::Reloading, NotifyState::Status("reloading the configuration")];
            // systemd 253+ also wants the monotonic time the reload began.
            states.extend(NotifyState::monotonic_usec_now().ok());
            send(&states);
        }
    }

    /// `READY=1` again, after a reload (whether or not it succeeded).
    pub(super) fn reloaded(&self) {
        if self.ready.load(Ordering::SeqCst) {
            send(&[NotifyState::Ready, NotifyState::Status("serving")]);
        }
    }

    /// `STOPPING=1`, as shutdown begins.
    pub(super) fn stopping(&self) {
        send(&[NotifyState::Stopping, NotifyState::Status("shutting down")]);
    }
}

/// True once the LAN pool holds a member other than this agent (a `retry_join` went through);
/// false if shutdown came first. Woken by member events, re-checked after each.
async fn joined(agent: &Agent) -> bool {
    let mut events = agent.gossip().subscribe();
    let mut shutdown = agent.shutdown_requested();
    let own_name = agent.identity().node_name.clone();
    loop {
        if agent.members().iter().any(|member| member.name != own_name) {
            return true;
        }
        tokio::select! {
            event = events.recv() => {
                // Lagged only means events were missed: the members are read again. Closed
                // means gossip stopped, and the agent with it.
                if let Err(tokio::sync::broadcast::error::RecvError::Closed) = event {
                    return false;
                }
            }
            _ = shutdown.wait_for(|stop| *stop) => return false,
        }
    }
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!(%error, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}
