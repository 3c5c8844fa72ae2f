//! `prune`: reclaim the space of blobs no snapshot uses.
//!
//! 1. Mark: walk every snapshot's trees and record each used blob in the cache database (memory
//!    does not grow with the repository). Every tree must load and every used blob must be in a
//!    pack some index file names; otherwise prune refuses before it deletes anything.
//! 2. Plan: per pack, how much is still used. Packs with nothing used are condemned; partly used
//!    packs are repacked, most wasteful first, until at most `--max-unused` of the repository is
//!    left unused, and small packs are combined (used blobs are copied, still sealed, into new
//!    packs); the rest are kept.
//! 3. Execute, in the order `spec/ordering.md` states: packs no index names (leftovers), only
//!    while no other process holds a lock; new packs (durable) and their index; then a
//!    new index that lists the kept packs and *condemns* the rest and supersedes every older index
//!    file; then the older index files are deleted; last, condemned packs are deleted — now, or by
//!    a later prune while a backup that loaded the old index may still be running.
//!
//! Prune never waits for backups and never deletes what one may rely on: a backup announces itself
//! with a shared lock before it loads the index, and a condemned pack is only deleted when no live
//! lock is older than the index that condemned it. Snapshots that appeared while the prune ran are
//! marked too, and any condemned pack they use is restored to the index. A SIGKILL at any step
//! leaves a valid repository; the next prune finishes the job.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use cairn_format::blob::{BlobKind, SealedBlob, open_blob};
use cairn_format::index::{CondemnedPack, IndexFile, IndexedPack};
use cairn_format::lock::LockKind;
use cairn_format::pack::BlobEntry;
use cairn_format::snapshot::Snapshot;
use cairn_format::tree::{NodeKind, Tree};
use cairn_format::{BlobId, IndexId, PackId, SnapshotId, TreeId};
use rayon::prelude::*;
use serde::Serialize;

use crate::backend::FileType;
use crate::cache::{BlobLocation, PackUsage};
use crate::commands::backup::now_ns;
use crate::error::{Error, ErrorKind, Result};
use crate::lock;
use crate::pack_saver::PackSaver;
use crate::repository::Repository;

/// Packs smaller than this share of their kind's target size are "small" and get combined.
const SMALL_PACK_DIVISOR: u64 = 4;
/// Blobs per index file written by prune.
const INDEX_FILE_BLOBS: usize = 100_000;
/// Covers writing the condemning index and clock skew between hosts (spec/ordering.md).
const CLOCK_SKEW_MARGIN_NS: i64 = 10 * 60 * 1_000_000_000;
/// Interrupted writes older than this are removed from the temporary folder.
const TEMP_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Options of a prune.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// Share of the repository that may stay unused after pruning (0.05 = 5%); partly used packs
    /// are repacked, most wasteful first, until no more is.
    pub max_unused: f64,
    /// Repack at most this many bytes of packs in one run.
    pub max_repack_bytes: Option<u64>,
    pub dry_run: bool,
}

impl Default for PruneOptions {
    fn default() -> Self {
        Self { max_unused: 0.05, max_repack_bytes: None, dry_run: false }
    }
}

/// What prune will do; what `--dry-run` and `--json` show.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PrunePlan {
    pub snapshots: u64,
    pub used_blobs: u64,
    pub packs_total: u64,
    pub bytes_total: u64,
    /// Packs with no used blob.
    pub packs_delete: u64,
    pub bytes_delete: u64,
    /// Packs whose used blobs are copied to new packs.
    pub packs_repack: u64,
    pub bytes_repack: u64,
    /// Bytes of used blobs that repacking copies.
    pub bytes_repack_used: u64,
    pub packs_keep: u64,
    pub bytes_keep: u64,
    /// Unused bytes left in kept packs.
    pub bytes_unused_after: u64,
    /// Packs condemned by an earlier prune and still waiting.
    pub packs_condemned_earlier: u64,
    /// Condemned packs that a snapshot uses again and that return to the index.
    pub packs_resurrected: u64,
    /// Packs in `data/` that no index file names (leftovers of interrupted backups, or the work of
    /// a backup running now); deleted only when no other process holds a lock.
    pub packs_unindexed: u64,
    pub bytes_unindexed: u64,
    /// Repository size (indexed packs) expected after this prune and the deletions it can make.
    pub bytes_after: u64,
    pub dry_run: bool,
}

/// What prune did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneReport {
    pub plan: PrunePlan,
    pub blobs_repacked: u64,
    pub packs_written: u64,
    pub index_files_written: u64,
    pub index_files_deleted: u64,
    pub packs_deleted: u64,
    pub bytes_deleted: u64,
    /// Condemned packs left for a later prune because a backup may still use them.
    pub packs_deferred: u64,
    pub unindexed_packs_deleted: u64,
    pub duration_ns: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Keep,
    Repack,
    Delete,
}

