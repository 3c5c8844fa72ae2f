//! `restore`: write a snapshot (or a part of it) into a target folder, contents and metadata.
//!
//! The walk is sequential and creates folders; file contents are restored in bounded batches whose
//! chunks are fetched, authenticated, decompressed and written in parallel at their offsets, on a
//! writer thread while the walk collects the next batch. A file of at most one chunk is created,
//! written, given its metadata and closed by the worker that opened its chunk. Zero chunks are
//! skipped, so sparse files stay sparse. Folder metadata is set last, deepest first.
//!
//! Restore never writes outside the target: tree entry names are single components (the format
//! refuses `/`, `.` and `..`), folders that already exist are entered only when they are real
//! folders, and every other entry is created new (`O_CREAT | O_EXCL`, `mknod`, `symlink`, `link`),
//! whatever stood at its path removed first (for a file: when the exclusive create finds it), so
//! a symlink or a hard link already in the target is replaced, never written through. A file is written with exactly its stored content: a size
//! in the tree that the content does not have is reported, never padded with zeros.
//! A file whose data fails authentication is removed and reported; wrong bytes are never left
//! behind silently. A bad entry (an unreadable tree, a folder blocked by a symlink) is reported
//! and the walk goes on with the next one.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use cairn_format::tree::{Node, NodeKind};
use cairn_format::{BlobId, SnapshotId};
use rayon::prelude::*;
use serde::Serialize;

use crate::backend::FileType;
use crate::cache::BlobLocation;
use crate::commands::MAX_TREE_DEPTH;
use crate::commands::snapshots::{SnapshotFilter, find_node_in, find_snapshot, warn_if_repository_copy_damaged};
use crate::error::{Error, ErrorKind, Result};
use crate::filter::PatternSet;
use crate::progress::{ItemAction, Progress};
use crate::repository::Repository;

/// Files per batch.
const BATCH_FILES: usize = 2048;
/// Bytes per batch.
const BATCH_BYTES: u64 = 256 * 1024 * 1024;
/// Stack of the thread that walks the trees: room for MAX_TREE_DEPTH levels of recursion.
const WALK_STACK: usize = 64 * 1024 * 1024;
/// Chunks per batch: a hostile tree can list a tiny chunk millions of times per file, and each
/// listed chunk costs a task in memory.
const BATCH_CHUNKS: usize = 1 << 20;
/// Chunk ids looked up in the local cache at once (one read transaction) by the walk.
const LOCATE_WINDOW: usize = 4096;

/// Options of a restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// `latest`, an id or a unique prefix.
    pub snapshot: String,
    /// A path inside the snapshot whose contents are restored; `/` for everything.
    pub subpath: std::ffi::OsString,
    pub target: PathBuf,
    pub includes: Vec<String>,
    pub excludes: Vec<String>,
    /// Re-read every written file and check it against its chunk ids.
    pub verify: bool,
    pub dry_run: bool,
    pub filter: SnapshotFilter,
}

/// What a restore did (or would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RestoreReport {
    pub snapshot_id: Option<SnapshotId>,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    pub special: u64,
    pub bytes: u64,
    /// Files re-read and found identical (with `--verify`).
    pub verified: u64,
    /// Entries that could not be restored, each with the reason.
    pub errors: Vec<String>,
    /// Metadata that could not be applied (owner as non-root, for instance).
    pub warnings: Vec<String>,
    pub dry_run: bool,
}

struct FileJob {
    path: PathBuf,
    /// The permission bits the file is created with when it may have them from the start (see
    /// [`Finish::whole_file`]); otherwise it is created private (0600).
    create_mode: Option<u32>,
    node: Node,
    chunks: Vec<(u64, BlobLocation)>,
}

struct Restorer<'a> {
    repo: &'a Repository,
    opts: &'a RestoreOptions,
    includes: PatternSet,
    excludes: PatternSet,
    progress: &'a dyn Progress,
    report: RestoreReport,
    /// Folders this restore made sure of, each with whether new entries in it get the
    /// restorer's group (the folder's group is the restorer's, so neither a set-group-id folder
    /// nor a `grpid` mount gives them another).
    created_dirs: HashMap<PathBuf, bool>,
    dir_meta: Vec<(PathBuf, Node)>,
    batch: Vec<FileJob>,
    batch_bytes: u64,
    batch_chunks: usize,
    /// Trees being walked, root first: guards against cycles and unbounded depth.
    ancestors: Vec<cairn_format::TreeId>,
    links_seen: HashMap<(u64, u64), PathBuf>,
    /// Where the chunks of the files in the folder's current window of entries are stored.
    located: HashMap<BlobId, BlobLocation>,
    deferred_links: Vec<(PathBuf, PathBuf, Node)>,
    is_root: bool,
    /// The restorer's (effective) user and group.
    uid: u32,
    gid: u32,
    /// Full batches go to the writer thread here.
    batches: Option<std::sync::mpsc::SyncSender<Vec<FileJob>>>,
}

