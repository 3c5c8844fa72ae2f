//! `mount`: a read-only FUSE view of the repository in restic's layout: `snapshots/<time>/`,
//! `ids/<short id>/`, `hosts/<host>/<time>/`, `tags/<tag>/<time>/`, with a `latest` symlink in each
//! list of snapshots.
//!
//! Folders are read from their trees when first looked at; inode numbers are handed out then and
//! stay the same for the life of the mount. A file opened for reading gets a table of where each of
//! its chunks starts; a read at any offset finds its first chunk by binary search and reads only the
//! chunks it needs, through a cache of a bounded number of opened chunks. Any failure to read
//! (a pack gone, a damaged blob) is EIO: a reader never gets wrong bytes.
//!
//! Not yet: the list of snapshots is read once at mount time (no refresh), and there is no
//! read-ahead.

use std::collections::{HashMap, VecDeque};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use cairn_format::blob::BlobKind;
use cairn_format::snapshot::Snapshot;
use cairn_format::tree::{Node, NodeKind};
use cairn_format::{BlobId, SnapshotId, TreeId};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, LockOwner, OpenFlags, ReplyAttr, ReplyData,
    ReplyDirectory, ReplyEntry, ReplyOpen, ReplyStatfs, Request,
};

use crate::error::{Error, ErrorKind, Result};
use crate::repository::Repository;

/// Options of `mount`.
#[derive(Debug, Clone)]
pub struct MountOptions {
    /// Opened chunks kept in memory (each at most the chunker's maximum size).
    pub blob_cache_entries: usize,
}

impl Default for MountOptions {
    fn default() -> Self {
        Self { blob_cache_entries: 32 }
    }
}

/// A mounted repository; dropping it (or [`Mounted::unmount`]) unmounts.
#[derive(Debug)]
pub struct Mounted {
    session: fuser::BackgroundSession,
}

impl Mounted {
    /// Unmounts and waits for the serving thread.
    pub fn unmount(self) -> Result<()> {
        if self.is_finished() {
            // Unmounted from outside: only the serving thread is left to join.
            return self.session.join().map_err(|e| Error::io("ending the mount", e));
        }
        self.session.umount_and_join().map_err(|e| Error::io("unmounting", e))
    }

    /// Whether the file system was unmounted from outside (`fusermount -u`, `umount`).
    pub fn is_finished(&self) -> bool {
        self.session.guard.is_finished()
    }
}

/// Mounts the repository read-only at `mountpoint` and serves it from background threads.
pub fn mount(repo: Repository, mountpoint: &Path, opts: &MountOptions) -> Result<Mounted> {
    repo.sync_index()?;
    let (snapshots, _) = repo.load_snapshots()?;
    let fs = SnapshotFs::new(Arc::new(repo), &snapshots, opts);
    let mut config = fuser::Config::default();
    config.mount_options.extend([
        fuser::MountOption::RO,
        fuser::MountOption::FSName("cairn".to_owned()),
        fuser::MountOption::DefaultPermissions,
    ]);
    let session = fuser::spawn_mount(fs, mountpoint, &config)
        .map_err(|e| Error::io(format!("mounting at {}", mountpoint.display()), e))?;
    Ok(Mounted { session })
}

const TTL: Duration = Duration::from_secs(60);

