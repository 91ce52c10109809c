//! A linearizability checker for a key-value register (Wing & Gong's search with Lowe's
//! memoization, as Porcupine does), and the history types tests record.
//!
//! The history is split per key (linearizability is compositional). For each key, a
//! depth-first search tries to order the operations so that every operation takes effect at
//! one instant between its call and its return, and the register's sequential model agrees
//! with every observed output. Operations whose outcome is unknown (the request failed or timed
//! out) may take effect at any time after their call, or not at all.

use std::collections::{BTreeMap, HashSet};

/// What a client asked for and what it saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Operation {
    /// A linearizable read; `None` = the key did not exist.
    Get { observed: Option<String> },
    /// A write; `acknowledged` is false when the outcome is unknown.
    Put { value: String, acknowledged: bool },
    /// Compare-and-set on the value (clients CAS on the ModifyIndex they read together with
    /// `expected`; values are unique, so that is the same condition). `outcome` is `None` when
    /// unknown.
    Cas { expected: String, new: String, outcome: Option<bool> },
}

#[derive(Clone, Debug)]
pub(crate) struct Event {
    pub(crate) key: String,
    /// Nanoseconds since the test's start.
    pub(crate) call_ns: u64,
    /// `u64::MAX` when the client never saw an answer.
    pub(crate) return_ns: u64,
    pub(crate) operation: Operation,
}

/// Every state the register may be in after applying `operation` to `state`.
fn step(state: &Option<String>, operation: &Operation) -> Vec<Option<String>> {
    match operation {
        Operation::Get { observed } => {
            if observed == state {
                vec![state.clone()]
            } else {
                vec![]
            }
        }
        Operation::Put { value, acknowledged: true } => vec![Some(value.clone())],
        Operation::Put { value, acknowledged: false } => vec![Some(value.clone()), state.clone()],
        Operation::Cas { expected, new, outcome } => {
            let matches = state.as_deref() == Some(expected.as_str());
            match outcome {
                Some(true) if matches => vec![Some(new.clone())],
                Some(true) => vec![],
                Some(false) if matches => vec![],
                Some(false) => vec![state.clone()],
                None if matches => vec![Some(new.clone()), state.clone()],
                None => vec![state.clone()],
            }
        }
    }
}

/// Checks one key's history. Returns `Err` with a description when no linearization exists.
fn check_key(events: &[Event]) -> Result<(), String> {
    // Unknown-outcome reads tell nothing; drop them.
    let events: Vec<&Event> = events.iter().filter(|e| !(matches!(e.operation, Operation::Get { .. }) && e.return_ns == u64::MAX)).collect();
    let count = events.len();
    let words = count.div_ceil(64);
    let mut seen: HashSet<(Vec<u64>, Option<String>)> = HashSet::new();
    // Explicit DFS stack of (linearized set, state).
    let mut stack = vec![(vec![0u64; words], None::<String>)];
    let mut explored: u64 = 0;
    while let Some((done, state)) = stack.pop() {
        explored += 1;
        if explored > 5_000_000 {
            return Err("search budget exhausted".into());
        }
        let remaining: Vec<usize> = (0..count).filter(|i| done[i / 64] & (1 << (i % 64)) == 0).collect();
        if remaining.is_empty() {
            return Ok(());
        }
        // Only an operation called before every pending operation returned may go next.
        let horizon = remaining.iter().map(|&i| events[i].return_ns).min().unwrap_or(u64::MAX);
        for &i in &remaining {
            if events[i].call_ns > horizon {
                continue;
            }
            for next_state in step(&state, &events[i].operation) {
                let mut next_done = done.clone();
                next_done[i / 64] |= 1 << (i % 64);
                if seen.insert((next_done.clone(), next_state.clone())) {
                    stack.push((next_done, next_state));
                }
            }
            // An unknown write may also never take effect: let it drop out.
            if events[i].return_ns == u64::MAX {
                let mut next_done = done.clone();
                next_done[i / 64] |= 1 << (i % 64);
                if seen.insert((next_done.clone(), state.clone())) {
                    stack.push((next_done, state.clone()));
                }
            }
        }
    }
    Err(format!("no linearization of {count} operations exists"))
}

/// Drops operations that cannot constrain the search, which keeps it tractable when faults
/// leave many outcomes unknown:
/// - a failed CAS changes nothing, so removing it only removes a constraint;
/// - a write (or CAS) with unknown outcome whose value nobody ever observed can always be
///   taken as not having happened: no read or successful CAS depends on it.
fn prune(history: &[Event]) -> Vec<Event> {
    let observed: HashSet<&str> = history
        .iter()
        .filter_map(|e| match &e.operation {
            Operation::Get { observed: Some(v) } => Some(v.as_str()),
            Operation::Cas { expected, outcome: Some(true), .. } => Some(expected.as_str()),
            _ => None,
        })
        .collect();
    history
        .iter()
        .filter(|e| match &e.operation {
            Operation::Cas { outcome: Some(false), .. } => false,
            Operation::Put { value, acknowledged: false } => observed.contains(value.as_str()),
            Operation::Cas { new, outcome: None, .. } => observed.contains(new.as_str()),
            _ => true,
        })
        .cloned()
        .collect()
}

/// Checks a whole history, key by key.
pub(crate) fn check(history: &[Event]) -> Result<(), String> {
    let history = prune(history);
    let mut by_key: BTreeMap<&str, Vec<Event>> = BTreeMap::new();
    for event in &history {
        by_key.entry(event.key.as_str()).or_default().push(event.clone());
    }
    for (key, events) in by_key {
        check_key(&events).map_err(|e| format!("key {key}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(call: u64, ret: u64, operation: Operation) -> Event {
        Event { key: "k".into(), call_ns: call, return_ns: ret, operation }
    }

    #[test]
    fn accepts_a_sequential_history_and_rejects_a_stale_read() {
        let put = |v: &str| Operation::Put { value: v.into(), acknowledged: true };
        let get = |v: Option<&str>| Operation::Get { observed: v.map(str::to_string) };
        let good = vec![event(0, 10, put("a")), event(20, 30, get(Some("a"))), event(40, 50, put("b")), event(60, 70, get(Some("b")))];
        assert!(check(&good).is_ok());
        // Reading "a" after "b" was acknowledged, with no overlap, is a stale read.
        let stale = vec![event(0, 10, put("a")), event(20, 30, put("b")), event(40, 50, get(Some("a")))];
        assert!(check(&stale).is_err());
        // Overlapping operations may be ordered either way.
        let overlap = vec![event(0, 10, put("a")), event(20, 60, put("b")), event(30, 40, get(Some("a")))];
        assert!(check(&overlap).is_ok());
        // A write with unknown outcome may or may not have happened.
        let unknown = vec![event(0, 10, put("a")), event(20, u64::MAX, put("b")), event(40, 50, get(Some("a"))), event(60, 70, get(Some("b")))];
        assert!(check(&unknown).is_ok());
        let cas = vec![
            event(0, 10, put("a")),
            event(20, 30, Operation::Cas { expected: "a".into(), new: "c".into(), outcome: Some(true) }),
            event(40, 50, Operation::Cas { expected: "a".into(), new: "d".into(), outcome: Some(true) }),
        ];
        assert!(check(&cas).is_err(), "two successful CAS from the same value is not linearizable");
    }
}
