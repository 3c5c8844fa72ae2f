//! `cairn forget`.

use anyhow::{Result, bail};
use cairn_engine::commands::forget::{self, ForgetPlan, GroupBy, PlannedSnapshot};
use cairn_engine::retention::{Duration, KeepPolicy};
use cairn_format::SnapshotId;
use cairn_format::snapshot::Snapshot;

use super::FilterArgs;
use crate::{GlobalArgs, exit, output};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Snapshots to remove (ids or unique prefixes); alternative to a policy
    #[arg(value_name = "SNAPSHOT")]
    pub ids: Vec<String>,
    /// Keep the last N snapshots (-1: all)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub keep_last: Option<i64>,
    /// Keep the last N hourly snapshots (-1: all)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub keep_hourly: Option<i64>,
    /// Keep the last N daily snapshots (-1: all)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub keep_daily: Option<i64>,
    /// Keep the last N weekly snapshots (-1: all)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub keep_weekly: Option<i64>,
    /// Keep the last N monthly snapshots (-1: all)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub keep_monthly: Option<i64>,
    /// Keep the last N yearly snapshots (-1: all)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub keep_yearly: Option<i64>,
    /// Keep snapshots newer than DURATION before the newest one (e.g. 2d3h, 1y6m)
    #[arg(long, value_name = "DURATION")]
    pub keep_within: Option<String>,
    /// Keep one snapshot per hour within DURATION of the newest
    #[arg(long, value_name = "DURATION")]
    pub keep_within_hourly: Option<String>,
    /// Keep one snapshot per day within DURATION of the newest
    #[arg(long, value_name = "DURATION")]
    pub keep_within_daily: Option<String>,
    /// Keep one snapshot per week within DURATION of the newest
    #[arg(long, value_name = "DURATION")]
    pub keep_within_weekly: Option<String>,
    /// Keep one snapshot per month within DURATION of the newest
    #[arg(long, value_name = "DURATION")]
    pub keep_within_monthly: Option<String>,
    /// Keep one snapshot per year within DURATION of the newest
    #[arg(long, value_name = "DURATION")]
    pub keep_within_yearly: Option<String>,
    /// Keep snapshots with these tags (repeatable; `a,b` needs both)
    #[arg(long, value_name = "TAGS")]
    pub keep_tag: Vec<String>,
    /// Apply the policy per group of these fields: host, paths, tags (empty: one group)
    #[arg(long, default_value = "host,paths", value_name = "FIELDS")]
    pub group_by: String,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Show what would be removed without removing anything
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Run prune afterwards
    #[arg(long)]
    pub prune: bool,
    #[command(flatten)]
    pub prune_args: super::prune::PruneArgs,
    #[command(flatten)]
    pub metrics: crate::metrics::MetricsArgs,
}

fn duration(v: &Option<String>) -> Result<Duration> {
    Ok(match v {
        Some(s) => Duration::parse(s)?,
        None => Duration::default(),
    })
}

/// The keep policy the options describe.
pub fn policy(a: &Args) -> Result<KeepPolicy> {
    for (name, v) in [
        ("--keep-last", a.keep_last),
        ("--keep-hourly", a.keep_hourly),
        ("--keep-daily", a.keep_daily),
        ("--keep-weekly", a.keep_weekly),
        ("--keep-monthly", a.keep_monthly),
        ("--keep-yearly", a.keep_yearly),
    ] {
        if v.is_some_and(|n| n < -1) {
            bail!("{name} takes a count, or -1 for unlimited");
        }
    }
    Ok(KeepPolicy {
        last: a.keep_last.unwrap_or(0),
        hourly: a.keep_hourly.unwrap_or(0),
        daily: a.keep_daily.unwrap_or(0),
        weekly: a.keep_weekly.unwrap_or(0),
        monthly: a.keep_monthly.unwrap_or(0),
        yearly: a.keep_yearly.unwrap_or(0),
        within: duration(&a.keep_within)?,
        within_hourly: duration(&a.keep_within_hourly)?,
        within_daily: duration(&a.keep_within_daily)?,
        within_weekly: duration(&a.keep_within_weekly)?,
        within_monthly: duration(&a.keep_within_monthly)?,
        within_yearly: duration(&a.keep_within_yearly)?,
        tags: a.keep_tag.iter().map(|t| t.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect()).collect(),
    })
}