/// Restores according to `opts`.
pub fn restore(repo: &Repository, opts: &RestoreOptions, progress: &dyn Progress) -> Result<RestoreReport> {
    let (id, snapshot) = find_snapshot(repo, &opts.snapshot, &opts.filter)?;
    for e in repo.sync_index()? {
        progress.warn(&format!("{e} (skipped; 'cairn repair index' rebuilds the index)"));
    }
    warn_if_repository_copy_damaged(repo, id, progress)?;
    let (node, base) = find_node_in(repo, &opts.snapshot, id, &snapshot, &opts.subpath)?;
    let base = PathBuf::from(base);
    let mut r = Restorer {
        repo,
        opts,
        includes: PatternSet::new(&opts.includes)?,
        excludes: PatternSet::new(&opts.excludes)?,
        progress,
        report: RestoreReport { snapshot_id: Some(id), dry_run: opts.dry_run, ..RestoreReport::default() },
        created_dirs: HashMap::new(),
        dir_meta: Vec::new(),
        batch: Vec::new(),
        batch_bytes: 0,
        batch_chunks: 0,
        ancestors: Vec::new(),
        links_seen: HashMap::new(),
        located: HashMap::new(),
        deferred_links: Vec::new(),
        is_root: nix::unistd::geteuid().is_root(),
        uid: nix::unistd::geteuid().as_raw(),
        gid: nix::unistd::getegid().as_raw(),
        batches: None,
    };
    if !opts.dry_run {
        r.ensure_target()?;
    }
    let writer =
        BatchWriter { repo, progress, finish: Finish { is_root: r.is_root, verify: opts.verify.then(|| repo.key()) } };
    // One batch is written while the walk collects the next; the walk waits when it has the next
    // one ready before the writer is done (the channel holds none), so two batches at most are held.
    let (batch_tx, batch_rx) = std::sync::mpsc::sync_channel::<Vec<FileJob>>(0);
    // The walk recurses once per folder level, up to MAX_TREE_DEPTH levels: it runs on a thread
    // whose stack holds that many (the main thread's 8 MiB does not, in unoptimised builds).
    let (walked, written) = std::thread::scope(|scope| {
        let r = &mut r;
        let walk = std::thread::Builder::new().name("restore-walk".into()).stack_size(WALK_STACK).spawn_scoped(
            scope,
            move || {
                r.batches = Some(batch_tx);
                let walked = match &node.kind {
                    NodeKind::Dir { subtree } => r.restore_dir(*subtree, &opts.target, &base),
                    _ => {
                        let path = opts.target.join(std::ffi::OsStr::from_bytes(&node.name));
                        r.restore_entry(&node, &path, &base)
                    }
                };
                let walked = walked.and_then(|()| r.flush_batch());
                // The writer ends when it has written the last batch.
                r.batches = None;
                walked
            },
        );
        // Each end of the channel belongs to its thread: when either thread cannot start, its
        // end is dropped with it and the other does not wait.
        let writer = std::thread::Builder::new().name("restore-write".into()).spawn_scoped(scope, || {
            let mut total = BatchReport::default();
            for batch in batch_rx {
                match writer.write(&batch) {
                    Ok(report) => total.add(report),
                    // Returning drops the receiver: the walk's next batch is refused and it stops.
                    Err(e) => return (total, Err(e)),
                }
            }
            (total, Ok(()))
        });
        let walked = match walk {
            Ok(handle) => {
                handle.join().unwrap_or_else(|_| Err(Error::new(ErrorKind::Bug, "the restore walk panicked")))
            }
            Err(e) => Err(Error::io("starting the restore walk", e)),
        };
        let written = match writer {
            Ok(handle) => handle.join().unwrap_or_else(|_| {
                (BatchReport::default(), Err(Error::new(ErrorKind::Bug, "the restore writer panicked")))
            }),
            Err(e) => (BatchReport::default(), Err(Error::io("starting the restore writer", e))),
        };
        (walked, written)
    });
    let (written, write_result) = written;
    r.report.files -= written.failed_files;
    r.report.bytes -= written.failed_bytes;
    r.report.verified += written.verified;
    r.report.errors.extend(written.errors);
    r.report.warnings.extend(written.warnings);
    // The writer's interruption first: the walk only learns of it when its next batch is refused.
    write_result.and(walked).map_err(|e| {
        if e.kind() == ErrorKind::Interrupted {
            Error::new(
                ErrorKind::Interrupted,
                "interrupted: the files written before the stop are complete, the ones being written were removed; \
                 restore again to finish",
            )
        } else {
            e
        }
    })?;
    r.finish_links();
    if !opts.dry_run {
        // Deepest first, so setting a folder's mtime is not undone by writing into it.
        for (path, node) in std::mem::take(&mut r.dir_meta).into_iter().rev() {
            r.apply_metadata(&path, &node);
        }
    }
    Ok(r.report)
}

