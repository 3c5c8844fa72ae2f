//! The local cache: one SQLite database per repository (merged index, files cache, snapshot bytes).
//!
//! The cache is only an accelerator. Everything in it is derived from the repository and is checked
//! again where it matters (blobs still authenticate against their ids when read), so deleting it
//! never changes a result. Several cairn processes may share it: SQLite's WAL mode and a busy
//! timeout serialise writers, and index merging runs in one immediate transaction.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cairn_format::blob::{BlobKind, Compression};
use cairn_format::index::{CondemnedPack, IndexFile};
use cairn_format::pack::BlobEntry;
use cairn_format::{BlobId, IndexId, PackId};
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::{Error, ErrorKind, Result};

/// Where a blob is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    pub pack: PackId,
    pub entry: BlobEntry,
}

/// What the files cache remembers about a file that was backed up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileFingerprint {
    pub device: u64,
    pub inode: u64,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
}

impl FileFingerprint {
    /// The fingerprint of a file as `lstat` describes it now.
    pub fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
        FileFingerprint {
            device: meta.dev(),
            inode: meta.ino(),
            size: meta.len(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// The per-repository cache database.
#[derive(Debug)]
pub struct Cache {
    conn: Connection,
    path: Option<PathBuf>,
}

/// The version of the cache's layout, kept in SQLite's `user_version`. A cache of any other version
/// (older, newer, or 0: made before versions were kept) is rebuilt from the repository; a future
/// change that can convert a cache in place adds its step to `migrate` and raises this.
pub const CACHE_VERSION: i32 = 2;

// Layout 2 keeps a blob row small (the merged index is most of the file): index files and packs
// get integer numbers, and a blob row names its pack row (one per pack and index file that lists
// it) by that number, so the 32-byte pack and index ids are stored once per pack instead of three
// times per blob (row, by-index and by-pack indexes). Rows of one index file are found through
// their packs, so blobs need no index by index file. About 90-130 bytes per blob on disk (see
// README's performance section), down from 470-730 in layout 1.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS index_files (
    no INTEGER PRIMARY KEY,
    id BLOB NOT NULL UNIQUE,
    supersedes BLOB NOT NULL,
    loaded INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS packs (
    no INTEGER PRIMARY KEY,
    id BLOB NOT NULL,
    index_no INTEGER NOT NULL,
    len INTEGER NOT NULL,
    UNIQUE (id, index_no)
);
CREATE INDEX IF NOT EXISTS packs_by_index ON packs(index_no);
CREATE TABLE IF NOT EXISTS blobs (
    id BLOB NOT NULL,
    pack_no INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    compression INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    stored_len INTEGER NOT NULL,
    plain_len INTEGER NOT NULL,
    PRIMARY KEY (id, pack_no)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS condemned (
    pack BLOB NOT NULL,
    index_no INTEGER NOT NULL,
    since_ns INTEGER NOT NULL,
    len INTEGER NOT NULL,
    entries BLOB NOT NULL,
    PRIMARY KEY (pack, index_no)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS condemned_by_index ON condemned(index_no);
CREATE TABLE IF NOT EXISTS files (
    path BLOB PRIMARY KEY,
    device INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    content BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS snapshots (
    id BLOB PRIMARY KEY,
    bytes BLOB NOT NULL
) WITHOUT ROWID;
";

/// The blob rows of one pack in offset order (reading or repacking a pack, forgetting an index
/// file). Kept apart from [`SCHEMA`] because a rebuild creates it after the rows (see `load_indexes`).
const BLOBS_BY_PACK: &str = "CREATE INDEX IF NOT EXISTS blobs_by_pack ON blobs(pack_no, offset);";

/// Blob rows merged in one go from which a merge counts as bulk (see `load_indexes`).
const BULK_ROWS: usize = 50_000;

/// Index files decoded at a time by a sync (in parallel); the next batch is decoded while one is
/// staged, so a sync holds about two batches in memory (an index file of 65,536 blobs decodes to
/// about 3 MiB, and its encrypted bytes take as much while it is decoded), however large the
/// repository.
const SYNC_BATCH: usize = 4;

/// Blob rows of the index files a sync decoded, in arrival order, in the connection's own temporary
/// database (a file: `temp_store` is FILE). `seq` numbers the packs of the sync in order; the
/// merge maps it to the pack's row number through `staged_packs` and lets SQLite sort the rows.
const STAGING_SCHEMA: &str = "
CREATE TEMP TABLE staged_blobs (
    seq INTEGER NOT NULL,
    id BLOB NOT NULL,
    kind INTEGER NOT NULL,
    compression INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    stored_len INTEGER NOT NULL,
    plain_len INTEGER NOT NULL
);
CREATE TEMP TABLE staged_packs (
    seq INTEGER PRIMARY KEY,
    pack_no INTEGER NOT NULL
);
";
const STAGING_DROP: &str = "DROP TABLE IF EXISTS temp.staged_blobs; DROP TABLE IF EXISTS temp.staged_packs;";

/// What a sync keeps in memory of a decoded index file: all but its blob rows (which are staged).
struct StagedIndex {
    id: IndexId,
    supersedes: Vec<IndexId>,
    /// Id and length of each pack, in the file's order (pack `i` has staging number `first_seq + i`).
    packs: Vec<(PackId, u64)>,
    condemned: Vec<CondemnedPack>,
    first_seq: i64,
    /// Blob rows staged for this file.
    rows: usize,
}

/// The largest cache database read into memory ahead of use.
const READ_AHEAD_MAX: u64 = 512 * 1024 * 1024;

/// Asks the kernel to start reading the cache database (and its write-ahead log) in the
/// background. Lookups jump around the file; on a cold page cache (the next hourly run) each would
/// otherwise wait for its own small random read, which made them the slowest part of a restore.
/// The hint runs on a thread of its own: the kernel queues the reads before the call returns.
fn read_ahead(db: &Path) {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    let paths = [db.to_path_buf(), PathBuf::from(wal)];
    let hint = move || {
        for path in paths {
            let Ok(file) = std::fs::File::open(path) else { continue };
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            if len > 0 && len <= READ_AHEAD_MAX {
                let _ = nix::fcntl::posix_fadvise(
                    &file,
                    0,
                    len as nix::libc::off_t,
                    nix::fcntl::PosixFadviseAdvice::POSIX_FADV_WILLNEED,
                );
            }
        }
    };
    // Only speed is at stake: without a thread, no hint.
    let _ = std::thread::Builder::new().name("cairn-cache-read-ahead".to_owned()).spawn(hint);
}

/// Set when SQLite reported a damaged database file: the cache file is then discarded when it is
/// closed, so the next run rebuilds it (the run that found the damage reports it once).
static DAMAGE_SEEN: AtomicBool = AtomicBool::new(false);

fn is_damage(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase))
}

fn sql(what: &str) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| {
        if is_damage(&e) {
            DAMAGE_SEEN.store(true, Ordering::SeqCst);
            return Error::new(
                ErrorKind::Io,
                format!(
                    "local cache ({what}): {e}; the cache is damaged and is rebuilt from the repository on the next run"
                ),
            );
        }
        Error::new(ErrorKind::Io, format!("local cache ({what}): {e}"))
    }
}

/// Why an existing cache file is not used as it is.
#[derive(Debug)]
enum Unusable {
    /// The file is damaged, of another version, or another copy's: it is replaced.
    Rebuild(String),
    /// The file or its folder cannot be used at all (unwritable, not a folder...).
    Unavailable(String),
}

/// Whether a cache of layout `version` can be brought to [`CACHE_VERSION`] in place. No step
/// exists yet: every other version is rebuilt.
fn migrate(version: i32) -> std::result::Result<(), String> {
    match version {
        CACHE_VERSION => Ok(()),
        0 => Err("it was made by an older cairn".to_owned()),
        v => Err(format!("it has layout version {v}, this cairn uses {CACHE_VERSION}")),
    }
}

impl Cache {
    /// Opens (creating) the cache of the repository `repository_id` under `dir`, or an in-memory
    /// cache when `dir` is `None`.
    pub fn open(dir: Option<&Path>, repository_id: &[u8; 32]) -> Result<Self> {
        match Self::open_checked(dir, repository_id, b"") {
            (cache, None) => Ok(cache),
            (_, Some(notice)) => Err(Error::new(ErrorKind::Io, notice)),
        }
    }

    /// Opens the cache of the repository copy `origin` (something only this copy of the repository
    /// has, such as its folder's device and inode) and returns it with a one-line notice when it
    /// was not used as found. The cache is only an accelerator, so this never fails:
    /// - a damaged file, one of another layout version, or one filled from another copy of the
    ///   repository (a `cp -a` of it has the same repository id) is deleted and rebuilt;
    /// - when no file can be used (the folder cannot be created, the file cannot be written), the
    ///   cache is kept in memory for this run.
    pub fn open_checked(dir: Option<&Path>, repository_id: &[u8; 32], origin: &[u8]) -> (Self, Option<String>) {
        let Some(dir) = dir else { return (Self::in_memory(origin), None) };
        let folder = dir.join(cairn_format::id::to_hex(repository_id));
        if let Err(e) = create_private_folder(&folder) {
            let notice = format!(
                "cannot use the local cache folder {}: {e}; going on without a cache (slower)",
                folder.display()
            );
            return (Self::in_memory(origin), Some(notice));
        }
        let path = folder.join("cache.sqlite");
        let reason = match Self::open_file(&path, origin) {
            Ok(cache) => return (cache, None),
            Err(Unusable::Rebuild(reason)) => reason,
            Err(Unusable::Unavailable(reason)) => {
                let notice = format!(
                    "cannot use the local cache {}: {reason}; going on without a cache (slower)",
                    path.display()
                );
                return (Self::in_memory(origin), Some(notice));
            }
        };
        discard(&path);
        match Self::open_file(&path, origin) {
            Ok(cache) => (
                cache,
                Some(format!(
                    "the local cache {} was not usable ({reason}); rebuilt it from the repository",
                    path.display()
                )),
            ),
            Err(Unusable::Rebuild(e) | Unusable::Unavailable(e)) => {
                let notice = format!(
                    "the local cache {} was not usable ({reason}) and could not be rebuilt ({e}); going on without a cache (slower)",
                    path.display()
                );
                (Self::in_memory(origin), Some(notice))
            }
        }
    }

    fn in_memory(origin: &[u8]) -> Self {
        let conn = Connection::open_in_memory().expect("SQLite can always open an in-memory database");
        let cache = Self { conn, path: None };
        // An in-memory database has room for the schema; nothing else can fail here.
        let _ = cache.prepare(origin);
        cache
    }

    /// Opens an existing or new cache file and checks that it is usable as it is.
    fn open_file(path: &Path, origin: &[u8]) -> std::result::Result<Self, Unusable> {
        let unavailable = |e: rusqlite::Error| {
            if is_damage(&e) { Unusable::Rebuild(e.to_string()) } else { Unusable::Unavailable(e.to_string()) }
        };
        // SQLite gives its write-ahead log and shared-memory files the mode of the database file.
        create_private_file(path).map_err(|e| Unusable::Unavailable(e.to_string()))?;
        read_ahead(path);
        let conn = Connection::open(path).map_err(unavailable)?;
        let cache = Self { conn, path: Some(path.to_path_buf()) };
        let conn = &cache.conn;
        conn.busy_timeout(Duration::from_secs(120)).map_err(unavailable)?;
        // Takes effect only on a new, empty file, and only before it is switched to WAL mode:
        // pages freed by a large prune can then be given back (see `reclaim_free_pages`). On an
        // existing file it changes nothing.
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL").map_err(unavailable)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(unavailable)?;
        let tables: i64 =
            conn.query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0)).map_err(unavailable)?;
        if tables > 0 {
            let version: i32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(unavailable)?;
            migrate(version).map_err(Unusable::Rebuild)?;
            let stored: Option<Vec<u8>> = conn
                .query_row("SELECT value FROM meta WHERE key = 'origin'", [], |r| r.get(0))
                .optional()
                .map_err(unavailable)?;
            if stored.as_deref() != Some(origin) {
                return Err(Unusable::Rebuild("it was filled from another copy of this repository".to_owned()));
            }
        }
        cache.prepare(origin).map_err(unavailable)?;
        Ok(cache)
    }

    /// Sets the connection up and creates the schema (a no-op on a cache that has it).
    fn prepare(&self, origin: &[u8]) -> rusqlite::Result<()> {
        let conn = &self.conn;
        conn.busy_timeout(Duration::from_secs(120))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // A rebuild writes the whole database through the write-ahead log; without a limit the log
        // keeps that size on disk after the checkpoint.
        conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // Sorting and grouping over millions of rows (prune) spill to disk, not to memory.
        conn.pragma_update(None, "temp_store", "FILE")?;
        conn.pragma_update(None, "cache_size", -16_384)?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(BLOBS_BY_PACK)?;
        conn.execute_batch(PACK_CHECKS_SCHEMA)?;
        conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('origin', ?1)", [origin])?;
        conn.pragma_update(None, "user_version", CACHE_VERSION)?;
        Ok(())
    }

    /// Whether SQLite reported a damaged cache file since the last call (and forgets it).
    pub fn take_damage_seen() -> bool {
        DAMAGE_SEEN.swap(false, Ordering::SeqCst)
    }

    /// Replaces this cache's file with a new, empty one (after SQLite reported it damaged). When
    /// no new file can be made, the cache stays in memory for the rest of the run.
    pub fn rebuild(&mut self, origin: &[u8]) -> Result<()> {
        let Some(path) = self.path.clone() else { return Ok(()) };
        // Closed first: SQLite must not write the old pages into the new file.
        drop(std::mem::replace(self, Self::in_memory(origin)));
        discard(&path);
        match Self::open_file(&path, origin) {
            Ok(fresh) => {
                *self = fresh;
                Ok(())
            }
            Err(Unusable::Rebuild(e) | Unusable::Unavailable(e)) => {
                Err(Error::new(ErrorKind::Io, format!("rebuilding the local cache {}: {e}", path.display())))
            }
        }
    }

    /// The database file, when on disk.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Brings the merged index up to date with the index files present in the repository.
    /// `fetch` downloads and decodes one index file. Index files named in another live index file's
    /// `supersedes` list are not merged.
    ///
    /// `list` lists the index files in the repository. It is called only after the cache's own
    /// list is read: other processes share this database and add the index files they write, so an
    /// index file the cache knows but a listing made *before* that does not show is not gone, only
    /// newer than the listing. (Forgetting it would drop a live index file's packs from every
    /// process's view, and with it the supersedes list that keeps older index files unloaded.)
    pub fn sync_index(
        &mut self,
        list: impl FnOnce() -> Result<Vec<IndexId>>,
        fetch: impl Fn(IndexId) -> Result<IndexFile> + Sync,
    ) -> Result<SyncStats> {
        self.sync_index_in_batches(list, fetch, SYNC_BATCH)
    }

    /// [`Cache::sync_index`], decoding `batch` index files at a time.
    fn sync_index_in_batches(
        &mut self,
        list: impl FnOnce() -> Result<Vec<IndexId>>,
        fetch: impl Fn(IndexId) -> Result<IndexFile> + Sync,
        batch: usize,
    ) -> Result<SyncStats> {
        let known: HashSet<IndexId> = {
            let mut stmt = self.conn.prepare("SELECT id FROM index_files").map_err(sql("read"))?;
            let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0)).map_err(sql("read"))?;
            rows.filter_map(|r| r.ok()).filter_map(|b| to_id(&b).map(IndexId::from_bytes)).collect()
        };
        let present = list()?;
        let present_set: HashSet<IndexId> = present.iter().copied().collect();
        let new: Vec<IndexId> = present.iter().copied().filter(|id| !known.contains(id)).collect();
        // Decoding is CPU work (decryption); it runs in parallel and before the write lock is
        // taken. The blob rows go to a staging table of this connection's own temporary database
        // (no lock on the cache), a batch at a time, so memory does not grow with the repository.
        let mut unreadable = Vec::new();
        let staged = self.stage(&new, &fetch, batch.max(1), &mut unreadable)?;
        let result = self.merge_staged(&known, &present_set, staged, &fetch, unreadable);
        // The staged rows are on disk in a temporary file; give its space back either way.
        let _ = self.conn.execute_batch(STAGING_DROP);
        result
    }

    /// Fetches and decodes the index files `new`, `batch` at a time in parallel (the next batch is
    /// decoded while one is written), and writes their blob rows to the staging table. Returns
    /// what is kept of each file in memory: its supersedes list, packs and condemned packs.
    fn stage(
        &self,
        new: &[IndexId],
        fetch: &(impl Fn(IndexId) -> Result<IndexFile> + Sync),
        batch: usize,
        unreadable: &mut Vec<Error>,
    ) -> Result<Vec<StagedIndex>> {
        use rayon::prelude::*;
        if new.is_empty() {
            return Ok(Vec::new());
        }
        self.conn.execute_batch(STAGING_DROP).map_err(sql("staging"))?;
        self.conn.execute_batch(STAGING_SCHEMA).map_err(sql("staging"))?;
        std::thread::scope(|scope| {
            let (sender, receiver) = std::sync::mpsc::sync_channel::<Vec<(IndexId, Result<IndexFile>)>>(0);
            scope.spawn(move || {
                for ids in new.chunks(batch) {
                    let got: Vec<(IndexId, Result<IndexFile>)> = ids.par_iter().map(|id| (*id, fetch(*id))).collect();
                    // The receiver is gone after an error: stop.
                    if sender.send(got).is_err() {
                        break;
                    }
                }
            });
            // Only the temporary database is written: the cache itself stays unlocked.
            let tx = self.conn.unchecked_transaction().map_err(sql("staging"))?;
            let mut staged = Vec::with_capacity(new.len());
            let mut next_seq: i64 = 0;
            {
                let mut stmt = tx
                    .prepare(
                        "INSERT INTO temp.staged_blobs (seq, id, kind, compression, offset, stored_len, plain_len)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )
                    .map_err(sql("staging"))?;
                for got in receiver {
                    for (id, r) in got {
                        let file = match r {
                            Ok(f) => f,
                            // A damaged index file must not make every other one unusable; a
                            // vanished one was superseded by a prune between listing and reading.
                            // Neither is merged; the caller decides whether it may go on.
                            Err(e) if matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::NotFound) => {
                                unreadable.push(e);
                                continue;
                            }
                            Err(e) => return Err(e),
                        };
                        let first_seq = next_seq;
                        let mut rows = 0;
                        for p in &file.packs {
                            for b in &p.blobs {
                                stmt.execute(params![
                                    next_seq,
                                    &b.id.as_bytes()[..],
                                    b.kind as u8,
                                    b.compression as u8,
                                    b.offset,
                                    b.stored_len,
                                    b.plain_len
                                ])
                                .map_err(sql("staging"))?;
                            }
                            rows += p.blobs.len();
                            next_seq += 1;
                        }
                        staged.push(StagedIndex {
                            id,
                            supersedes: file.supersedes,
                            packs: file.packs.into_iter().map(|p| (p.id, p.len)).collect(),
                            condemned: file.condemned,
                            first_seq,
                            rows,
                        });
                    }
                }
            }
            tx.commit().map_err(sql("staging"))?;
            Ok(staged)
        })
    }

    /// The write half of a sync: forgets vanished index files, records the new ones, and merges
    /// every live, unsuperseded one that is not merged yet (staged rows sorted by SQLite).
    fn merge_staged(
        &mut self,
        known: &HashSet<IndexId>,
        present_set: &HashSet<IndexId>,
        staged: Vec<StagedIndex>,
        fetch: &(impl Fn(IndexId) -> Result<IndexFile> + Sync),
        unreadable: Vec<Error>,
    ) -> Result<SyncStats> {
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(sql("begin"))?;
        let mut stats = SyncStats { unreadable, ..SyncStats::default() };
        let mut unloaded = 0usize;
        // Forget index files that vanished from the repository: known before the listing, and not
        // in it. (One that another process forgot meanwhile is simply gone already.)
        for id in known.difference(present_set) {
            forget_index(&tx, *id)?;
            stats.removed += 1;
        }
        let mut staged_by_id = std::collections::HashMap::with_capacity(staged.len());
        for (i, f) in staged.iter().enumerate() {
            insert_index_file(&tx, f.id, &f.supersedes)?;
            staged_by_id.insert(f.id, i);
        }
        // Which live index files are superseded by another live one?
        let mut superseded = HashSet::new();
        {
            let mut stmt = tx.prepare("SELECT supersedes FROM index_files").map_err(sql("read"))?;
            let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0)).map_err(sql("read"))?;
            for r in rows {
                for chunk in r.map_err(sql("read"))?.chunks_exact(32) {
                    if let Some(b) = to_id(chunk) {
                        superseded.insert(IndexId::from_bytes(b));
                    }
                }
            }
        }
        let loaded: Vec<(i64, IndexId, bool)> = {
            let mut stmt = tx.prepare("SELECT no, id, loaded FROM index_files").map_err(sql("read"))?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?, r.get::<_, bool>(2)?)))
                .map_err(sql("read"))?;
            rows.filter_map(|r| r.ok())
                .filter_map(|(no, b, l)| to_id(&b).map(|b| (no, IndexId::from_bytes(b), l)))
                .collect()
        };
        let mut to_load: Vec<(i64, IndexFile)> = Vec::new();
        let mut staged_to_load: Vec<(i64, &StagedIndex)> = Vec::new();
        for (no, id, is_loaded) in loaded {
            let wanted = !superseded.contains(&id);
            if is_loaded && !wanted {
                unload_index(&tx, no)?;
                tx.execute("UPDATE index_files SET loaded = 0 WHERE no = ?1", [no]).map_err(sql("update"))?;
                unloaded += 1;
            } else if !is_loaded && wanted {
                match staged_by_id.get(&id) {
                    Some(&i) => staged_to_load.push((no, &staged[i])),
                    // Known before and unmerged while another index file superseded it (rare).
                    None => to_load.push((no, fetch(id)?)),
                }
                stats.merged += 1;
            }
        }
        let mut inserted = load_staged(&tx, &staged_to_load)?;
        inserted += load_indexes(&tx, to_load.iter().map(|(no, f)| (*no, f)))?;
        tx.commit().map_err(sql("commit"))?;
        if stats.removed + unloaded > 0 {
            self.reclaim_free_pages()?;
        }
        if inserted >= BULK_ROWS || stats.removed + unloaded > 0 {
            // The write-ahead log now holds a large share of the database's pages; copy them in
            // and shrink the log, rather than keep both copies on disk for the whole run. While
            // another process reads the cache the log cannot be reset: then only disk space waits.
            let _ = self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        }
        Ok(stats)
    }

    /// Gives pages that deletions freed back to the file system once they are a sizeable share of
    /// the file (after a prune superseded many index files), so the cache's size follows the
    /// repository's down as well as up. Only a cache made with `auto_vacuum = INCREMENTAL` (every
    /// cache of this layout) can do so; on others this does nothing.
    fn reclaim_free_pages(&self) -> Result<()> {
        let pragma = |name: &str| -> Result<i64> {
            self.conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0)).map_err(sql("vacuum"))
        };
        let (free, total) = (pragma("freelist_count")?, pragma("page_count")?);
        // A few free pages are reused by the next backup's rows; only a large share is worth the I/O.
        if free >= 256 && free * 8 >= total {
            // The pragma frees pages one step at a time: step it to the end.
            let mut stmt = self.conn.prepare("PRAGMA incremental_vacuum").map_err(sql("vacuum"))?;
            let mut rows = stmt.query([]).map_err(sql("vacuum"))?;
            while rows.next().map_err(sql("vacuum"))?.is_some() {}
        }
        Ok(())
    }

    /// Adds an index file this process just wrote, so lookups see it without a new sync.
    pub fn add_index(&mut self, id: IndexId, file: &IndexFile) -> Result<()> {
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(sql("begin"))?;
        let (no, loaded) = insert_index_file(&tx, id, &file.supersedes)?;
        if !loaded {
            load_indexes(&tx, [(no, file)])?;
        }
        tx.commit().map_err(sql("commit"))
    }

    /// Where a blob is stored, if the merged index knows it.
    pub fn locate(&self, id: &BlobId) -> Result<Option<BlobLocation>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT pack_no, kind, compression, offset, stored_len, plain_len FROM blobs WHERE id = ?1 LIMIT 1",
            )
            .map_err(sql("lookup"))?;
        let row = stmt.query_row([&id.as_bytes()[..]], read_numbered_row).optional().map_err(sql("lookup"))?;
        let Some((pack_no, entry)) = row else { return Ok(None) };
        Ok(Some(BlobLocation { pack: self.pack_id(pack_no)?, entry: entry_from_row(*id, entry)? }))
    }

    /// Where each of `ids` is stored, in order, looked up in one read transaction: a lookup on
    /// its own takes and releases SQLite's locks (four `fcntl` calls) around one index search,
    /// which costs more than the search when a restore walks a folder of small files.
    pub fn locate_many(&self, ids: &[BlobId]) -> Result<Vec<Option<BlobLocation>>> {
        let tx = self.conn.unchecked_transaction().map_err(sql("lookup"))?;
        let mut packs: HashMap<i64, PackId> = HashMap::new();
        let mut found = Vec::with_capacity(ids.len());
        {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT pack_no, kind, compression, offset, stored_len, plain_len FROM blobs WHERE id = ?1 LIMIT 1",
                )
                .map_err(sql("lookup"))?;
            for id in ids {
                let row = stmt.query_row([&id.as_bytes()[..]], read_numbered_row).optional().map_err(sql("lookup"))?;
                let Some((pack_no, entry)) = row else {
                    found.push(None);
                    continue;
                };
                let pack = match packs.get(&pack_no) {
                    Some(pack) => *pack,
                    None => *packs.entry(pack_no).or_insert(self.pack_id(pack_no)?),
                };
                found.push(Some(BlobLocation { pack, entry: entry_from_row(*id, entry)? }));
            }
        }
        tx.commit().map_err(sql("lookup"))?;
        Ok(found)
    }

    /// Every row of a blob: (pack row number, entry columns).
    ///
    /// Lookups by blob id join pack rows in Rust, not in SQL: SQLite prepared the joined statement
    /// again on every execution (four times the cost of the lookup itself).
    fn blob_rows(&self, id: &BlobId) -> Result<Vec<NumberedRow>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT pack_no, kind, compression, offset, stored_len, plain_len FROM blobs WHERE id = ?1")
            .map_err(sql("lookup"))?;
        let rows = stmt.query_map([&id.as_bytes()[..]], read_numbered_row).map_err(sql("lookup"))?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(sql("lookup"))
    }

    /// The id of the pack in pack row `no`.
    fn pack_id(&self, no: i64) -> Result<PackId> {
        let mut stmt = self.conn.prepare_cached("SELECT id FROM packs WHERE no = ?1").map_err(sql("lookup"))?;
        let id: Vec<u8> = stmt.query_row([no], |r| r.get(0)).map_err(sql("lookup"))?;
        Ok(PackId::from_bytes(to_id(&id).ok_or_else(bad_row)?))
    }

    /// Whether the merged index knows a blob.
    pub fn has_blob(&self, id: &BlobId) -> Result<bool> {
        let mut stmt = self.conn.prepare_cached("SELECT 1 FROM blobs WHERE id = ?1 LIMIT 1").map_err(sql("lookup"))?;
        stmt.exists([&id.as_bytes()[..]]).map_err(sql("lookup"))
    }

    /// Which of `ids` the merged index knows, asked in a few queries rather than one per id.
    pub fn known_blobs(&self, ids: &[BlobId]) -> Result<HashSet<BlobId>> {
        const PER_QUERY: usize = 64;
        let mut known = HashSet::new();
        for group in ids.chunks(PER_QUERY) {
            // Four statement shapes (8, 16, 32 or 64 ids; a short group repeats its last id), so
            // the statement cache keeps them and a small folder does not pay for 64 lookups.
            let shape = group.len().next_power_of_two().max(8);
            let text = format!("SELECT id FROM blobs WHERE id IN ({})", vec!["?"; shape].join(","));
            let mut stmt = self.conn.prepare_cached(&text).map_err(sql("lookup"))?;
            let padded = (0..shape).map(|i| &group[i.min(group.len() - 1)].as_bytes()[..]);
            let rows = stmt
                .query_map(rusqlite::params_from_iter(padded), |r| r.get::<_, Vec<u8>>(0))
                .map_err(sql("lookup"))?;
            for row in rows {
                if let Some(b) = to_id(&row.map_err(sql("lookup"))?) {
                    known.insert(BlobId::from_bytes(b));
                }
            }
        }
        Ok(known)
    }

    /// Number of distinct blobs and packs in the merged index.
    pub fn counts(&self) -> Result<(u64, u64)> {
        let blobs: i64 =
            self.conn.query_row("SELECT COUNT(DISTINCT id) FROM blobs", [], |r| r.get(0)).map_err(sql("count"))?;
        let packs: i64 =
            self.conn.query_row("SELECT COUNT(DISTINCT id) FROM packs", [], |r| r.get(0)).map_err(sql("count"))?;
        Ok((blobs as u64, packs as u64))
    }

    /// Looks a file up in the files cache; returns its content list when the fingerprint matches.
    pub fn lookup_file(&self, path: &[u8], fp: &FileFingerprint) -> Result<Option<Vec<BlobId>>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT device, inode, size, mtime_ns, ctime_ns, content FROM files WHERE path = ?1")
            .map_err(sql("files cache"))?;
        let row = stmt
            .query_row([path], |r| {
                Ok((
                    FileFingerprint {
                        device: r.get::<_, i64>(0)? as u64,
                        inode: r.get::<_, i64>(1)? as u64,
                        size: r.get::<_, i64>(2)? as u64,
                        mtime_ns: r.get(3)?,
                        ctime_ns: r.get(4)?,
                    },
                    r.get::<_, Vec<u8>>(5)?,
                ))
            })
            .optional()
            .map_err(sql("files cache"))?;
        Ok(row
            .filter(|(cached, _)| cached == fp)
            .map(|(_, content)| content.chunks_exact(32).filter_map(to_id).map(BlobId::from_bytes).collect()))
    }

    /// Records files in the files cache, in one transaction.
    pub fn store_files(&mut self, files: &[(Vec<u8>, FileFingerprint, Vec<BlobId>)]) -> Result<()> {
        if files.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction().map_err(sql("begin"))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO files (path, device, inode, size, mtime_ns, ctime_ns, content)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(sql("files cache"))?;
            for (path, fp, content) in files {
                let mut blob = Vec::with_capacity(content.len() * 32);
                for c in content {
                    blob.extend_from_slice(c.as_bytes());
                }
                stmt.execute(params![
                    path,
                    fp.device as i64,
                    fp.inode as i64,
                    fp.size as i64,
                    fp.mtime_ns,
                    fp.ctime_ns,
                    blob
                ])
                .map_err(sql("files cache"))?;
            }
        }
        tx.commit().map_err(sql("commit"))
    }

    /// Stored bytes of a snapshot file, if cached.
    pub fn snapshot_bytes(&self, id: &[u8; 32]) -> Result<Option<Vec<u8>>> {
        self.conn
            .query_row("SELECT bytes FROM snapshots WHERE id = ?1", [&id[..]], |r| r.get(0))
            .optional()
            .map_err(sql("snapshots"))
    }

    /// Where a copy of a tree pack is kept beside the database (none for an in-memory cache), so
    /// that listing, diffing and an unchanged backup read no pack from remote storage. The files
    /// are named by the pack's hash and checked against it when read.
    pub fn tree_pack_path(&self, id: &PackId) -> Option<PathBuf> {
        Some(self.path.as_ref()?.parent()?.join("tree-packs").join(id.to_hex()))
    }

    /// Caches the stored bytes of a snapshot file.
    pub fn store_snapshot_bytes(&self, id: &[u8; 32], bytes: &[u8]) -> Result<()> {
        self.conn
            .execute("INSERT OR IGNORE INTO snapshots (id, bytes) VALUES (?1, ?2)", params![&id[..], bytes])
            .map(|_| ())
            .map_err(sql("snapshots"))
    }

    /// Drops cached snapshots that are no longer in the repository.
    pub fn retain_snapshots(&self, present: &HashSet<[u8; 32]>) -> Result<()> {
        let ids: Vec<Vec<u8>> = {
            let mut stmt = self.conn.prepare("SELECT id FROM snapshots").map_err(sql("snapshots"))?;
            let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0)).map_err(sql("snapshots"))?;
            rows.filter_map(|r| r.ok()).collect()
        };
        for id in ids {
            if to_id(&id).is_none_or(|b| !present.contains(&b)) {
                self.conn.execute("DELETE FROM snapshots WHERE id = ?1", [&id]).map_err(sql("snapshots"))?;
            }
        }
        Ok(())
    }

    /// The size of one pack in the merged index.
    pub fn pack_len(&self, pack: &PackId) -> Result<Option<u64>> {
        let mut stmt = self.conn.prepare_cached("SELECT len FROM packs WHERE id = ?1 LIMIT 1").map_err(sql("packs"))?;
        let len: Option<i64> = stmt.query_row([&pack.as_bytes()[..]], |r| r.get(0)).optional().map_err(sql("packs"))?;
        Ok(len.map(|l| l as u64))
    }

    /// Packs that a loaded index file other than `index_files` names.
    pub fn packs_outside(&self, index_files: &[IndexId]) -> Result<HashSet<PackId>> {
        let listed: HashSet<&[u8]> = index_files.iter().map(|i| &i.as_bytes()[..]).collect();
        let mut stmt = self
            .conn
            .prepare("SELECT p.id, i.id FROM packs p JOIN index_files i ON i.no = p.index_no")
            .map_err(sql("packs"))?;
        let mut rows = stmt.query([]).map_err(sql("packs"))?;
        let mut out = HashSet::new();
        while let Some(r) = rows.next().map_err(sql("packs"))? {
            let (pack, index): (Vec<u8>, Vec<u8>) = (r.get(0).map_err(sql("packs"))?, r.get(1).map_err(sql("packs"))?);
            if !listed.contains(index.as_slice())
                && let Some(p) = to_id(&pack)
            {
                out.insert(PackId::from_bytes(p));
            }
        }
        Ok(out)
    }

    /// Which loaded index files list which packs: one `(pack, index file)` pair per listing (a
    /// pack listed by two files appears twice). One row per pack, not per blob.
    pub fn pack_listings(&self) -> Result<Vec<(PackId, IndexId)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT p.id, i.id FROM packs p JOIN index_files i ON i.no = p.index_no WHERE i.loaded = 1")
            .map_err(sql("packs"))?;
        let rows =
            stmt.query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))).map_err(sql("packs"))?;
        let mut out = Vec::new();
        for row in rows {
            let (pack, index) = row.map_err(sql("packs"))?;
            if let (Some(pack), Some(index)) = (to_id(&pack), to_id(&index)) {
                out.push((PackId::from_bytes(pack), IndexId::from_bytes(index)));
            }
        }
        Ok(out)
    }

    /// Every pack in the merged index with its size.
    pub fn packs(&self) -> Result<Vec<(PackId, u64)>> {
        let mut stmt = self.conn.prepare("SELECT DISTINCT id, len FROM packs").map_err(sql("packs"))?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?))).map_err(sql("packs"))?;
        Ok(rows
            .filter_map(|r| r.ok())
            .filter_map(|(b, l)| to_id(&b).map(|b| (PackId::from_bytes(b), l as u64)))
            .collect())
    }
}

