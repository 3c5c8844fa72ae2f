//! `snapshots`: list snapshots, and the shared helpers that find a snapshot by `latest`, id or
//! prefix and a path inside it.

use std::collections::BTreeMap;

use cairn_format::SnapshotId;
use cairn_format::snapshot::Snapshot;
use cairn_format::tree::{Node, NodeKind};
use serde::Serialize;

use crate::backend::FileType;
use crate::error::{Error, ErrorKind, Result};
use crate::progress::Progress;
use crate::repository::Repository;

/// Narrows which snapshots are considered.
#[derive(Debug, Clone, Default)]
pub struct SnapshotFilter {
    pub hosts: Vec<String>,
    /// A snapshot matches when it has every tag of any one entry (`a,b` means a and b).
    pub tags: Vec<String>,
    pub paths: Vec<String>,
}

impl SnapshotFilter {
    /// Whether `s` passes the filter.
    pub fn matches(&self, s: &Snapshot) -> bool {
        if !self.hosts.is_empty() && !self.hosts.contains(&s.host) {
            return false;
        }
        if !self.tags.is_empty()
            && !self
                .tags
                .iter()
                .any(|group| group.split(',').filter(|t| !t.is_empty()).all(|t| s.tags.iter().any(|x| x == t)))
        {
            return false;
        }
        if !self.paths.is_empty()
            && !self.paths.iter().all(|p| s.paths.iter().any(|x| x == p.trim_end_matches('/') || x == p))
        {
            return false;
        }
        true
    }
}

/// One row of the snapshot list.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotInfo {
    pub id: SnapshotId,
    #[serde(flatten)]
    pub snapshot: Snapshot,
}

/// Options of the listing.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    pub filter: SnapshotFilter,
    /// Keep only the newest N of each host and path set.
    pub latest: Option<usize>,
}

/// What the listing found.
#[derive(Debug, Default)]
pub struct SnapshotList {
    pub snapshots: Vec<SnapshotInfo>,
    /// Snapshot files that could not be read.
    pub damaged: Vec<Error>,
    /// Snapshots listed from the local cache's intact copy whose file in the repository is damaged
    /// (its bytes no longer match its name). The repository is the truth and the cache only an
    /// accelerator: `repair snapshots` writes such a file again from the cached copy.
    pub damaged_in_repository: Vec<SnapshotId>,
}

/// Lists snapshots, oldest first.
pub fn list(repo: &Repository, opts: &ListOptions) -> Result<SnapshotList> {
    let (all, damaged) = repo.load_snapshots()?;
    let damaged_in_repository = damaged_repository_copies(repo, all.iter().map(|(id, _)| *id))?;
    let mut rows: Vec<SnapshotInfo> = all
        .into_iter()
        .filter(|(_, s)| opts.filter.matches(s))
        .map(|(id, snapshot)| SnapshotInfo { id, snapshot })
        .collect();
    if let Some(n) = opts.latest {
        let mut groups: BTreeMap<(String, Vec<String>), Vec<SnapshotInfo>> = BTreeMap::new();
        for r in rows {
            let mut p = r.snapshot.paths.clone();
            p.sort();
            groups.entry((r.snapshot.host.clone(), p)).or_default().push(r);
        }
        rows = Vec::new();
        for (_, mut g) in groups {
            let skip = g.len().saturating_sub(n);
            rows.extend(g.drain(skip..));
        }
        rows.sort_by_key(|r| r.snapshot.time_ns);
    }
    Ok(SnapshotList { snapshots: rows, damaged, damaged_in_repository })
}

/// The snapshots among `ids` whose file in the repository does not match its name. Snapshots are
/// usually loaded from the local cache, which would hide such damage; this reads every file again
/// (snapshot files are small) and hashes it, without the key.
pub fn damaged_repository_copies(repo: &Repository, ids: impl Iterator<Item = SnapshotId>) -> Result<Vec<SnapshotId>> {
    use rayon::prelude::*;
    let ids: Vec<SnapshotId> = ids.collect();
    let checked: Vec<Result<Option<SnapshotId>>> = ids
        .par_iter()
        .map(|id| match repo.read_verified(FileType::Snapshot, id.as_bytes()) {
            Ok(_) => Ok(None),
            // Forgotten since it was listed.
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) if e.kind() == ErrorKind::Corrupt => Ok(Some(*id)),
            Err(e) => Err(e),
        })
        .collect();
    let mut out = Vec::new();
    for c in checked {
        out.extend(c?);
    }
    Ok(out)
}

/// Warns through `progress` when the repository's file of snapshot `id` is damaged although the
/// snapshot loaded (from the local cache's intact copy): the data is still restorable, but the
/// repository itself no longer holds that snapshot intact until `repair snapshots` rewrites it.
pub fn warn_if_repository_copy_damaged(repo: &Repository, id: SnapshotId, progress: &dyn Progress) -> Result<()> {
    if !damaged_repository_copies(repo, std::iter::once(id))?.is_empty() {
        progress.warn(&format!(
            "snapshot {}: its file in the repository is damaged; using the local cache's intact copy \
             ('cairn repair snapshots' writes the file again from that copy)",
            id.short()
        ));
    }
    Ok(())
}

