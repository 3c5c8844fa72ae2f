//! `unlock`: removes lock files that no longer protect anything (stale: not refreshed in time, or
//! left on this host by a process that is gone), or every lock with `remove_all`. Never needed
//! for cairn's own locks to expire; useful to tidy up, and to clear locks of hosts that are gone.

use crate::Repository;
use crate::error::Result;
use crate::lock;

/// What `unlock` removed.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct UnlockReport {
    /// Lock files removed.
    pub removed: usize,
    /// Whether live locks were removed too (`--remove-all`).
    pub remove_all: bool,
}

/// Removes stale locks, or all locks with `remove_all`.
pub fn unlock(repo: &Repository, remove_all: bool) -> Result<UnlockReport> {
    let removed = if remove_all { lock::remove_all(repo)? } else { lock::remove_stale(repo)? };
    Ok(UnlockReport { removed, remove_all })
}
