//! `mount`: a read-only FUSE view of the repository in restic's layout: `snapshots/<time>/`,
//! `ids/<short id>/`, `hosts/<host>/<time>/`, `tags/<tag>/<time>/`, with a `latest` symlink in each
//! list of snapshots; `--host`, `--tag` and `--path` narrow which snapshots appear.
//!
//! The made-up folders are rebuilt from the repository's list of snapshots when one of them is
//! listed or looked into, at most once per refresh interval, so that snapshots written while
//! mounted appear (and forgotten ones go). Folders of snapshots are read from their trees when first
//! looked at. Inode numbers are hashes of what an entry is, so they are the same in every mount and
//! never change or get reused while mounted (a made-up folder, a snapshot's folder in a list and
//! `latest`, while it points to the same folder, keep theirs across refreshes); names that are
//! hard links of one another within a snapshot share one inode number.
//!
//! A file opened for reading gets a table of where each of its chunks starts; a read at any offset
//! finds its first chunk by binary search and reads only the chunks it needs, through a cache of a
//! bounded number of opened chunks. A reader that reads on from where it stopped gets the next
//! chunks opened ahead of it in parallel by a few background threads (one per core, at most
//! four), into the same bounded cache. Folders are listed with their entries' attributes
//! (readdirplus), so `ls -l` and `find` need no lookup per entry. Any failure
//! to read (a pack gone, a damaged blob) is EIO: a reader never gets wrong bytes. Four threads
//! answer the kernel, so a read waiting on slow storage does not hold up listings or other readers.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, UNIX_EPOCH};

use cairn_format::blob::BlobKind;
use cairn_format::snapshot::Snapshot;
use cairn_format::tree::{Node, NodeKind};
use cairn_format::{BlobId, SnapshotId, TreeId};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, LockOwner, OpenFlags, ReplyAttr, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEntry, ReplyOpen, ReplyStatfs, Request,
};

use crate::commands::snapshots::SnapshotFilter;
use crate::error::{Error, ErrorKind, Result};
use crate::repository::Repository;

/// Options of `mount`.
#[derive(Debug, Clone)]
pub struct MountOptions {
    /// Opened chunks kept in memory (each at most the chunker's maximum size).
    pub blob_cache_entries: usize,
    /// Which snapshots appear (restic's `--host`, `--tag`, `--path`).
    pub filter: SnapshotFilter,
    /// The shortest time between two readings of the repository's list of snapshots.
    pub refresh_interval: Duration,
}

impl Default for MountOptions {
    fn default() -> Self {
        Self { blob_cache_entries: 32, filter: SnapshotFilter::default(), refresh_interval: Duration::from_secs(5) }
    }
}

/// A mounted repository; dropping it (or [`Mounted::unmount`]) unmounts.
#[derive(Debug)]
pub struct Mounted {
    session: fuser::BackgroundSession,
    mountpoint: PathBuf,
}

impl Mounted {
    /// Unmounts and waits for the serving thread. When a reader still has a file open (the
    /// kernel refuses a plain unmount), the mount is detached from the tree instead and the
    /// serving thread left behind: the caller is expected to exit, which ends the connection,
    /// and the reader then gets an error instead of waiting.
    pub fn unmount(self) -> Result<()> {
        if self.is_finished() {
            // Unmounted from outside: only the serving thread is left to join.
            return self.session.join().map_err(|e| Error::io("ending the mount", e));
        }
        let mountpoint = self.mountpoint;
        match self.session.umount_and_join() {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(nix::libc::EBUSY) => detach(&mountpoint),
            Err(e) => Err(Error::io("unmounting", e)),
        }
    }

    /// Whether the file system was unmounted from outside (`fusermount -u`, `umount`).
    pub fn is_finished(&self) -> bool {
        self.session.guard.is_finished()
    }
}

/// Detaches a busy mount (`umount -l`); `fusermount3 -u -z` does it for users who are not root.
fn detach(mountpoint: &Path) -> Result<()> {
    match nix::mount::umount2(mountpoint, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EPERM) => {
            let status = std::process::Command::new("fusermount3")
                .args(["-u", "-z", "--"])
                .arg(mountpoint)
                .status()
                .map_err(|e| Error::io("running fusermount3 -u -z", e))?;
            if status.success() {
                Ok(())
            } else {
                Err(Error::io(
                    format!("detaching the busy mount at {}", mountpoint.display()),
                    std::io::Error::other(format!("fusermount3 ended with {status}")),
                ))
            }
        }
        Err(e) => Err(Error::io(format!("detaching the busy mount at {}", mountpoint.display()), e.into())),
    }
}

