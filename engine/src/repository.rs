//! An opened, unlocked repository: backend, master key, config and local cache, with the loading
//! and saving of every kind of object.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use cairn_format::blob::{BlobKind, open_blob};
use cairn_format::config::Config;
use cairn_format::crypto::{MASTER_SECRET_LEN, MasterKey, Nonce, object_name};
use cairn_format::index::IndexFile;
use cairn_format::key::{KdfParams, KeyFile, SALT_LEN};
use cairn_format::snapshot::Snapshot;
use cairn_format::tree::Tree;
use cairn_format::{BlobId, FormatError, IndexId, KeyId, PackId, SnapshotId, TreeId};

use crate::backend::{Backend, FileType, Location};
use crate::cache::{BlobLocation, Cache};
use crate::error::{Error, ErrorKind, Result};

/// How to open a repository.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Folder holding per-repository caches; `None` keeps the cache in memory for this run.
    pub cache_dir: Option<PathBuf>,
}

/// Options of `init`.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub kdf: KdfParams,
    pub compression_level: i32,
    pub chunker: Option<cairn_format::chunker::ChunkerParams>,
    /// Cut and name blobs as this key does (its id key and chunker seed; `init --copy-chunker-params`).
    /// The new repository's data key is always fresh.
    pub blob_ids_from: Option<MasterKey>,
}

impl Default for InitOptions {
    fn default() -> Self {
        Self { kdf: KdfParams::DEFAULT, compression_level: 1, chunker: None, blob_ids_from: None }
    }
}

/// A snapshot with its id.
pub type SnapshotEntry = (SnapshotId, Snapshot);

/// An unlocked repository.
#[derive(Debug)]
pub struct Repository {
    backend: Backend,
    key: MasterKey,
    key_id: KeyId,
    config: Config,
    cache: Mutex<Cache>,
    tree_packs: Mutex<TreePacks>,
    /// Set when the local cache was not used as found (rebuilt, or kept in memory).
    cache_notice: Option<String>,
}

/// Tree packs read whole, most recent last. Trees are read in walks (backup's parent, restore, ls,
/// prune's mark), and the trees of one snapshot sit together in a few small packs: reading each
/// pack once instead of once per tree makes those walks several times faster.
#[derive(Debug, Default)]
struct TreePacks {
    packs: Vec<(PackId, std::sync::Arc<Vec<u8>>)>,
}

/// How many times an index sync lists again when index files vanished while it read them.
const SYNC_RELISTS: usize = 3;

/// Tree packs kept, and the largest pack that is read whole for its trees.
const TREE_PACKS_KEPT: usize = 2;
const TREE_PACK_MAX: u64 = 8 * 1024 * 1024;

/// Fills a buffer from the operating system's cryptographic random source.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).expect("the operating system's random source is available");
    out
}

/// A fresh random nonce.
pub fn nonce() -> Nonce {
    random_bytes()
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// The local host name.
pub fn hostname() -> String {
    nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "unknown".to_owned())
}

/// The current user's name.
pub fn username() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| nix::unistd::getuid().to_string())
}

