//! Reads started ahead of need on a remote store. A command that knows what it will read next
//! (restore's pack spans, `check --read-data`'s packs, `copy`'s and prune's spans) hints it with
//! [`super::Backend::will_read`]; on a remote store the hint starts the GET in the background, and
//! the matching read takes its bytes (or waits for it) instead of sending its own request. So
//! several requests are in flight while the caller's threads decode, not one per waiting thread.
//!
//! Bounded twice: every GET of the backend, hinted or not, holds one of `connections` permits
//! while it runs, and hinted bytes (in flight, or arrived and not yet taken) stay under a byte
//! budget. A hint that does not fit waits in a short queue, in order, and starts once reads taken
//! make room. A prefetch never taken is dropped once it is finished and many newer hints came
//! after it. This module reports no errors: a failed prefetch is forgotten, and the read sends its
//! own request, whose error (after its retries) is the one the caller sees.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use opendal::Operator;
use tokio::runtime::Runtime;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::fault::{self, Op};

/// What a hint names: an object's path and a byte range of it (`None`: the whole object).
pub(super) type Key = (String, Option<(u64, u64)>);

/// A finished prefetch that newer hints outnumber by this much is taken to be unused.
const STALE_AFTER_HINTS: u64 = 64;

/// Hints that wait for room in the budget, at most (older ones are forgotten).
const WAITING_HINTS: usize = 32;

/// Hinted reads of one backend (shared by its clones).
#[derive(Debug)]
pub(super) struct Prefetcher {
    /// One permit per GET in flight, hinted or not (`connections`).
    permits: Arc<Semaphore>,
    /// Bytes that hinted reads may hold, in flight or arrived and not yet taken.
    budget: u64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    pending: HashMap<Key, Pending>,
    /// Hints that did not fit in the budget yet, oldest first, with their sizes.
    waiting: VecDeque<(Key, u64)>,
    /// Bytes the pending reads hold (their hinted sizes).
    held: u64,
    /// Reads started so far: a pending read's age.
    started: u64,
}

#[derive(Debug)]
struct Pending {
    seq: u64,
    size: u64,
    task: JoinHandle<Option<bytes::Bytes>>,
}

impl Prefetcher {
    pub(super) fn new(connections: usize, budget: u64) -> Self {
        Self { permits: Arc::new(Semaphore::new(connections.max(1))), budget, state: Mutex::default() }
    }

    /// The permits every GET of the backend holds while it runs.
    pub(super) fn permits(&self) -> &Arc<Semaphore> {
        &self.permits
    }

    /// Starts reading `key` (`size` bytes) in the background, or queues the hint until the budget
    /// has room; nothing when it is already pending or queued, or larger than the whole budget.
    pub(super) fn hint(&self, runtime: &Runtime, op: &Operator, key: Key, size: u64) {
        let mut state = self.lock();
        if size > self.budget || state.pending.contains_key(&key) || state.waiting.iter().any(|(k, _)| *k == key) {
            return;
        }
        state.waiting.push_back((key, size));
        if state.waiting.len() > WAITING_HINTS {
            state.waiting.pop_front();
        }
        self.start_waiting(&mut state, runtime, op);
    }

