//! `status`: how fresh each backup group is, judged against warning and critical ages in the
//! way monitoring plugins (Nagios, Icinga) judge a service.
//!
//! Groups are formed exactly as `forget` forms them ([`GroupKey::of`]), so "the group is stale"
//! and "the group's retention" speak of the same snapshots. The evaluation is a pure function of
//! the snapshots and an injected clock; nothing here prints or writes.

use std::collections::BTreeMap;

use cairn_format::SnapshotId;
use cairn_format::snapshot::Snapshot;
use serde::Serialize;

use crate::commands::forget::{GroupBy, GroupKey};
use crate::commands::snapshots::SnapshotFilter;
use crate::error::{Error, Result};
use crate::records::{RecordEntry, RecordQuery};
use crate::repository::Repository;

const NS_PER_S: i64 = 1_000_000_000;

/// A monitoring state; its number is the plugin exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum State {
    Ok,
    Warning,
    Critical,
    Unknown,
}

impl State {
    /// The Nagios/Icinga plugin exit code: 0, 1, 2 or 3.
    pub fn code(self) -> u8 {
        match self {
            State::Ok => 0,
            State::Warning => 1,
            State::Critical => 2,
            State::Unknown => 3,
        }
    }

    /// `OK`, `WARNING`, `CRITICAL` or `UNKNOWN`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Ok => "OK",
            State::Warning => "WARNING",
            State::Critical => "CRITICAL",
            State::Unknown => "UNKNOWN",
        }
    }
}

/// Parses an age such as `25h`, `1d12h`, `90m` or `3600s`: numbers followed by `w` (weeks),
/// `d` (days), `h` (hours), `m` (minutes) or `s` (seconds); a plain number is seconds. Ages are
/// fixed lengths of time, unlike retention durations, where `m` is a calendar month.
pub fn parse_age(s: &str) -> Result<u64> {
    let bad = |why: &str| Error::invalid(format!("age '{s}': {why} (e.g. 25h, 1d12h, 90m)"));
    if s.is_empty() {
        return Err(bad("empty"));
    }
    if let Ok(n) = s.parse::<u64>() {
        return Ok(n);
    }
    let mut total: u64 = 0;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().map_err(|_| bad(&format!("a number must come before '{c}'")))?;
        num.clear();
        let unit = match c {
            'w' => 7 * 86_400,
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            _ => return Err(bad(&format!("unknown unit '{c}' (use w, d, h, m, s)"))),
        };
        total = n.checked_mul(unit).and_then(|v| total.checked_add(v)).ok_or_else(|| bad("too large"))?;
    }
    if !num.is_empty() {
        return Err(bad("the last number has no unit"));
    }
    Ok(total)
}

/// What `status` looks at and how it judges.
#[derive(Debug, Clone)]
pub struct StatusOptions {
    pub filter: SnapshotFilter,
    pub group_by: GroupBy,
    /// A group whose newest snapshot is older than this many seconds is WARNING.
    pub warn_s: Option<u64>,
    /// A group whose newest snapshot is older than this many seconds is CRITICAL.
    pub crit_s: Option<u64>,
    /// The clock, Unix nanoseconds.
    pub now_ns: i64,
}

/// The state of one group, from its newest snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct GroupStatus {
    pub state: State,
    pub group: GroupKey,
    /// Snapshots in the group.
    pub snapshots: usize,
    /// The newest snapshot.
    pub id: SnapshotId,
    pub short_id: String,
    /// Its time, RFC 3339 in UTC.
    pub time: String,
    pub time_ns: i64,
    /// Seconds from its time to now (0 for a snapshot stamped in the future).
    pub age_s: u64,
    /// Plaintext bytes that snapshot added to the repository.
    pub bytes_added: u64,
    /// Stored (compressed, sealed) bytes that snapshot added.
    pub bytes_added_stored: u64,
    /// Entries that could not be read when that snapshot was taken.
    pub warnings: u64,
    /// The last successful check of the repository (every group shares it: a check covers the
    /// whole repository).
    pub last_check: Option<LastSuccess>,
    /// The last successful restore drill of one of this group's snapshots or paths.
    pub last_drill: Option<LastSuccess>,
}