/// Mounts the repository read-only at `mountpoint` and serves it from background threads.
pub fn mount(repo: Repository, mountpoint: &Path, opts: &MountOptions) -> Result<Mounted> {
    repo.sync_index()?;
    let fs = SnapshotFs::new(Arc::new(repo), opts)?;
    let mut config = fuser::Config::default();
    // Several requests in flight: the kernel's own read-ahead of one reader, or other readers,
    // are served while one request waits for its chunk.
    config.n_threads = Some(SERVING_THREADS);
    config.clone_fd = true;
    config.mount_options.extend([
        fuser::MountOption::RO,
        fuser::MountOption::FSName("cairn".to_owned()),
        fuser::MountOption::DefaultPermissions,
    ]);
    let session = fuser::spawn_mount(fs, mountpoint, &config)
        .map_err(|e| Error::io(format!("mounting at {}", mountpoint.display()), e))?;
    let mountpoint = mountpoint.canonicalize().unwrap_or_else(|_| mountpoint.to_path_buf());
    Ok(Mounted { session, mountpoint })
}

/// How long the kernel may keep what it learnt about a snapshot's entries: they never change.
const TTL: Duration = Duration::from_secs(60);
/// The same for the made-up folders and `latest`, which change when snapshots come and go.
const LISTING_TTL: Duration = Duration::from_secs(1);
/// Chunks opened ahead of a sequential reader (at most; never more than half the cache).
const READ_AHEAD: usize = 8;
/// Threads opening chunks ahead of sequential readers, at most (fewer on a machine with fewer
/// cores): a chunk costs a decrypt and a decompress, so one thread per core keeps up with `dump`.
const READ_AHEAD_THREADS: usize = 4;
/// How far from where the last read ended a read may start and still count as sequential.
const SEQUENTIAL_SLACK: u64 = 1 << 20;
/// Threads answering the kernel's requests.
const SERVING_THREADS: usize = 4;
/// The root folder's inode number (FUSE's fixed choice).
const ROOT_INO: u64 = 1;
/// Block size `statfs` reports.
const BLOCK_SIZE: u32 = 4096;

enum Content {
    /// A made-up folder (root, snapshots/, hosts/x/, ...): its entries.
    Listing(Vec<(OsString, u64)>),
    /// A folder of a snapshot (`root`: the inode of the snapshot's own folder); its entries once read.
    Tree { tree: TreeId, root: u64, entries: Option<Vec<(OsString, u64)>> },
    /// The `latest` symlink.
    Link(OsString),
    /// Any other entry of a snapshot (file, symlink, device, FIFO, socket).
    Leaf,
}

struct Inode {
    content: Content,
    /// The entry's metadata as stored (made-up folders get a folder node).
    node: Node,
}

/// Every inode handed out, by number. Numbers come from a hash of what the entry is (its path
/// among the made-up folders; its list and snapshot; its parent's number and its name; for hard
/// links, the snapshot folder and the stored device and inode), so the same entry gets the same
/// number in every mount, as in restic. Two entries whose hashes meet are told apart by taking the
/// next free number (then, rarely, a number differs between two mounts).
struct Inodes {
    table: HashMap<u64, Inode>,
    /// Made-up folders and `latest` links by their path below the mountpoint ("" is the root).
    made_up: HashMap<String, u64>,
    /// A snapshot's folder in a list of snapshots, by the list's inode and the snapshot.
    roots: HashMap<(u64, SnapshotId), u64>,
    /// Hard links: (snapshot folder inode, device, inode as stored) to the inode already handed out.
    hard_links: HashMap<(u64, u64, u64), u64>,
}

impl Inodes {
    fn new() -> Self {
        Self { table: HashMap::new(), made_up: HashMap::new(), roots: HashMap::new(), hard_links: HashMap::new() }
    }

    fn get(&self, ino: u64) -> Option<&Inode> {
        self.table.get(&ino)
    }

    fn get_mut(&mut self, ino: u64) -> Option<&mut Inode> {
        self.table.get_mut(&ino)
    }

    /// Stores `inode` under `wanted` (see [`inode_number`]), or the next free number.
    fn insert(&mut self, wanted: u64, inode: Inode) -> u64 {
        let mut ino = wanted;
        while self.table.contains_key(&ino) {
            ino = ino.wrapping_add(1).max(ROOT_INO + 1);
        }
        self.table.insert(ino, inode);
        ino
    }

    /// The made-up folder at `path`, its entries replaced; same inode as before when it existed.
    fn listing(&mut self, path: String, entries: Vec<(OsString, u64)>, time_ns: i64) -> u64 {
        match self.made_up.get(&path).copied() {
            Some(ino) => {
                let inode = self.get_mut(ino).expect("made-up inodes stay in the table");
                inode.content = Content::Listing(entries);
                inode.node.mtime_ns = time_ns;
                inode.node.ctime_ns = time_ns;
                ino
            }
            None => {
                let wanted = if path.is_empty() { ROOT_INO } else { inode_number(&[b"made-up", path.as_bytes()]) };
                let ino =
                    self.insert(wanted, Inode { content: Content::Listing(entries), node: folder_node(b"", time_ns) });
                self.made_up.insert(path, ino);
                ino
            }
        }
    }

