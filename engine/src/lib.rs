//! The cairn engine: every side effect of the backup tool lives here — storage backends, the
//! chunking pipeline, the local cache, snapshots, restore.
//!
//! The engine never prints. It reports through [`progress::Progress`] and returns plans, reports and
//! statistics that the command line renders.

pub mod backend;
pub mod cache;
pub mod cancel;
mod chunk_pipeline;
pub mod commands;
pub mod error;
mod fault;
pub mod filter;
pub mod lock;
pub mod metrics;
pub mod pack_saver;
pub mod pg_cluster;
pub mod postgres;
pub mod progress;
pub mod read_ahead;
pub mod records;
pub mod repository;
pub mod retention;
pub mod stream_magic;
pub mod xattrs;

pub use error::{Error, ErrorKind, Result};
pub use repository::{InitOptions, OpenOptions, Repository};

/// The program version recorded in snapshots.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
