//! The wire: encryption keys, plaintext, hostile UDP packets and TCP messages, join errors.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::*;
use crate::gossip::envelope::{GOSSIP_PACKET_BYTES_MAX, Kind, Sealer};
use crate::gossip::keyring::Cipher;
use crate::gossip::push_pull::{PUSH_PULL_BYTES_MAX, TCP_CONNS_MAX};
use crate::gossip::{GossipError, GossipStats, MemberStatus};

/// Sends `packet` from a fresh UDP socket; returns the socket to read answers from.
async fn send_raw(to: SocketAddr, packet: &[u8]) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    socket.send_to(packet, to).await.expect("send");
    socket
}

/// Waits until `agent`'s stats satisfy `condition`.
async fn wait_stats(agent: &Agent, what: &str, condition: impl Fn(&GossipStats) -> bool) {
    wait_until(what, || condition(&agent.gossip.stats())).await;
}

/// Nothing arrives on `socket` for a while.
async fn assert_silent(socket: &UdpSocket) {
    let mut buffer = [0u8; 2048];
    let answer = tokio::time::timeout(Duration::from_millis(300), socket.recv_from(&mut buffer)).await;
    assert!(answer.is_err(), "expected no answer, got {answer:?}");
}

#[tokio::test]
async fn a_member_with_another_key_never_appears() {
    let key = Keyring::generate();
    let a = Setup::new("a").key(&key).start().await;
    let b = Setup::new("b").key(&key).start().await;
    b.join(&a).await;
    wait_all_alive(&[&a, &b]).await;

    tracing::info!("phase: d with another key tries to join a");
    let d = Setup::new("d").key(&Keyring::generate()).start().await;
    let error = d.gossip.join(&[a.addr.to_string()]).await.expect_err("another key cannot join");
    assert!(error.to_string().contains("Failed to join"), "{error}");
    wait_stats(&a, "a counts the undecryptable push/pull", |stats| stats.dropped_decrypt >= 1).await;

    tracing::info!("phase: a foca packet sealed with d's key is dropped too");
    let other = Sealer::new(vec![Cipher::from_base64(&Keyring::generate()).expect("key")], true, true);
    let before = a.gossip.stats().dropped_decrypt;
    let probe = send_raw(a.addr, &other.seal(Kind::Ping, &7u64.to_be_bytes())).await;
    wait_stats(&a, "a counts the undecryptable packet", |stats| stats.dropped_decrypt > before).await;
    assert_silent(&probe).await;

    tokio::time::sleep(Duration::from_millis(300)).await;
    for agent in [&a, &b] {
        assert_eq!(agent.status_of("d"), None, "{} must not know d", agent.name);
        assert_eq!(agent.gossip.members().len(), 2);
    }
    assert_eq!(d.gossip.members().len(), 1);
}

#[tokio::test]
async fn plaintext_into_an_encrypted_pool_is_dropped_and_counted() {
    let key = Keyring::generate();
    let a = Setup::new("a").key(&key).start().await;

    tracing::info!("phase: a plaintext agent cannot join");
    let e = Setup::new("e").start().await;
    let error = e.gossip.join(&[a.addr.to_string()]).await.expect_err("plaintext cannot join");
    assert!(error.to_string().contains("Failed to join"), "{error}");
    wait_stats(&a, "a counts the plaintext push/pull", |stats| stats.dropped_plaintext >= 1).await;

    tracing::info!("phase: a plaintext ping gets no pong");
    let before = a.gossip.stats().dropped_plaintext;
    let plain = Sealer::new(Vec::new(), true, true);
    let probe = send_raw(a.addr, &plain.seal(Kind::Ping, &7u64.to_be_bytes())).await;
    wait_stats(&a, "a counts the plaintext ping", |stats| stats.dropped_plaintext > before).await;
    assert_silent(&probe).await;
    assert_eq!(a.status_of("e"), None);

    tracing::info!("phase: the same ping sealed with the key is answered");
    let sealed = Sealer::new(vec![Cipher::from_base64(&key).expect("key")], true, true);
    let probe = send_raw(a.addr, &sealed.seal(Kind::Ping, &7u64.to_be_bytes())).await;
    let mut buffer = [0u8; 2048];
    let (bytes, _) = tokio::time::timeout(WAIT, probe.recv_from(&mut buffer)).await.expect("a pong").expect("recv");
    assert_eq!(sealed.open(&buffer[..bytes]), Ok((Kind::Pong, 7u64.to_be_bytes().to_vec())));
}

#[tokio::test]
async fn lenient_incoming_accepts_plaintext_members() {
    let key = Keyring::generate();
    let a = Setup { verify_incoming: false, verify_outgoing: false, ..Setup::new("a").key(&key) }.start().await;
    let e = Setup::new("e").start().await;
    e.join(&a).await;
    wait_all_alive(&[&a, &e]).await;
}

