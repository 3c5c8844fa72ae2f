//! `forget`: remove snapshots by id or by a retention policy applied per group.
//!
//! The plan is built first (what `--dry-run` and `--json` show); executing it deletes snapshot
//! files only. Data is reclaimed by `prune`. Removing a snapshot file is safe beside running
//! backups and prunes: a prune that loaded the snapshot earlier merely keeps more than it must.

use std::collections::BTreeMap;

use cairn_format::SnapshotId;
use cairn_format::snapshot::Snapshot;
use serde::Serialize;

use crate::backend::FileType;
use crate::commands::snapshots::SnapshotFilter;
use crate::error::{Error, Result};
use crate::repository::Repository;
use crate::retention::{Candidate, KeepPolicy};

/// Which snapshot fields form a retention group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct GroupBy {
    pub host: bool,
    pub paths: bool,
    pub tags: bool,
}

impl GroupBy {
    /// Parses `host,paths`, `tags`, `` (one group) ...
    pub fn parse(s: &str) -> Result<Self> {
        let mut g = GroupBy::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "host" => g.host = true,
                "paths" | "path" => g.paths = true,
                "tags" | "tag" => g.tags = true,
                other => {
                    return Err(Error::invalid(format!("--group-by: unknown field '{other}' (use host, paths, tags)")));
                }
            }
        }
        Ok(g)
    }
}

/// The identity of a group.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct GroupKey {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

impl GroupKey {
    /// The group `s` belongs to when grouping by `group_by` (paths and tags in sorted order).
    pub fn of(s: &Snapshot, group_by: GroupBy) -> Self {
        let sorted = |v: &Vec<String>| {
            let mut v = v.clone();
            v.sort();
            v
        };
        GroupKey {
            host: group_by.host.then(|| s.host.clone()),
            paths: group_by.paths.then(|| sorted(&s.paths)),
            tags: group_by.tags.then(|| sorted(&s.tags)),
        }
    }
}

/// One snapshot in a plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedSnapshot {
    pub id: SnapshotId,
    pub time_ns: i64,
    pub host: String,
    pub tags: Vec<String>,
    pub paths: Vec<String>,
    /// Why it is kept; empty for removed snapshots.
    pub reasons: Vec<String>,
}

/// The decision for one group.
#[derive(Debug, Clone, Serialize)]
pub struct ForgetGroup {
    pub key: GroupKey,
    pub keep: Vec<PlannedSnapshot>,
    pub remove: Vec<PlannedSnapshot>,
}

/// What forget will do (or did).
#[derive(Debug, Clone, Serialize)]
pub struct ForgetPlan {
    pub groups: Vec<ForgetGroup>,
    /// True when no keep option was given (and no ids): nothing is removed.
    pub policy_empty: bool,
    pub dry_run: bool,
}

impl ForgetPlan {
    /// Every snapshot the plan removes.
    pub fn removals(&self) -> impl Iterator<Item = &PlannedSnapshot> {
        self.groups.iter().flat_map(|g| g.remove.iter())
    }
}

fn planned(id: SnapshotId, s: &Snapshot, reasons: Vec<String>) -> PlannedSnapshot {
    PlannedSnapshot {
        id,
        time_ns: s.time_ns,
        host: s.host.clone(),
        tags: s.tags.clone(),
        paths: s.paths.clone(),
        reasons,
    }
}

/// Builds the plan for a policy over the snapshots passing `filter`, grouped by `group_by`, at
/// time `now_ns` (snapshots after it do not count as the newest).
pub fn plan_policy(
    snapshots: &[(SnapshotId, Snapshot)],
    policy: &KeepPolicy,
    group_by: GroupBy,
    filter: &SnapshotFilter,
    now_ns: i64,
) -> ForgetPlan {
    let mut groups: BTreeMap<GroupKey, Vec<&(SnapshotId, Snapshot)>> = BTreeMap::new();
    for entry in snapshots.iter().filter(|(_, s)| filter.matches(s)) {
        groups.entry(GroupKey::of(&entry.1, group_by)).or_default().push(entry);
    }
    let mut out = Vec::new();
    for (key, members) in groups {
        let candidates: Vec<Candidate<usize>> = members
            .iter()
            .enumerate()
            .map(|(i, (_, s))| Candidate {
                item: i,
                time_ns: s.time_ns,
                utc_offset_s: s.utc_offset_s,
                tags: s.tags.clone(),
            })
            .collect();
        let mut group = ForgetGroup { key, keep: Vec::new(), remove: Vec::new() };
        for d in policy.apply(&candidates, now_ns) {
            let (id, s) = members[d.item];
            if d.keep {
                group.keep.push(planned(*id, s, d.reasons));
            } else {
                group.remove.push(planned(*id, s, Vec::new()));
            }
        }
        out.push(group);
    }
    ForgetPlan { groups: out, policy_empty: policy.is_empty(), dry_run: false }
}

/// Builds the plan that removes the named snapshots (ids or unique prefixes).
pub fn plan_ids(repo: &Repository, snapshots: &[(SnapshotId, Snapshot)], specs: &[String]) -> Result<ForgetPlan> {
    let mut remove = Vec::new();
    for spec in specs {
        let (id, s) = repo.resolve_snapshot(spec, snapshots)?;
        if !remove.iter().any(|p: &PlannedSnapshot| p.id == *id) {
            remove.push(planned(*id, s, Vec::new()));
        }
    }
    Ok(ForgetPlan {
        groups: vec![ForgetGroup { key: GroupKey::default(), keep: Vec::new(), remove }],
        policy_empty: false,
        dry_run: false,
    })
}

/// Deletes the snapshots the plan removes; returns how many were deleted.
pub fn execute(repo: &Repository, plan: &ForgetPlan) -> Result<usize> {
    let mut n = 0;
    for p in plan.removals() {
        repo.backend().delete(FileType::Snapshot, &p.id.to_hex())?;
        n += 1;
    }
    Ok(n)
}