/// The newest successful record of a kind (spec/records.md), as `status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LastSuccess {
    /// RFC 3339 in UTC.
    pub time: String,
    pub time_ns: i64,
    /// Seconds from then to now.
    pub age_s: u64,
    pub hostname: String,
    pub scope: String,
    pub summary: String,
}

impl LastSuccess {
    fn of(e: &RecordEntry, now_ns: i64) -> Self {
        let r = &e.record;
        LastSuccess {
            time: rfc3339(r.time_ns),
            time_ns: r.time_ns,
            age_s: (now_ns.saturating_sub(r.time_ns) / NS_PER_S).max(0) as u64,
            hostname: r.host.clone(),
            scope: r.scope.clone(),
            summary: r.summary.clone(),
        }
    }
}

/// What `status` found.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// The worst state of any group; UNKNOWN when no snapshot matched.
    pub state: State,
    /// The clock the ages were measured against, RFC 3339 in UTC.
    pub now: String,
    pub warn_s: Option<u64>,
    pub crit_s: Option<u64>,
    /// Snapshots that passed the filter, over all groups.
    pub snapshots: usize,
    /// Snapshot files that could not be read (they make the state at least WARNING).
    pub damaged: usize,
    /// Groups in their sorted order.
    pub groups: Vec<GroupStatus>,
    /// The last successful check of the repository, from its records.
    pub last_check: Option<LastSuccess>,
    /// The last successful restore drill of any snapshot, from the records.
    pub last_drill: Option<LastSuccess>,
}

impl StatusReport {
    /// The group with the youngest newest snapshot.
    pub fn freshest(&self) -> Option<&GroupStatus> {
        self.groups.iter().min_by_key(|g| g.age_s)
    }

    /// The group with the oldest newest snapshot.
    pub fn stalest(&self) -> Option<&GroupStatus> {
        self.groups.iter().max_by_key(|g| g.age_s)
    }
}

/// RFC 3339 in UTC, to the second.
pub fn rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp(ns.div_euclid(NS_PER_S), ns.rem_euclid(NS_PER_S) as u32)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| ns.to_string())
}

/// Judges the snapshots passing the filter, per group; `damaged` is the count of unreadable
/// snapshot files seen while listing them.
pub fn evaluate(snapshots: &[(SnapshotId, Snapshot)], damaged: usize, opts: &StatusOptions) -> StatusReport {
    let mut newest: BTreeMap<GroupKey, (usize, &(SnapshotId, Snapshot))> = BTreeMap::new();
    let mut total = 0;
    for entry in snapshots.iter().filter(|(_, s)| opts.filter.matches(s)) {
        total += 1;
        let slot = newest.entry(GroupKey::of(&entry.1, opts.group_by)).or_insert((0, entry));
        slot.0 += 1;
        if entry.1.time_ns > slot.1.1.time_ns {
            slot.1 = entry;
        }
    }
    let groups: Vec<GroupStatus> = newest
        .into_iter()
        .map(|(group, (count, (id, s)))| {
            let age_s = (opts.now_ns.saturating_sub(s.time_ns) / NS_PER_S).max(0) as u64;
            let state = if opts.crit_s.is_some_and(|c| age_s > c) {
                State::Critical
            } else if opts.warn_s.is_some_and(|w| age_s > w) {
                State::Warning
            } else {
                State::Ok
            };
            GroupStatus {
                state,
                group,
                snapshots: count,
                id: *id,
                short_id: id.short(),
                time: rfc3339(s.time_ns),
                time_ns: s.time_ns,
                age_s,
                bytes_added: s.summary.bytes_added_plain,
                bytes_added_stored: s.summary.bytes_added_stored,
                warnings: s.summary.warnings,
                last_check: None,
                last_drill: None,
            }
        })
        .collect();
    let mut state = groups.iter().map(|g| g.state).max().unwrap_or(State::Unknown);
    if damaged > 0 && state < State::Warning {
        state = State::Warning;
    }
    StatusReport {
        state,
        now: rfc3339(opts.now_ns),
        warn_s: opts.warn_s,
        crit_s: opts.crit_s,
        snapshots: total,
        damaged,
        groups,
        last_check: None,
        last_drill: None,
    }
}

