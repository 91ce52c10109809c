//! foca's timers, as the gossip task holds them: a min-heap ordered by deadline, then by
//! submission, so that timers fire in deadline order and two due at once fire in the order
//! foca asked for them. Nothing here fires early: [`TimerQueue::pop_due`] hands out only
//! timers whose deadline has passed.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use foca::Timer;

use super::super::identity::NodeId;

/// A foca timer in the heap: ordered by deadline, then by submission.
struct Scheduled {
    deadline: Instant,
    sequence: u64,
    timer: Timer<NodeId>,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Scheduled) -> bool {
        (self.deadline, self.sequence) == (other.deadline, other.sequence)
    }
}

impl Eq for Scheduled {}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Scheduled) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scheduled {
    fn cmp(&self, other: &Scheduled) -> std::cmp::Ordering {
        (self.deadline, self.sequence).cmp(&(other.deadline, other.sequence))
    }
}

#[derive(Default)]
pub(super) struct TimerQueue {
    heap: BinaryHeap<Reverse<Scheduled>>,
    /// Submissions so far: the tie-break between equal deadlines.
    sequence: u64,
}

impl TimerQueue {
    /// Schedules `timer` to fire `after` from `now`.
    pub(super) fn push(&mut self, now: Instant, after: Duration, timer: Timer<NodeId>) {
        self.sequence += 1;
        self.heap.push(Reverse(Scheduled { deadline: now + after, sequence: self.sequence, timer }));
    }

    /// When the earliest timer is due, if any is scheduled.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(scheduled)| scheduled.deadline)
    }

    /// The earliest timer, if it is due at `now`.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<Timer<NodeId>> {
        if self.next_deadline()? > now {
            return None;
        }
        self.heap.pop().map(|Reverse(scheduled)| scheduled.timer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_fire_by_deadline_then_submission_and_never_early() {
        let now = Instant::now();
        let mut queue = TimerQueue::default();
        queue.push(now, Duration::from_millis(5), Timer::PeriodicGossip(1));
        queue.push(now, Duration::ZERO, Timer::PeriodicGossip(2));
        queue.push(now, Duration::ZERO, Timer::PeriodicGossip(3));
        assert_eq!(queue.next_deadline(), Some(now));
        let due_now: Vec<_> = std::iter::from_fn(|| queue.pop_due(now)).collect();
        assert_eq!(due_now, [Timer::PeriodicGossip(2), Timer::PeriodicGossip(3)]);
        assert_eq!(queue.next_deadline(), Some(now + Duration::from_millis(5)), "the later one waits");
        assert_eq!(queue.pop_due(now + Duration::from_millis(5)), Some(Timer::PeriodicGossip(1)));
        assert_eq!(queue.pop_due(now + Duration::from_secs(1)), None);
    }
}
