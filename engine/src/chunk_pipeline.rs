//! Reads one stream in blocks and cuts it into chunks on worker threads, one per core, each of
//! which then does everything else per chunk of its block (hashing, compressing, sealing) on the
//! core that read and cut it, while its bytes are still warm in that core's cache.
//!
//! The layout is that of the ceiling benchmark (`benches/examples/ceiling.rs`): no stage has a
//! thread of its own and no block crosses cores between stages. Two steps are serial, and the
//! workers take them in turn, each for its own block: reading the next block from the source (a
//! stream is read front to back) and cutting it (a cut depends on where the previous chunk
//! ended, so block `k` is cut after block `k - 1`, with that block's unconsumed end carried in
//! front of it). While one worker reads or cuts, the others compress and seal: on two cores,
//! reading and cutting (about a fifth of a first backup's work) hide behind the rest. The cut
//! points are exactly those of one serial pass over the whole stream ([`Chunker::cut`]'s
//! streaming rule; `spec/chunking.md`), whatever the block edges and however the source's reads
//! fall.
//!
//! Results come back to the calling thread in block order. Memory is bounded: one block per
//! worker. This module never prints and knows nothing of repositories: what is done with a
//! block's chunks is the caller's closure.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::sync::mpsc::channel;
use std::sync::{Condvar, Mutex, PoisonError};

use cairn_format::chunker::Chunker;

use crate::error::{Error, ErrorKind, Result};

/// `(length, at_end)` -> what [`Chunker::cut`] returns for that many zeros.
pub(crate) type ZeroCuts = HashMap<(usize, bool), (Vec<usize>, usize)>;

/// Where the chunks of one block of a stream end.
#[derive(Debug)]
pub(crate) struct Cuts {
    pub lengths: Vec<usize>,
    /// Bytes of the block the chunks cover; the rest starts a chunk that ends in the next block.
    pub used: usize,
    /// The block is all zeros (its chunk ids can be remembered, not hashed).
    pub zeros: bool,
}

/// Cuts `data` into chunks; `at_end`: no data follows. A block of zeros (a hole of a sparse file)
/// is cut from a remembered answer for its length.
pub(crate) fn cut_block(chunker: &Chunker, zero_cuts: &mut ZeroCuts, data: &[u8], at_end: bool) -> Cuts {
    let zeros = is_all_zero(data);
    let (lengths, used) = match zeros {
        true => {
            zero_cuts.entry((data.len(), at_end)).or_insert_with(|| chunker.cut(&vec![0; data.len()], at_end)).clone()
        }
        false => chunker.cut(data, at_end),
    };
    Cuts { lengths, used, zeros }
}

/// Whether every byte of `data` is zero. Compared with a block of zeros (`memcmp`): this runs over
/// every hole of a sparse file.
pub(crate) fn is_all_zero(data: &[u8]) -> bool {
    static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
    data.chunks(ZEROS.len()).all(|c| c == &ZEROS[..c.len()])
}

/// Reads until `buf` is full or the stream ends; returns the bytes read and whether it ended.
pub(crate) fn fill(reader: &mut (dyn Read + Send), buf: &mut [u8]) -> std::io::Result<(usize, bool)> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => return Ok((filled, true)),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((filled, false))
}

/// How a stream is split up.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    /// Bytes read from the source per block.
    pub block: usize,
    /// Threads that read and cut blocks and work on their chunks.
    pub workers: usize,
}

/// The source, read by one worker at a time, each taking the next sequence number.
struct Source<'r> {
    reader: &'r mut (dyn Read + Send),
    next_seq: u64,
    /// The source ended or failed: nothing more to read.
    ended: bool,
}

/// The serial part of cutting, taken by the workers in the order they read their blocks.
struct CutState<'a> {
    /// The block whose turn it is to be cut.
    next_seq: u64,
    /// The unconsumed end of the previous block: the start of a chunk that ends later.
    tail: Vec<u8>,
    zero_cuts: &'a mut ZeroCuts,
    /// A worker failed: the others stop instead of waiting for their turn.
    stopped: bool,
}

/// What a worker reports for one block: its sequence number, the new bytes it held, and the result
/// of `work` on it.
type Done<T> = (u64, usize, Result<T>);

