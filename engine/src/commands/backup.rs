//! `backup`: walk files (or read standard input or a command's output), chunk, deduplicate, store,
//! and write a snapshot.
//!
//! The main thread walks, reads, chunks and hashes small files, whose new chunks are compressed and
//! sealed on rayon's pool through the [`PackSaver`]. A large file or stream is read, cut, hashed,
//! compressed and sealed block by block on one worker thread per core (see
//! `chunk_stream` and the `chunk_pipeline` module). Unchanged files (same size, mtime, ctime, inode
//! and device as in the parent snapshot or the files cache) are not read again, provided every blob
//! they list is still in the index. A snapshot is written only after every blob it references is in
//! an index file; a failing source command produces no snapshot.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use cairn_format::blob::BlobKind;
use cairn_format::chunker::Chunker;
use cairn_format::snapshot::{Snapshot, SourceKind, Summary};
use cairn_format::tree::{Node, NodeKind, Tree};
use cairn_format::{BlobId, PackId, SnapshotId, TreeId};
use rayon::prelude::*;
use serde::Serialize;

use crate::cache::FileFingerprint;
use crate::chunk_pipeline::{Cuts, Layout, ZeroCuts, chunk_in_parallel, cut_block, fill};
use crate::error::{Error, ErrorKind, Result};
use crate::filter::PatternSet;
use crate::pack_saver::PackSaver;
use crate::progress::{ItemAction, Progress};
use crate::read_ahead::ReadAhead;
use crate::repository::{Repository, hostname, username};

/// Bytes read from a source at a time (chunks are cut from these blocks).
const READ_BLOCK: usize = 8 * 1024 * 1024;
/// At most this many threads cut and store one large stream (one per core up to here): each holds
/// one block, so this bounds memory on a machine with many cores.
const STREAM_WORKERS_MAX: usize = 8;
/// Files-cache rows written per transaction.
const FILES_CACHE_BATCH: usize = 4096;

/// Where the data comes from.
pub enum BackupSource {
    /// Files and folders, recursively.
    Files(Vec<PathBuf>),
    /// A stream (standard input) stored as one file named `filename`.
    Stdin { filename: String, reader: Box<dyn Read + Send> },
    /// A command whose standard output is stored as one file named `filename`.
    Command { argv: Vec<OsString>, filename: String },
    /// Files that arrive one after another as streams (a database's tables), stored in the folder
    /// `/<root>` of the snapshot and recorded as coming from `kind` (`detail` names it).
    Streams { kind: SourceKind, detail: String, root: String, files: Box<dyn StreamFiles> },
}

/// A source of several streamed files for one snapshot (see [`BackupSource::Streams`]).
pub trait StreamFiles: Send {
    /// The next file, once the previous one was read to its end; `None` after the last. A source
    /// whose producer failed (a dump tool exiting non-zero) returns the error here, and the backup
    /// then writes no snapshot.
    fn next_file(&mut self) -> Result<Option<StreamFile>>;
}

/// One streamed file: its path below the source's root folder, one name per level, and its bytes.
pub struct StreamFile {
    pub path: Vec<String>,
    pub reader: Box<dyn Read + Send>,
}

impl std::fmt::Debug for StreamFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamFile").field("path", &self.path).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for BackupSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackupSource::Files(p) => f.debug_tuple("Files").field(p).finish(),
            BackupSource::Stdin { filename, .. } => f.debug_struct("Stdin").field("filename", filename).finish(),
            BackupSource::Command { argv, filename } => {
                f.debug_struct("Command").field("program", &argv.first()).field("filename", filename).finish()
            }
            BackupSource::Streams { kind, root, .. } => {
                f.debug_struct("Streams").field("kind", kind).field("root", root).finish_non_exhaustive()
            }
        }
    }
}

/// How the parent snapshot is chosen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ParentChoice {
    /// The latest snapshot of the same host and paths.
    #[default]
    Auto,
    /// A named snapshot (id, prefix or `latest`).
    Named(String),
}

/// Options of a backup.
#[derive(Debug)]
pub struct BackupOptions {
    pub source: BackupSource,
    pub excludes: Vec<String>,
    pub exclude_files: Vec<PathBuf>,
    /// Patterns matched in any case (restic's `--iexclude`).
    pub iexcludes: Vec<String>,
    /// Files of patterns matched in any case (restic's `--iexclude-file`).
    pub iexclude_files: Vec<PathBuf>,
    /// Folders holding a file of this name are skipped. `NAME:HEADER` also needs the file to start
    /// with HEADER (restic's syntax; `--exclude-caches` is `CACHEDIR.TAG:Signature: 8a47...`).
    pub exclude_if_present: Vec<String>,
    /// Files larger than this many bytes are skipped (restic's `--exclude-larger-than`).
    pub exclude_larger_than: Option<u64>,
    pub one_file_system: bool,
    pub tags: Vec<String>,
    pub host: Option<String>,
    /// Snapshot time in Unix nanoseconds; now when `None`.
    pub time_ns: Option<i64>,
    pub dry_run: bool,
    pub parent: ParentChoice,
    /// Read every file again, ignoring the parent and the files cache.
    pub force: bool,
    /// Started before the repository was opened (see [`ReadAhead::for_backup`]); only speed.
    pub read_ahead: Option<ReadAhead>,
}

/// What a backup did.
#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    /// The new snapshot (none on a dry run).
    pub snapshot_id: Option<SnapshotId>,
    pub parent: Option<SnapshotId>,
    pub summary: Summary,
    pub packs_written: u64,
    pub index_files_written: u64,
    /// Entries that could not be backed up.
    pub warnings: Vec<String>,
    pub dry_run: bool,
}

