//! What openraft's metrics channel says, turned into Consul's Raft metrics and one log line.
//!
//! - every change of role counts `raft.state.leader`, `raft.state.candidate` or
//!   `raft.state.follower`, as hashicorp/raft does on each transition;
//! - on the leader, each update of the time since a quorum last acknowledged it is a sample of
//!   `raft.leader.lastContact`;
//! - when the core quits on an error, that is logged once as an error (openraft's own line is
//!   a debug dump); an orderly shutdown is not logged.

use openraft::{RaftMetrics, ServerState};
use tokio::sync::watch;

use crate::raft::{NodeId, ServerNode, raft_stopped_message};
use crate::telemetry::names;

/// Runs until the Raft core stops.
pub(super) async fn watch(mut metrics: watch::Receiver<RaftMetrics<NodeId, ServerNode>>) {
    let mut last_state = None;
    loop {
        let (state, stopped, quorum_ack_ms) = {
            let current = metrics.borrow_and_update();
            (current.state, current.running_state.clone().err(), current.millis_since_quorum_ack)
        };
        if let Some(fatal) = stopped {
            if !matches!(fatal, openraft::error::Fatal::Stopped) {
                tracing::error!("{}", raft_stopped_message(&fatal));
            }
            return;
        }
        if last_state != Some(state) {
            match state {
                ServerState::Leader => metrics::counter!(names::RAFT_STATE_LEADER).increment(1),
                ServerState::Candidate => metrics::counter!(names::RAFT_STATE_CANDIDATE).increment(1),
                ServerState::Follower => metrics::counter!(names::RAFT_STATE_FOLLOWER).increment(1),
                ServerState::Learner | ServerState::Shutdown => {}
            }
            last_state = Some(state);
        }
        if let (ServerState::Leader, Some(ms)) = (state, quorum_ack_ms) {
            metrics::histogram!(names::RAFT_LEADER_LAST_CONTACT).record(ms as f64);
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}
