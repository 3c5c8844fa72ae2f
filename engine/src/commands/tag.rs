//! `tag`: change the tags of snapshots. A snapshot is never modified: each changed snapshot is
//! written anew with its new tags and `original` naming the snapshot it replaces (the first one,
//! when that was itself a replacement), and the old file is deleted only once every new one is
//! durable (`spec/ordering.md`).
//!
//! Takes the exclusive lock, as restic's `tag` does: two tag or rewrite runs on the same snapshot
//! would each write a replacement and one change would be lost, and a prune must not read the
//! snapshot list between "new written" and "old deleted" half way.

use cairn_format::SnapshotId;
use cairn_format::lock::LockKind;
use cairn_format::snapshot::Snapshot;
use serde::Serialize;

use crate::backend::FileType;
use crate::commands::snapshots::{SnapshotFilter, select_snapshots};
use crate::error::{Error, Result};
use crate::repository::Repository;

/// How to change the tags.
#[derive(Debug, Clone, Default)]
pub struct TagOptions {
    /// Snapshots to change (ids, prefixes, `latest`); all passing `filter` when empty.
    pub snapshots: Vec<String>,
    pub filter: SnapshotFilter,
    pub add: Vec<String>,
    pub remove: Vec<String>,
    /// Replace every tag with these (may be empty: remove all tags).
    pub set: Option<Vec<String>>,
}

/// One snapshot replaced, as restic's `tag --json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct TagChange {
    pub message_type: &'static str,
    pub old_snapshot_id: SnapshotId,
    pub new_snapshot_id: SnapshotId,
}

/// What `tag` did.
#[derive(Debug, Clone, Serialize)]
pub struct TagReport {
    pub message_type: &'static str,
    pub changed_snapshots: u64,
    #[serde(skip)]
    pub changes: Vec<TagChange>,
}

/// The tags after applying `opts` to `tags`; restic's order: set, then add, then remove.
pub fn new_tags(tags: &[String], opts: &TagOptions) -> Vec<String> {
    let mut out: Vec<String> = opts.set.clone().unwrap_or_else(|| tags.to_vec());
    for t in &opts.add {
        if !out.contains(t) {
            out.push(t.clone());
        }
    }
    out.retain(|t| !opts.remove.contains(t));
    let mut seen = std::collections::HashSet::new();
    out.retain(|t| seen.insert(t.clone()));
    out
}

/// The replacement of `old` (id `old_id`) with `tags`.
pub fn replacement(old_id: SnapshotId, old: &Snapshot, tags: Vec<String>) -> Snapshot {
    let mut new = old.clone();
    new.tags = tags;
    new.original = Some(old.original.unwrap_or(old_id));
    new
}

/// Changes the tags of the selected snapshots.
pub fn tag(repo: &Repository, opts: &TagOptions) -> Result<TagReport> {
    if opts.add.is_empty() && opts.remove.is_empty() && opts.set.is_none() {
        return Err(Error::invalid("nothing to do: give tags to add, remove or set"));
    }
    let _lock = crate::lock::acquire(repo, LockKind::Exclusive)?;
    let (selected, _) = select_snapshots(repo, &opts.snapshots, &opts.filter)?;
    let mut planned = Vec::new();
    for (id, s) in &selected {
        let tags = new_tags(&s.tags, opts);
        if tags != s.tags {
            planned.push((*id, replacement(*id, s, tags)));
        }
    }
    // Every replacement is durable before anything it replaces is deleted.
    let mut changes = Vec::new();
    for (old, new) in &planned {
        let id = repo.save_snapshot(new)?;
        changes.push(TagChange { message_type: "changed", old_snapshot_id: *old, new_snapshot_id: id });
    }
    for c in &changes {
        repo.backend().delete(FileType::Snapshot, &c.old_snapshot_id.to_hex())?;
    }
    Ok(TagReport { message_type: "summary", changed_snapshots: changes.len() as u64, changes })
}