/// Runs a backup.
pub fn backup(repo: &Repository, mut opts: BackupOptions, progress: &dyn Progress) -> Result<BackupReport> {
    let started = Instant::now();
    let started_ns = now_ns();
    // The shared lock announces this backup to a concurrent prune before the index is loaded, so
    // that prune never deletes a pack this backup may deduplicate against. It never waits.
    let _lock =
        if opts.dry_run { None } else { Some(crate::lock::acquire(repo, cairn_format::lock::LockKind::Shared)?) };
    for e in repo.sync_index()? {
        progress.warn(&format!("{e} (skipped; 'cairn repair index' rebuilds the index)"));
    }
    let lost = blobs_in_missing_packs(repo, progress)?;
    let host = opts.host.clone().unwrap_or_else(hostname);
    let missing_roots = match &mut opts.source {
        BackupSource::Files(sources) => keep_existing_roots(sources)?,
        _ => Vec::new(),
    };
    let paths = snapshot_paths(&opts.source)?;

    let (snapshots, _) = repo.load_snapshots()?;
    let parent: Option<(SnapshotId, Snapshot)> = if opts.force {
        None
    } else {
        match &opts.parent {
            ParentChoice::Named(spec) => Some(repo.resolve_snapshot(spec, &snapshots)?.clone()),
            ParentChoice::Auto => {
                let mut wanted = paths.clone();
                wanted.sort();
                snapshots
                    .iter()
                    .filter(|(_, s)| {
                        let mut p = s.paths.clone();
                        p.sort();
                        s.host == host && p == wanted
                    })
                    .max_by_key(|(_, s)| s.time_ns)
                    .cloned()
            }
        }
    };
    // A parent that cannot be read only costs speed: everything is read again.
    let (parent, parent_tree) = match parent {
        Some((id, s)) => match repo.load_tree(s.tree) {
            Ok(tree) => (Some((id, s)), Some(tree)),
            Err(e) => {
                progress.warn(&format!("parent snapshot {} unreadable, reading every file again: {e}", id.short()));
                (None, None)
            }
        },
        None => (None, None),
    };
    if let Some((id, _)) = &parent {
        progress.note(&format!("using parent snapshot {}", id.short()));
    }
    if let Some(read_ahead) = &opts.read_ahead {
        read_ahead.read_contents(parent.is_none());
    }

    let excludes = exclude_patterns(&opts)?;
    let chunker = Chunker::new(repo.config().chunker, repo.key().chunker_seed());

    let mut warnings = Vec::new();
    let mut summary = Summary { started_ns, ..Summary::default() };
    let mut child: Option<std::process::Child> = None;

    let outcome: Result<(TreeId, crate::pack_saver::SaverStats)> = std::thread::scope(|scope| {
        let saver = PackSaver::start(scope, repo, opts.dry_run);
        let mut walker = Walker {
            repo,
            saver: &saver,
            chunker,
            excludes: &excludes,
            exclude_if_present: &opts.exclude_if_present,
            exclude_larger_than: opts.exclude_larger_than,
            one_file_system: opts.one_file_system,
            force: opts.force,
            progress,
            buffer: Vec::new(),
            summary: &mut summary,
            warnings: &mut warnings,
            names: NameCache::default(),
            files_cache_pending: Vec::new(),
            use_files_cache: !opts.dry_run,
            root_device: 0,
            read_ahead: opts.read_ahead.as_ref(),
            known_in_folder: HashSet::new(),
            zeros: ZeroChunks::default(),
            lost,
        };
        for message in missing_roots {
            walker.warn(message);
        }
        let root = match opts.source {
            BackupSource::Files(ref sources) => {
                if progress.wants_total() {
                    let sources = sources.clone();
                    let excludes = excludes.clone();
                    scope.spawn(move || {
                        let (files, bytes) = scan_total(&sources, &excludes);
                        progress.set_total_files(files);
                        progress.set_total(bytes);
                    });
                }
                walker.archive_files(sources, parent_tree.as_ref())
            }
            BackupSource::Stdin { ref filename, ref mut reader } => {
                let root = walker.archive_stream(filename, reader.as_mut(), parent_tree.as_ref());
                // `false | cairn backup --stdin` looks like a success to the shell: say so.
                if root.is_ok() && walker.summary.bytes_read == 0 {
                    walker.warn(format!(
                        "standard input was empty: '{filename}' is stored as an empty file \
                         (--stdin-from-command also catches a producer that fails)"
                    ));
                }
                root
            }
            BackupSource::Command { ref argv, ref filename } => {
                let mut c = spawn_command(argv)?;
                let mut stdout = c.stdout.take().ok_or_else(|| Error::new(ErrorKind::Bug, "child has no stdout"))?;
                let pid = c.id();
                child = Some(c);
                // Asked to stop while the command is still producing (or stalled): end it, so that
                // the read returns and the walk reaches its next check.
                let reading = std::sync::atomic::AtomicBool::new(true);
                std::thread::scope(|watch| {
                    let watcher = watch.spawn(|| stop_command_when_asked(pid, &reading));
                    let root = walker.archive_stream(filename, &mut stdout, parent_tree.as_ref());
                    reading.store(false, std::sync::atomic::Ordering::SeqCst);
                    watcher.thread().unpark();
                    root
                })
            }
            BackupSource::Streams { ref root, ref mut files, .. } => walker.archive_streams(root, files.as_mut()),
        };
        let pending = std::mem::take(&mut walker.files_cache_pending);
        drop(walker);
        // Whatever happened, let the saver write what it has: indexed packs are reused by the next run.
        // A storage failure stops the walk early with a generic error; the saver's says what failed.
        let saved = saver.finish();
        let saved = saved?;
        // The files read whole before a stop was asked for are indexed now: the next run need not
        // read them again.
        let stopped = matches!(&root, Err(e) if e.kind() == ErrorKind::Interrupted);
        if !opts.dry_run && (root.is_ok() || stopped) {
            repo.cache().store_files(&pending)?;
        }
        let root = root?;
        Ok((root, saved))
    });

    if let Some(mut c) = child {
        let status = c.wait().map_err(|e| Error::io("waiting for the source command", e))?;
        // When the backup itself failed (a full disk, say) it stopped reading, and the command then
        // fails on the closed pipe: the backup's error is the one that says what happened.
        if !status.success() && outcome.is_ok() {
            let program = match &opts.source {
                BackupSource::Command { argv, .. } => {
                    argv.first().map(|a| a.to_string_lossy().into_owned()).unwrap_or_default()
                }
                _ => String::new(),
            };
            return Err(Error::new(
                ErrorKind::CommandFailed,
                format!("the source command '{program}' failed ({status}); no snapshot was written"),
            ));
        }
    }
    drop(opts.read_ahead.take());
    let (root, saved) = outcome.map_err(|e| {
        if e.kind() == ErrorKind::Interrupted {
            Error::new(
                ErrorKind::Interrupted,
                "interrupted: no snapshot was written; the data already stored is indexed, and the next backup reuses it",
            )
        } else {
            e
        }
    })?;

    summary.data_blobs_added = saved.data_blobs;
    summary.tree_blobs_added = saved.tree_blobs;
    summary.bytes_added_plain = saved.bytes_plain;
    summary.bytes_added_stored = saved.bytes_stored;
    summary.warnings = warnings.len() as u64;
    summary.duration_ns = started.elapsed().as_nanos() as u64;

    let time_ns = opts.time_ns.unwrap_or_else(now_ns);
    let (source, source_detail) = match &opts.source {
        BackupSource::Files(_) => (SourceKind::Files, String::new()),
        BackupSource::Stdin { filename, .. } => (SourceKind::Stdin, filename.clone()),
        BackupSource::Command { argv, .. } => {
            // Only the program name: arguments may carry secrets.
            let program = argv.first().map(|a| Path::new(a).file_name().unwrap_or(a).to_string_lossy().into_owned());
            (SourceKind::Command, program.unwrap_or_default())
        }
        BackupSource::Streams { kind, detail, .. } => (*kind, detail.clone()),
    };
    let snapshot = Snapshot {
        time_ns,
        utc_offset_s: utc_offset_at(time_ns),
        host,
        user: username(),
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
        tags: opts.tags.clone(),
        paths,
        source,
        source_detail,
        tree: root,
        parent: parent.as_ref().map(|p| p.0),
        original: None,
        program_version: crate::VERSION.to_owned(),
        summary,
    };
    let snapshot_id = if opts.dry_run { None } else { Some(repo.save_snapshot(&snapshot)?) };
    Ok(BackupReport {
        snapshot_id,
        parent: parent.map(|p| p.0),
        summary,
        packs_written: saved.packs,
        index_files_written: saved.index_files,
        warnings,
        dry_run: opts.dry_run,
    })
}

