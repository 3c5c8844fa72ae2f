//! Storage backends over OpenDAL. The repository's files are plain objects addressed by a type and
//! a name; this module maps them to paths and runs OpenDAL's async API on a private runtime so the
//! rest of the engine stays synchronous.
//!
//! Every read, write, listing and deletion of a repository object goes through [`Backend`]. How an
//! object becomes durable is a property of the storage behind it:
//! - a local folder: a write goes to a temporary name and is renamed into place once complete and
//!   synced (then the folder is synced), so a reader never sees a partial object under its final
//!   name, even after SIGKILL or a power cut;
//! - an object store (S3): a write is one PUT, which the store makes visible whole or not at all;
//!   requests are retried with backoff and jitter, bounded in time, and run several at once
//!   (spec/object-store.md).

mod location;
mod prefetch;

use std::future::IntoFuture;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use opendal::{ErrorKind as DalKind, Operator};

pub use location::{COMPILED_SERVICES, Location, Remote, RemoteSettings};
use prefetch::Prefetcher;

use crate::error::{Error, ErrorKind, Result};
use crate::fault::{self, Op};

/// The kinds of file in a repository and the folder each lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileType {
    Config,
    Key,
    Pack,
    Index,
    Snapshot,
    Lock,
    /// Records of operations (spec/records.md); the folder is absent in older repositories.
    Record,
}

impl FileType {
    /// Folder of this type (empty for `config`).
    pub fn dir(self) -> &'static str {
        match self {
            FileType::Config => "",
            FileType::Key => "keys/",
            FileType::Pack => "data/",
            FileType::Index => "index/",
            FileType::Snapshot => "snapshots/",
            FileType::Lock => "locks/",
            FileType::Record => "records/",
        }
    }

    /// The path of the object named `name`.
    pub fn path(self, name: &str) -> String {
        match self {
            FileType::Config => "config".to_owned(),
            FileType::Pack => format!("data/{}/{name}", &name[..name.len().min(2)]),
            _ => format!("{}{name}", self.dir()),
        }
    }
}

/// Name and size of a listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub name: String,
    pub size: u64,
}

/// A connection to the storage of one repository.
#[derive(Debug, Clone)]
pub struct Backend {
    op: Operator,
    runtime: Arc<tokio::runtime::Runtime>,
    location: Location,
    /// The folder of a local repository: its objects are files there, made durable by fsync and
    /// rename. `None` for remote storage.
    local: Option<PathBuf>,
    /// Pack uploads that may run at once.
    upload_slots: usize,
    /// Reads hinted ahead of need, running in the background; `None` for a local folder (its
    /// hints go to the kernel).
    prefetch: Option<Arc<Prefetcher>>,
}

/// Pack uploads in flight at most, whatever `connections` allows.
const MAX_UPLOADS: usize = 2;

/// Bytes that hinted reads of a remote store may hold at once, in flight or waiting to be taken
/// (three whole packs of up to about 17 MiB, or three restore spans of up to 16 MiB): the bound on
/// the memory read-ahead adds. Measured on a restore of a 1 GiB dump from SeaweedFS: peak RSS
/// 90-105 MB without read-ahead, 162 MB with it (166-202 MB with 64 MiB, before responses were
/// streamed into one buffer).
const PREFETCH_BUDGET: u64 = 52 << 20;

/// How far ahead of its reads a caller hints a local folder (the kernel reads ahead on its own
/// too; a few spans keep the disk busy).
const LOCAL_READ_AHEAD: usize = 4;

/// The most reads hinted ahead of a remote store, whatever `connections` allows.
const MAX_REMOTE_READ_AHEAD: usize = 8;

/// The folder, inside the repository, for objects being written.
const TEMP_DIR: &str = "tmp";

