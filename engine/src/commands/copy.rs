//! `copy`: copy snapshots from another repository into this one (an offsite copy), storing only
//! the blobs this repository lacks, sealed with this repository's key.
//!
//! How blob ids travel depends on whether the two repositories share their id key (a destination
//! made with `init --from-repo SRC --copy-chunker-params` does; see `spec/copy.md`):
//! - shared: every id means the same plaintext in both, so trees are copied as they are and only
//!   the data blobs the destination's index lacks are read from the source;
//! - not shared: a blob's id in the destination is computed again with the destination's id key
//!   from its plaintext, and every tree is rewritten with the new ids of its entries. What the
//!   destination's copy of the source snapshot's parent already pairs up (an unchanged folder, the
//!   blobs of a file of the same name) is not read; everything else is read, and stored only if the
//!   destination lacks it.
//!
//! Write order is that of a backup (`spec/ordering.md`): packs, then the index files naming them
//! (both through the pack saver), and only then each copied snapshot. An interrupted copy leaves
//! indexed packs that the next run reuses. The source takes a shared lock and is never written
//! except for that lock; the destination takes the shared lock of a backup.
//! Memory is bounded by one folder's blob list (and its parent's, on both sides), the saver's
//! queues and one read span at a time, plus a map of the trees copied in this run (one entry per
//! folder).

use std::collections::{HashMap, HashSet};

use cairn_format::blob::BlobKind;
use cairn_format::lock::LockKind;
use cairn_format::snapshot::Snapshot;
use cairn_format::tree::{NodeKind, Tree};
use cairn_format::{BlobId, SnapshotId, TreeId};
use serde::Serialize;

use crate::backend::FileType;
use crate::cache::BlobLocation;
use crate::commands::MAX_TREE_DEPTH;
use crate::commands::snapshots::{SnapshotFilter, select_snapshots};
use crate::error::{Error, ErrorKind, Result};
use crate::pack_saver::PackSaver;
use crate::progress::Progress;
use crate::repository::{Repository, read_spans};

/// What to copy.
#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    /// Snapshots of the source to copy (ids, prefixes, `latest`); all passing `filter` when empty.
    pub snapshots: Vec<String>,
    pub filter: SnapshotFilter,
    /// Read and count, but write nothing to the destination.
    pub dry_run: bool,
}

/// One source snapshot and what became of it.
#[derive(Debug, Clone, Serialize)]
pub struct CopiedSnapshot {
    /// The snapshot in the source repository.
    pub source: SnapshotId,
    /// The snapshot in the destination: the new copy (none on a dry run), or the copy made earlier.
    pub destination: Option<SnapshotId>,
    pub time_ns: i64,
    pub host: String,
    pub paths: Vec<String>,
}

/// What `copy` did (or would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct CopyReport {
    pub dry_run: bool,
    /// Whether both repositories name blobs alike (`init --copy-chunker-params`): then only blobs
    /// the destination lacks are read.
    pub shared_blob_ids: bool,
    /// Snapshots copied now (or that a dry run would copy).
    pub copied: Vec<CopiedSnapshot>,
    /// Selected snapshots the destination already holds a copy of.
    pub already_copied: Vec<CopiedSnapshot>,
    /// Data blobs read from the source, and their plaintext bytes.
    pub data_blobs_read: u64,
    pub bytes_read: u64,
    /// What was stored in the destination.
    pub data_blobs_added: u64,
    pub tree_blobs_added: u64,
    pub bytes_added_plain: u64,
    pub bytes_added_stored: u64,
    pub packs_written: u64,
    /// Problems that did not stop the copy (an unreadable snapshot file in the source).
    pub warnings: Vec<String>,
}

/// A fixed input whose blob id tells whether two repositories share their id key, without the
/// key itself ever leaving the master secret.
const ID_KEY_PROBE: &[u8] = b"cairn copy: do these repositories share their id key?";