/// The path of entry `name` inside the snapshot folder `base`, as raw bytes: include and exclude
/// patterns match names that are not UTF-8 as they were stored.
fn join_snapshot_path(base: &Path, name: &[u8]) -> PathBuf {
    base.join(std::ffi::OsStr::from_bytes(name))
}

impl Restorer<'_> {
    fn ensure_target(&mut self) -> Result<()> {
        let t = &self.opts.target;
        match std::fs::symlink_metadata(t) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(Error::invalid(format!("target {} exists and is not a folder", t.display()))),
            Err(_) => {
                std::fs::create_dir_all(t).map_err(|e| Error::io(format!("creating target {}", t.display()), e))?
            }
        }
        let restorers_group = std::fs::symlink_metadata(t).is_ok_and(|m| m.gid() == self.gid);
        self.created_dirs.insert(t.clone(), restorers_group);
        Ok(())
    }

    fn selected(&self, snapshot_path: &Path) -> bool {
        if !self.excludes.is_empty() && self.excludes.matches_or_under(snapshot_path) {
            return false;
        }
        self.includes.is_empty() || self.includes.matches_or_under(snapshot_path)
    }

    /// Creates `dir` (and missing parents below the target), refusing to pass through symlinks.
    fn ensure_dir(&mut self, dir: &Path) -> Result<()> {
        if self.opts.dry_run || self.created_dirs.contains_key(dir) {
            return Ok(());
        }
        if let Some(parent) = dir.parent() {
            self.ensure_dir(parent)?;
        }
        let restorers_group = match std::fs::symlink_metadata(dir) {
            Ok(m) if m.is_dir() => m.gid() == self.gid,
            Ok(_) => {
                return Err(Error::invalid(format!(
                    "{} exists and is not a folder (a symlink or file); refusing to restore through it",
                    dir.display()
                )));
            }
            Err(_) => {
                std::fs::create_dir(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
                // A new folder has the restorer's group, or its parent's.
                dir.parent().and_then(|p| self.created_dirs.get(p)).copied().unwrap_or(false)
            }
        };
        self.created_dirs.insert(dir.to_path_buf(), restorers_group);
        Ok(())
    }

    fn restore_dir(&mut self, tree_id: cairn_format::TreeId, dir: &Path, snapshot_dir: &Path) -> Result<()> {
        // Trees are named by the hash of their content, so a cycle cannot be stored; the check
        // costs nothing and keeps the walk finite whatever the storage returns.
        if self.ancestors.contains(&tree_id) {
            return Err(Error::corrupt(format!("tree {} contains itself; skipped", tree_id.short())));
        }
        if self.ancestors.len() >= MAX_TREE_DEPTH {
            return Err(Error::invalid(format!("folders nested more than {MAX_TREE_DEPTH} deep; skipped")));
        }
        let tree = self.repo.load_tree(tree_id)?;
        self.ancestors.push(tree_id);
        let walked = self.restore_nodes(tree.nodes(), dir, snapshot_dir);
        self.ancestors.pop();
        walked
    }

    /// Restores each of `nodes`; an entry that fails is reported and the next one restored. Only
    /// an interruption stops the walk.
    fn restore_nodes(&mut self, nodes: &[Node], dir: &Path, snapshot_dir: &Path) -> Result<()> {
        let mut start = 0;
        while start < nodes.len() {
            let end = start + self.locate_window(&nodes[start..], snapshot_dir);
            for node in &nodes[start..end] {
                let path = dir.join(std::ffi::OsStr::from_bytes(&node.name));
                let spath = join_snapshot_path(snapshot_dir, &node.name);
                match self.restore_entry(node, &path, &spath) {
                    Err(e) if e.kind() != ErrorKind::Interrupted => {
                        self.report.errors.push(format!("{}: {e}", spath.display()))
                    }
                    other => other?,
                }
            }
            start = end;
        }
        Ok(())
    }

    /// Looks up, in one read transaction, where the chunks of the selected files among the first
    /// of `nodes` are stored, into `located`: the nodes up to the first folder (whose walk needs
    /// the map for its own entries) or up to [`LOCATE_WINDOW`] chunk ids. Returns how many nodes
    /// that covers (at least one). A file of more chunks than a window looks its chunks up
    /// itself, a window at a time; so does a file whose chunks are not found here.
    fn locate_window(&mut self, nodes: &[Node], snapshot_dir: &Path) -> usize {
        self.located.clear();
        let filtered = !self.includes.is_empty() || !self.excludes.is_empty();
        let mut ids = Vec::new();
        let mut covered = 0;
        for node in nodes {
            covered += 1;
            match &node.kind {
                NodeKind::Dir { .. } => break,
                NodeKind::File { content } if content.len() <= LOCATE_WINDOW => {
                    if filtered && !self.selected(&join_snapshot_path(snapshot_dir, &node.name)) {
                        continue;
                    }
                    ids.extend_from_slice(content);
                    if ids.len() >= LOCATE_WINDOW {
                        break;
                    }
                }
                _ => {}
            }
        }
        // A failed lookup is tried again, and reported, file by file.
        if !ids.is_empty()
            && let Ok(found) = self.repo.locate_many_for_reading(&ids)
        {
            self.located.extend(ids.into_iter().zip(found).filter_map(|(id, loc)| Some((id, loc?))));
        }
        covered
    }

    fn restore_entry(&mut self, node: &Node, path: &Path, spath: &Path) -> Result<()> {
        crate::cancel::check()?;
        if let NodeKind::Dir { subtree } = &node.kind {
            if !self.excludes.is_empty() && self.excludes.matches_or_under(spath) {
                return Ok(());
            }
            let wanted = self.includes.is_empty() || self.includes.matches_or_under(spath);
            if wanted {
                self.ensure_dir(path)?;
                self.report.dirs += 1;
                self.progress.item_done(spath, ItemAction::Restored, 0);
                self.dir_meta.push((path.to_path_buf(), node.clone()));
            }
            return self.restore_dir(*subtree, path, spath);
        }
        if !self.selected(spath) {
            return Ok(());
        }
        if let Some(parent) = path.parent() {
            self.ensure_dir(parent)?;
        }
        self.progress.set_current(spath);
        self.progress.item_done(spath, ItemAction::Restored, node.size);
        match &node.kind {
            NodeKind::File { content } => {
                let link_key = (node.links > 1).then_some((node.device, node.inode));
                if let Some(first) = link_key.and_then(|key| self.links_seen.get(&key)) {
                    self.deferred_links.push((first.clone(), path.to_path_buf(), node.clone()));
                    return Ok(());
                }
                let mut chunks = Vec::with_capacity(content.len());
                let mut offset = 0u64;
                for piece in content.chunks(LOCATE_WINDOW) {
                    let found = if piece.iter().all(|id| self.located.contains_key(id)) {
                        piece.iter().map(|id| self.located.get(id).copied()).collect()
                    } else {
                        self.repo.locate_many_for_reading(piece)?
                    };
                    for (id, loc) in piece.iter().zip(found) {
                        let Some(loc) = loc else {
                            self.report.errors.push(format!(
                                "{}: data blob {} is missing from the index",
                                spath.display(),
                                id.short()
                            ));
                            return Ok(());
                        };
                        let len = u64::from(loc.entry.plain_len);
                        chunks.push((offset, loc));
                        offset += len;
                    }
                }
                // Only a file that is going to be written is the first name of its hard links: the
                // later names never link to whatever stands at a path that was not restored.
                if let Some(key) = link_key {
                    self.links_seen.insert(key, path.to_path_buf());
                }
                self.report.files += 1;
                self.report.bytes += offset;
                self.batch_bytes += offset;
                self.batch_chunks += chunks.len();
                // A file may be created with its mode when it is created with its final owner and
                // group too (the restorer's, in a folder that gives it the restorer's group): no
                // one it will not be open to can open it meanwhile. Set-id bits and extended
                // attributes (ACLs among them) come after the owner, as ever.
                let owned_as_recorded = !self.is_root
                    || (node.uid == self.uid
                        && node.gid == self.gid
                        && path.parent().and_then(|p| self.created_dirs.get(p)) == Some(&true));
                let create_mode = (node.xattrs.is_empty() && node.mode & 0o7000 == 0 && owned_as_recorded)
                    .then_some(node.mode & 0o777);
                self.batch.push(FileJob { path: path.to_path_buf(), create_mode, node: node.clone(), chunks });
                if self.batch.len() >= BATCH_FILES
                    || self.batch_bytes >= BATCH_BYTES
                    || self.batch_chunks >= BATCH_CHUNKS
                {
                    self.flush_batch()?;
                }
            }
            NodeKind::Symlink { target } => {
                self.report.symlinks += 1;
                if !self.opts.dry_run {
                    remove_existing(path);
                    let target = std::ffi::OsStr::from_bytes(target);
                    match std::os::unix::fs::symlink(target, path) {
                        Ok(()) => self.apply_metadata(path, node),
                        Err(e) => self.report.errors.push(format!("{}: creating symlink: {e}", path.display())),
                    }
                }
            }
            NodeKind::Fifo | NodeKind::Socket | NodeKind::BlockDevice { .. } | NodeKind::CharDevice { .. } => {
                self.report.special += 1;
                if !self.opts.dry_run {
                    remove_existing(path);
                    use nix::sys::stat::{Mode, SFlag, mknod};
                    let (kind, rdev) = match node.kind {
                        NodeKind::Fifo => (SFlag::S_IFIFO, 0),
                        // The socket file only: no program listens on it until one binds it
                        // again (restic restores sockets the same way).
                        NodeKind::Socket => (SFlag::S_IFSOCK, 0),
                        NodeKind::BlockDevice { rdev } => (SFlag::S_IFBLK, rdev),
                        NodeKind::CharDevice { rdev } => (SFlag::S_IFCHR, rdev),
                        _ => unreachable!("matched above"),
                    };
                    match mknod(path, kind, Mode::from_bits_truncate(node.mode & 0o7777), rdev as nix::libc::dev_t) {
                        Ok(()) => self.apply_metadata(path, node),
                        Err(e) => self.report.warnings.push(format!(
                            "{}: cannot create {}: {e}",
                            path.display(),
                            node.kind.name()
                        )),
                    }
                }
            }
            NodeKind::Dir { .. } => unreachable!("handled above"),
        }
        Ok(())
    }

    /// Hands the batch to the writer thread (in a dry run, only checks the sizes). The walk goes on
    /// with the next batch while this one is written: creating files costs the kernel more than
    /// the walk costs, and both proceed at once.
    fn flush_batch(&mut self) -> Result<()> {
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        self.batch_chunks = 0;
        if self.opts.dry_run {
            self.report.errors.extend(batch.iter().filter_map(size_mismatch));
            return Ok(());
        }
        if batch.is_empty() {
            return Ok(());
        }
        match &self.batches {
            // The writer stops taking batches only when it stopped with an error (an interruption),
            // which it returns itself.
            Some(batches) => batches.send(batch).map_err(|_| Error::new(ErrorKind::Interrupted, "interrupted")),
            None => Err(Error::new(ErrorKind::Bug, "restore batch written after the writer ended")),
        }
    }

    fn finish_links(&mut self) {
        for (first, path, node) in std::mem::take(&mut self.deferred_links) {
            self.report.hardlinks += 1;
            if self.opts.dry_run {
                continue;
            }
            remove_existing(&path);
            if let Err(e) = std::fs::hard_link(&first, &path) {
                self.report.errors.push(format!("{}: creating hard link to {}: {e}", path.display(), first.display()));
            } else {
                self.apply_metadata(&path, &node);
            }
        }
    }

    fn apply_metadata(&mut self, path: &Path, node: &Node) {
        let is_link = matches!(node.kind, NodeKind::Symlink { .. });
        if self.is_root
            && let Err(e) = std::os::unix::fs::lchown(path, Some(node.uid), Some(node.gid))
        {
            self.report.warnings.push(format!("{}: setting owner: {e}", path.display()));
        }
        // After the owner (chown drops security.capability) and before the mode (user.* needs write
        // permission; the mode's group bits and an access ACL's mask agree, so chmod keeps the ACL).
        self.report.warnings.extend(crate::xattrs::apply(path, &node.xattrs));
        if !is_link && let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(node.mode & 0o7777))
        {
            self.report.warnings.push(format!("{}: setting permissions: {e}", path.display()));
        }
        let mtime = mtime_of(node);
        // By path (utimensat, not following links) for every kind: `filetime::set_file_times` opens
        // the file, which blocks forever on a FIFO and fails on a file whose mode forbids reading.
        if let Err(e) = filetime::set_symlink_file_times(path, mtime, mtime) {
            self.report.warnings.push(format!("{}: setting times: {e}", path.display()));
        }
    }
}

