//! The repository config: format version, repository id, chunker and pack parameters.
//!
//! ```text
//! header "CRNC" v1 | sealed(kind Config, context = header) of:
//!   repository_id [32] | min u32 | avg u32 | max u32 | compression_level i32
//!   | data_pack_target u32 | tree_pack_target u32
//! ```

use crate::chunker::ChunkerParams;
use crate::crypto::{MasterKey, Nonce, SealKind};
use crate::object::{HEADER_LEN, ObjectKind};
use crate::wire::{Reader, Writer};
use crate::{FormatError, Result};

/// Smallest and largest target pack sizes accepted.
pub const PACK_TARGET_RANGE: std::ops::RangeInclusive<u32> = (64 * 1024)..=(512 * 1024 * 1024);

/// Length of every stored config: header (8), nonce (24), plaintext (56), tag (16).
pub const STORED_LEN: usize = HEADER_LEN + 24 + 56 + 16;

/// Decoded repository config.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Config {
    /// Random id of the repository (names its local cache).
    #[serde(serialize_with = "serialize_hex")]
    pub repository_id: [u8; 32],
    pub chunker: ChunkerParams,
    /// zstd level for blobs (1..=19; negative levels are zstd's fast modes).
    pub compression_level: i32,
    /// A data pack is closed once it reaches this size.
    pub data_pack_target: u32,
    /// A tree pack is closed once it reaches this size.
    pub tree_pack_target: u32,
}

fn serialize_hex<S: serde::Serializer>(v: &[u8; 32], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&crate::id::to_hex(v))
}

impl Config {
    /// Defaults for a new repository with the given random id.
    pub fn new(repository_id: [u8; 32]) -> Self {
        Config {
            repository_id,
            chunker: ChunkerParams::DEFAULT,
            compression_level: 1,
            data_pack_target: 16 * 1024 * 1024,
            tree_pack_target: 4 * 1024 * 1024,
        }
    }

    /// Checks every field's range.
    pub fn validate(self) -> Result<Self> {
        self.chunker.validate()?;
        if !(-7..=19).contains(&self.compression_level) {
            return Err(FormatError::Invalid { what: "config", reason: "compression level outside -7..=19" });
        }
        if !PACK_TARGET_RANGE.contains(&self.data_pack_target) || !PACK_TARGET_RANGE.contains(&self.tree_pack_target) {
            return Err(FormatError::Invalid { what: "config", reason: "pack target size outside 64 KiB..=512 MiB" });
        }
        Ok(self)
    }

    /// Sealed, stored bytes.
    pub fn encode(&self, key: &MasterKey, nonce: &Nonce) -> Vec<u8> {
        let header = ObjectKind::Config.header();
        let mut w = Writer::new();
        w.raw(&self.repository_id);
        w.u32(self.chunker.min_size);
        w.u32(self.chunker.avg_size);
        w.u32(self.chunker.max_size);
        w.i32(self.compression_level);
        w.u32(self.data_pack_target);
        w.u32(self.tree_pack_target);
        let mut out = header.to_vec();
        out.extend_from_slice(&key.seal(SealKind::Config, &header, nonce, &w.into_bytes()));
        out
    }

    /// Checks what can be checked without the key: the magic, the version and the length. A config
    /// that fails this cannot be opened by any password.
    pub fn check_sealed(bytes: &[u8]) -> Result<()> {
        let mut r = Reader::new(bytes, "config");
        ObjectKind::Config.read_header(&mut r)?;
        if bytes.len() < STORED_LEN {
            return Err(FormatError::Truncated { what: "config", need: STORED_LEN as u64, got: bytes.len() as u64 });
        }
        if bytes.len() > STORED_LEN {
            return Err(FormatError::Invalid { what: "config", reason: "longer than a config (104 bytes)" });
        }
        Ok(())
    }

    /// Opens and decodes stored bytes.
    pub fn decode(bytes: &[u8], key: &MasterKey) -> Result<Self> {
        let mut r = Reader::new(bytes, "config");
        ObjectKind::Config.read_header(&mut r)?;
        let plain = key.open(SealKind::Config, &bytes[..HEADER_LEN], r.take(r.remaining())?)?;
        let mut r = Reader::new(&plain, "config");
        let config = Config {
            repository_id: r.id()?,
            chunker: ChunkerParams { min_size: r.u32()?, avg_size: r.u32()?, max_size: r.u32()? },
            compression_level: r.i32()?,
            data_pack_target: r.u32()?,
            tree_pack_target: r.u32()?,
        };
        r.finish()?;
        config.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MASTER_SECRET_LEN;

    #[test]
    fn check_sealed_accepts_a_config_and_refuses_a_truncated_or_foreign_one() {
        let key = MasterKey::from_random([7; MASTER_SECRET_LEN]);
        let bytes = Config::new([3; 32]).encode(&key, &[9; 24]);
        assert_eq!(bytes.len(), STORED_LEN);
        assert!(Config::check_sealed(&bytes).is_ok());
        for len in [0, 4, 8, STORED_LEN / 2, STORED_LEN - 1] {
            assert!(Config::check_sealed(&bytes[..len]).is_err(), "{len} bytes");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Config::check_sealed(&longer).is_err());
        let mut foreign = bytes;
        foreign[0] ^= 1;
        assert!(Config::check_sealed(&foreign).is_err());
    }
}
