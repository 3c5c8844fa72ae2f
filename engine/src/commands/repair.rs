//! `repair`: rebuild the index from the packs themselves, and rewrite snapshots that reference lost
//! data so that everything still there stays restorable.
//!
//! Both take the exclusive lock (another prune or repair makes them fail at once) and follow the
//! write ordering of `spec/ordering.md`: the replacement is made durable first (new packs, then the
//! new index, then new snapshots), and only then is what it replaces deleted. With `dry_run` they
//! build the same report and write nothing.
//!
//! Repair never deletes a pack, and never rewrites a snapshot in place: a repaired snapshot is a new
//! snapshot tagged `repaired` whose `original` names the one it replaces. A snapshot file damaged in
//! the repository whose intact copy the local cache holds is written again from that copy (same
//! bytes, same name) rather than dropped. `repair snapshots` treats nothing as lost while `data/`
//! holds packs that no index file names: it refuses, and `repair index` adopts them first.

use std::collections::{HashMap, HashSet};

use cairn_format::blob::{BlobKind, open_blob};
use cairn_format::index::{CondemnedPack, IndexFile, IndexedPack};
use cairn_format::lock::LockKind;
use cairn_format::pack::{BlobEntry, TRAILER_LEN, decode_header, read_trailer, scan_frames};
use cairn_format::snapshot::Snapshot;
use cairn_format::tree::{NodeKind, Tree};
use cairn_format::{BlobId, IndexId, PackId, SnapshotId, TreeId};
use rayon::prelude::*;
use serde::Serialize;

use crate::backend::FileType;
use crate::cache::BlobLocation;
use crate::error::{Error, ErrorKind, Result};
use crate::pack_saver::PackSaver;
use crate::repository::Repository;

/// Packs per new index file; a larger rebuilt index is split so that no file grows without bound.
const PACKS_PER_INDEX_FILE: usize = 20_000;

/// The tag every repaired snapshot carries.
pub const REPAIRED_TAG: &str = "repaired";

/// An index file that could not be used.
#[derive(Debug, Clone, Serialize)]
pub struct DamagedIndexFile {
    pub id: IndexId,
    pub reason: String,
}

/// A pack whose header was damaged, indexed from its per-blob frames.
#[derive(Debug, Clone, Serialize)]
pub struct SalvagedPack {
    pub pack: PackId,
    /// What was wrong with the header.
    pub reason: String,
    /// Blobs found that authenticate, now indexed.
    pub blobs_recovered: u64,
    /// Blobs found (in frames or an old index file) that did not authenticate, left out.
    pub blobs_lost: u64,
}

/// A pack that could not be indexed at all; it is left in place.
#[derive(Debug, Clone, Serialize)]
pub struct UnreadablePack {
    pub pack: PackId,
    pub reason: String,
}

/// What `repair index` did (or would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RepairIndexReport {
    pub dry_run: bool,
    /// Every index file present at the start: the new index supersedes them all, then they are deleted.
    pub index_files_replaced: Vec<IndexId>,
    pub index_files_damaged: Vec<DamagedIndexFile>,
    pub index_files_written: Vec<IndexId>,
    pub packs_indexed: u64,
    pub blobs_indexed: u64,
    /// Packs indexed now that no live index file named before (leftovers adopted, or packs of a
    /// lost index file).
    pub packs_added: Vec<PackId>,
    /// Packs the old index named that are missing from `data/`, no longer listed.
    pub packs_dropped: Vec<PackId>,
    /// Condemned packs carried over as condemned.
    pub condemned_kept: u64,
    pub salvaged: Vec<SalvagedPack>,
    pub unreadable: Vec<UnreadablePack>,
}

/// What reading one pack for the index gave.
enum PackScan {
    Indexed(IndexedPack),
    Salvaged(IndexedPack, SalvagedPack),
    Unreadable(UnreadablePack),
    Vanished,
}

