//! `cairn backup`.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use cairn_engine::commands::backup::{BackupOptions, BackupReport, BackupSource, ParentChoice, backup};
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
    /// Exclude paths matching this pattern in any case (repeatable)
    #[arg(long = "iexclude", value_name = "PATTERN")]
    pub iexcludes: Vec<String>,
    /// Read case-insensitive exclude patterns from a file, one per line (repeatable)
    #[arg(long = "iexclude-file", value_name = "FILE")]
    pub iexclude_files: Vec<PathBuf>,
    /// Skip folders that contain a file of this name (repeatable, e.g. .nobackup); `NAME:HEADER`
    /// also needs the file to start with HEADER
    #[arg(long = "exclude-if-present", value_name = "NAME[:HEADER]")]
    pub exclude_if_present: Vec<String>,
    /// Skip folders marked as caches by a CACHEDIR.TAG file with the standard signature
    #[arg(long)]
    pub exclude_caches: bool,
    /// Skip files larger than SIZE (`500K`, `2M`, `1G`, `1T`; plain numbers are bytes)
    #[arg(long, value_name = "SIZE", value_parser = parse_size_arg)]
    pub exclude_larger_than: Option<u64>,
    /// Back up the paths listed in FILE, one per line (`-`: standard input); `#` comments and blank
    /// lines are skipped and glob patterns expanded (repeatable)
    #[arg(long = "files-from", value_name = "FILE")]
    pub files_from: Vec<PathBuf>,
    /// Back up the paths listed in FILE, one per line, exactly as written (repeatable)
    #[arg(long = "files-from-verbatim", value_name = "FILE")]
    pub files_from_verbatim: Vec<PathBuf>,
    /// Back up the NUL-separated paths in FILE, as `find -print0` writes them (repeatable)
    #[arg(long = "files-from-raw", value_name = "FILE")]
    pub files_from_raw: Vec<PathBuf>,
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

/// The file marker restic's and the Cache Directory Tagging Specification's `--exclude-caches` looks for.
const CACHEDIR_TAG: &str = "CACHEDIR.TAG:Signature: 8a477f597d28d172789f06886806bc55";

fn parse_size_arg(s: &str) -> std::result::Result<u64, String> {
    super::prune::parse_size(s).map_err(|e| e.to_string())
}

/// The bytes of a `--files-from*` file (`-` is standard input).
fn read_list(file: &std::path::Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    if file.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut bytes).context("reading the list of files from standard input")?;
    } else {
        bytes = std::fs::read(file).with_context(|| format!("reading the list of files {}", file.display()))?;
    }
    Ok(bytes)
}

/// The paths named by `--files-from`, `--files-from-verbatim` and `--files-from-raw`, with restic's
/// rules: `--files-from` skips blank lines and `#` comments, trims a trailing `\r` and expands glob
/// patterns; `--files-from-verbatim` takes each non-empty line as a name; `--files-from-raw` splits
/// at NUL bytes.
fn listed_paths(args: &Args) -> Result<Vec<PathBuf>> {
    use std::os::unix::ffi::OsStrExt;
    let mut out = Vec::new();
    for file in &args.files_from {
        let bytes = read_list(file)?;
        for line in bytes.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.iter().all(u8::is_ascii_whitespace) || line.starts_with(b"#") {
                continue;
            }
            let text = String::from_utf8_lossy(line);
            let is_pattern = text.contains(['*', '?', '[']);
            if !is_pattern || std::str::from_utf8(line).is_err() {
                out.push(PathBuf::from(std::ffi::OsStr::from_bytes(line)));
                continue;
            }
            let matches = glob::glob(&text).with_context(|| format!("{}: pattern '{text}'", file.display()))?;
            let before = out.len();
            for m in matches {
                out.push(m.with_context(|| format!("{}: expanding '{text}'", file.display()))?);
            }
            if out.len() == before {
                // As restic: a pattern that matches nothing is skipped with a warning.
                eprintln!("warning: {}: pattern '{text}' matches no file (skipped)", file.display());
            }
        }
    }
    for file in &args.files_from_verbatim {
        let bytes = read_list(file)?;
        out.extend(
            bytes
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| PathBuf::from(std::ffi::OsStr::from_bytes(l))),
        );
    }
    for file in &args.files_from_raw {
        let bytes = read_list(file)?;
        out.extend(
            bytes.split(|&b| b == 0).filter(|l| !l.is_empty()).map(|l| PathBuf::from(std::ffi::OsStr::from_bytes(l))),
        );
    }
    Ok(out)
}

