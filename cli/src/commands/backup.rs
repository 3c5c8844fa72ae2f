//! `cairn backup`.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use cairn_engine::commands::backup::{BackupOptions, BackupSource, ParentChoice, backup};
use cairn_engine::read_ahead::ReadAhead;

use crate::progress::Bar;
use crate::{GlobalArgs, exit, output};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files and folders to back up
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Exclude paths matching this pattern (repeatable; `*`, `**`, `?`, `[..]`; `/` anchors at the root)
    #[arg(short, long = "exclude", value_name = "PATTERN")]
    pub excludes: Vec<String>,
    /// Read exclude patterns from a file, one per line (repeatable)
    #[arg(long = "exclude-file", value_name = "FILE")]
    pub exclude_files: Vec<PathBuf>,
    /// Skip folders that contain a file of this name (repeatable, e.g. .nobackup)
    #[arg(long = "exclude-if-present", value_name = "NAME")]
    pub exclude_if_present: Vec<String>,
    /// Do not cross filesystem boundaries
    #[arg(short = 'x', long)]
    pub one_file_system: bool,
    /// Add tags to the snapshot (repeatable or comma-separated)
    #[arg(long = "tag", value_name = "TAG", value_delimiter = ',')]
    pub tags: Vec<String>,
    /// Host name recorded in the snapshot (default: this machine's)
    #[arg(long)]
    pub host: Option<String>,
    /// Snapshot time instead of now: `2026-11-22 04:00:00` (local) or RFC 3339
    #[arg(long, value_name = "TIME")]
    pub time: Option<String>,
    /// Do everything but write to the repository
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Read the data from standard input
    #[arg(long)]
    pub stdin: bool,
    /// File name for --stdin and --stdin-from-command data
    #[arg(long, default_value = "stdin", value_name = "NAME")]
    pub stdin_filename: String,
    /// Run the command given after `--` and back up its standard output; a non-zero exit stores nothing
    #[arg(long)]
    pub stdin_from_command: bool,
    /// Use this snapshot as the parent (default: latest of the same host and paths)
    #[arg(long, value_name = "SNAPSHOT")]
    pub parent: Option<String>,
    /// Read every file again, trusting neither parent nor cache
    #[arg(long)]
    pub force: bool,
    /// Write Prometheus metrics of this run to FILE (atomically; for node_exporter's textfile collector)
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,
    /// Add the label job="NAME" to the metrics
    #[arg(long, value_name = "NAME", requires = "metrics_file")]
    pub metrics_job: Option<String>,
    /// The command for --stdin-from-command
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

/// Parses `--time`.
pub fn parse_time(s: &str) -> Result<i64> {
    use chrono::{DateTime, Local, NaiveDateTime, TimeZone};
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return t.timestamp_nanos_opt().context("time out of range");
    }
    for fmt in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(s, fmt) {
            let local = Local.from_local_datetime(&naive).earliest().context("that local time does not exist")?;
            return local.timestamp_nanos_opt().context("time out of range");
        }
    }
    bail!("cannot read time '{s}': use '2026-11-22 04:00:00' or RFC 3339")
}

/// The engine's options and the metrics file for these arguments.
pub fn options(args: Args) -> Result<(BackupOptions, Option<crate::metrics::BackupMetrics>)> {
    let source = if args.stdin_from_command {
        if args.command.is_empty() {
            bail!(
                "--stdin-from-command needs the command after '--', e.g. cairn backup --stdin-from-command -- pg_dump mydb"
            );
        }
        if args.stdin || !args.paths.is_empty() {
            bail!("--stdin-from-command cannot be combined with --stdin or paths");
        }
        BackupSource::Command { argv: args.command, filename: args.stdin_filename }
    } else if args.stdin {
        if !args.paths.is_empty() {
            bail!("--stdin cannot be combined with paths");
        }
        BackupSource::Stdin { filename: args.stdin_filename, reader: Box::new(std::io::stdin()) }
    } else {
        if args.paths.is_empty() {
            bail!("nothing to back up: give at least one path, --stdin, or --stdin-from-command");
        }
        if !args.command.is_empty() {
            bail!("arguments after '--' are only for --stdin-from-command");
        }
        BackupSource::Files(args.paths)
    };
    let time_ns = args.time.as_deref().map(parse_time).transpose()?;
    let metrics = args.metrics_file.map(|path| crate::metrics::BackupMetrics {
        path,
        host: args.host.clone().unwrap_or_else(cairn_engine::repository::hostname),
        job: args.metrics_job,
    });
    let opts = BackupOptions {
        source,
        excludes: args.excludes,
        exclude_files: args.exclude_files,
        exclude_if_present: args.exclude_if_present,
        one_file_system: args.one_file_system,
        tags: args.tags.into_iter().filter(|t| !t.is_empty()).collect(),
        host: args.host,
        time_ns,
        dry_run: args.dry_run,
        parent: args.parent.map(ParentChoice::Named).unwrap_or_default(),
        force: args.force,
        read_ahead: None,
    };
    Ok((opts, metrics))
}

pub fn run(global: &GlobalArgs, args: Args) -> Result<u8> {
    let (mut opts, metrics) = options(args)?;
    super::stop_on_signals()?;
    // The folders are read ahead while the key is derived from the password.
    opts.read_ahead = ReadAhead::for_backup(&opts);
    let repo = super::open(global)?;
    let bar = Bar::new(!global.quiet && !global.json, "backup");
    let report = backup(&repo, opts, &bar);
    bar.finish();
    if let Some(m) = &metrics {
        m.write(&repo, &report)?;
    }
    let report = report?;
    if global.json {
        output::json(&report)?;
    } else if !global.quiet {
        let s = &report.summary;
        output::line(&format!(
            "Files:  {} new, {} changed, {} unchanged",
            s.files_new, s.files_changed, s.files_unchanged
        ))?;
        output::line(&format!(
            "Dirs:   {} new, {} changed, {} unchanged",
            s.dirs_new, s.dirs_changed, s.dirs_unchanged
        ))?;
        output::line(&format!(
            "Added to the repository: {} ({} stored)",
            output::size(s.bytes_added_plain),
            output::size(s.bytes_added_stored)
        ))?;
        output::line(&format!(
            "processed {} files, {} in {}",
            s.files_new + s.files_changed + s.files_unchanged,
            output::size(s.total_size),
            output::duration(s.duration_ns)
        ))?;
        match report.snapshot_id {
            Some(id) => output::line(&format!("snapshot {} saved", id.short()))?,
            None => output::line("dry run: nothing was written")?,
        }
    }
    if report.warnings.is_empty() {
        Ok(exit::OK)
    } else {
        // Exit 3 as restic: a snapshot was written, but not of everything that was asked for.
        eprintln!("cairn: {} warnings (above); the snapshot may be incomplete", report.warnings.len());
        Ok(exit::INCOMPLETE)
    }
}