/// Rebuilds the index from the packs in `data/`.
///
/// Each pack's header is read (trailer, then sealed header). When the header is damaged the whole
/// pack is read, and the blobs found through its frames or through old index entries are kept if
/// they authenticate. Condemned packs of live index files are carried over as condemned. One new
/// index (several files when huge) supersedes every index file present at the start; the old files
/// are deleted once it is durable.
pub fn repair_index(repo: &Repository, dry_run: bool) -> Result<RepairIndexReport> {
    let _lock = if dry_run { None } else { Some(crate::lock::acquire(repo, LockKind::Exclusive)?) };
    let mut report = RepairIndexReport { dry_run, ..RepairIndexReport::default() };
    let old_ids = repo.list_index_ids()?;
    let loaded: Vec<(IndexId, Result<IndexFile>)> = old_ids.par_iter().map(|id| (*id, repo.load_index(*id))).collect();
    let mut files = Vec::new();
    for (id, file) in loaded {
        match file {
            Ok(f) => files.push((id, f)),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) if e.kind() == ErrorKind::Corrupt => {
                report.index_files_damaged.push(DamagedIndexFile { id, reason: e.to_string() })
            }
            Err(e) => return Err(e),
        }
    }
    report.index_files_replaced = old_ids.clone();

    let superseded: HashSet<IndexId> = files.iter().flat_map(|(_, f)| f.supersedes.iter().copied()).collect();
    // What the old index said, as a fallback for packs whose header is damaged.
    let mut old_entries: HashMap<PackId, Vec<BlobEntry>> = HashMap::new();
    let mut old_live: HashSet<PackId> = HashSet::new();
    let mut condemned: HashMap<PackId, CondemnedPack> = HashMap::new();
    for (id, f) in &files {
        let live = !superseded.contains(id);
        for p in &f.packs {
            if live {
                old_live.insert(p.id);
            }
            old_entries.entry(p.id).or_default().extend(p.blobs.iter().copied());
        }
        for c in &f.condemned {
            old_entries.entry(c.pack.id).or_default().extend(c.pack.blobs.iter().copied());
            if live {
                condemned.entry(c.pack.id).or_insert_with(|| c.clone());
            }
        }
    }
    // A pack listed live by one live file and condemned by another is live (as readers see it).
    condemned.retain(|id, _| !old_live.contains(id));

    let stored: HashMap<PackId, u64> = repo
        .backend()
        .list(FileType::Pack)?
        .into_iter()
        .filter_map(|o| PackId::from_hex(&o.name).ok().map(|id| (id, o.size)))
        .collect();
    condemned.retain(|id, _| stored.contains_key(id));
    let mut to_scan: Vec<(PackId, u64)> =
        stored.iter().filter(|(id, _)| !condemned.contains_key(id)).map(|(id, len)| (*id, *len)).collect();
    to_scan.sort();

    let scans: Vec<Result<PackScan>> =
        to_scan.par_iter().map(|&(id, len)| scan_pack(repo, id, len, old_entries.get(&id))).collect();
    let mut packs = Vec::new();
    for scan in scans {
        match scan? {
            PackScan::Indexed(p) => packs.push(p),
            PackScan::Salvaged(p, s) => {
                report.salvaged.push(s);
                packs.push(p);
            }
            PackScan::Unreadable(u) => report.unreadable.push(u),
            PackScan::Vanished => {}
        }
    }
    let indexed_now: HashSet<PackId> = packs.iter().map(|p| p.id).collect();
    report.packs_added = packs.iter().map(|p| p.id).filter(|id| !old_live.contains(id)).collect();
    let mut dropped: Vec<PackId> = old_live.iter().copied().filter(|id| !indexed_now.contains(id)).collect();
    dropped.sort();
    report.packs_dropped = dropped;
    report.packs_indexed = packs.len() as u64;
    report.blobs_indexed = packs.iter().map(|p| p.blobs.len() as u64).sum();
    report.condemned_kept = condemned.len() as u64;

    // Every file but the last supersedes nothing: a crash between them leaves old and new index
    // files side by side (duplicates, harmless), never an index with packs missing.
    let mut condemned: Vec<CondemnedPack> = condemned.into_values().collect();
    condemned.sort_by_key(|c| c.pack.id);
    let mut chunks: Vec<Vec<IndexedPack>> = Vec::new();
    while packs.len() > PACKS_PER_INDEX_FILE {
        let rest = packs.split_off(PACKS_PER_INDEX_FILE);
        chunks.push(std::mem::replace(&mut packs, rest));
    }
    chunks.push(packs);
    let last = chunks.len() - 1;
    let nothing_to_write = old_ids.is_empty() && chunks[last].is_empty() && condemned.is_empty() && last == 0;
    if dry_run || nothing_to_write {
        return Ok(report);
    }
    for (i, chunk) in chunks.into_iter().enumerate() {
        let file = if i == last {
            IndexFile { supersedes: old_ids.clone(), packs: chunk, condemned: std::mem::take(&mut condemned) }
        } else {
            IndexFile { supersedes: Vec::new(), packs: chunk, condemned: Vec::new() }
        };
        report.index_files_written.push(repo.save_index(&file)?);
    }
    // The new index is durable; only now may the files it supersedes go (unless the lock was lost).
    crate::cancel::check()?;
    for id in &old_ids {
        repo.backend().delete(FileType::Index, &id.to_hex())?;
    }
    Ok(report)
}