/// A pack that an index file lists as condemned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CondemnedRow {
    pub pack: PackId,
    pub since_ns: i64,
    pub len: u64,
    pub blobs: Vec<BlobEntry>,
    pub index_id: IndexId,
}

/// How much of one pack is still used, as prune sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackUsage {
    pub pack: PackId,
    pub len: u64,
    pub kind: BlobKind,
    pub blobs: u64,
    pub used_blobs: u64,
    /// Stored bytes of the blobs still used here.
    pub used_bytes: u64,
    /// Stored bytes of every blob in the pack.
    pub blob_bytes: u64,
}

impl Cache {
    /// Starts a fresh mark phase: an empty set of used blob ids, kept in the database so that
    /// memory does not grow with the repository.
    pub fn begin_mark(&self) -> Result<()> {
        self.conn
            .execute_batch(
                "CREATE TEMP TABLE IF NOT EXISTS used (id BLOB PRIMARY KEY) WITHOUT ROWID; DELETE FROM temp.used;",
            )
            .map_err(sql("mark"))
    }

    /// Marks a blob used; returns whether it was not marked before.
    pub fn mark_used(&self, id: &BlobId) -> Result<bool> {
        let mut stmt =
            self.conn.prepare_cached("INSERT OR IGNORE INTO temp.used (id) VALUES (?1)").map_err(sql("mark"))?;
        Ok(stmt.execute([&id.as_bytes()[..]]).map_err(sql("mark"))? == 1)
    }