/// The exclude patterns of a backup: `--exclude`, `--exclude-file`, then the case-insensitive
/// `--iexclude` and `--iexclude-file`.
pub fn exclude_patterns(opts: &BackupOptions) -> Result<PatternSet> {
    let mut excludes = opts.excludes.clone();
    excludes.extend(PatternSet::from_files(&opts.exclude_files)?);
    let mut set = PatternSet::new(&excludes)?;
    let mut iexcludes = opts.iexcludes.clone();
    iexcludes.extend(PatternSet::from_files(&opts.iexclude_files)?);
    set.add(&iexcludes, true)?;
    Ok(set)
}

/// Whether the folder `dir` holds the marker `spec`: `NAME`, or `NAME:HEADER` for a file named
/// NAME whose first bytes are HEADER (as restic's `--exclude-if-present`).
fn has_marker(dir: &Path, spec: &str) -> bool {
    match spec.split_once(':') {
        Some((name, header)) if !name.is_empty() => {
            let mut start = vec![0u8; header.len()];
            std::fs::File::open(dir.join(name)).and_then(|mut f| f.read_exact(&mut start)).is_ok()
                && start == header.as_bytes()
        }
        _ => dir.join(spec).exists(),
    }
}

/// Unix time now in nanoseconds.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

/// The local time zone's offset from UTC at `time_ns`, in seconds.
pub fn utc_offset_at(time_ns: i64) -> i32 {
    use chrono::{Local, Offset, TimeZone};
    let secs = time_ns.div_euclid(1_000_000_000);
    Local.timestamp_opt(secs, 0).single().map(|t| t.offset().fix().local_minus_utc()).unwrap_or(0)
}

/// Sends SIGTERM to the source command once a stop is asked for, unless the backup stopped
/// reading it first (`reading` false). Polls: the command may be blocked where no signal of ours
/// would wake this thread.
fn stop_command_when_asked(pid: u32, reading: &std::sync::atomic::AtomicBool) {
    while reading.load(std::sync::atomic::Ordering::SeqCst) {
        if crate::cancel::requested() {
            if let Ok(pid) = i32::try_from(pid) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
            }
            return;
        }
        // Woken early when the reading ends.
        std::thread::park_timeout(std::time::Duration::from_millis(50));
    }
}

fn spawn_command(argv: &[OsString]) -> Result<std::process::Child> {
    let (program, args) = argv.split_first().ok_or_else(|| Error::invalid("--stdin-from-command needs a command"))?;
    std::process::Command::new(program)
        .args(args)
        // The password is cairn's alone (a profile's dump command gets no copy of it).
        .env_remove("CAIRN_PASSWORD")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .map_err(|e| Error::new(ErrorKind::CommandFailed, format!("starting '{}': {e}", program.to_string_lossy())))
}

/// Keeps the backup roots that can be looked at. One that cannot is left out, as restic does: the
/// snapshot neither holds nor names it, and the returned warning makes the run end with exit 3.
/// When none can be looked at, that is an error and nothing is written.
fn keep_existing_roots(sources: &mut Vec<PathBuf>) -> Result<Vec<String>> {
    let mut missing = Vec::new();
    let mut found = Vec::with_capacity(sources.len());
    for source in sources.drain(..) {
        match std::fs::symlink_metadata(absolute_clean(&source)?) {
            Ok(_) => found.push(source),
            Err(e) => missing.push(format!("cannot back up {}: {e}", source.display())),
        }
    }
    if found.is_empty()
        && let Some(first) = missing.first()
    {
        let message = match missing.len() {
            1 => format!("nothing to back up: {first}"),
            n => format!("nothing to back up: none of the {n} paths can be read ({first}, ...)"),
        };
        return Err(Error::new(ErrorKind::InvalidInput, message));
    }
    *sources = found;
    Ok(missing.into_iter().map(|m| format!("{m} (skipped)")).collect())
}

/// The paths a snapshot records: absolute, normalised, `/name` for streams.
fn snapshot_paths(source: &BackupSource) -> Result<Vec<String>> {
    match source {
        BackupSource::Files(paths) => {
            if paths.is_empty() {
                return Err(Error::invalid("nothing to back up: give at least one path (or --stdin)"));
            }
            let mut out = Vec::new();
            for p in paths {
                let abs = absolute_clean(p)?;
                let s = abs.to_string_lossy().into_owned();
                if !out.contains(&s) {
                    out.push(s);
                }
            }
            Ok(out)
        }
        BackupSource::Stdin { filename, .. } | BackupSource::Command { filename, .. } => {
            cairn_format::tree::validate_name(filename.as_bytes())
                .map_err(|_| Error::invalid(format!("'{filename}' is not a valid file name for --stdin-filename")))?;
            Ok(vec![format!("/{filename}")])
        }
        BackupSource::Streams { root, .. } => {
            cairn_format::tree::validate_name(root.as_bytes())
                .map_err(|_| Error::invalid(format!("'{root}' is not a valid folder name for a snapshot")))?;
            Ok(vec![format!("/{root}")])
        }
    }
}

/// Folders of streamed files being assembled (see [`Walker::archive_streams`]).
#[derive(Default)]
struct StreamFolder {
    files: Vec<Node>,
    folders: BTreeMap<String, StreamFolder>,
}

impl StreamFolder {
    fn insert(&mut self, path: &[String], node: Node) {
        match path {
            [] | [_] => self.files.push(node),
            [first, rest @ ..] => self.folders.entry(first.clone()).or_default().insert(rest, node),
        }
    }
}

/// Makes a path absolute and removes `.` and `..` without following symlinks.
fn absolute_clean(p: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(p).map_err(|e| Error::io(format!("resolving {}", p.display()), e))?;
    let mut out = PathBuf::from("/");
    for c in abs.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    Ok(out)
}

/// A folder of the snapshot's root that only leads to backed-up paths, or a backed-up path itself.
enum Virtual {
    Real(PathBuf),
    Dir(BTreeMap<OsString, Virtual>),
}