/// Reads a pack's header; falls back to salvaging its frames.
fn scan_pack(repo: &Repository, id: PackId, len: u64, old: Option<&Vec<BlobEntry>>) -> Result<PackScan> {
    let name = id.to_hex();
    let header = (|| -> Result<std::result::Result<Vec<BlobEntry>, String>> {
        if len < TRAILER_LEN as u64 {
            return Ok(Err("the pack is shorter than its trailer".to_owned()));
        }
        let trailer = repo.backend().read_range(FileType::Pack, &name, len - TRAILER_LEN as u64, TRAILER_LEN as u64)?;
        let header_len = match read_trailer(&trailer, len) {
            Ok(l) => l,
            Err(e) => return Ok(Err(format!("trailer: {e}"))),
        };
        let start = len - TRAILER_LEN as u64 - u64::from(header_len);
        let sealed = repo.backend().read_range(FileType::Pack, &name, start, u64::from(header_len))?;
        Ok(decode_header(&sealed, repo.key(), len).map_err(|e| format!("header: {e}")))
    })();
    let reason = match header {
        Ok(Ok(blobs)) => return Ok(PackScan::Indexed(IndexedPack { id, len, blobs })),
        Ok(Err(reason)) => reason,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(PackScan::Vanished),
        Err(e) if e.kind() == ErrorKind::Corrupt => e.to_string(),
        Err(e) => return Err(e),
    };
    // The header is unusable: read the whole pack and keep every blob that authenticates.
    let bytes = match repo.backend().read(FileType::Pack, &name) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(PackScan::Vanished),
        Err(e) => return Err(e),
    };
    let frames = match scan_frames(&bytes) {
        Ok(f) => f,
        Err(e) if old.is_none() => {
            return Ok(PackScan::Unreadable(UnreadablePack { pack: id, reason: format!("{reason}; {e}") }));
        }
        Err(_) => Vec::new(),
    };
    let mut candidates: Vec<BlobEntry> = frames.into_iter().chain(old.into_iter().flatten().copied()).collect();
    candidates.sort_by_key(|e| (e.offset, e.id));
    candidates.dedup_by_key(|e| (e.offset, e.id));
    let mut blobs = Vec::new();
    let mut lost = 0u64;
    for e in candidates {
        let sealed = bytes.get(e.offset as usize..e.end() as usize);
        match sealed.map(|s| open_blob(repo.key(), e.kind, e.id, e.compression, e.plain_len, s)) {
            Some(Ok(_)) => blobs.push(e),
            _ => lost += 1,
        }
    }
    if blobs.is_empty() {
        return Ok(PackScan::Unreadable(UnreadablePack {
            pack: id,
            reason: format!("{reason}; no blob in it could be recovered"),
        }));
    }
    let salvage = SalvagedPack { pack: id, reason, blobs_recovered: blobs.len() as u64, blobs_lost: lost };
    Ok(PackScan::Salvaged(IndexedPack { id, len: bytes.len() as u64, blobs }, salvage))
}

/// Options of `repair snapshots`.
#[derive(Debug, Clone, Default)]
pub struct RepairSnapshotsOptions {
    /// Snapshots to look at (ids or prefixes); all when empty.
    pub snapshots: Vec<String>,
    pub dry_run: bool,
    /// Delete each original once its repaired snapshot is durable (and unreadable snapshot files).
    pub forget: bool,
    /// Also decrypt and authenticate every data blob the snapshots reference (slow; finds damaged
    /// contents, not only missing ones).
    pub read_data: bool,
}