/// Writes batches of files on its own thread, while the walk collects the next batch.
struct BatchWriter<'a> {
    repo: &'a Repository,
    progress: &'a dyn Progress,
    finish: Finish<'a>,
}

/// What writing one batch (or all of them) changed in the restore's report.
#[derive(Default)]
struct BatchReport {
    /// Files (and their bytes) the walk counted that could not be restored.
    failed_files: u64,
    failed_bytes: u64,
    verified: u64,
    errors: Vec<String>,
    warnings: Vec<String>,
}

impl BatchReport {
    fn add(&mut self, other: BatchReport) {
        self.failed_files += other.failed_files;
        self.failed_bytes += other.failed_bytes;
        self.verified += other.verified;
        self.errors.extend(other.errors);
        self.warnings.extend(other.warnings);
    }
}

impl BatchWriter<'_> {
    /// Writes the files of `batch`: contents, then metadata. What could not be restored is in the
    /// returned report; only an interruption is an error.
    fn write(&self, batch: &[FileJob]) -> Result<BatchReport> {
        let repo = self.repo;
        let progress = self.progress;
        let finish = &self.finish;
        let mut report = BatchReport::default();
        // A file of at most one chunk (most files of a tree of small files) is created, written,
        // verified, given its metadata and closed by the worker that opened its chunk: one pass
        // over it on one thread, with no path lookup after the open. Larger files are created
        // first, sized to their stored content (never to the size the tree claims), so that
        // their chunks can be written at their offsets in any order.
        let whole: Vec<bool> = batch.iter().map(|job| job.chunks.len() <= 1).collect();
        let files: Vec<std::result::Result<Option<File>, String>> = batch
            .iter()
            .zip(&whole)
            .map(|(job, &whole)| {
                if whole {
                    return Ok(None);
                }
                create_file(&job.path, 0o600)
                    .and_then(|f| f.set_len(content_len(job)).map(|()| Some(f)))
                    .map_err(|e| Error::io("creating", e).to_string())
            })
            .collect();
        // Chunks grouped by pack and by position in it: each group is read with one request and
        // its blobs are opened in parallel, so a pack is read once per batch, not once per chunk.
        let mut tasks: Vec<(usize, u64, BlobLocation)> = batch
            .iter()
            .enumerate()
            .filter(|(i, _)| files[*i].is_ok())
            .flat_map(|(i, job)| job.chunks.iter().map(move |(off, loc)| (i, *off, *loc)))
            .collect();
        tasks.sort_by_key(|(_, _, loc)| (loc.pack, loc.entry.offset));
        let groups = crate::repository::read_spans(&tasks, |t| &t.2);
        // The disk works a few spans ahead of the decoders instead of each of them waiting for its
        // own read. Asking for everything at once would stall here: the kernel allocates the pages
        // and queues the reads before the hint returns.
        let hint = |g: usize| {
            if let Some(group) = groups.get(g) {
                let (first, last) = (&tasks[group.start].2, &tasks[group.end - 1].2);
                let start = u64::from(first.entry.offset);
                repo.backend().will_read(FileType::Pack, &first.pack.to_hex(), start, last.entry.end() - start);
            }
        };
        // (On a remote store a hint starts the span's GET, so that many requests run while the
        // pool decodes.)
        let ahead = repo.backend().read_ahead();
        (0..ahead).for_each(hint);
        // Blobs are opened on the pool, and each worker writes the chunk it opened at its offset
        // while the chunk is still in its core's cache (as the ceiling example does): handing
        // chunks to a writer thread made a third busy thread on two cores and read every chunk
        // again from another core.
        let outcomes: Vec<(usize, Outcome)> = {
            let files = &files;
            // Empty files have no chunk to wait for.
            let empty = batch.par_iter().enumerate().filter(|(_, job)| job.chunks.is_empty()).map(|(i, job)| {
                if crate::cancel::requested() {
                    return (i, Outcome::Skipped);
                }
                (i, finish.whole_file(job, &[]))
            });
            // Spans are taken in order (par_bridge), so the read-ahead stays just ahead of them.
            let spans = groups.iter().enumerate().par_bridge().flat_map(|(g, group)| {
                // Asked to stop: the rest of the batch is skipped, and its files removed below.
                if crate::cancel::requested() {
                    return Vec::new();
                }
                hint(g + ahead);
                let first = &tasks[group.start].2;
                let last = &tasks[group.end - 1].2;
                let span_start = u64::from(first.entry.offset);
                let span_len = last.entry.end() - span_start;
                let span = repo.backend().read_range(FileType::Pack, &first.pack.to_hex(), span_start, span_len);
                tasks[group.clone()]
                    .par_iter()
                    .filter_map(|(i, offset, loc)| {
                        let opened = match &span {
                            Ok(bytes) => {
                                let at = (u64::from(loc.entry.offset) - span_start) as usize;
                                repo.open_blob_at(loc, &bytes[at..at + loc.entry.stored_len as usize])
                            }
                            // A truncated pack may still hold the blobs before the damage.
                            Err(_) => repo.read_blob_at(loc),
                        };
                        let opened = opened.or_else(|failed| repo.read_other_copies(loc, failed));
                        match opened {
                            Ok(data) => {
                                progress.add_bytes(data.len() as u64);
                                if whole[*i] {
                                    if crate::cancel::requested() {
                                        return Some((*i, Outcome::Skipped));
                                    }
                                    return Some((*i, finish.whole_file(&batch[*i], &data)));
                                }
                                // Zero chunks stay holes: sparse files stay sparse.
                                if data.iter().all(|&b| b == 0) {
                                    return None;
                                }
                                let Ok(Some(file)) = &files[*i] else { return None };
                                file.write_all_at(&data, *offset)
                                    .err()
                                    .map(|e| (*i, Outcome::Failed(Error::io("writing", e).to_string())))
                            }
                            Err(e) => Some((*i, Outcome::Failed(e.to_string()))),
                        }
                    })
                    .collect::<Vec<_>>()
            });
            empty.chain(spans).collect()
        };
        let mut failed: HashMap<usize, String> = HashMap::new();
        let mut finished: HashMap<usize, (Vec<String>, Verified)> = HashMap::new();
        for (i, f) in files.iter().enumerate() {
            if let Err(e) = f {
                failed.insert(i, e.clone());
            }
        }
        for (i, outcome) in outcomes {
            match outcome {
                Outcome::Failed(e) => {
                    failed.entry(i).or_insert(e);
                }
                Outcome::Finished { warnings, verified } => {
                    finished.insert(i, (warnings, verified));
                }
                Outcome::Skipped => {}
            }
        }
        if crate::cancel::requested() {
            // Never leave a partly written file looking restored: the larger files of the batch
            // are all unfinished (their metadata comes last), a small file is either finished
            // or was never created.
            for (i, job) in batch.iter().enumerate() {
                if !whole[i] || failed.contains_key(&i) {
                    let _ = std::fs::remove_file(&job.path);
                }
            }
            return Err(Error::new(ErrorKind::Interrupted, "interrupted"));
        }
        // A chunk that failed means its file was not finished: every file whose chunks were all
        // opened and written is finished now, or below for the larger ones.
        for (i, job) in batch.iter().enumerate() {
            if let Some(e) = failed.get(&i) {
                // Never leave a file with wrong or missing bytes looking restored.
                let _ = std::fs::remove_file(&job.path);
                report.failed_files += 1;
                report.failed_bytes += job.chunks.iter().map(|c| u64::from(c.1.entry.plain_len)).sum::<u64>();
                report.errors.push(format!("{}: {e}", job.path.display()));
                finished.remove(&i);
            } else if let Some(e) = size_mismatch(job) {
                report.errors.push(e);
            }
        }
        // The larger files: verified, then given their metadata through the descriptor that
        // wrote them, in parallel.
        let larger: Vec<(usize, Outcome)> = batch
            .par_iter()
            .zip(&files)
            .enumerate()
            .filter(|(i, _)| !whole[*i] && !failed.contains_key(i))
            .filter_map(|(i, (job, file))| match file {
                Ok(Some(file)) => Some((i, finish.written_file(job, file, false))),
                _ => None,
            })
            .collect();
        for (i, outcome) in larger {
            if let Outcome::Finished { warnings, verified } = outcome {
                finished.insert(i, (warnings, verified));
            }
        }
        let mut finished: Vec<_> = finished.into_iter().collect();
        finished.sort_by_key(|(i, _)| *i);
        for (_, (warnings, verified)) in finished {
            report.warnings.extend(warnings);
            match verified {
                Some(Ok(())) => report.verified += 1,
                Some(Err(e)) => report.errors.push(e),
                None => {}
            }
        }
        Ok(report)
    }
}