    /// The pending read of `key`, removed from the pending ones (the caller waits for it), or
    /// `None` when there is none. Either way the hint is done with, and the room it held goes to
    /// the hints that wait.
    pub(super) fn take(&self, runtime: &Runtime, op: &Operator, key: &Key) -> Option<JoinHandle<Option<bytes::Bytes>>> {
        let mut state = self.lock();
        state.waiting.retain(|(k, _)| k != key);
        let pending = state.pending.remove(key)?;
        state.held -= pending.size;
        self.start_waiting(&mut state, runtime, op);
        Some(pending.task)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the waiting hints, in order, while the budget has room for the next one.
    fn start_waiting(&self, state: &mut State, runtime: &Runtime, op: &Operator) {
        while let Some((_, size)) = state.waiting.front() {
            let size = *size;
            if state.held + size > self.budget {
                state.drop_stale();
                if state.held + size > self.budget {
                    return;
                }
            }
            let Some((key, size)) = state.waiting.pop_front() else { return };
            let permits = self.permits.clone();
            let op = op.clone();
            let (path, range) = key.clone();
            let task = runtime.spawn(async move {
                let _permit = permits.acquire_owned().await.ok()?;
                // Counted, traced and failed (by fault injection) like any read, once it is sent.
                fault::before(Op::Read, &path).ok()?;
                let read = get_whole(&op, &path, range, size).await;
                fault::read_done(&path);
                read.ok()
            });
            state.started += 1;
            state.held += size;
            let seq = state.started;
            state.pending.insert(key, Pending { seq, size, task });
        }
    }
}

/// One GET of `path` (`range`: offset and length; `None`: all of it), copied into one buffer of
/// `capacity` bytes as it arrives: the caller slices blobs out of one piece, and never are the
/// response's many small buffers and a copy of them held at once.
pub(super) async fn get_whole(
    op: &Operator,
    path: &str,
    range: Option<(u64, u64)>,
    capacity: u64,
) -> opendal::Result<bytes::Bytes> {
    let reader = op.reader(path).await?;
    // A hint is not trusted with more than a pack's size up front; the buffer grows if needed.
    let mut buffer = Vec::with_capacity(capacity.min(64 << 20) as usize);
    match range {
        Some((offset, len)) => reader.read_into(&mut buffer, offset..offset + len).await?,
        None => reader.read_into(&mut buffer, ..).await?,
    };
    Ok(buffer.into())
}

impl State {
    /// Drops finished reads that nobody took while many newer ones started.
    fn drop_stale(&mut self) {
        let now = self.started;
        let held = &mut self.held;
        self.pending.retain(|_, p| {
            let stale = p.seq + STALE_AFTER_HINTS < now && p.task.is_finished();
            if stale {
                *held -= p.size;
            }
            !stale
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> (Runtime, Operator) {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
        let op = Operator::new(opendal::services::Memory::default()).expect("memory operator");
        (runtime, op)
    }

    fn key(name: &str) -> Key {
        (name.to_owned(), Some((0, 4)))
    }

    #[test]
    fn hints_beyond_the_budget_wait_and_start_as_reads_are_taken() {
        let (runtime, op) = memory();
        for name in ["a", "b", "c"] {
            runtime.block_on(op.write(name, b"data".to_vec())).expect("write");
        }
        let prefetch = Prefetcher::new(4, 8);
        for name in ["a", "b", "c"] {
            prefetch.hint(&runtime, &op, key(name), 4);
        }
        {
            let state = prefetch.lock();
            assert_eq!((state.pending.len(), state.waiting.len(), state.held), (2, 1, 8));
        }
        let task = prefetch.take(&runtime, &op, &key("a")).expect("a was started");
        let bytes = runtime.block_on(task).expect("joined").expect("read");
        assert_eq!(bytes.to_vec(), b"data");
        // Taking "a" made room for "c".
        let state = prefetch.lock();
        assert_eq!((state.pending.len(), state.waiting.len(), state.held), (2, 0, 8));
        assert!(state.pending.contains_key(&key("c")));
    }

    #[test]
    fn a_read_that_came_before_its_hint_started_takes_nothing_and_cancels_the_hint() {
        let (runtime, op) = memory();
        let prefetch = Prefetcher::new(4, 4);
        prefetch.hint(&runtime, &op, key("a"), 4);
        prefetch.hint(&runtime, &op, key("b"), 4);
        assert!(prefetch.take(&runtime, &op, &key("b")).is_none());
        let state = prefetch.lock();
        assert!(state.waiting.is_empty() && state.pending.contains_key(&key("a")));
        // Too large for the whole budget: never started, never queued.
        drop(state);
        prefetch.hint(&runtime, &op, key("huge"), 5);
        assert!(prefetch.lock().waiting.is_empty());
    }
}