/// One snapshot rewritten (or to be rewritten).
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotRepair {
    pub original: SnapshotId,
    /// The new snapshot (none on a dry run).
    pub repaired: Option<SnapshotId>,
    /// Files left out because some of their data is missing or damaged.
    pub removed_files: Vec<String>,
    /// Folders whose listing is lost, kept as empty folders.
    pub emptied_dirs: Vec<String>,
    /// Whether the original was deleted.
    pub forgotten: bool,
}

/// A snapshot an earlier repair already replaced.
#[derive(Debug, Clone, Serialize)]
pub struct AlreadyRepaired {
    pub original: SnapshotId,
    pub repaired: SnapshotId,
    pub forgotten: bool,
}

/// A snapshot file that cannot be read at all.
#[derive(Debug, Clone, Serialize)]
pub struct UnreadableSnapshot {
    pub id: SnapshotId,
    pub reason: String,
    pub forgotten: bool,
}

/// What `repair snapshots` did (or would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RepairSnapshotsReport {
    pub dry_run: bool,
    /// Snapshots examined.
    pub checked: u64,
    pub repaired: Vec<SnapshotRepair>,
    pub already_repaired: Vec<AlreadyRepaired>,
    pub unreadable: Vec<UnreadableSnapshot>,
    /// Snapshot files damaged in the repository and written again from the local cache's copy
    /// (which matches the file's name, so it is the original, byte for byte).
    pub restored_from_cache: Vec<SnapshotId>,
    /// New tree blobs written.
    pub trees_written: u64,
}

/// Rewrites every selected snapshot whose trees reference missing or damaged data: files with any
/// missing chunk are left out (never truncated: a file with a hole would restore as plausible but
/// wrong content), folders whose listing cannot be loaded become empty folders.
pub fn repair_snapshots(repo: &Repository, opts: &RepairSnapshotsOptions) -> Result<RepairSnapshotsReport> {
    let _lock = if opts.dry_run { None } else { Some(crate::lock::acquire(repo, LockKind::Exclusive)?) };
    match repair_snapshots_locked(repo, opts, &HashSet::new())? {
        Pass::Done(report) => Ok(report),
        // The look-only pass found what is missing, and reading the headers of the packs no index
        // names proved that none of them holds it (a crashed writer's leftovers, say): repairing
        // cannot drop data that is still there, so the repair runs for real.
        Pass::UnindexedIrrelevant(irrelevant) => match repair_snapshots_locked(repo, opts, &irrelevant)? {
            Pass::Done(report) => Ok(report),
            Pass::UnindexedIrrelevant(_) => Err(Error::new(ErrorKind::Bug, "repair snapshots did not settle")),
        },
    }
}

/// The outcome of one pass of `repair snapshots`.
enum Pass {
    Done(RepairSnapshotsReport),
    /// Packs no index names were stored, none of which holds a blob the snapshots miss.
    UnindexedIrrelevant(HashSet<PackId>),
}

