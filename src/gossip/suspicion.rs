//! Which of foca's timers are still worth handing back to foca: the one check both the gossip
//! task (`driver`) and `cairn-bench --gossip-sim` make before `Foca::handle_timer`, so that
//! the benchmark measures what the agent runs.
//!
//! foca 2.0.0 declares a member down when its `Timer::ChangeSuspectToDown` fires, but only
//! if the member is still at the incarnation it was suspected at
//! (`foca-2.0.0/src/lib.rs:698-727`). The check is `Members::apply_existing_if`
//! (`src/member.rs:286-321`), which returns `Some(summary)` with `apply_successful: false`
//! when the condition fails, and the timer handler sends `Message::TurnUndead` on any
//! `Some(_)` when `notify_down_members` is on (`src/lib.rs:704-724`): a member that refuted
//! its suspicion is still told it is down, renews its identity and rejoins, and every member
//! sees a rename. At 5% loss that was most of the gossip traffic in a pool of 5,000.
//!
//! `timer_still_due` withholds such a timer: a `ChangeSuspectToDown` is due only while the
//! member is known under that very identity, `Suspect`, at that incarnation. When the timer is
//! withheld foca loses nothing it would have done: the member refuted (newer incarnation),
//! is already down (foca's apply fails on a down member, only the courtesy `TurnUndead` would
//! go out again), was renamed, or was forgotten. Every other timer is always due.
//!
//! Not done here, on purpose: memberlist starts a suspicion timer on every member that hears
//! a suspicion; foca runs it only on the member that raised it, so a member that misses the
//! resulting `Down` stays `Suspect` until its own probe reaches the dead member. Declaring
//! down locally after our own timeout would be unsafe with foca 2.0.0: `Down` beats `Alive`
//! at any incarnation (`src/member.rs:114-128`), whereas memberlist ignores a `dead` older
//! than the incarnation it knows (`deadNode` in its `state.go`). A member that missed the refutation (as likely as missing
//! the `Down`) would spread a `Down` that overrides it everywhere, and keeping it local does
//! not help either: foca answers any message from a member it holds down with `TurnUndead`
//! (`src/lib.rs:935-957`). Either way a live member renews its identity: the rejoin this
//! module exists to prevent. A safe repair is anti-entropy (a push/pull when a suspicion
//! outlives its timeout), which only spreads what some member really holds.
//!
//! Invariant: pure (reads the member list it is given, nothing else); never panics.

use foca::{Member, State, Timer};

/// Whether `timer` should be handed to foca, given foca's member list
/// (`Foca::iter_membership_state`). Only a `ChangeSuspectToDown` timer can be stale: it is due
/// while its member is still `Suspect` at the incarnation it was suspected at.
pub fn timer_still_due<'a, T: PartialEq + 'a>(
    members: impl IntoIterator<Item = &'a Member<T>>,
    timer: &Timer<T>,
) -> bool {
    let Timer::ChangeSuspectToDown { member_id, incarnation, .. } = timer else {
        return true;
    };
    members.into_iter().any(|member| {
        member.id() == member_id && member.state() == State::Suspect && member.incarnation() == *incarnation
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A timer exactly as foca builds it; the token is foca's business, not ours.
    fn suspect_to_down(member_id: &'static str, incarnation: u16) -> Timer<&'static str> {
        Timer::ChangeSuspectToDown { member_id, incarnation, token: 0 }
    }

    #[test]
    fn timer_for_a_member_that_refuted_is_dropped() {
        // Suspected at incarnation 3, refuted with 4: foca would still send `TurnUndead`.
        let members = [Member::new("a", 4, State::Alive), Member::new("b", 0, State::Alive)];
        assert!(!timer_still_due(&members, &suspect_to_down("a", 3)));
        // Refuted, then suspected again at the new incarnation: the old timer stays stale.
        let members = [Member::new("a", 4, State::Suspect)];
        assert!(!timer_still_due(&members, &suspect_to_down("a", 3)));
    }

    #[test]
    fn timer_for_a_still_suspect_member_is_kept() {
        let members = [Member::new("b", 0, State::Alive), Member::new("a", 3, State::Suspect)];
        assert!(timer_still_due(&members, &suspect_to_down("a", 3)));
    }

    #[test]
    fn timer_for_a_down_renamed_or_forgotten_member_is_dropped() {
        assert!(!timer_still_due(&[Member::new("a", 3, State::Down)], &suspect_to_down("a", 3)));
        assert!(!timer_still_due(&[Member::new("a-renewed", 0, State::Alive)], &suspect_to_down("a", 3)));
        assert!(!timer_still_due(&[] as &[Member<&str>], &suspect_to_down("a", 3)));
    }

    #[test]
    fn other_timers_are_always_due() {
        let members: [Member<&str>; 0] = [];
        assert!(timer_still_due(&members, &Timer::ProbeRandomMember(0)));
        assert!(timer_still_due(&members, &Timer::PeriodicGossip(0)));
        assert!(timer_still_due(&members, &Timer::RemoveDown("a")));
    }
}