enum Content {
    /// A made-up folder (root, snapshots/, hosts/x/, ...): its entries.
    Listing(Vec<(OsString, u64)>),
    /// A folder of a snapshot; its entries once read.
    Tree { tree: TreeId, entries: Option<Vec<(OsString, u64)>> },
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

/// An open file: where each chunk starts, and its id.
struct OpenFile {
    starts: Vec<u64>,
    blobs: Vec<BlobId>,
    size: u64,
}

struct SnapshotFs {
    repo: Arc<Repository>,
    inodes: Mutex<Vec<Inode>>,
    files: Mutex<HashMap<u64, Arc<OpenFile>>>,
    next_handle: AtomicU64,
    cache: Mutex<VecDeque<(BlobId, Arc<Vec<u8>>)>>,
    cache_entries: usize,
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
    fn new(repo: Arc<Repository>, snapshots: &[(SnapshotId, Snapshot)], opts: &MountOptions) -> Self {
        let mut fs = Self {
            repo,
            inodes: Mutex::new(Vec::new()),
            files: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            cache: Mutex::new(VecDeque::new()),
            cache_entries: opts.blob_cache_entries.max(1),
        };
        let newest = snapshots.iter().map(|s| s.1.time_ns).max().unwrap_or(0);
        let inodes = fs.inodes.get_mut().unwrap_or_else(|p| p.into_inner());
        // Inode 1 is the root; its listing is filled in below.
        inodes.push(Inode { content: Content::Listing(Vec::new()), node: folder_node(b"/", newest) });
        let by_time = Self::snapshot_list(inodes, snapshots.iter().collect(), newest);
        let ids: Vec<(OsString, u64)> =
            snapshots.iter().map(|(id, s)| (OsString::from(id.short()), Self::snapshot_root(inodes, s))).collect();
        let ids = Self::listing(inodes, ids, newest);
        let mut hosts: std::collections::BTreeMap<&str, Vec<&(SnapshotId, Snapshot)>> = Default::default();
        let mut tags: std::collections::BTreeMap<&str, Vec<&(SnapshotId, Snapshot)>> = Default::default();
        for s in snapshots {
            hosts.entry(s.1.host.as_str()).or_default().push(s);
            for t in &s.1.tags {
                tags.entry(t.as_str()).or_default().push(s);
            }
        }
        let mut group = |groups: std::collections::BTreeMap<&str, Vec<&(SnapshotId, Snapshot)>>| {
            let entries: Vec<(OsString, u64)> = groups
                .into_iter()
                .map(|(name, list)| (OsString::from(name.replace('/', "_")), Self::snapshot_list(inodes, list, newest)))
                .collect();
            Self::listing(inodes, entries, newest)
        };
        let hosts = group(hosts);
        let tags = group(tags);
        inodes[0].content = Content::Listing(vec![
            ("hosts".into(), hosts),
            ("ids".into(), ids),
            ("snapshots".into(), by_time),
            ("tags".into(), tags),
        ]);
        fs
    }

    fn push(inodes: &mut Vec<Inode>, inode: Inode) -> u64 {
        inodes.push(inode);
        inodes.len() as u64
    }

    fn listing(inodes: &mut Vec<Inode>, entries: Vec<(OsString, u64)>, time_ns: i64) -> u64 {
        Self::push(inodes, Inode { content: Content::Listing(entries), node: folder_node(b"", time_ns) })
    }

    fn snapshot_root(inodes: &mut Vec<Inode>, s: &Snapshot) -> u64 {
        let mut node = folder_node(b"", s.time_ns);
        node.mode = 0o40755;
        Self::push(inodes, Inode { content: Content::Tree { tree: s.tree, entries: None }, node })
    }

    /// A folder of snapshots named by time (unique: `-1`, `-2` ... on clashes), plus `latest`.
    fn snapshot_list(inodes: &mut Vec<Inode>, list: Vec<&(SnapshotId, Snapshot)>, time_ns: i64) -> u64 {
        let mut entries: Vec<(OsString, u64)> = Vec::new();
        let mut latest: Option<(i64, OsString)> = None;
        for (_, s) in list {
            let base = time_name(s);
            let mut name = base.clone();
            let mut n = 0;
            while entries.iter().any(|e| e.0 == OsStr::new(&name)) {
                n += 1;
                name = format!("{base}-{n}");
            }
            let ino = Self::snapshot_root(inodes, s);
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
            let ino = Self::push(inodes, Inode { content: Content::Link(target), node });
            entries.push(("latest".into(), ino));
        }
        Self::listing(inodes, entries, time_ns)
    }

