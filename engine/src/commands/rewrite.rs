//! `rewrite`: drop paths from existing snapshots (a secrets file or a huge temporary file that was
//! backed up by mistake); a later `prune` frees the data nothing else uses.
//!
//! The plan is built in full before anything is deleted (`spec/ordering.md`): every new tree is
//! stored (packs, then the index naming them, made durable by the pack saver), then every new
//! snapshot, and only then — with `forget` — the snapshots they replace. A rewritten snapshot
//! carries the tag `rewrite` and names the snapshot it replaces in `original`, as restic's do.
//! Takes the exclusive lock (as restic's `rewrite` and cairn's `repair snapshots`).
//!
//! The summary of a rewritten snapshot describes what is left: the files, folders and bytes left
//! out are taken off its counts and `total_size` (restic likewise recounts the files and bytes of
//! a rewritten snapshot). Which of new, changed or unchanged a dropped file was is not recorded,
//! so drops come off the unchanged count first, then changed, then new.

use std::collections::{HashMap, HashSet};

use cairn_format::blob::BlobKind;
use cairn_format::lock::LockKind;
use cairn_format::snapshot::{Snapshot, Summary};
use cairn_format::tree::{NodeKind, Tree};
use cairn_format::{SnapshotId, TreeId};
use serde::Serialize;

use crate::backend::FileType;
use crate::commands::diff::join;
use crate::commands::snapshots::{SnapshotFilter, select_snapshots};
use crate::error::{Error, Result};
use crate::filter::PatternSet;
use crate::pack_saver::PackSaver;
use crate::repository::Repository;

/// The tag every rewritten snapshot carries.
pub const REWRITE_TAG: &str = "rewrite";

/// What to rewrite.
#[derive(Debug, Clone, Default)]
pub struct RewriteOptions {
    /// Snapshots to rewrite (ids, prefixes, `latest`); all passing `filter` when empty.
    pub snapshots: Vec<String>,
    pub filter: SnapshotFilter,
    /// Exclude patterns, as for `backup --exclude`.
    pub excludes: Vec<String>,
    /// Delete each original once every rewritten snapshot is durable.
    pub forget: bool,
    pub dry_run: bool,
}

/// One snapshot rewritten (or to be rewritten).
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotRewrite {
    pub original: SnapshotId,
    /// The new snapshot (none on a dry run).
    pub rewritten: Option<SnapshotId>,
    /// Paths left out (a folder stands for everything below it).
    pub excluded: Vec<String>,
    /// Whether the original was deleted.
    pub forgotten: bool,
}

/// What `rewrite` did (or would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RewriteReport {
    pub dry_run: bool,
    pub rewritten: Vec<SnapshotRewrite>,
    /// Selected snapshots that hold nothing to exclude.
    pub unchanged: u64,
    /// New tree blobs stored.
    pub trees_written: u64,
}

/// Rewrites the selected snapshots without the paths matching `opts.excludes`.
pub fn rewrite(repo: &Repository, opts: &RewriteOptions) -> Result<RewriteReport> {
    let patterns = PatternSet::new(&opts.excludes)?;
    if patterns.is_empty() {
        return Err(Error::invalid("nothing to do: give --exclude patterns"));
    }
    let _lock = if opts.dry_run { None } else { Some(crate::lock::acquire(repo, LockKind::Exclusive)?) };
    repo.sync_index_complete("rewrite snapshots")?;
    let (selected, _) = select_snapshots(repo, &opts.snapshots, &opts.filter)?;
    let mut report = RewriteReport { dry_run: opts.dry_run, ..RewriteReport::default() };

    let mut planned: Vec<(Snapshot, SnapshotRewrite)> = Vec::new();
    let saved = std::thread::scope(|scope| -> Result<crate::pack_saver::SaverStats> {
        let saver = PackSaver::start(scope, repo, opts.dry_run);
        let mut rw = TreeRewriter {
            repo,
            patterns: &patterns,
            saver: &saver,
            memo: HashMap::new(),
            sizes: HashMap::new(),
            saved: HashSet::new(),
        };
        for (id, snapshot) in &selected {
            let mut excluded = Vec::new();
            let mut dropped = Dropped::default();
            let Some(root) = rw.tree(snapshot.tree, "/", &mut excluded, &mut dropped)? else {
                report.unchanged += 1;
                continue;
            };
            let mut new = snapshot.clone();
            new.tree = root;
            dropped.take_off(&mut new.summary);
            new.original = Some(snapshot.original.unwrap_or(*id));
            if !new.tags.iter().any(|t| t == REWRITE_TAG) {
                new.tags.push(REWRITE_TAG.to_owned());
            }
            planned.push((new, SnapshotRewrite { original: *id, rewritten: None, excluded, forgotten: false }));
        }
        saver.finish()
    })?;
    report.trees_written = saved.tree_blobs;
    if opts.dry_run {
        report.rewritten = planned.into_iter().map(|(_, r)| r).collect();
        return Ok(report);
    }
    // The new trees and their index are durable; now every new snapshot, then what they replace.
    for (snapshot, entry) in &mut planned {
        entry.rewritten = Some(repo.save_snapshot(snapshot)?);
    }
    if opts.forget {
        for (_, entry) in &mut planned {
            repo.backend().delete(FileType::Snapshot, &entry.original.to_hex())?;
            entry.forgotten = true;
        }
    }
    report.rewritten = planned.into_iter().map(|(_, r)| r).collect();
    Ok(report)
}

/// What a rewrite left out of one snapshot.
#[derive(Debug, Clone, Copy, Default)]
struct Dropped {
    files: u64,
    dirs: u64,
    bytes: u64,
}