fn build_virtual(paths: &[PathBuf]) -> Result<BTreeMap<OsString, Virtual>> {
    let mut root: BTreeMap<OsString, Virtual> = BTreeMap::new();
    let mut sorted: Vec<PathBuf> = paths.iter().map(|p| absolute_clean(p)).collect::<Result<_>>()?;
    sorted.sort();
    'paths: for abs in sorted {
        let names: Vec<OsString> = abs
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.to_owned()),
                _ => None,
            })
            .collect();
        if names.is_empty() {
            // Backing up "/" itself: its entries are the real root's.
            let entries = std::fs::read_dir("/").map_err(|e| Error::io("reading /", e))?;
            for e in entries.flatten() {
                root.insert(e.file_name(), Virtual::Real(e.path()));
            }
            break;
        }
        let mut level = &mut root;
        for (i, name) in names.iter().enumerate() {
            if i + 1 == names.len() {
                level.insert(name.clone(), Virtual::Real(abs.clone()));
                continue 'paths;
            }
            let entry = level.entry(name.clone()).or_insert_with(|| Virtual::Dir(BTreeMap::new()));
            match entry {
                // An ancestor is already backed up whole.
                Virtual::Real(_) => continue 'paths,
                Virtual::Dir(children) => level = children,
            }
        }
    }
    Ok(root)
}

#[derive(Default)]
struct NameCache {
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
}

impl NameCache {
    fn user(&mut self, uid: u32) -> String {
        self.users
            .entry(uid)
            .or_insert_with(|| {
                nix::unistd::User::from_uid(uid.into()).ok().flatten().map(|u| u.name).unwrap_or_default()
            })
            .clone()
    }
    fn group(&mut self, gid: u32) -> String {
        self.groups
            .entry(gid)
            .or_insert_with(|| {
                nix::unistd::Group::from_gid(gid.into()).ok().flatten().map(|g| g.name).unwrap_or_default()
            })
            .clone()
    }
}

struct Walker<'a, 's> {
    repo: &'a Repository,
    saver: &'a PackSaver<'s>,
    chunker: Chunker,
    excludes: &'a PatternSet,
    exclude_if_present: &'a [String],
    exclude_larger_than: Option<u64>,
    one_file_system: bool,
    force: bool,
    progress: &'a dyn Progress,
    buffer: Vec<u8>,
    summary: &'a mut Summary,
    warnings: &'a mut Vec<String>,
    names: NameCache,
    files_cache_pending: Vec<(Vec<u8>, FileFingerprint, Vec<BlobId>)>,
    use_files_cache: bool,
    root_device: u64,
    read_ahead: Option<&'a ReadAhead>,
    /// Chunks of the current folder's unchanged-looking files that the index is known to hold.
    known_in_folder: HashSet<BlobId>,
    /// How runs of zeros (holes of sparse files) are cut and named.
    zeros: ZeroChunks,
    /// Blobs the index places in packs that are gone, not stored again yet: never deduplicated
    /// against (see [`blobs_in_missing_packs`]).
    lost: HashSet<BlobId>,
}

/// The blobs that the index places in packs the repository no longer holds (lost or deleted by
/// hand since they were indexed). A snapshot that referenced them would not restore, so this
/// backup stores them again. Costs one listing of the packs per run. Runs after the index is
/// loaded and under the shared lock: every pack that index names was written before it and no
/// prune deletes one meanwhile, so a pack missing from the listing is really gone.
fn blobs_in_missing_packs(repo: &Repository, progress: &dyn Progress) -> Result<HashSet<BlobId>> {
    let present: HashSet<PackId> = repo
        .backend()
        .list(crate::backend::FileType::Pack)?
        .iter()
        .filter_map(|o| PackId::from_hex(&o.name).ok())
        .collect();
    let mut lost = HashSet::new();
    let mut missing = 0;
    for (pack, _) in repo.indexed_packs()? {
        if present.contains(&pack) {
            continue;
        }
        missing += 1;
        // A blob with another copy in a pack that exists is stored again too: rare, and harmless.
        lost.extend(repo.cache().pack_blobs(&pack)?.into_iter().map(|entry| entry.id));
    }
    if missing > 0 {
        progress.warn(&format!(
            "{missing} packs named by the index are missing from the repository; the data they held is stored \
             again where this backup needs it (run 'cairn check' to see which snapshots are damaged)"
        ));
    }
    Ok(lost)
}

/// Whether the calling thread must store the data blob `id`: neither stored nor being stored yet,
/// or placed by the index in a pack that is gone (`lost`, see [`blobs_in_missing_packs`]). One
/// lock orders the claims of every worker of a stream, so that no blob is stored twice.
fn claim_blob(repo: &Repository, saver: &PackSaver<'_>, lost: &Mutex<HashSet<BlobId>>, id: BlobId) -> Result<bool> {
    let mut lost = lost.lock().unwrap_or_else(PoisonError::into_inner);
    if lost.remove(&id) {
        saver.claim(id);
        return Ok(true);
    }
    if saver.is_pending(&id) || repo.cache().has_blob(&id)? {
        return Ok(false);
    }
    Ok(saver.claim(id))
}

/// Cut points and ids of all-zero data, remembered: the chunker cuts a run of zeros the same way
/// each time, so the holes of a sparse file are neither chunked nor hashed byte by byte.
#[derive(Default)]
struct ZeroChunks {
    cuts: ZeroCuts,
    ids: HashMap<usize, BlobId>,
}

impl ZeroChunks {
    fn id(&mut self, key: &cairn_format::crypto::MasterKey, len: usize) -> BlobId {
        *self.ids.entry(len).or_insert_with(|| key.blob_id(&vec![0; len]))
    }
}

/// The chunk list of `node` from the parent snapshot when the file still has its fingerprint
/// (size, mtime, ctime, inode, device): then it is not read again.
fn unchanged_content<'n>(node: &'n Node, fp: &FileFingerprint) -> Option<&'n [BlobId]> {
    match &node.kind {
        NodeKind::File { content }
            if node.size == fp.size
                && node.mtime_ns == fp.mtime_ns
                && node.ctime_ns == fp.ctime_ns
                && node.inode == fp.inode
                && node.device == fp.device =>
        {
            Some(content)
        }
        _ => None,
    }
}

fn time_ns(secs: i64, nsecs: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsecs)
}

impl Walker<'_, '_> {
    fn warn(&mut self, message: String) {
        self.progress.warn(&message);
        self.warnings.push(message);
    }

    fn is_known(&self, id: &BlobId) -> Result<bool> {
        if self.lost.contains(id) {
            return Ok(false);
        }
        Ok(self.saver.is_pending(id) || self.repo.cache().has_blob(id)?)
    }

    fn store_blob(&mut self, kind: BlobKind, id: BlobId, data: &[u8]) -> Result<()> {
        if self.is_known(&id)? {
            return Ok(());
        }
        self.save_blob(kind, id, data.to_vec())
    }