impl Repository {
    /// Creates a new repository at `location` and returns it unlocked.
    pub fn init(location: &Location, password: &[u8], init: &InitOptions, open: &OpenOptions) -> Result<Self> {
        let backend = Backend::open(location, true)?;
        if backend.stat(FileType::Config, "")?.is_some() {
            return Err(Error::new(ErrorKind::AlreadyExists, format!("a repository already exists at {location}")));
        }
        if !backend.is_empty()? {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("{location} exists and is not empty; choose an empty or new folder (or prefix)"),
            ));
        }
        let key = MasterKey::from_random(random_bytes::<MASTER_SECRET_LEN>());
        // A repository that cuts and names blobs like another still has its own data key (spec/copy.md).
        let key = init.blob_ids_from.as_ref().map_or(key, |source| source.with_data_key(random_bytes()));
        let mut config = Config::new(random_bytes());
        config.compression_level = init.compression_level;
        if let Some(c) = init.chunker {
            config.chunker = c;
        }
        let config = config.validate().map_err(|e| Error::format("repository settings", e))?;
        backend.create_layout()?;
        let backend = backend.reopen()?;
        let key_file = KeyFile::create(
            &key,
            password,
            init.kdf,
            random_bytes::<SALT_LEN>(),
            &nonce(),
            unix_now(),
            &hostname(),
            &username(),
        )
        .map_err(|e| Error::format("creating the key file", e))?;
        let key_bytes = key_file.encode();
        let key_id = KeyId::from_bytes(object_name(&key_bytes));
        backend.write(FileType::Key, &key_id.to_hex(), key_bytes)?;
        // The config is written last: a repository exists once its config does.
        backend.write(FileType::Config, "", config.encode(&key, &nonce()))?;
        let (cache, cache_notice) =
            Cache::open_checked(open.cache_dir.as_deref(), &config.repository_id, &backend.identity());
        Ok(Self { backend, key, key_id, config, cache: Mutex::new(cache), tree_packs: Mutex::default(), cache_notice })
    }

    /// Opens and unlocks the repository at `location` with `password`.
    pub fn open(location: &Location, password: &[u8], open: &OpenOptions) -> Result<Self> {
        let backend = Backend::open(location, false)?;
        let config_bytes = match backend.read(FileType::Config, "") {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(crate::backend::no_repository(location)),
            Err(e) => return Err(e),
        };
        let (key, key_id) = unlock(&backend, password)?;
        let config = Config::decode(&config_bytes, &key).map_err(|e| Error::format("reading the config", e))?;
        let (cache, cache_notice) =
            Cache::open_checked(open.cache_dir.as_deref(), &config.repository_id, &backend.identity());
        Ok(Self { backend, key, key_id, config, cache: Mutex::new(cache), tree_packs: Mutex::default(), cache_notice })
    }

    pub fn backend(&self) -> &Backend {
        &self.backend
    }
    pub fn key(&self) -> &MasterKey {
        &self.key
    }
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Why the local cache was not used as found (rebuilt from the repository, or kept in memory
    /// for this run), for a one-line warning.
    pub fn cache_notice(&self) -> Option<&str> {
        self.cache_notice.as_deref()
    }

    /// The local cache. Held only briefly: it serialises every user.
    pub fn cache(&self) -> MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads an object stored under its hash and checks the hash.
    pub fn read_verified(&self, ft: FileType, name: &[u8; 32]) -> Result<Vec<u8>> {
        let hex = cairn_format::id::to_hex(name);
        let bytes = self.backend.read(ft, &hex)?;
        if &object_name(&bytes) != name {
            return Err(Error::corrupt(format!("{}{hex} does not match its name (damaged file)", ft.dir())));
        }
        Ok(bytes)
    }

    /// Stores an object under the hash of its bytes and returns that hash.
    pub fn write_named(&self, ft: FileType, bytes: Vec<u8>) -> Result<[u8; 32]> {
        let name = object_name(&bytes);
        self.backend.write(ft, &cairn_format::id::to_hex(&name), bytes)?;
        Ok(name)
    }

    /// Ids of every index file present.
    pub fn list_index_ids(&self) -> Result<Vec<IndexId>> {
        parse_names(self.backend.list(FileType::Index)?.into_iter().map(|o| o.name), IndexId::from_bytes)
    }

    /// Ids of every snapshot present.
    pub fn list_snapshot_ids(&self) -> Result<Vec<SnapshotId>> {
        parse_names(self.backend.list(FileType::Snapshot)?.into_iter().map(|o| o.name), SnapshotId::from_bytes)
    }

    /// Loads and decodes one index file.
    pub fn load_index(&self, id: IndexId) -> Result<IndexFile> {
        let bytes = self.read_verified(FileType::Index, id.as_bytes())?;
        IndexFile::decode(&bytes, &self.key).map_err(|e| Error::format(format!("index/{id}"), e))
    }

    /// Brings the local merged index up to date with the repository. Index files that cannot be
    /// read are skipped and returned, so that one damaged file does not stop a restore; commands
    /// that delete (prune, repair snapshots) must refuse to go on when any is returned.
    pub fn sync_index(&self) -> Result<Vec<Error>> {
        let mut cache = self.cache();
        let sync = |cache: &mut Cache| cache.sync_index(|| self.list_index_ids(), |id| self.load_index(id));
        let mut unreadable = match sync(&mut cache) {
            Ok(stats) => stats.unreadable,
            // A cache file damaged where opening it did not look: rebuilt at once, not on the next run.
            Err(_) if Cache::take_damage_seen() => {
                cache.rebuild(&self.backend.identity())?;
                sync(&mut cache)?.unreadable
            }
            Err(e) => return Err(e),
        };
        // A file that vanished between the listing and the read was superseded by a prune or repair
        // (they delete only after the superseding file is durable): listing again finds that one
        // instead. Only damage, or a file that keeps vanishing, is returned.
        for _ in 0..SYNC_RELISTS {
            if !unreadable.iter().any(|e| e.kind() == ErrorKind::NotFound) {
                break;
            }
            unreadable = sync(&mut cache)?.unreadable;
        }
        Ok(unreadable)
    }

    /// Like [`Repository::sync_index`], but an unreadable index file is an error.
    pub fn sync_index_complete(&self, doing: &str) -> Result<()> {
        match self.sync_index()?.into_iter().next() {
            None => Ok(()),
            Some(e) => {
                Err(Error::new(ErrorKind::Corrupt, format!("cannot {doing}: {e}; run 'cairn repair index' first")))
            }
        }
    }

    /// Saves an index file and merges it into the local cache.
    pub fn save_index(&self, file: &IndexFile) -> Result<IndexId> {
        let id = IndexId::from_bytes(self.write_named(FileType::Index, file.encode(&self.key, &nonce()))?);
        self.cache().add_index(id, file)?;
        Ok(id)
    }

    /// Loads one snapshot (from the local cache when it has the bytes).
    pub fn load_snapshot(&self, id: SnapshotId) -> Result<Snapshot> {
        let cached = self.cache().snapshot_bytes(id.as_bytes())?.filter(|b| &object_name(b) == id.as_bytes());
        let bytes = match cached {
            Some(b) => b,
            None => {
                let b = self.read_verified(FileType::Snapshot, id.as_bytes()).map_err(|e| {
                    if e.kind() == ErrorKind::NotFound {
                        Error::new(ErrorKind::NotFound, format!("snapshot {} not found", id.short()))
                    } else {
                        e
                    }
                })?;
                self.cache().store_snapshot_bytes(id.as_bytes(), &b)?;
                b
            }
        };
        Snapshot::decode(&bytes, &self.key).map_err(|e| Error::format(format!("snapshots/{id}"), e))
    }

    /// Every snapshot, oldest first. Damaged snapshot files are returned as errors beside the rest.
    pub fn load_snapshots(&self) -> Result<(Vec<SnapshotEntry>, Vec<Error>)> {
        let ids = self.list_snapshot_ids()?;
        let present: HashSet<[u8; 32]> = ids.iter().map(|i| *i.as_bytes()).collect();
        self.cache().retain_snapshots(&present)?;
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for id in ids {
            match self.load_snapshot(id) {
                Ok(s) => good.push((id, s)),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => bad.push(e),
            }
        }
        good.sort_by(|a, b| a.1.time_ns.cmp(&b.1.time_ns).then(a.0.cmp(&b.0)));
        Ok((good, bad))
    }

    /// Saves a snapshot; call only after the index naming its blobs is saved.
    pub fn save_snapshot(&self, snapshot: &Snapshot) -> Result<SnapshotId> {
        let bytes = snapshot.encode(&self.key, &nonce());
        let id = SnapshotId::from_bytes(object_name(&bytes));
        self.backend.write(FileType::Snapshot, &id.to_hex(), bytes.clone())?;
        self.cache().store_snapshot_bytes(id.as_bytes(), &bytes)?;
        Ok(id)
    }

    /// Where a blob is stored, from the merged index.
    pub fn locate(&self, id: &BlobId) -> Result<Option<BlobLocation>> {
        self.cache().locate(id)
    }

    /// Where to read a blob: from the merged index, or else from a pack that a prune condemned and
    /// has not deleted yet. Between a prune's new index and the index that puts back a pack a
    /// snapshot written meanwhile still uses, that snapshot's blobs are only there; readers find
    /// them (and fail cleanly if the pack is gone). Deduplication never counts condemned blobs.
    pub fn locate_for_reading(&self, id: &BlobId) -> Result<Option<BlobLocation>> {
        let cache = self.cache();
        match cache.locate(id)? {
            Some(loc) => Ok(Some(loc)),
            None => cache.locate_condemned(id),
        }
    }

    /// [`Repository::locate_for_reading`] for each of `ids`, in order, with one lock of the cache
    /// and one read transaction for all of them.
    pub fn locate_many_for_reading(&self, ids: &[BlobId]) -> Result<Vec<Option<BlobLocation>>> {
        let cache = self.cache();
        let mut found = cache.locate_many(ids)?;
        for (id, loc) in ids.iter().zip(&mut found) {
            if loc.is_none() {
                *loc = cache.locate_condemned(id)?;
            }
        }
        Ok(found)
    }

    /// Reads, opens and verifies a blob at a known location.
    pub fn read_blob_at(&self, loc: &BlobLocation) -> Result<Vec<u8>> {
        let e = &loc.entry;
        let sealed = self
            .backend
            .read_range(FileType::Pack, &loc.pack.to_hex(), u64::from(e.offset), u64::from(e.stored_len))
            .map_err(|err| err.context(format!("{} blob {}", kind_name(e.kind), e.id.short())))?;
        self.open_blob_at(loc, &sealed)
    }

    /// Opens and verifies the sealed bytes of the blob at `loc`, read by the caller.
    pub fn open_blob_at(&self, loc: &BlobLocation, sealed: &[u8]) -> Result<Vec<u8>> {
        let e = &loc.entry;
        open_blob(&self.key, e.kind, e.id, e.compression, e.plain_len, sealed).map_err(|err| {
            Error::new(
                ErrorKind::Corrupt,
                format!("{} blob {} in pack {}: {err}", kind_name(e.kind), e.id.short(), loc.pack.short()),
            )
        })
    }

    /// Loads a blob by id.
    pub fn load_blob(&self, kind: BlobKind, id: &BlobId) -> Result<Vec<u8>> {
        let loc = self.locate_for_reading(id)?.ok_or_else(|| {
            Error::new(ErrorKind::Corrupt, format!("{} blob {} is missing from the index", kind_name(kind), id.short()))
        })?;
        if loc.entry.kind != kind {
            return Err(Error::corrupt(format!("blob {} is indexed as the wrong kind", id.short())));
        }
        let read = if kind == BlobKind::Tree
            && let Some(pack) = self.tree_pack(loc.pack)?
            && let Some(sealed) = pack.get(loc.entry.offset as usize..loc.entry.end() as usize)
        {
            self.open_blob_at(&loc, sealed)
        } else {
            self.read_blob_at(&loc)
        };
        read.or_else(|failed| self.read_other_copies(&loc, failed))
    }

    /// Reads a blob from another copy the index knows, after the copy at `loc` could not be read
    /// or opened (`failed`): a blob stored twice (two backups that ran at once both stored it)
    /// survives the loss of one pack. Returns `failed` when no other copy reads.
    pub fn read_other_copies(&self, loc: &BlobLocation, failed: Error) -> Result<Vec<u8>> {
        let others = self.cache().locate_all(&loc.entry.id)?;
        for other in others {
            if (other.pack, other.entry.offset) == (loc.pack, loc.entry.offset) || other.entry.kind != loc.entry.kind {
                continue;
            }
            if let Ok(data) = self.read_blob_at(&other) {
                return Ok(data);
            }
        }
        Err(failed)
    }

    /// A small tree pack's bytes, read whole once and kept for the next trees; `None` for a large
    /// pack (read per blob). Blobs taken from it are authenticated as always.
    fn tree_pack(&self, id: PackId) -> Result<Option<std::sync::Arc<Vec<u8>>>> {
        let kept = |packs: &TreePacks| packs.packs.iter().find(|(p, _)| *p == id).map(|(_, b)| b.clone());
        if let Some(bytes) = kept(&self.tree_packs.lock().unwrap_or_else(|p| p.into_inner())) {
            return Ok(Some(bytes));
        }
        let Some(len) = self.cache().pack_len(&id)? else { return Ok(None) };
        if len > TREE_PACK_MAX {
            return Ok(None);
        }
        let bytes = match self.cached_tree_pack(&id) {
            Some(b) => std::sync::Arc::new(b),
            None => match self.backend.read(FileType::Pack, &id.to_hex()) {
                Ok(b) => {
                    self.keep_tree_pack(&id, &b);
                    std::sync::Arc::new(b)
                }
                // Reading per blob gives the precise error (and may still find the blob).
                Err(_) => return Ok(None),
            },
        };
        let mut packs = self.tree_packs.lock().unwrap_or_else(|p| p.into_inner());
        if packs.packs.len() >= TREE_PACKS_KEPT {
            packs.packs.remove(0);
        }
        packs.packs.push((id, bytes.clone()));
        Ok(Some(bytes))
    }

    /// The local cache's copy of a tree pack, if it has one whose bytes still match the pack's name.
    fn cached_tree_pack(&self, id: &PackId) -> Option<Vec<u8>> {
        if !self.backend.wants_cached_trees() {
            return None;
        }
        let path = self.cache().tree_pack_path(id)?;
        let bytes = std::fs::read(path).ok()?;
        (object_name(&bytes) == *id.as_bytes()).then_some(bytes)
    }

    /// Keeps a copy of a tree pack in the local cache (best effort: the cache only accelerates).
    /// Written under a temporary name and renamed, so a reader never sees part of one.
    pub fn keep_tree_pack(&self, id: &PackId, bytes: &[u8]) {
        if !self.backend.wants_cached_trees() {
            return;
        }
        let Some(path) = self.cache().tree_pack_path(id) else { return };
        let Some(folder) = path.parent() else { return };
        if std::fs::create_dir_all(folder).is_err() {
            return;
        }
        let temp = folder.join(format!(".{}.tmp-{}", id.to_hex(), std::process::id()));
        if std::fs::write(&temp, bytes).and_then(|()| std::fs::rename(&temp, &path)).is_err() {
            let _ = std::fs::remove_file(&temp);
        }
    }

    /// Loads and decodes a tree.
    pub fn load_tree(&self, id: TreeId) -> Result<Tree> {
        let plain = self.load_blob(BlobKind::Tree, &id.into())?;
        Tree::decode(&plain).map_err(|e| Error::format(format!("tree {}", id.short()), e))
    }

    /// Resolves `latest`, a unique id prefix or a full id to a snapshot, among `candidates`.
    pub fn resolve_snapshot<'a>(
        &self,
        spec: &str,
        candidates: &'a [(SnapshotId, Snapshot)],
    ) -> Result<&'a (SnapshotId, Snapshot)> {
        if spec == "latest" {
            return candidates.iter().max_by(|a, b| a.1.time_ns.cmp(&b.1.time_ns)).ok_or_else(|| {
                Error::new(ErrorKind::NotFound, "no snapshot matches (the repository has none that fit)")
            });
        }
        let id = cairn_format::id::resolve_prefix(spec, candidates.iter().map(|c| c.0)).map_err(|e| match e {
            FormatError::PrefixNotFound { .. } => Error::new(ErrorKind::NotFound, e.to_string()),
            other => Error::invalid(other.to_string()),
        })?;
        candidates.iter().find(|c| c.0 == id).ok_or_else(|| Error::new(ErrorKind::Bug, "resolved id vanished"))
    }

    /// Every key file: id and decoded header (the secret stays sealed).
    pub fn list_keys(&self) -> Result<Vec<(KeyId, std::result::Result<KeyFile, Error>)>> {
        let mut out = Vec::new();
        for o in self.backend.list(FileType::Key)? {
            let Ok(id) = KeyId::from_hex(&o.name) else { continue };
            let parsed = self
                .backend
                .read(FileType::Key, &o.name)
                .and_then(|b| KeyFile::decode(&b).map_err(|e| Error::format(format!("keys/{}", o.name), e)));
            out.push((id, parsed));
        }
        Ok(out)
    }

    /// All packs the index names, with sizes.
    pub fn indexed_packs(&self) -> Result<Vec<(PackId, u64)>> {
        self.cache().packs()
    }
}

