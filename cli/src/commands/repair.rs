//! `cairn repair index` and `cairn repair snapshots`: run the engine's repairs and print what they
//! did (or, with `--dry-run`, would do).

use anyhow::Result;
use cairn_engine::commands::repair::{
    RepairIndexReport, RepairSnapshotsOptions, RepairSnapshotsReport, repair_index, repair_snapshots,
};

use crate::{GlobalArgs, exit, output};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub what: What,
}

#[derive(Debug, clap::Subcommand)]
pub enum What {
    /// Rebuild the index from the packs themselves (after index files were lost or damaged)
    Index(IndexArgs),
    /// Rewrite snapshots that reference missing or damaged data, keeping what is still there
    Snapshots(SnapshotsArgs),
}

#[derive(Debug, clap::Args)]
pub struct IndexArgs {
    /// Show what would be done without writing anything
    #[arg(short = 'n', long)]
    pub dry_run: bool,
}

#[derive(Debug, clap::Args)]
pub struct SnapshotsArgs {
    /// Snapshots to repair (ids or unique prefixes); all when none are given
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    /// Show what would be done without writing anything
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Delete each original once its repaired snapshot is stored, and delete unreadable snapshot files
    #[arg(long)]
    pub forget: bool,
    /// Also decrypt every data blob the snapshots reference, so damaged (not only missing) data is
    /// found (slow: reads all referenced data)
    #[arg(long)]
    pub read_data: bool,
}

pub fn run(global: &GlobalArgs, args: Args) -> Result<u8> {
    let repo = super::open(global)?;
    match args.what {
        What::Index(a) => {
            let report = repair_index(&repo, a.dry_run)?;
            if global.json {
                output::json(&report)?;
            } else {
                print_index(&report, global.quiet)?;
            }
            Ok(if report.unreadable.is_empty() && report.salvaged.iter().all(|s| s.blobs_lost == 0) {
                exit::OK
            } else {
                exit::INCOMPLETE
            })
        }
        What::Snapshots(a) => {
            let opts = RepairSnapshotsOptions {
                snapshots: a.snapshots,
                dry_run: a.dry_run,
                forget: a.forget,
                read_data: a.read_data,
            };
            let report = repair_snapshots(&repo, &opts)
                .map_err(|e| super::prune::hint_incomplete_index(e, "repair snapshots again"))?;
            if global.json {
                output::json(&report)?;
            } else {
                print_snapshots(&report, global.quiet)?;
            }
            Ok(exit::OK)
        }
    }
}

fn print_index(r: &RepairIndexReport, quiet: bool) -> Result<()> {
    for d in &r.index_files_damaged {
        eprintln!("warning: index {}: {} (replaced)", d.id.short(), d.reason);
    }
    for s in &r.salvaged {
        eprintln!(
            "warning: pack {}: {}; salvaged {} blobs from their frames, {} did not authenticate",
            s.pack.short(),
            s.reason,
            s.blobs_recovered,
            s.blobs_lost
        );
    }
    for u in &r.unreadable {
        eprintln!("warning: pack {}: cannot be indexed ({}); left in place", u.pack.short(), u.reason);
    }
    if quiet {
        return Ok(());
    }
    let (would, verb) = if r.dry_run { ("would ", "would replace") } else { ("", "replaced") };
    output::line(&format!(
        "{would}index {} packs ({} blobs): {} newly indexed, {} missing packs dropped, {} condemned packs kept",
        r.packs_indexed,
        r.blobs_indexed,
        r.packs_added.len(),
        r.packs_dropped.len(),
        r.condemned_kept
    ))?;
    let written: Vec<String> = r.index_files_written.iter().map(|i| i.short()).collect();
    output::line(&format!(
        "{verb} {} index files{}",
        r.index_files_replaced.len(),
        if written.is_empty() { String::new() } else { format!(" with {}", written.join(", ")) }
    ))?;
    Ok(())
}

fn print_snapshots(r: &RepairSnapshotsReport, quiet: bool) -> Result<()> {
    for u in &r.unreadable {
        let what = if u.forgotten {
            "removed"
        } else if r.dry_run {
            "cannot be repaired"
        } else {
            "cannot be repaired; remove it with --forget"
        };
        eprintln!("warning: snapshot {}: {} ({what})", u.id.short(), u.reason);
    }
    for id in &r.restored_from_cache {
        let verb = if r.dry_run { "would be written again" } else { "written again" };
        eprintln!(
            "warning: snapshot {}: the repository's file is damaged; {verb} from the local cache's intact copy",
            id.short()
        );
    }
    if quiet {
        return Ok(());
    }
    for a in &r.already_repaired {
        let forgot = if a.forgotten { "; original removed" } else { "" };
        output::line(&format!(
            "snapshot {} was already repaired as {}{forgot}",
            a.original.short(),
            a.repaired.short()
        ))?;
    }
    for s in &r.repaired {
        let head = match s.repaired {
            Some(new) => format!("repaired snapshot {} as {}", s.original.short(), new.short()),
            None => format!("would repair snapshot {}", s.original.short()),
        };
        let forgot = if s.forgotten { "; original removed" } else { "" };
        output::line(&format!(
            "{head}: {} files removed, {} folders emptied{forgot}",
            s.removed_files.len(),
            s.emptied_dirs.len()
        ))?;
        for p in &s.removed_files {
            output::line(&format!("  removed {p}"))?;
        }
        for p in &s.emptied_dirs {
            output::line(&format!("  emptied {p}"))?;
        }
    }
    let verb = if r.dry_run { "would need repair" } else { "repaired" };
    output::line(&format!(
        "checked {}, {} {verb}",
        output::count(r.checked, "snapshot", "snapshots"),
        r.repaired.len()
    ))?;
    Ok(())
}