    /// The folder of snapshot `id` in the list `list`.
    fn snapshot_root(&mut self, list: u64, id: SnapshotId, s: &Snapshot) -> u64 {
        if let Some(ino) = self.roots.get(&(list, id)) {
            return *ino;
        }
        let mut node = folder_node(b"", s.time_ns);
        node.mode = 0o40755;
        let wanted = inode_number(&[b"snapshot", &list.to_le_bytes(), id.as_bytes()]);
        let ino = self.insert(wanted, Inode { content: Content::Tree { tree: s.tree, root: 0, entries: None }, node });
        if let Some(Inode { content: Content::Tree { root, .. }, .. }) = self.get_mut(ino) {
            *root = ino;
        }
        self.roots.insert((list, id), ino);
        ino
    }

    /// A list of snapshots at `path`, named by time (unique: `-1`, `-2` ... on clashes), plus `latest`.
    fn snapshot_list(&mut self, path: String, list: &[&(SnapshotId, Snapshot)], time_ns: i64) -> u64 {
        // The list's own inode first: its snapshot folders are keyed by it.
        let list_ino = self.listing(path.clone(), Vec::new(), time_ns);
        let mut entries: Vec<(OsString, u64)> = Vec::new();
        let mut taken = HashSet::new();
        let mut latest: Option<(i64, OsString)> = None;
        for (id, s) in list {
            let base = time_name(s);
            let mut name = base.clone();
            let mut n = 0;
            while !taken.insert(name.clone()) {
                n += 1;
                name = format!("{base}-{n}");
            }
            let ino = self.snapshot_root(list_ino, *id, s);
            if latest.as_ref().is_none_or(|l| s.time_ns >= l.0) {
                latest = Some((s.time_ns, OsString::from(&name)));
            }
            entries.push((OsString::from(name), ino));
        }
        if let Some((t, target)) = latest {
            let mut node = folder_node(b"latest", t);
            node.mode = 0o120777;
            node.links = 1;
            node.kind = NodeKind::Symlink { target: target.as_bytes().to_vec() };
            node.size = target.len() as u64;
            // One inode per target: the kernel keeps a link's target (FUSE_CACHE_SYMLINKS) for as
            // long as it keeps the inode, so a `latest` that now points elsewhere is a new inode,
            // which the kernel finds when the listing's short entry time runs out.
            let key = format!("{path}/latest/{}", target.to_string_lossy());
            let ino = match self.made_up.get(&key).copied() {
                Some(ino) => {
                    *self.get_mut(ino).expect("made-up inodes stay in the table") =
                        Inode { content: Content::Link(target), node };
                    ino
                }
                None => {
                    let ino = self.insert(
                        inode_number(&[b"made-up", key.as_bytes()]),
                        Inode { content: Content::Link(target), node },
                    );
                    self.made_up.insert(key, ino);
                    ino
                }
            };
            entries.push(("latest".into(), ino));
        }
        self.listing(path, entries, time_ns)
    }

    /// Rebuilds every made-up folder from `snapshots`.
    fn rebuild(&mut self, snapshots: &[(SnapshotId, Snapshot)]) {
        let newest = snapshots.iter().map(|s| s.1.time_ns).max().unwrap_or(0);
        let all: Vec<&(SnapshotId, Snapshot)> = snapshots.iter().collect();
        let by_time = self.snapshot_list("snapshots".into(), &all, newest);
        let ids_ino = self.listing("ids".into(), Vec::new(), newest);
        let ids: Vec<(OsString, u64)> =
            snapshots.iter().map(|(id, s)| (OsString::from(id.short()), self.snapshot_root(ids_ino, *id, s))).collect();
        let ids = self.listing("ids".into(), ids, newest);
        let mut hosts: BTreeMap<String, Vec<&(SnapshotId, Snapshot)>> = BTreeMap::new();
        let mut tags: BTreeMap<String, Vec<&(SnapshotId, Snapshot)>> = BTreeMap::new();
        for s in snapshots {
            hosts.entry(s.1.host.replace('/', "_")).or_default().push(s);
            for t in &s.1.tags {
                tags.entry(t.replace('/', "_")).or_default().push(s);
            }
        }
        let mut group = |top: &str, groups: BTreeMap<String, Vec<&(SnapshotId, Snapshot)>>| {
            let entries: Vec<(OsString, u64)> = groups
                .into_iter()
                .map(|(name, list)| {
                    let ino = self.snapshot_list(format!("{top}/{name}"), &list, newest);
                    (OsString::from(name), ino)
                })
                .collect();
            self.listing(top.into(), entries, newest)
        };
        let hosts = group("hosts", hosts);
        let tags = group("tags", tags);
        let root =
            vec![("hosts".into(), hosts), ("ids".into(), ids), ("snapshots".into(), by_time), ("tags".into(), tags)];
        self.listing(String::new(), root, newest);
    }
}

/// The chunks readers use, and those being opened.
#[derive(Default)]
struct BlobCache {
    entries: VecDeque<(BlobId, Arc<Vec<u8>>)>,
    loading: HashSet<BlobId>,
}

