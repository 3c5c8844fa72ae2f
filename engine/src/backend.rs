//! Storage backends over OpenDAL. The repository's files are plain objects addressed by a type and
//! a name; this module maps them to paths and runs OpenDAL's async API on a private runtime so the
//! rest of the engine stays synchronous.
//!
//! Writes go to a temporary name and are renamed into place once complete and synced, so a reader
//! never sees a partial object under its final name, even after SIGKILL.

use std::future::IntoFuture;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use opendal::{ErrorKind as DalKind, Operator};

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

/// A repository location: where its objects are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A directory on a local filesystem.
    Local(PathBuf),
}

impl Location {
    /// Parses a `-r/--repo` value. A plain path (or `local:PATH`) is a local directory.
    pub fn parse(s: &str) -> Result<Self> {
        if s.is_empty() {
            return Err(Error::invalid("the repository location is empty; set -r/--repo or CAIRN_REPOSITORY"));
        }
        if let Some(scheme) = unsupported_scheme(s) {
            return Err(Error::invalid(format!(
                "repository location '{s}': '{scheme}:' locations are not supported yet; use a local folder (a path or local:PATH)"
            )));
        }
        let path = s.strip_prefix("local:").unwrap_or(s);
        let path = std::path::absolute(path).map_err(|e| Error::io(format!("resolving {path}"), e))?;
        Ok(Location::Local(path))
    }
}

/// The scheme of a location such as `s3:bucket/path` or `sftp:host:/path` that cairn cannot store
/// to: a `scheme:` prefix of two or more letters, digits, `+`, `-` or `.` (starting with a letter),
/// other than `local`. Such a location must never be taken for a local folder named `s3:...`.
/// (A path meant literally can be written `./s3:...` or `local:s3:...`.)
fn unsupported_scheme(s: &str) -> Option<&str> {
    let (scheme, _) = s.split_once(':')?;
    let well_formed = scheme.len() >= 2
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    (well_formed && scheme != "local").then_some(scheme)
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
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
}

/// The folder, inside the repository, for objects being written.
const TEMP_DIR: &str = "tmp";

impl Backend {
    /// Connects to `location`. Unless `create` is set, a local location must already exist: merely
    /// looking for a repository never creates folders.
    pub fn open(location: &Location, create: bool) -> Result<Self> {
        if let Location::Local(path) = location
            && !create
            && !path.join("config").exists()
        {
            return Err(Error::new(
                ErrorKind::NoRepository,
                format!(
                    "no repository at {location} (no config file there); create one with 'cairn init' or check -r/--repo"
                ),
            ));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cairn-io")
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the I/O runtime", e))?;
        let op = match location {
            Location::Local(path) => {
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
                op
            }
        };
        Ok(Self { op, runtime: Arc::new(runtime), location: location.clone() })
    }

    /// Re-opens after `init` created the repository folder, so writes become atomic.
    pub fn reopen(&self) -> Result<Self> {
        Self::open(&self.location, true)
    }

    /// Where this backend stores objects.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The local directory, for a local repository.
    pub fn local_root(&self) -> Option<&Path> {
        match &self.location {
            Location::Local(p) => Some(p),
        }
    }

    /// Reads a whole object.
    pub fn read(&self, ft: FileType, name: &str) -> Result<Vec<u8>> {
        let path = ft.path(name);
        fault::before(Op::Read, &path)?;
        self.runtime
            .block_on(self.op.read(&path))
            .map(|b| b.to_vec())
            .map_err(|e| dal_error(format!("reading {path}"), e))
    }

    /// Reads `len` bytes at `offset`. The bytes are the storage layer's own buffer (no copy when
    /// it read them in one piece, as the local file system does).
    pub fn read_range(&self, ft: FileType, name: &str, offset: u64, len: u64) -> Result<bytes::Bytes> {
        let path = ft.path(name);
        fault::before(Op::Read, &path)?;
        let buf = self
            .runtime
            .block_on(self.op.read_with(&path).range(offset..offset + len).into_future())
            .map_err(|e| dal_error(format!("reading {path}"), e))?;
        if buf.len() as u64 != len {
            return Err(Error::corrupt(format!("{path} is shorter than the index says (truncated pack?)")));
        }
        Ok(buf.to_bytes())
    }

    /// Writes a whole object. After this returns the object is durable under its final name; when
    /// it fails, nothing of it is left behind, not even the partly written temporary file (on a
    /// full disk that file would hold the very room the next command needs).
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
            .map_err(|e| dal_error(format!("writing {path}"), e))?;
        self.restrict_object(ft, &path)?;
        self.sync_folder_of(&path)?;
        fault::after(Op::Write, &path);
        Ok(())
    }