/// What became of one file of a batch in its parallel pass.
enum Outcome {
    /// Content written and metadata set; with `--verify`, whether the content read back matched.
    Finished { warnings: Vec<String>, verified: Verified },
    /// Not restored, for this reason.
    Failed(String),
    /// Not started: the restore was asked to stop.
    Skipped,
}

/// Whether a file's content read back matched the snapshot (with `--verify`; else `None`).
type Verified = Option<std::result::Result<(), String>>;

/// What the workers need to finish a file whose content they wrote.
struct Finish<'a> {
    is_root: bool,
    /// The key to verify with (`--verify`).
    verify: Option<&'a cairn_format::crypto::MasterKey>,
}

impl Finish<'_> {
    /// Creates the file of at most one chunk `job`, writes `data` (its one chunk, or nothing) and
    /// finishes it. Nothing is written for a zero chunk: the file is sized over a hole.
    fn whole_file(&self, job: &FileJob, data: &[u8]) -> Outcome {
        // A file created with its mode (`create_mode`) usually has the mode and owner it should
        // have then, and one `fstat` shows that instead of a chmod (and as root a chown) that
        // would each write the inode again.
        let file = match create_file(&job.path, job.create_mode.unwrap_or(0o600)) {
            Ok(file) => file,
            Err(e) => return Outcome::Failed(Error::io("creating", e).to_string()),
        };
        // Created empty and written in full: no truncation is needed.
        let written = if data.is_empty() {
            Ok(())
        } else if data.iter().all(|&b| b == 0) {
            file.set_len(data.len() as u64)
        } else {
            file.write_all_at(data, 0)
        };
        match written {
            Ok(()) => self.written_file(job, &file, job.create_mode.is_some()),
            Err(e) => Outcome::Failed(Error::io("writing", e).to_string()),
        }
    }

    /// Verifies (with `--verify`) and sets the metadata of a file whose whole content is written,
    /// through the descriptor that wrote it: no path lookup, and nothing that stands at the path
    /// meanwhile can receive the owner, mode or times. The mode comes after the content (the file
    /// may be read-only) and the times last. `check_first`: the file may have its owner and mode
    /// already (it was created with its mode); they are looked at and only changed if they differ.
    fn written_file(&self, job: &FileJob, file: &File, check_first: bool) -> Outcome {
        // A file whose recorded size its content does not have is reported by the caller and
        // never counts as verified.
        let verified = match self.verify {
            Some(key) if size_mismatch(job).is_none() => Some(verify_file(key, job, file)),
            _ => None,
        };
        let path = &job.path;
        let node = &job.node;
        let mut warnings = Vec::new();
        let current = if check_first { file.metadata().ok() } else { None };
        let has_owner = current.as_ref().is_some_and(|m| m.uid() == node.uid && m.gid() == node.gid);
        let has_mode = current.as_ref().is_some_and(|m| m.mode() & 0o7777 == node.mode & 0o7777);
        if self.is_root
            && !has_owner
            && let Err(e) = std::os::unix::fs::fchown(file, Some(node.uid), Some(node.gid))
        {
            warnings.push(format!("{}: setting owner: {e}", path.display()));
        }
        // After the owner (chown drops security.capability) and before the mode, as for every entry.
        warnings.extend(crate::xattrs::apply_to_file(file, path, &node.xattrs));
        if !has_mode && let Err(e) = file.set_permissions(std::fs::Permissions::from_mode(node.mode & 0o7777)) {
            warnings.push(format!("{}: setting permissions: {e}", path.display()));
        }
        let mtime = mtime_of(node);
        if let Err(e) = filetime::set_file_handle_times(file, Some(mtime), Some(mtime)) {
            warnings.push(format!("{}: setting times: {e}", path.display()));
        }
        Outcome::Finished { warnings, verified }
    }
}

