//! `cairn status`: a monitoring plugin. The first line of output is the one-line status that
//! Nagios, Icinga and their kin show (with performance data after `|`); then one line per group,
//! the groups needing attention first. The exit code is the plugin's: 0 OK, 1 WARNING,
//! 2 CRITICAL, 3 UNKNOWN, also when the repository cannot be read.

use anyhow::{Result, bail};
use cairn_engine::commands::forget::{GroupBy, GroupKey};
use cairn_engine::commands::status::{GroupStatus, State, StatusOptions, StatusReport, parse_age, status};

use super::FilterArgs;
use crate::{GlobalArgs, output};

/// The critical age when none of `--max-age`, `--warn`, `--crit` is given.
const DEFAULT_MAX_AGE: &str = "25h";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A group whose newest snapshot is older than AGE is CRITICAL (same as --crit; default 25h)
    #[arg(long, value_name = "AGE", conflicts_with = "crit")]
    pub max_age: Option<String>,
    /// A group whose newest snapshot is older than AGE is WARNING (e.g. 25h, 1d12h, 90m)
    #[arg(long, value_name = "AGE")]
    pub warn: Option<String>,
    /// A group whose newest snapshot is older than AGE is CRITICAL
    #[arg(long, value_name = "AGE")]
    pub crit: Option<String>,
    /// Group snapshots by these fields: host, paths, tags (as forget does)
    #[arg(long, default_value = "host,paths", value_name = "FIELDS")]
    pub group_by: String,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Print Prometheus text exposition of every group instead (exit 0 unless UNKNOWN)
    #[arg(long)]
    pub prometheus: bool,
    /// Add the label job="NAME" to the --prometheus metrics
    #[arg(long, value_name = "NAME", requires = "prometheus")]
    pub metrics_job: Option<String>,
    /// Measure ages from this time instead of now: `2026-11-22 04:00:00` (local) or RFC 3339
    #[arg(long, value_name = "TIME")]
    pub time: Option<String>,
}

pub fn run(global: &GlobalArgs, args: Args) -> Result<u8> {
    match evaluate(global, &args) {
        Ok(report) if args.prometheus => {
            let text = cairn_engine::metrics::repository_metrics(&report, args.metrics_job.as_deref()).render();
            std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes())?;
            Ok(if report.state == State::Unknown { State::Unknown.code() } else { 0 })
        }
        Ok(report) => print(global, &report),
        Err(e) => {
            // A monitoring system reads standard output and the exit code: an error is UNKNOWN.
            let message = format!("{e:#}").replace('\n', " ");
            if args.prometheus {
                eprintln!("cairn: {message}");
            } else if global.json {
                output::json(&serde_json::json!({ "state": State::Unknown, "error": message }))?;
            } else {
                output::line(&format!("CAIRN UNKNOWN - {message}"))?;
            }
            Ok(State::Unknown.code())
        }
    }
}

fn evaluate(global: &GlobalArgs, args: &Args) -> Result<StatusReport> {
    let age = |v: &Option<String>| v.as_deref().map(parse_age).transpose();
    let warn_s = age(&args.warn)?;
    let mut crit_s = age(&args.crit)?.or(age(&args.max_age)?);
    if warn_s.is_none() && crit_s.is_none() {
        crit_s = Some(parse_age(DEFAULT_MAX_AGE)?);
    }
    if let (Some(w), Some(c)) = (warn_s, crit_s)
        && w > c
    {
        bail!("--warn must not be longer than --crit");
    }
    let now_ns = match &args.time {
        Some(t) => super::backup::parse_time(t)?,
        None => chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX),
    };
    let opts = StatusOptions {
        filter: args.filter.to_filter(),
        group_by: GroupBy::parse(&args.group_by)?,
        warn_s,
        crit_s,
        now_ns,
    };
    let repo = super::open(global)?;
    Ok(status(&repo, &opts)?)
}