/// Largest span of a pack read with one request, and the largest gap of unneeded bytes a span may
/// include rather than being split in two.
const SPAN_MAX: u64 = 16 * 1024 * 1024;
const SPAN_GAP: u64 = 1024 * 1024;

/// Splits `items`, sorted by pack and offset, into runs that are each read with one request:
/// a run stays in one pack, skips at most `SPAN_GAP` unneeded bytes at a time, and spans at most
/// `SPAN_MAX` bytes (or one blob, if that is larger).
pub fn read_spans<T>(items: &[T], location: impl Fn(&T) -> &BlobLocation) -> Vec<std::ops::Range<usize>> {
    let mut groups = Vec::new();
    let mut start = 0;
    for i in 1..=items.len() {
        let split = i == items.len() || {
            let (first, prev, next) = (location(&items[start]), location(&items[i - 1]), location(&items[i]));
            next.pack != prev.pack
                || u64::from(next.entry.offset) > prev.entry.end() + SPAN_GAP
                || next.entry.end() - u64::from(first.entry.offset) > SPAN_MAX
        };
        if split {
            groups.push(start..i);
            start = i;
        }
    }
    groups
}

/// Human name of a blob kind.
pub fn kind_name(k: BlobKind) -> &'static str {
    match k {
        BlobKind::Data => "data",
        BlobKind::Tree => "tree",
    }
}

