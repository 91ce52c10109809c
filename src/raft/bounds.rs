//! Limits on the terms and log indexes that peers send, checked before openraft sees them.
//!
//! openraft 0.9 does unchecked arithmetic on both: a candidate's term is `vote.term + 1`
//! (`Engine::elect`), and log positions are `index + 1` all over (`next_index()`, purge and
//! snapshot thresholds, the apply range). A term of `u64::MAX` in a forged AppendEntries used
//! to be saved as this server's vote; the next election wrapped the term and openraft panicked
//! (`engine_impl.rs`, the `unwrap` of `update_vote` refusing the wrapped vote), on every start
//! after that. Every Raft message that crosses the server port, in either direction (requests
//! in `RaftServer::handle_rpc`, answers in `PeerClient`), is checked here first, and so is the
//! state read back from disk at start (`log_store`).
//!
//! Real clusters never come near the limits: at a million elections or entries a second,
//! 2^62 lasts about 146,000 years, and the headroom above it keeps `+ 1` (and openraft's
//! `+ threshold`) far from overflow.
//!
//! Entries of an AppendEntries must also follow `prev_log_id` with consecutive indexes and
//! leader ids that never go down: openraft only `debug_assert`s this (so a debug build
//! panicked on a forged gap), and a release build would store a log with holes.

use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::error::SnapshotMismatch;
use openraft::{LogId, SnapshotSegmentId, Vote};

use crate::raft::{NodeId, TypeConfig};

