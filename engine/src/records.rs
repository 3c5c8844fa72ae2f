//! Records of operations: what was checked, drilled or run, when, by whom, and how it ended, kept
//! in the repository under `records/` (spec/records.md) so that every machine that opens the
//! repository sees them.
//!
//! A record names no other object and no object names a record, so records are written and
//! deleted without a lock and are invisible to prune, repair and forget. The writer keeps the
//! newest [`RECORDS_KEPT`] of each kind, host and scope: older ones are deleted only after the new
//! one is durable. This module never prints.

use std::collections::HashSet;

use cairn_format::RecordId;
use cairn_format::record::valid_kind;
use serde::Serialize;

pub use cairn_format::record::Record;

use crate::backend::FileType;
use crate::error::{Error, ErrorKind, Result};
use crate::repository::{Repository, hostname, nonce, username};

/// How many records of one kind, host and scope a writer keeps.
pub const RECORDS_KEPT: usize = 20;

/// A record with its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordEntry {
    pub id: RecordId,
    #[serde(flatten)]
    pub record: Record,
}

/// A new record of this machine and user, ending at `time_ns`.
///
/// `details` should be a JSON object; anything else is stored as `{}`.
pub fn new_record(
    kind: &str,
    scope: &str,
    time_ns: i64,
    duration_ns: u64,
    ok: bool,
    summary: impl Into<String>,
    details: serde_json::Value,
) -> Record {
    let details = if details.is_object() { details.to_string() } else { "{}".to_owned() };
    Record {
        time_ns,
        duration_ns,
        host: hostname(),
        user: username(),
        kind: kind.to_owned(),
        scope: scope.to_owned(),
        ok,
        summary: summary.into(),
        details,
        program_version: format!("cairn {}", crate::VERSION),
    }
}

/// The details of a record as a JSON object (empty when the text is empty or not an object).
pub fn details(record: &Record) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::from_str(&record.details) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    }
}

/// Saves a record, then deletes the records of its kind, host and scope beyond the newest
/// [`RECORDS_KEPT`]. A failure of that clean-up does not fail the save: it is returned beside
/// the id for a warning.
pub fn save(repo: &Repository, record: &Record) -> Result<(RecordId, Option<Error>)> {
    if !valid_kind(&record.kind) {
        return Err(Error::new(
            ErrorKind::Bug,
            format!("record kind '{}' is not 1 to 32 characters of a-z, 0-9, - and _", record.kind),
        ));
    }
    let bytes = record.encode(repo.key(), &nonce());
    let id = RecordId::from_bytes(repo.write_named(FileType::Record, bytes)?);
    // The new record is durable: only now may older ones go.
    let cleanup = trim(repo, record, id).err();
    Ok((id, cleanup))
}

/// Deletes the records of `kept`'s kind, host and scope older than the newest [`RECORDS_KEPT`].
fn trim(repo: &Repository, kept: &Record, kept_id: RecordId) -> Result<()> {
    let (mut same, _) = list(repo)?;
    same.retain(|e| e.record.kind == kept.kind && e.record.host == kept.host && e.record.scope == kept.scope);
    if !same.iter().any(|e| e.id == kept_id) {
        return Ok(());
    }
    // Newest first; equal times by id, so two writers agree on which to keep.
    same.sort_by(|a, b| b.record.time_ns.cmp(&a.record.time_ns).then(a.id.cmp(&b.id)));
    for old in same.iter().skip(RECORDS_KEPT) {
        repo.backend().delete(FileType::Record, &old.id.to_hex())?;
    }
    Ok(())
}

/// Ids of every record present (none in a repository written before records existed).
pub fn list_ids(repo: &Repository) -> Result<Vec<RecordId>> {
    Ok(repo.backend().list(FileType::Record)?.into_iter().filter_map(|o| RecordId::from_hex(&o.name).ok()).collect())
}

/// Loads one record, checking that its bytes match its name.
pub fn load(repo: &Repository, id: RecordId) -> Result<Record> {
    let bytes = repo.read_verified(FileType::Record, id.as_bytes())?;
    Record::decode(&bytes, repo.key()).map_err(|e| Error::format(format!("records/{id}"), e))
}

/// Every record, oldest first. Damaged records are returned as errors beside the rest; records
/// deleted while listing are left out.
pub fn list(repo: &Repository) -> Result<(Vec<RecordEntry>, Vec<Error>)> {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    let mut seen = HashSet::new();
    for id in list_ids(repo)? {
        if !seen.insert(id) {
            continue;
        }
        match load(repo, id) {
            Ok(record) => good.push(RecordEntry { id, record }),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => bad.push(e),
        }
    }
    good.sort_by(|a, b| a.record.time_ns.cmp(&b.record.time_ns).then(a.id.cmp(&b.id)));
    Ok((good, bad))
}