/// Everything a prune decided before it changes anything. It is built whole first — every
/// snapshot's trees loaded, every blob they use located in an indexed or a condemned pack — and
/// only then executed; when it cannot be built, nothing is deleted (spec/ordering.md, "Removing
/// data"). `plan` is what `--dry-run` and `--json` show.
struct PruneWork {
    plan: PrunePlan,
    /// The snapshots marked, so that the ones written meanwhile can be told apart.
    snapshots: HashSet<SnapshotId>,
    /// The index files the new index supersedes.
    index_at_start: Vec<IndexId>,
    /// Condemned packs of earlier prunes still in `data/`, with the time they were condemned.
    condemned: HashMap<PackId, (i64, IndexedPack)>,
    condemned_trees: HashMap<BlobId, BlobLocation>,
    marked_trees: HashSet<TreeId>,
    usage: Vec<PackUsage>,
    actions: HashMap<PackId, Action>,
    /// Condemned packs a snapshot uses again.
    resurrect: HashSet<PackId>,
}

/// Runs a prune: builds its complete plan, then (unless a dry run) executes it.
pub fn prune(repo: &Repository, opts: &PruneOptions) -> Result<PruneReport> {
    let started = Instant::now();
    let lock = if opts.dry_run { None } else { Some(lock::acquire(repo, LockKind::Exclusive)?) };
    let work = plan(repo, opts)?;
    let mut report = PruneReport { plan: work.plan.clone(), ..PruneReport::default() };
    if let Some(own) = &lock {
        execute(repo, work, own.name(), &mut report)?;
    }
    report.duration_ns = started.elapsed().as_nanos() as u64;
    Ok(report)
}

/// Builds the complete plan of a prune. Reads the repository and writes only the local cache's
/// marks: whatever it finds missing, nothing has been deleted yet.
fn plan(repo: &Repository, opts: &PruneOptions) -> Result<PruneWork> {
    // An index file that cannot be read hides which packs are in use: never prune past it.
    repo.sync_index_complete("prune")?;
    let index_at_start: Vec<IndexId> = repo.cache().known_index_ids()?;

    #[cfg(test)]
    tests::run_after_index_read();
    let (snapshots, damaged) = repo.load_snapshots()?;
    if let Some(first) = damaged.first() {
        return Err(Error::new(
            ErrorKind::Corrupt,
            format!(
                "cannot prune: {} snapshot file(s) cannot be read ({first}); run 'cairn check' and 'cairn repair snapshots' first",
                damaged.len()
            ),
        ));
    }
    // A backup writes its snapshot only after the index files naming its blobs (spec/ordering.md):
    // reading the index again after listing the snapshots finds the blobs of every snapshot
    // listed, including one a backup finished meanwhile. Its index files are not in
    // `index_at_start`, so their packs are protected below.
    repo.sync_index_complete("prune")?;
    // Condemned packs of earlier prunes, unless some index lists them as live again.
    let indexed: HashSet<PackId> = repo.indexed_packs()?.into_iter().map(|(p, _)| p).collect();
    let mut condemned: HashMap<PackId, (i64, IndexedPack)> = HashMap::new();
    let mut named: HashSet<PackId> = indexed.clone();
    for c in repo.cache().condemned()? {
        named.insert(c.pack);
        if !indexed.contains(&c.pack) {
            let entry =
                condemned.entry(c.pack).or_insert((c.since_ns, IndexedPack { id: c.pack, len: c.len, blobs: c.blobs }));
            entry.0 = entry.0.min(c.since_ns);
        }
    }
    let stored = list_packs(repo)?;
    let existing: HashSet<PackId> = stored.iter().map(|(id, _)| *id).collect();
    condemned.retain(|id, _| existing.contains(id));
    let unindexed: Vec<&(PackId, u64)> = stored.iter().filter(|(id, _)| !named.contains(id)).collect();
    // A snapshot written by a backup that ran beside an earlier prune may reach trees that only a
    // condemned pack holds: marking must be able to read them there.
    let mut condemned_trees: HashMap<BlobId, BlobLocation> = HashMap::new();
    for (id, (_, pack)) in &condemned {
        add_tree_locations(&mut condemned_trees, *id, &pack.blobs);
    }

    repo.cache().begin_mark()?;
    let mut marked_trees = HashSet::new();
    let mut marker = Marker::new(repo);
    for (id, s) in &snapshots {
        mark_snapshot(&mut marker, s, &mut marked_trees, &condemned_trees).map_err(|e| match e {
            MarkError::NotLocated(tree) => {
                incomplete(format!("tree {} of snapshot {}", tree.short(), id.short()), unindexed.len())
            }
            MarkError::Other(e) => e,
        })?;
    }
    marker.flush()?;
    let (usage, missing) = repo.cache().usage_scan(MISSING_SHOWN)?;
    // Duplicates count once: only the keeper copy of a blob is counted as used.
    let used_blobs = usage.iter().map(|u| u.used_blobs).sum();
    let resurrect = find_resurrections(repo, &condemned)?;
    check_complete(repo, &condemned, &missing, unindexed.len())?;

    // Index files that appeared after `index_at_start` (a backup finished meanwhile) are not
    // superseded by the new index and stay: their packs must stay too, whatever the marks say
    // (their snapshot may not have been loaded yet).
    let protected = repo.cache().packs_outside(&index_at_start)?;
    let (actions, mut plan) = make_plan(repo, &usage, &protected, opts);
    plan.snapshots = snapshots.len() as u64;
    plan.used_blobs = used_blobs;
    plan.packs_condemned_earlier = (condemned.len() - resurrect.len()) as u64;
    plan.packs_resurrected = resurrect.len() as u64;
    plan.packs_unindexed = unindexed.len() as u64;
    plan.bytes_unindexed = unindexed.iter().map(|(_, len)| len).sum();
    plan.dry_run = opts.dry_run;
    Ok(PruneWork {
        plan,
        snapshots: snapshots.iter().map(|(id, _)| *id).collect(),
        index_at_start,
        condemned,
        condemned_trees,
        marked_trees,
        usage,
        actions,
        resurrect,
    })
}

