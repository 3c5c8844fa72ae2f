//! Read-ahead for file backups: a thread that visits the folders a backup is about to walk, in the
//! same order and a bounded distance ahead, so that the disk is busy while the walk hashes and the
//! key is derived.
//!
//! It reads folder listings and file metadata, which fills the kernel's inode and directory caches
//! (a walk of a cold tree of small files otherwise waits for one disk read per folder). When the
//! backup reads file contents anyway (no parent snapshot, or `--force`), it also asks the kernel to
//! start reading small files (`posix_fadvise(WILLNEED)`), so their reads overlap instead of queueing
//! one after the other. The listings it makes (names and `lstat` results, sorted) are handed to
//! the walk, which then neither lists those folders nor looks at their entries again: the walk
//! stores what it would have stored had it listed the folder a moment earlier itself. It only ever
//! reads, and stopping it (or its failing to read anything) changes nothing but speed: a folder
//! without a listing is listed by the walk.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::filter::PatternSet;

/// How far ahead of the walk the read-ahead may be: entries, and bytes of files it hinted.
const AHEAD_ENTRIES: u64 = 4096;
const AHEAD_BYTES: u64 = 64 * 1024 * 1024;
/// Files larger than this are left to the kernel's own sequential read-ahead and the backup's
/// reader thread.
const HINT_MAX_FILE: u64 = 1024 * 1024;
/// Threads that list sub-folders as soon as the read-ahead sees them, so that several disk reads
/// are in flight at once, and how many folders may wait for them.
const LISTERS: usize = 3;
const LISTER_QUEUE: usize = 256;
/// At most this many entries of folder listings wait for the walk (more are not kept: listings of
/// folders the walk skips, `--exclude-if-present` say, are never taken).
const LISTED_MAX: usize = 16384;

/// A folder's entries as the read-ahead found them, sorted by name: name, path and `lstat` result.
pub type Listing = Vec<(OsString, PathBuf, std::io::Result<std::fs::Metadata>)>;

#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    /// Whether file contents are hinted too (set once the backup knows it will read them).
    contents: AtomicBool,
    /// Entries and file bytes the walk has reached.
    walked_entries: AtomicU64,
    walked_bytes: AtomicU64,
    /// Listings of folders the walk has not reached yet, and how many entries they hold.
    listings: Mutex<HashMap<PathBuf, Listing>>,
    listed: AtomicU64,
}

/// A running read-ahead; stops when dropped.
#[derive(Debug)]
pub struct ReadAhead {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ReadAhead {
    /// Starts reading ahead of a backup of `sources` that excludes `excludes` (the same patterns
    /// the backup uses, so both count the same entries).
    pub fn start(sources: &[PathBuf], excludes: PatternSet) -> Self {
        let shared = Arc::new(Shared::default());
        let mut roots: Vec<PathBuf> = sources.iter().filter_map(|p| std::path::absolute(p).ok()).collect();
        roots.sort();
        let inner = shared.clone();
        let thread = std::thread::Builder::new()
            .name("cairn-read-ahead".to_owned())
            .spawn(move || {
                let (folders, queue) = std::sync::mpsc::sync_channel::<PathBuf>(LISTER_QUEUE);
                let queue = std::sync::Mutex::new(queue);
                std::thread::scope(|scope| {
                    for _ in 0..LISTERS {
                        scope.spawn(|| list_folders(&queue, &inner.stop));
                    }
                    let mut visitor = Visitor { shared: &inner, excludes, folders, entries: 0, bytes: 0 };
                    for root in &roots {
                        if visitor.visit(root).is_err() {
                            break;
                        }
                    }
                    // Dropping the visitor closes the queue; the listers finish what is queued.
                });
            })
            .ok();
        Self { shared, thread }
    }

    /// A read-ahead for the backup `opts` describes, when it backs up files.
    pub fn for_backup(opts: &crate::commands::backup::BackupOptions) -> Option<Self> {
        let crate::commands::backup::BackupSource::Files(sources) = &opts.source else { return None };
        let mut patterns = opts.excludes.clone();
        // An unreadable exclude file is the backup's error to report; without it, no read-ahead.
        patterns.extend(PatternSet::from_files(&opts.exclude_files).ok()?);
        Some(Self::start(sources, PatternSet::new(&patterns).ok()?))
    }

    /// From now on, also start reading the contents of small files.
    pub fn read_contents(&self, yes: bool) {
        self.shared.contents.store(yes, Ordering::Relaxed);
    }

    /// The listing of `folder` if the read-ahead made one (it then is the walk's, taken once): the
    /// walk need not list the folder and look at each entry again. `None` when the read-ahead has
    /// not reached the folder, could not list it whole, or kept no more listings.
    pub fn take_listing(&self, folder: &Path) -> Option<Listing> {
        let listing = self.shared.listings.lock().unwrap_or_else(|p| p.into_inner()).remove(folder)?;
        self.shared.listed.fetch_sub(listing.len() as u64, Ordering::Relaxed);
        Some(listing)
    }

