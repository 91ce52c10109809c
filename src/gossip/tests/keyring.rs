//! Key rotation across a pool of real gossip agents: install, use, remove with every member
//! alive throughout; the old key locked out afterwards; plaintext keyring requests refused.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;
use crate::gossip::envelope::{Kind, Sealer};
use crate::gossip::keyring::Cipher;
use crate::gossip::keyring_ops::{GossipKey, KeyringOp, NodeOutcome};

fn key(base64: &str) -> GossipKey {
    GossipKey::from_base64(base64).expect("a valid key")
}

/// Every member of `agents` is alive in every member's view.
fn all_alive(agents: &[&Agent]) -> bool {
    agents.iter().all(|observer| agents.iter().all(|observed| observer.status_of(observed.name) == Some(MemberStatus::Alive)))
}

/// Runs `op` from `from` and checks that every one of `expected` members applied it.
async fn rotate(from: &Agent, op: KeyringOp, expected: usize) -> crate::gossip::keyring_ops::KeyringSummary {
    let answer = from.gossip.keyring_cluster(&op).await;
    assert_eq!(answer.answers.len(), expected, "{answer:?}");
    assert!(answer.answers.iter().all(|node| matches!(node.outcome, NodeOutcome::Applied(_))), "{answer:?}");
    let summary = answer.summary();
    assert_eq!(summary.error, None, "{summary:?}");
    summary
}

#[tokio::test]
async fn a_pool_rotates_its_key_without_losing_a_member() {
    let (old, new) = (Keyring::generate(), Keyring::generate());
    let a = Setup::new("a").key(&old).start().await;
    let b = Setup::new("b").key(&old).start().await;
    let c = Setup::new("c").key(&old).start().await;
    b.join(&a).await;
    c.join(&a).await;
    wait_all_alive(&[&a, &b, &c]).await;

    tracing::info!("install the new key from a, make it primary from b, remove the old one from c");
    let summary = rotate(&a, KeyringOp::Install(key(&new)), 3).await;
    assert_eq!(summary.keys, BTreeMap::from([(old.clone(), 3), (new.clone(), 3)]));
    assert_eq!(summary.primary_keys, BTreeMap::from([(old.clone(), 3)]));
    let summary = rotate(&b, KeyringOp::Use(key(&new)), 3).await;
    assert_eq!(summary.primary_keys, BTreeMap::from([(new.clone(), 3)]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(all_alive(&[&a, &b, &c]), "everyone stays alive while the primary changes");
    let summary = rotate(&c, KeyringOp::Remove(key(&old)), 3).await;
    assert_eq!(summary.keys, BTreeMap::from([(new.clone(), 3)]));
    let summary = rotate(&a, KeyringOp::List, 3).await;
    assert_eq!((summary.num_nodes, summary.num_resp, summary.num_err), (3, 3, 0));

    tracing::info!("members probe each other on the new key only; an agent with the old key is locked out");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(all_alive(&[&a, &b, &c]), "everyone stays alive on the new key");
    let stale = Setup::new("stale").key(&old).start().await;
    let refused = stale.gossip.join(&[a.addr.to_string()]).await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(a.status_of("stale"), None);
}

#[tokio::test]
async fn member_errors_are_reported_by_node() {
    let (old, other) = (Keyring::generate(), Keyring::generate());
    let (a, b) = (Setup::new("a").key(&old).start().await, Setup::new("b").key(&old).start().await);
    b.join(&a).await;
    wait_all_alive(&[&a, &b]).await;
    let answer = a.gossip.keyring_cluster(&KeyringOp::Use(key(&other))).await;
    let summary = answer.summary();
    assert_eq!(summary.error.as_deref(), Some("2/2 nodes reported failure"));
    assert_eq!(summary.messages.get("b").map(String::as_str), Some("Requested key is not in the keyring"));
    let answer = a.gossip.keyring_cluster(&KeyringOp::Remove(key(&old))).await;
    assert_eq!(answer.summary().messages.get("a").map(String::as_str), Some("Removing the primary key is not allowed"));
}

#[tokio::test]
async fn a_pool_without_encryption_refuses_keyring_operations() {
    let a = Setup::new("a").start().await;
    let answer = a.gossip.keyring_cluster(&KeyringOp::List).await;
    let summary = answer.summary();
    assert_eq!(summary.error.as_deref(), Some("1/1 nodes reported failure"));
    assert_eq!(summary.messages.get("a").map(String::as_str), Some("Keyring is empty (encryption not enabled)"));
}

/// A plaintext keyring request on `to`'s TCP port: answered with nothing, counted, no change.
async fn send_plaintext_keyring_request(to: &Agent, new: &str) {
    let body = [&[1u8, 32][..], &Cipher::from_base64(new).expect("a key").key_bytes().to_vec()].concat();
    let envelope = Sealer::new(Vec::new(), false, false).seal(Kind::KeyringRequest, &body);
    let mut stream = TcpStream::connect(to.addr).await.expect("connect");
    stream.write_all(&(envelope.len() as u32).to_be_bytes()).await.expect("write");
    stream.write_all(&envelope).await.expect("write");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut answer)).await.expect("closed in time");
    assert!(read.is_ok() && answer.is_empty(), "no answer to a plaintext keyring request: {answer:?}");
}

#[tokio::test]
async fn a_plaintext_keyring_request_is_refused_even_by_a_lenient_agent() {
    let (old, new) = (Keyring::generate(), Keyring::generate());
    let strict = Setup::new("strict").key(&old).start().await;
    let lenient = Setup { verify_incoming: false, verify_outgoing: false, ..Setup::new("lenient").key(&old) }.start().await;
    for agent in [&strict, &lenient] {
        send_plaintext_keyring_request(agent, &new).await;
        wait_until("the plaintext request is counted", || agent.gossip.stats().dropped_plaintext >= 1).await;
        let listed = agent.gossip.keyring_local(&KeyringOp::List).await.expect("listed");
        assert_eq!(listed.keys, [old.clone()], "{} did not install the key", agent.name);
    }
}
