//! The write side of the pipeline: blobs are compressed and sealed on rayon's pool (or, with
//! [`PackSaver::save_now`], on the caller's thread, which already holds them in its cache), gathered into
//! packs (data and tree blobs apart) by one packer thread, and written (then named in index files)
//! by an uploader thread, so that sealing goes on while a pack is written and synced. On a remote
//! store the uploader runs [`Backend::upload_slots`](crate::backend::Backend::upload_slots)
//! uploads at once (a PUT is mostly waiting), each holding one finished pack.
//!
//! Blobs saved but not yet named by an index file in the local cache are remembered as *pending*,
//! so a run never stores a blob twice; once their index file is saved they leave that set (the
//! cache answers for them), which keeps memory flat however many blobs a run adds.
//!
//! Memory is bounded: at most `max_in_flight` sealing tasks (one large blob, or a batch of small
//! blobs of at most about 1 MiB) exist at once, plus one blob per thread in `save_now`, at most `SEALED_QUEUE` sealed blobs wait for the
//! packer, the packer holds one open pack per kind, and at most `UPLOAD_QUEUE` finished packs wait
//! while the uploader writes another. With 1 MiB chunks, 16 MiB packs and two cores that is under
//! 100 MiB in the worst case.
//!
//! Durability order: a pack is written (and synced) before any index file names it; an index file
//! is written before the snapshot that needs it. Index files are flushed every few packs and every
//! few seconds, so an interrupted backup leaves indexed packs that the next run reuses.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use cairn_format::blob::{BlobKind, SealedBlob, seal_blob};
use cairn_format::crypto::{MasterKey, object_name};
use cairn_format::index::{IndexFile, IndexedPack};
use cairn_format::pack::PackBuilder;
use cairn_format::{BlobId, PackId};

use crate::backend::FileType;
use crate::error::{Error, ErrorKind, Result};
use crate::repository::{Repository, nonce};

/// Sealed blobs waiting for the packer.
const SEALED_QUEUE: usize = 4;
/// Finished packs waiting for the uploader while it writes (and syncs) the one before.
const UPLOAD_QUEUE: usize = 1;
/// Blobs smaller than this are sealed in batches of up to `BATCH_BYTES`: one task per small file
/// would wake the pool's threads tens of thousands of times per second for microseconds of work.
const BATCH_BLOB_MAX: usize = 256 * 1024;
const BATCH_BYTES: usize = 1024 * 1024;
const BATCH_BLOBS: usize = 256;
/// Write an index file after this many packs, or this many blobs (a pack of tiny files holds
/// over 100,000; until their index file is written, they are remembered in memory)...
const INDEX_FLUSH_PACKS: usize = 8;
const INDEX_FLUSH_BLOBS: usize = 65_536;
/// A pack is closed at this many blobs even when smaller than its target size, which bounds the
/// blobs waiting for an index file (and the pack header) when the blobs are tiny files.
const PACK_MAX_BLOBS: usize = 32_768;
/// ...or when the oldest unindexed pack is this old.
const INDEX_FLUSH_AGE: Duration = Duration::from_secs(20);

/// What the saver stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SaverStats {
    pub data_blobs: u64,
    pub tree_blobs: u64,
    pub bytes_plain: u64,
    pub bytes_stored: u64,
    pub packs: u64,
    pub index_files: u64,
}

/// Counts blobs being sealed, blocking new ones above a limit.
#[derive(Debug, Default)]
struct Gate {
    count: Mutex<usize>,
    changed: Condvar,
}

impl Gate {
    fn enter(&self, limit: usize) {
        let mut n = self.count.lock().unwrap_or_else(|p| p.into_inner());
        while *n >= limit {
            n = self.changed.wait(n).unwrap_or_else(|p| p.into_inner());
        }
        *n += 1;
    }

    fn leave(&self) {
        let mut n = self.count.lock().unwrap_or_else(|p| p.into_inner());
        *n -= 1;
        self.changed.notify_all();
    }