fn parse_names<T>(names: impl Iterator<Item = String>, make: fn([u8; 32]) -> T) -> Result<Vec<T>> {
    Ok(names.filter_map(|n| SnapshotId::from_hex(&n).ok()).map(|id| make(*id.as_bytes())).collect())
}

/// Tries every key file with the password. The first that opens wins.
fn unlock(backend: &Backend, password: &[u8]) -> Result<(MasterKey, KeyId)> {
    let keys = backend.list(FileType::Key)?;
    if keys.is_empty() {
        return Err(Error::corrupt("the repository has no key files (keys/ is empty); it cannot be opened"));
    }
    let mut decodable = 0;
    let mut read_error = None;
    for k in &keys {
        let bytes = match backend.read(FileType::Key, &k.name) {
            Ok(bytes) => bytes,
            Err(e) => {
                read_error.get_or_insert(e);
                continue;
            }
        };
        let Ok(file) = KeyFile::decode(&bytes) else { continue };
        decodable += 1;
        if let Ok(master) = file.unlock(password) {
            return Ok((master, KeyId::from_bytes(object_name(&bytes))));
        }
    }
    if decodable == 0 {
        // A key file that could not be read is not a damaged one: say what failed.
        if let Some(e) = read_error {
            return Err(e);
        }
        return Err(Error::corrupt("no key file in keys/ could be read (all damaged)"));
    }
    Err(Error::new(
        ErrorKind::WrongPassword,
        "wrong password: no key file could be opened with it (check CAIRN_PASSWORD / --password-file)",
    ))
}
