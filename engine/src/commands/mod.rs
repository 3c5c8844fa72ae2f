//! One module per command. Each builds a plan or report that the command line renders.

pub mod backup;
pub mod cat;
pub mod check;
pub mod diff;
pub mod dump;
pub mod find;
pub mod forget;
pub mod init;
pub mod key;
pub mod ls;
pub mod mount;
pub mod prune;
pub mod repair;
pub mod restore;
pub mod rewrite;
pub mod snapshots;
pub mod stats;
pub mod tag;