/// Reads `reader` to its end in blocks, cuts it with `chunker` exactly as one serial pass would,
/// and runs `work(data, cuts)` for each block on a worker thread (`data` is the block's bytes
/// from the start of its first chunk; `cuts` says where its chunks end). `done(new_bytes, result)`
/// is then called on this thread for each block in stream order. The first error (of the reader
/// or of `work`, earliest in the stream) stops the workers and is returned; so does a stop asked
/// for ([`crate::cancel`]), checked after each block is read.
pub(crate) fn chunk_in_parallel<T: Send>(
    reader: &mut (dyn Read + Send),
    chunker: &Chunker,
    zero_cuts: &mut ZeroCuts,
    layout: Layout,
    work: impl Fn(&[u8], &Cuts) -> Result<T> + Sync,
    mut done: impl FnMut(usize, T),
) -> Result<()> {
    let workers = layout.workers.max(1);
    let (done_tx, done_rx) = channel::<Done<T>>();
    let source = Mutex::new(Source { reader, next_seq: 0, ended: false });
    let cutting = (Mutex::new(CutState { next_seq: 0, tail: Vec::new(), zero_cuts, stopped: false }), Condvar::new());
    let worker = Worker { chunker, block: layout.block, source: &source, cutting: &cutting, work: &work };
    std::thread::scope(|scope| -> Result<()> {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let done_tx = done_tx.clone();
                let worker = &worker;
                scope.spawn(move || worker.run(&done_tx))
            })
            .collect();
        // Only the workers hold senders now: the loop below ends when the last of them is gone.
        drop(done_tx);
        let mut waiting = BTreeMap::new();
        let mut next = 0;
        let mut failure: Option<(u64, Error)> = None;
        for (seq, n, result) in done_rx.iter() {
            match result {
                Ok(t) => {
                    waiting.insert(seq, (n, t));
                }
                Err(e) => {
                    if failure.as_ref().is_none_or(|(first, _)| seq < *first) {
                        failure = Some((seq, e));
                    }
                }
            }
            while let Some((n, t)) = waiting.remove(&next) {
                done(n, t);
                next += 1;
            }
        }
        let panicked = handles.into_iter().map(|h| h.join()).filter(|j| j.is_err()).count();
        if let Some((_, e)) = failure {
            return Err(e);
        }
        if panicked > 0 || !waiting.is_empty() {
            return Err(Error::new(ErrorKind::Bug, "a chunking thread stopped before the end of the stream"));
        }
        Ok(())
    })
}

/// What every worker shares.
struct Worker<'w, 'r, 'z, F> {
    chunker: &'w Chunker,
    block: usize,
    source: &'w Mutex<Source<'r>>,
    cutting: &'w (Mutex<CutState<'z>>, Condvar),
    work: &'w F,
}

impl<F> Worker<'_, '_, '_, F> {
    /// Reads the next block (in turn with the other workers), cuts it when the block before it is
    /// cut, then runs `work` on it while the others read and cut theirs, and reports.
    fn run<T: Send>(&self, done: &std::sync::mpsc::Sender<Done<T>>)
    where
        F: Fn(&[u8], &Cuts) -> Result<T> + Sync,
    {
        // A worker that panics must not leave the others waiting for its turn.
        let _wake = WakeOnPanic(self.cutting);
        // Room in front of the data for the tail of the block before: a tail is always shorter
        // than a maximal chunk.
        let front = self.chunker.params().max_size as usize;
        let mut block = vec![0; front + self.block];
        loop {
            let (seq, read) = {
                let mut source = self.source.lock().unwrap_or_else(PoisonError::into_inner);
                if source.ended {
                    break;
                }
                let seq = source.next_seq;
                source.next_seq += 1;
                // A stop asked for while this block was read ends the stream here; a block read
                // before it is still cut and stored (the next run reuses it).
                let read = fill(source.reader, &mut block[front..])
                    .map_err(|e| Error::io("reading", e))
                    .and_then(|r| crate::cancel::check().map(|()| r));
                source.ended = !matches!(read, Ok((_, false)));
                (seq, read)
            };
            let (lock, turn) = self.cutting;
            let mut state = lock.lock().unwrap_or_else(PoisonError::into_inner);
            while state.next_seq != seq && !state.stopped {
                state = turn.wait(state).unwrap_or_else(PoisonError::into_inner);
            }
            if state.stopped {
                break;
            }
            let (n, at_end) = match read {
                Ok(r) => r,
                Err(e) => {
                    state.stopped = true;
                    turn.notify_all();
                    let _ = done.send((seq, 0, Err(e)));
                    break;
                }
            };
            let start = front - state.tail.len();
            block[start..front].copy_from_slice(&state.tail);
            let data = &block[start..front + n];
            let cuts = cut_block(self.chunker, &mut *state.zero_cuts, data, at_end);
            state.tail.clear();
            state.tail.extend_from_slice(&data[cuts.used..]);
            state.next_seq += 1;
            turn.notify_all();
            drop(state);
            let result = (self.work)(data, &cuts);
            let failed = result.is_err();
            if failed {
                lock.lock().unwrap_or_else(PoisonError::into_inner).stopped = true;
                turn.notify_all();
            }
            if done.send((seq, n, result)).is_err() || failed || at_end {
                break;
            }
        }
    }
}