/// Highest Raft term accepted from a peer or from disk.
pub const RAFT_TERM_MAX: u64 = 1 << 62;
/// Highest Raft log index (and snapshot byte offset) accepted from a peer or from disk.
pub const RAFT_INDEX_MAX: u64 = 1 << 62;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoundsError {
    #[error("{what} has term {term}, above RAFT_TERM_MAX ({RAFT_TERM_MAX})")]
    Term { what: &'static str, term: u64 },
    #[error("{what} has index {index}, above RAFT_INDEX_MAX ({RAFT_INDEX_MAX})")]
    Index { what: &'static str, index: u64 },
    #[error("entry {position} has log id {found}, which does not follow {previous} (entries must be consecutive)")]
    NotConsecutive { position: usize, found: String, previous: String },
    #[error("snapshot chunk at offset {offset} of {len} bytes ends above RAFT_INDEX_MAX ({RAFT_INDEX_MAX})")]
    SnapshotOffset { offset: u64, len: usize },
}

/// The snapshot being received, so that a chunk can only continue it: openraft writes a chunk
/// at its `offset` into an in-memory buffer, so one forged offset of a terabyte would make it
/// allocate a terabyte. A chunk at offset 0 starts a snapshot; any other must belong to the
/// snapshot being received and start at or before the end of what arrived. A refused chunk
/// gets openraft's own `SnapshotMismatch`, on which a real sender starts over at offset 0.
#[derive(Default)]
pub struct SnapshotChunks {
    receiving: std::sync::Mutex<Option<(String, u64)>>,
}

impl SnapshotChunks {
    pub fn admit(&self, request: &InstallSnapshotRequest<TypeConfig>) -> Result<(), SnapshotMismatch> {
        let end = request.offset.saturating_add(request.data.len() as u64);
        let mut receiving = self.receiving.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match receiving.as_mut() {
            _ if request.offset == 0 => *receiving = Some((request.meta.snapshot_id.clone(), end)),
            Some((id, received)) if *id == request.meta.snapshot_id && request.offset <= *received => *received = (*received).max(end),
            other => {
                let (id, received) = other.map_or((String::new(), 0), |(id, received)| (id.clone(), *received));
                return Err(SnapshotMismatch {
                    expect: SnapshotSegmentId { id, offset: received },
                    got: SnapshotSegmentId { id: request.meta.snapshot_id.clone(), offset: request.offset },
                });
            }
        }
        Ok(())
    }
}

/// A Raft message whose numbers can be checked before openraft sees it.
pub trait Bounded {
    fn check_bounds(&self) -> Result<(), BoundsError>;
}

pub fn check_vote(what: &'static str, vote: &Vote<NodeId>) -> Result<(), BoundsError> {
    let term = vote.leader_id.term;
    if term > RAFT_TERM_MAX {
        return Err(BoundsError::Term { what, term });
    }
    Ok(())
}

pub fn check_log_id(what: &'static str, log_id: Option<&LogId<NodeId>>) -> Result<(), BoundsError> {
    let Some(log_id) = log_id else { return Ok(()) };
    if log_id.leader_id.term > RAFT_TERM_MAX {
        return Err(BoundsError::Term { what, term: log_id.leader_id.term });
    }
    if log_id.index > RAFT_INDEX_MAX {
        return Err(BoundsError::Index { what, index: log_id.index });
    }
    Ok(())
}

impl Bounded for VoteRequest<NodeId> {
    fn check_bounds(&self) -> Result<(), BoundsError> {
        check_vote("the vote", &self.vote)?;
        check_log_id("the candidate's last log id", self.last_log_id.as_ref())
    }
}

impl Bounded for AppendEntriesRequest<TypeConfig> {
    fn check_bounds(&self) -> Result<(), BoundsError> {
        check_vote("the vote", &self.vote)?;
        check_log_id("prev_log_id", self.prev_log_id.as_ref())?;
        check_log_id("leader_commit", self.leader_commit.as_ref())?;
        let mut previous = self.prev_log_id;
        for (position, entry) in self.entries.iter().enumerate() {
            check_log_id("an entry", Some(&entry.log_id))?;
            let expected_index = previous.map_or(0, |p| p.index + 1);
            let leader_goes_down = previous.is_some_and(|p| entry.log_id.leader_id < p.leader_id);
            if entry.log_id.index != expected_index || leader_goes_down {
                let previous = previous.map_or_else(|| "the start of the log".to_string(), |p| p.to_string());
                return Err(BoundsError::NotConsecutive { position, found: entry.log_id.to_string(), previous });
            }
            previous = Some(entry.log_id);
        }
        Ok(())
    }
}

impl Bounded for InstallSnapshotRequest<TypeConfig> {
    fn check_bounds(&self) -> Result<(), BoundsError> {
        check_vote("the vote", &self.vote)?;
        check_log_id("the snapshot's last log id", self.meta.last_log_id.as_ref())?;
        check_log_id("the snapshot's membership log id", self.meta.last_membership.log_id().as_ref())?;
        let end = self.offset.checked_add(self.data.len() as u64);
        if end.is_none_or(|end| end > RAFT_INDEX_MAX) {
            return Err(BoundsError::SnapshotOffset { offset: self.offset, len: self.data.len() });
        }
        Ok(())
    }
}

impl Bounded for VoteResponse<NodeId> {
    fn check_bounds(&self) -> Result<(), BoundsError> {
        check_vote("the answered vote", &self.vote)?;
        check_log_id("the voter's last log id", self.last_log_id.as_ref())
    }
}

impl Bounded for AppendEntriesResponse<NodeId> {
    fn check_bounds(&self) -> Result<(), BoundsError> {
        match self {
            AppendEntriesResponse::PartialSuccess(matching) => check_log_id("the matching log id", matching.as_ref()),
            AppendEntriesResponse::HigherVote(vote) => check_vote("the higher vote", vote),
            AppendEntriesResponse::Success | AppendEntriesResponse::Conflict => Ok(()),
        }
    }
}

impl Bounded for InstallSnapshotResponse<NodeId> {
    fn check_bounds(&self) -> Result<(), BoundsError> {
        check_vote("the answered vote", &self.vote)
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, Entry, EntryPayload};

    use super::*;

    fn log_id(term: u64, index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn entry(term: u64, index: u64) -> Entry<TypeConfig> {
        Entry { log_id: log_id(term, index), payload: EntryPayload::Blank }
    }

    fn append(vote_term: u64, prev: Option<LogId<NodeId>>, entries: Vec<Entry<TypeConfig>>) -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest { vote: Vote::new_committed(vote_term, 1), prev_log_id: prev, entries, leader_commit: prev }
    }

    #[test]
    fn terms_and_indexes_up_to_the_limits_pass() {
        assert_eq!(VoteRequest::new(Vote::new(RAFT_TERM_MAX, 2), Some(log_id(RAFT_TERM_MAX, RAFT_INDEX_MAX))).check_bounds(), Ok(()));
        assert_eq!(append(7, Some(log_id(3, 9)), vec![entry(3, 10), entry(7, 11)]).check_bounds(), Ok(()));
        assert_eq!(append(7, None, vec![entry(1, 0), entry(1, 1)]).check_bounds(), Ok(()));
        assert_eq!(append(u64::MAX / 4, None, vec![]).check_bounds(), Ok(()));
    }

    /// Regression (issue 11): a vote of term 2^64-1 was saved and wrapped at the next election.
    #[test]
    fn a_term_or_index_past_the_limit_is_refused() {
        let forged = VoteRequest::new(Vote::new(u64::MAX, 2), None);
        assert_eq!(forged.check_bounds(), Err(BoundsError::Term { what: "the vote", term: u64::MAX }));
        assert!(append(RAFT_TERM_MAX + 1, None, vec![]).check_bounds().is_err());
        assert!(append(5, Some(log_id(1, u64::MAX)), vec![]).check_bounds().is_err());
        assert!(append(5, Some(log_id(u64::MAX, 1)), vec![]).check_bounds().is_err());
        let mut commit_past = append(5, None, vec![]);
        commit_past.leader_commit = Some(log_id(1, RAFT_INDEX_MAX + 1));
        assert!(matches!(commit_past.check_bounds(), Err(BoundsError::Index { what: "leader_commit", .. })));
        let answers: [&dyn Bounded; 3] = [
            &VoteResponse::new(Vote::new(u64::MAX, 2), None, false),
            &AppendEntriesResponse::<NodeId>::HigherVote(Vote::new_committed(u64::MAX, 2)),
            &AppendEntriesResponse::<NodeId>::PartialSuccess(Some(log_id(1, u64::MAX))),
        ];
        for answer in answers {
            assert!(answer.check_bounds().is_err());
        }
    }

    #[test]
    fn entries_that_skip_repeat_or_go_back_are_refused() {
        for entries in [vec![entry(3, 11)], vec![entry(3, 10), entry(3, 10)], vec![entry(3, 10), entry(2, 11)], vec![entry(2, 10)]] {
            let refused = append(7, Some(log_id(3, 9)), entries.clone()).check_bounds();
            assert!(matches!(refused, Err(BoundsError::NotConsecutive { .. })), "{entries:?}: {refused:?}");
        }
        assert!(append(7, None, vec![entry(1, 1)]).check_bounds().is_err(), "the first entry is index 0");
    }

    #[test]
    fn a_snapshot_chunk_past_the_limit_is_refused() {
        let mut request = InstallSnapshotRequest::<TypeConfig> {
            vote: Vote::new_committed(3, 1),
            meta: Default::default(),
            offset: u64::MAX - 1,
            data: vec![0; 4],
            done: false,
        };
        assert!(matches!(request.check_bounds(), Err(BoundsError::SnapshotOffset { .. })));
        request.offset = 0;
        assert_eq!(request.check_bounds(), Ok(()));
        request.meta.last_log_id = Some(log_id(u64::MAX, 4));
        assert!(request.check_bounds().is_err());
    }

    #[test]
    fn snapshot_chunks_only_continue_what_arrived() {
        let chunks = SnapshotChunks::default();
        let chunk = |id: &str, offset: u64, len: usize| {
            let mut request = InstallSnapshotRequest::<TypeConfig> {
                vote: Vote::new_committed(3, 1),
                meta: Default::default(),
                offset,
                data: vec![0; len],
                done: false,
            };
            request.meta.snapshot_id = id.to_string();
            request
        };
        assert!(chunks.admit(&chunk("a", 1 << 40, 1)).is_err(), "nothing started");
        assert_eq!(chunks.admit(&chunk("a", 0, 10)), Ok(()));
        assert_eq!(chunks.admit(&chunk("a", 10, 10)), Ok(()));
        assert_eq!(chunks.admit(&chunk("a", 5, 10)), Ok(()), "a resent chunk");
        assert!(chunks.admit(&chunk("a", 21, 1)).is_err(), "a gap");
        assert!(chunks.admit(&chunk("b", 20, 1)).is_err(), "another snapshot's middle");
        assert_eq!(chunks.admit(&chunk("b", 0, 1)), Ok(()));
    }
}