    fn wait_idle(&self) {
        let mut n = self.count.lock().unwrap_or_else(|p| p.into_inner());
        while *n > 0 {
            n = self.changed.wait(n).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Accepts blobs and stores them; see the module documentation.
#[derive(Debug)]
pub struct PackSaver<'scope> {
    key: Arc<MasterKey>,
    level: Option<i32>,
    max_in_flight: usize,
    tx: Option<SyncSender<SealedBlob>>,
    gate: Arc<Gate>,
    failed: Arc<AtomicBool>,
    pending: Arc<Mutex<HashSet<BlobId>>>,
    batch: Mutex<Batch>,
    packer: Option<std::thread::ScopedJoinHandle<'scope, Result<SaverStats>>>,
}

/// Small blobs waiting to be sealed together.
#[derive(Debug, Default)]
struct Batch {
    blobs: Vec<(BlobKind, BlobId, Vec<u8>)>,
    bytes: usize,
}

impl<'scope> PackSaver<'scope> {
    /// Starts the packer thread inside `scope`. With `dry_run` nothing is written.
    pub fn start<'env>(scope: &'scope std::thread::Scope<'scope, 'env>, repo: &'env Repository, dry_run: bool) -> Self {
        let (tx, rx) = sync_channel::<SealedBlob>(SEALED_QUEUE);
        let failed = Arc::new(AtomicBool::new(false));
        let packer_failed = failed.clone();
        let pending = Arc::new(Mutex::new(HashSet::new()));
        let packer_pending = pending.clone();
        let packer = scope.spawn(move || run_packer(repo, rx, dry_run, packer_pending, &packer_failed));
        let level = repo.config().compression_level;
        Self {
            key: Arc::new(repo.key().clone()),
            level: (level != 0).then_some(level),
            max_in_flight: rayon::current_num_threads() * 2 + 2,
            tx: Some(tx),
            gate: Arc::new(Gate::default()),
            failed,
            pending,
            batch: Mutex::default(),
            packer: Some(packer),
        }
    }

    /// Queues a blob whose id the caller computed. Blocks while too many are in flight. Fails early
    /// when the packer has failed (the error itself comes from [`PackSaver::finish`]).
    pub fn save(&self, kind: BlobKind, id: BlobId, plaintext: Vec<u8>) -> Result<()> {
        if self.failed.load(Ordering::SeqCst) {
            return Err(Error::new(ErrorKind::Io, "storing blobs failed"));
        }
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).insert(id);
        if plaintext.len() >= BATCH_BLOB_MAX {
            return self.seal(vec![(kind, id, plaintext)]);
        }
        let full = {
            let mut batch = self.batch.lock().unwrap_or_else(|p| p.into_inner());
            batch.bytes += plaintext.len();
            batch.blobs.push((kind, id, plaintext));
            (batch.bytes >= BATCH_BYTES || batch.blobs.len() >= BATCH_BLOBS).then(|| std::mem::take(&mut *batch))
        };
        match full {
            Some(batch) => self.seal(batch.blobs),
            None => Ok(()),
        }
    }

    /// Seals the batched small blobs now.
    fn flush_batch(&self) -> Result<()> {
        let batch = std::mem::take(&mut *self.batch.lock().unwrap_or_else(|p| p.into_inner()));
        if batch.blobs.is_empty() { Ok(()) } else { self.seal(batch.blobs) }
    }

    /// Compresses and seals `blobs` in one task on the pool.
    fn seal(&self, blobs: Vec<(BlobKind, BlobId, Vec<u8>)>) -> Result<()> {
        let tx = self.tx.clone().ok_or_else(|| Error::new(ErrorKind::Bug, "saver already finished"))?;
        self.gate.enter(self.max_in_flight);
        let (key, level, gate) = (self.key.clone(), self.level, self.gate.clone());
        rayon::spawn(move || {
            for (kind, id, plaintext) in blobs {
                let sealed = seal_blob(&key, kind, id, &plaintext, level, &nonce());
                drop(plaintext);
                // A closed channel means the packer stopped on an error it reports itself.
                if tx.send(sealed).is_err() {
                    break;
                }
            }
            gate.leave();
        });
        Ok(())
    }

