//! One module per command. Each builds a plan or report that the command line renders.

pub mod backup;
pub mod cat;
pub mod check;
pub mod copy;
pub mod diff;
pub mod dump;
pub mod find;
pub mod forget;
pub mod init;
pub mod key;
pub mod ls;
pub mod mount;
pub mod pg_backup;
pub mod pg_drill;
pub mod pg_restore;
pub mod prune;
pub mod repair;
pub mod restore;
pub mod rewrite;
pub mod snapshots;
pub mod stats;
pub mod status;
pub mod tag;
pub mod unlock;

/// Deepest folder nesting that walks over a snapshot's trees follow. A Linux path holds at most
/// 4096 bytes, so no folder that can be backed up or restored is this deep; a hostile tree chain
/// could otherwise exhaust the stack of a recursive walk.
pub const MAX_TREE_DEPTH: usize = 2048;