fn print_plan(plan: &ForgetPlan) -> Result<()> {
    if plan.policy_empty {
        output::line("no keep policy given (--keep-*): nothing is removed")?;
        return Ok(());
    }
    for g in &plan.groups {
        let mut key = Vec::new();
        if let Some(h) = &g.key.host {
            key.push(format!("host [{h}]"));
        }
        if let Some(p) = &g.key.paths {
            key.push(format!("paths [{}]", p.join(", ")));
        }
        if let Some(t) = &g.key.tags {
            key.push(format!("tags [{}]", t.join(", ")));
        }
        if !key.is_empty() {
            output::line(&format!("snapshots for ({}):", key.join(", ")))?;
        }
        for (verb, list) in [("keep", &g.keep), ("remove", &g.remove)] {
            if list.is_empty() {
                continue;
            }
            output::line(&format!("{verb} {}:", output::count(list.len() as u64, "snapshot", "snapshots")))?;
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|s| {
                    vec![
                        s.id.short(),
                        output::time(s.time_ns),
                        s.host.clone(),
                        s.tags.join(","),
                        s.reasons.join(", "),
                        s.paths.join(" "),
                    ]
                })
                .collect();
            output::table(&["ID", "Time", "Host", "Tags", "Reasons", "Paths"], &rows)?;
            output::line("")?;
        }
    }
    Ok(())
}

/// restic's `forget --json`: an array with one object per group (`host`, `tags`, `paths` of the
/// group key, `keep` and `remove` as full snapshots, `reasons` with each kept snapshot's
/// `matches`). Kept snapshots also carry cairn's `reasons` list.
fn plan_json(plan: &ForgetPlan, snapshots: &[(SnapshotId, Snapshot)]) -> Result<serde_json::Value> {
    let full = |p: &PlannedSnapshot| -> Result<serde_json::Value> {
        let mut v = match snapshots.iter().find(|(id, _)| *id == p.id) {
            Some((id, s)) => output::snapshot_json(id, s)?,
            None => serde_json::to_value(p)?,
        };
        v["reasons"] = serde_json::to_value(&p.reasons)?;
        Ok(v)
    };
    let mut groups = Vec::new();
    for g in &plan.groups {
        let keep = g.keep.iter().map(full).collect::<Result<Vec<_>>>()?;
        let remove = g.remove.iter().map(full).collect::<Result<Vec<_>>>()?;
        let reasons: Vec<serde_json::Value> = keep
            .iter()
            .zip(&g.keep)
            .map(|(snapshot, p)| serde_json::json!({ "snapshot": snapshot, "matches": p.reasons, "counters": {} }))
            .collect();
        groups.push(serde_json::json!({
            "tags": g.key.tags,
            "host": g.key.host.clone().unwrap_or_default(),
            "paths": g.key.paths,
            "keep": keep,
            "remove": if remove.is_empty() { serde_json::Value::Null } else { remove.into() },
            "reasons": reasons,
        }));
    }
    Ok(groups.into())
}

pub fn run(global: &GlobalArgs, args: Args) -> Result<u8> {
    let started = std::time::Instant::now();
    let result = forget(global, &args);
    if !args.dry_run {
        args.metrics.write("forget", result.is_ok(), started, None);
    }
    result
}

fn forget(global: &GlobalArgs, args: &Args) -> Result<u8> {
    let policy = policy(args)?;
    if !args.ids.is_empty() && !policy.is_empty() {
        bail!("give either snapshot ids or --keep-* options, not both");
    }
    let group_by = GroupBy::parse(&args.group_by)?;
    let repo = super::open(global)?;
    let (snapshots, damaged) = repo.load_snapshots()?;
    for d in &damaged {
        eprintln!("warning: {d}");
    }
    let mut plan = if args.ids.is_empty() {
        forget::plan_policy(
            &snapshots,
            &policy,
            group_by,
            &args.filter.to_filter(),
            cairn_engine::commands::backup::now_ns(),
        )
    } else {
        forget::plan_ids(&repo, &snapshots, &args.ids)?
    };
    plan.dry_run = args.dry_run;
    if !global.json && !global.quiet {
        print_plan(&plan)?;
    }
    let removed = if args.dry_run { 0 } else { forget::execute(&repo, &plan)? };
    let prune_report = if args.prune && !plan.policy_empty {
        Some(super::prune::execute(global, &repo, &args.prune_args, args.dry_run)?)
    } else {
        None
    };
    if global.json {
        output::json(&plan_json(&plan, &snapshots)?)?;
        // As restic, the groups come first; the prune report (cairn's shape) is a second line.
        if let Some(report) = prune_report {
            output::json(&report)?;
        }
    } else if !global.quiet {
        if args.dry_run {
            output::line(&format!(
                "dry run: would remove {}",
                output::count(plan.removals().count() as u64, "snapshot", "snapshots")
            ))?;
        } else {
            output::line(&format!("removed {}", output::count(removed as u64, "snapshot", "snapshots")))?;
        }
    }
    Ok(exit::OK)
}