    /// Stores a blob that is not known yet; from now on it is (a lost one too).
    fn save_blob(&mut self, kind: BlobKind, id: BlobId, data: Vec<u8>) -> Result<()> {
        self.saver.save(kind, id, data)?;
        self.lost.remove(&id);
        Ok(())
    }

    fn save_tree(&mut self, nodes: Vec<Node>) -> Result<TreeId> {
        let tree = Tree::from_nodes(nodes).map_err(|e| Error::new(ErrorKind::Bug, format!("building a tree: {e}")))?;
        let bytes = tree.encode();
        let id = self.repo.key().blob_id(&bytes);
        self.store_blob(BlobKind::Tree, id, &bytes)?;
        Ok(id.into())
    }

    fn base_node(&mut self, name: Vec<u8>, kind: NodeKind, meta: &std::fs::Metadata) -> Node {
        Node {
            name,
            kind,
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
            user: self.names.user(meta.uid()),
            group: self.names.group(meta.gid()),
            mtime_ns: time_ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: time_ns(meta.ctime(), meta.ctime_nsec()),
            inode: meta.ino(),
            device: meta.dev(),
            links: meta.nlink(),
            size: if meta.is_file() { meta.len() } else { 0 },
            xattrs: Vec::new(),
        }
    }

    /// `node` with the extended attributes the entry at `path` has now: read on every backup, also
    /// for files whose content is reused from the parent, so a snapshot never carries stale ones.
    fn with_xattrs(&mut self, mut node: Node, path: &Path) -> Node {
        let (xattrs, warnings) = crate::xattrs::read(path);
        for w in warnings {
            self.warn(w);
        }
        node.xattrs = xattrs;
        node
    }

    fn archive_files(&mut self, sources: &[PathBuf], parent: Option<&Tree>) -> Result<TreeId> {
        let virtual_root = build_virtual(sources)?;
        self.archive_virtual(&virtual_root, Path::new("/"), parent)
    }

    fn archive_virtual(
        &mut self,
        dir: &BTreeMap<OsString, Virtual>,
        path: &Path,
        parent: Option<&Tree>,
    ) -> Result<TreeId> {
        let mut nodes = Vec::new();
        for (name, child) in dir {
            let child_path = path.join(name);
            let parent_node = parent.and_then(|t| t.get(name.as_bytes()));
            match child {
                Virtual::Real(real) => {
                    let meta = match std::fs::symlink_metadata(real) {
                        Ok(m) => m,
                        Err(e) => {
                            return Err(Error::new(
                                ErrorKind::InvalidInput,
                                format!("cannot back up {}: {e}", real.display()),
                            ));
                        }
                    };
                    self.root_device = meta.dev();
                    if let Some(n) = self.archive_entry(real, name.as_bytes().to_vec(), meta, parent_node)? {
                        nodes.push(self.with_xattrs(n, real));
                    }
                }
                Virtual::Dir(children) => {
                    let meta = std::fs::symlink_metadata(&child_path)
                        .map_err(|e| Error::io(format!("reading {}", child_path.display()), e))?;
                    let parent_sub = self.parent_subtree(parent_node)?;
                    let subtree = self.archive_virtual(children, &child_path, parent_sub.as_ref())?;
                    let node = self.base_node(name.as_bytes().to_vec(), NodeKind::Dir { subtree }, &meta);
                    nodes.push(self.with_xattrs(node, &child_path));
                }
            }
        }
        self.save_tree(nodes)
    }

    fn parent_subtree(&mut self, parent_node: Option<&Node>) -> Result<Option<Tree>> {
        match parent_node.map(|n| &n.kind) {
            Some(NodeKind::Dir { subtree }) => match self.repo.load_tree(*subtree) {
                Ok(t) => Ok(Some(t)),
                Err(e) => {
                    // A damaged parent only costs speed: read everything below again.
                    self.warn(format!("parent tree {} unreadable, reading files again: {e}", subtree.short()));
                    Ok(None)
                }
            },
            _ => Ok(None),
        }
    }

    /// Lists a folder, sorted by name, and looks at each entry; `None` (after a warning) when the
    /// folder cannot be read.
    fn list_folder(&mut self, path: &Path) -> Option<crate::read_ahead::Listing> {
        match crate::read_ahead::list_folder(path, None) {
            Ok((listing, unreadable)) => {
                for e in unreadable {
                    self.warn(format!("{}: {e} (entry skipped)", path.display()));
                }
                Some(listing)
            }
            Err(e) => {
                self.warn(format!("{}: {e} (folder skipped)", path.display()));
                None
            }
        }
    }

    fn archive_entry(
        &mut self,
        path: &Path,
        name: Vec<u8>,
        meta: std::fs::Metadata,
        parent_node: Option<&Node>,
    ) -> Result<Option<Node>> {
        crate::cancel::check()?;
        if !self.excludes.is_empty() && self.excludes.matches(path) {
            return Ok(None);
        }
        let ft = meta.file_type();
        if let Some(read_ahead) = self.read_ahead {
            read_ahead.walked(if ft.is_file() { meta.len() } else { 0 });
        }
        if ft.is_dir() {
            if self.one_file_system && meta.dev() != self.root_device {
                return Ok(None);
            }
            if self.exclude_if_present.iter().any(|marker| has_marker(path, marker)) {
                return Ok(None);
            }
            let parent_sub = self.parent_subtree(parent_node)?;
            // The read-ahead has usually listed and looked at this folder already.
            let listing = match self.read_ahead.and_then(|r| r.take_listing(path)) {
                Some(listing) => listing,
                None => match self.list_folder(path) {
                    Some(listing) => listing,
                    None => return Ok(None),
                },
            };
            let mut looked_at = Vec::with_capacity(listing.len());
            for entry in listing {
                match entry.meta {
                    Ok(m) => looked_at.push((entry.name, entry.path, m, (entry.xattrs, entry.xattr_warnings))),
                    Err(e) => self.warn(format!("{}: {e} (skipped)", entry.path.display())),
                }
            }
            // The chunks of the files that look unchanged are checked against the index in one
            // query per folder instead of one per chunk.
            let known_here = match &parent_sub {
                Some(parent) if !self.force => {
                    let ids: Vec<BlobId> = looked_at
                        .iter()
                        .filter(|(_, _, m, _)| m.is_file())
                        .filter_map(|(n, _, m, _)| {
                            let node = parent.get(n.as_bytes())?;
                            unchanged_content(node, &FileFingerprint::of(m))
                        })
                        .flatten()
                        .copied()
                        .collect();
                    let mut known = self.repo.cache().known_blobs(&ids)?;
                    known.retain(|id| !self.lost.contains(id));
                    known
                }
                _ => HashSet::new(),
            };
            let outer = std::mem::replace(&mut self.known_in_folder, known_here);
            let mut nodes = Vec::with_capacity(looked_at.len());
            for (child_name, child_path, child_meta, (xattrs, xattr_warnings)) in looked_at {
                let child_parent = parent_sub.as_ref().and_then(|t| t.get(child_name.as_bytes()));
                let is_dir = child_meta.is_dir();
                let mine = if is_dir { std::mem::take(&mut self.known_in_folder) } else { HashSet::new() };
                let node = self.archive_entry(&child_path, child_name.as_bytes().to_vec(), child_meta, child_parent);
                if is_dir {
                    self.known_in_folder = mine;
                }
                if let Some(mut n) = node? {
                    // Read with the listing, like the metadata (see `ListedEntry`).
                    for w in xattr_warnings {
                        self.warn(w);
                    }
                    n.xattrs = xattrs;
                    nodes.push(n);
                }
            }
            self.known_in_folder = outer;
            let subtree = self.save_tree(nodes)?;
            match parent_node.map(|n| &n.kind) {
                Some(NodeKind::Dir { subtree: old }) if *old == subtree => self.summary.dirs_unchanged += 1,
                Some(NodeKind::Dir { .. }) => self.summary.dirs_changed += 1,
                _ => self.summary.dirs_new += 1,
            }
            return Ok(Some(self.base_node(name, NodeKind::Dir { subtree }, &meta)));
        }
        if ft.is_file() {
            if self.exclude_larger_than.is_some_and(|limit| meta.len() > limit) {
                return Ok(None);
            }
            return self.archive_file(path, name, meta, parent_node);
        }
        let kind = if ft.is_symlink() {
            match std::fs::read_link(path) {
                Ok(t) => NodeKind::Symlink { target: t.as_os_str().as_bytes().to_vec() },
                Err(e) => {
                    self.warn(format!("{}: {e} (skipped)", path.display()));
                    return Ok(None);
                }
            }
        } else if ft.is_block_device() {
            NodeKind::BlockDevice { rdev: meta.rdev() }
        } else if ft.is_char_device() {
            NodeKind::CharDevice { rdev: meta.rdev() }
        } else if ft.is_fifo() {
            NodeKind::Fifo
        } else {
            NodeKind::Socket
        };
        Ok(Some(self.base_node(name, kind, &meta)))
    }