/// The final line of `backup --json`: restic's `summary` message, with cairn's own report (the
/// earlier shape) as extra fields.
fn summary_json(report: &BackupReport) -> Result<serde_json::Value> {
    let s = &report.summary;
    let mut v = serde_json::json!({
        "message_type": "summary",
        "files_new": s.files_new,
        "files_changed": s.files_changed,
        "files_unmodified": s.files_unchanged,
        "dirs_new": s.dirs_new,
        "dirs_changed": s.dirs_changed,
        "dirs_unmodified": s.dirs_unchanged,
        "data_blobs": s.data_blobs_added,
        "tree_blobs": s.tree_blobs_added,
        "data_added": s.bytes_added_plain,
        "data_added_packed": s.bytes_added_stored,
        "total_files_processed": s.files_new + s.files_changed + s.files_unchanged,
        "total_bytes_processed": s.total_size,
        "total_duration": s.duration_ns as f64 / 1e9,
        "backup_start": output::rfc3339(s.started_ns, None),
        "backup_end": output::rfc3339(s.started_ns.saturating_add(s.duration_ns as i64), None),
    });
    let extras = serde_json::to_value(report)?;
    if let (Some(v), Some(extras)) = (v.as_object_mut(), extras.as_object()) {
        for (k, x) in extras {
            v.entry(k.clone()).or_insert_with(|| x.clone());
        }
    }
    Ok(v)
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

fn has_lists(args: &Args) -> bool {
    !(args.files_from.is_empty() && args.files_from_verbatim.is_empty() && args.files_from_raw.is_empty())
}

/// The engine's options and the metrics file for these arguments.
pub fn options(args: Args) -> Result<(BackupOptions, Option<crate::metrics::BackupMetrics>)> {
    let source = if args.stdin_from_command {
        if args.command.is_empty() {
            bail!(
                "--stdin-from-command needs the command after '--', e.g. cairn backup --stdin-from-command -- pg_dump mydb"
            );
        }
        if args.stdin || !args.paths.is_empty() || has_lists(&args) {
            bail!("--stdin-from-command cannot be combined with --stdin, paths or --files-from");
        }
        BackupSource::Command { argv: args.command, filename: args.stdin_filename }
    } else if args.stdin {
        if !args.paths.is_empty() || has_lists(&args) {
            bail!("--stdin cannot be combined with paths or --files-from");
        }
        BackupSource::Stdin { filename: args.stdin_filename, reader: Box::new(std::io::stdin()) }
    } else {
        let mut paths = args.paths.clone();
        paths.extend(listed_paths(&args)?);
        if paths.is_empty() {
            bail!("nothing to back up: give at least one path, --files-from FILE, --stdin, or --stdin-from-command");
        }
        if !args.command.is_empty() {
            bail!("arguments after '--' are only for --stdin-from-command");
        }
        BackupSource::Files(paths)
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
        iexcludes: args.iexcludes,
        iexclude_files: args.iexclude_files,
        exclude_if_present: {
            let mut markers = args.exclude_if_present;
            if args.exclude_caches {
                markers.push(CACHEDIR_TAG.to_owned());
            }
            markers
        },
        exclude_larger_than: args.exclude_larger_than,
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
    let bar = Bar::new(!global.quiet && !global.json, "backup").with_output(global, true);
    let report = backup(&repo, opts, &bar);
    bar.finish();
    if report.is_ok() {
        bar.final_status();
    }
    if let Some(m) = &metrics {
        m.write(&repo, &report)?;
    }
    let report = report?;
    if global.json {
        output::json(&summary_json(&report)?)?;
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
            "processed {}, {} in {}",
            output::count(s.files_new + s.files_changed + s.files_unchanged, "file", "files"),
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
        eprintln!(
            "cairn: {} (above); the snapshot may be incomplete",
            output::count(report.warnings.len() as u64, "warning", "warnings")
        );
        Ok(exit::INCOMPLETE)
    }
}
