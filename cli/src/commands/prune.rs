//! `cairn prune`.

use anyhow::{Result, bail};
use cairn_engine::Repository;
use cairn_engine::commands::prune::{PruneOptions, PruneReport, prune};

use crate::{GlobalArgs, exit, output};

/// Options shared by `prune` and `forget --prune`.
#[derive(Debug, Clone, clap::Args)]
pub struct PruneArgs {
    /// Unused space to leave, as a share of the repository: partly used packs are repacked, most
    /// wasteful first, until no more than this is unused (e.g. 5%, 0%, unlimited)
    #[arg(long, default_value = "5%", value_name = "PERCENT")]
    pub max_unused: String,
    /// Repack at most this much per run (e.g. 500M, 2G)
    #[arg(long, value_name = "SIZE")]
    pub max_repack_size: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub prune: PruneArgs,
    /// Show the plan without changing anything
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub metrics: crate::metrics::MetricsArgs,
}

/// Parses `500M`, `2G`, `1024` (bytes), `10K`.
pub fn parse_size(s: &str) -> Result<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => {
            let unit = s[i..].to_ascii_uppercase();
            let m: u64 = match unit.trim_end_matches("IB").trim_end_matches('B') {
                "" => 1,
                "K" => 1 << 10,
                "M" => 1 << 20,
                "G" => 1 << 30,
                "T" => 1 << 40,
                _ => bail!("cannot read size '{s}': use a number with K, M, G or T"),
            };
            (&s[..i], m)
        }
        None => (s, 1),
    };
    let n: f64 = num.trim().parse().map_err(|_| anyhow::anyhow!("cannot read size '{s}'"))?;
    if n < 0.0 {
        bail!("size '{s}' is negative");
    }
    Ok((n * mult as f64) as u64)
}

fn options(args: &PruneArgs, dry_run: bool) -> Result<PruneOptions> {
    let max_unused = match args.max_unused.trim() {
        "unlimited" => f64::INFINITY,
        s => {
            let v: f64 =
                s.trim_end_matches('%').parse().map_err(|_| anyhow::anyhow!("--max-unused: cannot read '{s}'"))?;
            if !(0.0..=100.0).contains(&v) {
                bail!("--max-unused must be between 0% and 100%");
            }
            v / 100.0
        }
    };
    let max_repack_bytes = args.max_repack_size.as_deref().map(parse_size).transpose()?;
    Ok(PruneOptions { max_unused, max_repack_bytes, dry_run })
}

/// Adds what to do to a refusal for an incomplete index: packs no index file names may hold what
/// the snapshots use, and `repair index` adopts them. Other errors pass unchanged.
pub fn hint_incomplete_index(e: cairn_engine::Error, then: &str) -> anyhow::Error {
    if e.kind() == cairn_engine::ErrorKind::IndexIncomplete {
        let hint = format!("{e}; run 'cairn repair index' (it indexes every pack in data/), then {then}");
        anyhow::Error::new(e).context(hint)
    } else {
        e.into()
    }
}

/// Runs prune and prints its summary (unless JSON or quiet); used by `forget --prune` too.
pub fn execute(global: &GlobalArgs, repo: &Repository, args: &PruneArgs, dry_run: bool) -> Result<PruneReport> {
    let report = prune(repo, &options(args, dry_run)?).map_err(|e| hint_incomplete_index(e, "prune again"))?;
    if !global.json && !global.quiet {
        let p = &report.plan;
        output::line(&format!(
            "{}, {} used",
            output::count(p.snapshots as u64, "snapshot", "snapshots"),
            output::count(p.used_blobs as u64, "blob", "blobs")
        ))?;
        output::line(&format!(
            "packs:     {} ({})",
            output::count(p.packs_total as u64, "pack", "packs"),
            output::size(p.bytes_total)
        ))?;
        output::line(&format!(
            "to delete: {} ({})",
            output::count(p.packs_delete as u64, "pack", "packs"),
            output::size(p.bytes_delete)
        ))?;
        output::line(&format!(
            "to repack: {} ({}, {} still used)",
            output::count(p.packs_repack as u64, "pack", "packs"),
            output::size(p.bytes_repack),
            output::size(p.bytes_repack_used)
        ))?;
        output::line(&format!(
            "to keep:   {} ({}, {} unused)",
            output::count(p.packs_keep as u64, "pack", "packs"),
            output::size(p.bytes_keep),
            output::size(p.bytes_unused_after)
        ))?;
        if p.packs_condemned_earlier > 0 || p.packs_resurrected > 0 {
            output::line(&format!(
                "waiting from earlier prunes: {} packs ({} back in use)",
                p.packs_condemned_earlier, p.packs_resurrected
            ))?;
        }
        if p.packs_unindexed > 0 {
            output::line(&format!(
                "named by no index: {} packs ({}), deleted when no backup is running",
                p.packs_unindexed,
                output::size(p.bytes_unindexed)
            ))?;
        }
        output::line(&format!("expected size after: {}", output::size(p.bytes_after)))?;
        if dry_run {
            output::line("dry run: nothing was changed")?;
        } else {
            output::line(&format!(
                "deleted {} packs ({}), repacked {} blobs into {} packs, in {}",
                report.packs_deleted + report.unindexed_packs_deleted,
                output::size(report.bytes_deleted),
                report.blobs_repacked,
                report.packs_written,
                output::duration(report.duration_ns)
            ))?;
            if report.packs_deferred > 0 {
                output::line(&format!(
                    "{} packs wait for a backup that was running; a later prune deletes them",
                    report.packs_deferred
                ))?;
            }
        }
    }
    Ok(report)
}

pub fn run(global: &GlobalArgs, args: Args) -> Result<u8> {
    let started = std::time::Instant::now();
    let repo = super::open(global)?;
    let report = execute(global, &repo, &args.prune, args.dry_run);
    if !args.dry_run {
        args.metrics.write("prune", report.is_ok(), started, None);
    }
    let report = report?;
    if global.json {
        output::json(&report)?;
    }
    Ok(exit::OK)
}
