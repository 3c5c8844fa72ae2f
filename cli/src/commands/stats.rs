//! `cairn stats`.

use anyhow::Result;
use cairn_engine::commands::stats::{StatsMode, StatsReport, stats};

use super::FilterArgs;
use crate::{GlobalArgs, exit, output};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Snapshots to count (`latest`, ids or prefixes; default: all)
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    /// restore-size, files-by-contents, raw-data or blobs-per-file
    #[arg(long, default_value = "restore-size", value_parser = parse_mode)]
    pub mode: StatsMode,
    #[command(flatten)]
    pub filter: FilterArgs,
}

fn parse_mode(s: &str) -> std::result::Result<StatsMode, String> {
    StatsMode::parse(s).map_err(|e| e.to_string())
}

fn mode_name(m: StatsMode) -> &'static str {
    match m {
        StatsMode::RestoreSize => "restore-size",
        StatsMode::FilesByContents => "files-by-contents",
        StatsMode::RawData => "raw-data",
        StatsMode::BlobsPerFile => "blobs-per-file",
    }
}

fn print(r: &StatsReport) -> Result<()> {
    output::line(&format!("Stats in {} mode:", mode_name(r.mode)))?;
    output::line(&format!("     Snapshots processed:  {}", r.snapshots_count))?;
    if let Some(n) = r.total_blob_count {
        output::line(&format!("        Total Blob Count:  {n}"))?;
    }
    if r.mode != StatsMode::RawData {
        output::line(&format!("        Total File Count:  {}", r.total_file_count))?;
    }
    if let Some(n) = r.total_uncompressed_size {
        output::line(&format!(" Total Uncompressed Size:  {}", output::size(n)))?;
    }
    output::line(&format!("              Total Size:  {}", output::size(r.total_size)))?;
    if let Some(ratio) = r.compression_ratio {
        output::line(&format!("       Compression Ratio:  {ratio:.2}x"))?;
    }
    if let Some(saving) = r.compression_space_saving {
        output::line(&format!("Compression Space Saving:  {saving:.2} %"))?;
    }
    if !r.snapshots.is_empty() {
        output::line("")?;
        output::line("Freed if forgotten alone (then pruned):")?;
        let rows: Vec<Vec<String>> = r
            .snapshots
            .iter()
            .map(|c| {
                vec![
                    c.id.short(),
                    output::time(c.time_ns),
                    c.unique_blobs.to_string(),
                    output::size(c.unique_stored_size),
                    output::size(c.unique_uncompressed_size),
                ]
            })
            .collect();
        output::table(&["ID", "Time", "Blobs", "Stored", "Uncompressed"], &rows)?;
    }
    Ok(())
}

pub fn run(global: &GlobalArgs, args: Args) -> Result<u8> {
    let repo = super::open(global)?;
    let (report, damaged) = stats(&repo, &args.snapshots, &args.filter.to_filter(), args.mode)?;
    for d in &damaged {
        eprintln!("warning: {d}");
    }
    if global.json {
        output::json(&report)?;
    } else if !global.quiet {
        print(&report)?;
    }
    Ok(exit::OK)
}
