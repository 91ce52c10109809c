//! Fuzzes what the LAN gossip port takes from anyone who can reach it: UDP packets through
//! the gossip task's whole receive path (`gossip::envelope::Sealer::open`, then foca's decoder
//! with our identity and broadcast codec, RTT pongs with their coordinate, tag replies), TCP
//! push/pull messages (decoded, validated, merged), and the user events carried inside
//! (`agent::events::decode`, the filters compiled and matched). The attack: a host on the
//! LAN, without the pool's key, sends packets hoping to crash the gossip task (which takes
//! down failure detection for the agent), to grow its memory, or to get a forged member
//! accepted through the encryption.
//!
//! Each packet is fed as it is, then sealed with the pool's key (so the fuzzed payload also
//! reaches the decoders behind the decryption), then sealed with another pool's key, which
//! must always be refused as undecryptable. Keyring messages (which only a key holder can
//! send) are fuzzed behind the decryption, as a member reads them.

use crate::agent::events::{EventFilters, EventId, FiredEvent, accepts, compile_filters, decode, encode};
use crate::fuzz::{FUZZ_ALLOC_BYTES_MAX_DEFAULT, Target, Verdict, fuzz};
use crate::gossip::fuzz_seam::{FUZZ_KEY, FuzzAgent, PACKET_BYTES_MAX, Received, WRONG_KEY, datagram_seeds, keyring_request, keyring_response, keyring_seeds, push_pull_seeds, seal_with};

/// Largest packet generated: past the 1,430-byte limit, so that the limit is tried too.
const PACKET_INPUT_BYTES_MAX: usize = 1_600;
/// Largest push/pull message generated (the limit is 16 MiB; the decoders see the same
/// structures at any size).
const PUSH_PULL_INPUT_BYTES_MAX: usize = 64 * 1024;
/// Largest push/pull message also tried sealed with another pool's key.
const SEALED_INPUT_BYTES_MAX: usize = 4 * 1024;
/// Largest user event payload generated: gossip carries at most `USER_EVENT_BYTES_MAX`.
const EVENT_INPUT_BYTES_MAX: usize = crate::gossip::USER_EVENT_BYTES_MAX;

fn verdict(received: Received) -> Verdict {
    if received == Received::Accepted { Verdict::Accepted } else { Verdict::Refused }
}

/// UDP packets into a running gossip task.
#[test]
fn packets() {
    let target = Target {
        name: "gossip::packets",
        seeds: datagram_seeds(),
        dictionary: Vec::new(),
        input_bytes_max: PACKET_INPUT_BYTES_MAX,
        alloc_bytes_max: FUZZ_ALLOC_BYTES_MAX_DEFAULT,
    };
    fuzz(target, || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        let mut agent = {
            let _inside = runtime.enter();
            FuzzAgent::keyed()
        };
        move |input: &[u8]| {
            let _inside = runtime.enter();
            let received = agent.datagram(input);
            if let Some(sealed) = seal_with(FUZZ_KEY, input) {
                agent.datagram(&sealed);
            }
            if let Some(foreign) = seal_with(WRONG_KEY, input) {
                let expected = if foreign.len() > PACKET_BYTES_MAX { Received::Refused } else { Received::Undecryptable };
                assert_eq!(agent.datagram(&foreign), expected, "a packet sealed with another pool's key was not refused as undecryptable");
            }
            verdict(received)
        }
    });
}

/// TCP push/pull messages (after their length prefix), read and merged as a join's, by an
/// agent of an unencrypted pool (the keyed path is the same decoding behind AES-GCM).
#[test]
fn push_pull() {
    let target = Target {
        name: "gossip::push_pull",
        seeds: push_pull_seeds(),
        dictionary: Vec::new(),
        input_bytes_max: PUSH_PULL_INPUT_BYTES_MAX,
        alloc_bytes_max: FUZZ_ALLOC_BYTES_MAX_DEFAULT,
    };
    fuzz(target, || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        let mut agent = {
            let _inside = runtime.enter();
            FuzzAgent::unkeyed()
        };
        move |input: &[u8]| {
            let _inside = runtime.enter();
            let received = agent.push_pull(input);
            // AES-GCM is slow in a debug build; the key check does not depend on the size.
            if let Some(foreign) = (input.len() <= SEALED_INPUT_BYTES_MAX).then(|| seal_with(WRONG_KEY, input)).flatten() {
                assert_eq!(agent.push_pull(&foreign), Received::Refused, "a message sealed with another pool's key was merged");
            }
            verdict(received)
        }
    });
}

fn event(name: &str, payload: &[u8], filters: EventFilters) -> Vec<u8> {
    encode(&FiredEvent { id: EventId([7; 16]), name: name.into(), payload: payload.to_vec(), filters, version: 1, ltime: 0 })
}

/// User event payloads, as every agent decodes and filters the events gossip delivers.
#[test]
fn user_events() {
    let filters = |node: &str, service: &str, tag: &str| EventFilters { node: node.into(), service: service.into(), tag: tag.into() };
    let seeds = vec![
        event("deploy", b"v2", EventFilters::default()),
        event("restart", b"{\"at\":\"now\"}", filters("^web-[0-9]+$", "", "")),
        event("reload", b"", filters("", "web.*", "(prod|canary)")),
    ];
    let dictionary = ["(", ")", "*", "+", "{1000}", "\\w", "[^a]", "(?i)", "|", "^", "$", ".*"].iter().map(|word| word.as_bytes().to_vec()).collect();
    let target = Target { name: "gossip::user_events", seeds, dictionary, input_bytes_max: EVENT_INPUT_BYTES_MAX, alloc_bytes_max: FUZZ_ALLOC_BYTES_MAX_DEFAULT };
    fuzz(target, || {
        let tags = vec!["prod".to_string(), "v1".to_string()];
        move |input: &[u8]| {
            let Ok(event) = decode(input, 9) else { return Verdict::Refused };
            assert_eq!(decode(&encode(&event), 9).ok().as_ref(), Some(&event), "a decoded event does not survive a round trip");
            let Ok(compiled) = compile_filters(&event.filters) else { return Verdict::Refused };
            let _ = accepts(&compiled, "web-1", [("web-1", tags.as_slice()), ("db", &[][..])]);
            Verdict::Accepted
        }
    });
}

/// Largest keyring message generated (the limit is 4 KiB).
const KEYRING_INPUT_BYTES_MAX: usize = 4096;

/// Keyring request and answer bodies (`gossip::keyring_wire`), which arrive sealed with a ring
/// key: a request as a member decodes and applies it to its ring, an answer as the asking
/// agent decodes it. The attack is a member of the pool (a holder of the key) crashing or
/// corrupting the others' rings; their bounds must hold whatever it sends.
#[test]
fn keyring_messages() {
    let target = Target {
        name: "gossip::keyring_messages",
        seeds: keyring_seeds(),
        dictionary: Vec::new(),
        input_bytes_max: KEYRING_INPUT_BYTES_MAX,
        alloc_bytes_max: FUZZ_ALLOC_BYTES_MAX_DEFAULT,
    };
    fuzz(target, || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        move |input: &[u8]| {
            let request = keyring_request(&runtime, input);
            let response = keyring_response(input);
            if request || response { Verdict::Accepted } else { Verdict::Refused }
        }
    });
}