impl Backend {
    /// Connects to `location`. Unless `create` is set, a repository must already exist there (a
    /// config object): merely looking for a repository never creates folders, and a location that
    /// cannot be reached, a missing bucket, refused credentials or a prefix without a repository each
    /// give their own error.
    pub fn open(location: &Location, create: bool) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cairn-io")
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the I/O runtime", e))?;
        let backend = match location {
            Location::Local(path) => {
                if !create && !path.join("config").exists() {
                    return Err(no_repository(location));
                }
                let root = path.to_string_lossy().into_owned();
                let temp = path.join(TEMP_DIR).to_string_lossy().into_owned();
                // OpenDAL creates the temporary folder on build; do not create a repository folder
                // as a side effect of merely looking for one.
                let builder = opendal::services::Fs::default().root(&root);
                let atomic = path.join("keys").is_dir();
                let builder = if atomic { builder.atomic_write_dir(&temp) } else { builder };
                let op = Operator::new(builder).map_err(|e| dal_error(format!("opening {root}"), e))?;
                if atomic {
                    // Partly written objects wait in this folder; only the owner may look in.
                    // Best effort: in a repository another user created, the folder is theirs.
                    let _ = restrict_folder(&path.join(TEMP_DIR));
                }
                Self {
                    op,
                    runtime: Arc::new(runtime),
                    location: location.clone(),
                    local: Some(path.clone()),
                    upload_slots: 1,
                    prefetch: None,
                }
            }
            Location::Remote(remote) => Self {
                op: remote_operator(location, remote)?,
                runtime: Arc::new(runtime),
                location: location.clone(),
                local: None,
                // Each upload holds a whole pack (up to about 17 MiB) in memory: two at once keep a
                // backup's peak memory near a local backup's (measured: 108 MB with one upload,
                // 172 MB with four, for 256 MiB of new data).
                upload_slots: remote.settings.connections.clamp(1, MAX_UPLOADS),
                prefetch: Some(Arc::new(Prefetcher::new(remote.settings.connections, PREFETCH_BUDGET))),
            },
        };
        if !create && backend.local.is_none() {
            backend.look_for_repository()?;
        }
        Ok(backend)
    }

    /// Whether a remote location holds a repository: its config object exists. Only when it does
    /// not is the location listed, to tell a missing bucket from a prefix with no repository (a
    /// HEAD request gets the same 404 for both).
    fn look_for_repository(&self) -> Result<()> {
        if self.stat(FileType::Config, "")?.is_some() {
            return Ok(());
        }
        fault::before(Op::List, "")?;
        self.runtime
            .block_on(self.op.list_with("/").limit(1).into_future())
            .map_err(|e| self.error(format!("listing {}", self.location), e))?;
        Err(no_repository(&self.location))
    }

    /// Re-opens after `init` created the repository folder, so writes become atomic.
    pub fn reopen(&self) -> Result<Self> {
        Self::open(&self.location, true)
    }

    /// Where this backend stores objects.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// How many pack uploads may run at once: one for a local folder (the disk is the limit, and
    /// its fsyncs are better serial), `connections` (at most 2) for a remote store.
    pub fn upload_slots(&self) -> usize {
        self.upload_slots
    }

    /// Whether the local cache should keep copies of tree packs: for remote storage, where every
    /// read is a request; a local folder reads them as fast as the cache would.
    pub fn wants_cached_trees(&self) -> bool {
        self.local.is_none()
    }

    /// Whether the location holds nothing yet (a new or empty folder, an empty bucket or prefix):
    /// `init` refuses to write a repository among other files.
    pub fn is_empty(&self) -> Result<bool> {
        if let Some(root) = &self.local {
            return Ok(!root.exists() || std::fs::read_dir(root).map(|mut d| d.next().is_none()).unwrap_or(true));
        }
        fault::before(Op::List, "")?;
        let found = self
            .runtime
            .block_on(self.op.list_with("/").limit(1).into_future())
            .map_err(|e| self.error(format!("listing {}", self.location), e))?;
        // The listing of a prefix may name the prefix itself.
        Ok(found.iter().all(|e| e.path() == "/" || e.path().is_empty()))
    }

    /// Something only this copy of the repository has, so that a cache filled from another copy
    /// with the same repository id (`cp -a repo copy`, then one of them changes) is noticed: a
    /// local folder's device and inode (a copy is a new folder; a rename keeps them), or a remote
    /// location's text.
    pub fn identity(&self) -> Vec<u8> {
        use std::os::unix::fs::MetadataExt;
        match self.local.as_deref().map(std::fs::metadata) {
            Some(Ok(m)) => format!("local {}:{}", m.dev(), m.ino()).into_bytes(),
            _ => self.location.to_string().into_bytes(),
        }
    }

    /// Reads a whole object.
    pub fn read(&self, ft: FileType, name: &str) -> Result<Vec<u8>> {
        let path = ft.path(name);
        self.get(&path, None).map(|b| b.to_vec())
    }

    /// Reads `len` bytes at `offset`. The bytes are the storage layer's own buffer (no copy when
    /// it read them in one piece, as the local file system does).
    pub fn read_range(&self, ft: FileType, name: &str, offset: u64, len: u64) -> Result<bytes::Bytes> {
        let path = ft.path(name);
        let buf = self.get(&path, Some((offset, len)))?;
        if buf.len() as u64 != len {
            return Err(Error::corrupt(format!("{path} is shorter than the index says (truncated pack?)")));
        }
        Ok(buf)
    }

    /// Writes a whole object. After this returns the object is durable under its final name; when
    /// it fails, nothing of it is left behind, not even the partly written temporary file (on a
    /// full disk that file would hold the very room the next command needs). On an object store
    /// the object is one PUT request: visible whole once it succeeded, not at all before.
    pub fn write(&self, ft: FileType, name: &str, bytes: Vec<u8>) -> Result<()> {
        let path = ft.path(name);
        fault::before(Op::Write, &path)?;
        self.runtime
            .block_on(async {
                let mut writer = self.op.writer(&path).await?;
                let written = match writer.write(bytes).await {
                    Ok(()) => writer.close().await.map(|_| ()),
                    Err(e) => Err(e),
                };
                if written.is_err() {
                    // The write's own error is the one to report.
                    let _ = writer.abort().await;
                }
                written
            })
            .map_err(|e| self.error(format!("writing {path}"), e))?;
        if let Some(root) = &self.local {
            restrict_object(root, ft, &path)?;
            sync_folder_of(root, &path)?;
        }
        fault::after(Op::Write, &path);
        Ok(())
    }

    /// Size of an object, or `None` when it does not exist.
    pub fn stat(&self, ft: FileType, name: &str) -> Result<Option<u64>> {
        let path = ft.path(name);
        fault::before(Op::Stat, &path)?;
        match self.runtime.block_on(self.op.stat(&path)) {
            Ok(m) => Ok(Some(m.content_length())),
            Err(e) if e.kind() == DalKind::NotFound => Ok(None),
            Err(e) => Err(self.error(format!("looking up {path}"), e)),
        }
    }

    /// Deletes an object; deleting a missing object succeeds.
    pub fn delete(&self, ft: FileType, name: &str) -> Result<()> {
        let path = ft.path(name);
        fault::before(Op::Delete, &path)?;
        self.runtime.block_on(self.op.delete(&path)).map_err(|e| self.error(format!("deleting {path}"), e))?;
        fault::after(Op::Delete, &path);
        Ok(())
    }

    /// Tells the storage that `len` bytes at `offset` of an object will be read soon, so that the
    /// read can start now: a local file system reads them into its cache in the background; on a
    /// remote store the GET starts in the background (at most `connections` requests at once, and
    /// at most 52 MiB held by hinted reads: a hint beyond that waits until reads make room), and
    /// the [`Backend::read_range`] of exactly this range takes its bytes. Only a hint: errors are
    /// ignored (the read then sends its own request). Callers hint [`Backend::read_ahead`] reads
    /// ahead of the one they make.
    pub fn will_read(&self, ft: FileType, name: &str, offset: u64, len: u64) {
        let Some(root) = &self.local else {
            if let Some(prefetch) = &self.prefetch {
                prefetch.hint(&self.runtime, &self.op, (ft.path(name), Some((offset, len))), len);
            }
            return;
        };
        if let Ok(file) = std::fs::File::open(root.join(ft.path(name))) {
            let _ = nix::fcntl::posix_fadvise(
                &file,
                offset as nix::libc::off_t,
                len as nix::libc::off_t,
                nix::fcntl::PosixFadviseAdvice::POSIX_FADV_WILLNEED,
            );
        }
    }

    /// Tells the storage that a whole object of about `size` bytes will be read soon (by
    /// [`Backend::read_into`] or [`Backend::read`]): on a remote store its GET starts in the
    /// background, as for [`Backend::will_read`]; a local folder ignores it (whole packs are read
    /// sequentially, which the kernel's own read-ahead serves).
    pub fn will_read_object(&self, ft: FileType, name: &str, size: u64) {
        if let Some(prefetch) = &self.prefetch {
            prefetch.hint(&self.runtime, &self.op, (ft.path(name), None), size);
        }
    }

    /// How many reads a caller that reads a sequence of ranges or objects should hint ahead of
    /// the one it reads: a few on a local folder, `connections` (at most 8) on a remote store,
    /// so that that many requests are in flight while the caller decodes.
    pub fn read_ahead(&self) -> usize {
        match &self.location {
            Location::Remote(remote) => remote.settings.connections.clamp(2, MAX_REMOTE_READ_AHEAD),
            Location::Local(_) => LOCAL_READ_AHEAD,
        }
    }

    /// Reads an object (`range`: offset and length; `None`: all of it). On a remote store the
    /// request holds one of `connections` permits while it runs, and a hinted read of the same
    /// range is taken (or waited for) instead of sending another request.
    fn get(&self, path: &str, range: Option<(u64, u64)>) -> Result<bytes::Bytes> {
        let permits = match &self.prefetch {
            Some(prefetch) => {
                if let Some(task) = prefetch.take(&self.runtime, &self.op, &(path.to_owned(), range))
                    && let Ok(Some(buffer)) = self.runtime.block_on(task)
                {
                    return Ok(buffer);
                }
                Some(prefetch.permits().clone())
            }
            None => None,
        };
        self.runtime.block_on(async {
            let _permit = match permits {
                Some(p) => {
                    Some(p.acquire_owned().await.map_err(|_| Error::new(ErrorKind::Bug, "read permits closed"))?)
                }
                None => None,
            };
            fault::before(Op::Read, path)?;
            let read = if self.local.is_some() {
                // The file system's read is one piece already: no copy.
                match range {
                    Some((offset, len)) => self.op.read_with(path).range(offset..offset + len).await,
                    None => self.op.read(path).await,
                }
                .map(|b| b.to_bytes())
            } else {
                prefetch::get_whole(&self.op, path, range, range.map_or(0, |r| r.1)).await
            };
            fault::read_done(path);
            read.map_err(|e| self.error(format!("reading {path}"), e))
        })
    }

    /// Deletes many objects, several at a time (a deletion is mostly waiting, on a local file
    /// system as on object storage). Returns one result per name, in order.
    pub fn delete_all(&self, ft: FileType, names: &[String]) -> Vec<Result<()>> {
        let at_once = self.upload_slots.max(8);
        let next = std::sync::atomic::AtomicUsize::new(0);
        let results: Vec<std::sync::Mutex<Option<Result<()>>>> =
            names.iter().map(|_| std::sync::Mutex::new(None)).collect();
        std::thread::scope(|scope| {
            for _ in 0..at_once.min(names.len()) {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(name) = names.get(i) else { break };
                        let r = self.delete(ft, name);
                        *results[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
                    }
                });
            }
        });
        results
            .into_iter()
            .map(|m| {
                m.into_inner()
                    .unwrap_or_else(|p| p.into_inner())
                    .unwrap_or_else(|| Err(Error::new(ErrorKind::Bug, "a deletion was not attempted")))
            })
            .collect()
    }

    /// Lists every object of a type with its size.
    pub fn list(&self, ft: FileType) -> Result<Vec<ObjectInfo>> {
        let dir = ft.dir();
        fault::before(Op::List, dir)?;
        let entries = self.runtime.block_on(async {
            match self.op.list_with(dir).recursive(true).into_future().await {
                Ok(v) => Ok(v),
                Err(e) if e.kind() == DalKind::NotFound => Ok(Vec::new()),
                Err(e) => Err(e),
            }
        });
        let entries = entries.map_err(|e| self.error(format!("listing {dir}"), e))?;
        let mut out = Vec::new();
        for e in entries {
            if e.metadata().is_dir() {
                continue;
            }
            let name = e.name().to_owned();
            if name.len() != 64 || !name.bytes().all(|c| c.is_ascii_hexdigit()) {
                continue;
            }
            let size = match e.metadata().content_length() {
                0 => self.stat(ft, &name)?.unwrap_or(0),
                n => n,
            };
            out.push(ObjectInfo { name, size });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Creates the folders of a new repository (a no-op for object stores, which have no folders).
    pub fn create_layout(&self) -> Result<()> {
        let Some(root) = &self.local else { return Ok(()) };
        for dir in ["keys/", "data/", "index/", "snapshots/", "locks/", "records/"] {
            self.runtime.block_on(self.op.create_dir(dir)).map_err(|e| dal_error(format!("creating {dir}"), e))?;
        }
        restrict_folder(root)?;
        for dir in ["keys", "data", "index", "snapshots", "locks", "records"] {
            restrict_folder(&root.join(dir))?;
        }
        Ok(())
    }

    /// Deletes leftovers of interrupted writes older than `min_age`: partial objects never renamed into
    /// place. Only local repositories have them (an object store never shows an unfinished PUT).
    pub fn clean_temporary(&self, min_age: std::time::Duration) -> Result<usize> {
        let Some(root) = &self.local else { return Ok(0) };
        let dir = root.join(TEMP_DIR);
        fault::before(Op::List, TEMP_DIR)?;
        let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(0) };
        let mut removed = 0;
        for e in entries.flatten() {
            let old = e
                .metadata()
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|a| a >= min_age);
            if old && std::fs::remove_file(e.path()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// Makes a written object (and the pack folder it may have created) private to the owner:
/// files 0600, folders 0700, whatever the umask (spec/layout.md). The object is already in its
/// final place, but it was written inside the private temporary folder of a private repository
/// folder, so no other user could open it meanwhile.
fn restrict_object(root: &Path, ft: FileType, path: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let full = root.join(path);
    std::fs::set_permissions(&full, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io(format!("restricting the permissions of {path}"), e))?;
    // A pack's folder, and `records/` in a repository made before records existed, may have been
    // created by this write.
    if matches!(ft, FileType::Pack | FileType::Record)
        && let Some(folder) = full.parent()
    {
        // Best effort, as for the temporary folder: another user may have created it.
        let _ = restrict_folder(folder);
    }
    Ok(())
}

/// Makes a new name in a local folder durable: the file system's `fsync` of the written file
/// covers its contents, and only an `fsync` of the folder covers the rename that published it
/// (the write order of spec/ordering.md needs both before the next object may name it).
fn sync_folder_of(root: &Path, path: &str) -> Result<()> {
    let full = root.join(path);
    let folder = full.parent().unwrap_or(root);
    std::fs::File::open(folder)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(format!("syncing the folder of {path}"), e))
}

/// Sets a local folder's mode to 0700 unless it already is: repository and cache folders are the
/// owner's alone (the repository holds key files that enable offline password guessing).
pub(crate) fn restrict_folder(folder: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(folder).map_err(|e| Error::io(format!("looking at {}", folder.display()), e))?;
    if meta.permissions().mode() & 0o777 != 0o700 {
        std::fs::set_permissions(folder, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(format!("restricting the permissions of {}", folder.display()), e))?;
    }
    Ok(())
}

/// The error for a location with no repository (no config object).
pub(crate) fn no_repository(location: &Location) -> Error {
    let what = if matches!(location, Location::Remote(_)) { "no config object" } else { "no config file" };
    Error::new(
        ErrorKind::NoRepository,
        format!("no repository at {location} ({what} there); create one with 'cairn init' or check -r/--repo"),
    )
}

/// An OpenDAL operator for a remote location, with cairn's request policy: at most `connections`
/// requests at once, a time limit per request, and retries with exponential backoff and jitter
/// for what may pass (a reset connection, a 5xx answer, a timeout).
fn remote_operator(location: &Location, remote: &Remote) -> Result<Operator> {
    use opendal::layers::{ConcurrentLimitLayer, RetryLayer, TimeoutLayer};
    static SETUP: std::sync::Once = std::sync::Once::new();
    SETUP.call_once(|| {
        // HTTPS through rustls with ring. rustls deprecates ring's provider for lacking
        // post-quantum key exchange; its replacement (aws-lc-rs) costs a long C build on every
        // machine that builds cairn, and ring's classical suites are what S3 endpoints use today.
        #[allow(deprecated)]
        let _ = rustls::crypto::ring::default_provider().install_default();
        // Registers the compiled-in services for `Operator::via_iter`, and the HTTP client.
        opendal::init_default_registry();
        opendal::HttpTransporter::install_default(opendal_http_transport_reqwest::ReqwestTransport::default());
    });
    let config = remote.config().iter().map(|(k, v)| (k.clone(), v.clone()));
    // Only OpenDAL's message: its full error may quote the configuration, secrets included.
    let op = Operator::via_iter(remote.scheme(), config)
        .map_err(|e| Error::invalid(format!("repository location {location}: {}", e.message())))?;
    let s = remote.settings;
    // The retry layer sits outside the timeout layer, so that a request that timed out is retried.
    Ok(op
        .layer(TimeoutLayer::new().with_timeout(s.timeout).with_io_timeout(s.timeout))
        .layer(
            RetryLayer::new()
                .with_max_times(s.retries)
                .with_jitter()
                .with_min_delay(std::time::Duration::from_millis(200))
                .with_max_delay(std::time::Duration::from_secs(10)),
        )
        .layer(ConcurrentLimitLayer::new(s.connections)))
}

impl Backend {
    /// An engine error for a failed storage request while doing `what` (which names the object).
    /// On a remote store the usual causes get their own line: refused credentials, a missing
    /// bucket, a server that cannot be reached.
    fn error(&self, what: String, e: opendal::Error) -> Error {
        let Location::Remote(remote) = &self.location else { return dal_error(what, e) };
        let code = s3_code(e.message());
        let cause = root_cause(&e);
        let retried = if e.is_persistent() || e.is_temporary() {
            format!(" (after {} retries)", remote.settings.retries)
        } else {
            String::new()
        };
        match e.kind() {
            DalKind::PermissionDenied => Error::new(
                ErrorKind::AccessDenied,
                format!(
                    "{what}: {} refused the request{}; check the credentials (AWS_ACCESS_KEY_ID, \
                     AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN or AWS_PROFILE) and their rights on the bucket",
                    self.location,
                    code.map(|c| format!(" ({c})")).unwrap_or_default()
                ),
            ),
            DalKind::ConfigInvalid if code == Some("NoSuchBucket") => Error::new(
                ErrorKind::NoRepository,
                format!(
                    "the bucket '{}' of {} does not exist; create it first (cairn does not create buckets) or check \
                     -r/--repo",
                    remote.bucket().unwrap_or("?"),
                    self.location
                ),
            ),
            DalKind::NotFound => Error::new(ErrorKind::NotFound, format!("{what}: not found in {}", self.location)),
            _ if cause.as_ref().is_some_and(|c| c.contains("onnection refused") || c.contains("dns error")) => {
                Error::new(
                    ErrorKind::Io,
                    format!(
                        "{what}: cannot reach {} ({}){retried}; check the address and that the server is running",
                        self.location,
                        cause.unwrap_or_default()
                    ),
                )
            }
            _ => {
                let detail = code
                    .map(str::to_owned)
                    .or(cause)
                    .unwrap_or_else(|| e.message().lines().next().unwrap_or_default().to_owned());
                Error::new(ErrorKind::Io, format!("{what} on {}: {detail}{retried}", self.location))
            }
        }
    }
}

/// The error code of an S3 error answer, as OpenDAL quotes it (`S3Error { code: "NoSuchBucket", ... }`).
fn s3_code(message: &str) -> Option<&str> {
    let rest = &message[message.find("code: \"")? + "code: \"".len()..];
    Some(&rest[..rest.find('"')?]).filter(|c| !c.is_empty())
}

/// The innermost cause of an error, on one line (a reset connection, a refused connection).
fn root_cause(e: &opendal::Error) -> Option<String> {
    let mut cause: &dyn std::error::Error = std::error::Error::source(e)?;
    while let Some(next) = cause.source() {
        cause = next;
    }
    Some(cause.to_string().lines().next().unwrap_or_default().to_owned())
}

fn dal_error(what: String, e: opendal::Error) -> Error {
    let kind = match e.kind() {
        DalKind::NotFound => ErrorKind::NotFound,
        DalKind::PermissionDenied => ErrorKind::Io,
        _ => ErrorKind::Io,
    };
    // OpenDAL's display carries context lines; the first line of the source is what an operator needs.
    let source = std::error::Error::source(&e);
    let detail = source.map(|s| s.to_string()).unwrap_or_else(|| e.kind().to_string());
    let full = source
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some_and(|io| io.raw_os_error() == Some(nix::libc::ENOSPC));
    let hint = if full {
        "; the repository's disk is full ('cairn prune' deletes what failed backups left there, once a few KB are free)"
    } else {
        ""
    };
    Error::new(kind, format!("{what}: {detail}{hint}"))
}

impl Backend {
    /// Reads a whole object into `out` (cleared first), reusing its allocation. Bulk readers such as
    /// `check --read-data` call this once per pack with one buffer per worker: a local repository
    /// is read straight from the file system, skipping the runtime hand-off and the extra copy of
    /// [`Backend::read`].
    pub fn read_into(&self, ft: FileType, name: &str, out: &mut Vec<u8>) -> Result<()> {
        out.clear();
        let Some(root) = &self.local else {
            // The read's own buffer becomes `out` (no copy, and never two copies of a pack at once).
            *out = Vec::from(self.read_range_all(ft, name)?);
            return Ok(());
        };
        use std::io::Read;
        let path = ft.path(name);
        fault::before(Op::Read, &path)?;
        let mut file = std::fs::File::open(root.join(&path)).map_err(|e| {
            let kind = if e.kind() == std::io::ErrorKind::NotFound { ErrorKind::NotFound } else { ErrorKind::Io };
            Error::new(kind, format!("reading {path}: {e}"))
        })?;
        file.read_to_end(out).map_err(|e| Error::io(format!("reading {path}"), e))?;
        fault::read_done(&path);
        Ok(())
    }

    /// Reads a whole object as the storage layer's buffer.
    fn read_range_all(&self, ft: FileType, name: &str) -> Result<bytes::Bytes> {
        self.get(&ft.path(name), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_error_codes_are_found_in_opendal_messages() {
        assert_eq!(
            s3_code(r#"S3Error { code: "NoSuchBucket", message: "The specified bucket does not exist" }"#),
            Some("NoSuchBucket")
        );
        assert_eq!(s3_code("plain text"), None);
        assert_eq!(s3_code(r#"code: """#), None);
    }
}
