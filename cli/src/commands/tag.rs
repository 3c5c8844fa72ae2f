//! `cairn tag`.

use anyhow::Result;
use cairn_engine::commands::tag::{TagOptions, tag};

use super::FilterArgs;
use crate::{GlobalArgs, exit, output};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Snapshots to change (`latest`, ids or prefixes; default: all that pass the filters)
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    /// Add these tags (repeatable or comma-separated)
    #[arg(long, value_name = "TAGS", value_delimiter = ',')]
    pub add: Vec<String>,
    /// Remove these tags (repeatable or comma-separated)
    #[arg(long, value_name = "TAGS", value_delimiter = ',')]
    pub remove: Vec<String>,
    /// Replace all tags with these (repeatable or comma-separated; `--set ''` removes all)
    #[arg(long, value_name = "TAGS", value_delimiter = ',')]
    pub set: Option<Vec<String>>,
    #[command(flatten)]
    pub filter: FilterArgs,
}

pub fn run(global: &GlobalArgs, args: Args) -> Result<u8> {
    let clean = |v: Vec<String>| v.into_iter().filter(|t| !t.is_empty()).collect::<Vec<_>>();
    let opts = TagOptions {
        snapshots: args.snapshots,
        filter: args.filter.to_filter(),
        add: clean(args.add),
        remove: clean(args.remove),
        set: args.set.map(clean),
    };
    let repo = super::open(global)?;
    let report = tag(&repo, &opts)?;
    if global.json {
        for c in &report.changes {
            output::json(c)?;
        }
        output::json(&report)?;
    } else if !global.quiet {
        for c in &report.changes {
            output::line(&format!("old snapshot ID: {} -> new snapshot ID: {}", c.old_snapshot_id, c.new_snapshot_id))?;
        }
        if report.changed_snapshots == 0 {
            output::line("no snapshots were modified")?;
        } else {
            output::line(&format!(
                "modified {}",
                output::count(report.changed_snapshots as u64, "snapshot", "snapshots")
            ))?;
        }
    }
    Ok(exit::OK)
}
