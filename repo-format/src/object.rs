//! The 8-byte header every stored object starts with: a 4-byte magic naming its kind and a
//! little-endian `u32` format version. Decoders check both before reading anything else.

use crate::wire::{Reader, Writer};
use crate::{FormatError, Result};

/// The format version this crate writes and the only one it reads.
pub const FORMAT_VERSION: u32 = 1;

/// Length of the magic + version header.
pub const HEADER_LEN: usize = 8;

/// The kinds of stored object, each with its own magic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    Config,
    Key,
    Pack,
    Index,
    Snapshot,
    Lock,
    /// A record of an operation (spec/records.md).
    Record,
    /// The plaintext of a tree blob also carries a header, so a tree decoded from the wrong blob is
    /// refused before its fields are read.
    Tree,
}

impl ObjectKind {
    /// The 4-byte magic of this kind.
    pub const fn magic(self) -> [u8; 4] {
        match self {
            ObjectKind::Config => *b"CRNC",
            ObjectKind::Key => *b"CRNK",
            ObjectKind::Pack => *b"CRNP",
            ObjectKind::Index => *b"CRNI",
            ObjectKind::Snapshot => *b"CRNS",
            ObjectKind::Lock => *b"CRNL",
            ObjectKind::Record => *b"CRNR",
            ObjectKind::Tree => *b"CRNT",
        }
    }

    /// A human name for messages.
    pub const fn what(self) -> &'static str {
        match self {
            ObjectKind::Config => "config",
            ObjectKind::Key => "key file",
            ObjectKind::Pack => "pack",
            ObjectKind::Index => "index file",
            ObjectKind::Snapshot => "snapshot",
            ObjectKind::Lock => "lock file",
            ObjectKind::Record => "record",
            ObjectKind::Tree => "tree",
        }
    }

    /// The header bytes of this kind at the current version.
    pub fn header(self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..4].copy_from_slice(&self.magic());
        out[4..].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out
    }

    /// Writes the header.
    pub fn write_header(self, w: &mut Writer) {
        w.raw(&self.header());
    }

    /// Writes the header with an explicit version, for a kind with more than one (trees).
    pub fn write_header_version(self, w: &mut Writer, version: u32) {
        w.raw(&self.magic());
        w.u32(version);
    }

    /// Reads and checks the header of a kind that has versions `FORMAT_VERSION..=newest`: magic
    /// first, then version, which is returned.
    pub fn read_header_versions(self, r: &mut Reader<'_>, newest: u32) -> Result<u32> {
        let what = self.what();
        let magic: [u8; 4] = r
            .take(4)
            .map_err(|_| FormatError::Truncated { what, need: HEADER_LEN as u64, got: r.remaining() as u64 })?
            .try_into()
            .expect("take(4) returns four bytes");
        if magic != self.magic() {
            return Err(FormatError::BadMagic { what, found: magic });
        }
        let version = r.u32()?;
        if !(FORMAT_VERSION..=newest).contains(&version) {
            return Err(FormatError::UnsupportedVersion { what, version, supported: newest });
        }
        Ok(version)
    }

    /// Reads and checks the header: magic first, then version.
    pub fn read_header(self, r: &mut Reader<'_>) -> Result<()> {
        self.read_header_versions(r, FORMAT_VERSION).map(|_| ())
    }
}
