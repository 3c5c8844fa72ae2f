//! `stats`: how large the selected snapshots are, in restic's four senses, and what each one
//! costs on its own: the stored bytes that forgetting it alone (then pruning) would free.
//!
//! - `restore-size`: every entry of every snapshot, and the bytes a restore would write;
//! - `files-by-contents`: files with distinct contents, and their size;
//! - `raw-data`: distinct blobs (data and trees), their plaintext and stored sizes, and the
//!   compression ratio;
//! - `blobs-per-file`: files with distinct contents, their blobs (a blob shared by two such files
//!   counts twice) and those blobs' plaintext size.
//!
//! Folders are reached through their tree ids: a folder seen before is not read again (for
//! `restore-size` its totals are remembered). Read-only; takes no lock.

use std::collections::{HashMap, HashSet};

use cairn_format::tree::NodeKind;
use cairn_format::{BlobId, SnapshotId, TreeId};
use serde::Serialize;

use crate::commands::snapshots::{SnapshotFilter, select_snapshots};
use crate::error::{Error, Result};
use crate::repository::Repository;

/// What is counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StatsMode {
    #[default]
    RestoreSize,
    FilesByContents,
    RawData,
    BlobsPerFile,
}

impl StatsMode {
    /// Parses restic's mode names.
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "restore-size" => Self::RestoreSize,
            "files-by-contents" => Self::FilesByContents,
            "raw-data" => Self::RawData,
            "blobs-per-file" => Self::BlobsPerFile,
            other => {
                return Err(Error::invalid(format!(
                    "unknown mode '{other}' (use restore-size, files-by-contents, raw-data or blobs-per-file)"
                )));
            }
        })
    }
}

/// What one snapshot alone holds.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotCost {
    pub id: SnapshotId,
    pub time_ns: i64,
    /// Blobs that no other snapshot in the repository reaches.
    pub unique_blobs: u64,
    /// Their stored size: what forgetting this snapshot alone, then pruning, frees.
    pub unique_stored_size: u64,
    pub unique_uncompressed_size: u64,
}

/// The report, with restic's field names.
#[derive(Debug, Clone, Serialize)]
pub struct StatsReport {
    pub mode: StatsMode,
    pub snapshots_count: u64,
    pub total_size: u64,
    pub total_file_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_blob_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_uncompressed_size: Option<u64>,
    /// Plaintext bytes per stored byte (raw-data).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression_ratio: Option<f64>,
    /// Percentage of the plaintext that compression saved (raw-data).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression_space_saving: Option<f64>,
    pub snapshots: Vec<SnapshotCost>,
}

/// Computes the statistics of the snapshots named in `specs` (all passing `filter` when empty).
/// Also returns the snapshot files that could not be read.
pub fn stats(
    repo: &Repository,
    specs: &[String],
    filter: &SnapshotFilter,
    mode: StatsMode,
) -> Result<(StatsReport, Vec<Error>)> {
    let (selected, damaged) = select_snapshots(repo, specs, filter)?;
    repo.sync_index()?;
    let mut walk = Walk {
        repo,
        mode,
        totals: HashMap::new(),
        trees_seen: HashSet::new(),
        contents: HashMap::new(),
        blobs: HashSet::new(),
    };
    let (mut files, mut size) = (0u64, 0u64);
    for (_, s) in &selected {
        let (f, b) = walk.tree(s.tree)?;
        files += f;
        size += b;
    }
    let mut report = StatsReport {
        mode,
        snapshots_count: selected.len() as u64,
        total_size: size,
        total_file_count: files,
        total_blob_count: None,
        total_uncompressed_size: None,
        compression_ratio: None,
        compression_space_saving: None,
        snapshots: Vec::new(),
    };
    match mode {
        StatsMode::RestoreSize => {}
        StatsMode::FilesByContents => {
            report.total_file_count = walk.contents.len() as u64;
            report.total_size = walk.contents.values().sum();
        }
        StatsMode::BlobsPerFile => {
            report.total_file_count = walk.contents.len() as u64;
            let (mut blobs, mut bytes) = (0u64, 0u64);
            for content in walk.contents.keys() {
                let distinct: HashSet<&BlobId> = content.iter().collect();
                blobs += distinct.len() as u64;
                for id in distinct {
                    bytes += sizes(repo, id)?.0;
                }
            }
            report.total_blob_count = Some(blobs);
            report.total_size = bytes;
        }
        StatsMode::RawData => {
            let (mut plain, mut stored) = (0u64, 0u64);
            let trees = walk.trees_seen.iter().map(|t| BlobId::from(*t));
            for id in walk.blobs.iter().copied().chain(trees) {
                let (p, s) = sizes(repo, &id)?;
                plain += p;
                stored += s;
            }
            report.total_blob_count = Some((walk.blobs.len() + walk.trees_seen.len()) as u64);
            report.total_uncompressed_size = Some(plain);
            report.total_size = stored;
            if stored > 0 {
                report.compression_ratio = Some(plain as f64 / stored as f64);
                report.compression_space_saving =
                    Some(if plain > 0 { 100.0 * (1.0 - stored as f64 / plain as f64) } else { 0.0 });
            }
        }
    }
    report.snapshots = costs(repo, &selected)?;
    Ok((report, damaged))
}

