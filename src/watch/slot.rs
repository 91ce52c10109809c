//! One watched topic's slot, shared by all its subscribers, and the subscription handle a
//! blocking query parks on.

use std::any::Any;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::watch::{Topic, Watches};

/// Most memoized results a slot keeps (one per distinct query shape on the topic, such as
/// `?raw` beside plain JSON).
const MEMO_ENTRIES_MAX: usize = 4;

/// The shared state of one topic.
pub struct Slot {
    /// The Raft index of the last change that touched the topic (0 until one does).
    version: watch::Sender<u64>,
    memo: Mutex<Vec<Memo>>,
}

struct Memo {
    /// The slot version the result was computed at (or after).
    stamp: u64,
    key: String,
    value: Arc<dyn Any + Send + Sync>,
}

impl Slot {
    pub(super) fn new() -> Slot {
        Slot { version: watch::Sender::new(0), memo: Mutex::new(Vec::new()) }
    }

    pub(super) fn wake(&self, index: u64) {
        self.version.send_replace(index);
    }

    /// The result memoized for query `key` at slot version `stamp`, else `compute()`'s, which
    /// is then memoized. Callers read `stamp` *before* reading the catalog, so a memoized
    /// result is never older than its stamp.
    fn memo<T: Clone + Send + Sync + 'static>(&self, stamp: u64, key: &str, compute: impl FnOnce() -> T) -> T {
        {
            let memo = self.memo.lock().expect("memo lock poisoned");
            if let Some(hit) = memo.iter().find(|m| m.stamp == stamp && m.key == key) {
                if let Some(value) = hit.value.downcast_ref::<T>() {
                    return value.clone();
                }
            }
        }
        let value = compute();
        let mut memo = self.memo.lock().expect("memo lock poisoned");
        memo.retain(|m| m.key != key && m.stamp == stamp);
        if memo.len() >= MEMO_ENTRIES_MAX {
            memo.remove(0);
        }
        memo.push(Memo { stamp, key: key.to_string(), value: Arc::new(value.clone()) });
        value
    }
}

/// A blocking query's hold on one topic. Dropping it releases the slot when it was the last.
pub struct Subscription<'a> {
    watches: &'a Watches,
    topic: Topic,
    slot: Option<Arc<Slot>>,
    version: watch::Receiver<u64>,
}

impl<'a> Subscription<'a> {
    pub(super) fn new(watches: &'a Watches, topic: Topic, slot: Arc<Slot>) -> Subscription<'a> {
        let version = slot.version.subscribe();
        Subscription { watches, topic, slot: Some(slot), version }
    }

    /// Marks the topic's current version as seen and returns it; [`Self::changed`] then waits
    /// for the next change.
    pub fn mark_seen(&mut self) -> u64 {
        *self.version.borrow_and_update()
    }

    /// Waits until a change touches the topic after the last [`Self::mark_seen`].
    pub async fn changed(&mut self) {
        // The sender lives in the slot we hold, so the channel cannot close under us.
        let _ = self.version.changed().await;
    }

    /// Coalesces identical queries: see [`Slot::memo`].
    pub fn memo<T: Clone + Send + Sync + 'static>(&self, stamp: u64, key: &str, compute: impl FnOnce() -> T) -> T {
        self.slot.as_ref().expect("slot held until drop").memo(stamp, key, compute)
    }
}

impl Drop for Subscription<'_> {
    fn drop(&mut self) {
        drop(self.slot.take());
        self.watches.release(&self.topic);
    }
}
