//! `check`: find every kind of damage in a repository and name what it affects.
//!
//! Three depths, each including the one before:
//!
//! 1. **Structure** (default, reads no pack contents except tree blobs): every key file matches its
//!    name and decodes; every index file matches its name and decodes; every pack a live index file
//!    names exists with the size the index gives; blobs indexed twice are noted (damage only when the
//!    copies disagree about what the blob is); every snapshot matches its name and decodes, every tree
//!    it reaches loads, and every blob those trees reference is in the index, in a pack that exists
//!    and is long enough. Packs that no index names are noted, not counted as damage: they can be
//!    leftovers of an interrupted backup or the work of a backup running right now.
//! 2. **Hashes** (`--read-hashes`): every selected pack is read and its BLAKE3 hash compared with its
//!    name. This part needs no key ([`check_without_key`] runs it on every file of a repository whose
//!    password is not at hand).
//! 3. **Data** (`--read-data`): every selected pack is read, its hash checked, every blob decrypted,
//!    authenticated, decompressed and hashed back to its id, and the pack's header compared with the
//!    index and with the per-blob frames.
//!
//! Reading runs on a thread pool with one pack per worker in memory. Which packs a partial read
//! covers is decided by [`ReadSubset`]; percentages and sizes read the packs verified least recently
//! first (remembered in the local cache), so a daily partial check continues where the last stopped.
//!
//! Check takes no lock and never changes what the repository stores (the command line adds a
//! record of the check's outcome afterwards, see [`crate::records`]). It builds a [`CheckReport`] (plain data)
//! and never prints.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use cairn_format::blob::{BlobKind, open_blob};
use cairn_format::crypto::{MasterKey, object_name};
use cairn_format::index::IndexFile;
use cairn_format::key::KeyFile;
use cairn_format::pack::{BlobEntry, TRAILER_LEN, decode_header, read_trailer, scan_frames};
use cairn_format::snapshot::Snapshot;
use cairn_format::tree::{NodeKind, Tree};
use cairn_format::{BlobId, IndexId, KeyId, PackId, RecordId, SnapshotId, TreeId};
use rayon::prelude::*;
use serde::Serialize;

use crate::backend::{Backend, FileType, Location};
use crate::cache::PackCheckTimes;
use crate::error::{Error, ErrorKind, Result};
use crate::progress::Progress;
use crate::repository::{Repository, kind_name, random_bytes};

mod view;
use view::{CopyRef, IndexView, ViewBuilder};

/// How deep a check goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckLevel {
    /// Metadata only: keys, index, pack sizes, snapshots and their trees.
    #[default]
    Structure,
    /// Plus: read packs and compare their hash with their name.
    Hashes,
    /// Plus: decrypt and authenticate every blob of the packs read.
    Data,
}

/// Which packs a reading check reads.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum ReadSubset {
    /// Every pack.
    #[default]
    All,
    /// Group `n` of `m` (1-based): the packs whose id, read as a big-endian number from its first
    /// eight bytes, is `n - 1` modulo `m`. Fixed by the ids alone, so `1/7` … `7/7` on successive
    /// days read every pack once, on any machine.
    Group { n: u32, m: u32 },
    /// This percentage of the packs (by count), least recently verified first.
    Percent(f64),
    /// Packs totalling at most this many bytes (at least one pack), least recently verified first.
    Bytes(u64),
}

impl FromStr for ReadSubset {
    type Err = Error;

    /// Parses `n/m`, `P%` or a size such as `500M`, `5G`, `1T` (binary units; a bare number is bytes).
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        let bad = |why: &str| {
            Error::invalid(format!(
                "--read-data-subset '{s}': {why} (use n/m such as 1/7, a percentage such as 10%, or a size such as 5G)"
            ))
        };
        if let Some((n, m)) = s.split_once('/') {
            let n: u32 = n.trim().parse().map_err(|_| bad("n is not a whole number"))?;
            let m: u32 = m.trim().parse().map_err(|_| bad("m is not a whole number"))?;
            if m == 0 || n == 0 || n > m {
                return Err(bad("needs 1 <= n <= m"));
            }
            return Ok(ReadSubset::Group { n, m });
        }
        if let Some(p) = s.strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|_| bad("not a number before %"))?;
            if !(p > 0.0 && p <= 100.0) {
                return Err(bad("the percentage must be above 0 and at most 100"));
            }
            return Ok(ReadSubset::Percent(p));
        }
        let upper = s.to_ascii_uppercase();
        let digits_end = upper.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(upper.len());
        let (number, unit) = upper.split_at(digits_end);
        let number: f64 = number.parse().map_err(|_| bad("not a size"))?;
        let shift = match unit.trim().trim_end_matches("IB").trim_end_matches('B') {
            "" => 0,
            "K" => 10,
            "M" => 20,
            "G" => 30,
            "T" => 40,
            _ => return Err(bad("unknown size unit")),
        };
        let bytes = number * (1u64 << shift) as f64;
        if !(bytes >= 1.0 && bytes < u64::MAX as f64) {
            return Err(bad("the size must be at least one byte"));
        }
        Ok(ReadSubset::Bytes(bytes as u64))
    }
}

impl fmt::Display for ReadSubset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadSubset::All => f.write_str("all"),
            ReadSubset::Group { n, m } => write!(f, "{n}/{m}"),
            ReadSubset::Percent(p) => write!(f, "{p}%"),
            ReadSubset::Bytes(b) => write!(f, "{b} bytes"),
        }
    }
}

/// Options of a check.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    pub level: CheckLevel,
    /// Which packs the hash or data level reads.
    pub subset: ReadSubset,
    /// Remember in the local cache which packs were found whole, and when.
    pub remember: bool,
}

/// Whether a finding is damage or worth knowing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Something stored is missing, damaged or inconsistent.
    Damage,
    /// Harmless, but worth knowing (leftovers, duplicates, concurrent changes).
    Notice,
}

/// One problem, about one object.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// Machine-readable kind of problem, such as `pack_missing` or `blob_damaged`.
    pub code: &'static str,
    /// What the object is: `key`, `index`, `pack`, `blob`, `tree`, `snapshot` or `repository`.
    pub object: &'static str,
    /// The object's full id, when it has one.
    pub id: Option<String>,
    /// What is wrong, without the object's name.
    pub message: String,
    /// The snapshots whose contents the problem touches; `None` when it cannot touch any (a key
    /// file, a leftover) or when that was not worked out (a check without the key).
    pub snapshots: Option<Vec<SnapshotId>>,
    /// Other objects involved (the packs of a grouped notice, for instance).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<String>,
}

impl Finding {
    /// `pack 1a2b3c4d: message`.
    pub fn headline(&self) -> String {
        match &self.id {
            Some(id) => format!("{} {}: {}", self.object, &id[..id.len().min(8)], self.message),
            None => format!("{}: {}", self.object, self.message),
        }
    }
}

