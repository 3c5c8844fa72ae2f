//! `diff`: what changed between two snapshots, path by path, with restic's modifiers (`+` added,
//! `-` removed, `M` content changed, `T` type changed, `U` metadata changed) and a summary.
//!
//! Two folders with the same tree id are equal down to the last byte, so they are skipped without
//! being read: comparing two hourly snapshots of a large tree reads only the folders on the paths
//! that changed. The byte counts are therefore over the changed parts: a blob that a new file
//! shares with a folder that did not change is counted as added (restic reads the unchanged
//! folders to rule that out).

use std::collections::HashSet;

use cairn_format::tree::{Node, NodeKind, Tree};
use cairn_format::{BlobId, SnapshotId, TreeId};
use serde::Serialize;

use crate::commands::snapshots::{SnapshotFilter, find_snapshot};
use crate::error::Result;
use crate::repository::Repository;

/// Options of `diff`.
#[derive(Debug, Clone, Copy, Default)]
pub struct DiffOptions {
    /// Also report entries whose metadata alone changed (`U`).
    pub metadata: bool,
}

/// One changed path, as restic's `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct DiffChange {
    pub message_type: &'static str,
    /// Absolute path in the snapshot; folders end with `/`.
    pub path: String,
    /// `+`, `-`, or a combination of `T`, `M`, `U`.
    pub modifier: String,
}

/// Counts on one side of the summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DiffStat {
    pub files: u64,
    pub dirs: u64,
    pub others: u64,
    pub data_blobs: u64,
    pub tree_blobs: u64,
    /// Plaintext bytes of those blobs.
    pub bytes: u64,
}

impl DiffStat {
    fn count(&mut self, n: &Node) {
        match n.kind {
            NodeKind::File { .. } => self.files += 1,
            NodeKind::Dir { .. } => self.dirs += 1,
            _ => self.others += 1,
        }
    }
}

/// The summary, as restic's `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct DiffStatistics {
    pub message_type: &'static str,
    pub source_snapshot: SnapshotId,
    pub target_snapshot: SnapshotId,
    pub changed_files: u64,
    pub added: DiffStat,
    pub removed: DiffStat,
}

/// Blobs met on each side of the changed parts.
#[derive(Default)]
struct Blobs {
    data: HashSet<BlobId>,
    trees: HashSet<TreeId>,
}

struct Differ<'a> {
    repo: &'a Repository,
    opts: DiffOptions,
    changed_files: u64,
    added: DiffStat,
    removed: DiffStat,
    before: Blobs,
    after: Blobs,
    each: &'a mut dyn FnMut(&DiffChange) -> Result<()>,
}

/// Compares snapshot `first` with `second`, calling `each` for every changed path in path order;
/// returns the summary.
pub fn diff(
    repo: &Repository,
    first: &str,
    second: &str,
    opts: DiffOptions,
    each: &mut dyn FnMut(&DiffChange) -> Result<()>,
) -> Result<DiffStatistics> {
    let filter = SnapshotFilter::default();
    let (id1, s1) = find_snapshot(repo, first, &filter)?;
    let (id2, s2) = find_snapshot(repo, second, &filter)?;
    repo.sync_index()?;
    let mut d = Differ {
        repo,
        opts,
        changed_files: 0,
        added: DiffStat::default(),
        removed: DiffStat::default(),
        before: Blobs::default(),
        after: Blobs::default(),
        each,
    };
    d.tree(s1.tree, s2.tree, "/")?;
    let (added, removed) = (d.added_bytes(true)?, d.added_bytes(false)?);
    d.added.data_blobs = added.0;
    d.added.tree_blobs = added.1;
    d.added.bytes = added.2;
    d.removed.data_blobs = removed.0;
    d.removed.tree_blobs = removed.1;
    d.removed.bytes = removed.2;
    Ok(DiffStatistics {
        message_type: "statistics",
        source_snapshot: id1,
        target_snapshot: id2,
        changed_files: d.changed_files,
        added: d.added,
        removed: d.removed,
    })
}

/// Whether two entries of the same name differ in metadata (contents are compared apart).
fn metadata_differs(a: &Node, b: &Node) -> bool {
    a.mode != b.mode
        || a.uid != b.uid
        || a.gid != b.gid
        || a.user != b.user
        || a.group != b.group
        || a.mtime_ns != b.mtime_ns
        || a.size != b.size
        || a.links != b.links
}

/// Whether two entries of the same type differ in content.
fn content_differs(a: &NodeKind, b: &NodeKind) -> bool {
    match (a, b) {
        (NodeKind::File { content: x }, NodeKind::File { content: y }) => x != y,
        (NodeKind::Symlink { target: x }, NodeKind::Symlink { target: y }) => x != y,
        (NodeKind::BlockDevice { rdev: x }, NodeKind::BlockDevice { rdev: y })
        | (NodeKind::CharDevice { rdev: x }, NodeKind::CharDevice { rdev: y }) => x != y,
        _ => false,
    }
}