/// The refusal of a prune whose plan could not locate `what`. When packs no index names are in
/// `data/` they may hold it: rebuilding the index adopts them. Otherwise the data is lost.
fn incomplete(what: String, unindexed_packs: usize) -> Error {
    if unindexed_packs > 0 {
        Error::new(
            ErrorKind::IndexIncomplete,
            format!(
                "cannot prune: {what} is in no index file, and {unindexed_packs} pack(s) in data/ that no index file \
                 names may hold it; nothing was deleted"
            ),
        )
    } else {
        Error::new(
            ErrorKind::Corrupt,
            format!(
                "cannot prune: {what} is used by a snapshot but in no pack; nothing was deleted; run 'cairn check' \
                 and 'cairn repair' first"
            ),
        )
    }
}

/// Executes a complete plan, in the order `spec/ordering.md` states. `own_lock` is this prune's
/// exclusive lock.
fn execute(repo: &Repository, work: PruneWork, own_lock: &str, report: &mut PruneReport) -> Result<()> {
    let PruneWork {
        plan: _,
        snapshots: known,
        index_at_start,
        condemned,
        mut condemned_trees,
        mut marked_trees,
        usage,
        actions,
        resurrect,
    } = work;
    // Room first: a backup that failed on a full disk leaves packs no index names and partly
    // written files, and without removing them this prune could not write its own index. Only
    // now, with the plan complete: it located every blob a snapshot uses in a pack some index
    // names, so a pack none names holds nothing a snapshot needs.
    // A prune whose exclusive lock was lost (removed by `unlock --remove-all`, or not refreshed in
    // time) stops before each deletion: another process may be relying on that lock's absence.
    crate::cancel::check()?;
    let leftovers = delete_leftovers(repo, own_lock)?;
    report.unindexed_packs_deleted = leftovers.packs;
    report.bytes_deleted = leftovers.bytes;
    // Nothing to repack, condemn, delete or bring back: the index stays as it is, so a prune that
    // only made room (after a backup failed on a full disk) needs no room for a new one.
    if condemned.is_empty() && actions.values().all(|a| *a == Action::Keep) {
        repo.backend().clean_temporary(TEMP_MAX_AGE)?;
        lock::remove_stale(repo)?;
        return Ok(());
    }

    // 1. Repack: used blobs of the chosen packs go to new packs, indexed by the saver.
    let to_repack: Vec<&PackUsage> = usage.iter().filter(|u| actions.get(&u.pack) == Some(&Action::Repack)).collect();
    if !to_repack.is_empty() {
        let (blobs, stats) = repack(repo, &to_repack)?;
        report.blobs_repacked = blobs;
        report.packs_written = stats.packs;
        report.index_files_written += stats.index_files;
    }

    // 2. The new index. It replaces only the index files that change: those listing a pack that
    // is repacked, deleted or condemned now, those listing condemned packs (kept condemned,
    // brought back, or gone), and superseded files still present. Their kept packs are listed
    // live again; every other index file stays as it is, so a prune that removes a tenth of a
    // large repository rewrites about a tenth of its index, not all of it.
    let changing: HashSet<PackId> =
        usage.iter().filter(|u| actions.get(&u.pack).is_some_and(|a| *a != Action::Keep)).map(|u| u.pack).collect();
    let listings = repo.cache().pack_listings()?;
    let mut replaced: HashSet<IndexId> =
        listings.iter().filter(|(pack, _)| changing.contains(pack)).map(|(_, index)| *index).collect();
    replaced.extend(repo.cache().condemned()?.into_iter().map(|c| c.index_id));
    let loaded: HashSet<IndexId> = repo.cache().loaded_index_ids()?.into_iter().collect();
    replaced.extend(index_at_start.iter().filter(|id| !loaded.contains(id)));
    // Files written after the plan's index read (backups that finished meanwhile) stay.
    let replaced: Vec<IndexId> = index_at_start.iter().filter(|id| replaced.contains(id)).copied().collect();
    let relisted: HashSet<PackId> = {
        let replaced: HashSet<&IndexId> = replaced.iter().collect();
        listings.iter().filter(|(_, index)| replaced.contains(index)).map(|(pack, _)| *pack).collect()
    };
    let since_ns = now_ns();
    let mut writer = IndexWriter::new(repo);
    // The packs condemned now. After the sync below the cache lists their blobs only as condemned
    // (the new index says so); they are read from there, one pack at a time, so memory does not
    // grow with the number of blobs.
    let mut condemned_now: HashSet<PackId> = HashSet::new();
    for u in &usage {
        let keep = actions.get(&u.pack).is_none_or(|a| *a == Action::Keep);
        if keep && !relisted.contains(&u.pack) {
            continue;
        }
        let pack = IndexedPack { id: u.pack, len: u.len, blobs: repo.cache().pack_blobs(&u.pack)? };
        match keep {
            true => writer.add_live(pack)?,
            false => {
                add_tree_locations(&mut condemned_trees, pack.id, &pack.blobs);
                condemned_now.insert(pack.id);
                writer.add_condemned(CondemnedPack { since_ns, pack })?
            }
        }
    }
    for (id, (since, pack)) in &condemned {
        if resurrect.contains(id) {
            writer.add_live(pack.clone())?;
        } else {
            writer.add_condemned(CondemnedPack { since_ns: *since, pack: pack.clone() })?;
        }
    }
    report.index_files_written += writer.finish(replaced.clone())?;
    // Only now, with a superseding index durable, may the older index files go.
    crate::cancel::check()?;
    for id in &replaced {
        repo.backend().delete(FileType::Index, &id.to_hex())?;
        report.index_files_deleted += 1;
    }
    let index_written_ns = now_ns();

    // 3. Deletion. Order matters: packs listed, then locks, then index and snapshots again.
    let packs_now = list_packs(repo)?;
    let other_locks: Vec<lock::LockEntry> =
        lock::list_locks(repo)?.into_iter().filter(|l| l.is_live(index_written_ns) && l.name != own_lock).collect();
    repo.sync_index_complete("prune")?;
    let mut doomed: HashMap<PackId, (i64, u64)> = HashMap::new();
    for u in &usage {
        if actions.get(&u.pack).is_some_and(|a| *a != Action::Keep) {
            doomed.insert(u.pack, (index_written_ns, u.len));
        }
    }
    for (id, (since, pack)) in &condemned {
        if !resurrect.contains(id) {
            doomed.insert(*id, (*since, pack.len));
        }
    }
    // Snapshots written while we worked: whatever they use must stay. The index is read again
    // after they are listed, as in the plan, so that it names their blobs.
    let (now_snapshots, _) = repo.load_snapshots()?;
    repo.sync_index_complete("prune")?;
    let mut late_use_failed = false;
    let mut marker = Marker::new(repo);
    for (id, s) in &now_snapshots {
        if !known.contains(id) && mark_snapshot(&mut marker, s, &mut marked_trees, &condemned_trees).is_err() {
            late_use_failed = true;
        }
    }
    if marker.flush().is_err() {
        late_use_failed = true;
    }
    let mut back_to_life = Vec::new();
    if !late_use_failed {
        for (pack_id, _) in doomed.iter() {
            let blobs = match condemned.get(pack_id) {
                Some(c) if !condemned_now.contains(pack_id) => c.1.blobs.clone(),
                _ => repo.cache().condemned_blobs(pack_id)?,
            };
            let mut needed = false;
            for b in &blobs {
                if repo.cache().is_used(&b.id)? && !repo.cache().has_blob(&b.id)? {
                    needed = true;
                    break;
                }
            }
            if needed {
                let len = packs_now.iter().find(|(p, _)| p == pack_id).map(|(_, l)| *l).unwrap_or(0);
                back_to_life.push(IndexedPack { id: *pack_id, len, blobs });
            }
        }
    }
    if !back_to_life.is_empty() {
        let ids: Vec<PackId> = back_to_life.iter().map(|p| p.id).collect();
        repo.save_index(&IndexFile { supersedes: Vec::new(), packs: back_to_life, condemned: Vec::new() })?;
        report.index_files_written += 1;
        for id in ids {
            doomed.remove(&id);
        }
    }
    let mut deletable: Vec<(PackId, u64)> = Vec::new();
    for (pack_id, (since, len)) in &doomed {
        let blocked = late_use_failed || other_locks.iter().any(|l| l.lock.created_ns <= since + CLOCK_SKEW_MARGIN_NS);
        if blocked {
            report.packs_deferred += 1;
        } else {
            deletable.push((*pack_id, *len));
        }
    }
    let names: Vec<String> = deletable.iter().map(|(id, _)| id.to_hex()).collect();
    crate::cancel::check()?;
    for (result, (_, len)) in repo.backend().delete_all(FileType::Pack, &names).into_iter().zip(&deletable) {
        result?;
        report.bytes_deleted += len;
        report.packs_deleted += 1;
    }
    // Packs no index names: leftovers of interrupted backups. Only while nothing else runs.
    if other_locks.is_empty() {
        let indexed_now: HashSet<PackId> = repo.indexed_packs()?.into_iter().map(|(p, _)| p).collect();
        for (pack_id, len) in &packs_now {
            if !indexed_now.contains(pack_id) && !doomed.contains_key(pack_id) && !condemned.contains_key(pack_id) {
                repo.backend().delete(FileType::Pack, &pack_id.to_hex())?;
                report.unindexed_packs_deleted += 1;
                report.bytes_deleted += len;
            }
        }
    }
    repo.backend().clean_temporary(TEMP_MAX_AGE)?;
    lock::remove_stale(repo)?;
    Ok(())
}

