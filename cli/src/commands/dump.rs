//! `cairn dump`.

use anyhow::Result;

use super::FilterArgs;
use crate::{GlobalArgs, exit};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Snapshot: `latest`, an id or a unique prefix
    pub snapshot: String,
    /// Path of the file inside the snapshot (e.g. /db.sql); a folder is written as a tar archive
    pub path: std::ffi::OsString,
    #[command(flatten)]
    pub filter: FilterArgs,
}

pub fn run(global: &GlobalArgs, args: Args) -> Result<u8> {
    let repo = super::open(global)?;
    let mut out = std::io::stdout().lock();
    cairn_engine::commands::dump::dump(&repo, &args.snapshot, &args.path, &args.filter.to_filter(), &mut out)?;
    Ok(exit::OK)
}
