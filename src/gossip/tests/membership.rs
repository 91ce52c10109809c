//! Membership: join with tags, tag updates, crash detection and restart, graceful leave,
//! force-leave and prune, reaping of failed members.

use std::time::Duration;

use super::*;
use crate::gossip::{GossipError, MemberEvent, MemberStatus};

#[tokio::test]
async fn three_members_see_each_other_with_tags_and_tag_changes() {
    tracing::info!("phase: a, b, c start; b and c join a");
    let (a, b, c) = three().await;
    for observer in [&a, &b, &c] {
        let members = observer.gossip.members();
        assert_eq!(members.len(), 3, "{} lists {members:?}", observer.name);
        for member in &members {
            assert_eq!(member.status, MemberStatus::Alive);
            assert_eq!(member.tags, tags(&member.name, "node"), "{} sees {member:?}", observer.name);
            let expected = [&a, &b, &c].into_iter().find(|agent| agent.name == member.name).expect("known");
            assert_eq!((member.addr, member.port), (expected.addr.ip(), expected.addr.port()));
        }
    }

    tracing::info!("phase: a changes its tags; b and c see the change and an Update event");
    let mut b_events = b.gossip.subscribe();
    a.gossip.set_tags(tags("a", "consul")).expect("small tags are accepted");
    for observer in [&a, &b, &c] {
        let what = format!("{} sees a's new tags", observer.name);
        wait_until(&what, || observer.tags_of("a") == Some(tags("a", "consul"))).await;
    }
    let update = next_event(&mut b_events, "a", |event| matches!(event, MemberEvent::Update(_))).await;
    assert!(matches!(update, MemberEvent::Update(member) if member.tags == tags("a", "consul")));

    tracing::info!("phase: oversized tags are refused");
    let big = BTreeMap::from([("k".to_owned(), "v".repeat(600))]);
    assert!(matches!(a.gossip.set_tags(big), Err(GossipError::TagsTooLarge { .. })));
    assert_eq!(a.tags_of("a"), Some(tags("a", "consul")));
}

#[tokio::test]
async fn join_events_carry_tags() {
    let a = Setup::new("a").start().await;
    let mut a_events = a.gossip.subscribe();
    let b = Setup::new("b").start().await;
    b.join(&a).await;
    let join = next_event(&mut a_events, "b", |event| matches!(event, MemberEvent::Join(_))).await;
    let MemberEvent::Join(member) = join else { panic!("not a join: {join:?}") };
    assert_eq!((member.tags, member.status), (tags("b", "node"), MemberStatus::Alive));
}

/// A subscriber woken by a member event re-reads the member list at once (a client agent's
/// server pool does): the list must already hold what the event announced. It used to be
/// published only after the events were sent, so a subscriber on another worker thread could
/// read the old list, and with no later event a client agent never learned of its servers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_member_list_already_holds_what_an_event_announces() {
    let a = Setup::new("a").start().await;
    let mut a_events = a.gossip.subscribe();
    let b = Setup::new("b").start().await;
    b.join(&a).await;
    let join = next_event(&mut a_events, "b", |event| matches!(event, MemberEvent::Join(_))).await;
    let MemberEvent::Join(joined) = join else { panic!("not a join: {join:?}") };
    assert_eq!(a.tags_of("b"), Some(joined.tags), "the list a read as soon as b's join arrived");
    for round in 0..20 {
        let role = format!("role-{round}");
        b.gossip.set_tags(tags("b", &role)).expect("small tags");
        let update = next_event(&mut a_events, "b", |event| matches!(event, MemberEvent::Update(_))).await;
        let MemberEvent::Update(updated) = update else { panic!("not an update: {update:?}") };
        assert_eq!(updated.tags, tags("b", &role));
        assert_eq!(a.tags_of("b"), Some(updated.tags), "round {round}: the list a read as soon as the update arrived");
    }
}

#[tokio::test]
async fn a_crash_is_detected_and_a_restart_rejoins() {
    let (a, b, c) = three().await;
    let mut a_events = a.gossip.subscribe();

    tracing::info!("phase: c crashes (its tasks are aborted, no leave)");
    let c_port = c.addr.port();
    c.gossip.shutdown().await;
    let detected = wait_until("a sees c failed", || a.status_of("c") == Some(MemberStatus::Failed)).await;
    wait_until("b sees c failed", || b.status_of("c") == Some(MemberStatus::Failed)).await;
    // Probe every 100 ms, suspicion 500 ms: well under three seconds even on a busy machine.
    assert!(detected < Duration::from_secs(3), "detection took {detected:?}");
    let failed = next_event(&mut a_events, "c", |event| !matches!(event, MemberEvent::Update(_))).await;
    assert!(matches!(&failed, MemberEvent::Failed(member) if member.status == MemberStatus::Failed), "{failed:?}");

    tracing::info!("phase: c restarts with the same name and port and joins again");
    let c = Setup { port: c_port, ..Setup::new("c") }.start().await;
    c.join(&a).await;
    wait_all_alive(&[&a, &b, &c]).await;
    let rejoined = next_event(&mut a_events, "c", |event| matches!(event, MemberEvent::Join(_))).await;
    assert!(matches!(rejoined, MemberEvent::Join(member) if member.status == MemberStatus::Alive));
    assert_eq!(a.gossip.members().len(), 3);
}