/// Plaintext and stored size of a blob (zero when the index does not know it).
fn sizes(repo: &Repository, id: &BlobId) -> Result<(u64, u64)> {
    Ok(repo
        .locate_for_reading(id)?
        .map(|l| (u64::from(l.entry.plain_len), u64::from(l.entry.stored_len)))
        .unwrap_or((0, 0)))
}

struct Walk<'a> {
    repo: &'a Repository,
    mode: StatsMode,
    /// restore-size: entries and bytes below each tree.
    totals: HashMap<TreeId, (u64, u64)>,
    trees_seen: HashSet<TreeId>,
    /// files-by-contents and blobs-per-file: distinct contents and their size.
    contents: HashMap<Vec<BlobId>, u64>,
    /// raw-data: distinct data blobs.
    blobs: HashSet<BlobId>,
}

impl Walk<'_> {
    /// Walks a tree; for restore-size returns its (entries, bytes).
    fn tree(&mut self, id: TreeId) -> Result<(u64, u64)> {
        if self.mode == StatsMode::RestoreSize {
            if let Some(t) = self.totals.get(&id) {
                return Ok(*t);
            }
        } else if !self.trees_seen.insert(id) {
            return Ok((0, 0));
        }
        let tree = self.repo.load_tree(id)?;
        let (mut entries, mut bytes) = (0u64, 0u64);
        for n in tree.nodes() {
            entries += 1;
            match &n.kind {
                NodeKind::File { content } => {
                    bytes += n.size;
                    match self.mode {
                        StatsMode::RestoreSize => {}
                        StatsMode::RawData => self.blobs.extend(content.iter().copied()),
                        _ => {
                            self.contents.entry(content.clone()).or_insert(n.size);
                        }
                    }
                }
                NodeKind::Dir { subtree } => {
                    let (e, b) = self.tree(*subtree)?;
                    entries += e;
                    bytes += b;
                }
                _ => {}
            }
        }
        if self.mode == StatsMode::RestoreSize {
            self.totals.insert(id, (entries, bytes));
        }
        Ok((entries, bytes))
    }
}

/// Who reaches a blob: one snapshot (its position), or several.
const SHARED: u32 = u32::MAX;

/// For each selected snapshot, the blobs that no other snapshot in the repository reaches.
fn costs(repo: &Repository, selected: &[(SnapshotId, cairn_format::snapshot::Snapshot)]) -> Result<Vec<SnapshotCost>> {
    let (all, _) = repo.load_snapshots()?;
    let mut owner_of_tree: HashMap<TreeId, u32> = HashMap::new();
    let mut owner_of_blob: HashMap<BlobId, u32> = HashMap::new();
    for (i, (_, s)) in all.iter().enumerate() {
        mark(repo, s.tree, i as u32, &mut owner_of_tree, &mut owner_of_blob)?;
    }
    let position: HashMap<SnapshotId, u32> = all.iter().enumerate().map(|(i, (id, _))| (*id, i as u32)).collect();
    let mut per_owner: HashMap<u32, (u64, u64, u64)> = HashMap::new();
    let wanted: HashSet<u32> = selected.iter().filter_map(|(id, _)| position.get(id).copied()).collect();
    let owned = owner_of_blob.into_iter().chain(owner_of_tree.into_iter().map(|(t, o)| (BlobId::from(t), o)));
    for (id, owner) in owned {
        if owner == SHARED || !wanted.contains(&owner) {
            continue;
        }
        let (plain, stored) = sizes(repo, &id)?;
        let e = per_owner.entry(owner).or_default();
        e.0 += 1;
        e.1 += stored;
        e.2 += plain;
    }
    Ok(selected
        .iter()
        .map(|(id, s)| {
            let (blobs, stored, plain) = position.get(id).and_then(|p| per_owner.get(p)).copied().unwrap_or_default();
            SnapshotCost {
                id: *id,
                time_ns: s.time_ns,
                unique_blobs: blobs,
                unique_stored_size: stored,
                unique_uncompressed_size: plain,
            }
        })
        .collect())
}

/// Marks what snapshot `me` reaches below `tree`. A tree already marked by `me` or shared is not
/// read again; one marked by another snapshot becomes shared, with everything below it.
fn mark(
    repo: &Repository,
    tree: TreeId,
    me: u32,
    trees: &mut HashMap<TreeId, u32>,
    blobs: &mut HashMap<BlobId, u32>,
) -> Result<()> {
    let next = match trees.get(&tree) {
        None => me,
        Some(&o) if o == me || o == SHARED => return Ok(()),
        Some(_) => SHARED,
    };
    trees.insert(tree, next);
    for n in repo.load_tree(tree)?.nodes() {
        match &n.kind {
            NodeKind::File { content } => {
                for b in content {
                    blobs
                        .entry(*b)
                        .and_modify(|o| {
                            if *o != next {
                                *o = SHARED
                            }
                        })
                        .or_insert(next);
                }
            }
            NodeKind::Dir { subtree } => mark(repo, *subtree, next, trees, blobs)?,
            _ => {}
        }
    }
    Ok(())
}