/// Creates a new, empty file at `path` with permission bits `mode` (less the umask, or as a
/// default ACL of the folder says) that only this process has open, never opening what
/// stands there: `O_CREAT | O_EXCL` fails on any existing entry, a symlink (even a dangling one)
/// or a hard link to a file outside the target included; that entry is then removed and the file
/// created again. Into a folder this restore created, the first attempt succeeds: one system call.
fn create_file(path: &Path, mode: u32) -> std::io::Result<File> {
    let create = || {
        OpenOptions::new()
            .write(true)
            .read(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(path)
    };
    match create() {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            remove_existing(path);
            create()
        }
        other => other,
    }
}

/// The modification time recorded in `node`.
fn mtime_of(node: &Node) -> filetime::FileTime {
    filetime::FileTime::from_unix_time(
        node.mtime_ns.div_euclid(1_000_000_000),
        node.mtime_ns.rem_euclid(1_000_000_000) as u32,
    )
}

fn remove_existing(path: &Path) {
    if let Ok(m) = std::fs::symlink_metadata(path) {
        let _ = if m.is_dir() { std::fs::remove_dir(path) } else { std::fs::remove_file(path) };
    }
}

/// The length of a file's stored content: what restore writes, whatever size the tree records.
fn content_len(job: &FileJob) -> u64 {
    job.chunks.last().map_or(0, |(offset, loc)| offset + u64::from(loc.entry.plain_len))
}