fn print(global: &GlobalArgs, report: &StatusReport) -> Result<u8> {
    if global.json {
        output::json(report)?;
        return Ok(report.state.code());
    }
    output::line(&headline(report))?;
    let mut groups: Vec<&GroupStatus> = report.groups.iter().collect();
    // Worst first; within a state, the oldest first.
    groups.sort_by(|a, b| b.state.cmp(&a.state).then(b.age_s.cmp(&a.age_s)));
    for g in groups {
        if global.quiet && g.state == State::Ok {
            continue;
        }
        let limit = match g.state {
            State::Critical => report.crit_s.map(|c| format!(", more than {}", age(c))),
            State::Warning => report.warn_s.map(|w| format!(", more than {}", age(w))),
            _ => None,
        };
        let drill = g.last_drill.as_ref().map(|d| format!("; last drill {} ago", age(d.age_s))).unwrap_or_default();
        output::line(&format!(
            "{}: {}: newest snapshot {} at {} is {} old{}, added {}{drill}",
            g.state.as_str(),
            group_name(&g.group),
            g.short_id,
            output::time(g.time_ns),
            age(g.age_s),
            limit.unwrap_or_default(),
            output::size(g.bytes_added),
        ))?;
    }
    for (what, last) in [("check", &report.last_check), ("restore drill", &report.last_drill)] {
        let line = match last {
            Some(l) => format!(
                "last successful {what}: {} ({} ago) on {}: {}",
                output::time(l.time_ns),
                age(l.age_s),
                l.hostname,
                l.summary
            ),
            None => continue,
        };
        if !global.quiet {
            output::line(&line)?;
        }
    }
    if report.damaged > 0 {
        output::line(&format!("WARNING: {} snapshot file(s) could not be read (run 'cairn check')", report.damaged))?;
    }
    Ok(report.state.code())
}

/// The plugin line: `CAIRN OK - 3 groups, newest 2h ago, oldest 5h ago | groups=3 ...`.
fn headline(r: &StatusReport) -> String {
    let count = |n: usize| if n == 1 { "1 group".to_owned() } else { format!("{n} groups") };
    let summary = match (r.freshest(), r.stalest()) {
        (Some(newest), Some(oldest)) => {
            let stale = r.groups.iter().filter(|g| g.state != State::Ok).count();
            let lead =
                if stale > 0 { format!("{stale} of {} stale", count(r.groups.len())) } else { count(r.groups.len()) };
            format!("{lead}, newest {} ago, oldest {} ago", age(newest.age_s), age(oldest.age_s))
        }
        _ => "no snapshots match".to_owned(),
    };
    let threshold = |v: Option<u64>| v.map(|s| s.to_string()).unwrap_or_default();
    let mut perf = format!("groups={} snapshots={} damaged={}", r.groups.len(), r.snapshots, r.damaged);
    if let Some(oldest) = r.stalest() {
        perf.push_str(&format!(" oldest_age={}s;{};{};0", oldest.age_s, threshold(r.warn_s), threshold(r.crit_s)));
    }
    format!("CAIRN {} - {summary} | {perf}", r.state.as_str())
}

/// `host [db1] paths [/srv, /etc]`.
fn group_name(key: &GroupKey) -> String {
    let mut parts = Vec::new();
    if let Some(h) = &key.host {
        parts.push(format!("host [{h}]"));
    }
    if let Some(p) = &key.paths {
        parts.push(format!("paths [{}]", p.join(", ")));
    }
    if let Some(t) = &key.tags {
        parts.push(format!("tags [{}]", t.join(", ")));
    }
    if parts.is_empty() { "all snapshots".to_owned() } else { parts.join(" ") }
}

/// `2d 3h`, `5h 12m`, `42m`, `30s`.
fn age(s: u64) -> String {
    let (d, h, m) = (s / 86_400, (s / 3600) % 24, (s / 60) % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}
