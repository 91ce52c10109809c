//! User events (delivered once per agent, size limits) and RTT samples.

use std::time::Duration;

use tokio::sync::broadcast::error::TryRecvError;

use super::*;
use crate::gossip::{GossipError, USER_EVENT_BYTES_MAX, UserEvent};

#[tokio::test]
async fn a_user_event_is_delivered_exactly_once_everywhere() {
    let (a, b, c) = three().await;
    let mut receivers: Vec<_> =
        [&a, &b, &c].iter().map(|agent| (agent.name, agent.gossip.subscribe_user_events())).collect();

    tracing::info!("phase: b fires one event");
    let fired = b.gossip.fire_user_event("deploy", b"v2".to_vec()).expect("small event");
    for (name, receiver) in &mut receivers {
        let event = tokio::time::timeout(WAIT, receiver.recv())
            .await
            .unwrap_or_else(|_| panic!("{name} got no user event"))
            .expect("channel open");
        assert_eq!(event, fired, "{name}");
    }

    tracing::info!("phase: no duplicates arrive while it keeps circulating");
    tokio::time::sleep(Duration::from_millis(800)).await;
    for (name, receiver) in &mut receivers {
        assert!(matches!(receiver.try_recv(), Err(TryRecvError::Empty)), "{name} got a duplicate");
    }

    tracing::info!("phase: a second event with the same name and payload is a new event");
    let second = a.gossip.fire_user_event("deploy", b"v2".to_vec()).expect("small event");
    assert!(second.ltime > fired.ltime, "the Lamport clock moved past {}", fired.ltime);
    for (name, receiver) in &mut receivers {
        let event: UserEvent = tokio::time::timeout(WAIT, receiver.recv()).await.expect(name).expect("open");
        assert_eq!(event, second, "{name}");
    }
}

#[tokio::test]
async fn oversized_and_nameless_user_events_are_refused() {
    let a = Setup::new("a").start().await;
    let mut events = a.gossip.subscribe_user_events();
    let error = a.gossip.fire_user_event("big", vec![0; USER_EVENT_BYTES_MAX]).expect_err("too large");
    assert!(matches!(error, GossipError::UserEventTooLarge { bytes: 515, limit: 512 }));
    assert!(error.to_string().contains("515") && error.to_string().contains("512"), "{error}");
    assert!(matches!(a.gossip.fire_user_event("", Vec::new()), Err(GossipError::UserEventNameEmpty)));
    let fits = a.gossip.fire_user_event("e", vec![0; USER_EVENT_BYTES_MAX - 1]).expect("exactly the limit");
    let event = tokio::time::timeout(WAIT, events.recv()).await.expect("delivered locally").expect("open");
    assert_eq!(event, fits);
    assert!(matches!(events.try_recv(), Err(TryRecvError::Empty)));
}

#[tokio::test]
async fn rtt_samples_arrive_for_peers() {
    let (a, _b, _c) = three().await;
    let mut samples = a.gossip.rtt_samples();
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 2 {
        let sample = tokio::time::timeout(WAIT, samples.recv()).await.expect("a sample").expect("open");
        assert!(sample.node == "b" || sample.node == "c", "{sample:?}");
        assert!(sample.rtt < Duration::from_secs(1), "{sample:?}");
        seen.insert(sample.node);
    }
}

/// Each pong carries the peer's coordinate, so every agent's own coordinate leaves the origin
/// and gains confidence (its error falls below the starting maximum).
#[tokio::test]
async fn coordinates_move_with_rtt_samples() {
    let (a, b, c) = three().await;
    let start_error = crate::gossip::coordinate::CoordinateConfig::consul_default().vivaldi_error_max;
    for agent in [&a, &b, &c] {
        wait_until("the coordinate moved", || agent.gossip.coordinate().error < start_error).await;
        let coordinate = agent.gossip.coordinate();
        assert!(coordinate.is_valid(), "{coordinate:?}");
        assert_eq!(coordinate.vec.len(), 8);
    }
    let (a_coordinate, b_coordinate) = (a.gossip.coordinate(), b.gossip.coordinate());
    assert!(a_coordinate.distance_to(&b_coordinate) < Duration::from_secs(1));
    assert_eq!(a.gossip.stats().coordinates_refused, 0);
}
