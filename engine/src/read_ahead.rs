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
/// own reading (which hints 32 MiB ahead).
const HINT_MAX_FILE: u64 = 1024 * 1024;
/// Threads that list sub-folders as soon as the read-ahead sees them, so that several disk reads
/// are in flight at once, and how many folders may wait for them.
const LISTERS: usize = 3;
const LISTER_QUEUE: usize = 256;
/// At most this many entries of folder listings wait for the walk (more are not kept: listings of
/// folders the walk skips, `--exclude-if-present` say, are never taken).
const LISTED_MAX: usize = 16384;

/// A folder's entries as the read-ahead found them, sorted by name.
pub type Listing = Vec<ListedEntry>;

/// One entry of a folder listing: its name, path, `lstat` result and, when that succeeded, its
/// extended attributes (with a warning for each that could not be read). Reading the attributes
/// here, on the read-ahead's threads, takes a path lookup per entry off the walk's thread.
#[derive(Debug)]
pub struct ListedEntry {
    pub name: OsString,
    pub path: PathBuf,
    pub meta: std::io::Result<std::fs::Metadata>,
    pub xattrs: Vec<cairn_format::tree::Xattr>,
    pub xattr_warnings: Vec<String>,
}

#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    /// Whether file contents are hinted too (set once the backup knows it will read them).
    contents: AtomicBool,
    /// Entries and file bytes the walk has reached.
    walked_entries: AtomicU64,
    walked_bytes: AtomicU64,
    /// Listings of folders the walk has not reached yet, and how many entries they hold.
    listings: Mutex<HashMap<PathBuf, (u64, Listing)>>,
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
                let (folders, queue) = std::sync::mpsc::sync_channel::<(PathBuf, u64)>(LISTER_QUEUE);
                let queue = std::sync::Mutex::new(queue);
                std::thread::scope(|scope| {
                    for _ in 0..LISTERS {
                        scope.spawn(|| list_folders(&queue, &inner));
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
        // An unreadable exclude file is the backup's error to report; without it, no read-ahead.
        Some(Self::start(sources, crate::commands::backup::exclude_patterns(opts).ok()?))
    }

    /// From now on, also start reading the contents of small files.
    pub fn read_contents(&self, yes: bool) {
        self.shared.contents.store(yes, Ordering::Relaxed);
    }

    /// The listing of `folder` if the read-ahead made one (it then is the walk's, taken once): the
    /// walk need not list the folder and look at each entry again. `None` when the read-ahead has
    /// not reached the folder, could not list it whole, or kept no more listings.
    pub fn take_listing(&self, folder: &Path) -> Option<Listing> {
        let (_, listing) = self.shared.listings.lock().unwrap_or_else(|p| p.into_inner()).remove(folder)?;
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
    folders: std::sync::mpsc::SyncSender<(PathBuf, u64)>,
    entries: u64,
    bytes: u64,
}

/// Lists the folders from `queue` and looks at each entry (which fills the kernel's caches); offers
/// each listing to the walk. A folder comes with where the read-ahead counted it (see
/// [`Shared::offer`]).
fn list_folders(queue: &Mutex<std::sync::mpsc::Receiver<(PathBuf, u64)>>, shared: &Shared) {
    loop {
        let next = queue.lock().unwrap_or_else(|p| p.into_inner()).recv();
        let Ok((folder, position)) = next else { return };
        let Some(listing) = list_and_look(&folder, &shared.stop) else { continue };
        shared.offer(&folder, position, listing);
    }
}

/// A folder's entries sorted by name, each with its `lstat` result; `None` when the folder (or one
/// of its entries) could not be listed, or when stopped.
fn list_and_look(folder: &Path, stop: &AtomicBool) -> Option<Listing> {
    // The walk lists such a folder itself and reports what failed.
    let (listing, unreadable) = list_folder(folder, Some(stop)).ok()?;
    unreadable.is_empty().then_some(listing)
}

/// Lists `folder`, sorted by name, and looks at each entry (`lstat`, kept per entry). Entries the
/// listing itself could not read come back apart, for the caller to report. With `stop`, gives up
/// (an `Interrupted` error) once it is set.
pub fn list_folder(folder: &Path, stop: Option<&AtomicBool>) -> std::io::Result<(Listing, Vec<std::io::Error>)> {
    let mut children: Vec<(OsString, std::fs::DirEntry)> = Vec::new();
    let mut unreadable = Vec::new();
    for entry in std::fs::read_dir(folder)? {
        match entry {
            Ok(e) => children.push((e.file_name(), e)),
            Err(e) => unreadable.push(e),
        }
    }
    children.sort_by(|a, b| a.0.cmp(&b.0));
    let mut listing = Vec::with_capacity(children.len());
    for (name, entry) in children {
        if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
            return Err(std::io::ErrorKind::Interrupted.into());
        }
        // Relative to the open folder (`statx` on its descriptor, not following a symlink, as
        // `lstat`): the kernel does not walk the whole path again for each entry.
        let meta = entry.metadata();
        let path = entry.path();
        let (xattrs, xattr_warnings) = match meta {
            Ok(_) => crate::xattrs::read(&path),
            Err(_) => (Vec::new(), Vec::new()),
        };
        listing.push(ListedEntry { name, path, meta, xattrs, xattr_warnings });
    }
    Ok((listing, unreadable))
}

impl Shared {
    /// Keeps `listing` for the walk while the walk has not reached `position` yet (so it will take
    /// it) and there is room; the first listing of a folder wins. Positions count entries in the
    /// read-ahead's order, which only roughly follows the walk's: a listing kept too late is never
    /// taken, and is dropped when room runs out.
    fn offer(&self, folder: &Path, position: u64, listing: Listing) {
        let walked = self.walked_entries.load(Ordering::SeqCst);
        if walked >= position {
            return;
        }
        let mut listings = self.listings.lock().unwrap_or_else(|p| p.into_inner());
        if self.listed.load(Ordering::Relaxed) + (listing.len() as u64) > LISTED_MAX as u64 {
            let mut freed = 0;
            listings.retain(|_, (at, l)| {
                let keep = *at > walked;
                if !keep {
                    freed += l.len() as u64;
                }
                keep
            });
            self.listed.fetch_sub(freed, Ordering::Relaxed);
            if self.listed.load(Ordering::Relaxed) + (listing.len() as u64) > LISTED_MAX as u64 {
                return;
            }
        }
        if !listings.contains_key(folder) {
            self.listed.fetch_add(listing.len() as u64, Ordering::Relaxed);
            listings.insert(folder.to_path_buf(), (position, listing));
        }
    }

    /// The entries of a listing already kept for `folder` (name order, `lstat` results that
    /// succeeded), without taking it.
    fn peek(&self, folder: &Path) -> Option<Vec<(PathBuf, std::fs::Metadata)>> {
        let listings = self.listings.lock().unwrap_or_else(|p| p.into_inner());
        let (_, listing) = listings.get(folder)?;
        Some(listing.iter().filter_map(|e| Some((e.path.clone(), e.meta.as_ref().ok()?.clone()))).collect())
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
        if !self.excludes.is_empty() && self.excludes.matches(path) {
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
        // A lister may have listed and looked at this folder already.
        let entries = match self.shared.peek(path) {
            Some(entries) => entries,
            None => {
                let Some(listing) = list_and_look(path, &self.shared.stop) else { return Ok(()) };
                let entries: Vec<(PathBuf, std::fs::Metadata)> =
                    listing.iter().filter_map(|e| Some((e.path.clone(), e.meta.as_ref().ok()?.clone()))).collect();
                self.shared.offer(path, position, listing);
                entries
            }
        };
        let entries: Vec<(PathBuf, std::fs::Metadata)> = entries
            .into_iter()
            .filter(|(child, _)| self.excludes.is_empty() || !self.excludes.matches(child))
            .collect();
        // Sub-folders are listed ahead by the listers (when they keep up; otherwise skipped).
        for (child, meta) in &entries {
            if meta.is_dir() {
                let _ = self.folders.try_send((child.clone(), self.entries));
            }
        }
        let mut sub_folders = Vec::new();
        for (child, meta) in entries {
            self.pace()?;
            self.entries += 1;
            if meta.is_dir() {
                sub_folders.push((child, meta));
            } else {
                self.look_at(&child, &meta)?;
            }
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