    /// Marks `id` as being stored by the caller, who must then call [`PackSaver::save_now`] for
    /// it. Returns false when it was already pending (another thread stores it).
    pub fn claim(&self, id: BlobId) -> bool {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).insert(id)
    }

    /// Compresses and seals a claimed blob on the calling thread (whose cache holds the bytes just
    /// hashed) and queues it for the packer. Blocks while the packer is behind. Fails early when
    /// the packer has failed (the error itself comes from [`PackSaver::finish`]).
    pub fn save_now(&self, kind: BlobKind, id: BlobId, plaintext: &[u8]) -> Result<()> {
        if self.failed.load(Ordering::SeqCst) {
            return Err(Error::new(ErrorKind::Io, "storing blobs failed"));
        }
        let sealed = seal_blob(&self.key, kind, id, plaintext, self.level, &nonce());
        let tx = self.tx.as_ref().ok_or_else(|| Error::new(ErrorKind::Bug, "saver already finished"))?;
        tx.send(sealed).map_err(|_| Error::new(ErrorKind::Io, "storing blobs failed"))
    }

    /// Queues a blob that is already sealed (prune copies blobs between packs without re-sealing:
    /// the associated data binds kind and id, not the pack).
    pub fn save_sealed(&self, blob: SealedBlob) -> Result<()> {
        if self.failed.load(Ordering::SeqCst) {
            return Err(Error::new(ErrorKind::Io, "storing blobs failed"));
        }
        let tx = self.tx.as_ref().ok_or_else(|| Error::new(ErrorKind::Bug, "saver already finished"))?;
        tx.send(blob).map_err(|_| Error::new(ErrorKind::Io, "storing blobs failed"))
    }

    /// Whether a blob was saved by this saver and is not yet in an index file the cache knows.
    pub fn is_pending(&self, id: &BlobId) -> bool {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).contains(id)
    }

    /// Whether the packer has failed (callers stop early).
    pub fn has_failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// Waits for every queued blob, writes the last packs and the final index file.
    pub fn finish(mut self) -> Result<SaverStats> {
        let flushed = self.flush_batch();
        self.gate.wait_idle();
        drop(self.tx.take());
        let packer = self.packer.take().ok_or_else(|| Error::new(ErrorKind::Bug, "saver finished twice"))?;
        let stats = packer.join().unwrap_or_else(|_| Err(Error::new(ErrorKind::Bug, "the packer thread panicked")));
        stats.and_then(|s| flushed.map(|()| s))
    }
}

struct Packer<'r> {
    repo: &'r Repository,
    open: [Option<PackBuilder>; 2],
    /// Finished packs for the uploader (closed when it stopped on an error it reports itself).
    uploads: SyncSender<IndexedPackBytes>,
    stats: SaverStats,
}

/// A finished pack on its way to storage.
struct IndexedPackBytes {
    pack: IndexedPack,
    bytes: Vec<u8>,
}

/// Runs the packer and the uploader until the senders are gone. The first failure of either is
/// flagged in `failed` at once, so that callers stop feeding blobs (a full disk should not wait
/// for the whole input to be read); the error itself is returned at the end.
fn run_packer(
    repo: &Repository,
    rx: Receiver<SealedBlob>,
    dry_run: bool,
    pending: Arc<Mutex<HashSet<BlobId>>>,
    failed: &AtomicBool,
) -> Result<SaverStats> {
    std::thread::scope(|scope| {
        let (uploads, queued) = sync_channel::<IndexedPackBytes>(UPLOAD_QUEUE);
        let uploader = scope.spawn(move || {
            let mut u = Uploader {
                repo,
                unindexed: Vec::new(),
                unindexed_blobs: 0,
                oldest_unindexed: None,
                packs: 0,
                index_files: 0,
                dry_run,
                pending,
            };
            let result = u.run(queued, failed);
            if result.is_err() {
                failed.store(true, Ordering::SeqCst);
            }
            result.map(|()| (u.packs, u.index_files))
        });
        let mut p = Packer { repo, open: [None, None], uploads, stats: SaverStats::default() };
        let mut result = Ok(());
        for blob in rx.iter() {
            if result.is_ok() {
                result = p.add(blob);
            }
            // After a failure keep draining so that senders never block.
            if result.is_err() {
                failed.store(true, Ordering::SeqCst);
            }
        }
        if result.is_ok() {
            result = p.close_open_packs();
        }
        let Packer { uploads, stats, .. } = p;
        drop(uploads);
        let uploaded = uploader.join().unwrap_or_else(|_| Err(Error::new(ErrorKind::Bug, "the uploader panicked")));
        // The uploader's error is the cause of a failed hand-over; report it first.
        let (packs, index_files) = uploaded?;
        result?;
        Ok(SaverStats { packs, index_files, ..stats })
    })
}

