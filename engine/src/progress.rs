//! How long-running operations report progress and warnings without printing anything themselves.

use std::path::Path;

/// Receives progress from an operation. Every method has a do-nothing default; implementations must
/// be cheap, as some are called for every chunk.
pub trait Progress: Sync {
    /// Whether a total should be computed for an ETA (costs an extra metadata walk).
    fn wants_total(&self) -> bool {
        false
    }
    /// The total number of bytes expected, once known.
    fn set_total(&self, _bytes: u64) {}
    /// Bytes processed since the last call.
    fn add_bytes(&self, _bytes: u64) {}
    /// The item being worked on.
    fn set_current(&self, _path: &Path) {}
    /// A problem that did not stop the operation.
    fn warn(&self, _message: &str) {}
    /// The number of files expected, once known (only when [`Progress::wants_total`]).
    fn set_total_files(&self, _files: u64) {}
    /// One entry is done, and what was done with it (`cairn backup -v`, `cairn restore -v`).
    /// `size` is the file's size (0 for other entries).
    fn item_done(&self, _path: &Path, _action: ItemAction, _size: u64) {}
    /// A fact worth telling a user who asked for details, e.g. the parent snapshot a backup uses.
    fn note(&self, _message: &str) {}
}

/// What an operation did with one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemAction {
    /// Backup: not in the parent snapshot.
    New,
    /// Backup: in the parent, read again because it changed.
    Modified,
    /// Backup: in the parent and unchanged (not read).
    Unchanged,
    /// Restore: written to the target (or would be, on a dry run).
    Restored,
}

impl ItemAction {
    /// The word restic prints for it (`new`, `modified`, `unchanged`, `restored`).
    pub fn as_str(self) -> &'static str {
        match self {
            ItemAction::New => "new",
            ItemAction::Modified => "modified",
            ItemAction::Unchanged => "unchanged",
            ItemAction::Restored => "restored",
        }
    }
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {}