/// Records where the tree blobs of a condemned pack are.
fn add_tree_locations(map: &mut HashMap<BlobId, BlobLocation>, pack: PackId, blobs: &[BlobEntry]) {
    for b in blobs.iter().filter(|b| b.kind == BlobKind::Tree) {
        map.insert(b.id, BlobLocation { pack, entry: *b });
    }
}

/// Loads a tree through the index, or from a condemned pack that still holds it.
fn load_tree_anywhere(repo: &Repository, id: TreeId, condemned_trees: &HashMap<BlobId, BlobLocation>) -> Result<Tree> {
    let blob: BlobId = id.into();
    if repo.locate(&blob)?.is_none()
        && let Some(loc) = condemned_trees.get(&blob)
    {
        let plain = repo.read_blob_at(loc)?;
        return Tree::decode(&plain).map_err(|e| Error::format(format!("tree {}", id.short()), e));
    }
    repo.load_tree(id)
}

/// Used blob ids on their way into the cache database: gathered, sorted and written in batches, so
/// that the set's B-tree is filled in key order (random 32-byte keys inserted one by one would touch
/// a random page each time) while memory stays at one batch.
struct Marker<'r> {
    repo: &'r Repository,
    batch: Vec<BlobId>,
}

/// Ids per batch (8 MiB).
const MARK_BATCH: usize = 262_144;