impl Packer<'_> {
    fn add(&mut self, blob: SealedBlob) -> Result<()> {
        let (slot, target) = match blob.kind {
            BlobKind::Data => (0, self.repo.config().data_pack_target),
            BlobKind::Tree => (1, self.repo.config().tree_pack_target),
        };
        match blob.kind {
            BlobKind::Data => self.stats.data_blobs += 1,
            BlobKind::Tree => self.stats.tree_blobs += 1,
        }
        self.stats.bytes_plain += u64::from(blob.plain_len);
        self.stats.bytes_stored += blob.sealed.len() as u64;
        let pack = self.open[slot].get_or_insert_with(|| PackBuilder::new(blob.kind, target as usize + (1 << 20)));
        pack.add(&blob);
        if pack.len() >= target as usize || pack.entries().len() >= PACK_MAX_BLOBS {
            let pack = self.open[slot].take().expect("just used");
            self.hand_over(pack)?;
        }
        Ok(())
    }

    fn close_open_packs(&mut self) -> Result<()> {
        for slot in 0..2 {
            if let Some(pack) = self.open[slot].take()
                && !pack.is_empty()
            {
                self.hand_over(pack)?;
            }
        }
        Ok(())
    }

    /// Seals the pack's header and queues it for the uploader, so that sealing goes on while the
    /// pack is written and synced.
    fn hand_over(&mut self, pack: PackBuilder) -> Result<()> {
        let (bytes, blobs) = pack.finish(self.repo.key(), &nonce());
        let id = PackId::from_bytes(object_name(&bytes));
        let pack = IndexedPack { id, len: bytes.len() as u64, blobs };
        self.uploads
            .send(IndexedPackBytes { pack, bytes })
            .map_err(|_| Error::new(ErrorKind::Io, "storing packs failed"))
    }
}

/// Whether a pack holds trees (which the local cache keeps a copy of: they are small, and every
/// listing and backup reads them).
fn is_tree_pack(repo: &Repository, pack: &IndexedPack) -> bool {
    repo.backend().wants_cached_trees() && pack.blobs.first().is_some_and(|b| b.kind == BlobKind::Tree)
}

/// Writes packs and the index files that name them, in that order: an index file only ever names
/// packs that are already durable.
struct Uploader<'r> {
    repo: &'r Repository,
    unindexed: Vec<IndexedPack>,
    unindexed_blobs: usize,
    oldest_unindexed: Option<Instant>,
    packs: u64,
    index_files: u64,
    dry_run: bool,
    pending: Arc<Mutex<HashSet<BlobId>>>,
}