/// The error for a file whose tree entry records a size its stored content does not have (a file
/// that changed while it was backed up, or a hostile tree); the file holds the stored content.
fn size_mismatch(job: &FileJob) -> Option<String> {
    let stored = content_len(job);
    (stored != job.node.size).then(|| {
        format!(
            "{}: the snapshot records a size of {} bytes but stores {stored} bytes of content (the file changed \
             while it was backed up, or the snapshot is damaged); restored the {stored} stored bytes",
            job.path.display(),
            job.node.size
        )
    })
}

/// Reads the content of `job` back through `f` and checks it against its chunk ids.
fn verify_file(key: &cairn_format::crypto::MasterKey, job: &FileJob, f: &File) -> std::result::Result<(), String> {
    let mut buf = Vec::new();
    for (offset, loc) in &job.chunks {
        buf.resize(loc.entry.plain_len as usize, 0);
        f.read_exact_at(&mut buf, *offset).map_err(|e| format!("{}: verify: {e}", job.path.display()))?;
        if key.blob_id(&buf) != loc.entry.id {
            return Err(format!(
                "{}: verify: content at offset {offset} differs from the snapshot",
                job.path.display()
            ));
        }
    }
    // Bytes past the stored content (zeros or anything else) fail verification like wrong bytes.
    let len = f.metadata().map_err(|e| format!("{}: verify: {e}", job.path.display()))?.len();
    let stored = content_len(job);
    if len != stored {
        return Err(format!("{}: verify: length {len} differs from the snapshot's {stored}", job.path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use cairn_format::blob::{BlobKind, Compression};
    use cairn_format::pack::BlobEntry;
    use cairn_format::{BlobId, PackId};

    use super::*;

    fn task(pack: u8, offset: u32, len: u32) -> (usize, u64, BlobLocation) {
        let entry = BlobEntry {
            kind: BlobKind::Data,
            id: BlobId::from_bytes([offset as u8; 32]),
            compression: Compression::Raw,
            offset,
            stored_len: len,
            plain_len: len,
        };
        (0, 0, BlobLocation { pack: PackId::from_bytes([pack; 32]), entry })
    }

    #[test]
    fn reads_are_grouped_per_pack_and_split_at_gaps_and_at_the_span_limit() {
        const M: u32 = 1024 * 1024;
        let tasks = vec![
            task(1, 0, 1000),
            task(1, 1000, 1000),
            // A gap of exactly 1 MiB is still read through.
            task(1, 2000 + M, 1000),
            // A larger gap starts a new read.
            task(1, 3000 + 3 * M, 1000),
            // Another pack: another read.
            task(2, 0, 1000),
            // Runs longer than 16 MiB are cut.
            task(3, 0, 10 * M),
            task(3, 10 * M, 10 * M),
        ];
        assert_eq!(crate::repository::read_spans(&tasks, |t| &t.2), vec![0..3, 3..4, 4..5, 5..6, 6..7]);
        assert_eq!(
            crate::repository::read_spans(&[], |t: &(usize, u64, BlobLocation)| &t.2),
            Vec::<std::ops::Range<usize>>::new()
        );
    }
}