    /// The walk reached one more entry (of `size` bytes when it is a file).
    pub fn walked(&self, size: u64) {
        self.shared.walked_entries.fetch_add(1, Ordering::Relaxed);
        self.shared.walked_bytes.fetch_add(size, Ordering::Relaxed);
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Stopped: the backup no longer needs the read-ahead.
struct Stopped;

struct Visitor<'a> {
    shared: &'a Shared,
    excludes: PatternSet,
    /// Sub-folders for the listers.
    folders: std::sync::mpsc::SyncSender<PathBuf>,
    entries: u64,
    bytes: u64,
}

/// Lists the folders from `queue` and looks at each entry (which fills the kernel's caches).
fn list_folders(queue: &std::sync::Mutex<std::sync::mpsc::Receiver<PathBuf>>, stop: &AtomicBool) {
    loop {
        let next = queue.lock().unwrap_or_else(|p| p.into_inner()).recv();
        let Ok(folder) = next else { return };
        let Ok(listing) = std::fs::read_dir(&folder) else { continue };
        for entry in listing.flatten() {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let _ = std::fs::symlink_metadata(entry.path());
        }
    }
}

impl Visitor<'_> {
    /// Waits while too far ahead of the walk.
    fn pace(&self) -> Result<(), Stopped> {
        loop {
            if self.shared.stop.load(Ordering::Relaxed) {
                return Err(Stopped);
            }
            let entries_ahead = self.entries.saturating_sub(self.shared.walked_entries.load(Ordering::Relaxed));
            let bytes_ahead = self.bytes.saturating_sub(self.shared.walked_bytes.load(Ordering::Relaxed));
            if entries_ahead < AHEAD_ENTRIES && bytes_ahead < AHEAD_BYTES {
                return Ok(());
            }
            std::thread::park_timeout(Duration::from_millis(1));
        }
    }

    fn visit(&mut self, path: &Path) -> Result<(), Stopped> {
        self.pace()?;
        if !self.excludes.is_empty() && self.excludes.matches(&path.to_string_lossy()) {
            return Ok(());
        }
        let Ok(meta) = std::fs::symlink_metadata(path) else { return Ok(()) };
        self.entries += 1;
        self.look_at(path, &meta)
    }

    /// Hints a file's contents, or lists a folder: looks at each entry, offers the listing to the
    /// walk, then visits the sub-folders.
    fn look_at(&mut self, path: &Path, meta: &std::fs::Metadata) -> Result<(), Stopped> {
        if meta.is_file() {
            self.bytes += meta.len();
            if meta.len() <= HINT_MAX_FILE && meta.len() > 0 && self.shared.contents.load(Ordering::Relaxed) {
                hint_contents(path);
            }
            return Ok(());
        }
        if !meta.is_dir() {
            return Ok(());
        }
        // Where the walk counts this folder: a listing is only worth keeping while the walk has
        // not got there yet.
        let position = self.entries;
        let Ok(listing) = std::fs::read_dir(path) else { return Ok(()) };
        let mut complete = true;
        // The listing's own file types (no extra `lstat`) tell the sub-folders.
        let mut children: Vec<(OsString, PathBuf, bool)> = Vec::new();
        for entry in listing {
            match entry {
                Ok(e) => children.push((e.file_name(), e.path(), e.file_type().is_ok_and(|t| t.is_dir()))),
                // The walk lists this folder itself and reports what failed.
                Err(_) => complete = false,
            }
        }
        children.sort();
        // Sub-folders are listed ahead by the listers (when they keep up; otherwise skipped).
        for (_, child, is_dir) in &children {
            if *is_dir && (self.excludes.is_empty() || !self.excludes.matches(&child.to_string_lossy())) {
                let _ = self.folders.try_send(child.clone());
            }
        }
        let mut looked_at: Listing = Vec::with_capacity(children.len());
        for (name, child, _) in children {
            self.pace()?;
            let meta = std::fs::symlink_metadata(&child);
            if !self.excludes.is_empty() && self.excludes.matches(&child.to_string_lossy()) {
                looked_at.push((name, child, meta));
                continue;
            }
            self.entries += 1;
            if let Ok(m) = &meta
                && m.is_file()
            {
                self.look_at(&child, m)?;
            }
            looked_at.push((name, child, meta));
        }
        let sub_folders: Vec<(PathBuf, std::fs::Metadata)> = looked_at
            .iter()
            .filter_map(|(_, child, m)| match m {
                Ok(m)
                    if m.is_dir() && (self.excludes.is_empty() || !self.excludes.matches(&child.to_string_lossy())) =>
                {
                    Some((child.clone(), m.clone()))
                }
                _ => None,
            })
            .collect();
        let walk_is_behind = self.shared.walked_entries.load(Ordering::SeqCst) < position;
        let room = self.shared.listed.load(Ordering::Relaxed) + (looked_at.len() as u64) <= LISTED_MAX as u64;
        if complete && walk_is_behind && room {
            self.shared.listed.fetch_add(looked_at.len() as u64, Ordering::Relaxed);
            self.shared.listings.lock().unwrap_or_else(|p| p.into_inner()).insert(path.to_path_buf(), looked_at);
        }
        for (child, meta) in sub_folders {
            self.look_at(&child, &meta)?;
        }
        Ok(())
    }
}

/// Asks the kernel to start reading a file into the page cache; returns at once.
fn hint_contents(path: &Path) {
    // Non-blocking, in case a FIFO took the file's place since it was looked at.
    let Ok(file) = std::fs::OpenOptions::new().read(true).custom_flags(nix::libc::O_NONBLOCK).open(path) else {
        return;
    };
    let _ = nix::fcntl::posix_fadvise(&file, 0, 0, nix::fcntl::PosixFadviseAdvice::POSIX_FADV_WILLNEED);
}