    /// The entries of a folder, reading its tree the first time.
    fn entries(&self, ino: u64) -> std::result::Result<Vec<(OsString, u64)>, Errno> {
        let tree = {
            let inodes = self.inodes.lock().unwrap_or_else(|p| p.into_inner());
            let inode = inodes.get((ino as usize).wrapping_sub(1)).ok_or(Errno::ENOENT)?;
            match &inode.content {
                Content::Listing(e) => return Ok(e.clone()),
                Content::Tree { entries: Some(e), .. } => return Ok(e.clone()),
                Content::Tree { tree, entries: None } => *tree,
                _ => return Err(Errno::ENOTDIR),
            }
        };
        let loaded = self.repo.load_tree(tree).map_err(|_| Errno::EIO)?;
        let mut inodes = self.inodes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(Content::Tree { entries: Some(e), .. }) = inodes.get(ino as usize - 1).map(|i| &i.content) {
            return Ok(e.clone());
        }
        let mut entries = Vec::with_capacity(loaded.nodes().len());
        for n in loaded.into_nodes() {
            let name = OsString::from_vec(n.name.clone());
            let content = match n.kind {
                NodeKind::Dir { subtree } => Content::Tree { tree: subtree, entries: None },
                _ => Content::Leaf,
            };
            entries.push((name, Self::push(&mut inodes, Inode { content, node: n })));
        }
        if let Some(Inode { content: Content::Tree { entries: slot, .. }, .. }) = inodes.get_mut(ino as usize - 1) {
            *slot = Some(entries.clone());
        }
        Ok(entries)
    }

    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let inodes = self.inodes.lock().unwrap_or_else(|p| p.into_inner());
        let n = &inodes.get((ino as usize).wrapping_sub(1))?.node;
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
        Some(FileAttr {
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
        })
    }

    fn blob(&self, id: &BlobId) -> Result<Arc<Vec<u8>>> {
        {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((_, b)) = cache.iter().find(|(c, _)| c == id) {
                return Ok(b.clone());
            }
        }
        let bytes = Arc::new(self.repo.load_blob(BlobKind::Data, id)?);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= self.cache_entries {
            cache.pop_front();
        }
        cache.push_back((*id, bytes.clone()));
        Ok(bytes)
    }

    fn open_file(&self, ino: u64) -> Result<OpenFile> {
        let content = {
            let inodes = self.inodes.lock().unwrap_or_else(|p| p.into_inner());
            match inodes.get((ino as usize).wrapping_sub(1)).map(|i| (&i.node.kind, i.node.size)) {
                Some((NodeKind::File { content }, _)) => content.clone(),
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
        Ok(OpenFile { starts, blobs: content, size: at })
    }

    fn read_at(&self, file: &OpenFile, offset: u64, len: usize) -> Result<Vec<u8>> {
        let end = file.size.min(offset.saturating_add(len as u64));
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        if offset >= end {
            return Ok(out);
        }
        // The chunk holding `offset`: the last one starting at or before it.
        let mut i = file.starts.partition_point(|&s| s <= offset).saturating_sub(1);
        let mut pos = offset;
        while pos < end && i < file.blobs.len() {
            let blob = self.blob(&file.blobs[i])?;
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
}

impl fuser::Filesystem for SnapshotFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let found = self.entries(parent.0).map(|e| e.into_iter().find(|(n, _)| n == name).map(|(_, ino)| ino));
        match found {
            Ok(Some(ino)) => match self.attr(ino) {
                Some(attr) => reply.entry(&TTL, &attr, Generation(0)),
                None => reply.error(Errno::ENOENT),
            },
            Ok(None) => reply.error(Errno::ENOENT),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.attr(ino.0) {
            Some(attr) => reply.attr(&TTL, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let inodes = self.inodes.lock().unwrap_or_else(|p| p.into_inner());
        match inodes.get((ino.0 as usize).wrapping_sub(1)).map(|i| (&i.content, &i.node.kind)) {
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
            let kind =
                if i < 2 { FileType::Directory } else { self.attr(child).map_or(FileType::RegularFile, |a| a.kind) };
            if reply.add(INodeNo(child), (i + 1) as u64, kind, &name) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let files = self.inodes.lock().unwrap_or_else(|p| p.into_inner()).len() as u64;
        reply.statfs(0, 0, 0, files, 0, 4096, 255, 4096);
    }
}
