//! The cairn repository format: every byte the repository stores, as types with encode and decode.
//!
//! This crate knows bytes and nothing else. It never touches a file, socket or clock and has no random
//! number generator of its own: nonces, salts and times are parameters, so every encoding is
//! deterministic under test. Every decoder is total: any input yields a value or a [`FormatError`],
//! never a panic, and every length read from input is bounded before anything is allocated.
//!
//! The normative description of these encodings is `spec/` at the root of the repository.

pub mod blob;
pub mod chunker;
pub mod config;
pub mod crypto;
mod error;
pub mod id;
pub mod index;
pub mod key;
pub mod lock;
pub mod object;
pub mod pack;
pub mod record;
pub mod snapshot;
pub mod tree;
pub mod wire;

pub use error::FormatError;
pub use id::{BlobId, IndexId, KeyId, PackId, RecordId, SnapshotId, TreeId};

/// Result type of every fallible function in this crate.
pub type Result<T, E = FormatError> = std::result::Result<T, E>;
