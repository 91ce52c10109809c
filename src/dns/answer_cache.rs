//! Encoded answers shared between identical requests: a service question is looked up, built
//! and encoded once per catalog change, not once per query (issue 12: "answers built once per
//! change and shared").
//!
//! The key is the request itself with its ID left out (the question, the header flags and the
//! EDNS record, byte for byte) and the transport, so a hit is exactly the response that
//! request would get: only the ID is written in. Each key keeps up to
//! `DNS_ANSWER_CACHE_VARIANTS_MAX` responses, each built with its own shuffle, and hits take
//! them in turn, so answers still rotate the instances as Consul's shuffling does.
//!
//! Validity is a generation the [`super::DnsCatalog`] gives (a server's applied Raft index:
//! any committed change may change an answer; a client agent's service cache generation; with
//! ACLs on, also the DNS token and the current second); a new generation empties the cache. A
//! catalog that gives none is never cached. Memory is bounded by
//! `DNS_ANSWER_CACHE_BYTES_MAX`: past it the cache empties and fills again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::transport::Transport;

/// Differently shuffled responses kept per request.
pub(crate) const DNS_ANSWER_CACHE_VARIANTS_MAX: usize = 8;
/// Bytes of responses the cache holds at most (keys included).
const DNS_ANSWER_CACHE_BYTES_MAX: usize = 16 << 20;
/// Longest request that is cached, in bytes: larger ones (options, padding) are answered anew.
const DNS_ANSWER_CACHE_REQUEST_BYTES_MAX: usize = 512;
/// Bytes of the DNS header's ID, the only part of a request the key leaves out.
const ID_BYTES: usize = 2;

#[derive(Default)]
pub(crate) struct AnswerCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    generation: u64,
    entries: HashMap<Vec<u8>, Entry>,
    bytes: usize,
}

#[derive(Default)]
struct Entry {
    variants: Vec<Arc<[u8]>>,
    next: usize,
}

/// The key of `request` over `transport`: a transport byte, then the request after its ID.
/// `None` for requests that are not cached.
fn key(transport: Transport, request: &[u8]) -> Option<Vec<u8>> {
    if request.len() <= ID_BYTES || request.len() > DNS_ANSWER_CACHE_REQUEST_BYTES_MAX {
        return None;
    }
    let mut key = Vec::with_capacity(request.len() - ID_BYTES + 1);
    key.push(transport as u8);
    key.extend_from_slice(&request[ID_BYTES..]);
    Some(key)
}

impl Inner {
    /// Empties the cache when the catalog moved on.
    fn at(&mut self, generation: u64) {
        if self.generation != generation {
            self.entries.clear();
            self.bytes = 0;
            self.generation = generation;
        }
    }
}

impl AnswerCache {
    /// The response to `request` at `generation`, with the request's ID, once every variant
    /// has been built; `None` = build one (and [`AnswerCache::put`] it).
    pub(crate) fn get(&self, generation: u64, transport: Transport, request: &[u8]) -> Option<Vec<u8>> {
        let key = key(transport, request)?;
        let variant = {
            let mut inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            inner.at(generation);
            let entry = inner.entries.get_mut(&key)?;
            if entry.variants.len() < DNS_ANSWER_CACHE_VARIANTS_MAX {
                return None;
            }
            entry.next = entry.next.wrapping_add(1);
            entry.variants[entry.next % entry.variants.len()].clone()
        };
        let mut response = variant.to_vec();
        response[..ID_BYTES].copy_from_slice(&request[..ID_BYTES]);
        Some(response)
    }

    /// Keeps `response`, the answer to `request` built at `generation`, as one more variant.
    pub(crate) fn put(&self, generation: u64, transport: Transport, request: &[u8], response: &[u8]) {
        let Some(key) = key(transport, request) else { return };
        if response.len() < ID_BYTES {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        inner.at(generation);
        let cost = response.len() + key.len();
        if inner.bytes + cost > DNS_ANSWER_CACHE_BYTES_MAX {
            inner.entries.clear();
            inner.bytes = 0;
        }
        let entry = inner.entries.entry(key).or_default();
        if entry.variants.len() < DNS_ANSWER_CACHE_VARIANTS_MAX {
            entry.variants.push(Arc::from(response));
            inner.bytes += cost;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(id: u16, name: &[u8]) -> Vec<u8> {
        let mut request = id.to_be_bytes().to_vec();
        request.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        request.extend_from_slice(name);
        request
    }

    fn response(id: u16, variant: u8) -> Vec<u8> {
        let mut response = id.to_be_bytes().to_vec();
        response.extend_from_slice(&[0x85, 0, variant]);
        response
    }

    #[test]
    fn hits_come_after_every_variant_is_built_rotate_and_carry_the_request_id() {
        let cache = AnswerCache::default();
        let first = request(1, b"web");
        for variant in 0..DNS_ANSWER_CACHE_VARIANTS_MAX as u8 {
            assert!(cache.get(7, Transport::Udp, &first).is_none(), "variant {variant} is still to be built");
            cache.put(7, Transport::Udp, &first, &response(1, variant));
        }
        let asked = request(0xBEEF, b"web");
        let seen: Vec<Vec<u8>> = (0..DNS_ANSWER_CACHE_VARIANTS_MAX).map(|_| cache.get(7, Transport::Udp, &asked).expect("a hit")).collect();
        assert!(seen.iter().all(|r| r[..2] == [0xBE, 0xEF]), "the request's ID is written in");
        let mut variants: Vec<u8> = seen.iter().map(|r| r[4]).collect();
        variants.sort();
        assert_eq!(variants, (0..DNS_ANSWER_CACHE_VARIANTS_MAX as u8).collect::<Vec<_>>(), "hits rotate through every variant");
    }

    #[test]
    fn another_question_transport_or_generation_misses() {
        let cache = AnswerCache::default();
        let asked = request(1, b"web");
        for variant in 0..DNS_ANSWER_CACHE_VARIANTS_MAX as u8 {
            cache.put(7, Transport::Udp, &asked, &response(1, variant));
        }
        assert!(cache.get(7, Transport::Udp, &asked).is_some());
        assert!(cache.get(7, Transport::Udp, &request(1, b"api")).is_none());
        assert!(cache.get(7, Transport::Tcp, &asked).is_none());
        assert!(cache.get(8, Transport::Udp, &asked).is_none(), "a new generation empties the cache");
        assert!(cache.get(7, Transport::Udp, &asked).is_none(), "and what it held is gone");
    }

    #[test]
    fn requests_too_large_are_never_cached_and_the_byte_bound_holds() {
        let cache = AnswerCache::default();
        let large = request(1, &[b'a'; DNS_ANSWER_CACHE_REQUEST_BYTES_MAX]);
        for variant in 0..DNS_ANSWER_CACHE_VARIANTS_MAX as u8 {
            cache.put(1, Transport::Udp, &large, &response(1, variant));
        }
        assert!(cache.get(1, Transport::Udp, &large).is_none());
        let big_response = vec![0u8; 60_000];
        for n in 0..400u32 {
            cache.put(1, Transport::Tcp, &request(1, &n.to_be_bytes()), &big_response);
        }
        assert!(cache.inner.lock().unwrap().bytes <= DNS_ANSWER_CACHE_BYTES_MAX);
    }
}
