//! Index files: for each pack, its size and the blobs it holds. Written after the packs they name
//! are durable. An index file may supersede older ones (written by prune and repair); readers ignore
//! a superseded index file that still exists.
//!
//! ```text
//! header "CRNI" v1 | sealed(kind Index, context = header) of:
//!   supersedes_count u32 | supersedes_count × index id [32]
//!   | pack_count u32 | pack_count × ( pack id [32] | pack_len u64 | blob_count u32 | blob_count × entry (48) )
//! ```

use crate::crypto::{MasterKey, Nonce, SealKind};
use crate::object::{HEADER_LEN, ObjectKind};
use crate::pack::{BlobEntry, ENTRY_LEN, MAX_PACK_LEN};
use crate::wire::{Reader, Writer};
use crate::{FormatError, IndexId, PackId, Result};

/// One pack as an index file lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IndexedPack {
    pub id: PackId,
    /// Size of the pack file in bytes.
    pub len: u64,
    pub blobs: Vec<BlobEntry>,
}

/// A decoded index file.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct IndexFile {
    pub supersedes: Vec<IndexId>,
    pub packs: Vec<IndexedPack>,
}

impl IndexFile {
    /// Sealed, stored bytes.
    pub fn encode(&self, key: &MasterKey, nonce: &Nonce) -> Vec<u8> {
        let header = ObjectKind::Index.header();
        let mut w = Writer::new();
        w.u32(self.supersedes.len() as u32);
        for id in &self.supersedes {
            w.raw(id.as_bytes());
        }
        w.u32(self.packs.len() as u32);
        for p in &self.packs {
            w.raw(p.id.as_bytes());
            w.u64(p.len);
            w.u32(p.blobs.len() as u32);
            for b in &p.blobs {
                b.encode(&mut w);
            }
        }
        let mut out = header.to_vec();
        out.extend_from_slice(&key.seal(SealKind::Index, &header, nonce, &w.into_bytes()));
        out
    }

    /// Opens and decodes stored bytes.
    pub fn decode(bytes: &[u8], key: &MasterKey) -> Result<Self> {
        let mut r = Reader::new(bytes, "index file");
        ObjectKind::Index.read_header(&mut r)?;
        let plain = key.open(SealKind::Index, &bytes[..HEADER_LEN], r.take(r.remaining())?)?;
        let mut r = Reader::new(&plain, "index file");
        let n = r.count(32)?;
        let mut supersedes = Vec::with_capacity(n);
        for _ in 0..n {
            supersedes.push(IndexId::from_bytes(r.id()?));
        }
        let n = r.count(32 + 8 + 4)?;
        let mut packs = Vec::with_capacity(n);
        for _ in 0..n {
            let id = PackId::from_bytes(r.id()?);
            let len = r.u64()?;
            if len > MAX_PACK_LEN {
                return Err(FormatError::TooLarge { what: "index file", len, max: MAX_PACK_LEN });
            }
            let m = r.count(ENTRY_LEN)?;
            let mut blobs = Vec::with_capacity(m);
            for _ in 0..m {
                let b = BlobEntry::decode(&mut r)?;
                if b.end() > len {
                    return Err(FormatError::Invalid {
                        what: "index file",
                        reason: "blob entry beyond the end of its pack",
                    });
                }
                blobs.push(b);
            }
            packs.push(IndexedPack { id, len, blobs });
        }
        r.finish()?;
        Ok(IndexFile { supersedes, packs })
    }
}