impl Dropped {
    fn add(&mut self, other: Dropped) {
        self.files += other.files;
        self.dirs += other.dirs;
        self.bytes += other.bytes;
    }

    /// Takes what was left out off a summary's counts (unchanged first, then changed, then new).
    fn take_off(&self, summary: &mut Summary) {
        fn take(mut n: u64, counts: [&mut u64; 3]) {
            for c in counts {
                let d = n.min(*c);
                *c -= d;
                n -= d;
            }
        }
        take(self.files, [&mut summary.files_unchanged, &mut summary.files_changed, &mut summary.files_new]);
        take(self.dirs, [&mut summary.dirs_unchanged, &mut summary.dirs_changed, &mut summary.dirs_new]);
        summary.total_size = summary.total_size.saturating_sub(self.bytes);
    }
}

/// A folder rewritten: its replacement (`None`: unchanged), the paths it left out, and their size.
type Rewritten = (Option<TreeId>, Vec<String>, Dropped);

struct TreeRewriter<'a, 's> {
    repo: &'a Repository,
    patterns: &'a PatternSet,
    saver: &'a PackSaver<'s>,
    /// Per folder path and tree: its replacement (`None`: unchanged) and what it left out. Patterns
    /// depend on the path, so the same tree elsewhere is rewritten on its own.
    memo: HashMap<(String, TreeId), Rewritten>,
    /// Files, folders and bytes in a whole tree that is left out.
    sizes: HashMap<TreeId, Dropped>,
    saved: HashSet<TreeId>,
}

impl TreeRewriter<'_, '_> {
    /// The tree at `base` without the excluded entries; `None` when nothing below it is excluded.
    fn tree(
        &mut self,
        id: TreeId,
        base: &str,
        excluded: &mut Vec<String>,
        dropped: &mut Dropped,
    ) -> Result<Option<TreeId>> {
        if let Some((done, paths, gone)) = self.memo.get(&(base.to_owned(), id)) {
            excluded.extend(paths.iter().cloned());
            dropped.add(*gone);
            return Ok(*done);
        }
        let tree = self.repo.load_tree(id)?;
        let mut here = Vec::new();
        let mut gone_here = Dropped::default();
        let mut changed = false;
        let mut nodes = Vec::with_capacity(tree.nodes().len());
        for node in tree.into_nodes() {
            let path = join(base, &node.name);
            if self.patterns.matches(&path) {
                gone_here.add(self.size_of(&node.kind, node.size)?);
                here.push(path);
                changed = true;
                continue;
            }
            if let NodeKind::Dir { subtree } = node.kind
                && let Some(new_subtree) = self.tree(subtree, &path, &mut here, &mut gone_here)?
            {
                let mut node = node;
                node.kind = NodeKind::Dir { subtree: new_subtree };
                nodes.push(node);
                changed = true;
                continue;
            }
            nodes.push(node);
        }
        let result = if changed {
            let new_tree =
                Tree::from_nodes(nodes).map_err(|e| Error::format(format!("rewriting tree {}", id.short()), e))?;
            Some(self.save_tree(&new_tree)?)
        } else {
            None
        };
        excluded.extend(here.iter().cloned());
        dropped.add(gone_here);
        self.memo.insert((base.to_owned(), id), (result, here, gone_here));
        Ok(result)
    }

    /// The files, folders and bytes of an entry left out (a folder with everything below it).
    fn size_of(&mut self, kind: &NodeKind, size: u64) -> Result<Dropped> {
        let subtree = match kind {
            NodeKind::File { .. } => return Ok(Dropped { files: 1, dirs: 0, bytes: size }),
            NodeKind::Dir { subtree } => *subtree,
            _ => return Ok(Dropped::default()),
        };
        if let Some(d) = self.sizes.get(&subtree) {
            return Ok(*d);
        }
        let mut total = Dropped { files: 0, dirs: 1, bytes: 0 };
        for node in self.repo.load_tree(subtree)?.into_nodes() {
            total.add(self.size_of(&node.kind, node.size)?);
        }
        self.sizes.insert(subtree, total);
        Ok(total)
    }

    fn save_tree(&mut self, tree: &Tree) -> Result<TreeId> {
        let bytes = tree.encode();
        let id: TreeId = self.repo.key().blob_id(&bytes).into();
        if self.saved.insert(id) && self.repo.locate(&id.into())?.is_none() {
            self.saver.save(BlobKind::Tree, id.into(), bytes)?;
        }
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_entries_come_off_unchanged_then_changed_then_new() {
        let mut summary = Summary {
            files_new: 2,
            files_changed: 3,
            files_unchanged: 4,
            dirs_new: 1,
            dirs_changed: 0,
            dirs_unchanged: 1,
            total_size: 1000,
            bytes_read: 700,
            ..Summary::default()
        };
        Dropped { files: 6, dirs: 1, bytes: 400 }.take_off(&mut summary);
        assert_eq!((summary.files_unchanged, summary.files_changed, summary.files_new), (0, 1, 2));
        assert_eq!((summary.dirs_unchanged, summary.dirs_changed, summary.dirs_new), (0, 0, 1));
        assert_eq!(summary.total_size, 600);
        assert_eq!(summary.bytes_read, 700, "what the backup read stays");
        // More dropped than counted (a summary that was not truthful) stops at zero.
        Dropped { files: 99, dirs: 99, bytes: 9999 }.take_off(&mut summary);
        assert_eq!((summary.files_new, summary.dirs_new, summary.total_size), (0, 0, 0));
    }
}