#[tokio::test]
async fn a_member_wrongly_declared_down_rejoins_by_itself() {
    let (a, b, c) = three().await;
    let mut a_events = a.gossip.subscribe();

    tracing::info!("phase: c stops answering for a while (SIGSTOP)");
    c.gossip.pause(Duration::from_millis(1500)).await;
    next_event(&mut a_events, "c", |event| matches!(event, MemberEvent::Failed(_))).await;

    tracing::info!("phase: c resumes, learns it was declared down, renews and rejoins; no join call");
    let rejoined = next_event(&mut a_events, "c", |event| matches!(event, MemberEvent::Join(_))).await;
    assert!(matches!(&rejoined, MemberEvent::Join(member) if member.tags == tags("c", "node")), "{rejoined:?}");
    wait_all_alive(&[&a, &b, &c]).await;
}

#[tokio::test]
async fn a_quick_restart_is_not_reported_as_a_failure() {
    let (a, b, c) = three().await;
    let mut a_events = a.gossip.subscribe();
    let mut b_events = b.gossip.subscribe();
    let c_port = c.addr.port();
    c.gossip.shutdown().await;
    let c = Setup { port: c_port, ..Setup::new("c") }.start().await;
    c.join(&a).await;
    wait_all_alive(&[&a, &b, &c]).await;
    // Well past the suspicion timeout: the old run must not be reported failed.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    wait_all_alive(&[&a, &b, &c]).await;
    for events in [drain(&mut a_events), drain(&mut b_events)] {
        assert!(!events.iter().any(|event| matches!(event, MemberEvent::Failed(_))), "{events:?}");
    }
}

#[tokio::test]
async fn a_graceful_leave_is_left_not_failed() {
    let (a, b, c) = three().await;
    let mut a_events = a.gossip.subscribe();

    tracing::info!("phase: c leaves gracefully, then stops");
    c.gossip.leave(Duration::from_millis(300)).await;
    assert_eq!(c.status_of("c"), Some(MemberStatus::Left));
    c.gossip.shutdown().await;
    wait_until("a sees c left", || a.status_of("c") == Some(MemberStatus::Left)).await;
    wait_until("b sees c left", || b.status_of("c") == Some(MemberStatus::Left)).await;
    let left =
        next_event(&mut a_events, "c", |event| matches!(event, MemberEvent::Left(_) | MemberEvent::Failed(_))).await;
    assert!(matches!(&left, MemberEvent::Left(_)), "a must report Left, got {left:?}");

    tracing::info!("phase: c stays Left well past the suspicion timeout");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(a.status_of("c"), Some(MemberStatus::Left));
    assert!(!drain(&mut a_events).iter().any(|event| matches!(event, MemberEvent::Failed(_))));
}

#[tokio::test]
async fn force_leave_turns_failed_into_left_and_prune_removes() {
    let (a, b, c) = three().await;
    c.gossip.shutdown().await;
    wait_until("a sees c failed", || a.status_of("c") == Some(MemberStatus::Failed)).await;
    wait_until("b sees c failed", || b.status_of("c") == Some(MemberStatus::Failed)).await;

    tracing::info!("phase: force-leave of an unknown node");
    let unknown = a.gossip.force_leave("nope", false).await.expect_err("unknown node");
    assert!(matches!(unknown, GossipError::NoSuchMember { .. }));
    assert_eq!(unknown.to_string(), "agent: No node found with name 'nope'");

    tracing::info!("phase: force-leave of the failed c: Left everywhere");
    let mut b_events = b.gossip.subscribe();
    a.gossip.force_leave("c", false).await.expect("c is known");
    wait_until("a sees c left", || a.status_of("c") == Some(MemberStatus::Left)).await;
    wait_until("b sees c left", || b.status_of("c") == Some(MemberStatus::Left)).await;
    next_event(&mut b_events, "c", |event| matches!(event, MemberEvent::Left(_))).await;

    tracing::info!("phase: prune removes c from every member list");
    a.gossip.force_leave("c", true).await.expect("c is still listed");
    wait_until("a forgot c", || a.status_of("c").is_none()).await;
    wait_until("b forgot c", || b.status_of("c").is_none()).await;
    next_event(&mut b_events, "c", |event| matches!(event, MemberEvent::Reap(_))).await;
    assert_eq!(a.status_of("b"), Some(MemberStatus::Alive));
}

#[tokio::test]
async fn force_leave_of_an_alive_member_is_refuted() {
    let a = Setup::new("a").start().await;
    let b = Setup::new("b").start().await;
    b.join(&a).await;
    wait_all_alive(&[&a, &b]).await;
    a.gossip.force_leave("b", false).await.expect("b is known");
    // b renews its identity; a ends up seeing it alive again, not left.
    tokio::time::sleep(Duration::from_millis(500)).await;
    wait_until("a sees b alive again", || a.status_of("b") == Some(MemberStatus::Alive)).await;
    assert_eq!(b.status_of("b"), Some(MemberStatus::Alive));
}

#[tokio::test]
async fn failed_members_are_reaped_after_the_reconnect_timeout() {
    let a = Setup { reconnect_timeout_ms: 600, ..Setup::new("a") }.start().await;
    let b = Setup::new("b").start().await;
    b.join(&a).await;
    wait_all_alive(&[&a, &b]).await;
    let mut a_events = a.gossip.subscribe();
    b.gossip.shutdown().await;
    next_event(&mut a_events, "b", |event| matches!(event, MemberEvent::Failed(_))).await;
    assert_eq!(a.status_of("b"), Some(MemberStatus::Failed));
    next_event(&mut a_events, "b", |event| matches!(event, MemberEvent::Reap(_))).await;
    assert_eq!(a.status_of("b"), None);
    assert_eq!(a.gossip.members().len(), 1);
}
