//! One module per command: its clap arguments and its printing.

pub mod backup;
pub mod cat;
pub mod check;
pub mod copy;
pub mod diff;
pub mod dump;
pub mod find;
pub mod forget;
pub mod generate;
pub mod init;
pub mod key;
pub mod ls;
pub mod mount;
pub mod pg;
pub mod prune;
pub mod repair;
pub mod restore;
pub mod rewrite;
pub mod run;
pub mod snapshots;
pub mod stats;
pub mod status;
pub mod tag;
pub mod unlock;
pub mod version;

use std::path::PathBuf;

use anyhow::{Context, Result};
use cairn_engine::backend::Location;
use cairn_engine::commands::snapshots::SnapshotFilter;
use cairn_engine::{OpenOptions, Repository};

use crate::{GlobalArgs, password};

/// From now on SIGINT (Ctrl-C) and SIGTERM ask the engine to stop at its next safe point (exit code
/// 130); a second one ends the process at once. Only for the commands that poll the request
/// (backup, restore); the others keep the default, ending at once, which they are built to survive.
pub fn stop_on_signals() -> Result<()> {
    let flag = cairn_engine::cancel::flag();
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // Registered first, so it sees the flag as it was before this signal set it.
        signal_hook::flag::register_conditional_shutdown(signal, i32::from(crate::exit::INTERRUPTED), flag.clone())
            .context("setting up signal handling")?;
        signal_hook::flag::register(signal, flag.clone()).context("setting up signal handling")?;
    }
    Ok(())
}

/// The repository location from `-r/--repo` or `CAIRN_REPOSITORY`.
pub fn location(global: &GlobalArgs) -> Result<Location> {
    let repo = global.repo.as_deref().context("no repository given: use -r/--repo or set CAIRN_REPOSITORY")?;
    Ok(Location::parse_with_options(repo, &global.options)?)
}

/// Where the local cache lives, per the global options.
pub fn open_options(global: &GlobalArgs) -> OpenOptions {
    if global.no_cache {
        return OpenOptions { cache_dir: None };
    }
    let dir = global.cache_dir.clone().or_else(|| {
        std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .map(|d| d.join("cairn"))
    });
    OpenOptions { cache_dir: dir }
}

/// Opens and unlocks the repository.
pub fn open(global: &GlobalArgs) -> Result<Repository> {
    let location = location(global)?;
    // A missing repository is reported before asking for a password.
    let probe = cairn_engine::backend::Backend::open(&location, false);
    if let Err(e) = probe {
        return Err(e.into());
    }
    let password = password::get(global, false)?;
    let repo = Repository::open(&location, password.as_bytes(), &open_options(global))?;
    warn_about_cache(&repo);
    Ok(repo)
}

/// One line when the local cache was rebuilt or could not be used (the command goes on).
pub fn warn_about_cache(repo: &Repository) {
    if let Some(notice) = repo.cache_notice() {
        eprintln!("warning: {notice}");
    }
}

/// Filters shared by commands that pick snapshots.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct FilterArgs {
    /// Only snapshots of this host (repeatable)
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Only snapshots with these tags (repeatable; `a,b` needs both)
    #[arg(long = "tag", value_name = "TAGS")]
    pub tags: Vec<String>,
    /// Only snapshots that include this path (repeatable)
    #[arg(long = "path", value_name = "PATH")]
    pub paths: Vec<String>,
}

impl FilterArgs {
    pub fn to_filter(&self) -> SnapshotFilter {
        SnapshotFilter { hosts: self.hosts.clone(), tags: self.tags.clone(), paths: self.paths.clone() }
    }
}
