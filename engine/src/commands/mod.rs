//! One module per command. Each builds a plan or report that the command line renders.

pub mod backup;
pub mod cat;
pub mod check;
pub mod dump;
pub mod forget;
pub mod init;
pub mod key;
pub mod ls;
pub mod prune;
pub mod repair;
pub mod restore;
pub mod snapshots;
pub mod unlock;
