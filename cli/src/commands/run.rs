//! `cairn run`: the jobs of a profile, one after another. For each job: its `before` hook, a
//! backup of its paths or command, its retention (`forget` options), then its `after` hook (or
//! `on-error` when a step failed). Then, for the whole repository, a prune and a check when they
//! are due (`every` in `[prune]`/`[check]`, measured from the records of the last successful
//! ones, spec/records.md). One summary, one exit code; each hook fires at most once.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use cairn_engine::Repository;
use cairn_engine::commands::backup::{BackupReport, backup, now_ns};
use cairn_engine::commands::check::{CheckReport, ReadSubset, check};
use cairn_engine::commands::forget::{self as forget_plan, GroupBy};
use cairn_engine::commands::pg_backup::pg_backup;
use cairn_engine::commands::pg_drill::{PgDrillOptions, PgDrillReport, Scratch, pg_drill};
use cairn_engine::commands::prune::PruneReport;
use cairn_engine::metrics::{Metrics, backup_metrics, base_labels, maintenance_metrics, previous_value, write_atomic};
use cairn_engine::postgres::PgTarget;
use cairn_engine::records::{self, RecordEntry, RecordQuery};
use clap::{CommandFactory, Parser};
use serde::Serialize;

use crate::profile::{Job, JobSource, Profile, Table};
use crate::progress::Bar;
use crate::{Cli, Command, GlobalArgs, exit, log, output};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run only this job (repeatable; default: every job of the profile, in file order)
    #[arg(long = "job", value_name = "NAME")]
    pub jobs: Vec<String>,
    /// Act as if it were this time (snapshot times, retention, what is due): `2026-11-22 04:00:00` or RFC 3339
    #[arg(long, value_name = "TIME")]
    pub time: Option<String>,
    /// Write Prometheus metrics of this run to FILE (atomically; for node_exporter's textfile collector)
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,
}

/// What one job did (the `--json` output has one per job).
#[derive(Debug, Serialize)]
struct JobOutcome {
    job: String,
    ok: bool,
    exit_code: u8,
    /// One line per error; empty when the job succeeded.
    errors: Vec<String>,
    snapshot_id: Option<String>,
    /// Snapshots its retention removed.
    removed: usize,
    backup: Option<BackupReport>,
    /// A pg job's database facts.
    #[serde(skip_serializing_if = "Option::is_none")]
    database: Option<DatabaseOutcome>,
    /// A pg job's drill, when one was due.
    #[serde(skip_serializing_if = "Option::is_none")]
    drill: Option<StepOutcome<PgDrillReport>>,
    duration_ns: u64,
}

/// What a pg job read from its database.
#[derive(Debug, Serialize)]
struct DatabaseOutcome {
    database: String,
    server_version: String,
    snapshot_lsn: String,
    tables: u64,
    rows: u64,
    large_objects: u64,
}

/// What a prune or check of the run did.
#[derive(Debug, Serialize)]
struct StepOutcome<T> {
    ok: bool,
    error: Option<String>,
    report: Option<T>,
}

#[derive(Debug, Serialize)]
struct RunSummary {
    profile: String,
    jobs: Vec<JobOutcome>,
    prune: Option<StepOutcome<PruneReport>>,
    check: Option<StepOutcome<CheckReport>>,
    exit_code: u8,
    duration_ns: u64,
}

/// The environment of a hook: the job's result, never the password.
#[derive(Debug, Default, Clone)]
struct HookEnv {
    profile: String,
    job: String,
    result: Option<(bool, u8)>,
    snapshot: Option<String>,
    error: Option<String>,
}

