//! `cairn restore`.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use anyhow::Result;
use cairn_engine::commands::restore::{RestoreOptions, restore};

use super::FilterArgs;
use crate::progress::Bar;
use crate::{GlobalArgs, exit, output};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Snapshot to restore: `latest`, an id or a unique prefix; `SNAPSHOT:PATH` restores only that path
    #[arg(value_name = "SNAPSHOT[:PATH]")]
    pub snapshot: OsString,
    /// Folder to restore into (created if missing)
    #[arg(short, long, value_name = "DIR")]
    pub target: PathBuf,
    /// Restore only paths matching this pattern (repeatable)
    #[arg(short, long = "include", value_name = "PATTERN")]
    pub includes: Vec<String>,
    /// Do not restore paths matching this pattern (repeatable)
    #[arg(short, long = "exclude", value_name = "PATTERN")]
    pub excludes: Vec<String>,
    /// Re-read every restored file and check it against the snapshot
    #[arg(long)]
    pub verify: bool,
    /// Show what would be restored without writing
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

pub fn run(global: &GlobalArgs, args: Args) -> Result<u8> {
    // PATH is raw bytes: names that are not UTF-8 are restored as they were stored.
    let bytes = args.snapshot.as_bytes();
    let (snapshot, subpath) = match bytes.iter().position(|&b| b == b':') {
        Some(i) => (&bytes[..i], OsStr::from_bytes(&bytes[i + 1..]).to_owned()),
        None => (bytes, OsString::from("/")),
    };
    let snapshot = std::str::from_utf8(snapshot)
        .map_err(|_| anyhow::anyhow!("'{}' is not a snapshot id", String::from_utf8_lossy(snapshot)))?
        .to_owned();
    super::stop_on_signals()?;
    let repo = super::open(global)?;
    let opts = RestoreOptions {
        snapshot,
        subpath,
        target: args.target,
        includes: args.includes,
        excludes: args.excludes,
        verify: args.verify,
        dry_run: args.dry_run,
        filter: args.filter.to_filter(),
    };
    let started = std::time::Instant::now();
    let bar = Bar::new(!global.quiet && !global.json, "restore").with_output(global, false);
    let report = restore(&repo, &opts, &bar);
    bar.finish();
    let report = report?;
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    for e in &report.errors {
        eprintln!("error: {e}");
    }
    if global.json {
        // restic 0.17's `restore --json` summary fields first, then cairn's report.
        let entries = report.files + report.dirs + report.symlinks + report.hardlinks + report.special;
        let mut v = serde_json::json!({
            "message_type": "summary",
            "seconds_elapsed": started.elapsed().as_secs(),
            "total_files": entries,
            "files_restored": entries,
            "total_bytes": report.bytes,
            "bytes_restored": report.bytes,
        });
        if let (Some(v), serde_json::Value::Object(extras)) = (v.as_object_mut(), serde_json::to_value(&report)?) {
            v.extend(extras);
        }
        output::json(&v)?;
    } else if !global.quiet {
        let verb = if report.dry_run { "would restore" } else { "restored" };
        output::line(&format!(
            "{verb} {}, {}, {}, {}, {}, {} ({})",
            output::count(report.files, "file", "files"),
            output::count(report.dirs, "folder", "folders"),
            output::count(report.symlinks, "symlink", "symlinks"),
            output::count(report.hardlinks, "hard link", "hard links"),
            output::count(report.special, "special file", "special files"),
            output::size(report.bytes),
            report.snapshot_id.map(|i| i.short()).unwrap_or_default()
        ))?;
        if opts.verify {
            output::line(&format!("verified {}", output::count(report.verified, "file", "files")))?;
        }
    }
    if report.errors.is_empty() {
        Ok(exit::OK)
    } else {
        eprintln!("cairn: {} could not be restored", output::count(report.errors.len() as u64, "entry", "entries"));
        Ok(exit::INCOMPLETE)
    }
}
