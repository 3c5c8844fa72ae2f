//! `cairn unlock`.

use anyhow::Result;
use cairn_engine::commands::unlock::unlock;

use crate::{GlobalArgs, exit, output};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Remove every lock, also those of running processes (only when none uses the repository)
    #[arg(long)]
    pub remove_all: bool,
}

pub fn run(global: &GlobalArgs, args: Args) -> Result<u8> {
    let repo = super::open(global)?;
    let report = unlock(&repo, args.remove_all)?;
    if global.json {
        output::json(&report)?;
    } else if !global.quiet {
        let what = if report.remove_all { "" } else { "stale " };
        let plural = if report.removed == 1 { "" } else { "s" };
        output::line(&format!("removed {} {what}lock{plural}", report.removed))?;
    }
    Ok(exit::OK)
}