impl<'r> Marker<'r> {
    fn new(repo: &'r Repository) -> Self {
        Self { repo, batch: Vec::new() }
    }

    fn add(&mut self, id: BlobId) -> Result<()> {
        self.batch.push(id);
        if self.batch.len() >= MARK_BATCH { self.flush() } else { Ok(()) }
    }

    /// Writes what is gathered; every id added before is marked once this returns.
    fn flush(&mut self) -> Result<()> {
        self.batch.sort_unstable();
        self.batch.dedup();
        let batch = std::mem::take(&mut self.batch);
        self.repo.cache().in_transaction(|c| {
            for id in &batch {
                c.mark_used(id)?;
            }
            Ok(())
        })
    }
}

/// Why a snapshot could not be marked.
enum MarkError {
    /// A tree is in no index file, live or condemned.
    NotLocated(TreeId),
    Other(Error),
}

impl From<Error> for MarkError {
    fn from(e: Error) -> Self {
        MarkError::Other(e)
    }
}

/// Marks every tree and data blob a snapshot references.
fn mark_snapshot(
    marker: &mut Marker<'_>,
    snapshot: &Snapshot,
    marked_trees: &mut HashSet<TreeId>,
    condemned_trees: &HashMap<BlobId, BlobLocation>,
) -> std::result::Result<(), MarkError> {
    let repo = marker.repo;
    let mut stack = vec![snapshot.tree];
    while let Some(tree_id) = stack.pop() {
        if marked_trees.contains(&tree_id) {
            continue;
        }
        let blob: BlobId = tree_id.into();
        if repo.locate_for_reading(&blob)?.is_none() && !condemned_trees.contains_key(&blob) {
            return Err(MarkError::NotLocated(tree_id));
        }
        let tree = load_tree_anywhere(repo, tree_id, condemned_trees).map_err(|e| {
            Error::new(e.kind(), format!("cannot prune: {e}; run 'cairn check' and 'cairn repair' first"))
        })?;
        marked_trees.insert(tree_id);
        marker.add(blob)?;
        for node in tree.nodes() {
            match &node.kind {
                NodeKind::File { content } => {
                    for id in content {
                        marker.add(*id)?;
                    }
                }
                NodeKind::Dir { subtree } => stack.push(*subtree),
                _ => {}
            }
        }
    }
    Ok(())
}

/// At the start of a prune with nothing else running, temporary files untouched this long are
/// leftovers of failed writes (the lock staleness period, which also covers clock skew).
const TEMP_IDLE_AGE: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// What [`delete_leftovers`] removed.
#[derive(Debug, Default)]
struct Leftovers {
    packs: u64,
    bytes: u64,
}

/// Deletes what interrupted writes left behind, when no process but this one (holding `own_lock`)
/// has a live lock: packs no index file names, live or condemned, and files in the temporary
/// folder untouched for `TEMP_IDLE_AGE`. The order makes it safe beside a backup that starts or
/// ends meanwhile: packs are listed first, then locks, then the index is read again. A backup that
/// takes its lock after the lock listing writes its packs after that, so none of them is in the
/// list; one that ended before the listing wrote its index before removing its lock, so the index
/// read after the listing names its packs.
fn delete_leftovers(repo: &Repository, own_lock: &str) -> Result<Leftovers> {
    let packs = list_packs(repo)?;
    let now = now_ns();
    if lock::list_locks(repo)?.iter().any(|l| l.is_live(now) && l.name != own_lock) {
        return Ok(Leftovers::default());
    }
    repo.sync_index_complete("prune")?;
    let mut named: HashSet<PackId> = repo.indexed_packs()?.into_iter().map(|(p, _)| p).collect();
    named.extend(repo.cache().condemned()?.into_iter().map(|c| c.pack));
    let mut removed = Leftovers::default();
    for (pack, len) in packs.iter().filter(|(p, _)| !named.contains(p)) {
        repo.backend().delete(FileType::Pack, &pack.to_hex())?;
        removed.packs += 1;
        removed.bytes += len;
    }
    // A file being written has a young mtime; a lock file is itself written under a temporary
    // name before it becomes visible, so "no live lock" does not cover the youngest ones.
    repo.backend().clean_temporary(TEMP_IDLE_AGE)?;
    Ok(removed)
}

fn list_packs(repo: &Repository) -> Result<Vec<(PackId, u64)>> {
    Ok(repo
        .backend()
        .list(FileType::Pack)?
        .into_iter()
        .filter_map(|o| PackId::from_hex(&o.name).ok().map(|id| (id, o.size)))
        .collect())
}