/// One pass of `repair snapshots` under the caller's lock. Packs in `irrelevant` are known to hold
/// none of the blobs the snapshots miss, so they do not make the pass look only.
fn repair_snapshots_locked(
    repo: &Repository,
    opts: &RepairSnapshotsOptions,
    irrelevant: &HashSet<PackId>,
) -> Result<Pass> {
    let mut report = RepairSnapshotsReport { dry_run: opts.dry_run, ..RepairSnapshotsReport::default() };
    repo.sync_index_complete("repair snapshots")?;
    let stored: HashMap<PackId, u64> = repo
        .backend()
        .list(FileType::Pack)?
        .into_iter()
        .filter_map(|o| PackId::from_hex(&o.name).ok().map(|id| (id, o.size)))
        .collect();

    // Snapshots are read from the repository itself, not the cache: a damaged file must show.
    let ids = repo.list_snapshot_ids()?;
    let loaded: Vec<(SnapshotId, Result<Snapshot>)> = ids
        .par_iter()
        .map(|id| {
            let s = repo.read_verified(FileType::Snapshot, id.as_bytes()).and_then(|b| {
                Snapshot::decode(&b, repo.key()).map_err(|e| Error::format(format!("snapshot {}", id.short()), e))
            });
            (*id, s)
        })
        .collect();
    let mut snapshots = Vec::new();
    let mut from_cache: Vec<(SnapshotId, Vec<u8>)> = Vec::new();
    for (id, s) in loaded {
        match s {
            Ok(s) => snapshots.push((id, s)),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) if e.kind() == ErrorKind::Corrupt => match cached_snapshot(repo, id)? {
                Some((bytes, s)) => {
                    snapshots.push((id, s));
                    from_cache.push((id, bytes));
                }
                None => report.unreadable.push(UnreadableSnapshot { id, reason: e.to_string(), forgotten: false }),
            },
            Err(e) => return Err(e),
        }
    }
    report.restored_from_cache = from_cache.iter().map(|(id, _)| *id).collect();
    // Packs no index file names may hold what looks lost: rewriting snapshots without it would
    // drop data that is still there. The pass below then only looks (writes nothing), and any
    // repair it finds needed is refused until `repair index` has adopted those packs.
    let unindexed = unindexed_packs(repo, &stored)?;
    let unindexed_packs = unindexed.iter().filter(|(p, _)| !irrelevant.contains(p)).count();
    let look_only = opts.dry_run || unindexed_packs > 0;
    snapshots.sort_by(|a, b| a.1.time_ns.cmp(&b.1.time_ns).then(a.0.cmp(&b.0)));
    let selected: Vec<SnapshotId> = if opts.snapshots.is_empty() {
        snapshots.iter().map(|s| s.0).collect()
    } else {
        let mut out = Vec::new();
        for spec in &opts.snapshots {
            out.push(repo.resolve_snapshot(spec, &snapshots)?.0);
        }
        out
    };
    let replaced_by: HashMap<SnapshotId, SnapshotId> =
        snapshots.iter().filter_map(|(id, s)| s.original.map(|o| (o, *id))).collect();

    let mut new_snapshots: Vec<(Snapshot, SnapshotRepair)> = Vec::new();
    let mut missing: HashSet<BlobId> = HashSet::new();
    let saved = std::thread::scope(|scope| -> Result<crate::pack_saver::SaverStats> {
        let saver = PackSaver::start(scope, repo, look_only);
        let mut rw = Rewriter {
            repo,
            stored: &stored,
            read_data: opts.read_data,
            blob_ok: HashMap::new(),
            memo: HashMap::new(),
            saver: &saver,
            saved: HashSet::new(),
            missing: HashSet::new(),
        };
        for (id, snapshot) in snapshots.iter().filter(|(id, _)| selected.contains(id)) {
            report.checked += 1;
            if let Some(&repaired) = replaced_by.get(id) {
                report.already_repaired.push(AlreadyRepaired { original: *id, repaired, forgotten: false });
                continue;
            }
            let (root, removed_files, emptied_dirs) = match rw.rewrite(snapshot.tree)?.as_deref() {
                Some(Rewrite::Unchanged) => continue,
                Some(Rewrite::Replaced { id, removed, emptied }) => (*id, removed.clone(), emptied.clone()),
                None => (rw.empty_tree()?, Vec::new(), vec!["/".to_owned()]),
            };
            let mut repaired = snapshot.clone();
            repaired.tree = root;
            repaired.original = Some(*id);
            if !repaired.tags.iter().any(|t| t == REPAIRED_TAG) {
                repaired.tags.push(REPAIRED_TAG.to_owned());
            }
            let entry = SnapshotRepair { original: *id, repaired: None, removed_files, emptied_dirs, forgotten: false };
            new_snapshots.push((repaired, entry));
        }
        missing = std::mem::take(&mut rw.missing);
        saver.finish()
    })?;
    report.trees_written = saved.tree_blobs;
    if unindexed_packs > 0 && !new_snapshots.is_empty() {
        if let Some(irrelevant) = unindexed_without(repo, &unindexed, &missing)? {
            return Ok(Pass::UnindexedIrrelevant(irrelevant));
        }
        return Err(Error::new(
            ErrorKind::IndexIncomplete,
            format!(
                "cannot repair snapshots: {} snapshot(s) use blobs in no index file, and {unindexed_packs} pack(s) in \
                 data/ that no index file names may hold them; nothing was changed",
                new_snapshots.len()
            ),
        ));
    }
    if opts.dry_run {
        report.repaired = new_snapshots.into_iter().map(|(_, r)| r).collect();
        return Ok(Pass::Done(report));
    }
    // Stop here if the exclusive lock was lost; nothing was deleted yet.
    crate::cancel::check()?;
    // A damaged file is replaced by its verified copy before anything is deleted.
    for (id, bytes) in from_cache {
        repo.backend().write(FileType::Snapshot, &id.to_hex(), bytes)?;
    }
    // The new trees and their index are durable; now the snapshots, then what they replace.
    for (snapshot, mut entry) in new_snapshots {
        entry.repaired = Some(repo.save_snapshot(&snapshot)?);
        if opts.forget {
            repo.backend().delete(FileType::Snapshot, &entry.original.to_hex())?;
            entry.forgotten = true;
        }
        report.repaired.push(entry);
    }
    if opts.forget {
        for a in &mut report.already_repaired {
            repo.backend().delete(FileType::Snapshot, &a.original.to_hex())?;
            a.forgotten = true;
        }
        for u in &mut report.unreadable {
            repo.backend().delete(FileType::Snapshot, &u.id.to_hex())?;
            u.forgotten = true;
        }
    }
    Ok(Pass::Done(report))
}

