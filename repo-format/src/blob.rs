//! Blobs: the unit of deduplication. A blob's plaintext is compressed with zstd when that makes it
//! smaller, then sealed with associated data `kind || blob id`, so a blob cannot be served in place
//! of another.

use crate::crypto::{MasterKey, Nonce, SealKind};
use crate::{BlobId, FormatError, Result};

/// Largest plaintext a blob may have: 256 MiB (a huge directory's tree is the largest blob).
pub const MAX_BLOB_PLAIN: u32 = 256 * 1024 * 1024;

/// Data (file content) or tree (directory listing). Stored in separate packs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum BlobKind {
    Data = 1,
    Tree = 2,
}

impl BlobKind {
    /// Decodes the kind byte.
    pub fn from_u8(v: u8) -> Result<Self> {
        match v {
            1 => Ok(BlobKind::Data),
            2 => Ok(BlobKind::Tree),
            _ => Err(FormatError::Invalid { what: "blob entry", reason: "unknown blob kind" }),
        }
    }

    fn seal_kind(self) -> SealKind {
        match self {
            BlobKind::Data => SealKind::DataBlob,
            BlobKind::Tree => SealKind::TreeBlob,
        }
    }
}

/// How a blob's plaintext was stored before sealing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum Compression {
    Raw = 0,
    Zstd = 1,
}

impl Compression {
    /// Decodes the compression byte.
    pub fn from_u8(v: u8) -> Result<Self> {
        match v {
            0 => Ok(Compression::Raw),
            1 => Ok(Compression::Zstd),
            _ => Err(FormatError::Invalid { what: "blob entry", reason: "unknown compression" }),
        }
    }
}

/// A blob ready to be put into a pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedBlob {
    pub kind: BlobKind,
    pub id: BlobId,
    pub compression: Compression,
    pub plain_len: u32,
    /// `nonce || ciphertext || tag`.
    pub sealed: Vec<u8>,
}

/// Compresses (when smaller) and seals a blob whose id the caller already computed with
/// [`MasterKey::blob_id`]. `level` is the zstd level; `None` stores it raw.
pub fn seal_blob(
    key: &MasterKey,
    kind: BlobKind,
    id: BlobId,
    plaintext: &[u8],
    level: Option<i32>,
    nonce: &Nonce,
) -> SealedBlob {
    assert!(plaintext.len() <= MAX_BLOB_PLAIN as usize, "chunker and tree encoder bound blob sizes");
    let compressed = level.and_then(|l| compress(plaintext, l)).filter(|c| c.len() < plaintext.len());
    let (compression, body) = match &compressed {
        Some(c) => (Compression::Zstd, c.as_slice()),
        None => (Compression::Raw, plaintext),
    };
    SealedBlob {
        kind,
        id,
        compression,
        plain_len: plaintext.len() as u32,
        sealed: key.seal(kind.seal_kind(), id.as_bytes(), nonce, body),
    }
}

/// Opens a sealed blob, decompresses it, and checks that the plaintext hashes to `id`.
pub fn open_blob(
    key: &MasterKey,
    kind: BlobKind,
    id: BlobId,
    compression: Compression,
    plain_len: u32,
    sealed: &[u8],
) -> Result<Vec<u8>> {
    if plain_len > MAX_BLOB_PLAIN {
        return Err(FormatError::TooLarge { what: "blob", len: plain_len.into(), max: MAX_BLOB_PLAIN.into() });
    }
    let body = key.open(kind.seal_kind(), id.as_bytes(), sealed)?;
    let plain = match compression {
        Compression::Raw => body,
        // `plain_len` is bounded above, so this capacity is too: a frame that would decompress to
        // more is an error, never a larger allocation.
        Compression::Zstd => decompress(&body, plain_len as usize).ok_or(FormatError::Decompress { what: "blob" })?,
    };
    if plain.len() != plain_len as usize {
        return Err(FormatError::Decompress { what: "blob" });
    }
    if key.blob_id(&plain) != id {
        return Err(FormatError::Invalid { what: "blob", reason: "content does not hash to its id" });
    }
    Ok(plain)
}

thread_local! {
    // zstd contexts are reused per thread: creating one costs about as much as compressing a
    // 64 KiB chunk, and a backup seals thousands of blobs per second on every core. A context holds
    // no data between calls that could leak from one blob into another (each call is one frame).
    static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// One zstd frame of `plaintext` at `level`, or `None` when zstd fails.
fn compress(plaintext: &[u8], level: i32) -> Option<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            *slot = Some((level, zstd::bulk::Compressor::new(level).ok()?));
        }
        let (_, compressor) = slot.as_mut()?;
        compressor.compress(plaintext).ok()
    })
}

/// Decompresses one frame that must not expand past `capacity` bytes.
fn decompress(frame: &[u8], capacity: usize) -> Option<Vec<u8>> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new().ok()?);
        }
        slot.as_mut()?.decompress(frame, capacity).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MASTER_SECRET_LEN;

    #[test]
    fn compressible_and_incompressible_round_trip() {
        let key = MasterKey::from_random([5; MASTER_SECRET_LEN]);
        let text = b"INSERT INTO t VALUES (1, 'aaaa');\n".repeat(100);
        let id = key.blob_id(&text);
        let s = seal_blob(&key, BlobKind::Data, id, &text, Some(3), &[0; 24]);
        assert_eq!(s.compression, Compression::Zstd);
        assert!(s.sealed.len() < text.len());
        assert_eq!(
            open_blob(&key, BlobKind::Data, id, s.compression, s.plain_len, &s.sealed).as_deref(),
            Ok(&text[..])
        );
        // Swapping kind or id is refused.
        assert!(open_blob(&key, BlobKind::Tree, id, s.compression, s.plain_len, &s.sealed).is_err());
        let other = key.blob_id(b"other");
        assert!(open_blob(&key, BlobKind::Data, other, s.compression, s.plain_len, &s.sealed).is_err());

        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        let id = key.blob_id(&noise);
        let s = seal_blob(&key, BlobKind::Data, id, &noise, Some(3), &[1; 24]);
        assert_eq!(s.compression, Compression::Raw);
        assert_eq!(
            open_blob(&key, BlobKind::Data, id, s.compression, s.plain_len, &s.sealed).as_deref(),
            Ok(&noise[..])
        );
    }
}