/// Whether blob ids of `a` and `b` are computed alike.
pub fn shares_blob_ids(a: &Repository, b: &Repository) -> bool {
    a.key().blob_id(ID_KEY_PROBE) == b.key().blob_id(ID_KEY_PROBE)
}

/// Copies the selected snapshots of `src` that `dst` does not hold yet into `dst`.
pub fn copy(src: &Repository, dst: &Repository, opts: &CopyOptions, progress: &dyn Progress) -> Result<CopyReport> {
    if src.config().repository_id == dst.config().repository_id && shares_blob_ids(src, dst) {
        return Err(Error::invalid(
            "the source and the destination are the same repository (or copies of it): nothing to copy",
        ));
    }
    // The shared locks announce this copy to a prune of either repository: the source's packs
    // must stay while they are read, and the destination's while the copy deduplicates against them.
    let _src_lock = crate::lock::acquire(src, LockKind::Shared).map_err(|e| e.context("source repository"))?;
    let _dst_lock = if opts.dry_run { None } else { Some(crate::lock::acquire(dst, LockKind::Shared)?) };
    src.sync_index_complete("copy from the source repository").map_err(|e| e.context("source repository"))?;
    for e in dst.sync_index()? {
        progress.warn(&format!("{e} (skipped; 'cairn repair index' rebuilds the index)"));
    }
    let mut report =
        CopyReport { dry_run: opts.dry_run, shared_blob_ids: shares_blob_ids(src, dst), ..CopyReport::default() };
    let (selected, damaged) = select_snapshots(src, &opts.snapshots, &opts.filter)?;
    for e in damaged {
        let message = format!("source repository: {e} (skipped)");
        progress.warn(&message);
        report.warnings.push(message);
    }

    // The destination's snapshots by the id they were first written under (restic's rule): a
    // source snapshot is already copied when one of those is the same backup.
    let (existing, _) = dst.load_snapshots()?;
    let mut by_original: HashMap<SnapshotId, Vec<(SnapshotId, Snapshot)>> = HashMap::new();
    for (id, s) in existing {
        by_original.entry(s.original.unwrap_or(id)).or_default().push((id, s));
    }
    let mut todo = Vec::new();
    for (id, s) in selected {
        let original = s.original.unwrap_or(id);
        let earlier = by_original.get(&original).and_then(|copies| copies.iter().find(|(_, c)| same_backup(c, &s)));
        match earlier {
            Some((copy_id, _)) => report.already_copied.push(row(id, Some(*copy_id), &s)),
            None => todo.push((id, s)),
        }
    }
    if todo.is_empty() {
        return Ok(report);
    }

    // Where a source snapshot's parent was copied before, the two trees of the parent pair up
    // the source's ids with the destination's: folders unchanged since the parent are not walked
    // again, and blobs the parent's files share are not read again (with different id keys this
    // is the only way to know their ids in the destination without reading them).
    let mut bases: HashMap<SnapshotId, (TreeId, TreeId)> = HashMap::new();
    // Source snapshot id to the id of its copy, for the copies' parents.
    let mut copy_of: HashMap<SnapshotId, SnapshotId> = HashMap::new();
    for (_, s) in &todo {
        let Some(parent) = s.parent else { continue };
        let Ok(parent_snapshot) = src.load_snapshot(parent) else { continue };
        let copies = by_original.get(&parent_snapshot.original.unwrap_or(parent));
        if let Some((copy_id, copy)) = copies.and_then(|c| c.iter().find(|(_, c)| same_backup(c, &parent_snapshot))) {
            bases.insert(parent, (parent_snapshot.tree, copy.tree));
            copy_of.insert(parent, *copy_id);
        }
    }

    let mut roots = Vec::with_capacity(todo.len());
    let saved = std::thread::scope(|scope| -> Result<crate::pack_saver::SaverStats> {
        let saver = PackSaver::start(scope, dst, opts.dry_run);
        let copied = {
            let mut copier = Copier {
                src,
                dst,
                saver: &saver,
                shared: report.shared_blob_ids,
                trees: HashMap::new(),
                progress,
                data_blobs_read: 0,
                bytes_read: 0,
            };
            let mut result = Ok(());
            for (id, s) in &todo {
                let base = s.parent.and_then(|p| bases.get(&p).copied());
                match copier.tree(s.tree, 0, base) {
                    Ok(root) => {
                        // A later snapshot of this run may have this one as its parent.
                        bases.insert(*id, (s.tree, root));
                        roots.push(root);
                    }
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
            report.data_blobs_read = copier.data_blobs_read;
            report.bytes_read = copier.bytes_read;
            result
        };
        // Whatever happened, let the saver write what it has: indexed packs are reused by the next run.
        let saved = saver.finish();
        copied?;
        saved
    })?;
    report.data_blobs_added = saved.data_blobs;
    report.tree_blobs_added = saved.tree_blobs;
    report.bytes_added_plain = saved.bytes_plain;
    report.bytes_added_stored = saved.bytes_stored;
    report.packs_written = saved.packs;

    // Every tree and blob is in a pack named by a durable index file: now the snapshots, oldest
    // first, each remembering the id its source was first written under.
    for ((id, s), root) in todo.iter().zip(roots) {
        let original = s.original.unwrap_or(*id);
        let mut new = s.clone();
        new.tree = root;
        new.original = Some(original);
        // The parent is a snapshot of the source; the destination knows it only if it was copied.
        new.parent = s.parent.and_then(|p| copy_of.get(&p).copied());
        let new_id = if opts.dry_run { None } else { Some(dst.save_snapshot(&new)?) };
        if let Some(n) = new_id {
            copy_of.insert(*id, n);
        }
        report.copied.push(row(*id, new_id, s));
    }
    Ok(report)
}

fn row(source: SnapshotId, destination: Option<SnapshotId>, s: &Snapshot) -> CopiedSnapshot {
    CopiedSnapshot { source, destination, time_ns: s.time_ns, host: s.host.clone(), paths: s.paths.clone() }
}

/// Whether two snapshots record the same backup: everything but the tree, parent and original
/// (restic also compares trees; here a copy's tree has other ids unless the id key is shared).
fn same_backup(a: &Snapshot, b: &Snapshot) -> bool {
    a.time_ns == b.time_ns
        && a.host == b.host
        && a.user == b.user
        && a.uid == b.uid
        && a.gid == b.gid
        && a.paths == b.paths
        && a.tags == b.tags
        && a.source == b.source
        && a.source_detail == b.source_detail
}

struct Copier<'a, 's> {
    src: &'a Repository,
    dst: &'a Repository,
    saver: &'a PackSaver<'s>,
    /// Both repositories compute blob ids alike.
    shared: bool,
    /// Source tree id to destination tree id, for the trees copied in this run.
    trees: HashMap<TreeId, TreeId>,
    progress: &'a dyn Progress,
    data_blobs_read: u64,
    bytes_read: u64,
}

impl Copier<'_, '_> {
    /// Copies the tree `id` and everything below it; returns its id in the destination. `base` is
    /// the same folder in the parent snapshot, as a source tree and its copy in the destination.
    fn tree(&mut self, id: TreeId, depth: usize, base: Option<(TreeId, TreeId)>) -> Result<TreeId> {
        if let Some(done) = self.trees.get(&id) {
            return Ok(*done);
        }
        // Unchanged since the parent: its copy is complete in the destination (a snapshot there
        // names it, written after everything below it, or this run stored it).
        if let Some((base_src, base_dst)) = base
            && base_src == id
        {
            self.trees.insert(id, base_dst);
            return Ok(base_dst);
        }
        if depth > MAX_TREE_DEPTH {
            return Err(Error::corrupt(format!("tree {} is nested deeper than {MAX_TREE_DEPTH} folders", id.short())));
        }
        crate::cancel::check()?;
        let plain = self.src.load_blob(BlobKind::Tree, &id.into()).map_err(|e| e.context("source repository"))?;
        let tree = Tree::decode(&plain).map_err(|e| Error::format(format!("tree {} in the source", id.short()), e))?;
        // The parent's folder on both sides; unreadable only costs speed.
        let base_trees = base.and_then(|(s, d)| Some((self.src.load_tree(s).ok()?, self.dst.load_tree(d).ok()?)));
        let known = base_trees.as_ref().map(|(s, d)| known_ids(&tree, s, d)).unwrap_or_default();
        let blobs = self.data_blobs(&tree, &known)?;
        let mut nodes = tree.into_nodes();
        for node in &mut nodes {
            match &mut node.kind {
                NodeKind::File { content } if !self.shared => {
                    for blob in content.iter_mut() {
                        *blob = *blobs.get(blob).ok_or_else(|| Error::new(ErrorKind::Bug, "blob not copied"))?;
                    }
                }
                NodeKind::Dir { subtree } => {
                    let sub_base =
                        base_trees.as_ref().and_then(|(s, d)| match (s.get(&node.name), d.get(&node.name)) {
                            (Some(s), Some(d)) => match (&s.kind, &d.kind) {
                                (NodeKind::Dir { subtree: s }, NodeKind::Dir { subtree: d }) => Some((*s, *d)),
                                _ => None,
                            },
                            _ => None,
                        });
                    *subtree = self.tree(*subtree, depth + 1, sub_base)?;
                }
                _ => {}
            }
        }
        let (new_id, bytes) = if self.shared {
            // Same ids everywhere below: the tree's bytes are the same too.
            (id, plain)
        } else {
            let bytes = Tree::from_nodes(nodes)
                .map_err(|e| Error::format(format!("tree {} in the source", id.short()), e))?
                .encode();
            (TreeId::from(self.dst.key().blob_id(&bytes)), bytes)
        };
        if !self.dst_has(&new_id.into())? {
            self.saver.save(BlobKind::Tree, new_id.into(), bytes)?;
        }
        self.trees.insert(id, new_id);
        Ok(new_id)
    }

    /// Copies the data blobs of the files in `tree` that the destination lacks; returns each
    /// source id's destination id. `known` holds destination ids learnt from the parent snapshot:
    /// a blob whose known id the destination holds is not read.
    fn data_blobs(&mut self, tree: &Tree, known: &HashMap<BlobId, BlobId>) -> Result<HashMap<BlobId, BlobId>> {
        let mut wanted: Vec<BlobId> = Vec::new();
        let mut seen = HashSet::new();
        let mut ids = HashMap::new();
        for node in tree.nodes() {
            if let NodeKind::File { content } = &node.kind {
                for blob in content {
                    if !seen.insert(*blob) {
                        continue;
                    }
                    let expected = if self.shared { Some(blob) } else { known.get(blob) };
                    match expected {
                        Some(dst_id) if self.dst_has(dst_id)? => {
                            ids.insert(*blob, *dst_id);
                        }
                        _ => wanted.push(*blob),
                    }
                }
            }
        }
        let mut located: Vec<(BlobId, BlobLocation)> = Vec::with_capacity(wanted.len());
        for blob in wanted {
            let loc = self.src.locate_for_reading(&blob)?.ok_or_else(|| {
                Error::corrupt(format!(
                    "source repository: data blob {} is missing from its index (run 'cairn check' there)",
                    blob.short()
                ))
            })?;
            located.push((blob, loc));
        }
        // Blobs that sit together in the source's packs are read with one request each run.
        located.sort_by_key(|(_, loc)| (loc.pack, loc.entry.offset));
        let spans = read_spans(&located, |item| &item.1);
        // Runs a few places ahead are hinted: on a remote source their GETs run while this one is
        // decrypted and stored.
        let source = self.src.backend();
        let hint = |i: usize| {
            if let Some(span) = spans.get(i) {
                let (first, last) = (&located[span.start].1, &located[span.end - 1].1);
                let start = u64::from(first.entry.offset);
                source.will_read(FileType::Pack, &first.pack.to_hex(), start, last.entry.end() - start);
            }
        };
        let ahead = source.read_ahead();
        (0..ahead).for_each(hint);
        for (i, span) in spans.iter().enumerate() {
            crate::cancel::check()?;
            hint(i + ahead);
            let run = &located[span.clone()];
            let (first, last) = (&run[0].1, &run[run.len() - 1].1);
            let start = u64::from(first.entry.offset);
            let bytes = self
                .src
                .backend()
                .read_range(FileType::Pack, &first.pack.to_hex(), start, last.entry.end() - start)
                .map_err(|e| e.context("source repository"));
            for (blob, loc) in run {
                let sealed = bytes.as_ref().ok().and_then(|b| {
                    let from = (u64::from(loc.entry.offset) - start) as usize;
                    b.get(from..from + loc.entry.stored_len as usize)
                });
                let plain = match sealed {
                    Some(sealed) => self.src.open_blob_at(loc, sealed),
                    None => Err(Error::new(ErrorKind::Io, "short read")),
                }
                .or_else(|failed| self.src.read_other_copies(loc, failed))
                .map_err(|e| e.context("source repository"))?;
                self.data_blobs_read += 1;
                self.bytes_read += plain.len() as u64;
                self.progress.add_bytes(plain.len() as u64);
                let new_id = if self.shared { *blob } else { self.dst.key().blob_id(&plain) };
                if !self.dst_has(&new_id)? {
                    self.saver.save(BlobKind::Data, new_id, plain)?;
                }
                ids.insert(*blob, new_id);
            }
        }
        Ok(ids)
    }

    fn dst_has(&self, id: &BlobId) -> Result<bool> {
        Ok(self.saver.is_pending(id) || self.dst.cache().has_blob(id)?)
    }
}

/// Destination ids of source blobs, learnt from the parent's copy: a file of `tree` whose name
/// the parent's folder holds on both sides (`base_src` in the source, `base_dst` its copy) gives
/// each blob of the parent's file the id at the same place in the copy. Files whose two sides do
/// not line up (another size or number of blobs: the copy was changed since) teach nothing.
fn known_ids(tree: &Tree, base_src: &Tree, base_dst: &Tree) -> HashMap<BlobId, BlobId> {
    let mut known = HashMap::new();
    for node in tree.nodes() {
        if !matches!(node.kind, NodeKind::File { .. }) {
            continue;
        }
        let (Some(s), Some(d)) = (base_src.get(&node.name), base_dst.get(&node.name)) else { continue };
        if let (NodeKind::File { content: sc }, NodeKind::File { content: dc }) = (&s.kind, &d.kind)
            && sc.len() == dc.len()
            && s.size == d.size
        {
            known.extend(sc.iter().copied().zip(dc.iter().copied()));
        }
    }
    known
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            time_ns: 1,
            utc_offset_s: 0,
            host: "h".into(),
            user: "u".into(),
            uid: 1,
            gid: 1,
            tags: vec!["t".into()],
            paths: vec!["/p".into()],
            source: cairn_format::snapshot::SourceKind::Files,
            source_detail: String::new(),
            tree: TreeId::from_bytes([1; 32]),
            parent: None,
            original: None,
            program_version: "cairn".into(),
            summary: Default::default(),
        }
    }

    #[test]
    fn a_copy_with_other_tree_ids_is_the_same_backup_and_another_time_is_not() {
        let a = snapshot();
        let mut b = a.clone();
        b.tree = TreeId::from_bytes([2; 32]);
        b.parent = Some(SnapshotId::from_bytes([3; 32]));
        assert!(same_backup(&a, &b));
        b.time_ns = 2;
        assert!(!same_backup(&a, &b));
        let mut c = a.clone();
        c.tags.push("x".into());
        assert!(!same_backup(&a, &c));
    }
}
