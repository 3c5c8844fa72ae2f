//! `ls`: list the entries of a snapshot below a path, streaming them to a callback.

use cairn_format::tree::{Node, NodeKind};
use serde::Serialize;

use crate::commands::MAX_TREE_DEPTH;
use crate::commands::snapshots::{SnapshotFilter, find_node_in, find_snapshot};
use crate::error::{Error, Result};
use crate::repository::Repository;

/// One listed entry.
#[derive(Debug, Clone, Serialize)]
pub struct LsEntry {
    pub path: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub user: String,
    pub group: String,
    pub size: u64,
    pub mtime_ns: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_target: Option<String>,
}

impl LsEntry {
    pub fn new(path: String, n: &Node) -> Self {
        LsEntry {
            path,
            kind: n.kind.name(),
            mode: n.mode,
            uid: n.uid,
            gid: n.gid,
            user: n.user.clone(),
            group: n.group.clone(),
            size: n.size,
            mtime_ns: n.mtime_ns,
            link_target: match &n.kind {
                NodeKind::Symlink { target } => Some(String::from_utf8_lossy(target).into_owned()),
                _ => None,
            },
        }
    }
}

/// Lists everything below `path` (recursively) in snapshot `spec`; returns the snapshot id.
pub fn ls(
    repo: &Repository,
    spec: &str,
    path: &std::ffi::OsStr,
    filter: &SnapshotFilter,
    each: &mut dyn FnMut(&LsEntry) -> Result<()>,
) -> Result<cairn_format::SnapshotId> {
    let (id, snapshot) = find_snapshot(repo, spec, filter)?;
    repo.sync_index()?;
    let (node, walked) = find_node_in(repo, spec, id, &snapshot, path)?;
    match &node.kind {
        NodeKind::Dir { subtree } => walk(repo, *subtree, &walked, 0, each)?,
        _ => each(&LsEntry::new(walked, &node))?,
    }
    Ok(id)
}

fn walk(
    repo: &Repository,
    tree: cairn_format::TreeId,
    base: &str,
    depth: usize,
    each: &mut dyn FnMut(&LsEntry) -> Result<()>,
) -> Result<()> {
    // Trees are named by their content's hash, so they cannot form a cycle, but a hostile chain
    // of them can be deep enough to exhaust the stack.
    if depth >= MAX_TREE_DEPTH {
        return Err(Error::invalid(format!("{base}: folders nested more than {MAX_TREE_DEPTH} deep")));
    }
    let tree = repo.load_tree(tree)?;
    for n in tree.nodes() {
        let name = String::from_utf8_lossy(&n.name);
        let path = if base.ends_with('/') { format!("{base}{name}") } else { format!("{base}/{name}") };
        each(&LsEntry::new(path.clone(), n))?;
        if let NodeKind::Dir { subtree } = &n.kind {
            walk(repo, *subtree, &path, depth + 1, each)?;
        }
    }
    Ok(())
}