/// Stops the other workers when dropped during a panic.
struct WakeOnPanic<'w, 'z>(&'w (Mutex<CutState<'z>>, Condvar));

impl Drop for WakeOnPanic<'_, '_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let (lock, turn) = self.0;
            lock.lock().unwrap_or_else(PoisonError::into_inner).stopped = true;
            turn.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_format::chunker::ChunkerParams;

    fn pseudo_random(n: usize, mut x: u64) -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn small_chunker() -> Chunker {
        let params = ChunkerParams { min_size: 2048, avg_size: 8192, max_size: 32768 }.validate().expect("valid");
        Chunker::new(params, 0x5eed)
    }

    /// A source that returns at most `step` bytes per read, varying the size, as a pipe does.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
        turn: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.turn += 1;
            let n = buf.len().min(self.data.len()).min(1 + (self.turn * 7919) % self.step);
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// The chunk lengths `chunk_in_parallel` gives, each checked against the bytes handed to
    /// `work`, and the new bytes reported.
    fn parallel_cuts(chunker: &Chunker, reader: &mut (dyn Read + Send), layout: Layout) -> (Vec<usize>, usize) {
        let mut lengths = Vec::new();
        let mut bytes = 0;
        let mut zero_cuts = ZeroCuts::new();
        chunk_in_parallel(
            reader,
            chunker,
            &mut zero_cuts,
            layout,
            |data, cuts| {
                assert_eq!(cuts.lengths.iter().sum::<usize>(), cuts.used);
                assert!(cuts.used <= data.len());
                assert_eq!(cuts.zeros, is_all_zero(data));
                Ok(cuts.lengths.clone())
            },
            |n, lens| {
                bytes += n;
                lengths.extend(lens);
            },
        )
        .expect("chunking succeeds");
        (lengths, bytes)
    }

    fn serial_cuts(chunker: &Chunker, data: &[u8]) -> Vec<usize> {
        chunker.cut(data, true).0
    }

    /// Random bytes with runs of zeros of several lengths (the holes of a sparse file), some
    /// longer than a maximal chunk and longer than a block.
    fn with_zero_runs() -> Vec<u8> {
        let mut data = Vec::new();
        for (i, zeros) in [0usize, 100, 40_000, 3, 200_000, 65_536, 1, 32_768, 131_071].into_iter().enumerate() {
            data.extend(pseudo_random(10_000 + i * 12_345, i as u64 + 1));
            data.extend(std::iter::repeat_n(0u8, zeros));
        }
        data.extend(std::iter::repeat_n(0u8, 300_000));
        data
    }

    #[test]
    fn cuts_equal_the_serial_chunkers_whatever_the_block_edges() {
        let chunker = small_chunker();
        for data in [pseudo_random(1 << 20, 7), with_zero_runs(), vec![0; 500_000], pseudo_random(40_000, 9)] {
            let want = serial_cuts(&chunker, &data);
            // Blocks of one byte (a small input only: each block re-cuts the carried tail), smaller
            // than a chunk, of odd sizes, exactly a maximal chunk, larger than the input.
            let tiny: &[usize] = if data.len() <= 40_000 { &[1, 7] } else { &[] };
            for &block in tiny.iter().chain(&[999, 10_007, 32_768, 65_537, 262_143, 2 << 20]) {
                for workers in [1, 2, 3, 5] {
                    let (got, bytes) = parallel_cuts(&chunker, &mut data.as_slice(), Layout { block, workers });
                    assert_eq!(got, want, "block {block}, {workers} workers");
                    assert_eq!(bytes, data.len());
                }
            }
        }
    }

    #[test]
    fn cuts_equal_the_serial_chunkers_with_short_reads() {
        let chunker = small_chunker();
        let data = with_zero_runs();
        let want = serial_cuts(&chunker, &data);
        for step in [1_000, 7_777, 100_000] {
            let mut source = Trickle { data: &data, step, turn: 0 };
            let (got, bytes) = parallel_cuts(&chunker, &mut source, Layout { block: 50_001, workers: 2 });
            assert_eq!(got, want, "reads of up to {step} bytes");
            assert_eq!(bytes, data.len());
        }
    }

    #[test]
    fn cuts_equal_the_serial_chunkers_from_a_pipe_of_unknown_size() {
        let chunker = small_chunker();
        let data = pseudo_random(3 << 20, 11);
        let want = serial_cuts(&chunker, &data);
        let (mut read_end, mut write_end) = std::io::pipe().expect("a pipe");
        let (got, bytes) = std::thread::scope(|scope| {
            let writer = scope.spawn(|| {
                for piece in data.chunks(4099) {
                    std::io::Write::write_all(&mut write_end, piece).expect("writing the pipe");
                }
                drop(write_end);
            });
            let got = parallel_cuts(&chunker, &mut read_end, Layout { block: 100_000, workers: 2 });
            writer.join().expect("writer");
            got
        });
        assert_eq!(got, want);
        assert_eq!(bytes, data.len());
    }

    #[test]
    fn an_empty_stream_has_no_chunks() {
        let chunker = small_chunker();
        let (got, bytes) = parallel_cuts(&chunker, &mut std::io::empty(), Layout { block: 4096, workers: 2 });
        assert!(got.is_empty());
        assert_eq!(bytes, 0);
    }

    /// Fails after `ok` bytes.
    struct Failing {
        left: usize,
    }

    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.left == 0 {
                return Err(std::io::Error::other("disk on fire"));
            }
            let n = buf.len().min(self.left).min(5000);
            buf[..n].fill(7);
            self.left -= n;
            Ok(n)
        }
    }

    #[test]
    fn a_read_error_stops_the_stream_and_is_returned() {
        let chunker = small_chunker();
        let mut calls = 0;
        let result = chunk_in_parallel(
            &mut Failing { left: 1_000_000 },
            &chunker,
            &mut ZeroCuts::new(),
            Layout { block: 10_000, workers: 3 },
            |_, cuts| Ok(cuts.lengths.len()),
            |_, _| calls += 1,
        );
        let e = result.expect_err("the read error is returned");
        assert_eq!(e.kind(), ErrorKind::Io);
        assert!(e.to_string().contains("disk on fire"), "{e}");
        // Every block before the failure was handed on in order.
        assert_eq!(calls, 100);
    }

    #[test]
    fn a_failing_block_stops_the_workers_and_its_error_is_returned() {
        let chunker = small_chunker();
        let data = pseudo_random(4 << 20, 3);
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let mut seen = 0;
        let result = chunk_in_parallel(
            &mut data.as_slice(),
            &chunker,
            &mut ZeroCuts::new(),
            Layout { block: 40_000, workers: 2 },
            |_, _| match calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
                10 => Err(Error::new(ErrorKind::InvalidInput, "refused")),
                _ => Ok(()),
            },
            |_, ()| seen += 1,
        );
        let e = result.expect_err("the work's error is returned");
        assert!(e.to_string().contains("refused"), "{e}");
        // The blocks before the failing one are handed on; the workers stop soon after it.
        assert!((9..=11).contains(&seen), "{seen} blocks handed on");
        assert!(calls.load(std::sync::atomic::Ordering::SeqCst) <= 12, "the stream stopped early");
    }
}