/// Adds the last successful check and drill from the records. A drill belongs to a group when
/// its details name one of the group's snapshots (`snapshot_id` or, as `pg drill` writes it,
/// `snapshot`: full hex) or its scope is one of the group's paths or, for a database's snapshots,
/// the database's name (the drill of a snapshot that retention has since removed still counts).
pub fn attach_records(
    report: &mut StatusReport,
    snapshots: &[(SnapshotId, Snapshot)],
    records: &[RecordEntry],
    opts: &StatusOptions,
) {
    let ok = |kind| RecordQuery { kind, host: None, scope: None, ok_only: true };
    report.last_check = ok("check").newest(records).map(|e| LastSuccess::of(e, opts.now_ns));
    report.last_drill = ok("drill").newest(records).map(|e| LastSuccess::of(e, opts.now_ns));
    for g in &mut report.groups {
        g.last_check = report.last_check.clone();
        let in_group: Vec<&(SnapshotId, Snapshot)> = snapshots
            .iter()
            .filter(|(_, s)| opts.filter.matches(s) && GroupKey::of(s, opts.group_by) == g.group)
            .collect();
        let members: std::collections::HashSet<String> = in_group.iter().map(|(id, _)| id.to_hex()).collect();
        let mut paths = g.group.paths.clone().unwrap_or_default();
        // A database's drill is scoped by the database's name, its snapshots' source detail.
        paths.extend(
            in_group
                .iter()
                .filter(|(_, s)| s.source == cairn_format::snapshot::SourceKind::Postgres)
                .map(|(_, s)| s.source_detail.clone()),
        );
        let drills: Vec<RecordEntry> = records
            .iter()
            .filter(|e| {
                let details = crate::records::details(&e.record);
                let named = ["snapshot_id", "snapshot"]
                    .iter()
                    .filter_map(|k| details.get(*k).and_then(|v| v.as_str()))
                    .any(|id| members.contains(id));
                named || paths.contains(&e.record.scope)
            })
            .cloned()
            .collect();
        g.last_drill = ok("drill").newest(&drills).map(|e| LastSuccess::of(e, opts.now_ns));
    }
}