    /// Whether a blob is marked used.
    pub fn is_used(&self, id: &BlobId) -> Result<bool> {
        let mut stmt = self.conn.prepare_cached("SELECT 1 FROM temp.used WHERE id = ?1").map_err(sql("mark"))?;
        stmt.exists([&id.as_bytes()[..]]).map_err(sql("mark"))
    }

    /// Runs `f` inside one transaction (batches many marks).
    pub fn in_transaction<T>(&mut self, f: impl FnOnce(&Self) -> Result<T>) -> Result<T> {
        self.conn.execute_batch("BEGIN").map_err(sql("begin"))?;
        match f(self) {
            Ok(v) => {
                self.conn.execute_batch("COMMIT").map_err(sql("commit"))?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    /// Usage of every indexed pack (a blob stored in several packs counts as used only in the
    /// smallest pack id holding it, so duplicates are reclaimed), and up to `missing_limit` used
    /// blobs that no live pack holds, in one pass: the merged index and the set of used blobs are both read in id order and merged, so
    /// the work is two sequential scans whatever the number of blobs, and memory holds one entry
    /// per pack.
    pub fn usage_scan(&self, missing_limit: usize) -> Result<(Vec<PackUsage>, Vec<BlobId>)> {
        let what = sql("usage");
        // Pack rows by number: (pack id, length). One entry per pack and index file naming it.
        let mut pack_rows: std::collections::HashMap<i64, ([u8; 32], u64)> = std::collections::HashMap::new();
        {
            let mut stmt = self.conn.prepare("SELECT no, id, len FROM packs").map_err(&what)?;
            let mut rows = stmt.query([]).map_err(&what)?;
            while let Some(r) = rows.next().map_err(&what)? {
                if let Some(id) = to_id(&r.get::<_, Vec<u8>>(1).map_err(&what)?) {
                    pack_rows.insert(r.get(0).map_err(&what)?, (id, r.get::<_, i64>(2).map_err(&what)? as u64));
                }
            }
        }
        let mut stats: std::collections::HashMap<[u8; 32], PackUsage> = std::collections::HashMap::new();
        let mut missing = Vec::new();
        let mut blob_stmt =
            self.conn.prepare("SELECT id, pack_no, kind, stored_len FROM blobs ORDER BY id").map_err(&what)?;
        let mut used_stmt = self.conn.prepare("SELECT id FROM temp.used ORDER BY id").map_err(&what)?;
        let mut blob_rows = blob_stmt.query([]).map_err(&what)?;
        let mut used_rows = used_stmt.query([]).map_err(&what)?;
        let mut next_used = || -> Result<Option<[u8; 32]>> {
            match used_rows.next().map_err(sql("usage"))? {
                Some(r) => Ok(Some(to_id(&r.get::<_, Vec<u8>>(0).map_err(sql("usage"))?).ok_or_else(bad_row)?)),
                None => Ok(None),
            }
        };
        let mut used = next_used()?;
        // The rows of one blob id: (pack, pack length, kind, stored_len), each pack once.
        let mut group: Vec<([u8; 32], u64, u8, u64)> = Vec::new();
        let mut group_id: Option<[u8; 32]> = None;
        let mut finish_group =
            |id: [u8; 32], group: &mut Vec<([u8; 32], u64, u8, u64)>, used: &mut Option<[u8; 32]>| {
                while let Some(u) = *used
                    && u < id
                {
                    if missing.len() < missing_limit {
                        missing.push(BlobId::from_bytes(u));
                    }
                    *used = next_used()?;
                }
                let is_used = *used == Some(id);
                if is_used {
                    *used = next_used()?;
                }
                let keeper = if is_used { group.iter().map(|g| g.0).min() } else { None };
                for (pack, pack_len, kind, len) in group.drain(..) {
                    let Ok(kind) = BlobKind::from_u8(kind) else { continue };
                    let u = stats.entry(pack).or_insert(PackUsage {
                        pack: PackId::from_bytes(pack),
                        len: pack_len,
                        kind,
                        blobs: 0,
                        used_blobs: 0,
                        used_bytes: 0,
                        blob_bytes: 0,
                    });
                    u.kind = u.kind.min(kind);
                    u.blobs += 1;
                    u.blob_bytes += len;
                    if keeper == Some(pack) {
                        u.used_blobs += 1;
                        u.used_bytes += len;
                    }
                }
                Ok::<(), Error>(())
            };
        while let Some(r) = blob_rows.next().map_err(&what)? {
            let id = to_id(&r.get::<_, Vec<u8>>(0).map_err(&what)?).ok_or_else(bad_row)?;
            let pack_no: i64 = r.get(1).map_err(&what)?;
            let kind: u8 = r.get(2).map_err(&what)?;
            let len = r.get::<_, i64>(3).map_err(&what)? as u64;
            if group_id != Some(id) {
                if let Some(previous) = group_id {
                    finish_group(previous, &mut group, &mut used)?;
                }
                group_id = Some(id);
            }
            let Some(&(pack, pack_len)) = pack_rows.get(&pack_no) else { continue };
            // The same blob in the same pack, named by two index files, counts once.
            if !group.iter().any(|g| g.0 == pack) {
                group.push((pack, pack_len, kind, len));
            }
        }
        if let Some(previous) = group_id {
            finish_group(previous, &mut group, &mut used)?;
        }
        // Used ids past the last indexed blob are missing too.
        while let Some(u) = used {
            if missing.len() >= missing_limit {
                break;
            }
            missing.push(BlobId::from_bytes(u));
            used = next_used()?;
        }
        let mut out: Vec<PackUsage> = stats.into_values().collect();
        out.sort_by_key(|u| u.pack);
        Ok((out, missing))
    }

    /// The blobs the merged index lists for one pack.
    pub fn pack_blobs(&self, pack: &PackId) -> Result<Vec<BlobEntry>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT DISTINCT b.id, b.kind, b.compression, b.offset, b.stored_len, b.plain_len
                 FROM packs p JOIN blobs b ON b.pack_no = p.no WHERE p.id = ?1 ORDER BY b.offset",
            )
            .map_err(sql("pack blobs"))?;
        let rows = stmt.query_map([&pack.as_bytes()[..]], read_entry_row).map_err(sql("pack blobs"))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, entry) = row.map_err(sql("pack blobs"))?;
            out.push(entry_from_row(BlobId::from_bytes(to_id(&id).ok_or_else(bad_row)?), entry)?);
        }
        Ok(out)
    }

    /// Whether a blob is used and `pack` is the copy that keeps it.
    pub fn is_keeper(&self, id: &BlobId, pack: &PackId) -> Result<bool> {
        if !self.is_used(id)? {
            return Ok(false);
        }
        let mut keeper: Option<PackId> = None;
        for (pack_no, _) in self.blob_rows(id)? {
            let p = self.pack_id(pack_no)?;
            keeper = Some(keeper.map_or(p, |k| k.min(p)));
        }
        Ok(keeper == Some(*pack))
    }

    /// Every condemned pack named by a live index file.
    pub fn condemned(&self) -> Result<Vec<CondemnedRow>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT c.pack, c.since_ns, c.len, c.entries, i.id FROM condemned c
                 JOIN index_files i ON i.no = c.index_no WHERE i.loaded = 1",
            )
            .map_err(sql("condemned"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                    r.get::<_, Vec<u8>>(4)?,
                ))
            })
            .map_err(sql("condemned"))?;
        let mut out = Vec::new();
        for row in rows {
            let (pack, since_ns, len, entries, index) = row.map_err(sql("condemned"))?;
            let bad = || Error::corrupt("local cache holds an invalid row; delete the cache folder");
            out.push(CondemnedRow {
                pack: PackId::from_bytes(to_id(&pack).ok_or_else(bad)?),
                since_ns,
                len: len as u64,
                blobs: decode_entries(&entries).ok_or_else(bad)?,
                index_id: IndexId::from_bytes(to_id(&index).ok_or_else(bad)?),
            });
        }
        Ok(out)
    }

    /// A blob's place in a condemned pack named by a live index file, if any. Slow (it decodes the
    /// blob lists of every condemned pack): only for reads that found nothing in the index.
    pub fn locate_condemned(&self, id: &BlobId) -> Result<Option<BlobLocation>> {
        for c in self.condemned()? {
            if let Some(entry) = c.blobs.iter().find(|b| b.id == *id) {
                return Ok(Some(BlobLocation { pack: c.pack, entry: *entry }));
            }
        }
        Ok(None)
    }

    /// The blobs of one condemned pack, as the live index files that condemn it list them.
    pub fn condemned_blobs(&self, pack: &PackId) -> Result<Vec<BlobEntry>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT c.entries FROM condemned c JOIN index_files i ON i.no = c.index_no
                 WHERE c.pack = ?1 AND i.loaded = 1 LIMIT 1",
            )
            .map_err(sql("condemned"))?;
        let entries: Option<Vec<u8>> =
            stmt.query_row([&pack.as_bytes()[..]], |r| r.get(0)).optional().map_err(sql("condemned"))?;
        match entries {
            Some(bytes) => decode_entries(&bytes).ok_or_else(bad_row),
            None => Ok(Vec::new()),
        }
    }

    /// Up to `limit` used blobs that no live pack holds and that are not in `elsewhere`.
    pub fn used_but_missing(&self, limit: usize, elsewhere: &HashSet<BlobId>) -> Result<Vec<BlobId>> {
        let mut stmt = self
            .conn
            .prepare("SELECT u.id FROM temp.used u WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.id = u.id)")
            .map_err(sql("missing"))?;
        let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0)).map_err(sql("missing"))?;
        let mut out = Vec::new();
        for r in rows {
            let Some(id) = to_id(&r.map_err(sql("missing"))?).map(BlobId::from_bytes) else { continue };
            if !elsewhere.contains(&id) {
                out.push(id);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Ids of the index files currently merged (live and not superseded).
    pub fn loaded_index_ids(&self) -> Result<Vec<IndexId>> {
        let mut stmt = self.conn.prepare("SELECT id FROM index_files WHERE loaded = 1").map_err(sql("read"))?;
        let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0)).map_err(sql("read"))?;
        Ok(rows.filter_map(|r| r.ok()).filter_map(|b| to_id(&b).map(IndexId::from_bytes)).collect())
    }

    /// Ids of every index file the cache knows, merged or superseded.
    pub fn known_index_ids(&self) -> Result<Vec<IndexId>> {
        let mut stmt = self.conn.prepare("SELECT id FROM index_files").map_err(sql("read"))?;
        let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0)).map_err(sql("read"))?;
        Ok(rows.filter_map(|r| r.ok()).filter_map(|b| to_id(&b).map(IndexId::from_bytes)).collect())
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        // The next run rebuilds a cache that SQLite found damaged during this one.
        if let Some(path) = self.path.take()
            && DAMAGE_SEEN.load(Ordering::SeqCst)
        {
            if let Ok(conn) = Connection::open_in_memory() {
                drop(std::mem::replace(&mut self.conn, conn));
            }
            discard(&path);
        }
    }
}

