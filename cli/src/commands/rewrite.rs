//! `cairn rewrite`.

use std::path::PathBuf;

use anyhow::Result;
use cairn_engine::commands::rewrite::{RewriteOptions, rewrite};
use cairn_engine::filter::PatternSet;

use super::FilterArgs;
use crate::{GlobalArgs, exit, output};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Snapshots to rewrite (`latest`, ids or prefixes; default: all that pass the filters)
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    /// Leave out paths matching this pattern (repeatable; as for backup --exclude)
    #[arg(short, long, value_name = "PATTERN")]
    pub exclude: Vec<String>,
    /// Read exclude patterns from a file, one per line (repeatable)
    #[arg(long, value_name = "FILE")]
    pub exclude_file: Vec<PathBuf>,
    /// Delete each original snapshot once every rewritten one is stored
    #[arg(long)]
    pub forget: bool,
    /// Show what would be left out without writing anything
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

pub fn run(global: &GlobalArgs, args: Args) -> Result<u8> {
    let mut excludes = args.exclude;
    excludes.extend(PatternSet::from_files(&args.exclude_file)?);
    let opts = RewriteOptions {
        snapshots: args.snapshots,
        filter: args.filter.to_filter(),
        excludes,
        forget: args.forget,
        dry_run: args.dry_run,
    };
    let repo = super::open(global)?;
    let report = rewrite(&repo, &opts)?;
    if global.json {
        output::json(&report)?;
        return Ok(exit::OK);
    }
    if global.quiet {
        return Ok(exit::OK);
    }
    for r in &report.rewritten {
        output::line(&format!("snapshot {}", r.original.short()))?;
        for p in &r.excluded {
            output::line(&format!("excluding {}", output::quote(p)))?;
        }
        match r.rewritten {
            Some(id) => output::line(&format!("saved new snapshot {}", id.short()))?,
            None => output::line("would save a new snapshot (dry run)")?,
        }
        if r.forgotten {
            output::line(&format!("removed old snapshot {}", r.original.short()))?;
        }
        output::line("")?;
    }
    if report.dry_run {
        output::line(&format!(
            "dry run: would modify {}",
            output::count(report.rewritten.len() as u64, "snapshot", "snapshots")
        ))?;
    } else if report.rewritten.is_empty() {
        output::line("no snapshots were modified")?;
    } else {
        output::line(&format!("modified {}", output::count(report.rewritten.len() as u64, "snapshot", "snapshots")))?;
    }
    Ok(exit::OK)
}
