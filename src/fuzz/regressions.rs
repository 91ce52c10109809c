//! Regression tests for the bugs the fuzzer found (issue 11), each pinned to the input that
//! found it, run directly rather than by a search.

use crate::gossip::fuzz_seam::{FuzzAgent, Received};

/// The input of `gossip::packets` at iteration 51 of seed 264112835308810728: a plaintext
/// ping (kind 2) whose body is 1,402 bytes, the most a packet carries. An agent that accepts
/// plaintext but seals what it sends echoed it in a pong 30 bytes longer than any packet may
/// be, and the gossip task's `debug_assert` that its packets fit panicked (in a release build,
/// a packet every peer drops as oversized left). Pings longer than any of ours now get no
/// answer.
fn oversized_ping() -> Vec<u8> {
    let mut packet = [&[1u8, 2][..], &42u64.to_be_bytes(), &[0xc0], &[0; 7], &[3], &[0; 8]].concat();
    while packet.len() < 1_404 {
        packet.extend_from_slice(&[0xf6, 0, 0]);
    }
    packet
}

#[test]
fn a_ping_too_long_to_echo_is_refused_not_answered() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let _inside = runtime.enter();
    let mut agent = FuzzAgent::keyed();
    assert_eq!(agent.datagram(&oversized_ping()), Received::Refused);
    let mut ours = vec![1, 2];
    ours.extend_from_slice(&[0; 128]);
    assert_eq!(agent.datagram(&ours), Received::Accepted, "a ping of our own size is still answered");
}

/// Found by `snapshot::restore` (seed 11461081813309044172, iteration 1686): a snapshot whose
/// row for check `web-http` is stored under another key. Setting that check critical was
/// refused as an unknown check, yet still ended the session that depends on it: a refused
/// command changed the catalog, breaking `apply`'s promise. Now only an update that takes
/// effect invalidates sessions.
#[test]
fn a_refused_check_update_ends_no_session() {
    use crate::catalog::model::HealthStatus;
    use crate::catalog::{Catalog, ChangeSet, Command, Outcome, RowKey, apply};

    let (catalog, index) = crate::fuzz::samples::catalog();
    let moved = Catalog::row_key_bytes(&RowKey::Check("node-1".into(), "web-http".into()));
    let elsewhere = Catalog::row_key_bytes(&RowKey::Check("node-1".into(), "web-httq".into()));
    let rows: Vec<(Vec<u8>, Vec<u8>)> =
        crate::fuzz::samples::rows(&catalog).into_iter().map(|(key, value)| if key == moved { (elsewhere.clone(), value) } else { (key, value) }).collect();
    let mut restored = Catalog::new();
    assert_eq!(apply(&mut restored, index, &Command::Restore { rows }, &mut ChangeSet::new()), Outcome::Done);
    assert_eq!(restored.sessions().count(), 1, "the sample session depends on web-http");

    let critical = Command::UpdateCheck { node: "node-1".into(), check_id: "web-http".into(), status: HealthStatus::Critical, output: String::new() };
    let mut after = restored.clone();
    let outcome = apply(&mut after, index + 1, &Command::At { now_ms: 1_800_000_000_000, command: Box::new(critical) }, &mut ChangeSet::new());
    assert!(matches!(outcome, Outcome::Rejected(_)), "{outcome:?}");
    assert!(after == restored, "a refused update changed the catalog");
}
