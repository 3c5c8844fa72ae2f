//! `cairn snapshots`.

use anyhow::Result;
use cairn_engine::commands::snapshots::{ListOptions, list};

use super::FilterArgs;
use crate::{GlobalArgs, exit, output};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Only the newest N snapshots of each host and path set
    #[arg(long, value_name = "N")]
    pub latest: Option<usize>,
}

pub fn run(global: &GlobalArgs, args: Args) -> Result<u8> {
    let repo = super::open(global)?;
    let listing = list(&repo, &ListOptions { filter: args.filter.to_filter(), latest: args.latest })?;
    for d in &listing.damaged {
        eprintln!("warning: {d}");
    }
    for id in &listing.damaged_in_repository {
        eprintln!(
            "warning: snapshot {}: its file in the repository is damaged (it no longer matches its name); listed \
             from the local cache's intact copy; run 'cairn repair snapshots' to write the file again from that copy",
            id.short()
        );
    }
    if global.json {
        let list =
            listing.snapshots.iter().map(|s| output::snapshot_json(&s.id, &s.snapshot)).collect::<Result<Vec<_>>>()?;
        output::json(&list)?;
    } else {
        let rows: Vec<Vec<String>> = listing
            .snapshots
            .iter()
            .map(|s| {
                vec![
                    s.id.short(),
                    output::time(s.snapshot.time_ns),
                    s.snapshot.host.clone(),
                    s.snapshot.tags.join(","),
                    s.snapshot.paths.join(" "),
                    output::size(s.snapshot.summary.total_size),
                ]
            })
            .collect();
        if !global.quiet || !rows.is_empty() {
            output::table(&["ID", "Time", "Host", "Tags", "Paths", "Size"], &rows)?;
            output::line(&output::count(rows.len() as u64, "snapshot", "snapshots"))?;
        }
    }
    Ok(if listing.damaged.is_empty() && listing.damaged_in_repository.is_empty() { exit::OK } else { exit::FATAL })
}
