//! `find`: which snapshots hold a path matching a pattern, grouped per snapshot; or, with object
//! ids, which snapshots and paths use a given data blob or tree (after `check` reported damage).
//!
//! Patterns are those of `--exclude` ([`crate::filter::PatternSet`]): a pattern without `/` matches a
//! name at any depth, one starting with `/` matches from the root. A folder whose tree was already
//! searched for an object and found not to hold it is not read again in another snapshot.

use std::collections::HashSet;

use cairn_format::tree::NodeKind;
use cairn_format::{BlobId, SnapshotId, TreeId};
use serde::Serialize;

use crate::commands::diff::join;
use crate::commands::ls::LsEntry;
use crate::commands::snapshots::{SnapshotFilter, select_snapshots};
use crate::error::{Error, Result};
use crate::filter::PatternSet;
use crate::repository::Repository;

/// Which snapshots to search, and which entries count.
#[derive(Debug, Clone, Default)]
pub struct FindOptions {
    /// Snapshots to search (ids, prefixes, `latest`); all passing `filter` when empty.
    pub snapshots: Vec<String>,
    pub filter: SnapshotFilter,
    /// Only entries modified at or after this time (Unix ns).
    pub oldest_ns: Option<i64>,
    /// Only entries modified at or before this time (Unix ns).
    pub newest_ns: Option<i64>,
}

/// What to look for.
#[derive(Debug, Clone)]
pub enum FindTarget {
    /// Paths matching any of these patterns.
    Patterns(Vec<String>),
    /// Files using a data blob with one of these ids (full or prefixes).
    Blobs(Vec<String>),
    /// Folders stored as a tree with one of these ids (full or prefixes).
    Trees(Vec<String>),
}

/// The matches in one snapshot, as restic's `find --json` prints them.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotMatches {
    pub snapshot: SnapshotId,
    pub time_ns: i64,
    pub hits: u64,
    pub matches: Vec<LsEntry>,
}

/// One use of an object, as restic's `find --blob/--tree --json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectUse {
    pub object_type: &'static str,
    pub id: BlobId,
    /// The file using the blob, or the folder stored as the tree.
    pub path: String,
    /// The tree listing that file or folder (for the root folder: the root tree itself).
    pub parent_tree: TreeId,
    pub snapshot: SnapshotId,
    pub time_ns: i64,
}

/// What `find` reports, one snapshot at a time.
#[derive(Debug, Clone)]
pub enum Found {
    Matches(SnapshotMatches),
    Object(ObjectUse),
}

/// Searches the selected snapshots, oldest first, calling `each` per snapshot with matches (for
/// patterns) or per use of an object. Returns the snapshot files that could not be read.
pub fn find(
    repo: &Repository,
    target: &FindTarget,
    opts: &FindOptions,
    each: &mut dyn FnMut(&Found) -> Result<()>,
) -> Result<Vec<Error>> {
    let (snapshots, damaged) = select_snapshots(repo, &opts.snapshots, &opts.filter)?;
    repo.sync_index()?;
    match target {
        FindTarget::Patterns(patterns) => {
            let set = PatternSet::new(patterns)?;
            if set.is_empty() {
                return Err(Error::invalid("no pattern given"));
            }
            for (id, snapshot) in &snapshots {
                let mut found =
                    SnapshotMatches { snapshot: *id, time_ns: snapshot.time_ns, hits: 0, matches: Vec::new() };
                walk_patterns(repo, snapshot.tree, "/", &set, opts, &mut found)?;
                if found.hits > 0 {
                    each(&Found::Matches(found))?;
                }
            }
        }
        FindTarget::Blobs(ids) | FindTarget::Trees(ids) => {
            let trees = matches!(target, FindTarget::Trees(_));
            let prefixes = hex_prefixes(ids)?;
            let mut search = ObjectSearch { repo, prefixes, trees, without: HashSet::new() };
            for (id, snapshot) in &snapshots {
                let mut here = |mut u: ObjectUse| {
                    u.snapshot = *id;
                    u.time_ns = snapshot.time_ns;
                    each(&Found::Object(u))
                };
                if trees && search.wanted(&snapshot.tree.into()) {
                    here(ObjectUse {
                        object_type: "tree",
                        id: snapshot.tree.into(),
                        path: "/".to_owned(),
                        parent_tree: snapshot.tree,
                        snapshot: *id,
                        time_ns: snapshot.time_ns,
                    })?;
                }
                search.walk(snapshot.tree, "/", &mut here)?;
            }
        }
    }
    Ok(damaged)
}

fn hex_prefixes(ids: &[String]) -> Result<Vec<String>> {
    ids.iter()
        .map(|s| {
            let s = s.trim().to_ascii_lowercase();
            if s.is_empty() || s.len() > 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Error::invalid(format!("'{s}' is not an object id (up to 64 hexadecimal characters)")));
            }
            Ok(s)
        })
        .collect()
}

fn walk_patterns(
    repo: &Repository,
    tree: TreeId,
    base: &str,
    set: &PatternSet,
    opts: &FindOptions,
    found: &mut SnapshotMatches,
) -> Result<()> {
    let tree = repo.load_tree(tree)?;
    for n in tree.nodes() {
        let path = join(base, &n.name);
        let in_time = opts.oldest_ns.is_none_or(|t| n.mtime_ns >= t) && opts.newest_ns.is_none_or(|t| n.mtime_ns <= t);
        if in_time && set.matches(&path) {
            found.hits += 1;
            found.matches.push(LsEntry::new(path.clone(), n));
        }
        if let NodeKind::Dir { subtree } = &n.kind {
            walk_patterns(repo, *subtree, &path, set, opts, found)?;
        }
    }
    Ok(())
}

struct ObjectSearch<'a> {
    repo: &'a Repository,
    prefixes: Vec<String>,
    trees: bool,
    /// Trees known to hold none of the objects anywhere below them.
    without: HashSet<TreeId>,
}

impl ObjectSearch<'_> {
    fn wanted(&self, id: &BlobId) -> bool {
        let hex = id.to_hex();
        self.prefixes.iter().any(|p| hex.starts_with(p.as_str()))
    }

    /// Reports every use below `tree`; returns whether there was any.
    fn walk(&mut self, tree_id: TreeId, base: &str, each: &mut dyn FnMut(ObjectUse) -> Result<()>) -> Result<bool> {
        if self.without.contains(&tree_id) {
            return Ok(false);
        }
        let tree = self.repo.load_tree(tree_id)?;
        let mut any = false;
        for n in tree.nodes() {
            let path = join(base, &n.name);
            let mut report = |object_type, id: BlobId| {
                each(ObjectUse {
                    object_type,
                    id,
                    path: path.clone(),
                    parent_tree: tree_id,
                    snapshot: SnapshotId::default(),
                    time_ns: 0,
                })
            };
            match &n.kind {
                NodeKind::File { content } if !self.trees => {
                    for blob in content {
                        if self.wanted(blob) {
                            any = true;
                            report("blob", *blob)?;
                        }
                    }
                }
                NodeKind::Dir { subtree } => {
                    if self.trees && self.wanted(&(*subtree).into()) {
                        any = true;
                        report("tree", (*subtree).into())?;
                    }
                    any |= self.walk(*subtree, &path, each)?;
                }
                _ => {}
            }
        }
        if !any {
            self.without.insert(tree_id);
        }
        Ok(any)
    }
}
