//! `cairn check`: runs the engine's check and prints one line per problem, a summary, or JSON.

use anyhow::Result;
use cairn_engine::commands::check::{CheckLevel, CheckOptions, CheckReport, Finding, ReadSubset};

use cairn_engine::Repository;
use cairn_engine::commands::backup::now_ns;

use crate::progress::Bar;
use crate::{GlobalArgs, exit, output};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Also read packs: check each one's hash, decrypt and authenticate every blob, and compare
    /// pack headers with the index
    #[arg(long, conflicts_with = "read_hashes")]
    pub read_data: bool,
    /// Also read packs, but only compare each one's BLAKE3 hash with its name (no decryption)
    #[arg(long)]
    pub read_hashes: bool,
    /// Read only some packs: `n/m` (group n of m, fixed by pack ids), `P%` or a size such as `5G`
    /// (the least recently verified packs first, remembered in the local cache). Implies
    /// --read-data unless --read-hashes is given
    #[arg(long, value_name = "SUBSET")]
    pub read_data_subset: Option<String>,
    /// Check without the password: every key file decodes and every file matches the hash in its
    /// name (implies --read-hashes)
    #[arg(long, conflicts_with = "read_data")]
    pub no_key: bool,
    #[command(flatten)]
    pub metrics: crate::metrics::MetricsArgs,
}

/// The engine's options for these arguments.
pub fn options(global: &GlobalArgs, args: &Args) -> Result<CheckOptions> {
    let subset = match &args.read_data_subset {
        Some(s) => s.parse::<ReadSubset>()?,
        None => ReadSubset::All,
    };
    let level = if args.read_hashes || args.no_key {
        CheckLevel::Hashes
    } else if args.read_data || args.read_data_subset.is_some() {
        CheckLevel::Data
    } else {
        CheckLevel::Structure
    };
    Ok(CheckOptions { level, subset, remember: !global.no_cache })
}

/// Saves the record of a check (spec/records.md) under the profile's name; a failure to save it
/// is a warning, as the check's own outcome is what the exit code reports.
pub fn save_record(
    repo: &Repository,
    outcome: std::result::Result<&CheckReport, &cairn_engine::Error>,
    scope: &str,
    time_ns: i64,
    started: std::time::Instant,
) {
    let record = cairn_engine::commands::check::record(outcome, scope, time_ns, started.elapsed().as_nanos() as u64);
    match cairn_engine::records::save(repo, &record) {
        Ok((_, None)) => {}
        Ok((_, Some(e))) => eprintln!("warning: older check records could not be deleted: {e}"),
        Err(e) => eprintln!("warning: the check's record could not be saved: {e}"),
    }
}

pub fn run(global: &GlobalArgs, args: Args) -> Result<u8> {
    let opts = options(global, &args)?;
    let level = opts.level;
    let started = std::time::Instant::now();
    let bar = Bar::new(!global.quiet && !global.json && level != CheckLevel::Structure, "check");
    let report = if args.no_key {
        let location = super::location(global)?;
        cairn_engine::commands::check::check_without_key(&location, &opts, &bar)
    } else {
        let repo = super::open(global)?;
        let report = cairn_engine::commands::check::check(&repo, &opts, &bar);
        let scope = global.profile_name().unwrap_or_default();
        save_record(&repo, report.as_ref(), &scope, now_ns(), started);
        report
    };
    bar.finish();
    let (clean, damage) = report.as_ref().map_or((false, None), |r| (r.is_clean(), Some(r.damage.len())));
    args.metrics.write("check", clean, started, damage);
    let report = report?;
    if global.json {
        output::json(&report)?;
    } else {
        for f in &report.damage {
            output::line(&format!("damage: {}", render(f)))?;
        }
        if !global.quiet {
            for f in &report.notices {
                output::line(&format!("notice: {}", render(f)))?;
            }
            output::line(&summary(&report))?;
        }
    }
    if report.is_clean() {
        Ok(exit::OK)
    } else {
        eprintln!("cairn: check found {}", count(report.damage.len() as u64, "problem", "problems"));
        Ok(exit::DAMAGE)
    }
}

/// One finding on one line, with the snapshots it affects.
fn render(f: &Finding) -> String {
    let mut s = f.headline();
    match f.snapshots.as_deref() {
        None => {}
        Some([]) => s.push_str("; no snapshot is affected"),
        Some(ids) => {
            const SHOWN: usize = 10;
            let shown: Vec<String> = ids.iter().take(SHOWN).map(|i| i.short()).collect();
            let word = if ids.len() == 1 { "snapshot" } else { "snapshots" };
            s.push_str(&format!("; affects {word} {}", shown.join(", ")));
            if ids.len() > SHOWN {
                s.push_str(&format!(" and {} more (see --json)", ids.len() - SHOWN));
            }
        }
    }
    s
}

/// `1 pack`, `2 packs`.
fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn summary(r: &CheckReport) -> String {
    let st = &r.stats;
    let mut s = if r.keyless {
        format!(
            "checked without the key: {}, {} hashed, {} stored",
            count(st.keys, "key file", "key files"),
            count(
                st.files_hashed.saturating_sub(st.keys),
                "index, snapshot or record file",
                "index, snapshot and record files"
            ),
            count(st.packs_stored, "pack", "packs")
        )
    } else {
        format!(
            "checked {} ({}), {}, {}, {} ({}), {}",
            count(st.snapshots, "snapshot", "snapshots"),
            count(st.trees, "tree", "trees"),
            count(st.keys, "key file", "key files"),
            count(st.index_files, "index file", "index files"),
            count(st.packs, "pack", "packs"),
            output::size(st.bytes_stored),
            count(st.blobs, "blob", "blobs")
        )
    };
    if r.level != CheckLevel::Structure {
        let what = if r.level == CheckLevel::Data { "hashes and blobs verified" } else { "hashes verified" };
        s.push_str(&format!(
            "; read {} of {} packs ({}, subset {}): {what}",
            st.packs_read,
            st.packs_stored,
            output::size(st.bytes_read),
            r.subset.as_deref().unwrap_or("all")
        ));
    }
    if r.is_clean() {
        s.push_str("; no damage found");
    } else {
        s.push_str(&format!("; {} found", count(r.damage.len() as u64, "problem", "problems")));
    }
    s
}