/// Deletes a cache database and its write-ahead log and shared-memory files.
fn discard(db: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

/// Creates a folder (and its missing parents) readable by the owner only, and makes an existing
/// one so: the cache holds the paths, sizes and times of every file backed up.
fn create_private_folder(folder: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(folder)?;
    let meta = std::fs::metadata(folder)?;
    if meta.permissions().mode() & 0o777 != 0o700 {
        std::fs::set_permissions(folder, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Creates the database file with mode 0600 before SQLite opens it (SQLite would create it with
/// 0644 under the usual umask), and makes an existing one 0600.
fn create_private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
    if file.metadata()?.permissions().mode() & 0o777 != 0o600 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// The columns `(first id, kind, compression, offset, stored_len, plain_len)` of a blob row.
type EntryRow = (Vec<u8>, (u8, u8, u32, u32, u32));

/// The columns `(pack row number, (kind, compression, offset, stored_len, plain_len))` of a blob row.
type NumberedRow = (i64, (u8, u8, u32, u32, u32));

fn read_numbered_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<NumberedRow> {
    Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
}

fn read_entry_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EntryRow> {
    Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
}

fn bad_row() -> Error {
    Error::corrupt("local cache holds an invalid row; delete the cache folder")
}

fn entry_from_row(
    id: BlobId,
    (kind, compression, offset, stored_len, plain_len): (u8, u8, u32, u32, u32),
) -> Result<BlobEntry> {
    Ok(BlobEntry {
        id,
        kind: BlobKind::from_u8(kind).map_err(|_| bad_row())?,
        compression: Compression::from_u8(compression).map_err(|_| bad_row())?,
        offset,
        stored_len,
        plain_len,
    })
}

/// What a sync did.
#[derive(Debug, Default)]
pub struct SyncStats {
    pub merged: usize,
    pub removed: usize,
    /// Index files that could not be read (damaged, or gone since they were listed).
    pub unreadable: Vec<Error>,
}

fn to_id(b: &[u8]) -> Option<[u8; 32]> {
    b.try_into().ok()
}

/// Drops an index file and everything merged from it.
fn forget_index(tx: &rusqlite::Transaction<'_>, id: IndexId) -> Result<()> {
    let no: Option<i64> = tx
        .query_row("SELECT no FROM index_files WHERE id = ?1", [&id.as_bytes()[..]], |r| r.get(0))
        .optional()
        .map_err(sql("delete"))?;
    let Some(no) = no else { return Ok(()) };
    unload_index(tx, no)?;
    tx.execute("DELETE FROM condemned WHERE index_no = ?1", [no]).map_err(sql("delete"))?;
    tx.execute("DELETE FROM index_files WHERE no = ?1", [no]).map_err(sql("delete"))?;
    Ok(())
}

/// Removes the packs and blobs of index file number `no` from the merged index (it stays known).
fn unload_index(tx: &rusqlite::Transaction<'_>, no: i64) -> Result<()> {
    tx.execute("DELETE FROM blobs WHERE pack_no IN (SELECT no FROM packs WHERE index_no = ?1)", [no])
        .map_err(sql("delete"))?;
    tx.execute("DELETE FROM packs WHERE index_no = ?1", [no]).map_err(sql("delete"))?;
    Ok(())
}

/// Makes an index file known (not yet merged) and returns its number and whether it is merged.
fn insert_index_file(tx: &rusqlite::Transaction<'_>, id: IndexId, supersedes: &[IndexId]) -> Result<(i64, bool)> {
    let mut sup = Vec::with_capacity(supersedes.len() * 32);
    for s in supersedes {
        sup.extend_from_slice(s.as_bytes());
    }
    let idb = &id.as_bytes()[..];
    tx.execute("INSERT OR IGNORE INTO index_files (id, supersedes, loaded) VALUES (?1, ?2, 0)", params![idb, sup])
        .map_err(sql("insert"))?;
    tx.query_row("SELECT no, loaded FROM index_files WHERE id = ?1", [idb], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(sql("read"))
}

/// Records a pack of index file `index_no` (or updates its length) and returns its row number.
fn insert_pack(tx: &rusqlite::Transaction<'_>, id: &PackId, index_no: i64, len: u64) -> Result<i64> {
    tx.prepare_cached(
        "INSERT INTO packs (id, index_no, len) VALUES (?1, ?2, ?3)
         ON CONFLICT (id, index_no) DO UPDATE SET len = excluded.len RETURNING no",
    )
    .map_err(sql("insert"))?
    .query_row(params![&id.as_bytes()[..], index_no, len as i64], |r| r.get(0))
    .map_err(sql("insert"))
}

/// Records the condemned packs of index file `index_no` and marks it merged.
fn finish_index(tx: &rusqlite::Transaction<'_>, index_no: i64, condemned: &[CondemnedPack]) -> Result<()> {
    let mut condemned_stmt = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO condemned (pack, index_no, since_ns, len, entries) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .map_err(sql("insert"))?;
    for c in condemned {
        let mut w = cairn_format::wire::Writer::new();
        for b in &c.pack.blobs {
            encode_entry(&mut w, b);
        }
        condemned_stmt
            .execute(params![&c.pack.id.as_bytes()[..], index_no, c.since_ns, c.pack.len as i64, w.into_bytes()])
            .map_err(sql("insert"))?;
    }
    tx.execute("UPDATE index_files SET loaded = 1 WHERE no = ?1", [index_no]).map_err(sql("update"))?;
    Ok(())
}

/// Whether a merge of `rows` blob rows builds the per-pack index afterwards (see `load_indexes`).
fn bulk_into_empty(tx: &rusqlite::Transaction<'_>, rows: usize) -> Result<bool> {
    Ok(rows >= BULK_ROWS
        && !tx.query_row("SELECT EXISTS (SELECT 1 FROM blobs)", [], |r| r.get::<_, bool>(0)).map_err(sql("read"))?)
}

/// Merges staged index files (by number) into the merged index; returns how many blob rows it
/// added. SQLite sorts the staged rows into blob id order (its external sorter: memory bounded by
/// the page cache size, the rest in temporary files), so the table's B-tree is written page after
/// page, as `load_indexes` does from memory.
fn load_staged(tx: &rusqlite::Transaction<'_>, files: &[(i64, &StagedIndex)]) -> Result<usize> {
    if files.is_empty() {
        return Ok(0);
    }
    let mut seq_stmt =
        tx.prepare_cached("INSERT INTO temp.staged_packs (seq, pack_no) VALUES (?1, ?2)").map_err(sql("insert"))?;
    let mut inserted = 0;
    for (index_no, file) in files {
        for (i, (id, len)) in file.packs.iter().enumerate() {
            let pack_no = insert_pack(tx, id, *index_no, *len)?;
            seq_stmt.execute(params![file.first_seq + i as i64, pack_no]).map_err(sql("insert"))?;
        }
        finish_index(tx, *index_no, &file.condemned)?;
        inserted += file.rows;
    }
    let rebuild_index = bulk_into_empty(tx, inserted)?;
    if rebuild_index {
        tx.execute_batch("DROP INDEX IF EXISTS blobs_by_pack").map_err(sql("insert"))?;
    }
    // CROSS JOIN keeps the staged rows the outer loop (one look-up of the pack per row); rows of
    // index files not merged here (another process merged them first) have no pack number.
    tx.execute(
        "INSERT OR IGNORE INTO blobs (id, pack_no, kind, compression, offset, stored_len, plain_len)
         SELECT b.id, p.pack_no, b.kind, b.compression, b.offset, b.stored_len, b.plain_len
         FROM temp.staged_blobs b CROSS JOIN temp.staged_packs p ON p.seq = b.seq
         ORDER BY b.id, p.pack_no",
        [],
    )
    .map_err(sql("insert"))?;
    if rebuild_index {
        tx.execute_batch(BLOBS_BY_PACK).map_err(sql("insert"))?;
    }
    Ok(inserted)
}

/// Merges index files (by number) into the merged index; returns how many blob rows it added.
///
/// The blob rows of all of them are inserted in blob id order, so the table's B-tree is written
/// page after page instead of at random: a cache larger than SQLite's page cache is not read and
/// rewritten over and over. Into an empty cache (a rebuild), the per-pack index is built after the
/// rows, by one sort: less than half the CPU time of keeping it up to date row by row, and its
/// pages come out full.
fn load_indexes<'a>(
    tx: &rusqlite::Transaction<'_>,
    files: impl IntoIterator<Item = (i64, &'a IndexFile)>,
) -> Result<usize> {
    let mut rows: Vec<(&BlobEntry, i64)> = Vec::new();
    for (index_no, file) in files {
        for p in &file.packs {
            let pack_no = insert_pack(tx, &p.id, index_no, p.len)?;
            rows.extend(p.blobs.iter().map(|b| (b, pack_no)));
        }
        finish_index(tx, index_no, &file.condemned)?;
    }
    rows.sort_unstable_by(|a, b| a.0.id.as_bytes().cmp(b.0.id.as_bytes()).then(a.1.cmp(&b.1)));
    let inserted = rows.len();
    let rebuild_index = bulk_into_empty(tx, inserted)?;
    if rebuild_index {
        tx.execute_batch("DROP INDEX IF EXISTS blobs_by_pack").map_err(sql("insert"))?;
    }
    let mut blob_stmt = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO blobs (id, pack_no, kind, compression, offset, stored_len, plain_len)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .map_err(sql("insert"))?;
    for (b, pack_no) in rows {
        blob_stmt
            .execute(params![
                &b.id.as_bytes()[..],
                pack_no,
                b.kind as u8,
                b.compression as u8,
                b.offset,
                b.stored_len,
                b.plain_len
            ])
            .map_err(sql("insert"))?;
    }
    if rebuild_index {
        tx.execute_batch(BLOBS_BY_PACK).map_err(sql("insert"))?;
    }
    Ok(inserted)
}

fn encode_entry(w: &mut cairn_format::wire::Writer, b: &BlobEntry) {
    w.u8(b.kind as u8);
    w.u8(b.compression as u8);
    w.u32(b.offset);
    w.u32(b.stored_len);
    w.u32(b.plain_len);
    w.raw(b.id.as_bytes());
}

fn decode_entries(bytes: &[u8]) -> Option<Vec<BlobEntry>> {
    let mut r = cairn_format::wire::Reader::new(bytes, "cache entry");
    let mut out = Vec::new();
    while r.remaining() > 0 {
        out.push(BlobEntry {
            kind: BlobKind::from_u8(r.u8().ok()?).ok()?,
            compression: Compression::from_u8(r.u8().ok()?).ok()?,
            offset: r.u32().ok()?,
            stored_len: r.u32().ok()?,
            plain_len: r.u32().ok()?,
            id: BlobId::from_bytes(r.id().ok()?),
        });
    }
    Some(out)
}

/// When `check` last read a pack and found it whole, at each depth (Unix nanoseconds; 0 = never).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PackCheckTimes {
    /// Last time the pack's bytes were found to match its name.
    pub hashed_ns: i64,
    /// Last time every blob of the pack was decrypted and authenticated.
    pub decrypted_ns: i64,
}

const PACK_CHECKS_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS pack_checks (
    pack BLOB PRIMARY KEY,
    hashed_ns INTEGER NOT NULL,
    decrypted_ns INTEGER NOT NULL
) WITHOUT ROWID;";

impl Cache {
    /// When each pack was last verified by `check`. Used only to choose which packs a partial
    /// `check --read-data-subset` reads first; losing it only changes that order.
    pub fn pack_check_times(&self) -> Result<std::collections::HashMap<PackId, PackCheckTimes>> {
        self.conn.execute_batch(PACK_CHECKS_SCHEMA).map_err(sql("pack checks"))?;
        let mut stmt =
            self.conn.prepare("SELECT pack, hashed_ns, decrypted_ns FROM pack_checks").map_err(sql("pack checks"))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))
            .map_err(sql("pack checks"))?;
        let mut out = std::collections::HashMap::new();
        for row in rows {
            let (pack, hashed_ns, decrypted_ns) = row.map_err(sql("pack checks"))?;
            if let Some(b) = to_id(&pack) {
                out.insert(PackId::from_bytes(b), PackCheckTimes { hashed_ns, decrypted_ns });
            }
        }
        Ok(out)
    }

    /// Records that `packs` were read at `now_ns` and found whole (`decrypted`: every blob was also
    /// authenticated), and forgets packs that are no longer in `present`.
    pub fn record_pack_checks(
        &mut self,
        packs: &[PackId],
        decrypted: bool,
        now_ns: i64,
        present: &HashSet<PackId>,
    ) -> Result<()> {
        self.conn.execute_batch(PACK_CHECKS_SCHEMA).map_err(sql("pack checks"))?;
        let tx = self.conn.transaction().map_err(sql("begin"))?;
        {
            let known: Vec<Vec<u8>> = {
                let mut stmt = tx.prepare("SELECT pack FROM pack_checks").map_err(sql("pack checks"))?;
                let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0)).map_err(sql("pack checks"))?;
                rows.filter_map(|r| r.ok()).collect()
            };
            for k in known {
                if to_id(&k).is_none_or(|b| !present.contains(&PackId::from_bytes(b))) {
                    tx.execute("DELETE FROM pack_checks WHERE pack = ?1", [&k]).map_err(sql("pack checks"))?;
                }
            }
            let sql_text = if decrypted {
                "INSERT INTO pack_checks (pack, hashed_ns, decrypted_ns) VALUES (?1, ?2, ?2)
                 ON CONFLICT(pack) DO UPDATE SET hashed_ns = excluded.hashed_ns, decrypted_ns = excluded.decrypted_ns"
            } else {
                "INSERT INTO pack_checks (pack, hashed_ns, decrypted_ns) VALUES (?1, ?2, 0)
                 ON CONFLICT(pack) DO UPDATE SET hashed_ns = excluded.hashed_ns"
            };
            let mut stmt = tx.prepare_cached(sql_text).map_err(sql("pack checks"))?;
            for p in packs {
                stmt.execute(params![&p.as_bytes()[..], now_ns]).map_err(sql("pack checks"))?;
            }
        }
        tx.commit().map_err(sql("commit"))
    }
}

impl Cache {
    /// Every location the merged index knows for a blob (a blob may be stored more than once), so
    /// that a reader can fall back to another copy when one is damaged.
    pub fn locate_all(&self, id: &BlobId) -> Result<Vec<BlobLocation>> {
        let mut out: Vec<BlobLocation> = Vec::new();
        for (pack_no, entry) in self.blob_rows(id)? {
            let location = BlobLocation { pack: self.pack_id(pack_no)?, entry: entry_from_row(*id, entry)? };
            // The same copy named by two index files is one location.
            if !out.contains(&location) {
                out.push(location);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use cairn_format::index::{CondemnedPack, IndexedPack};

    use super::*;

    fn entry(n: u8, offset: u32) -> BlobEntry {
        BlobEntry {
            kind: BlobKind::Data,
            id: BlobId::from_bytes([n; 32]),
            compression: Compression::Raw,
            offset,
            stored_len: 10,
            plain_len: 10,
        }
    }

    /// Regression: two processes share the cache. One listed the repository's index files; before
    /// it read the cache's own list, the other wrote (and added) a new index file. The first used
    /// to forget that file as "vanished", dropping its packs (and its supersedes list, so that an
    /// older index naming since-deleted packs could come back) from every process's view.
    #[test]
    fn an_index_file_added_by_another_process_during_a_listing_is_not_forgotten() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let repo_id = [8; 32];
        let mut first = Cache::open(Some(dir.path()), &repo_id).expect("cache");
        let mut second = Cache::open(Some(dir.path()), &repo_id).expect("same cache, other connection");
        let old_id = IndexId::from_bytes([1; 32]);
        let old = IndexFile {
            supersedes: Vec::new(),
            packs: vec![IndexedPack { id: PackId::from_bytes([2; 32]), len: 10, blobs: vec![entry(3, 0)] }],
            condemned: Vec::new(),
        };
        first.add_index(old_id, &old).expect("add");
        let new_id = IndexId::from_bytes([4; 32]);
        let new = IndexFile {
            supersedes: vec![old_id],
            packs: vec![IndexedPack { id: PackId::from_bytes([5; 32]), len: 10, blobs: vec![entry(6, 0)] }],
            condemned: Vec::new(),
        };
        // The listing shows only the old file; the new one is written and added right after the
        // cache's list was read (here: inside the listing).
        let stats = first
            .sync_index(
                || {
                    second.add_index(new_id, &new)?;
                    Ok(vec![old_id])
                },
                |id| if id == old_id { Ok(old.clone()) } else { Ok(new.clone()) },
            )
            .expect("sync");
        assert_eq!(stats.removed, 0);
        assert!(first.has_blob(&BlobId::from_bytes([6; 32])).expect("lookup"), "the new index was forgotten");
        // A later sync that lists both sees the old file superseded.
        first.sync_index(|| Ok(vec![old_id, new_id]), |_| Ok(new.clone())).expect("sync");
        assert!(!first.has_blob(&BlobId::from_bytes([3; 32])).expect("lookup"));
        assert!(first.has_blob(&BlobId::from_bytes([6; 32])).expect("lookup"));
    }

    fn one_index() -> IndexFile {
        IndexFile {
            supersedes: Vec::new(),
            packs: vec![IndexedPack { id: PackId::from_bytes([2; 32]), len: 10, blobs: vec![entry(3, 0)] }],
            condemned: Vec::new(),
        }
    }

    #[test]
    fn a_cache_of_another_layout_version_or_another_copy_is_rebuilt_and_an_unusable_folder_falls_back_to_memory() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let repo_id = [8; 32];
        let blob = BlobId::from_bytes([3; 32]);
        let fill = |origin: &[u8]| {
            let (mut cache, notice) = Cache::open_checked(Some(dir.path()), &repo_id, origin);
            cache.add_index(IndexId::from_bytes([1; 32]), &one_index()).expect("add");
            (cache, notice)
        };
        let (cache, notice) = fill(b"copy a");
        assert_eq!(notice, None, "a new cache is no news");
        let db = cache.path().expect("on disk").to_path_buf();
        drop(cache);
        let (cache, notice) = Cache::open_checked(Some(dir.path()), &repo_id, b"copy a");
        assert_eq!(notice, None);
        assert!(cache.has_blob(&blob).expect("lookup"), "the same copy keeps its cache");
        drop(cache);

        for version in [0, CACHE_VERSION + 1] {
            let conn = Connection::open(&db).expect("open");
            conn.pragma_update(None, "user_version", version).expect("set version");
            drop(conn);
            let (cache, notice) = Cache::open_checked(Some(dir.path()), &repo_id, b"copy a");
            assert!(notice.is_some_and(|n| n.contains("rebuilt")), "version {version}");
            assert!(!cache.has_blob(&blob).expect("lookup"), "version {version}: nothing kept");
            let version: i32 = cache.conn.query_row("PRAGMA user_version", [], |r| r.get(0)).expect("version");
            assert_eq!(version, CACHE_VERSION);
            drop(cache);
            drop(fill(b"copy a"));
        }

        let (cache, notice) = Cache::open_checked(Some(dir.path()), &repo_id, b"copy b");
        assert!(notice.is_some_and(|n| n.contains("another copy")));
        assert!(!cache.has_blob(&blob).expect("lookup"));
        drop(cache);

        let file = dir.path().join("a file");
        std::fs::write(&file, b"x").expect("write");
        let (mut cache, notice) = Cache::open_checked(Some(&file), &repo_id, b"copy a");
        assert!(notice.is_some_and(|n| n.contains("without a cache")));
        assert_eq!(cache.path(), None);
        cache.add_index(IndexId::from_bytes([1; 32]), &one_index()).expect("an in-memory cache works");
        assert!(cache.has_blob(&blob).expect("lookup"));
    }

    /// An index file of `packs` packs of `per_pack` blobs with ids derived from `seed`.
    fn many_blobs(seed: u32, packs: u32, per_pack: u32) -> IndexFile {
        let id = |n: u32, salt: u8| {
            let mut b = [salt; 32];
            b[..4].copy_from_slice(&seed.to_le_bytes());
            b[4..8].copy_from_slice(&n.to_be_bytes());
            // Spread the ids like hashes, so rows do not arrive in id order.
            b.reverse();
            b
        };
        IndexFile {
            supersedes: Vec::new(),
            packs: (0..packs)
                .map(|p| IndexedPack {
                    id: PackId::from_bytes(id(p, 0xaa)),
                    len: u64::from(per_pack) * 10,
                    blobs: (0..per_pack)
                        .map(|i| BlobEntry { id: BlobId::from_bytes(id(p * per_pack + i, 0x55)), ..entry(0, i * 10) })
                        .collect(),
                })
                .collect(),
            condemned: Vec::new(),
        }
    }

    /// A rebuild (a bulk merge into an empty cache, which builds the per-pack index after the
    /// rows) answers exactly like index files merged one by one; forgetting most of them gives the
    /// freed pages back to the file system.
    #[test]
    fn a_bulk_rebuild_answers_like_merging_one_by_one_and_a_large_removal_shrinks_the_file() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let files: Vec<(IndexId, IndexFile)> = (0..4u8)
            .map(|n| (IndexId::from_bytes([n + 1; 32]), many_blobs(u32::from(n), 40, BULK_ROWS as u32 / 80)))
            .collect();
        let ids: Vec<IndexId> = files.iter().map(|f| f.0).collect();
        let fetch = |want: IndexId| Ok(files.iter().find(|f| f.0 == want).expect("listed").1.clone());
        let mut bulk = Cache::open(Some(&dir.path().join("bulk")), &[1; 32]).expect("cache");
        let stats = bulk.sync_index(|| Ok(ids.clone()), fetch).expect("sync");
        assert_eq!(stats.merged, 4);
        let mut one_by_one = Cache::open(None, &[1; 32]).expect("cache");
        for (id, file) in &files {
            one_by_one.add_index(*id, file).expect("add");
        }
        assert_eq!(bulk.counts().expect("counts"), one_by_one.counts().expect("counts"));
        assert_eq!(bulk.counts().expect("counts").0, 4 * 40 * (BULK_ROWS as u64 / 80));
        for (_, file) in &files {
            for pack in file.packs.iter().step_by(7) {
                assert_eq!(bulk.pack_blobs(&pack.id).expect("pack blobs"), pack.blobs);
                assert_eq!(one_by_one.pack_blobs(&pack.id).expect("pack blobs"), pack.blobs);
                for b in pack.blobs.iter().step_by(13) {
                    let found = bulk.locate(&b.id).expect("locate");
                    assert_eq!(found, Some(BlobLocation { pack: pack.id, entry: *b }));
                    assert_eq!(found, one_by_one.locate(&b.id).expect("locate"));
                    assert_eq!(bulk.locate_all(&b.id).expect("locate all"), vec![found.expect("found")]);
                }
            }
        }

        let pages =
            |cache: &Cache| -> i64 { cache.conn.query_row("PRAGMA page_count", [], |r| r.get(0)).expect("page count") };
        let before = pages(&bulk);
        bulk.sync_index(|| Ok(vec![ids[0]]), fetch).expect("sync");
        assert_eq!(bulk.counts().expect("counts").0, 40 * (BULK_ROWS as u64 / 80));
        let after = pages(&bulk);
        assert!(after * 2 < before, "{before} pages before forgetting three quarters, {after} after");
    }

    /// A sync decodes index files a few at a time and stages their rows before SQLite sorts them
    /// in. Where the batches split the files must not matter: the same blob listed by index files
    /// in different batches (and in two packs of each), a file superseded by one of a
    /// later batch, condemned packs, and an unreadable file between them give the same answers as
    /// one batch and as adding the files one by one.
    #[test]
    fn a_sync_answers_the_same_whatever_the_batch_size() {
        let shared = BlobId::from_bytes([0xee; 32]);
        let with_shared = |seed: u32| {
            let mut f = many_blobs(seed, 3, 5);
            f.packs[0].blobs.push(BlobEntry { id: shared, ..entry(0, 500) });
            f.packs[1].blobs.push(BlobEntry { id: shared, ..entry(0, 600) });
            f
        };
        let id = |n: u8| IndexId::from_bytes([n; 32]);
        let mut files: Vec<(IndexId, IndexFile)> = vec![
            (id(1), with_shared(1)),
            (id(2), many_blobs(2, 2, 4)),
            (id(3), with_shared(3)),
            (id(5), many_blobs(5, 1, 3)),
            (id(6), with_shared(6)),
        ];
        // File 6 supersedes file 2 (a prune's rewrite) and condemns a pack; file 1 condemns another.
        files[4].1.supersedes = vec![id(2)];
        files[4].1.condemned = vec![CondemnedPack { since_ns: 7, pack: files[1].1.packs[0].clone() }];
        files[0].1.condemned = vec![CondemnedPack { since_ns: 3, pack: files[1].1.packs[1].clone() }];
        let mut listed: Vec<IndexId> = files.iter().map(|f| f.0).collect();
        listed.insert(3, id(4)); // damaged
        let fetch = |want: IndexId| match files.iter().find(|f| f.0 == want) {
            Some(f) => Ok(f.1.clone()),
            None => Err(Error::new(ErrorKind::Corrupt, "index file 04 is damaged")),
        };
        let mut one_by_one = Cache::open(None, &[1; 32]).expect("cache");
        for (i, f) in files.iter().filter(|f| f.0 != id(2)) {
            one_by_one.add_index(*i, f).expect("add");
        }
        let dir = tempfile::tempdir().expect("temporary folder");
        for batch in [1, 2, 4, 100] {
            let mut cache = Cache::open(Some(&dir.path().join(batch.to_string())), &[1; 32]).expect("cache");
            let stats = cache.sync_index_in_batches(|| Ok(listed.clone()), fetch, batch).expect("sync");
            assert_eq!((stats.merged, stats.removed, stats.unreadable.len()), (4, 0, 1), "batch {batch}");
            assert_eq!(cache.counts().expect("counts"), one_by_one.counts().expect("counts"), "batch {batch}");
            let mut all = cache.locate_all(&shared).expect("locate all");
            let mut expected = one_by_one.locate_all(&shared).expect("locate all");
            all.sort_by_key(|l| (*l.pack.as_bytes(), l.entry.offset));
            expected.sort_by_key(|l| (*l.pack.as_bytes(), l.entry.offset));
            assert_eq!(all.len(), 6, "batch {batch}: two packs in each of three files");
            assert_eq!(all, expected, "batch {batch}");
            for (i, f) in &files {
                for p in &f.packs {
                    let blobs = cache.pack_blobs(&p.id).expect("pack blobs");
                    assert_eq!(blobs, one_by_one.pack_blobs(&p.id).expect("pack blobs"), "batch {batch}");
                    assert_eq!(blobs.is_empty(), *i == id(2), "batch {batch}: only the superseded file is unmerged");
                    assert_eq!(cache.pack_len(&p.id).expect("len"), one_by_one.pack_len(&p.id).expect("len"));
                }
            }
            for c in files[4].1.condemned.iter().chain(&files[0].1.condemned) {
                assert_eq!(cache.condemned_blobs(&c.pack.id).expect("condemned"), c.pack.blobs, "batch {batch}");
            }
            // A later sync after the damaged file is repaired merges it alone; nothing else changes.
            let mut repaired = files.clone();
            repaired.push((id(4), many_blobs(4, 1, 2)));
            let fetch_repaired = |want: IndexId| Ok(repaired.iter().find(|f| f.0 == want).expect("listed").1.clone());
            let stats = cache.sync_index_in_batches(|| Ok(listed.clone()), fetch_repaired, batch).expect("sync");
            assert_eq!((stats.merged, stats.removed, stats.unreadable.len()), (1, 0, 0), "batch {batch}");
            let (blobs, _) = one_by_one.counts().expect("counts");
            assert_eq!(cache.counts().expect("counts").0, blobs + 2, "batch {batch}");
        }
    }

    #[test]
    fn per_pack_and_batched_lookups_answer_like_single_lookups() {
        let mut cache = Cache::open(None, &[7; 32]).expect("in-memory cache");
        let live = IndexedPack { id: PackId::from_bytes([1; 32]), len: 100, blobs: vec![entry(3, 40), entry(2, 0)] };
        let gone = IndexedPack { id: PackId::from_bytes([9; 32]), len: 50, blobs: vec![entry(5, 0)] };
        let file = IndexFile {
            supersedes: Vec::new(),
            packs: vec![live.clone()],
            condemned: vec![CondemnedPack { since_ns: 1, pack: gone.clone() }],
        };
        cache.add_index(IndexId::from_bytes([4; 32]), &file).expect("add index");

        // Blobs of one pack, in pack order, through the per-pack index.
        let blobs = cache.pack_blobs(&live.id).expect("pack blobs");
        assert_eq!(blobs.iter().map(|b| b.offset).collect::<Vec<_>>(), vec![0, 40]);
        assert_eq!(cache.pack_len(&live.id).expect("len"), Some(100));
        assert_eq!(cache.pack_len(&gone.id).expect("len"), None);
        assert_eq!(cache.condemned_blobs(&gone.id).expect("condemned"), gone.blobs);
        assert_eq!(cache.condemned_blobs(&live.id).expect("condemned"), Vec::new());
        // A blob only a condemned pack holds: unknown to lookups (so never deduplicated against),
        // but found for reading.
        let only_condemned = BlobId::from_bytes([5; 32]);
        assert_eq!(cache.locate(&only_condemned).expect("locate"), None);
        assert_eq!(cache.locate_condemned(&only_condemned).expect("locate condemned").map(|l| l.pack), Some(gone.id));
        assert_eq!(cache.locate_condemned(&BlobId::from_bytes([2; 32])).expect("locate condemned"), None);

        // More ids than one query takes, known and unknown mixed, with repeats.
        let mut ids: Vec<BlobId> = (0..200u32).map(|i| BlobId::from_bytes([(i % 7) as u8 + 10; 32])).collect();
        ids.push(BlobId::from_bytes([2; 32]));
        ids.push(BlobId::from_bytes([3; 32]));
        ids.push(BlobId::from_bytes([5; 32]));
        let known = cache.known_blobs(&ids).expect("batched lookup");
        let expected: HashSet<BlobId> = ids.iter().filter(|id| cache.has_blob(id).expect("lookup")).copied().collect();
        assert_eq!(known, expected);
        assert_eq!(known.len(), 2, "only the live pack's blobs are known: {known:?}");
        assert!(cache.known_blobs(&[]).expect("empty lookup").is_empty());

        // Located in one transaction: each id in order, as a single lookup answers it.
        let located = cache.locate_many(&ids).expect("located in one transaction");
        let single: Vec<Option<BlobLocation>> = ids.iter().map(|id| cache.locate(id).expect("locate")).collect();
        assert_eq!(located, single);
        assert_eq!(located.iter().flatten().count(), 2, "the live pack's two blobs: {located:?}");
        assert_eq!(located[ids.len() - 2].map(|l| (l.pack, l.entry.offset)), Some((live.id, 40)));
        assert!(cache.locate_many(&[]).expect("empty lookup").is_empty());
    }
}