/// What readers and the read-ahead thread share.
struct Blobs {
    repo: Arc<Repository>,
    cache: Mutex<BlobCache>,
    /// Signalled whenever a chunk stops loading.
    loaded: Condvar,
    capacity: usize,
}

impl Blobs {
    fn lock(&self) -> MutexGuard<'_, BlobCache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The opened chunk `id`: from the cache, or read once however many readers ask at the same time.
    fn get(&self, id: &BlobId) -> Result<Arc<Vec<u8>>> {
        let mut cache = self.lock();
        loop {
            if let Some((_, b)) = cache.entries.iter().find(|(c, _)| c == id) {
                return Ok(b.clone());
            }
            if !cache.loading.contains(id) {
                break;
            }
            cache = self.loaded.wait(cache).unwrap_or_else(|p| p.into_inner());
        }
        cache.loading.insert(*id);
        drop(cache);
        let loaded = self.repo.load_blob(BlobKind::Data, id).map(Arc::new);
        let mut cache = self.lock();
        cache.loading.remove(id);
        if let Ok(bytes) = &loaded {
            while cache.entries.len() >= self.capacity {
                cache.entries.pop_front();
            }
            cache.entries.push_back((*id, bytes.clone()));
        }
        drop(cache);
        self.loaded.notify_all();
        loaded
    }

    /// Whether `id` is cached or being opened.
    fn has(&self, id: &BlobId) -> bool {
        let cache = self.lock();
        cache.loading.contains(id) || cache.entries.iter().any(|(c, _)| c == id)
    }
}

/// Opens the chunks sent to it until every sender is gone (the file system was unmounted).
/// Several workers share one queue, so the chunks ahead of a reader are opened in parallel.
fn read_ahead_worker(blobs: Arc<Blobs>, wanted: Arc<Mutex<Receiver<BlobId>>>) {
    loop {
        let next = wanted.lock().unwrap_or_else(|p| p.into_inner()).recv();
        let Ok(id) = next else { return };
        if !blobs.has(&id) {
            // A failure is not kept: the reader that needs the chunk reads it again and gets EIO.
            let _ = blobs.get(&id);
        }
    }
}

/// An open file: where each chunk starts, and its id.
struct OpenFile {
    starts: Vec<u64>,
    blobs: Vec<BlobId>,
    size: u64,
    /// Where the last read ended: a read starting near there is sequential.
    next_offset: AtomicU64,
    /// The chunks before this index were already sent to the read-ahead workers.
    ahead_until: AtomicUsize,
}

struct Refresh {
    last: Instant,
    ids: Vec<SnapshotId>,
}

struct SnapshotFs {
    repo: Arc<Repository>,
    inodes: Mutex<Inodes>,
    files: Mutex<HashMap<u64, Arc<OpenFile>>>,
    next_handle: AtomicU64,
    blobs: Arc<Blobs>,
    read_ahead: Option<SyncSender<BlobId>>,
    read_ahead_depth: usize,
    filter: SnapshotFilter,
    refresh: Mutex<Refresh>,
    refresh_interval: Duration,
    /// Stored bytes of every indexed pack, for `statfs`.
    stored_bytes: AtomicU64,
}

/// An inode number from what identifies an entry: the first 8 bytes of the BLAKE3 hash of the
/// parts, each prefixed with its length; never 0 or the root's.
fn inode_number(parts: &[&[u8]]) -> u64 {
    let mut bytes = Vec::with_capacity(parts.iter().map(|p| p.len() + 8).sum());
    for part in parts {
        bytes.extend_from_slice(&(part.len() as u64).to_le_bytes());
        bytes.extend_from_slice(part);
    }
    let mut first = [0u8; 8];
    first.copy_from_slice(&cairn_format::crypto::object_name(&bytes)[..8]);
    u64::from_le_bytes(first).max(ROOT_INO + 1)
}

fn folder_node(name: &[u8], time_ns: i64) -> Node {
    Node {
        name: name.to_vec(),
        kind: NodeKind::Dir { subtree: TreeId::default() },
        mode: 0o40555,
        uid: 0,
        gid: 0,
        user: String::new(),
        group: String::new(),
        mtime_ns: time_ns,
        ctime_ns: time_ns,
        inode: 0,
        device: 0,
        links: 2,
        size: 0,
        xattrs: Vec::new(),
    }
}

/// restic's folder name for a snapshot time: local time, RFC 3339 to the second.
fn time_name(s: &Snapshot) -> String {
    use chrono::{Local, TimeZone};
    Local
        .timestamp_opt(s.time_ns.div_euclid(1_000_000_000), 0)
        .single()
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%:z").to_string())
        .unwrap_or_else(|| s.time_ns.to_string())
}

