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
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {}