/// The local cache's copy of a snapshot, when it matches the snapshot's name (so it is the
/// original file) and decrypts and authenticates with the key.
fn cached_snapshot(repo: &Repository, id: SnapshotId) -> Result<Option<(Vec<u8>, Snapshot)>> {
    let Some(bytes) = repo.cache().snapshot_bytes(id.as_bytes())? else { return Ok(None) };
    if &cairn_format::crypto::object_name(&bytes) != id.as_bytes() {
        return Ok(None);
    }
    Ok(Snapshot::decode(&bytes, repo.key()).ok().map(|s| (bytes, s)))
}

/// Packs in `data/` (`stored`) that no index file names, live or condemned.
fn unindexed_packs(repo: &Repository, stored: &HashMap<PackId, u64>) -> Result<Vec<(PackId, u64)>> {
    let mut named: HashSet<PackId> = repo.indexed_packs()?.into_iter().map(|(p, _)| p).collect();
    named.extend(repo.cache().condemned()?.into_iter().map(|c| c.pack));
    Ok(stored.iter().filter(|(p, _)| !named.contains(p)).map(|(p, len)| (*p, *len)).collect())
}

/// The packs of `unindexed` when reading their headers proves that none holds a blob of
/// `missing`; `None` when one does, or when a pack's header cannot be read (it might).
fn unindexed_without(
    repo: &Repository,
    unindexed: &[(PackId, u64)],
    missing: &HashSet<BlobId>,
) -> Result<Option<HashSet<PackId>>> {
    let scans: Vec<Result<PackScan>> = unindexed.par_iter().map(|&(id, len)| scan_pack(repo, id, len, None)).collect();
    for scan in scans {
        match scan? {
            PackScan::Indexed(p) if p.blobs.iter().all(|b| !missing.contains(&b.id)) => {}
            PackScan::Vanished => {}
            _ => return Ok(None),
        }
    }
    Ok(Some(unindexed.iter().map(|(p, _)| *p).collect()))
}

enum Rewrite {
    Unchanged,
    Replaced { id: TreeId, removed: Vec<String>, emptied: Vec<String> },
}

struct Rewriter<'a, 's> {
    repo: &'a Repository,
    stored: &'a HashMap<PackId, u64>,
    read_data: bool,
    blob_ok: HashMap<BlobId, bool>,
    /// Per tree: `None` when it cannot be loaded, else its rewrite (paths relative to the tree).
    memo: HashMap<TreeId, Option<std::rc::Rc<Rewrite>>>,
    saver: &'a PackSaver<'s>,
    saved: HashSet<TreeId>,
    /// Blobs the snapshots reference of which no indexed copy is stored.
    missing: HashSet<BlobId>,
}

impl Rewriter<'_, '_> {
    /// Copies of a blob that exist in full in `data/`.
    fn present_copies(&self, id: &BlobId, kind: BlobKind) -> Result<Vec<BlobLocation>> {
        Ok(self
            .repo
            .cache()
            .locate_all(id)?
            .into_iter()
            .filter(|l| l.entry.kind == kind && self.stored.get(&l.pack).is_some_and(|&len| l.entry.end() <= len))
            .collect())
    }