impl SnapshotFs {
    fn new(repo: Arc<Repository>, opts: &MountOptions) -> Result<Self> {
        let capacity = opts.blob_cache_entries.max(1);
        let blobs = Arc::new(Blobs {
            repo: repo.clone(),
            cache: Mutex::new(BlobCache::default()),
            loaded: Condvar::new(),
            capacity,
        });
        // Read-ahead never takes more than half the cache, so it cannot evict what a reader is on.
        let read_ahead_depth = READ_AHEAD.min(capacity / 2);
        let read_ahead = if read_ahead_depth > 0 {
            // The queue holds at most one read-ahead window: what a reader asks for beyond it
            // while the workers are busy is dropped, and read by the reader itself if needed.
            let (send, receive) = std::sync::mpsc::sync_channel(read_ahead_depth);
            let receive = Arc::new(Mutex::new(receive));
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, READ_AHEAD_THREADS);
            for _ in 0..threads {
                let worker_blobs = blobs.clone();
                let worker_queue = receive.clone();
                std::thread::Builder::new()
                    .name("cairn-read-ahead".into())
                    .spawn(move || read_ahead_worker(worker_blobs, worker_queue))
                    .map_err(|e| Error::io("starting the read-ahead threads", e))?;
            }
            Some(send)
        } else {
            None
        };
        let fs = Self {
            repo,
            inodes: Mutex::new(Inodes::new()),
            files: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            blobs,
            read_ahead,
            read_ahead_depth,
            filter: opts.filter.clone(),
            refresh: Mutex::new(Refresh { last: Instant::now(), ids: Vec::new() }),
            refresh_interval: opts.refresh_interval,
            stored_bytes: AtomicU64::new(0),
        };
        // Inode 1 is the root: made first.
        fs.lock_inodes().listing(String::new(), Vec::new(), 0);
        fs.reload(&mut fs.refresh.lock().unwrap_or_else(|p| p.into_inner()))?;
        Ok(fs)
    }

    fn lock_inodes(&self) -> MutexGuard<'_, Inodes> {
        self.inodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the list of snapshots again and rebuilds the made-up folders if it changed.
    fn reload(&self, state: &mut Refresh) -> Result<()> {
        state.last = Instant::now();
        let mut ids = self.repo.list_snapshot_ids()?;
        ids.sort();
        // A listing of a repository that went away is empty, not an error: keep what is shown
        // unless the repository is still there.
        if ids.is_empty()
            && !state.ids.is_empty()
            && self.repo.backend().stat(crate::backend::FileType::Config, "config")?.is_none()
        {
            return Err(Error::new(ErrorKind::NotFound, "the repository's config file is gone"));
        }
        if !state.ids.is_empty() && ids == state.ids {
            return Ok(());
        }
        // New snapshots name blobs of new index files.
        self.repo.sync_index()?;
        let (snapshots, _) = self.repo.load_snapshots()?;
        let shown: Vec<(SnapshotId, Snapshot)> =
            snapshots.into_iter().filter(|(_, s)| self.filter.matches(s)).collect();
        self.lock_inodes().rebuild(&shown);
        let stored: u64 = self.repo.indexed_packs()?.iter().map(|(_, size)| size).sum();
        self.stored_bytes.store(stored, Ordering::Relaxed);
        state.ids = ids;
        Ok(())
    }

    /// Reloads the list of snapshots when the last reading is older than the refresh interval.
    /// A failure keeps the folders as they are (the repository may be briefly unreachable).
    /// While another thread reloads, the folders are served as they are.
    fn maybe_refresh(&self) {
        let mut state = match self.refresh.try_lock() {
            Ok(state) => state,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return,
        };
        if state.last.elapsed() >= self.refresh_interval {
            let _ = self.reload(&mut state);
        }
    }

    /// The entries of a folder, reading its tree the first time.
    fn entries(&self, ino: u64) -> std::result::Result<Vec<(OsString, u64)>, Errno> {
        let is_listing = matches!(self.lock_inodes().get(ino).map(|i| &i.content), Some(Content::Listing(_)));
        if is_listing {
            self.maybe_refresh();
        }
        let (tree, root) = {
            let inodes = self.lock_inodes();
            let inode = inodes.get(ino).ok_or(Errno::ENOENT)?;
            match &inode.content {
                Content::Listing(e) => return Ok(e.clone()),
                Content::Tree { entries: Some(e), .. } => return Ok(e.clone()),
                Content::Tree { tree, root, entries: None } => (*tree, *root),
                _ => return Err(Errno::ENOTDIR),
            }
        };
        let loaded = self.repo.load_tree(tree).map_err(|_| Errno::EIO)?;
        let mut inodes = self.lock_inodes();
        if let Some(Content::Tree { entries: Some(e), .. }) = inodes.get(ino).map(|i| &i.content) {
            return Ok(e.clone());
        }
        let mut entries = Vec::with_capacity(loaded.nodes().len());
        for n in loaded.into_nodes() {
            let name = OsString::from_vec(n.name.clone());
            // Names of one file within a snapshot share its inode, as they did on the source.
            let link_key = match n.kind {
                NodeKind::Dir { .. } => None,
                _ if n.links > 1 && n.inode != 0 => Some((root, n.device, n.inode)),
                _ => None,
            };
            if let Some(ino) = link_key.and_then(|k| inodes.hard_links.get(&k)) {
                entries.push((name, *ino));
                continue;
            }
            let content = match n.kind {
                NodeKind::Dir { subtree } => Content::Tree { tree: subtree, root, entries: None },
                _ => Content::Leaf,
            };
            let wanted = match link_key {
                Some((root, device, inode)) => {
                    inode_number(&[b"link", &root.to_le_bytes(), &device.to_le_bytes(), &inode.to_le_bytes()])
                }
                None => inode_number(&[b"entry", &ino.to_le_bytes(), &n.name]),
            };
            let child = inodes.insert(wanted, Inode { content, node: n });
            if let Some(k) = link_key {
                inodes.hard_links.insert(k, child);
            }
            entries.push((name, child));
        }
        if let Some(Inode { content: Content::Tree { entries: slot, .. }, .. }) = inodes.get_mut(ino) {
            *slot = Some(entries.clone());
        }
        Ok(entries)
    }

    /// The entry `name` of folder `parent`, found where the folder's entries are kept.
    fn child(&self, parent: u64, name: &OsStr) -> std::result::Result<Option<u64>, Errno> {
        let find = |e: &[(OsString, u64)]| e.iter().find(|(n, _)| n == name).map(|(_, ino)| *ino);
        {
            let inodes = self.lock_inodes();
            match inodes.get(parent).map(|i| &i.content) {
                Some(Content::Tree { entries: Some(e), .. }) => return Ok(find(e)),
                Some(Content::Tree { entries: None, .. } | Content::Listing(_)) => {}
                Some(_) => return Err(Errno::ENOTDIR),
                None => return Err(Errno::ENOENT),
            }
        }
        // A made-up folder may need refreshing; a snapshot's folder reading.
        self.entries(parent).map(|e| find(&e))
    }

    /// The attributes of `ino`, and how long the kernel may keep them.
    fn attr(&self, ino: u64) -> Option<(FileAttr, Duration)> {
        let inodes = self.lock_inodes();
        let inode = inodes.get(ino)?;
        let n = &inode.node;
        let kind = match n.kind {
            NodeKind::File { .. } => FileType::RegularFile,
            NodeKind::Dir { .. } => FileType::Directory,
            NodeKind::Symlink { .. } => FileType::Symlink,
            NodeKind::BlockDevice { .. } => FileType::BlockDevice,
            NodeKind::CharDevice { .. } => FileType::CharDevice,
            NodeKind::Fifo => FileType::NamedPipe,
            NodeKind::Socket => FileType::Socket,
        };
        let rdev = match n.kind {
            NodeKind::BlockDevice { rdev } | NodeKind::CharDevice { rdev } => rdev as u32,
            _ => 0,
        };
        let time = |ns: i64| {
            if ns >= 0 { UNIX_EPOCH + Duration::from_nanos(ns as u64) } else { UNIX_EPOCH }
        };
        let size = match &n.kind {
            NodeKind::Symlink { target } => target.len() as u64,
            _ => n.size,
        };
        let ttl = match inode.content {
            Content::Listing(_) | Content::Link(_) => LISTING_TTL,
            _ => TTL,
        };
        let attr = FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: time(n.mtime_ns),
            mtime: time(n.mtime_ns),
            ctime: time(n.ctime_ns),
            crtime: time(n.mtime_ns),
            kind,
            perm: (n.mode & 0o7777) as u16,
            nlink: if kind == FileType::Directory { 2 } else { n.links.clamp(1, u64::from(u32::MAX)) as u32 },
            uid: n.uid,
            gid: n.gid,
            rdev,
            blksize: 128 * 1024,
            flags: 0,
        };
        Some((attr, ttl))
    }

    fn open_file(&self, ino: u64) -> Result<OpenFile> {
        let content = {
            let inodes = self.lock_inodes();
            match inodes.get(ino).map(|i| &i.node.kind) {
                Some(NodeKind::File { content }) => content.clone(),
                _ => return Err(Error::new(ErrorKind::NotFound, "not a file")),
            }
        };
        let mut starts = Vec::with_capacity(content.len());
        let mut at = 0u64;
        for id in &content {
            starts.push(at);
            let loc = self
                .repo
                .locate_for_reading(id)?
                .ok_or_else(|| Error::corrupt(format!("data blob {} is missing from the index", id.short())))?;
            at += u64::from(loc.entry.plain_len);
        }
        Ok(OpenFile {
            starts,
            blobs: content,
            size: at,
            next_offset: AtomicU64::new(0),
            ahead_until: AtomicUsize::new(0),
        })
    }

    fn read_at(&self, file: &OpenFile, offset: u64, len: usize) -> Result<Vec<u8>> {
        let end = file.size.min(offset.saturating_add(len as u64));
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        if offset >= end {
            return Ok(out);
        }
        // The kernel sends a sequential reader's reads on several threads at once, so they may
        // arrive a little out of order: near where the last one ended counts as sequential.
        let last_end = file.next_offset.swap(end, Ordering::Relaxed);
        let sequential = offset.abs_diff(last_end) <= SEQUENTIAL_SLACK;
        // The chunk holding `offset`: the last one starting at or before it.
        let mut i = file.starts.partition_point(|&s| s <= offset).saturating_sub(1);
        if sequential {
            // Before this read opens its own chunk, so that the workers open the next ones meanwhile.
            self.read_ahead(file, i + 1);
        }
        let mut pos = offset;
        while pos < end && i < file.blobs.len() {
            let blob = self.blobs.get(&file.blobs[i])?;
            let start = file.starts[i];
            let from = (pos - start) as usize;
            let to = ((end - start) as usize).min(blob.len());
            if from >= to {
                return Err(Error::corrupt("a chunk is shorter than the index says"));
            }
            out.extend_from_slice(&blob[from..to]);
            pos = start + to as u64;
            i += 1;
        }
        Ok(out)
    }

    /// Sends the chunks from `first` to the read-ahead depth past it to the read-ahead workers,
    /// skipping those this file already sent. A reader that jumped elsewhere sends nothing (see
    /// [`SnapshotFs::read_at`]); what was sent for it before is opened into the bounded cache anyway.
    fn read_ahead(&self, file: &OpenFile, first: usize) {
        let Some(read_ahead) = &self.read_ahead else { return };
        let window = first..(first + self.read_ahead_depth).min(file.blobs.len());
        let sent = file.ahead_until.load(Ordering::Relaxed);
        let mut next = if window.contains(&sent) { sent } else { window.start };
        while next < window.end {
            let id = file.blobs[next];
            if !self.blobs.has(&id) {
                match read_ahead.try_send(id) {
                    Ok(()) => {}
                    // Full: the workers are behind; try again at the next read, or this reader
                    // opens the chunk itself when it gets there.
                    Err(TrySendError::Full(_)) => break,
                    Err(TrySendError::Disconnected(_)) => return,
                }
            }
            next += 1;
        }
        file.ahead_until.store(next, Ordering::Relaxed);
    }
}