impl Differ<'_> {
    fn emit(&mut self, path: &str, modifier: &str) -> Result<()> {
        (self.each)(&DiffChange { message_type: "change", path: path.to_owned(), modifier: modifier.to_owned() })
    }

    /// Compares two folders; equal ids are skipped unread.
    fn tree(&mut self, t1: TreeId, t2: TreeId, base: &str) -> Result<()> {
        if t1 == t2 {
            return Ok(());
        }
        self.before.trees.insert(t1);
        self.after.trees.insert(t2);
        let (a, b) = (self.repo.load_tree(t1)?, self.repo.load_tree(t2)?);
        let (a, b) = (a.nodes(), b.nodes());
        let (mut i, mut j) = (0, 0);
        while i < a.len() || j < b.len() {
            let order = match (a.get(i), b.get(j)) {
                (Some(x), Some(y)) => x.name.cmp(&y.name),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            match order {
                std::cmp::Ordering::Less => {
                    self.one_side(&a[i], base, false)?;
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    self.one_side(&b[j], base, true)?;
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    self.both(&a[i], &b[j], base)?;
                    i += 1;
                    j += 1;
                }
            }
        }
        Ok(())
    }

    fn both(&mut self, n1: &Node, n2: &Node, base: &str) -> Result<()> {
        let mut path = join(base, &n1.name);
        let mut modifier = String::new();
        let type_changed = std::mem::discriminant(&n1.kind) != std::mem::discriminant(&n2.kind);
        if type_changed {
            modifier.push('T');
        }
        if matches!(n2.kind, NodeKind::Dir { .. }) {
            path.push('/');
        }
        if !type_changed && content_differs(&n1.kind, &n2.kind) {
            modifier.push('M');
            if let (NodeKind::File { content: c1 }, NodeKind::File { content: c2 }) = (&n1.kind, &n2.kind) {
                self.changed_files += 1;
                self.before.data.extend(c1.iter().copied());
                self.after.data.extend(c2.iter().copied());
            }
        } else if self.opts.metadata && metadata_differs(n1, n2) {
            modifier.push('U');
        }
        if !modifier.is_empty() {
            self.emit(&path, &modifier)?;
        }
        match (&n1.kind, &n2.kind) {
            (NodeKind::Dir { subtree: t1 }, NodeKind::Dir { subtree: t2 }) => self.tree(*t1, *t2, &path)?,
            _ if type_changed => {
                // The old entry went and a new one came: count both sides as restic does.
                self.collect(n1, &path, false)?;
                self.collect(n2, &path, true)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// An entry present on one side only (and, for a folder, everything below it).
    fn one_side(&mut self, n: &Node, base: &str, added: bool) -> Result<()> {
        let mut path = join(base, &n.name);
        if matches!(n.kind, NodeKind::Dir { .. }) {
            path.push('/');
        }
        self.emit(&path, if added { "+" } else { "-" })?;
        self.stat(added).count(n);
        self.collect(n, &path, added)?;
        Ok(())
    }

    fn stat(&mut self, added: bool) -> &mut DiffStat {
        if added { &mut self.added } else { &mut self.removed }
    }

    /// Records the blobs of an entry present on one side; lists a folder's contents.
    fn collect(&mut self, n: &Node, path: &str, added: bool) -> Result<()> {
        let blobs = if added { &mut self.after } else { &mut self.before };
        match &n.kind {
            NodeKind::File { content } => blobs.data.extend(content.iter().copied()),
            NodeKind::Dir { subtree } => {
                blobs.trees.insert(*subtree);
                let tree: Tree = self.repo.load_tree(*subtree)?;
                for child in tree.nodes() {
                    self.one_side(child, path, added)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Blobs on one side and not on the other: (data blobs, tree blobs, plaintext bytes).
    fn added_bytes(&self, added: bool) -> Result<(u64, u64, u64)> {
        let (this, other) = if added { (&self.after, &self.before) } else { (&self.before, &self.after) };
        let mut out = (0, 0, 0);
        for id in this.data.difference(&other.data) {
            out.0 += 1;
            out.2 += self.plain_len(id)?;
        }
        for id in this.trees.difference(&other.trees) {
            out.1 += 1;
            out.2 += self.plain_len(&(*id).into())?;
        }
        Ok(out)
    }

    fn plain_len(&self, id: &BlobId) -> Result<u64> {
        Ok(self.repo.locate_for_reading(id)?.map(|l| u64::from(l.entry.plain_len)).unwrap_or(0))
    }
}

/// `base` + `/` + `name`.
pub(crate) fn join(base: &str, name: &[u8]) -> String {
    let name = String::from_utf8_lossy(name);
    if base.ends_with('/') { format!("{base}{name}") } else { format!("{base}/{name}") }
}