impl Uploader<'_> {
    fn run(&mut self, queued: Receiver<IndexedPackBytes>, failed: &AtomicBool) -> Result<()> {
        let slots = if self.dry_run { 1 } else { self.repo.backend().upload_slots() };
        if slots > 1 {
            return self.run_parallel(queued, slots, failed);
        }
        loop {
            let wait = match self.oldest_unindexed {
                Some(t) => INDEX_FLUSH_AGE.saturating_sub(t.elapsed()),
                None => INDEX_FLUSH_AGE,
            };
            match queued.recv_timeout(wait) {
                Ok(next) => self.store_pack(next)?,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if self.oldest_unindexed.is_some_and(|t| t.elapsed() >= INDEX_FLUSH_AGE)
                || self.unindexed.len() >= INDEX_FLUSH_PACKS
                || self.unindexed_blobs >= INDEX_FLUSH_BLOBS
            {
                self.flush_index()?;
            }
        }
        self.flush_index()
    }

    /// Uploads packs `slots` at a time, and names each in an index file once its upload succeeded
    /// (so the index order rule holds whatever order the uploads finish in). After the first
    /// failure the rest of the queue is drained without writing, so the packer never blocks.
    fn run_parallel(&mut self, queued: Receiver<IndexedPackBytes>, slots: usize, failed: &AtomicBool) -> Result<()> {
        let queued = Mutex::new(queued);
        let (done, finished) = std::sync::mpsc::channel::<Result<IndexedPack>>();
        std::thread::scope(|scope| {
            for _ in 0..slots {
                let (done, queued, repo) = (done.clone(), &queued, self.repo);
                scope.spawn(move || {
                    loop {
                        let next = queued.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        let Ok(IndexedPackBytes { pack, bytes }) = next else { break };
                        if failed.load(Ordering::SeqCst) {
                            continue;
                        }
                        let tree_pack = is_tree_pack(repo, &pack).then(|| bytes.clone());
                        // After this returns the pack is durable; only now may an index file name it.
                        let stored = repo.backend().write(FileType::Pack, &pack.id.to_hex(), bytes).map(|()| pack);
                        if let (Ok(pack), Some(bytes)) = (&stored, tree_pack) {
                            repo.keep_tree_pack(&pack.id, &bytes);
                        }
                        if stored.is_err() {
                            failed.store(true, Ordering::SeqCst);
                        }
                        let _ = done.send(stored);
                    }
                });
            }
            drop(done);
            let mut first_error = None;
            loop {
                let wait = match self.oldest_unindexed {
                    Some(t) => INDEX_FLUSH_AGE.saturating_sub(t.elapsed()),
                    None => INDEX_FLUSH_AGE,
                };
                match finished.recv_timeout(wait) {
                    Ok(Ok(pack)) => self.note_stored(pack),
                    Ok(Err(e)) => {
                        first_error.get_or_insert(e);
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                }
                let due = self.oldest_unindexed.is_some_and(|t| t.elapsed() >= INDEX_FLUSH_AGE)
                    || self.unindexed.len() >= INDEX_FLUSH_PACKS
                    || self.unindexed_blobs >= INDEX_FLUSH_BLOBS;
                if due
                    && first_error.is_none()
                    && let Err(e) = self.flush_index()
                {
                    failed.store(true, Ordering::SeqCst);
                    first_error = Some(e);
                }
            }
            match first_error {
                // The packs stored before the failure are named in an index file if the store
                // still takes one, so that the next run reuses them.
                Some(e) => {
                    let _ = self.flush_index();
                    Err(e)
                }
                None => self.flush_index(),
            }
        })
    }

    fn store_pack(&mut self, next: IndexedPackBytes) -> Result<()> {
        let IndexedPackBytes { pack, bytes } = next;
        if !self.dry_run {
            let tree_pack = is_tree_pack(self.repo, &pack).then(|| bytes.clone());
            // After this returns the pack is durable; only now may an index file name it.
            self.repo.backend().write(FileType::Pack, &pack.id.to_hex(), bytes)?;
            if let Some(bytes) = tree_pack {
                self.repo.keep_tree_pack(&pack.id, &bytes);
            }
        }
        self.note_stored(pack);
        Ok(())
    }

    /// Remembers a durable pack for the next index file.
    fn note_stored(&mut self, pack: IndexedPack) {
        self.packs += 1;
        self.unindexed_blobs += pack.blobs.len();
        self.unindexed.push(pack);
        self.oldest_unindexed.get_or_insert_with(Instant::now);
    }

    fn flush_index(&mut self) -> Result<()> {
        if self.unindexed.is_empty() {
            return Ok(());
        }
        let file =
            IndexFile { supersedes: Vec::new(), packs: std::mem::take(&mut self.unindexed), condemned: Vec::new() };
        self.oldest_unindexed = None;
        self.unindexed_blobs = 0;
        if !self.dry_run {
            // The cache knows these blobs from now on; they need not be remembered any more.
            self.repo.save_index(&file)?;
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            for b in file.packs.iter().flat_map(|p| p.blobs.iter()) {
                pending.remove(&b.id);
            }
        }
        self.index_files += 1;
        Ok(())
    }
}