#[tokio::test]
async fn hostile_packets_and_messages_are_dropped_counted_and_harmless() {
    let a = Setup::new("a").start().await;
    let b = Setup::new("b").start().await;
    b.join(&a).await;
    wait_all_alive(&[&a, &b]).await;
    let plain = Sealer::new(Vec::new(), true, true);
    let base = a.gossip.stats();

    tracing::info!("phase: garbage, truncated and unknown-kind packets are malformed");
    send_raw(a.addr, b"\xde\xad\xbe\xef garbage").await;
    send_raw(a.addr, &[1]).await;
    send_raw(a.addr, &[]).await;
    send_raw(a.addr, &[1, 200, 1, 2, 3]).await;
    send_raw(a.addr, &plain.seal(Kind::Foca, b"\xff\xff\xff\xff\xff not foca")).await;
    send_raw(a.addr, &plain.seal(Kind::Pong, b"short")).await;
    send_raw(a.addr, &plain.seal(Kind::MetaReply, b"\xff\xff\xff")).await;
    send_raw(a.addr, &plain.seal(Kind::PushPullRequest, b"")).await;
    wait_stats(&a, "a counts 8 malformed packets", |stats| stats.dropped_malformed >= base.dropped_malformed + 8).await;

    tracing::info!("phase: an oversized packet");
    send_raw(a.addr, &vec![1u8; GOSSIP_PACKET_BYTES_MAX + 100]).await;
    wait_stats(&a, "a counts the oversized packet", |stats| stats.dropped_oversized == base.dropped_oversized + 1)
        .await;

    tracing::info!("phase: an encrypted packet into a plaintext pool");
    let sealed = Sealer::new(vec![Cipher::from_base64(&Keyring::generate()).expect("key")], true, true);
    send_raw(a.addr, &sealed.seal(Kind::Foca, b"x")).await;
    wait_stats(&a, "a counts the undecryptable packet", |stats| stats.dropped_decrypt == base.dropped_decrypt + 1)
        .await;

    tracing::info!("phase: garbage and oversized push/pull messages");
    let before = a.gossip.stats().dropped_malformed;
    let mut stream = TcpStream::connect(a.addr).await.expect("connect");
    stream.write_all(&8u32.to_be_bytes()).await.expect("write");
    stream.write_all(b"\x01\x06garbag").await.expect("write");
    wait_stats(&a, "a counts the garbage push/pull", |stats| stats.dropped_malformed == before + 1).await;
    let mut stream = TcpStream::connect(a.addr).await.expect("connect");
    stream.write_all(&((PUSH_PULL_BYTES_MAX + 1) as u32).to_be_bytes()).await.expect("write");
    wait_stats(&a, "a counts the oversized push/pull", |stats| stats.dropped_oversized == base.dropped_oversized + 2)
        .await;
    let mut stream = TcpStream::connect(a.addr).await.expect("connect");
    stream.write_all(&[0, 0]).await.expect("write");
    drop(stream);
    wait_stats(&a, "a counts the truncated push/pull", |stats| stats.push_pulls_failed >= 1).await;

    tracing::info!("phase: the pool still works");
    a.gossip.set_tags(tags("a", "after")).expect("tags");
    wait_until("b sees a's new tags", || b.tags_of("a") == Some(tags("a", "after"))).await;
    let c = Setup::new("c").start().await;
    c.join(&a).await;
    wait_all_alive(&[&a, &b, &c]).await;
    assert_eq!(a.gossip.stats().dropped_plaintext, 0);
}

#[tokio::test]
async fn idle_push_pull_connections_are_capped() {
    let a = Setup::new("a").start().await;
    let mut idle = Vec::new();
    for _ in 0..TCP_CONNS_MAX {
        idle.push(TcpStream::connect(a.addr).await.expect("connect"));
    }
    wait_stats(&a, "nothing refused yet", |stats| stats.tcp_conns_refused == 0).await;
    tracing::info!("phase: one more connection is closed at once");
    let _one_too_many = TcpStream::connect(a.addr).await.expect("connect");
    wait_stats(&a, "a refuses the connection over the cap", |stats| stats.tcp_conns_refused == 1).await;
    tracing::info!("phase: once the idle ones go, joins work again");
    drop(idle);
    let b = Setup::new("b").start().await;
    wait_until("a serves again", || a.gossip.stats().push_pulls_failed >= TCP_CONNS_MAX as u64).await;
    b.join(&a).await;
    wait_all_alive(&[&a, &b]).await;
}

#[tokio::test]
async fn join_errors_are_clear_and_quick() {
    let a = Setup::new("a").start().await;
    let closed_port = {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let target = format!("127.0.0.1:{closed_port}");
    let started = Instant::now();
    let error = a.gossip.join(std::slice::from_ref(&target)).await.expect_err("nothing listens");
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    assert!(matches!(error, GossipError::JoinFailed { .. }));
    let expected =
        format!("1 error occurred:\n\t* Failed to join {target}: dial tcp {target}: connect: connection refused\n");
    assert_eq!(error.to_string(), expected);

    tracing::info!("phase: bad addresses say why; one good address is enough");
    let b = Setup::new("b").start().await;
    let addresses = vec!["host:0".to_owned(), target, b.addr.to_string()];
    assert_eq!(a.gossip.join(&addresses).await.expect("b answers"), 1);
    let error = a.gossip.join(&["host:0".to_owned(), "[::1".to_owned()]).await.expect_err("both bad");
    let message = error.to_string();
    assert!(message.starts_with("2 errors occurred:\n"), "{message}");
    assert!(message.contains("invalid port") && message.contains("missing ']'"), "{message}");
    assert!(a.gossip.join(&[]).await.is_err());
}

#[tokio::test]
async fn a_bare_host_joins_on_the_default_port() {
    let a = Setup::new("a").start().await;
    let b = Setup { default_port: a.addr.port(), ..Setup::new("b") }.start().await;
    assert_eq!(b.gossip.join(&["127.0.0.1".to_owned()]).await.expect("joins a"), 1);
    wait_until("a sees b", || a.status_of("b") == Some(MemberStatus::Alive)).await;
    let c = Setup { default_port: a.addr.port(), ..Setup::new("c") }.start().await;
    assert_eq!(c.gossip.join(&["localhost".to_owned()]).await.expect("joins a by name"), 1);
    wait_until("a sees c", || a.status_of("c") == Some(MemberStatus::Alive)).await;
}