/// Condemned packs holding a used blob that no live pack holds.
fn find_resurrections(repo: &Repository, condemned: &HashMap<PackId, (i64, IndexedPack)>) -> Result<HashSet<PackId>> {
    let mut out = HashSet::new();
    let cache = repo.cache();
    for (id, (_, pack)) in condemned {
        for b in &pack.blobs {
            if cache.is_used(&b.id)? && !cache.has_blob(&b.id)? {
                out.insert(*id);
                break;
            }
        }
    }
    Ok(out)
}

/// Used blobs in no live pack that [`Cache::usage_scan`](crate::cache::Cache::usage_scan) returns; when
/// that many are found (all could be in condemned packs), the database is asked once more.
const MISSING_SHOWN: usize = 10_000;

/// Refuses to prune when a used blob is in no pack any index names: deleting more would only hide
/// damage, or delete the unindexed pack that holds it.
/// `missing` lists used blobs that no live pack holds (condemned packs may still hold them).
fn check_complete(
    repo: &Repository,
    condemned: &HashMap<PackId, (i64, IndexedPack)>,
    missing: &[BlobId],
    unindexed_packs: usize,
) -> Result<()> {
    let in_condemned: HashSet<BlobId> = condemned.values().flat_map(|(_, p)| p.blobs.iter().map(|b| b.id)).collect();
    let first = match missing.iter().find(|id| !in_condemned.contains(id)) {
        Some(id) => Some(*id),
        None if missing.len() >= MISSING_SHOWN => repo.cache().used_but_missing(1, &in_condemned)?.first().copied(),
        None => None,
    };
    if let Some(id) = first {
        return Err(incomplete(format!("blob {}", id.short()), unindexed_packs));
    }
    Ok(())
}

fn make_plan(
    repo: &Repository,
    usage: &[PackUsage],
    protected: &HashSet<PackId>,
    opts: &PruneOptions,
) -> (HashMap<PackId, Action>, PrunePlan) {
    let mut plan = PrunePlan::default();
    let mut actions = HashMap::new();
    let target = |kind: BlobKind| -> u64 {
        match kind {
            BlobKind::Data => repo.config().data_pack_target.into(),
            BlobKind::Tree => repo.config().tree_pack_target.into(),
        }
    };
    let is_small = |u: &PackUsage| u.len < target(u.kind) / SMALL_PACK_DIVISOR;
    let mut small_count: HashMap<BlobKind, usize> = HashMap::new();
    for u in usage.iter().filter(|u| u.used_blobs > 0 && is_small(u)) {
        *small_count.entry(u.kind).or_default() += 1;
    }
    // `max_unused` is the share of the repository after pruning that may stay unused (restic's
    // meaning): packs are repacked, most wasteful first, only until what is left unused is within
    // it. Every repacked pack costs a read and a write of its used part, so a limit per pack would
    // rewrite nearly every pack that holds anything an old snapshot used.
    let used_bytes: u64 = usage.iter().map(|u| u.used_bytes).sum();
    let allowed_unused = if opts.max_unused >= 1.0 {
        u64::MAX
    } else {
        (used_bytes as f64 * opts.max_unused / (1.0 - opts.max_unused)) as u64
    };
    let mut unused_left: u64 = 0;
    let mut forced: Vec<&PackUsage> = Vec::new();
    let mut wasteful: Vec<&PackUsage> = Vec::new();
    for u in usage {
        plan.packs_total += 1;
        plan.bytes_total += u.len;
        if protected.contains(&u.pack) {
            actions.insert(u.pack, Action::Keep);
            continue;
        }
        if u.used_blobs == 0 {
            actions.insert(u.pack, Action::Delete);
            plan.packs_delete += 1;
            plan.bytes_delete += u.len;
            continue;
        }
        let unused = u.blob_bytes.saturating_sub(u.used_bytes);
        unused_left += unused;
        if is_small(u) && small_count.get(&u.kind).copied().unwrap_or(0) > 1 {
            forced.push(u);
        } else if unused > 0 {
            wasteful.push(u);
        } else {
            actions.insert(u.pack, Action::Keep);
        }
    }
    // Most wasteful first.
    let share = |u: &PackUsage| u.blob_bytes.saturating_sub(u.used_bytes) as f64 / u.blob_bytes.max(1) as f64;
    wasteful.sort_by(|a, b| share(b).total_cmp(&share(a)));
    let mut budget = opts.max_repack_bytes.unwrap_or(u64::MAX);
    for (u, small) in forced.into_iter().map(|u| (u, true)).chain(wasteful.into_iter().map(|u| (u, false))) {
        let needed = small || unused_left > allowed_unused;
        if needed && u.len <= budget {
            budget -= u.len;
            unused_left -= u.blob_bytes.saturating_sub(u.used_bytes);
            actions.insert(u.pack, Action::Repack);
            plan.packs_repack += 1;
            plan.bytes_repack += u.len;
            plan.bytes_repack_used += u.used_bytes;
        } else {
            actions.insert(u.pack, Action::Keep);
        }
    }
    for u in usage {
        if actions.get(&u.pack) == Some(&Action::Keep) {
            plan.packs_keep += 1;
            plan.bytes_keep += u.len;
            plan.bytes_unused_after += u.blob_bytes.saturating_sub(u.used_bytes);
        }
    }
    plan.bytes_after = plan.bytes_keep + plan.bytes_repack_used;
    (actions, plan)
}