/// Which records a lookup wants; `None` fields match anything.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordQuery<'a> {
    pub kind: &'a str,
    pub host: Option<&'a str>,
    pub scope: Option<&'a str>,
    /// Only successful ones.
    pub ok_only: bool,
}

impl RecordQuery<'_> {
    /// Whether `r` is wanted.
    pub fn matches(&self, r: &Record) -> bool {
        r.kind == self.kind
            && self.host.is_none_or(|h| r.host == h)
            && self.scope.is_none_or(|s| r.scope == s)
            && (!self.ok_only || r.ok)
    }

    /// The newest wanted entry of `entries`.
    pub fn newest<'e>(&self, entries: &'e [RecordEntry]) -> Option<&'e RecordEntry> {
        entries
            .iter()
            .filter(|e| self.matches(&e.record))
            .max_by(|a, b| a.record.time_ns.cmp(&b.record.time_ns).then(b.id.cmp(&a.id)))
    }
}

/// The newest record of `kind` (of `host` when given; successful only when `ok_only`).
/// Damaged records are skipped.
pub fn latest(repo: &Repository, kind: &str, host: Option<&str>, ok_only: bool) -> Result<Option<RecordEntry>> {
    let (entries, _) = list(repo)?;
    Ok(RecordQuery { kind, host, scope: None, ok_only }.newest(&entries).cloned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Location;
    use crate::repository::{InitOptions, OpenOptions};
    use cairn_format::key::KdfParams;

    fn repo(dir: &std::path::Path) -> Repository {
        let init = InitOptions { kdf: KdfParams::INSECURE_FOR_TESTS, ..InitOptions::default() };
        Repository::init(&Location::Local(dir.join("repo")), b"pw", &init, &OpenOptions::default()).expect("init")
    }

    fn at(kind: &str, scope: &str, time_ns: i64, ok: bool) -> Record {
        new_record(kind, scope, time_ns, 5, ok, format!("{kind} at {time_ns}"), serde_json::json!({ "n": time_ns }))
    }

    #[test]
    fn saved_records_are_listed_and_the_latest_found() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let repo = repo(dir.path());
        assert!(latest(&repo, "check", None, false).expect("latest").is_none());
        save(&repo, &at("check", "", 100, true)).expect("save");
        save(&repo, &at("check", "", 200, false)).expect("save");
        save(&repo, &at("drill", "appdb", 300, true)).expect("save");
        let (all, bad) = list(&repo).expect("list");
        assert!(bad.is_empty());
        assert_eq!(all.iter().map(|e| e.record.time_ns).collect::<Vec<_>>(), vec![100, 200, 300]);
        assert_eq!(latest(&repo, "check", None, false).expect("latest").map(|e| e.record.time_ns), Some(200));
        assert_eq!(latest(&repo, "check", None, true).expect("latest").map(|e| e.record.time_ns), Some(100));
        assert_eq!(latest(&repo, "check", Some("elsewhere"), false).expect("latest"), None);
        let drill = latest(&repo, "drill", Some(&hostname()), true).expect("latest").expect("a drill");
        assert_eq!(details(&drill.record)["n"], 300);
    }

    #[test]
    fn only_the_newest_of_a_kind_host_and_scope_are_kept() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let repo = repo(dir.path());
        save(&repo, &at("run", "other/job", 1, true)).expect("save");
        for t in 0..(RECORDS_KEPT as i64 + 3) {
            save(&repo, &at("run", "p/job", 1000 + t, true)).expect("save");
        }
        let (all, _) = list(&repo).expect("list");
        let ours: Vec<i64> = all.iter().filter(|e| e.record.scope == "p/job").map(|e| e.record.time_ns).collect();
        assert_eq!(ours.len(), RECORDS_KEPT);
        assert_eq!(ours[0], 1003, "the oldest three went");
        assert!(all.iter().any(|e| e.record.scope == "other/job"), "another scope is not trimmed");
    }

    #[test]
    fn a_repository_without_a_records_folder_reads_as_empty_and_gets_one() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temporary folder");
        let repo = repo(dir.path());
        let folder = dir.path().join("repo/records");
        std::fs::remove_dir(&folder).expect("an older repository has no records folder");
        assert!(list(&repo).expect("list").0.is_empty());
        save(&repo, &at("check", "", 1, true)).expect("save into a new folder");
        let mode = std::fs::metadata(&folder).expect("folder").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert_eq!(list(&repo).expect("list").0.len(), 1);
    }

    #[test]
    fn a_damaged_record_is_reported_beside_the_others() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let repo = repo(dir.path());
        let (id, _) = save(&repo, &at("check", "", 1, true)).expect("save");
        save(&repo, &at("check", "", 2, true)).expect("save");
        let path = dir.path().join("repo/records").join(id.to_hex());
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[20] ^= 1;
        std::fs::write(&path, bytes).expect("write");
        let (good, bad) = list(&repo).expect("list");
        assert_eq!(good.len(), 1);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].kind(), ErrorKind::Corrupt);
    }
}