/// Counts of what a check looked at.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckStats {
    pub keys: u64,
    /// Index files that count (present, readable, not superseded).
    pub index_files: u64,
    pub index_files_superseded: u64,
    /// Packs named by the live index.
    pub packs: u64,
    pub packs_condemned: u64,
    pub packs_unindexed: u64,
    /// Distinct blobs in the live index.
    pub blobs: u64,
    pub snapshots: u64,
    /// Distinct trees loaded.
    pub trees: u64,
    /// Packs in `data/` and their total size.
    pub packs_stored: u64,
    pub bytes_stored: u64,
    /// Packs and bytes read by the hash or data level.
    pub packs_read: u64,
    pub bytes_read: u64,
    /// Blobs decrypted and authenticated by the data level.
    pub blobs_read: u64,
    /// Snapshots, index files and key files whose bytes were hashed without the key.
    pub files_hashed: u64,
    /// Records of operations that were read and decoded (spec/records.md).
    pub records: u64,
}

/// What a check found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    pub level: CheckLevel,
    /// Whether the check ran without the key (hashes and key-file decoding only).
    pub keyless: bool,
    /// Which packs were read, for the hash and data levels.
    pub subset: Option<String>,
    pub stats: CheckStats,
    pub damage: Vec<Finding>,
    pub notices: Vec<Finding>,
}

impl CheckReport {
    /// Whether no damage was found.
    pub fn is_clean(&self) -> bool {
        self.damage.is_empty()
    }
}

/// The record of a check that ended at `time_ns` (spec/records.md, kind `check`): ok when it ran
/// and found no damage.
pub fn record(
    outcome: std::result::Result<&CheckReport, &Error>,
    scope: &str,
    time_ns: i64,
    duration_ns: u64,
) -> crate::records::Record {
    let (ok, summary, details) = match outcome {
        Ok(r) => {
            let damage = r.damage.len();
            let read = match &r.subset {
                Some(subset) => {
                    format!("; read {} of {} packs (subset {subset})", r.stats.packs_read, r.stats.packs_stored)
                }
                None => String::new(),
            };
            let found = if damage == 0 { "no damage found".to_owned() } else { format!("{damage} problem(s) found") };
            (
                damage == 0,
                format!("{found}{read}"),
                serde_json::json!({
                    "level": r.level,
                    "subset": r.subset,
                    "packs_read": r.stats.packs_read,
                    "bytes_read": r.stats.bytes_read,
                    "damage": damage,
                }),
            )
        }
        Err(e) => (false, format!("check failed: {e}"), serde_json::json!({ "error": e.to_string() })),
    };
    crate::records::new_record("check", scope, time_ns, duration_ns, ok, summary, details)
}

/// Runs a check of `repo` at the depth `opts` asks for.
pub fn check(repo: &Repository, opts: &CheckOptions, progress: &dyn Progress) -> Result<CheckReport> {
    let mut c = Checker::new(repo.backend(), Some(repo), opts);
    let now = crate::commands::backup::now_ns();
    for lock in crate::lock::list_locks(repo)? {
        if lock.lock.kind == cairn_format::lock::LockKind::Exclusive && lock.is_live(now) {
            c.add(
                Severity::Notice,
                "repository_locked",
                "repository",
                None,
                format!(
                    "{} (a prune or repair is running; problems about missing packs may be its work in progress)",
                    lock.describe()
                ),
                false,
            );
        }
    }
    let index_at_start = repo.list_index_ids()?;
    c.check_keys()?;
    let mut view = c.load_index(repo, &index_at_start)?;
    let stored = c.list_packs()?;
    c.check_pack_presence(&mut view, &stored);
    if opts.level != CheckLevel::Structure {
        c.read_packs(Some(&view), &stored, progress)?;
        c.apply_read_outcomes(&mut view);
    }
    c.check_snapshots(repo, &view)?;
    c.check_records(repo)?;
    c.point_missing_blobs_to_unindexed_packs();
    let mut index_at_end = repo.list_index_ids()?;
    let mut at_start = index_at_start;
    at_start.sort();
    index_at_end.sort();
    if at_start != index_at_end {
        c.add(
            Severity::Notice,
            "repository_changed",
            "repository",
            None,
            "index files were added or removed while check ran (a backup, prune or repair ran at the same time); \
             run check again if it reported missing packs or blobs"
                .to_owned(),
            false,
        );
    }
    Ok(c.finish())
}

