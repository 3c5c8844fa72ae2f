//! `cairn mount`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use cairn_engine::commands::mount::{MountOptions, mount};

use super::FilterArgs;
use crate::{GlobalArgs, exit};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// An empty folder to mount the repository on (read-only)
    pub mountpoint: PathBuf,
    /// Opened chunks kept in memory for readers (each up to the largest chunk size, 1 MiB by default)
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub blob_cache: usize,
    /// Shortest time between two readings of the list of snapshots (new snapshots appear after it)
    #[arg(long, default_value_t = 5, value_name = "SECONDS")]
    pub refresh_interval: u64,
    #[command(flatten)]
    pub filter: FilterArgs,
}

pub fn run(global: &GlobalArgs, args: Args) -> Result<u8> {
    let repo = super::open(global)?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).context("setting up signal handling")?;
    }
    let opts = MountOptions {
        blob_cache_entries: args.blob_cache,
        filter: args.filter.to_filter(),
        refresh_interval: Duration::from_secs(args.refresh_interval),
    };
    let mounted = mount(repo, &args.mountpoint, &opts)?;
    if !global.quiet {
        eprintln!("serving the repository at {}; Ctrl-C (or umount) unmounts", args.mountpoint.display());
    }
    // Ctrl-C, SIGTERM or an unmount from outside ends the mount.
    while !stop.load(Ordering::SeqCst) && !mounted.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
    }
    mounted.unmount()?;
    Ok(exit::OK)
}