impl fuser::Filesystem for SnapshotFs {
    fn init(&mut self, _req: &Request, config: &mut fuser::KernelConfig) -> std::io::Result<()> {
        // `ls -l` and `find` stat every entry they list: readdirplus answers the listing and
        // every entry's attributes in one request instead of one lookup per entry. Kernels
        // without it (or without parallel lookups in one folder) are served all the same.
        let _ = config.add_capabilities(fuser::InitFlags::FUSE_DO_READDIRPLUS);
        let _ = config.add_capabilities(fuser::InitFlags::FUSE_PARALLEL_DIROPS);
        // Every path through `snapshots/latest/...` reads the link again unless the kernel keeps
        // link targets; they never change for one inode here (see `Inodes::snapshot_list`).
        let _ = config.add_capabilities(fuser::InitFlags::FUSE_CACHE_SYMLINKS);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.child(parent.0, name) {
            Ok(Some(ino)) => match self.attr(ino) {
                Some((attr, ttl)) => reply.entry(&ttl, &attr, Generation(0)),
                None => reply.error(Errno::ENOENT),
            },
            Ok(None) => reply.error(Errno::ENOENT),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.attr(ino.0) {
            Some((attr, ttl)) => reply.attr(&ttl, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let inodes = self.lock_inodes();
        match inodes.get(ino.0).map(|i| (&i.content, &i.node.kind)) {
            Some((Content::Link(t), _)) => reply.data(t.as_bytes()),
            Some((_, NodeKind::Symlink { target })) => reply.data(target),
            _ => reply.error(Errno::EINVAL),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.open_file(ino.0) {
            Ok(file) => {
                let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
                self.files.lock().unwrap_or_else(|p| p.into_inner()).insert(fh, Arc::new(file));
                reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE);
            }
            Err(e) if e.kind() == ErrorKind::NotFound => reply.error(Errno::EISDIR),
            Err(_) => reply.error(Errno::EIO),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let file = self.files.lock().unwrap_or_else(|p| p.into_inner()).get(&fh.0).cloned();
        match file.map(|f| self.read_at(&f, offset, size as usize)) {
            Some(Ok(bytes)) => reply.data(&bytes),
            Some(Err(_)) => reply.error(Errno::EIO),
            None => reply.error(Errno::EBADF),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: fuser::ReplyEmpty,
    ) {
        self.files.lock().unwrap_or_else(|p| p.into_inner()).remove(&fh.0);
        reply.ok();
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let entries = match self.entries(ino.0) {
            Ok(e) => e,
            Err(e) => return reply.error(e),
        };
        let dots = [(OsString::from("."), ino.0), (OsString::from(".."), ino.0)];
        for (i, (name, child)) in dots.into_iter().chain(entries).enumerate().skip(offset as usize) {
            let kind = if i < 2 {
                FileType::Directory
            } else {
                self.attr(child).map_or(FileType::RegularFile, |(a, _)| a.kind)
            };
            if reply.add(INodeNo(child), (i + 1) as u64, kind, &name) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        let entries = match self.entries(ino.0) {
            Ok(e) => e,
            Err(e) => return reply.error(e),
        };
        let Some((own, own_ttl)) = self.attr(ino.0) else { return reply.error(Errno::ENOENT) };
        let dots = [(OsString::from("."), ino.0), (OsString::from(".."), ino.0)];
        for (i, (name, child)) in dots.into_iter().chain(entries).enumerate().skip(offset as usize) {
            // The kernel makes no entry for `.` and `..`; they only need a valid attribute.
            let (attr, ttl) = if i < 2 { (own, own_ttl) } else { self.attr(child).unwrap_or((own, Duration::ZERO)) };
            if reply.add(INodeNo(child), (i + 1) as u64, &name, &ttl, &attr, Generation(0)) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // A full, read-only file system the size of the repository's packs: `df` shows the
        // repository's size as used, nothing free, and the inodes handed out so far.
        let files = self.lock_inodes().table.len() as u64;
        let stored = self.stored_bytes.load(Ordering::Relaxed);
        let blocks = stored.div_ceil(u64::from(BLOCK_SIZE));
        reply.statfs(blocks, 0, 0, files, 0, BLOCK_SIZE, 255, BLOCK_SIZE);
    }
}

#[cfg(test)]
mod tests {
    use cairn_format::snapshot::{SourceKind, Summary};

    use super::*;

    fn snapshot(n: u8, time_s: i64, host: &str, tags: &[&str]) -> (SnapshotId, Snapshot) {
        let s = Snapshot {
            time_ns: time_s * 1_000_000_000,
            utc_offset_s: 0,
            host: host.to_owned(),
            user: String::new(),
            uid: 0,
            gid: 0,
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            paths: vec!["/src".to_owned()],
            source: SourceKind::Files,
            source_detail: String::new(),
            tree: TreeId::from_bytes([n; 32]),
            parent: None,
            original: None,
            program_version: String::new(),
            summary: Summary::default(),
        };
        (SnapshotId::from_bytes([n; 32]), s)
    }

    fn fresh() -> Inodes {
        let mut inodes = Inodes::new();
        inodes.listing(String::new(), Vec::new(), 0);
        inodes
    }

    fn entry(inodes: &Inodes, ino: u64, name: &str) -> Option<u64> {
        match &inodes.get(ino)?.content {
            Content::Listing(e) => e.iter().find(|(n, _)| n == name).map(|(_, i)| *i),
            _ => None,
        }
    }

    fn names(inodes: &Inodes, ino: u64) -> Vec<String> {
        match &inodes.get(ino).expect("inode").content {
            Content::Listing(e) => e.iter().map(|(n, _)| n.to_string_lossy().into_owned()).collect(),
            _ => panic!("not a listing"),
        }
    }

    #[test]
    fn a_refresh_keeps_inode_numbers_and_adds_and_drops_snapshots() {
        let mut inodes = fresh();
        let a = snapshot(1, 1_000, "db1", &["daily"]);
        let b = snapshot(2, 2_000, "db1", &[]);
        inodes.rebuild(&[a.clone(), b.clone()]);
        let snapshots = entry(&inodes, 1, "snapshots").expect("snapshots/");
        let ids = entry(&inodes, 1, "ids").expect("ids/");
        let a_root = entry(&inodes, ids, &a.0.short()).expect("ids/a");
        let latest = entry(&inodes, snapshots, "latest").expect("latest");
        assert_eq!(names(&inodes, ids), [a.0.short(), b.0.short()]);

        // A third snapshot in the same second as the second one, and the first one forgotten.
        let c = snapshot(3, 2_000, "web", &["daily"]);
        inodes.rebuild(&[b.clone(), c.clone()]);
        assert_eq!(entry(&inodes, 1, "snapshots"), Some(snapshots));
        assert_eq!(entry(&inodes, 1, "ids"), Some(ids));
        // `latest` now points to another folder: another inode (the kernel caches link targets).
        let moved = entry(&inodes, snapshots, "latest").expect("latest");
        assert_ne!(moved, latest);
        assert_eq!(names(&inodes, ids), [b.0.short(), c.0.short()]);
        let times = names(&inodes, snapshots);
        assert_eq!(times.len(), 3, "{times:?}");
        assert_eq!(times[1], format!("{}-1", times[0]), "unique names within one second");
        assert_eq!(names(&inodes, entry(&inodes, 1, "hosts").expect("hosts/")), ["db1", "web"]);
        let daily = entry(&inodes, entry(&inodes, 1, "tags").expect("tags/"), "daily").expect("tags/daily");
        assert_eq!(names(&inodes, daily).len(), 2, "c and latest");
        // A snapshot seen again keeps its folder's inode; a forgotten one is unreachable.
        inodes.rebuild(&[a.clone(), b, c]);
        assert_eq!(entry(&inodes, ids, &a.0.short()), Some(a_root));
        assert_eq!(entry(&inodes, snapshots, "latest"), Some(moved), "same target, same inode");
    }
}