/// Copies the used blobs of `packs` into new packs; returns blobs copied and the saver's stats.
fn repack(repo: &Repository, packs: &[&PackUsage]) -> Result<(u64, crate::pack_saver::SaverStats)> {
    let mut copied = 0u64;
    let stats = std::thread::scope(|scope| -> Result<crate::pack_saver::SaverStats> {
        let saver = PackSaver::start(scope, repo, false);
        let result = (|| -> Result<()> {
            // The packs are copied in groups of about REPACK_GROUP_BLOBS kept blobs, so that what
            // is held about them does not grow with the repository.
            let mut rest = packs;
            while !rest.is_empty() {
                copied += repack_group(repo, &saver, &mut rest)?;
            }
            Ok(())
        })();
        // A storage failure stops the copying early with a generic error; the saver's says what failed.
        let stats = saver.finish()?;
        result?;
        Ok(stats)
    })?;
    Ok((copied, stats))
}

/// Kept blobs of the packs copied in one group of [`repack`]: the locations of the blobs of a
/// group are held at once (about 90 bytes each) so that its reads can be hinted ahead.
const REPACK_GROUP_BLOBS: usize = 65_536;

/// Copies the kept blobs of the packs at the front of `packs`, as many as hold about
/// [`REPACK_GROUP_BLOBS`] kept blobs (at least one pack), and moves `packs` past them; returns the
/// blobs copied.
fn repack_group(repo: &Repository, saver: &PackSaver<'_>, packs: &mut &[&PackUsage]) -> Result<u64> {
    // First the blobs to copy out of each pack and the spans that hold them, so that the reads
    // can be hinted ahead across the packs of the group.
    let mut work: Vec<(PackId, Vec<BlobLocation>, Vec<std::ops::Range<usize>>)> = Vec::new();
    let mut blobs = 0;
    while let Some((u, rest)) = packs.split_first() {
        if blobs >= REPACK_GROUP_BLOBS {
            break;
        }
        *packs = rest;
        let entries = repo.cache().pack_blobs(&u.pack)?;
        // Only the keeper copy of a blob is copied, so across packs each blob is copied once;
        // this set only catches a blob stored twice in the same pack.
        let mut queued: HashSet<BlobId> = HashSet::new();
        let mut wanted = Vec::new();
        for e in entries {
            if !queued.contains(&e.id) && repo.cache().is_keeper(&e.id, &u.pack)? {
                queued.insert(e.id);
                wanted.push(e);
            }
        }
        if wanted.is_empty() {
            continue;
        }
        blobs += wanted.len();
        // Only the parts of the pack that hold kept blobs are read (a pack being repacked is
        // mostly unused, by definition).
        let wanted: Vec<BlobLocation> = wanted.into_iter().map(|entry| BlobLocation { pack: u.pack, entry }).collect();
        let spans = crate::repository::read_spans(&wanted, |l| l);
        work.push((u.pack, wanted, spans));
    }
    let order: Vec<(usize, usize)> =
        work.iter().enumerate().flat_map(|(w, item)| (0..item.2.len()).map(move |s| (w, s))).collect();
    // On a remote store a hint starts the span's GET, so the next spans download while this one is
    // checked and stored.
    let hint = |n: usize| {
        if let Some(&(w, s)) = order.get(n) {
            let (pack, wanted, spans) = &work[w];
            let (first, last) = (&wanted[spans[s].start].entry, &wanted[spans[s].end - 1].entry);
            let start = u64::from(first.offset);
            repo.backend().will_read(FileType::Pack, &pack.to_hex(), start, last.end() - start);
        }
    };
    let ahead = repo.backend().read_ahead();
    (0..ahead).for_each(hint);
    let mut next = 0;
    let mut copied = 0;
    for (pack, wanted, spans) in &work {
        let mut checked: Vec<Result<SealedBlob>> = Vec::with_capacity(wanted.len());
        for span in spans {
            hint(next + ahead);
            next += 1;
            let (first, last) = (&wanted[span.start].entry, &wanted[span.end - 1].entry);
            let start = u64::from(first.offset);
            let bytes = repo.backend().read_range(FileType::Pack, &pack.to_hex(), start, last.end() - start)?;
            // Verify before copying: a damaged blob must not be spread into a new pack.
            checked.par_extend(wanted[span.clone()].par_iter().map(|l| {
                let e = &l.entry;
                let at = (u64::from(e.offset) - start) as usize;
                let sealed = &bytes[at..at + e.stored_len as usize];
                open_blob(repo.key(), e.kind, e.id, e.compression, e.plain_len, sealed).map_err(|err| {
                    Error::corrupt(format!(
                        "cannot repack pack {}: blob {}: {err}; run 'cairn check --read-data'",
                        pack.short(),
                        e.id.short()
                    ))
                })?;
                Ok(SealedBlob {
                    kind: e.kind,
                    id: e.id,
                    compression: e.compression,
                    plain_len: e.plain_len,
                    sealed: sealed.to_vec(),
                })
            }));
        }
        for blob in checked {
            saver.save_sealed(blob?)?;
            copied += 1;
        }
    }
    Ok(copied)
}

/// Writes prune's index files: every file but the last has an empty `supersedes`, so that a crash
/// between them leaves duplicates (harmless) rather than a gap.
struct IndexWriter<'r> {
    repo: &'r Repository,
    current: IndexFile,
    blobs: usize,
    written: u64,
}