/// Checks what can be checked without the key: every key file decodes, and every file's bytes
/// (key files, index files, snapshots, and the selected packs) match the BLAKE3 hash in its name.
pub fn check_without_key(location: &Location, opts: &CheckOptions, progress: &dyn Progress) -> Result<CheckReport> {
    let backend = Backend::open(location, false)?;
    let opts = CheckOptions { level: CheckLevel::Hashes, remember: false, ..opts.clone() };
    let mut c = Checker::new(&backend, None, &opts);
    c.check_config_sealed()?;
    c.check_keys()?;
    let damaged_keys = c.findings.iter().filter(|f| f.code == "key_damaged").count() as u64;
    if c.stats.keys <= damaged_keys {
        c.add(
            Severity::Damage,
            "no_usable_key",
            "repository",
            None,
            format!(
                "no key file decodes ({} present, {damaged_keys} damaged): no password can open the repository",
                c.stats.keys
            ),
            false,
        );
    }
    for ft in [FileType::Index, FileType::Snapshot, FileType::Record] {
        let names: Vec<String> = backend.list(ft)?.into_iter().map(|o| o.name).collect();
        let hashed: Vec<(String, Result<bool>)> = names
            .par_iter()
            .map(|n| (n.clone(), backend.read(ft, n).map(|b| cairn_format::id::to_hex(&object_name(&b)) == *n)))
            .collect();
        for (name, ok) in hashed {
            match ok {
                Ok(true) => {}
                Ok(false) => {
                    let (object, code) = match ft {
                        FileType::Index => ("index", "index_damaged"),
                        FileType::Record => ("record", "record_damaged"),
                        _ => ("snapshot", "snapshot_damaged"),
                    };
                    c.add(
                        Severity::Damage,
                        code,
                        object,
                        Some(name),
                        "does not match its name (the file is damaged)".to_owned(),
                        false,
                    );
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            c.stats.files_hashed += 1;
        }
    }
    let stored = c.list_packs()?;
    c.read_packs(None, &stored, progress)?;
    let mut report = c.finish();
    report.keyless = true;
    Ok(report)
}

/// What reading one pack found.
#[derive(Debug, Default)]
struct PackOutcome {
    id: PackId,
    len: u64,
    /// The pack vanished between listing and reading.
    vanished: bool,
    hash_ok: bool,
    /// Blobs that failed to open, with the reason.
    bad_blobs: Vec<(BlobEntry, String)>,
    blobs_read: u64,
    header_problem: Option<String>,
    index_disagreement: Option<String>,
    frames_problem: Option<String>,
}

impl PackOutcome {
    fn whole(&self) -> bool {
        !self.vanished
            && self.hash_ok
            && self.bad_blobs.is_empty()
            && self.header_problem.is_none()
            && self.index_disagreement.is_none()
            && self.frames_problem.is_none()
    }
}

/// What one pass over the index files found; findings wait here until the last pass.
struct IndexPass {
    /// The view being built, without the files of `skip`.
    builder: ViewBuilder,
    /// Packs listed as condemned by a live index file, with their blobs (first listing wins).
    condemned: HashMap<PackId, Vec<BlobEntry>>,
    /// Index files that decoded.
    present: HashSet<IndexId>,
    /// Index files named as superseded, with one file that supersedes each.
    superseded: HashMap<IndexId, IndexId>,
    /// Index files that do not decode, with the reason.
    damaged: Vec<(IndexId, String)>,
    /// Conflicts between index files: where the merge met them, code, object, id, message.
    conflicts: Vec<Conflict>,
}

/// A conflict between index files: where the merge met it (entry number, pack before blob), code,
/// object, id, message.
type Conflict = ((usize, u8), &'static str, &'static str, String, String);

struct Checker<'a> {
    backend: &'a Backend,
    repo: Option<&'a Repository>,
    opts: &'a CheckOptions,
    findings: Vec<Finding>,
    /// Snapshots affected, per finding; `None` for findings that cannot affect snapshots.
    affected: Vec<Option<BTreeSet<SnapshotId>>>,
    /// Deduplicates findings raised from several places.
    keyed: HashMap<String, usize>,
    stats: CheckStats,
    outcomes: Vec<PackOutcome>,
    /// Indexed copies found damaged, with the finding that says so.
    bad_copies: HashMap<(BlobId, u32), usize>,
    /// Problems reachable from each tree walked (sorted finding indices).
    tree_memo: HashMap<TreeId, Vec<usize>>,
}

impl<'a> Checker<'a> {
    fn new(backend: &'a Backend, repo: Option<&'a Repository>, opts: &'a CheckOptions) -> Self {
        Self {
            backend,
            repo,
            opts,
            findings: Vec::new(),
            affected: Vec::new(),
            keyed: HashMap::new(),
            stats: CheckStats::default(),
            outcomes: Vec::new(),
            bad_copies: HashMap::new(),
            tree_memo: HashMap::new(),
        }
    }

    fn add(
        &mut self,
        severity: Severity,
        code: &'static str,
        object: &'static str,
        id: Option<String>,
        message: String,
        attributable: bool,
    ) -> usize {
        self.findings.push(Finding { severity, code, object, id, message, snapshots: None, related: Vec::new() });
        self.affected.push(attributable.then(BTreeSet::new));
        self.findings.len() - 1
    }

    /// Like [`Checker::add`], but returns the existing finding when one with `key` was raised.
    #[allow(clippy::too_many_arguments)]
    fn add_once(
        &mut self,
        key: String,
        severity: Severity,
        code: &'static str,
        object: &'static str,
        id: Option<String>,
        message: impl FnOnce() -> String,
        attributable: bool,
    ) -> usize {
        if let Some(&i) = self.keyed.get(&key) {
            return i;
        }
        let i = self.add(severity, code, object, id, message(), attributable);
        self.keyed.insert(key, i);
        i
    }

    fn finish(mut self) -> CheckReport {
        let mut report = CheckReport {
            level: self.opts.level,
            keyless: false,
            subset: (self.opts.level != CheckLevel::Structure).then(|| self.opts.subset.to_string()),
            ..CheckReport::default()
        };
        for (mut f, snaps) in self.findings.drain(..).zip(self.affected.drain(..)) {
            f.snapshots = snaps.map(|s| s.into_iter().collect());
            match f.severity {
                Severity::Damage => report.damage.push(f),
                Severity::Notice => report.notices.push(f),
            }
        }
        report.stats = self.stats;
        report
    }

    /// Without the key, the config can only be checked for its header and length; a config that
    /// fails that (or is missing) cannot be opened by any password.
    fn check_config_sealed(&mut self) -> Result<()> {
        let problem = match self.backend.read(FileType::Config, "") {
            Ok(bytes) => {
                self.stats.files_hashed += 1;
                cairn_format::config::Config::check_sealed(&bytes).err().map(|e| format!("does not decode: {e}"))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Some("is missing".to_owned()),
            Err(e) => return Err(e),
        };
        if let Some(p) = problem {
            self.add(
                Severity::Damage,
                "config_damaged",
                "config",
                None,
                format!("{p}; no password can open the repository"),
                false,
            );
        }
        Ok(())
    }

    /// Every key file must match its name and decode (the one in use also unlocked the repository).
    fn check_keys(&mut self) -> Result<()> {
        let names: Vec<String> = self.backend.list(FileType::Key)?.into_iter().map(|o| o.name).collect();
        let backend = self.backend;
        let read: Vec<(String, Result<Vec<u8>>)> =
            names.par_iter().map(|n| (n.clone(), backend.read(FileType::Key, n))).collect();
        for (name, bytes) in read {
            let bytes = match bytes {
                Ok(b) => b,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            self.stats.keys += 1;
            self.stats.files_hashed += 1;
            let problem = if cairn_format::id::to_hex(&object_name(&bytes)) != name {
                Some("does not match its name (the file is damaged); the password it holds no longer opens the repository".to_owned())
            } else {
                KeyFile::decode(&bytes).err().map(|e| format!("does not decode: {e}"))
            };
            if let Some(message) = problem {
                let in_use = self.repo.is_some_and(|r| KeyId::from_hex(&name).ok() == Some(r.key_id()));
                let message = if in_use {
                    format!("{message} (it is the key in use, read before it was damaged)")
                } else {
                    message
                };
                self.add(Severity::Damage, "key_damaged", "key", Some(name), message, false);
            }
        }
        Ok(())
    }

    /// Loads every index file named at the start, decides which are live, and builds the view.
    ///
    /// Files are decoded a few at a time and merged right away, so only one batch of decoded
    /// files is in memory next to the view. Which files are superseded is known only once all are
    /// decoded: when a merged file turns out superseded (left by an interrupted prune or repair),
    /// the view is built again without it.
    fn load_index(&mut self, repo: &Repository, ids: &[IndexId]) -> Result<IndexView> {
        let mut skip: HashMap<IndexId, IndexId> = HashMap::new();
        let mut pass = self.load_index_pass(repo, ids, &skip)?;
        for _ in 0..3 {
            let merged_superseded =
                pass.superseded.keys().any(|id| !skip.contains_key(id) && pass.present.contains(id));
            if !merged_superseded {
                break;
            }
            skip = std::mem::take(&mut pass.superseded);
            drop(pass);
            pass = self.load_index_pass(repo, ids, &skip)?;
        }
        let IndexPass { builder, condemned, present, superseded, damaged, mut conflicts } = pass;
        for (id, message) in damaged {
            self.add(
                Severity::Damage,
                "index_damaged",
                "index",
                Some(id.to_hex()),
                format!("{message}; the packs it names may be unindexed: run 'cairn repair index'"),
                false,
            );
        }
        for id in ids.iter().filter(|id| present.contains(id)) {
            if let Some(by) = superseded.get(id).or_else(|| skip.get(id)) {
                self.stats.index_files_superseded += 1;
                self.add(
                    Severity::Notice,
                    "index_superseded",
                    "index",
                    Some(id.to_hex()),
                    format!(
                        "is superseded by index {} and still present (left by an interrupted prune or repair; ignored, harmless)",
                        by.short()
                    ),
                    false,
                );
            } else {
                self.stats.index_files += 1;
            }
        }
        let (mut view, counts) = builder.finish()?;
        for (pack, blobs) in condemned {
            if view.by_pack.contains_key(&pack) {
                continue;
            }
            view.condemned.insert(pack);
            for b in blobs {
                view.condemned_blobs.entry(b.id).or_insert(pack);
            }
        }
        // Copies of a blob beyond the first must agree with it on kind and length.
        for c in counts.conflicts {
            let ((first_seq, first), (seq, entry)) = (c.first, c.other);
            conflicts.push((
                (seq as usize, 1),
                "blob_index_conflict",
                "blob",
                entry.id.to_hex(),
                format!(
                    "indexed as {} of {} bytes in pack {} and as {} of {} bytes in pack {}",
                    kind_name(first.kind),
                    first.plain_len,
                    view.packs[view.pack_of(first_seq) as usize].id.short(),
                    kind_name(entry.kind),
                    entry.plain_len,
                    view.packs[view.pack_of(seq) as usize].id.short()
                ),
            ));
        }
        let (unique, duplicated) = (counts.unique, counts.duplicated);
        // In the order the merge met them.
        conflicts.sort_by_key(|c| c.0);
        for (_, code, object, id, message) in conflicts {
            self.add(Severity::Damage, code, object, Some(id), message, false);
        }
        self.stats.packs = view.packs.len() as u64;
        self.stats.packs_condemned = view.condemned.len() as u64;
        self.stats.blobs = unique;
        if duplicated > 0 {
            self.add(
                Severity::Notice,
                "blobs_duplicated",
                "repository",
                None,
                format!(
                    "{duplicated} blobs are stored more than once (after an interrupted or concurrent backup; harmless, prune removes the extra copies)"
                ),
                false,
            );
        }
        Ok(view)
    }

    /// Decodes the index files in batches and merges every file not in `skip` into a new view.
    fn load_index_pass(
        &self,
        repo: &Repository,
        ids: &[IndexId],
        skip: &HashMap<IndexId, IndexId>,
    ) -> Result<IndexPass> {
        // The scratch files go next to the cache database, on the disk the user gave cairn.
        let scratch_dir = repo.cache().path().and_then(|p| p.parent()).map(std::path::Path::to_path_buf);
        let mut pass = IndexPass {
            // Each pack's entries are kept only where its blobs are opened and compared with them.
            builder: ViewBuilder::new(scratch_dir.as_deref(), self.opts.level == CheckLevel::Data)?,
            condemned: HashMap::new(),
            present: HashSet::new(),
            superseded: HashMap::new(),
            damaged: Vec::new(),
            conflicts: Vec::new(),
        };
        let batch = (rayon::current_num_threads() * 2).max(2);
        for chunk in ids.chunks(batch) {
            let loaded: Vec<(IndexId, Result<IndexFile>)> =
                chunk.par_iter().map(|id| (*id, repo.load_index(*id))).collect();
            for (index_id, file) in loaded {
                let file = match file {
                    Ok(f) => f,
                    // Removed by a prune or repair since the listing.
                    Err(e) if e.kind() == ErrorKind::NotFound => continue,
                    Err(e) if e.kind() == ErrorKind::Corrupt => {
                        pass.damaged.push((index_id, strip_object_prefix(&e.to_string(), &index_id.to_hex())));
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                pass.present.insert(index_id);
                for s in &file.supersedes {
                    pass.superseded.insert(*s, index_id);
                }
                if skip.contains_key(&index_id) {
                    continue;
                }
                let builder = &mut pass.builder;
                for p in file.packs {
                    if let Some(pos) = builder.pack_pos(&p.id) {
                        if builder.pack_len(pos) != p.len || !builder.same_entries(pos, &p.blobs) {
                            pass.conflicts.push((
                                (builder.copies_added(), 0),
                                "pack_index_conflict",
                                "pack",
                                p.id.to_hex(),
                                format!(
                                    "index {} lists it differently from another index file; run 'cairn repair index'",
                                    index_id.short()
                                ),
                            ));
                        }
                        continue;
                    }
                    builder.add_pack(p.id, p.len, &p.blobs)?;
                }
                for c in file.condemned {
                    pass.condemned.entry(c.pack.id).or_insert(c.pack.blobs);
                }
            }
        }
        Ok(pass)
    }

    /// Lists `data/` (after the index was read, so every pack an index names was durable by then).
    fn list_packs(&mut self) -> Result<Vec<(PackId, u64)>> {
        let mut stored: Vec<(PackId, u64)> = self
            .backend
            .list(FileType::Pack)?
            .into_iter()
            .filter_map(|o| PackId::from_hex(&o.name).ok().map(|id| (id, o.size)))
            .collect();
        stored.sort();
        self.stats.packs_stored = stored.len() as u64;
        self.stats.bytes_stored = stored.iter().map(|p| p.1).sum();
        Ok(stored)
    }

    fn check_pack_presence(&mut self, view: &mut IndexView, stored: &[(PackId, u64)]) {
        let sizes: HashMap<PackId, u64> = stored.iter().copied().collect();
        for pos in 0..view.packs.len() {
            let (id, indexed_len, blob_count) = {
                let r = &view.packs[pos];
                (r.id, r.indexed_len, r.count as usize)
            };
            match sizes.get(&id) {
                None => {
                    let f = self.add(
                        Severity::Damage,
                        "pack_missing",
                        "pack",
                        Some(id.to_hex()),
                        format!(
                            "is missing from data/ ({blob_count} blobs indexed in it are lost unless stored elsewhere)"
                        ),
                        true,
                    );
                    view.packs[pos].whole_problem = Some(f);
                }
                Some(&len) => {
                    view.packs[pos].stored_len = Some(len);
                    if len != indexed_len {
                        let what = if len < indexed_len { "truncated" } else { "longer than indexed" };
                        let f = self.add(
                            Severity::Damage,
                            "pack_size",
                            "pack",
                            Some(id.to_hex()),
                            format!("is {len} bytes, the index says {indexed_len} ({what})"),
                            true,
                        );
                        view.packs[pos].short_problem = Some(f);
                    }
                }
            }
        }
        let unindexed: Vec<&(PackId, u64)> =
            stored.iter().filter(|(id, _)| !view.by_pack.contains_key(id) && !view.condemned.contains(id)).collect();
        self.stats.packs_unindexed = unindexed.len() as u64;
        if !unindexed.is_empty() {
            let bytes: u64 = unindexed.iter().map(|p| p.1).sum();
            let i = self.add(
                Severity::Notice,
                "packs_unindexed",
                "repository",
                None,
                format!(
                    "{} packs ({bytes} bytes) are named by no index: leftovers of an interrupted backup, the work of a \
                     backup running now, or packs of a lost index file; 'cairn repair index' adopts them (prune deletes \
                     them only when the index locates every blob the snapshots use)",
                    unindexed.len()
                ),
                false,
            );
            self.findings[i].related = unindexed.iter().map(|p| p.0.to_hex()).collect();
        }
    }

    /// When snapshots use blobs no index names and packs no index names are stored, those packs
    /// may hold them: the notice about the packs says so, and what to run before anything deletes.
    fn point_missing_blobs_to_unindexed_packs(&mut self) {
        if !self.findings.iter().any(|f| f.code == "blob_missing") {
            return;
        }
        if let Some(notice) = self.findings.iter_mut().find(|f| f.code == "packs_unindexed") {
            notice.message.push_str(
                "; snapshots use blobs that no index names, and these packs may hold them: run 'cairn repair index' \
                 before prune or 'cairn repair snapshots'",
            );
        }
    }

    /// Picks the packs to read, reads them in parallel (one pack per worker in memory) and keeps
    /// what each showed.
    fn read_packs(
        &mut self,
        view: Option<&IndexView>,
        stored: &[(PackId, u64)],
        progress: &dyn Progress,
    ) -> Result<()> {
        let times = match (self.repo, self.opts.subset) {
            (Some(repo), ReadSubset::Percent(_) | ReadSubset::Bytes(_)) => repo.cache().pack_check_times()?,
            _ => HashMap::new(),
        };
        let level = self.opts.level;
        let seed: [u8; 32] = random_bytes();
        let selected = select_packs(stored, self.opts.subset, |id| last_verified(&times, id, level), &seed);
        progress.set_total(selected.iter().map(|p| p.1).sum());
        let key = self.repo.map(|r| r.key());
        let backend = self.backend;
        // One worker more than the cores, so that one waits for the disk while the others check;
        // on a remote store the hinted reads below wait in the background instead, and a worker
        // more would only hold one more pack in memory.
        let waiting_worker = usize::from(matches!(backend.location(), Location::Local(_)));
        let threads = rayon::current_num_threads() + waiting_worker;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("cairn-check-{i}"))
            .build()
            .map_err(|e| Error::new(ErrorKind::Io, format!("starting the check threads: {e}")))?;
        // Packs are taken in order (par_bridge), and the ones a few places ahead are hinted: on a
        // remote store their GETs run while the workers check the packs before them.
        let ahead = backend.read_ahead();
        let hint = |i: usize| {
            if let Some(&(id, len)) = selected.get(i) {
                backend.will_read_object(FileType::Pack, &id.to_hex(), len);
            }
        };
        (0..ahead).for_each(hint);
        let mut outcomes: Vec<(usize, Result<PackOutcome>)> = pool.install(|| {
            selected
                .iter()
                .enumerate()
                .par_bridge()
                .map(|(i, &(id, len))| {
                    hint(i + ahead);
                    // What the index lists is compared with the pack only when its blobs are opened.
                    let indexed = match view.and_then(|v| v.by_pack.get(&id).map(|&p| (v, p))) {
                        Some((v, p)) if level == CheckLevel::Data => v.pack_entries(p).map(Some),
                        _ => Ok(None),
                    };
                    let out = indexed.and_then(|indexed| {
                        read_one_pack(backend, key.filter(|_| level == CheckLevel::Data), id, len, indexed.as_deref())
                    });
                    progress.add_bytes(len);
                    (i, out)
                })
                .collect()
        });
        outcomes.sort_unstable_by_key(|(i, _)| *i);
        let outcomes = outcomes.into_iter().map(|(_, o)| o);
        for o in outcomes {
            let o = o?;
            self.stats.packs_read += 1;
            self.stats.bytes_read += o.len;
            self.stats.blobs_read += o.blobs_read;
            self.outcomes.push(o);
        }
        if let Some(repo) = self.repo.filter(|_| self.opts.remember) {
            let whole: Vec<PackId> = self.outcomes.iter().filter(|o| o.whole()).map(|o| o.id).collect();
            let present: HashSet<PackId> = stored.iter().map(|p| p.0).collect();
            repo.cache().record_pack_checks(
                &whole,
                level == CheckLevel::Data,
                crate::commands::backup::now_ns(),
                &present,
            )?;
        }
        if view.is_none() {
            // Without the key there is nothing to attribute: report what reading found.
            let outcomes = std::mem::take(&mut self.outcomes);
            for o in &outcomes {
                self.report_outcome(o, None);
            }
        }
        Ok(())
    }

    /// Turns what reading found into findings, and marks the copies it made unusable.
    fn apply_read_outcomes(&mut self, view: &mut IndexView) {
        let outcomes = std::mem::take(&mut self.outcomes);
        for o in &outcomes {
            self.report_outcome(o, Some(view));
        }
    }

    fn report_outcome(&mut self, o: &PackOutcome, view: Option<&mut IndexView>) {
        let pos = view.as_ref().and_then(|v| v.by_pack.get(&o.id).copied());
        let indexed = pos.is_some();
        let note = if view.is_some() && !indexed { " (the pack is named by no live index)" } else { "" };
        let pack_hex = o.id.to_hex();
        if o.vanished {
            self.add(
                Severity::Notice,
                "pack_vanished",
                "pack",
                Some(pack_hex),
                "disappeared while check ran (a prune deleted it?)".to_owned(),
                false,
            );
            return;
        }
        if !o.hash_ok {
            let detail = if self.opts.level == CheckLevel::Data && o.bad_blobs.is_empty() && self.repo.is_some() {
                "; every blob in it still authenticates, the damage is outside the blobs".to_owned()
            } else {
                String::new()
            };
            let f = self.add(
                Severity::Damage,
                "pack_hash",
                "pack",
                Some(pack_hex.clone()),
                format!("content does not match its name (the file is damaged){detail}{note}"),
                indexed && self.opts.level == CheckLevel::Hashes,
            );
            if self.opts.level == CheckLevel::Hashes
                && let (Some(v), Some(p)) = (view, pos)
            {
                v.packs[p as usize].whole_problem.get_or_insert(f);
            }
        }
        for (entry, why) in &o.bad_blobs {
            let f = self.add_once(
                format!("blob {} in {}", entry.id, o.id),
                Severity::Damage,
                "blob_damaged",
                "pack",
                Some(pack_hex.clone()),
                || format!("{} blob {} {why}{note}", kind_name(entry.kind), entry.id.short()),
                indexed,
            );
            if let Some(p) = pos {
                self.bad_copies.insert((entry.id, p), f);
            }
        }
        if let Some(h) = &o.header_problem {
            self.add(
                Severity::Damage,
                "pack_header",
                "pack",
                Some(pack_hex.clone()),
                format!("header {h}{note}; its blobs are still found through the index, but 'cairn repair index' would have to salvage them from their frames"),
                false,
            );
        }
        if let Some(d) = &o.index_disagreement {
            self.add(
                Severity::Damage,
                "pack_header_index",
                "pack",
                Some(pack_hex.clone()),
                format!("header disagrees with the index: {d}; run 'cairn repair index'"),
                false,
            );
        }
        if let Some(fr) = &o.frames_problem {
            self.add(Severity::Damage, "pack_frames", "pack", Some(pack_hex), format!("{fr}{note}"), false);
        }
    }

    /// Reads every snapshot file, walks its trees and attributes problems to it.
    fn check_snapshots(&mut self, repo: &Repository, view: &IndexView) -> Result<()> {
        let ids = repo.list_snapshot_ids()?;
        let backend = self.backend;
        let key = repo.key();
        let loaded: Vec<(SnapshotId, Result<Snapshot>)> = ids
            .par_iter()
            .map(|id| {
                let s = backend.read(FileType::Snapshot, &id.to_hex()).and_then(|bytes| {
                    if &object_name(&bytes) != id.as_bytes() {
                        return Err(Error::corrupt("does not match its name (the file is damaged)"));
                    }
                    Snapshot::decode(&bytes, key).map_err(|e| Error::corrupt(format!("does not decode: {e}")))
                });
                (*id, s)
            })
            .collect();
        let mut snapshots = Vec::new();
        for (id, s) in loaded {
            match s {
                Ok(s) => snapshots.push((id, s)),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) if e.kind() == ErrorKind::Corrupt => {
                    let cached = repo
                        .cache()
                        .snapshot_bytes(id.as_bytes())?
                        .is_some_and(|b| &object_name(&b) == id.as_bytes() && Snapshot::decode(&b, key).is_ok());
                    let what = if cached {
                        "the local cache holds an intact copy: 'cairn repair snapshots' writes the file again from it"
                    } else {
                        "it cannot be restored (remove it with 'cairn repair snapshots --forget')"
                    };
                    self.add(
                        Severity::Damage,
                        "snapshot_damaged",
                        "snapshot",
                        Some(id.to_hex()),
                        format!("{e}; {what}"),
                        false,
                    );
                }
                Err(e) => return Err(e),
            }
        }
        snapshots.sort_by(|a, b| a.1.time_ns.cmp(&b.1.time_ns).then(a.0.cmp(&b.0)));
        self.stats.snapshots = snapshots.len() as u64;
        for (id, s) in &snapshots {
            let problems = self.walk_tree(view, s.tree)?;
            for p in problems {
                if let Some(set) = self.affected[p].as_mut() {
                    set.insert(*id);
                }
            }
        }
        Ok(())
    }

    /// Reads every record: its bytes must match its name and decode. A damaged record touches no
    /// snapshot; deleting it loses only the note it held.
    fn check_records(&mut self, repo: &Repository) -> Result<()> {
        let ids = crate::records::list_ids(repo)?;
        let loaded: Vec<(RecordId, Result<crate::records::Record>)> =
            ids.par_iter().map(|id| (*id, crate::records::load(repo, *id))).collect();
        for (id, r) in loaded {
            match r {
                Ok(_) => self.stats.records += 1,
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) if e.kind() == ErrorKind::Corrupt => {
                    let hex = id.to_hex();
                    let full = e.to_string();
                    let message = full
                        .strip_prefix(&format!("records/{hex}"))
                        .map_or(full.as_str(), |rest| rest.trim_start_matches(':').trim_start())
                        .to_owned();
                    self.add(
                        Severity::Damage,
                        "record_damaged",
                        "record",
                        Some(hex),
                        format!("{message}; it holds only a note about an operation: delete the file"),
                        true,
                    );
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The problems reachable from a tree (memoised: trees shared by snapshots are walked once).
    fn walk_tree(&mut self, view: &IndexView, id: TreeId) -> Result<Vec<usize>> {
        if let Some(v) = self.tree_memo.get(&id) {
            return Ok(v.clone());
        }
        // Guards against a cycle, which content addressing makes impossible unless something is badly wrong.
        self.tree_memo.insert(id, Vec::new());
        let mut problems = Vec::new();
        match self.load_tree(view, id)? {
            Err(found) => problems.extend(found),
            Ok(tree) => {
                self.stats.trees += 1;
                for node in tree.nodes() {
                    match &node.kind {
                        NodeKind::File { content } => {
                            for blob in content {
                                self.blob_problems(view, blob, BlobKind::Data, &mut problems)?;
                            }
                        }
                        NodeKind::Dir { subtree } => problems.extend(self.walk_tree(view, *subtree)?),
                        _ => {}
                    }
                }
            }
        }
        problems.sort_unstable();
        problems.dedup();
        self.tree_memo.insert(id, problems.clone());
        Ok(problems)
    }

    /// Loads a tree from the first copy that reads, authenticates and decodes; otherwise returns
    /// the findings that explain why it cannot be loaded.
    fn load_tree(&mut self, view: &IndexView, id: TreeId) -> Result<std::result::Result<Tree, Vec<usize>>> {
        let blob: BlobId = id.into();
        let mut problems = Vec::new();
        let usable = self.blob_problems(view, &blob, BlobKind::Tree, &mut problems)?;
        let key = self.repo.map(|r| r.key()).ok_or_else(|| Error::new(ErrorKind::Bug, "tree walk without key"))?;
        for copy in usable {
            let entry = copy.entry;
            let pack = view.packs[copy.pack as usize].id;
            let sealed = match self.backend.read_range(
                FileType::Pack,
                &pack.to_hex(),
                u64::from(entry.offset),
                u64::from(entry.stored_len),
            ) {
                Ok(s) => s,
                Err(e) if e.kind() == ErrorKind::Io => return Err(e),
                Err(e) => {
                    problems.push(self.bad_copy(view, copy, format!("cannot be read: {e}")));
                    continue;
                }
            };
            let plain = match open_blob(key, entry.kind, entry.id, entry.compression, entry.plain_len, &sealed) {
                Ok(p) => p,
                Err(e) => {
                    problems.push(self.bad_copy(view, copy, describe_blob_error(&e)));
                    continue;
                }
            };
            return Ok(match Tree::decode(&plain) {
                Ok(t) => Ok(t),
                Err(e) => {
                    let f = self.add_once(
                        format!("tree {id}"),
                        Severity::Damage,
                        "tree_invalid",
                        "tree",
                        Some(id.to_hex()),
                        || format!("authenticates but does not decode as a tree: {e}"),
                        true,
                    );
                    Err(vec![f])
                }
            });
        }
        Ok(Err(problems))
    }

    /// Records a copy found damaged while walking trees; returns its finding.
    fn bad_copy(&mut self, view: &IndexView, copy: CopyRef, why: String) -> usize {
        let entry = copy.entry;
        let pack = view.packs[copy.pack as usize].id;
        let f = self.add_once(
            format!("blob {} in {}", entry.id, pack),
            Severity::Damage,
            "blob_damaged",
            "pack",
            Some(pack.to_hex()),
            || format!("{} blob {} {why}", kind_name(entry.kind), entry.id.short()),
            true,
        );
        self.bad_copies.insert((entry.id, copy.pack), f);
        f
    }

    /// Pushes the findings that make blob `id` unusable onto `problems` (nothing when some copy is
    /// usable) and returns the usable copies.
    fn blob_problems(
        &mut self,
        view: &IndexView,
        id: &BlobId,
        want: BlobKind,
        problems: &mut Vec<usize>,
    ) -> Result<Vec<CopyRef>> {
        let mut usable = Vec::new();
        let mut reasons = Vec::new();
        let mut wrong_kind = None;
        for copy in view.copies(id)? {
            let row = &view.packs[copy.pack as usize];
            let entry = &copy.entry;
            if entry.kind != want {
                wrong_kind = Some(entry.kind);
                continue;
            }
            // Every reason a copy is unusable gets the snapshots, so each finding names them.
            let before = reasons.len();
            reasons.extend(row.whole_problem);
            if let (Some(f), Some(len)) = (row.short_problem, row.stored_len)
                && entry.end() > len
            {
                reasons.push(f);
            }
            reasons.extend(self.bad_copies.get(&(*id, copy.pack)).copied());
            if reasons.len() == before {
                usable.push(copy);
            }
        }
        if !usable.is_empty() {
            return Ok(usable);
        }
        if !reasons.is_empty() {
            problems.extend(reasons);
            return Ok(usable);
        }
        let what = kind_name(want);
        let object = if want == BlobKind::Tree { "tree" } else { "blob" };
        let f = if let Some(found) = wrong_kind {
            self.add_once(
                format!("kind {id}"),
                Severity::Damage,
                "blob_wrong_kind",
                object,
                Some(id.to_hex()),
                || format!("is referenced as a {what} blob but indexed as a {} blob", kind_name(found)),
                true,
            )
        } else if let Some(pack) = view.condemned_blobs.get(id) {
            self.add_once(
                format!("condemned {id}"),
                Severity::Damage,
                "blob_condemned_only",
                object,
                Some(id.to_hex()),
                || {
                    format!(
                        "is referenced but only held by pack {}, which a prune condemned (the next prune restores it)",
                        pack.short()
                    )
                },
                true,
            )
        } else {
            self.add_once(
                format!("missing {id}"),
                Severity::Damage,
                "blob_missing",
                object,
                Some(id.to_hex()),
                || "is referenced but in no index".to_owned(),
                true,
            )
        };
        problems.push(f);
        Ok(usable)
    }
}

/// Whether two listings of one pack agree (order-insensitive).
fn same_entries(a: &[BlobEntry], b: &[BlobEntry]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut a: Vec<_> = a.iter().map(entry_key).collect();
    let mut b: Vec<_> = b.iter().map(entry_key).collect();
    a.sort_unstable();
    b.sort_unstable();
    a == b
}

fn entry_key(e: &BlobEntry) -> (u32, BlobId, u8, u8, u32, u32) {
    (e.offset, e.id, e.kind as u8, e.compression as u8, e.stored_len, e.plain_len)
}

/// Drops a leading `index/<hex>: ` from an engine error message, as the finding names the object.
fn strip_object_prefix(message: &str, hex: &str) -> String {
    match message.strip_prefix(&format!("index/{hex}")) {
        Some(rest) => rest.trim_start_matches(':').trim_start().to_owned(),
        None => message.to_owned(),
    }
}

/// When a pack was last found whole at a depth at least `level`.
fn last_verified(times: &HashMap<PackId, PackCheckTimes>, id: &PackId, level: CheckLevel) -> i64 {
    let t = times.get(id).copied().unwrap_or_default();
    match level {
        CheckLevel::Data => t.decrypted_ns,
        _ => t.hashed_ns.max(t.decrypted_ns),
    }
}

/// Chooses the packs a reading check reads, from `stored` (sorted by id).
///
/// Groups depend on the ids only. Percentages and sizes take the packs verified least recently
/// first; among packs never verified (or verified at the same moment) the order is a keyed hash of
/// the id under `seed`, so that without remembered times successive runs still sample the whole
/// repository rather than the same packs.
pub fn select_packs(
    stored: &[(PackId, u64)],
    subset: ReadSubset,
    last_verified: impl Fn(&PackId) -> i64,
    seed: &[u8; 32],
) -> Vec<(PackId, u64)> {
    match subset {
        ReadSubset::All => stored.to_vec(),
        ReadSubset::Group { n, m } => stored.iter().copied().filter(|(id, _)| pack_group(id, m) == n - 1).collect(),
        ReadSubset::Percent(_) | ReadSubset::Bytes(_) => {
            let mut order: Vec<(i64, [u8; 32], (PackId, u64))> = stored
                .iter()
                .map(|p| (last_verified(&p.0), object_name(&[&seed[..], p.0.as_bytes()].concat()), *p))
                .collect();
            order.sort_unstable_by_key(|o| (o.0, o.1));
            let ordered = order.into_iter().map(|o| o.2);
            match subset {
                ReadSubset::Percent(p) => {
                    let count = ((stored.len() as f64) * p / 100.0).ceil() as usize;
                    ordered.take(count.clamp(usize::from(!stored.is_empty()), stored.len())).collect()
                }
                ReadSubset::Bytes(limit) => {
                    let mut total = 0u64;
                    let mut out = Vec::new();
                    for p in ordered {
                        if !out.is_empty() && total.saturating_add(p.1) > limit {
                            break;
                        }
                        total = total.saturating_add(p.1);
                        out.push(p);
                    }
                    out
                }
                _ => unreachable!("matched above"),
            }
        }
    }
}

/// The group (0-based) of a pack among `m`.
fn pack_group(id: &PackId, m: u32) -> u32 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&id.as_bytes()[..8]);
    (u64::from_be_bytes(first) % u64::from(m)) as u32
}

/// Reads one pack and checks it: its hash always; with `key`, also its header, frames and blobs.
/// `indexed` is what the live index says the pack holds (`None` for a pack no index names).
fn read_one_pack(
    backend: &Backend,
    key: Option<&MasterKey>,
    id: PackId,
    len: u64,
    indexed: Option<&[BlobEntry]>,
) -> Result<PackOutcome> {
    thread_local! {
        // One pack buffer per worker, reused: memory stays at one pack per worker and the pages
        // are not faulted in again for every pack.
        static PACK_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    PACK_BUFFER.with_borrow_mut(|buffer| {
        let mut out = PackOutcome { id, len, ..PackOutcome::default() };
        match backend.read_into(FileType::Pack, &id.to_hex(), buffer) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {
                out.vanished = true;
                return Ok(out);
            }
            Err(e) => return Err(e),
        }
        check_pack_bytes(buffer, key, out, indexed)
    })
}

/// The checks of [`read_one_pack`] on a pack's bytes.
fn check_pack_bytes(
    bytes: &[u8],
    key: Option<&MasterKey>,
    mut out: PackOutcome,
    indexed: Option<&[BlobEntry]>,
) -> Result<PackOutcome> {
    let id = out.id;
    out.len = bytes.len() as u64;
    out.hash_ok = &object_name(bytes) == id.as_bytes();
    let Some(key) = key else { return Ok(out) };

    let header = parse_header(bytes, key);
    if let Err(e) = &header {
        out.header_problem = Some(e.clone());
    }
    let to_open: Vec<BlobEntry> = match (indexed, &header) {
        (Some(entries), _) => entries.to_vec(),
        (None, Ok(entries)) => entries.clone(),
        (None, Err(_)) => scan_frames(bytes).unwrap_or_default(),
    };
    for e in &to_open {
        let (start, end) = (e.offset as usize, e.end() as usize);
        let Some(sealed) = bytes.get(start..end) else {
            out.bad_blobs.push((*e, "lies beyond the end of the pack".to_owned()));
            continue;
        };
        match open_blob(key, e.kind, e.id, e.compression, e.plain_len, sealed) {
            Ok(_) => out.blobs_read += 1,
            Err(err) => out.bad_blobs.push((*e, describe_blob_error(&err))),
        }
    }
    if let Ok(header) = &header {
        if let Some(entries) = indexed
            && !same_entries(header, entries)
        {
            let header_keys: HashSet<_> = header.iter().map(entry_key).collect();
            let index_keys: HashSet<_> = entries.iter().map(entry_key).collect();
            out.index_disagreement = Some(format!(
                "{} blobs only in the header, {} only in the index",
                header_keys.difference(&index_keys).count(),
                index_keys.difference(&header_keys).count()
            ));
        }
        match scan_frames(bytes) {
            Ok(frames) if frames == *header => {}
            Ok(frames) => {
                out.frames_problem = Some(format!(
                    "blob frames disagree with the header ({} frames readable, {} header entries); the blobs themselves are checked separately",
                    frames.len(),
                    header.len()
                ))
            }
            Err(e) => out.frames_problem = Some(format!("does not start like a pack: {e}")),
        }
    }
    Ok(out)
}

fn describe_blob_error(e: &cairn_format::FormatError) -> String {
    use cairn_format::FormatError as F;
    match e {
        F::AuthenticationFailed { .. } => "fails authentication (damaged)".to_owned(),
        F::Decompress { .. } => "authenticates but does not decompress to its length".to_owned(),
        F::Invalid { reason, .. } => format!("is invalid: {reason}"),
        other => other.to_string(),
    }
}

/// Opens a whole pack's header from the trailer.
fn parse_header(bytes: &[u8], key: &MasterKey) -> std::result::Result<Vec<BlobEntry>, String> {
    let len = bytes.len();
    if len < TRAILER_LEN {
        return Err("is missing: the pack is shorter than its trailer".to_owned());
    }
    let header_len =
        read_trailer(&bytes[len - TRAILER_LEN..], len as u64).map_err(|e| format!("cannot be found: {e}"))?;
    let start = len - TRAILER_LEN - header_len as usize;
    decode_header(&bytes[start..len - TRAILER_LEN], key, len as u64).map_err(|e| match e {
        cairn_format::FormatError::AuthenticationFailed { .. } => "fails authentication (damaged)".to_owned(),
        other => format!("does not decode: {other}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(b: u8, size: u64) -> (PackId, u64) {
        let mut id = [0u8; 32];
        id[0] = b;
        id[7] = b;
        (PackId::from_bytes(id), size)
    }

    #[test]
    fn subsets_parse() {
        assert_eq!("1/7".parse::<ReadSubset>().ok(), Some(ReadSubset::Group { n: 1, m: 7 }));
        assert_eq!("10%".parse::<ReadSubset>().ok(), Some(ReadSubset::Percent(10.0)));
        assert_eq!("5G".parse::<ReadSubset>().ok(), Some(ReadSubset::Bytes(5 << 30)));
        assert_eq!("1.5GiB".parse::<ReadSubset>().ok(), Some(ReadSubset::Bytes(3 << 29)));
        assert_eq!("500m".parse::<ReadSubset>().ok(), Some(ReadSubset::Bytes(500 << 20)));
        assert_eq!("4096".parse::<ReadSubset>().ok(), Some(ReadSubset::Bytes(4096)));
        for bad in ["0/7", "8/7", "1/0", "0%", "101%", "x", "5Q", "", "-1G"] {
            assert!(bad.parse::<ReadSubset>().is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn groups_partition_the_packs() {
        let stored: Vec<_> = (0..=255u8).map(|b| pack(b, 10)).collect();
        let seed = [0u8; 32];
        let mut seen = HashSet::new();
        for n in 1..=7 {
            for p in select_packs(&stored, ReadSubset::Group { n, m: 7 }, |_| 0, &seed) {
                assert!(seen.insert(p.0), "a pack is in two groups");
            }
        }
        assert_eq!(seen.len(), stored.len());
    }

    #[test]
    fn percent_and_bytes_read_least_recently_verified_first() {
        let stored: Vec<_> = (0..10u8).map(|b| pack(b, 100)).collect();
        let seed = [7u8; 32];
        // Packs 0..5 were verified at time 5; the others never.
        let when = |id: &PackId| if id.as_bytes()[0] < 5 { 5 } else { 0 };
        let half = select_packs(&stored, ReadSubset::Percent(50.0), when, &seed);
        assert_eq!(half.len(), 5);
        assert!(half.iter().all(|p| p.0.as_bytes()[0] >= 5));
        let by_size = select_packs(&stored, ReadSubset::Bytes(250), when, &seed);
        assert_eq!(by_size.len(), 2);
        assert!(by_size.iter().all(|p| p.0.as_bytes()[0] >= 5));
        // A size below one pack still reads one pack; a tiny percentage reads at least one.
        assert_eq!(select_packs(&stored, ReadSubset::Bytes(1), when, &seed).len(), 1);
        assert_eq!(select_packs(&stored, ReadSubset::Percent(0.1), when, &seed).len(), 1);
        assert!(select_packs(&[], ReadSubset::Percent(50.0), when, &seed).is_empty());
    }

    #[test]
    fn successive_percent_runs_cover_everything() {
        let stored: Vec<_> = (0..20u8).map(|b| pack(b, 1)).collect();
        let mut times: HashMap<PackId, i64> = HashMap::new();
        let mut seen = HashSet::new();
        for day in 1..=4 {
            let chosen = select_packs(
                &stored,
                ReadSubset::Percent(25.0),
                |id| times.get(id).copied().unwrap_or(0),
                &[day as u8; 32],
            );
            for p in chosen {
                seen.insert(p.0);
                times.insert(p.0, day);
            }
        }
        assert_eq!(seen.len(), stored.len());
    }
}