    fn data_blob_ok(&mut self, id: &BlobId) -> Result<bool> {
        if let Some(&ok) = self.blob_ok.get(id) {
            return Ok(ok);
        }
        let copies = self.present_copies(id, BlobKind::Data)?;
        if copies.is_empty() {
            self.missing.insert(*id);
        }
        let ok = if self.read_data {
            let mut any = false;
            for loc in &copies {
                match self.repo.read_blob_at(loc) {
                    Ok(_) => {
                        any = true;
                        break;
                    }
                    Err(e) if e.kind() == ErrorKind::Io => return Err(e),
                    Err(_) => {}
                }
            }
            any
        } else {
            !copies.is_empty()
        };
        self.blob_ok.insert(*id, ok);
        Ok(ok)
    }

    fn load_tree(&mut self, id: TreeId) -> Result<Option<Tree>> {
        let copies = self.present_copies(&id.into(), BlobKind::Tree)?;
        if copies.is_empty() {
            self.missing.insert(id.into());
        }
        for loc in copies {
            let sealed = match self.repo.backend().read_range(
                FileType::Pack,
                &loc.pack.to_hex(),
                u64::from(loc.entry.offset),
                u64::from(loc.entry.stored_len),
            ) {
                Ok(s) => s,
                Err(e) if e.kind() == ErrorKind::Io => return Err(e),
                Err(_) => continue,
            };
            let e = &loc.entry;
            if let Ok(plain) = open_blob(self.repo.key(), e.kind, e.id, e.compression, e.plain_len, &sealed)
                && let Ok(tree) = Tree::decode(&plain)
            {
                return Ok(Some(tree));
            }
        }
        Ok(None)
    }

    fn save_tree(&mut self, tree: &Tree) -> Result<TreeId> {
        let bytes = tree.encode();
        let id: TreeId = self.repo.key().blob_id(&bytes).into();
        if !self.saved.contains(&id) && self.present_copies(&id.into(), BlobKind::Tree)?.is_empty() {
            self.saver.save(BlobKind::Tree, id.into(), bytes)?;
        }
        self.saved.insert(id);
        Ok(id)
    }

    fn empty_tree(&mut self) -> Result<TreeId> {
        self.save_tree(&Tree::default())
    }

    /// Rewrites a tree without what is lost; `None` when the tree itself cannot be loaded.
    fn rewrite(&mut self, id: TreeId) -> Result<Option<std::rc::Rc<Rewrite>>> {
        if let Some(done) = self.memo.get(&id) {
            return Ok(done.clone());
        }
        let Some(tree) = self.load_tree(id)? else {
            self.memo.insert(id, None);
            return Ok(None);
        };
        let mut changed = false;
        let mut removed = Vec::new();
        let mut emptied = Vec::new();
        let mut nodes = Vec::with_capacity(tree.nodes().len());
        for node in tree.into_nodes() {
            let name = String::from_utf8_lossy(&node.name).into_owned();
            match &node.kind {
                NodeKind::File { content } => {
                    let mut whole = true;
                    for blob in content {
                        if !self.data_blob_ok(blob)? {
                            whole = false;
                            break;
                        }
                    }
                    if !whole {
                        changed = true;
                        removed.push(format!("/{name}"));
                        continue;
                    }
                }
                NodeKind::Dir { subtree } => {
                    let sub = self.rewrite(*subtree)?;
                    let new_subtree = match sub.as_deref() {
                        Some(Rewrite::Unchanged) => None,
                        Some(Rewrite::Replaced { id, removed: r, emptied: e }) => {
                            removed.extend(r.iter().map(|p| format!("/{name}{p}")));
                            emptied.extend(e.iter().map(|p| format!("/{name}{p}")));
                            Some(*id)
                        }
                        None => {
                            emptied.push(format!("/{name}"));
                            Some(self.empty_tree()?)
                        }
                    };
                    if let Some(new_id) = new_subtree {
                        changed = true;
                        let mut node = node;
                        node.kind = NodeKind::Dir { subtree: new_id };
                        nodes.push(node);
                        continue;
                    }
                }
                _ => {}
            }
            nodes.push(node);
        }
        let result = if changed {
            let new_tree =
                Tree::from_nodes(nodes).map_err(|e| Error::format(format!("rewriting tree {}", id.short()), e))?;
            let new_id = self.save_tree(&new_tree)?;
            Rewrite::Replaced { id: new_id, removed, emptied }
        } else {
            Rewrite::Unchanged
        };
        let result = Some(std::rc::Rc::new(result));
        self.memo.insert(id, result.clone());
        Ok(result)
    }
}