    fn reusable(&self, content: &[BlobId]) -> Result<bool> {
        for id in content {
            if !self.known_in_folder.contains(id) && !self.is_known(id)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn archive_file(
        &mut self,
        path: &Path,
        name: Vec<u8>,
        meta: std::fs::Metadata,
        parent_node: Option<&Node>,
    ) -> Result<Option<Node>> {
        self.progress.set_current(path);
        let fp = FileFingerprint::of(&meta);
        self.summary.total_size += meta.len();
        if !self.force {
            let from_parent = parent_node.and_then(|n| unchanged_content(n, &fp)).map(<[BlobId]>::to_vec);
            let cached = match from_parent {
                Some(c) => Some(c),
                None => self.repo.cache().lookup_file(path.as_os_str().as_bytes(), &fp)?,
            };
            if let Some(content) = cached
                && self.reusable(&content)?
            {
                self.summary.files_unchanged += 1;
                self.progress.add_bytes(fp.size);
                self.progress.item_done(path, ItemAction::Unchanged, fp.size);
                return Ok(Some(self.base_node(name, NodeKind::File { content }, &meta)));
            }
        }
        let read_before = self.summary.bytes_read;
        let file = std::fs::File::open(path).map(|f| ReadingAhead::new(f, may_have_holes(&meta)));
        let (content, after) = match file.map(|mut f| (self.chunk_stream(&mut f, Some(fp.size)), f.file.metadata())) {
            Ok((Ok(content), after)) => (content, after),
            Ok((Err(e), _)) if e.kind() != ErrorKind::Io || self.saver.has_failed() => return Err(e),
            Ok((Err(e), _)) => {
                self.warn(format!("{}: {e} (skipped)", path.display()));
                return Ok(None);
            }
            Err(e) => {
                self.warn(format!("{}: {e} (skipped)", path.display()));
                return Ok(None);
            }
        };
        let read = self.summary.bytes_read - read_before;
        let changed = changed_while_read(&fp, read, after.ok().as_ref());
        if changed {
            self.warn(format!("file changed while it was read: {}", path.display()));
            self.summary.total_size = self.summary.total_size - fp.size + read;
        }
        let action = match parent_node {
            Some(_) => {
                self.summary.files_changed += 1;
                ItemAction::Modified
            }
            None => {
                self.summary.files_new += 1;
                ItemAction::New
            }
        };
        self.progress.item_done(path, action, read);
        if changed {
            // What was stored matches neither fingerprint; the next run reads the file again.
            let mut node = self.base_node(name, NodeKind::File { content }, &meta);
            node.size = read;
            return Ok(Some(node));
        }
        if self.use_files_cache {
            self.files_cache_pending.push((path.as_os_str().as_bytes().to_vec(), fp, content.clone()));
            if self.files_cache_pending.len() >= FILES_CACHE_BATCH {
                let batch = std::mem::take(&mut self.files_cache_pending);
                self.repo.cache().store_files(&batch)?;
            }
        }
        Ok(Some(self.base_node(name, NodeKind::File { content }, &meta)))
    }

    fn archive_stream(
        &mut self,
        filename: &str,
        reader: &mut (dyn Read + Send),
        parent: Option<&Tree>,
    ) -> Result<TreeId> {
        // The first bytes tell whether the stream is compressed or encrypted; they are then fed
        // to the chunker ahead of the rest, as if read from the stream.
        let mut prefix = Vec::with_capacity(crate::stream_magic::MAGIC_PREFIX);
        (&mut *reader)
            .take(crate::stream_magic::MAGIC_PREFIX as u64)
            .read_to_end(&mut prefix)
            .map_err(|e| Error::io(format!("reading {filename}"), e))?;
        if let Some(format) = crate::stream_magic::compressed_or_encrypted(&prefix) {
            self.progress.warn(&format!(
                "'{filename}' is {format} data: compressed or encrypted input does not deduplicate, so each \
                 backup stores it whole; back up the uncompressed stream (cairn compresses and encrypts it)"
            ));
        }
        let content = self.chunk_stream(&mut prefix.as_slice().chain(reader), None)?;
        let size = self.summary.bytes_read;
        self.summary.total_size += size;
        let action = match parent.and_then(|t| t.get(filename.as_bytes())) {
            Some(_) => {
                self.summary.files_changed += 1;
                ItemAction::Modified
            }
            None => {
                self.summary.files_new += 1;
                ItemAction::New
            }
        };
        self.progress.item_done(Path::new(&format!("/{filename}")), action, size);
        let node = self.stream_node(filename.to_owned(), NodeKind::File { content }, size);
        self.save_tree(vec![node])
    }

    /// Stores every file `files` yields, in the folders their paths name, below the folder `root`.
    fn archive_streams(&mut self, root: &str, files: &mut dyn StreamFiles) -> Result<TreeId> {
        let mut top = StreamFolder::default();
        while let Some(file) = files.next_file()? {
            crate::cancel::check()?;
            let shown = format!("/{root}/{}", file.path.join("/"));
            let name = file.path.last().cloned().unwrap_or_default();
            cairn_format::tree::validate_name(name.as_bytes())
                .map_err(|_| Error::new(ErrorKind::Bug, format!("'{shown}' is not a valid path")))?;
            self.progress.set_current(Path::new(&shown));
            let before = self.summary.bytes_read;
            let mut reader = file.reader;
            let content =
                self.chunk_stream(reader.as_mut(), None).map_err(|e| e.context(format!("backing up {shown}")))?;
            let size = self.summary.bytes_read - before;
            self.summary.total_size += size;
            self.summary.files_new += 1;
            let node = self.stream_node(name, NodeKind::File { content }, size);
            top.insert(&file.path, node);
        }
        let subtree = self.save_stream_folder(top)?;
        let node = self.stream_node(root.to_owned(), NodeKind::Dir { subtree }, 0);
        self.save_tree(vec![node])
    }

    fn save_stream_folder(&mut self, folder: StreamFolder) -> Result<TreeId> {
        let mut nodes = folder.files;
        for (name, sub) in folder.folders {
            let subtree = self.save_stream_folder(sub)?;
            self.summary.dirs_new += 1;
            nodes.push(self.stream_node(name, NodeKind::Dir { subtree }, 0));
        }
        self.save_tree(nodes)
    }

    /// A file or folder that exists only as a stream: owned by this process's user, private.
    fn stream_node(&mut self, name: String, kind: NodeKind, size: u64) -> Node {
        let now = now_ns();
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();
        let mode = if matches!(kind, NodeKind::Dir { .. }) { 0o40_700 } else { 0o100_600 };
        Node {
            name: name.into_bytes(),
            kind,
            mode,
            uid,
            gid,
            user: self.names.user(uid),
            group: self.names.group(gid),
            mtime_ns: now,
            ctime_ns: now,
            inode: 0,
            device: 0,
            links: 1,
            size,
            xattrs: Vec::new(),
        }
    }

    /// Reads a stream to its end, storing every new chunk; returns the chunk list. A stream that
    /// is larger than one block is read, cut and stored by one worker per core (see
    /// [`chunk_in_parallel`]): while one reads or cuts its block, the others compress and seal
    /// theirs, so reading from disk or a pipe overlaps everything else.
    fn chunk_stream(&mut self, reader: &mut (dyn Read + Send), size_hint: Option<u64>) -> Result<Vec<BlobId>> {
        let front = self.chunker.params().max_size as usize;
        let mut content = Vec::new();
        if size_hint.is_some_and(|s| s < READ_BLOCK as u64) {
            let mut block = std::mem::take(&mut self.buffer);
            block.resize(front + READ_BLOCK, 0);
            let result = (|| -> Result<()> {
                let mut carry = 0;
                loop {
                    let (n, at_end) = fill(reader, &mut block[front..]).map_err(|e| Error::io("reading", e))?;
                    carry = self.take_block(&block, front, carry, n, at_end, &mut content)?;
                    if at_end {
                        return Ok(());
                    }
                    block.copy_within(front + READ_BLOCK - carry.., front - carry);
                }
            })();
            self.buffer = block;
            return result.map(|()| content);
        }
        if size_hint.is_some() {
            return self.chunk_in_workers(reader);
        }
        // A stream of unknown size that ends within one block (most tables of a database) is cut
        // and stored on this thread, as a small file is, without starting workers; a longer one
        // goes to the workers with its first block in front of the rest.
        let mut block = std::mem::take(&mut self.buffer);
        block.resize(front + READ_BLOCK, 0);
        let result = match fill(reader, &mut block[front..]) {
            Err(e) => Err(Error::io("reading", e)),
            Ok((n, true)) => self.take_block(&block, front, 0, n, true, &mut content).map(|_| content),
            Ok((n, false)) => self.chunk_in_workers(&mut (&block[front..front + n]).chain(reader)),
        };
        self.buffer = block;
        result
    }

    /// Reads, cuts and stores a large stream on one worker per core; returns the chunk list.
    fn chunk_in_workers(&mut self, reader: &mut (dyn Read + Send)) -> Result<Vec<BlobId>> {
        let mut content = Vec::new();
        // One worker per core reads and cuts the next block (in turn: the serial steps, about a
        // fifth of the work), then hashes, compresses and seals its new chunks on the same core
        // while the next worker reads and cuts the next block. Nothing is copied per chunk and no
        // block crosses cores between stages.
        let (repo, saver, key) = (self.repo, self.saver, self.repo.key());
        let lost = Mutex::new(std::mem::take(&mut self.lost));
        let zero_ids = Mutex::new(std::mem::take(&mut self.zeros.ids));
        let mut zero_cuts = std::mem::take(&mut self.zeros.cuts);
        let layout = Layout { block: READ_BLOCK, workers: rayon::current_num_threads().clamp(1, STREAM_WORKERS_MAX) };
        let (summary, progress) = (&mut *self.summary, self.progress);
        let result = chunk_in_parallel(
            reader,
            &self.chunker,
            &mut zero_cuts,
            layout,
            |data, cuts| {
                let mut ids = Vec::with_capacity(cuts.lengths.len());
                let mut offset = 0;
                for &len in &cuts.lengths {
                    let chunk = &data[offset..offset + len];
                    offset += len;
                    let id = match cuts.zeros {
                        true => *zero_ids
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .entry(len)
                            .or_insert_with(|| key.blob_id(chunk)),
                        false => key.blob_id(chunk),
                    };
                    if claim_blob(repo, saver, &lost, id)? {
                        saver.save_now(BlobKind::Data, id, chunk)?;
                    }
                    ids.push(id);
                }
                Ok(ids)
            },
            |n, ids| {
                summary.bytes_read += n as u64;
                progress.add_bytes(n as u64);
                content.extend(ids);
            },
        );
        self.lost = lost.into_inner().unwrap_or_else(PoisonError::into_inner);
        self.zeros.ids = zero_ids.into_inner().unwrap_or_else(PoisonError::into_inner);
        self.zeros.cuts = zero_cuts;
        result.map(|()| content)
    }

    /// Chunks `block[front - carry .. front + n]`, stores new chunks and appends every chunk id to
    /// `content`. Returns how many bytes at the end of the block were not consumed: they belong to
    /// a chunk that continues in the next block.
    fn take_block(
        &mut self,
        block: &[u8],
        front: usize,
        carry: usize,
        n: usize,
        at_end: bool,
        content: &mut Vec<BlobId>,
    ) -> Result<usize> {
        let data = &block[front - carry..front + n];
        let cuts = cut_block(&self.chunker, &mut self.zeros.cuts, data, at_end);
        self.store_block(data, n, &cuts, content)?;
        // Not at the end, `fill` returned a full block, so the tail ends where the block ends.
        Ok(data.len() - cuts.used)
    }

    /// Hashes the chunks `cuts` makes of `data` (of which `n` bytes are new from the source),
    /// stores the new ones and appends every chunk id to `content`.
    fn store_block(&mut self, data: &[u8], n: usize, cuts: &Cuts, content: &mut Vec<BlobId>) -> Result<()> {
        crate::cancel::check()?;
        self.summary.bytes_read += n as u64;
        self.progress.add_bytes(n as u64);
        let mut spans = Vec::with_capacity(cuts.lengths.len());
        let mut offset = 0;
        for &len in &cuts.lengths {
            spans.push(offset..offset + len);
            offset += len;
        }
        // Hashing is a third of the per-byte work of an unchanged stream: spread it over the cores.
        let key = self.repo.key();
        let ids: Vec<BlobId> = match cuts.zeros {
            true => spans.iter().map(|r| self.zeros.id(key, r.len())).collect(),
            false => spans.par_iter().map(|r| key.blob_id(&data[r.clone()])).collect(),
        };
        for (id, span) in ids.into_iter().zip(spans) {
            content.push(id);
            if !self.is_known(&id)? {
                self.save_blob(BlobKind::Data, id, data[span].to_vec())?;
            }
        }
        Ok(())
    }
}

/// A file read front to back that keeps asking the kernel to read the next `AHEAD` bytes in the
/// background, so the disk never waits for the next `read` call (the kernel's own read-ahead window
/// is a few hundred KiB).
///
/// A file that may have holes is read region by region (`SEEK_DATA`/`SEEK_HOLE`): a hole is not
/// read but given as the zeros it reads as, so the bytes (and so the chunks) are those of a plain
/// read, and a 10 GiB file with a few MiB of data costs little more than its data.
struct ReadingAhead {
    file: std::fs::File,
    position: u64,
    hinted_to: u64,
    /// Some while holes are looked for (a file system that cannot tell is read plainly).
    region: Option<Region>,
}

/// The region of a sparse file that holds `position`: data or a hole, ending at `end`.
#[derive(Debug, Clone, Copy)]
struct Region {
    hole: bool,
    end: u64,
}

/// Whether a file has fewer blocks than its size needs, so it may have holes.
fn may_have_holes(meta: &std::fs::Metadata) -> bool {
    meta.blocks().saturating_mul(512) < meta.len()
}

/// Whether a file changed while it was read: fewer or more bytes than its size when looked at,
/// or a size, modification or change time after reading (`after`) other than before.
fn changed_while_read(before: &FileFingerprint, read: u64, after: Option<&std::fs::Metadata>) -> bool {
    if read != before.size {
        return true;
    }
    match after.map(FileFingerprint::of) {
        Some(now) => now.size != before.size || now.mtime_ns != before.mtime_ns || now.ctime_ns != before.ctime_ns,
        // A file whose state after reading cannot be known is taken as it was read.
        None => false,
    }
}

impl ReadingAhead {
    const AHEAD: u64 = 32 * 1024 * 1024;

    fn new(file: std::fs::File, sparse: bool) -> Self {
        let region = sparse.then_some(Region { hole: false, end: 0 });
        Self { file, position: 0, hinted_to: 0, region }
    }

    /// The region that starts at `position`; `None` at the end of the file.
    fn find_region(&mut self) -> std::io::Result<Option<Region>> {
        use nix::unistd::{Whence, lseek};
        let at = self.position as nix::libc::off_t;
        match lseek(&self.file, at, Whence::SeekData) {
            Ok(data) if data > at => Ok(Some(Region { hole: true, end: data as u64 })),
            Ok(_) => match lseek(&self.file, at, Whence::SeekHole) {
                Ok(hole) if hole > at => Ok(Some(Region { hole: false, end: hole as u64 })),
                // Data that ends where it starts: the file shrank meanwhile.
                Ok(_) => Ok(None),
                Err(e) => Err(e.into()),
            },
            // No data at or after `position`: a hole up to the end of the file, if any is left.
            Err(nix::errno::Errno::ENXIO) => {
                let len = self.file.metadata()?.len();
                Ok((len > self.position).then_some(Region { hole: true, end: len }))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Reads from a file that may have holes: zeros for a hole, `pread` for data.
    fn read_sparse(&mut self, buf: &mut [u8]) -> std::io::Result<Option<usize>> {
        let Some(mut region) = self.region else { return Ok(None) };
        if self.position >= region.end {
            region = match self.find_region() {
                Ok(Some(r)) => r,
                Ok(None) => return Ok(Some(0)),
                Err(_) => {
                    // The file system cannot say where the holes are: read it plainly from here.
                    use std::io::Seek;
                    self.region = None;
                    self.file.seek(std::io::SeekFrom::Start(self.position))?;
                    return Ok(None);
                }
            };
            self.region = Some(region);
        }
        let want = buf.len().min(usize::try_from(region.end - self.position).unwrap_or(usize::MAX));
        let n = if region.hole {
            buf[..want].fill(0);
            want
        } else {
            use std::os::unix::fs::FileExt;
            self.file.read_at(&mut buf[..want], self.position)?
        };
        self.position += n as u64;
        Ok(Some(n))
    }
}

impl Read for ReadingAhead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(n) = self.read_sparse(buf)? {
            return Ok(n);
        }
        if self.position + Self::AHEAD / 2 >= self.hinted_to {
            let from = self.hinted_to.max(self.position);
            let to = self.position + Self::AHEAD;
            // Only a hint: a file system without it reads as before.
            let _ = nix::fcntl::posix_fadvise(
                &self.file,
                from as nix::libc::off_t,
                (to - from) as nix::libc::off_t,
                nix::fcntl::PosixFadviseAdvice::POSIX_FADV_WILLNEED,
            );
            self.hinted_to = to;
        }
        let n = self.file.read(buf)?;
        self.position += n as u64;
        Ok(n)
    }
}

/// Sums the sizes of the files below `sources` (for the progress bar's ETA).
fn scan_total(sources: &[PathBuf], excludes: &PatternSet) -> (u64, u64) {
    fn walk(p: &Path, excludes: &PatternSet, total: &mut (u64, u64)) {
        if !excludes.is_empty() && excludes.matches(p) {
            return;
        }
        let Ok(meta) = std::fs::symlink_metadata(p) else { return };
        if meta.is_file() {
            total.0 += 1;
            total.1 += meta.len();
        } else if meta.is_dir()
            && let Ok(rd) = std::fs::read_dir(p)
        {
            for e in rd.flatten() {
                walk(&e.path(), excludes, total);
            }
        }
    }
    let mut total = (0, 0);
    for s in sources {
        if let Ok(abs) = absolute_clean(s) {
            walk(&abs, excludes, &mut total);
        }
    }
    total
}
