//! `cairn diff`.

use anyhow::Result;
use cairn_engine::commands::diff::{DiffChange, DiffOptions, DiffStatistics, diff};
use cairn_engine::commands::snapshots::{SnapshotFilter, find_snapshot};

use crate::output::{self, Sink};
use crate::{GlobalArgs, exit};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The older snapshot: `latest`, an id or a unique prefix
    pub first: String,
    /// The newer snapshot
    pub second: String,
    /// Also show entries whose metadata alone changed (`U`)
    #[arg(long)]
    pub metadata: bool,
}

fn print_change(global: &GlobalArgs, c: &DiffChange) -> Result<()> {
    if global.json {
        output::json(c)
    } else if global.quiet {
        Ok(())
    } else {
        output::line(&format!("{:<5}{}", c.modifier, output::quote(&c.path)))
    }
}

fn print_summary(s: &DiffStatistics) -> Result<()> {
    let (a, r) = (&s.added, &s.removed);
    output::line("")?;
    output::line(&format!("Files:       {:5} new, {:5} removed, {:5} changed", a.files, r.files, s.changed_files))?;
    output::line(&format!("Dirs:        {:5} new, {:5} removed", a.dirs, r.dirs))?;
    output::line(&format!("Others:      {:5} new, {:5} removed", a.others, r.others))?;
    output::line(&format!("Data Blobs:  {:5} new, {:5} removed", a.data_blobs, r.data_blobs))?;
    output::line(&format!("Tree Blobs:  {:5} new, {:5} removed", a.tree_blobs, r.tree_blobs))?;
    output::line(&format!("  Added:   {}", output::size(a.bytes)))?;
    output::line(&format!("  Removed: {}", output::size(r.bytes)))
}

pub fn run(global: &GlobalArgs, args: Args) -> Result<u8> {
    let repo = super::open(global)?;
    let filter = SnapshotFilter::default();
    let first = find_snapshot(&repo, &args.first, &filter)?.0;
    let second = find_snapshot(&repo, &args.second, &filter)?.0;
    if !global.json && !global.quiet {
        output::line(&format!("comparing snapshot {} to {}:\n", first.short(), second.short()))?;
    }
    let mut sink = Sink::default();
    let mut each = |c: &DiffChange| sink.put(print_change(global, c));
    let opts = DiffOptions { metadata: args.metadata };
    let result = diff(&repo, &first.to_hex(), &second.to_hex(), opts, &mut each);
    let stats = sink.finish(result)?;
    if global.json {
        output::json(&stats)?;
    } else if !global.quiet {
        print_summary(&stats)?;
    }
    Ok(exit::OK)
}
