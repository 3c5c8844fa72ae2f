//! Index files: for each pack, its size and the blobs it holds. Written after the packs they name
//! are durable. An index file may supersede older ones (written by prune and repair); readers ignore
//! a superseded index file that still exists.
//!
//! Prune also records *condemned* packs here: packs whose blobs no snapshot used when the prune
//! ran, kept out of lookups but not yet deleted because a backup that started earlier might still
//! reference them. Their blob lists are kept so that a later prune can restore them to use.
//!
//! ```text
//! header "CRNI" v1 | sealed(kind Index, context = header) of:
//!   supersedes_count u32 | supersedes_count × index id [32]
//!   | pack_count u32 | pack_count × pack
//!   | condemned_count u32 | condemned_count × ( since_ns i64 | pack )
//! pack = pack id [32] | pack_len u64 | blob_count u32 | blob_count × entry (48)
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

/// A pack that prune found unused and will delete once no earlier backup can need it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CondemnedPack {
    /// Unix time in nanoseconds when the pack was first condemned.
    pub since_ns: i64,
    pub pack: IndexedPack,
}

/// A decoded index file.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct IndexFile {
    pub supersedes: Vec<IndexId>,
    pub packs: Vec<IndexedPack>,
    pub condemned: Vec<CondemnedPack>,
}

fn encode_pack(w: &mut Writer, p: &IndexedPack) {
    w.raw(p.id.as_bytes());
    w.u64(p.len);
    w.u32(p.blobs.len() as u32);
    for b in &p.blobs {
        b.encode(w);
    }
}

fn decode_pack(r: &mut Reader<'_>) -> Result<IndexedPack> {
    let id = PackId::from_bytes(r.id()?);
    let len = r.u64()?;
    if len > MAX_PACK_LEN {
        return Err(FormatError::TooLarge { what: "index file", len, max: MAX_PACK_LEN });
    }
    let m = r.count(ENTRY_LEN)?;
    let mut blobs = Vec::with_capacity(m);
    for _ in 0..m {
        let b = BlobEntry::decode(r)?;
        if b.end() > len {
            return Err(FormatError::Invalid { what: "index file", reason: "blob entry beyond the end of its pack" });
        }
        blobs.push(b);
    }
    Ok(IndexedPack { id, len, blobs })
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
            encode_pack(&mut w, p);
        }
        w.u32(self.condemned.len() as u32);
        for c in &self.condemned {
            w.i64(c.since_ns);
            encode_pack(&mut w, &c.pack);
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
            packs.push(decode_pack(&mut r)?);
        }
        let n = r.count(8 + 32 + 8 + 4)?;
        let mut condemned = Vec::with_capacity(n);
        for _ in 0..n {
            let since_ns = r.i64()?;
            condemned.push(CondemnedPack { since_ns, pack: decode_pack(&mut r)? });
        }
        r.finish()?;
        Ok(IndexFile { supersedes, packs, condemned })
    }
}