impl<'r> IndexWriter<'r> {
    fn new(repo: &'r Repository) -> Self {
        Self { repo, current: IndexFile::default(), blobs: 0, written: 0 }
    }

    fn add_live(&mut self, pack: IndexedPack) -> Result<()> {
        self.blobs += pack.blobs.len();
        self.current.packs.push(pack);
        self.maybe_flush()
    }

    fn add_condemned(&mut self, c: CondemnedPack) -> Result<()> {
        self.blobs += c.pack.blobs.len();
        self.current.condemned.push(c);
        self.maybe_flush()
    }

    fn maybe_flush(&mut self) -> Result<()> {
        if self.blobs >= INDEX_FILE_BLOBS {
            let file = std::mem::take(&mut self.current);
            self.repo.save_index(&file)?;
            self.written += 1;
            self.blobs = 0;
        }
        Ok(())
    }

    fn finish(mut self, supersedes: Vec<IndexId>) -> Result<u64> {
        self.current.supersedes = supersedes;
        self.repo.save_index(&self.current)?;
        Ok(self.written + 1)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::path::Path;

    use cairn_format::key::KdfParams;

    use super::*;
    use crate::backend::Location;
    use crate::commands::backup::{BackupOptions, BackupSource, ParentChoice, backup};
    use crate::progress::NoProgress;
    use crate::repository::{InitOptions, OpenOptions};

    thread_local! {
        /// Runs once between prune's first index read and its snapshot listing: the window in
        /// which a backup running beside it can finish.
        static AFTER_INDEX_READ: RefCell<Option<Box<dyn FnOnce()>>> = const { RefCell::new(None) };
    }

    pub(super) fn run_after_index_read() {
        if let Some(hook) = AFTER_INDEX_READ.with(|h| h.borrow_mut().take()) {
            hook();
        }
    }

    const PASSWORD: &[u8] = b"race";

    fn back_up(repo: &Repository, src: &Path) -> SnapshotId {
        let opts = BackupOptions {
            source: BackupSource::Files(vec![src.to_path_buf()]),
            excludes: Vec::new(),
            exclude_files: Vec::new(),
            iexcludes: Vec::new(),
            iexclude_files: Vec::new(),
            exclude_if_present: Vec::new(),
            exclude_larger_than: None,
            one_file_system: false,
            tags: Vec::new(),
            host: None,
            time_ns: None,
            dry_run: false,
            parent: ParentChoice::Auto,
            force: false,
            read_ahead: None,
        };
        backup(repo, opts, &NoProgress).expect("backup").snapshot_id.expect("a snapshot")
    }

    /// Reads every tree and data blob of every snapshot through a fresh handle (empty cache).
    fn assert_every_snapshot_readable(location: &Location) {
        let repo = Repository::open(location, PASSWORD, &OpenOptions::default()).expect("open");
        assert!(repo.sync_index().expect("index").is_empty());
        let (snapshots, damaged) = repo.load_snapshots().expect("snapshots");
        assert!(damaged.is_empty());
        for (id, s) in snapshots {
            let mut stack = vec![s.tree];
            while let Some(tree) = stack.pop() {
                let tree = repo.load_tree(tree).unwrap_or_else(|e| panic!("snapshot {}: {e}", id.short()));
                for node in tree.nodes() {
                    match &node.kind {
                        NodeKind::File { content } => {
                            for blob in content {
                                repo.load_blob(BlobKind::Data, blob)
                                    .unwrap_or_else(|e| panic!("snapshot {}: {e}", id.short()));
                            }
                        }
                        NodeKind::Dir { subtree } => stack.push(*subtree),
                        _ => {}
                    }
                }
            }
        }
    }

    /// A backup that wrote its packs, index and snapshot after prune had read the index made prune
    /// fail with "tree blob ... is missing from the index" on a healthy repository (and send the
    /// user to check and repair).
    #[test]
    fn prune_failed_on_a_snapshot_written_after_it_read_the_index() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let location = Location::Local(dir.path().join("repo"));
        let init = InitOptions { kdf: KdfParams::INSECURE_FOR_TESTS, ..InitOptions::default() };
        let open = OpenOptions { cache_dir: Some(dir.path().join("cache")) };
        let repo = Repository::init(&location, PASSWORD, &init, &open).expect("init");
        let (first, second) = (dir.path().join("first"), dir.path().join("second"));
        std::fs::create_dir_all(&first).expect("mkdir");
        std::fs::create_dir_all(&second).expect("mkdir");
        std::fs::write(first.join("a"), vec![1u8; 300_000]).expect("write");
        std::fs::write(second.join("b"), (0..400_000u32).map(|i| (i * 7 % 251) as u8).collect::<Vec<_>>())
            .expect("write");
        back_up(&repo, &first);

        let (hook_location, hook_src) = (location.clone(), second.clone());
        AFTER_INDEX_READ.with(|h| {
            *h.borrow_mut() = Some(Box::new(move || {
                // Another process: its own handle and cache.
                let other = Repository::open(&hook_location, PASSWORD, &OpenOptions::default()).expect("open");
                back_up(&other, &hook_src);
            }))
        });
        let report = prune(&repo, &PruneOptions::default()).expect("prune beside a backup that just finished");
        assert_eq!(report.plan.snapshots, 2, "the new snapshot is part of the plan");
        assert_every_snapshot_readable(&location);
    }
}