/// Finds one snapshot by `latest`, a full id or a unique prefix, among those passing `filter`.
pub fn find_snapshot(repo: &Repository, spec: &str, filter: &SnapshotFilter) -> Result<(SnapshotId, Snapshot)> {
    if spec != "latest"
        && spec.len() == 64
        && let Ok(id) = SnapshotId::from_hex(spec)
    {
        return Ok((id, repo.load_snapshot(id)?));
    }
    let (all, _) = repo.load_snapshots()?;
    let candidates: Vec<(SnapshotId, Snapshot)> = all.into_iter().filter(|(_, s)| filter.matches(s)).collect();
    repo.resolve_snapshot(spec, &candidates).cloned()
}

/// Finds the entry at `path` inside a snapshot (`/` or empty for the root). Returns the node and
/// its normalised path. The root is returned as a folder node named `/`.
/// `path` is raw bytes on Unix: a name that is not UTF-8 is found as it was stored.
pub fn find_node(repo: &Repository, snapshot: &Snapshot, path: impl AsRef<std::ffi::OsStr>) -> Result<(Node, String)> {
    let mut node = Node {
        name: b"/".to_vec(),
        kind: NodeKind::Dir { subtree: snapshot.tree },
        mode: 0o40755,
        uid: 0,
        gid: 0,
        user: String::new(),
        group: String::new(),
        mtime_ns: snapshot.time_ns,
        ctime_ns: snapshot.time_ns,
        inode: 0,
        device: 0,
        links: 1,
        size: 0,
        xattrs: Vec::new(),
    };
    let mut walked = String::new();
    use std::os::unix::ffi::OsStrExt;
    for part in path.as_ref().as_bytes().split(|&b| b == b'/').filter(|p| !p.is_empty() && *p != b".") {
        let NodeKind::Dir { subtree } = node.kind else {
            return Err(Error::new(ErrorKind::NotFound, format!("{walked} is not a folder in the snapshot")));
        };
        let tree = repo.load_tree(subtree)?;
        walked.push('/');
        walked.push_str(&String::from_utf8_lossy(part));
        node = tree
            .get(part)
            .cloned()
            .ok_or_else(|| Error::new(ErrorKind::NotFound, format!("{walked} is not in the snapshot")))?;
    }
    if walked.is_empty() {
        walked.push('/');
    }
    Ok((node, walked))
}

/// [`find_node`] in snapshot `id`, chosen by `spec`: when the path is missing, the error names the
/// snapshot and what it holds, and for `latest` says how to pick the newest snapshot that has it.
pub fn find_node_in(
    repo: &Repository,
    spec: &str,
    id: SnapshotId,
    snapshot: &Snapshot,
    path: impl AsRef<std::ffi::OsStr>,
) -> Result<(Node, String)> {
    find_node(repo, snapshot, path).map_err(|e| {
        if e.kind() != ErrorKind::NotFound {
            return e;
        }
        let hint = if spec == "latest" {
            "; 'latest' is the newest snapshot of all that pass the filters: choose one that holds the path \
             with --path (a backed-up path) or --tag, or give a snapshot id ('cairn find' shows which hold it)"
        } else {
            ""
        };
        Error::new(
            ErrorKind::NotFound,
            format!(
                "{e} {} (of {} at {}{}){hint}",
                id.short(),
                snapshot.paths.join(" "),
                snapshot.host,
                if snapshot.tags.is_empty() { String::new() } else { format!(", tags {}", snapshot.tags.join(",")) }
            ),
        )
    })
}

/// The snapshots a command works on: those named in `specs` (`latest`, ids or prefixes, among
/// those passing `filter`), or every snapshot passing `filter` when none is named; oldest first,
/// each once. Also returns the snapshot files that could not be read.
pub fn select_snapshots(
    repo: &Repository,
    specs: &[String],
    filter: &SnapshotFilter,
) -> Result<(Vec<crate::repository::SnapshotEntry>, Vec<Error>)> {
    let (all, damaged) = repo.load_snapshots()?;
    let candidates: Vec<(SnapshotId, Snapshot)> = all.into_iter().filter(|(_, s)| filter.matches(s)).collect();
    if specs.is_empty() {
        return Ok((candidates, damaged));
    }
    let mut chosen: Vec<(SnapshotId, Snapshot)> = Vec::new();
    for spec in specs {
        let found = repo.resolve_snapshot(spec, &candidates)?;
        if !chosen.iter().any(|c| c.0 == found.0) {
            chosen.push(found.clone());
        }
    }
    chosen.sort_by(|a, b| a.1.time_ns.cmp(&b.1.time_ns).then(a.0.cmp(&b.0)));
    Ok((chosen, damaged))
}