/// Lists the repository's snapshots and judges them.
pub fn status(repo: &Repository, opts: &StatusOptions) -> Result<StatusReport> {
    let (all, damaged) = repo.load_snapshots()?;
    let mut report = evaluate(&all, damaged.len(), opts);
    // Records only add facts: a repository whose records cannot be listed still has a status.
    let (records, _) = crate::records::list(repo).unwrap_or_default();
    attach_records(&mut report, &all, &records, opts);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_parse_as_fixed_lengths() {
        assert_eq!(parse_age("25h").ok(), Some(25 * 3600));
        assert_eq!(parse_age("1d12h").ok(), Some(36 * 3600));
        assert_eq!(parse_age("90m").ok(), Some(5400));
        assert_eq!(parse_age("2w").ok(), Some(14 * 86_400));
        assert_eq!(parse_age("3600").ok(), Some(3600));
        assert!(parse_age("").is_err());
        assert!(parse_age("5y").is_err());
        assert!(parse_age("12h5").is_err());
        assert!(parse_age("h").is_err());
        assert!(parse_age("99999999999999999999w").is_err());
    }

    fn snapshot(host: &str, path: &str, time_ns: i64) -> Snapshot {
        Snapshot {
            time_ns,
            utc_offset_s: 0,
            host: host.into(),
            user: "u".into(),
            uid: 0,
            gid: 0,
            tags: Vec::new(),
            paths: vec![path.into()],
            source: cairn_format::snapshot::SourceKind::Files,
            source_detail: String::new(),
            tree: cairn_format::TreeId::default(),
            parent: None,
            original: None,
            program_version: "cairn test".into(),
            summary: cairn_format::snapshot::Summary::default(),
        }
    }

    fn entry(n: u8, kind: &str, scope: &str, time_ns: i64, ok: bool, details: serde_json::Value) -> RecordEntry {
        RecordEntry {
            id: cairn_format::RecordId::from_bytes([n; 32]),
            record: crate::records::new_record(kind, scope, time_ns, 1, ok, format!("{kind} {n}"), details),
        }
    }

    #[test]
    fn checks_are_shared_and_drills_belong_to_the_group_they_name() {
        const S: i64 = NS_PER_S;
        let db = SnapshotId::from_bytes([1; 32]);
        let files = SnapshotId::from_bytes([2; 32]);
        let pg = SnapshotId::from_bytes([3; 32]);
        let snapshots = vec![
            (db, snapshot("h", "/db.sql", 100 * S)),
            (files, snapshot("h", "/srv", 100 * S)),
            (pg, snapshot("h", "/pgdb", 100 * S)),
            (
                SnapshotId::from_bytes([4; 32]),
                Snapshot {
                    source: cairn_format::snapshot::SourceKind::Postgres,
                    source_detail: "shop".into(),
                    ..snapshot("h", "/shop", 100 * S)
                },
            ),
        ];
        let opts = StatusOptions {
            filter: SnapshotFilter::default(),
            group_by: GroupBy { host: true, paths: true, tags: false },
            warn_s: None,
            crit_s: Some(3600),
            now_ns: 1000 * S,
        };
        let records = vec![
            entry(1, "check", "", 200 * S, true, serde_json::json!({})),
            entry(2, "check", "", 300 * S, false, serde_json::json!({})),
            entry(3, "drill", "appdb", 400 * S, true, serde_json::json!({ "snapshot_id": db.to_hex() })),
            entry(4, "drill", "/srv", 500 * S, false, serde_json::json!({})),
            entry(6, "drill", "pgdb", 380 * S, true, serde_json::json!({ "snapshot": pg.to_hex() })),
            entry(7, "drill", "shop", 370 * S, true, serde_json::json!({ "snapshot": "ab".repeat(32) })),
            entry(5, "drill", "/srv", 350 * S, true, serde_json::json!({})),
        ];
        let mut report = evaluate(&snapshots, 0, &opts);
        attach_records(&mut report, &snapshots, &records, &opts);
        let check = report.last_check.as_ref().expect("a successful check");
        assert_eq!((check.time_ns, check.age_s), (200 * S, 800), "the failed check is not the last successful one");
        assert_eq!(report.last_drill.as_ref().map(|d| d.time_ns), Some(400 * S));
        let group = |path: &str| {
            report.groups.iter().find(|g| g.group.paths.as_deref() == Some(&[path.to_owned()][..])).expect("group")
        };
        assert_eq!(group("/db.sql").last_drill.as_ref().map(|d| d.time_ns), Some(400 * S), "named by its snapshot");
        assert_eq!(group("/srv").last_drill.as_ref().map(|d| d.time_ns), Some(350 * S), "by scope; the failed one not");
        assert_eq!(group("/pgdb").last_drill.as_ref().map(|d| d.time_ns), Some(380 * S), "pg drill's `snapshot` key");
        assert_eq!(group("/shop").last_drill.as_ref().map(|d| d.time_ns), Some(370 * S), "by database name");
        assert!(report.groups.iter().all(|g| g.last_check.as_ref().map(|c| c.time_ns) == Some(200 * S)));
    }

    #[test]
    fn states_order_as_exit_codes() {
        assert!(State::Ok < State::Warning && State::Warning < State::Critical && State::Critical < State::Unknown);
        assert_eq!([State::Ok, State::Warning, State::Critical, State::Unknown].map(State::code), [0, 1, 2, 3]);
    }
}