    /// Makes a written object (and the pack folder it may have created) private to the owner:
    /// files 0600, folders 0700, whatever the umask (spec/layout.md). The object is already in its
    /// final place, but it was written inside the private temporary folder of a private repository
    /// folder, so no other user could open it meanwhile.
    fn restrict_object(&self, ft: FileType, path: &str) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let Location::Local(root) = &self.location;
        let full = root.join(path);
        std::fs::set_permissions(&full, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io(format!("restricting the permissions of {path}"), e))?;
        // A pack's folder, and `records/` in a repository made before records existed, may have
        // been created by this write.
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
    fn sync_folder_of(&self, path: &str) -> Result<()> {
        let Location::Local(root) = &self.location;
        let full = root.join(path);
        let folder = full.parent().unwrap_or(root);
        std::fs::File::open(folder)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io(format!("syncing the folder of {path}"), e))
    }

    /// Size of an object, or `None` when it does not exist.
    pub fn stat(&self, ft: FileType, name: &str) -> Result<Option<u64>> {
        let path = ft.path(name);
        fault::before(Op::Stat, &path)?;
        match self.runtime.block_on(self.op.stat(&path)) {
            Ok(m) => Ok(Some(m.content_length())),
            Err(e) if e.kind() == DalKind::NotFound => Ok(None),
            Err(e) => Err(dal_error(format!("looking up {path}"), e)),
        }
    }

    /// Deletes an object; deleting a missing object succeeds.
    pub fn delete(&self, ft: FileType, name: &str) -> Result<()> {
        let path = ft.path(name);
        fault::before(Op::Delete, &path)?;
        self.runtime.block_on(self.op.delete(&path)).map_err(|e| dal_error(format!("deleting {path}"), e))?;
        fault::after(Op::Delete, &path);
        Ok(())
    }

    /// Tells the storage that `len` bytes at `offset` of an object will be read soon, so that the
    /// read can start now (a local file system reads them into its cache in the background). Only
    /// a hint: errors are ignored, and object stores ignore it.
    pub fn will_read(&self, ft: FileType, name: &str, offset: u64, len: u64) {
        let Location::Local(root) = &self.location;
        if let Ok(file) = std::fs::File::open(root.join(ft.path(name))) {
            let _ = nix::fcntl::posix_fadvise(
                &file,
                offset as nix::libc::off_t,
                len as nix::libc::off_t,
                nix::fcntl::PosixFadviseAdvice::POSIX_FADV_WILLNEED,
            );
        }
    }

    /// Deletes many objects, several at a time (a deletion is mostly waiting, on a local file
    /// system as on object storage). Returns one result per name, in order.
    pub fn delete_all(&self, ft: FileType, names: &[String]) -> Vec<Result<()>> {
        const AT_ONCE: usize = 8;
        let next = std::sync::atomic::AtomicUsize::new(0);
        let results: Vec<std::sync::Mutex<Option<Result<()>>>> =
            names.iter().map(|_| std::sync::Mutex::new(None)).collect();
        std::thread::scope(|scope| {
            for _ in 0..AT_ONCE.min(names.len()) {
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
        let entries = entries.map_err(|e| dal_error(format!("listing {dir}"), e))?;
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

    /// Creates the folders of a new repository (a no-op for object stores).
    pub fn create_layout(&self) -> Result<()> {
        for dir in ["keys/", "data/", "index/", "snapshots/", "locks/", "records/"] {
            self.runtime.block_on(self.op.create_dir(dir)).map_err(|e| dal_error(format!("creating {dir}"), e))?;
        }
        if let Some(root) = self.local_root() {
            restrict_folder(root)?;
            for dir in ["keys", "data", "index", "snapshots", "locks", "records"] {
                restrict_folder(&root.join(dir))?;
            }
        }
        Ok(())
    }

    /// Deletes leftovers of interrupted writes older than `min_age`: partial objects never renamed into
    /// place. Only local repositories have them.
    pub fn clean_temporary(&self, min_age: std::time::Duration) -> Result<usize> {
        let Some(root) = self.local_root() else { return Ok(0) };
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
        match &self.location {
            Location::Local(root) => {
                use std::io::Read;
                let path = ft.path(name);
                fault::before(Op::Read, &path)?;
                let mut file = std::fs::File::open(root.join(&path)).map_err(|e| {
                    let kind =
                        if e.kind() == std::io::ErrorKind::NotFound { ErrorKind::NotFound } else { ErrorKind::Io };
                    Error::new(kind, format!("reading {path}: {e}"))
                })?;
                file.read_to_end(out).map_err(|e| Error::io(format!("reading {path}"), e))?;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_with_a_scheme_cairn_cannot_store_to_are_refused() {
        for s in ["s3:bucket/path", "sftp:host:/srv", "rest:http://x/", "b2:b", "azure:c", "s3+x.y-z:p"] {
            let e = Location::parse(s).expect_err(s);
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            assert!(e.to_string().contains("not supported yet"), "{e}");
        }
        for s in ["/srv/repo", "repo", "./s3:bucket", "local:s3:bucket", "local:/srv/repo", "c:repo", "a b:c", "9p:x"] {
            assert!(matches!(Location::parse(s), Ok(Location::Local(_))), "{s}");
        }
        assert_eq!(Location::parse("local:/srv/repo").ok(), Some(Location::Local(PathBuf::from("/srv/repo"))));
    }
}