/// Runs one hook through `sh -c` and logs its output (shown with `-vv`); a non-zero exit is an
/// error naming the hook and its last line on standard error.
fn run_hook(which: &str, command: Option<&String>, env: &HookEnv) -> Result<()> {
    let Some(command) = command else { return Ok(()) };
    let place = if env.job.is_empty() { format!("profile {}", env.profile) } else { format!("job {}", env.job) };
    log::debug(&format!("{place}: {which} hook: sh -c {command}"));
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .env_remove("CAIRN_PASSWORD")
        .env("CAIRN_PROFILE", &env.profile)
        .env("CAIRN_JOB", &env.job)
        .env("CAIRN_HOOK", which);
    if let Some((ok, code)) = env.result {
        cmd.env("CAIRN_RESULT", if ok { "success" } else { "failure" }).env("CAIRN_EXIT_CODE", code.to_string());
    }
    cmd.env("CAIRN_SNAPSHOT_ID", env.snapshot.as_deref().unwrap_or(""));
    cmd.env("CAIRN_ERROR", env.error.as_deref().unwrap_or(""));
    let out = cmd.output().with_context(|| format!("{place}: starting the {which} hook"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in String::from_utf8_lossy(&out.stdout).lines().chain(stderr.lines()) {
        log::debug(&format!("{place}: {which} hook: {line}"));
    }
    if !out.status.success() {
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).map(|l| format!(": {l}")).unwrap_or_default();
        bail!("the {which} hook failed ({}){last}", out.status);
    }
    Ok(())
}

/// Parses `cairn NAME ARGS…` with the command line's own definition.
fn parse_command(name: &str, args: Vec<String>) -> Result<Command> {
    let mut argv = vec!["cairn".to_owned(), name.to_owned()];
    argv.extend(args);
    Cli::try_parse_from(&argv).map(|c| c.command).map_err(|e| {
        let first = e.to_string().lines().next().unwrap_or_default().trim_start_matches("error: ").to_owned();
        anyhow!("{name} options of the profile: {first}")
    })
}

/// The arguments the options in `t` stand for, as options of `cairn NAME`.
fn table_args(profile: &Profile, name: &str, t: &Table) -> Result<Vec<String>> {
    let cli = Cli::command();
    let cmd = cli.find_subcommand(name).with_context(|| format!("no command {name}"))?;
    Ok(crate::profile::args_for(profile, t, cmd, &|_| false)?.into_iter().flat_map(|(_, a)| a).collect())
}

fn command_table(profile: &Profile, name: &str) -> Table {
    profile.commands.get(name).cloned().unwrap_or_default()
}

/// The backup of one job, as `cairn backup` options: the profile's `[backup]`, the job's own
/// options over them, the run's time, then the source.
fn backup_args(profile: &Profile, job: &Job, time: Option<&str>) -> Result<crate::commands::backup::Args> {
    let mut t = command_table(profile, "backup").overridden_by(&job.backup);
    if time.is_some() {
        t.entries.retain(|(k, _)| k != "time");
    }
    let mut args = table_args(profile, "backup", &t)?;
    if let Some(time) = time {
        args.push(format!("--time={time}"));
    }
    match &job.source {
        JobSource::Paths(paths) => args.extend(paths.iter().cloned()),
        JobSource::Command(argv) => {
            args.push("--stdin-from-command".to_owned());
            args.push("--".to_owned());
            args.extend(argv.iter().cloned());
        }
        JobSource::Pg(_) => unreachable!("pg jobs are backed up by pg_backup_args"),
    }
    match parse_command("backup", args)? {
        Command::Backup(a) => Ok(a),
        _ => unreachable!("parsed as backup"),
    }
}

/// The `cairn pg backup` options of a pg job: its own options and its database.
fn pg_backup_args(profile: &Profile, job: &Job, db: Option<&String>) -> Result<crate::commands::pg::BackupArgs> {
    let cli = Cli::command();
    let cmd = crate::profile::pg_command(&cli, "backup");
    let mut args = vec!["backup".to_owned()];
    args.extend(crate::profile::args_for(profile, &job.backup, cmd, &|_| false)?.into_iter().flat_map(|(_, a)| a));
    if let Some(db) = db {
        args.push(format!("--db={db}"));
    }
    match parse_command("pg", args)? {
        Command::Pg(crate::commands::pg::Args { what: crate::commands::pg::What::Backup(a) }) => Ok(a),
        _ => unreachable!("parsed as pg backup"),
    }
}

/// The `cairn pg drill` options of a pg job's drill of `snapshot`: the drill table's options
/// (its scratch server defaults to the job's database server, connecting to its database).
fn pg_drill_options(profile: &Profile, job: &Job, snapshot: &str) -> Result<PgDrillOptions> {
    let drill = job.drill.as_ref().context("the job has no drill")?;
    let cli = Cli::command();
    let cmd = crate::profile::pg_command(&cli, "drill");
    let mut args = vec!["drill".to_owned(), snapshot.to_owned()];
    args.extend(crate::profile::args_for(profile, &drill.options, cmd, &|_| false)?.into_iter().flat_map(|(_, a)| a));
    let a = match parse_command("pg", args)? {
        Command::Pg(crate::commands::pg::Args { what: crate::commands::pg::What::Drill(a) }) => a,
        _ => unreachable!("parsed as pg drill"),
    };
    let scratch = match (a.scratch_cluster, &a.scratch_db, &job.source) {
        (true, _, _) => Scratch::Cluster,
        (false, Some(url), _) => Scratch::Server(Box::new(PgTarget::new(Some(url))?)),
        (false, None, JobSource::Pg(db)) => Scratch::Server(Box::new(PgTarget::new(db.as_deref())?)),
        (false, None, _) => Scratch::Server(Box::new(PgTarget::new(None)?)),
    };
    Ok(PgDrillOptions { scratch, check_sql: a.check_sql, jobs: a.jobs })
}

/// The drill of a pg job's new snapshot, when its last successful drill of `database` is older
/// than the job's `every` (measured by the clock, as drills record the real time).
fn run_drill(
    repo: &Repository,
    profile: &Profile,
    job: &Job,
    database: &str,
    snapshot: &str,
) -> Option<StepOutcome<PgDrillReport>> {
    let drill = job.drill.as_ref()?;
    let entries = match records::list(repo) {
        Ok((entries, _)) => entries,
        Err(e) => {
            log::warn(&format!("job {}: records could not be listed, so the drill counts as due: {e}", job.name));
            Vec::new()
        }
    };
    if !due(&entries, "drill", database, Some(&drill.every), now_ns()) {
        return None;
    }
    log::info(&format!("job {}: drill due, started", job.name));
    let result = pg_drill_options(profile, job, snapshot)
        .and_then(|opts| Ok(pg_drill(repo, snapshot, &Default::default(), &opts)?));
    Some(match result {
        Ok(r) => {
            if let Some(w) = &r.record_warning {
                log::warn(&format!("job {}: {w}", job.name));
            }
            let error =
                (!r.passed).then(|| format!("drill failed: {}", r.problems.first().cloned().unwrap_or_default()));
            StepOutcome { ok: r.passed, error, report: Some(r) }
        }
        Err(e) => StepOutcome { ok: false, error: Some(format!("drill: {}", crate::one_line(&e))), report: None },
    })
}

/// Applies the job's retention to the group of the snapshot it just made (unless the options
/// filter otherwise); returns how many snapshots were removed.
fn apply_retention(profile: &Profile, job: &Job, repo: &Repository, report: &BackupReport, now: i64) -> Result<usize> {
    let t = command_table(profile, "forget").overridden_by(&job.forget);
    if t.entries.is_empty() {
        return Ok(0);
    }
    let args = match parse_command("forget", table_args(profile, "forget", &t)?)? {
        Command::Forget(a) => a,
        _ => unreachable!("parsed as forget"),
    };
    let policy = crate::commands::forget::policy(&args)?;
    if policy.is_empty() {
        return Ok(0);
    }
    let Some(id) = report.snapshot_id else { return Ok(0) };
    let (snapshots, damaged) = repo.load_snapshots()?;
    for d in &damaged {
        log::warn(&d.to_string());
    }
    let mut filter = args.filter.to_filter();
    if filter.hosts.is_empty() && filter.paths.is_empty() && filter.tags.is_empty() {
        let (_, new) = snapshots.iter().find(|(i, _)| *i == id).context("the new snapshot is not listed")?;
        filter.hosts = vec![new.host.clone()];
        filter.paths = new.paths.clone();
    }
    let plan = forget_plan::plan_policy(&snapshots, &policy, GroupBy::parse(&args.group_by)?, &filter, now);
    if args.dry_run {
        return Ok(0);
    }
    Ok(forget_plan::execute(repo, &plan)?)
}

fn run_job(
    global: &GlobalArgs,
    profile: &Profile,
    repo: &Repository,
    job: &Job,
    time: Option<&str>,
    now: i64,
) -> JobOutcome {
    let started = Instant::now();
    let mut env = HookEnv { profile: profile.name.clone(), job: job.name.clone(), ..HookEnv::default() };
    let mut outcome = JobOutcome {
        job: job.name.clone(),
        ok: true,
        exit_code: exit::OK,
        errors: Vec::new(),
        snapshot_id: None,
        removed: 0,
        backup: None,
        database: None,
        drill: None,
        duration_ns: 0,
    };
    log::info(&format!("job {}: started", job.name));
    let steps = (|| -> Result<()> {
        run_hook("before", job.hooks.before.as_ref(), &env)?;
        let bar = Bar::new(false, "backup");
        let report = match &job.source {
            JobSource::Pg(db) => {
                let args = pg_backup_args(profile, job, db.as_ref())?;
                let opts = crate::commands::pg::backup_options(args, time.map(|_| now))?;
                let r = pg_backup(repo, opts, &bar)?;
                outcome.database = Some(DatabaseOutcome {
                    database: r.database,
                    server_version: r.server_version,
                    snapshot_lsn: r.snapshot_lsn,
                    tables: r.tables,
                    rows: r.rows,
                    large_objects: r.large_objects,
                });
                r.backup
            }
            _ => {
                let (opts, _) = crate::commands::backup::options(backup_args(profile, job, time)?)?;
                backup(repo, opts, &bar)?
            }
        };
        outcome.snapshot_id = report.snapshot_id.map(|id| id.to_hex());
        if !report.warnings.is_empty() {
            outcome.exit_code = exit::INCOMPLETE;
        }
        log::info(&format!(
            "job {}: snapshot {} saved",
            job.name,
            report.snapshot_id.map(|i| i.short()).unwrap_or_else(|| "(dry run)".into())
        ));
        let result = apply_retention(profile, job, repo, &report, now);
        outcome.backup = Some(report);
        outcome.removed = result.context("retention")?;
        if outcome.removed > 0 {
            log::info(&format!("job {}: retention removed {} snapshot(s)", job.name, outcome.removed));
        }
        if let (Some(db), Some(id)) = (&outcome.database, &outcome.snapshot_id) {
            outcome.drill = run_drill(repo, profile, job, &db.database, id);
        }
        Ok(())
    })();
    if let Err(e) = steps {
        outcome.ok = false;
        outcome.exit_code = crate::exit_code(&e).max(exit::FATAL);
        outcome.errors.push(crate::one_line(&e));
    }
    if let Some(d) = &outcome.drill
        && !d.ok
    {
        outcome.ok = false;
        outcome.exit_code = outcome.exit_code.max(if d.report.is_some() { exit::DAMAGE } else { exit::FATAL });
        outcome.errors.extend(d.error.clone());
    }
    env.snapshot = outcome.snapshot_id.clone();
    env.result = Some((outcome.ok, outcome.exit_code));
    env.error = outcome.errors.first().cloned();
    let hook = if outcome.ok { ("after", job.hooks.after.as_ref()) } else { ("on-error", job.hooks.on_error.as_ref()) };
    if let Err(e) = run_hook(hook.0, hook.1, &env) {
        outcome.ok = false;
        outcome.exit_code = outcome.exit_code.max(exit::FATAL);
        outcome.errors.push(crate::one_line(&e));
    }
    outcome.duration_ns = started.elapsed().as_nanos() as u64;
    let summary = match (&outcome.snapshot_id, outcome.errors.first()) {
        (_, Some(e)) => format!("failed: {e}"),
        (Some(id), None) => format!("snapshot {} saved, {} removed", &id[..8], outcome.removed),
        (None, None) => "nothing saved (dry run)".to_owned(),
    };
    let record = records::new_record(
        "run",
        &format!("{}/{}", profile.name, job.name),
        now,
        outcome.duration_ns,
        outcome.ok,
        summary,
        serde_json::json!({
            "snapshot_id": outcome.snapshot_id,
            "exit_code": outcome.exit_code,
            "removed": outcome.removed,
            "database": outcome.database.as_ref().map(|d| &d.database),
            "drill_passed": outcome.drill.as_ref().map(|d| d.ok),
        }),
    );
    if let Err(e) = records::save(repo, &record) {
        log::warn(&format!("job {}: its record could not be saved: {e}", job.name));
        if !global.quiet {
            eprintln!("warning: job {}: its record could not be saved: {e}", job.name);
        }
    }
    for e in &outcome.errors {
        log::error(&format!("job {}: {e}", job.name));
    }
    outcome
}

/// Whether a step recorded under `kind` is due: never recorded successfully, or last successful
/// longer ago than `every` less a tenth of it (at most an hour), so that a timer firing a few
/// seconds early does not push the step to the next run.
fn due(entries: &[RecordEntry], kind: &str, scope: &str, every: Option<&(u64, String)>, now: i64) -> bool {
    let Some((every_s, _)) = every else { return false };
    let query = RecordQuery { kind, host: None, scope: Some(scope), ok_only: true };
    match query.newest(entries) {
        None => true,
        Some(last) => {
            let slack = (every_s / 10).min(3600);
            let elapsed_s = (now.saturating_sub(last.record.time_ns) / 1_000_000_000).max(0) as u64;
            elapsed_s + slack >= *every_s
        }
    }
}

fn run_prune(global: &GlobalArgs, profile: &Profile, repo: &Repository, now: i64) -> StepOutcome<PruneReport> {
    let started = Instant::now();
    let result = (|| -> Result<PruneReport> {
        let args = match parse_command("prune", table_args(profile, "prune", &command_table(profile, "prune"))?)? {
            Command::Prune(a) => a,
            _ => unreachable!("parsed as prune"),
        };
        let quiet = GlobalArgs { quiet: true, json: false, ..global.clone() };
        crate::commands::prune::execute(&quiet, repo, &args.prune, args.dry_run)
    })();
    let (ok, summary, details) = match &result {
        Ok(r) => (
            true,
            format!(
                "deleted {} packs ({})",
                r.packs_deleted + r.unindexed_packs_deleted,
                output::size(r.bytes_deleted)
            ),
            serde_json::json!({ "packs_deleted": r.packs_deleted, "bytes_deleted": r.bytes_deleted }),
        ),
        Err(e) => (false, format!("prune failed: {}", crate::one_line(e)), serde_json::json!({})),
    };
    let record =
        records::new_record("prune", &profile.name, now, started.elapsed().as_nanos() as u64, ok, summary, details);
    if let Err(e) = records::save(repo, &record) {
        log::warn(&format!("the prune's record could not be saved: {e}"));
    }
    match result {
        Ok(r) => StepOutcome { ok: true, error: None, report: Some(r) },
        Err(e) => StepOutcome { ok: false, error: Some(crate::one_line(&e)), report: None },
    }
}

/// The check of a run. A subset `n/m` rotates: each run reads the group after the one the last
/// successful check of this profile read, so `m` runs read every pack.
fn run_check(
    global: &GlobalArgs,
    profile: &Profile,
    repo: &Repository,
    entries: &[RecordEntry],
    now: i64,
) -> StepOutcome<CheckReport> {
    let started = Instant::now();
    let opts = (|| -> Result<_> {
        let args = match parse_command("check", table_args(profile, "check", &command_table(profile, "check"))?)? {
            Command::Check(a) => a,
            _ => unreachable!("parsed as check"),
        };
        if args.no_key {
            bail!("'no-key' cannot be used by cairn run (it has the key)");
        }
        let mut opts = crate::commands::check::options(global, &args)?;
        if let ReadSubset::Group { n, m } = opts.subset {
            let query = RecordQuery { kind: "check", host: None, scope: Some(&profile.name), ok_only: true };
            let previous = query.newest(entries).and_then(|e| {
                let subset = records::details(&e.record).get("subset")?.as_str()?.to_owned();
                match subset.parse::<ReadSubset>() {
                    Ok(ReadSubset::Group { n: k, m: same }) if same == m => Some(k),
                    _ => None,
                }
            });
            opts.subset = ReadSubset::Group { n: previous.map_or(n, |k| k % m + 1), m };
        }
        Ok(opts)
    })();
    let report = match opts {
        Ok(opts) => check(repo, &opts, &Bar::new(false, "check")).map_err(anyhow::Error::from),
        Err(e) => Err(e),
    };
    match report {
        Ok(r) => {
            crate::commands::check::save_record(repo, Ok(&r), &profile.name, now, started);
            let ok = r.is_clean();
            let error = (!ok).then(|| {
                let first = r.damage.first().map(|f| f.headline()).unwrap_or_default();
                format!("check found {} problem(s), the first: {first}", r.damage.len())
            });
            StepOutcome { ok, error, report: Some(r) }
        }
        Err(e) => {
            let engine = e.downcast_ref::<cairn_engine::Error>();
            if let Some(engine) = engine {
                crate::commands::check::save_record(repo, Err(engine), &profile.name, now, started);
            }
            StepOutcome { ok: false, error: Some(crate::one_line(&e)), report: None }
        }
    }
}

fn print_summary(global: &GlobalArgs, summary: &RunSummary) -> Result<()> {
    if global.json {
        return output::json(summary);
    }
    // Errors go to standard error, one line each, also with -q.
    for j in &summary.jobs {
        for e in &j.errors {
            eprintln!("cairn: job {}: {e}", j.job);
        }
    }
    for (name, error) in [
        ("prune", summary.prune.as_ref().and_then(|p| p.error.as_ref())),
        ("check", summary.check.as_ref().and_then(|c| c.error.as_ref())),
    ] {
        if let Some(e) = error {
            eprintln!("cairn: {name}: {e}");
        }
    }
    if global.quiet {
        return Ok(());
    }
    for j in &summary.jobs {
        let line = match (&j.backup, j.ok) {
            (Some(b), _) => {
                let s = &b.summary;
                format!(
                    "job {}: snapshot {} saved ({} new, {} changed, {} unchanged files; {} added){}{}",
                    j.job,
                    b.snapshot_id.map(|i| i.short()).unwrap_or_else(|| "-".into()),
                    s.files_new,
                    s.files_changed,
                    s.files_unchanged,
                    output::size(s.bytes_added_plain),
                    match j.removed {
                        0 => String::new(),
                        1 => ", 1 old snapshot removed".to_owned(),
                        n => format!(", {n} old snapshots removed"),
                    },
                    if j.ok { "" } else { "; FAILED afterwards" }
                )
            }
            (None, _) => format!("job {}: FAILED", j.job),
        };
        output::line(&line)?;
        if let Some(d) = &j.database {
            output::line(&format!(
                "job {}: database {} (PostgreSQL {}, LSN {}): {} tables, {} rows, {} large objects",
                j.job, d.database, d.server_version, d.snapshot_lsn, d.tables, d.rows, d.large_objects
            ))?;
        }
        if let Some(r) = j.drill.as_ref().and_then(|d| d.report.as_ref()) {
            output::line(&format!(
                "job {}: drill of snapshot {} {}: {} tables compared, recovery time {}",
                j.job,
                r.snapshot.short(),
                if r.passed { "PASSED" } else { "FAILED" },
                r.tables.len(),
                output::duration(r.recovery_ns)
            ))?;
        }
    }
    if let Some(r) = summary.prune.as_ref().and_then(|p| p.report.as_ref()) {
        output::line(&format!(
            "prune: deleted {} packs ({}), repacked {} blobs",
            r.packs_deleted + r.unindexed_packs_deleted,
            output::size(r.bytes_deleted),
            r.blobs_repacked
        ))?;
    }
    if let Some(c) = &summary.check
        && let Some(r) = &c.report
    {
        let read = match &r.subset {
            Some(s) => format!(", read {} of {} packs (subset {s})", r.stats.packs_read, r.stats.packs_stored),
            None => String::new(),
        };
        let found =
            if r.is_clean() { "no damage found".to_owned() } else { format!("{} problem(s) found", r.damage.len()) };
        output::line(&format!("check: {found}{read}"))?;
    }
    let failed = summary.jobs.iter().filter(|j| !j.ok).count();
    let jobs = if summary.jobs.len() == 1 { "1 job".to_owned() } else { format!("{} jobs", summary.jobs.len()) };
    output::line(&format!(
        "run {}: {jobs}, {} in {}",
        summary.profile,
        if failed == 0 { "all succeeded".to_owned() } else { format!("{failed} failed") },
        output::duration(summary.duration_ns)
    ))
}

/// Backup metrics per job (labelled `job="PROFILE/JOB"`) and the run's own.
fn write_metrics(path: &std::path::Path, profile: &Profile, summary: &RunSummary, started: Instant) -> Result<()> {
    let host = cairn_engine::repository::hostname();
    let finished = now_ns();
    let mut m = Metrics::default();
    for j in &summary.jobs {
        let labels = base_labels(&host, Some(&format!("{}/{}", profile.name, j.job)));
        let report = j.backup.as_ref().filter(|_| j.ok);
        let previous = if report.is_none() { cairn_engine::metrics::previous_success(path, &labels) } else { None };
        m.merge(backup_metrics(&labels, report, finished, previous, None));
    }
    let labels = base_labels(&host, Some(&profile.name));
    let ok = summary.exit_code == exit::OK || summary.exit_code == exit::INCOMPLETE;
    let previous = if ok { None } else { previous_value(path, "cairn_run_last_success_timestamp_seconds", &labels) };
    m.merge(maintenance_metrics("run", &labels, ok, finished, started.elapsed().as_secs_f64(), previous, None));
    let failed = summary.jobs.iter().filter(|j| !j.ok).count();
    m.gauge("cairn_run_failed_jobs", "Jobs of the last run that failed.", &labels, failed as f64);
    Ok(write_atomic(path, &m.render())?)
}

pub fn run(global: &GlobalArgs, profile: Option<&Profile>, args: Args) -> Result<u8> {
    let profile = profile.context("cairn run needs a profile: --profile NAME or --config FILE")?;
    for name in &args.jobs {
        if !profile.jobs.iter().any(|j| &j.name == name) {
            let known: Vec<&str> = profile.jobs.iter().map(|j| j.name.as_str()).collect();
            bail!("profile {} has no job '{name}' (its jobs: {})", profile.name, known.join(", "));
        }
    }
    let jobs: Vec<&Job> = profile.jobs.iter().filter(|j| args.jobs.is_empty() || args.jobs.contains(&j.name)).collect();
    if jobs.is_empty() {
        bail!("profile {} has no jobs: describe one in a [jobs.NAME] table", profile.path.display());
    }
    let now = match &args.time {
        Some(t) => crate::commands::backup::parse_time(t)?,
        None => now_ns(),
    };
    let started = Instant::now();
    let run_env = HookEnv { profile: profile.name.clone(), ..HookEnv::default() };
    let opened = run_hook("before", profile.hooks.before.as_ref(), &run_env).and_then(|()| super::open(global));
    let repo = match opened {
        Ok(repo) => repo,
        Err(e) => {
            // Nothing ran: every job and the run itself failed with this error.
            let code = crate::exit_code(&e).max(exit::FATAL);
            let error = Some(crate::one_line(&e));
            for job in &jobs {
                let env = HookEnv {
                    job: job.name.clone(),
                    result: Some((false, code)),
                    error: error.clone(),
                    ..run_env.clone()
                };
                if let Err(h) = run_hook("on-error", job.hooks.on_error.as_ref(), &env) {
                    eprintln!("warning: job {}: {}", job.name, crate::one_line(&h));
                }
            }
            let env = HookEnv { result: Some((false, code)), error, ..run_env.clone() };
            if let Err(h) = run_hook("on-error", profile.hooks.on_error.as_ref(), &env) {
                eprintln!("warning: profile {}: {}", profile.name, crate::one_line(&h));
            }
            return Err(e);
        }
    };
    let outcomes: Vec<JobOutcome> =
        jobs.iter().map(|job| run_job(global, profile, &repo, job, args.time.as_deref(), now)).collect();
    let entries = match records::list(&repo) {
        Ok((entries, _)) => entries,
        Err(e) => {
            log::warn(&format!("records could not be listed, so prune and check count as due: {e}"));
            Vec::new()
        }
    };
    let prune = due(&entries, "prune", &profile.name, profile.prune_every.as_ref(), now).then(|| {
        log::info("prune: due, started");
        run_prune(global, profile, &repo, now)
    });
    let check = due(&entries, "check", &profile.name, profile.check_every.as_ref(), now).then(|| {
        log::info("check: due, started");
        run_check(global, profile, &repo, &entries, now)
    });
    let mut code = outcomes.iter().map(|o| o.exit_code).max().unwrap_or(exit::OK);
    if prune.as_ref().is_some_and(|p| !p.ok) {
        code = code.max(exit::FATAL);
    }
    if let Some(c) = &check
        && !c.ok
    {
        code = code.max(if c.report.is_some() { exit::DAMAGE } else { exit::FATAL });
    }
    let mut summary =
        RunSummary { profile: profile.name.clone(), jobs: outcomes, prune, check, exit_code: code, duration_ns: 0 };
    let ok = code == exit::OK || code == exit::INCOMPLETE;
    let first_error = summary
        .jobs
        .iter()
        .flat_map(|j| j.errors.iter().map(move |e| format!("job {}: {e}", j.job)))
        .chain(summary.prune.iter().filter_map(|p| p.error.clone()).map(|e| format!("prune: {e}")))
        .chain(summary.check.iter().filter_map(|c| c.error.clone()).map(|e| format!("check: {e}")))
        .next();
    let env = HookEnv { result: Some((ok, code)), error: first_error, ..run_env };
    let hook = if ok { ("after", profile.hooks.after.as_ref()) } else { ("on-error", profile.hooks.on_error.as_ref()) };
    if let Err(e) = run_hook(hook.0, hook.1, &env) {
        eprintln!("cairn: profile {}: {}", profile.name, crate::one_line(&e));
        summary.exit_code = summary.exit_code.max(exit::FATAL);
    }
    summary.duration_ns = started.elapsed().as_nanos() as u64;
    if let Some(path) = &args.metrics_file
        && let Err(e) = write_metrics(path, profile, &summary, started)
    {
        eprintln!("warning: {}", crate::one_line(&e));
    }
    log::info(&format!("run {}: exit code {}", profile.name, summary.exit_code));
    print_summary(global, &summary)?;
    Ok(summary.exit_code)
}
