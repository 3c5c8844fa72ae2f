//! Pack files: many sealed blobs of one kind, each preceded by a small plaintext frame, followed by
//! an encrypted header listing them and an 8-byte trailer.
//!
//! ```text
//! "CRNP" v1 (8)
//! repeated: frame (44) = kind u8 | compression u8 | 0u16 | plain_len u32 | stored_len u32 | id [32]
//!           sealed blob (stored_len bytes)
//! sealed header (kind PackHeader, empty context):
//!           count u32 | count × entry (48) = kind u8 | compression u8 | 0u16 | offset u32
//!                                           | stored_len u32 | plain_len u32 | id [32]
//! trailer (8) = sealed_header_len u32 | "CRNE"
//! ```
//! The header is authoritative; the frames let a damaged header's blobs still be found.

use crate::blob::{BlobKind, Compression, MAX_BLOB_PLAIN, SealedBlob};
use crate::crypto::{MasterKey, Nonce, SEAL_OVERHEAD, SealKind};
use crate::object::{HEADER_LEN, ObjectKind};
use crate::wire::{Reader, Writer};
use crate::{BlobId, FormatError, Result};

/// Length of the per-blob plaintext frame.
pub const FRAME_LEN: usize = 44;
/// Length of one entry in a pack header or index file.
pub const ENTRY_LEN: usize = 48;
/// Length of the trailer.
pub const TRAILER_LEN: usize = 8;
/// Trailer magic.
pub const TRAILER_MAGIC: [u8; 4] = *b"CRNE";
/// Largest pack accepted: offsets are `u32`.
pub const MAX_PACK_LEN: u64 = u32::MAX as u64;
/// Largest stored blob accepted.
pub const MAX_STORED_BLOB: u32 = MAX_BLOB_PLAIN + 1024;

/// Where one blob lives inside a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct BlobEntry {
    pub kind: BlobKind,
    pub id: BlobId,
    pub compression: Compression,
    /// Offset of the sealed bytes from the start of the pack.
    pub offset: u32,
    /// Length of the sealed bytes.
    pub stored_len: u32,
    /// Length of the plaintext.
    pub plain_len: u32,
}

impl BlobEntry {
    pub(crate) fn encode(&self, w: &mut Writer) {
        w.u8(self.kind as u8);
        w.u8(self.compression as u8);
        w.u16(0);
        w.u32(self.offset);
        w.u32(self.stored_len);
        w.u32(self.plain_len);
        w.raw(self.id.as_bytes());
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let kind = BlobKind::from_u8(r.u8()?)?;
        let compression = Compression::from_u8(r.u8()?)?;
        if r.u16()? != 0 {
            return Err(FormatError::Invalid { what: "blob entry", reason: "reserved field is not zero" });
        }
        let entry = BlobEntry {
            kind,
            compression,
            offset: r.u32()?,
            stored_len: r.u32()?,
            plain_len: r.u32()?,
            id: BlobId::from_bytes(r.id()?),
        };
        entry.check_lengths()?;
        Ok(entry)
    }

    fn check_lengths(&self) -> Result<()> {
        if self.plain_len > MAX_BLOB_PLAIN {
            return Err(FormatError::TooLarge {
                what: "blob entry",
                len: self.plain_len.into(),
                max: MAX_BLOB_PLAIN.into(),
            });
        }
        if self.stored_len > MAX_STORED_BLOB || (self.stored_len as usize) < SEAL_OVERHEAD {
            return Err(FormatError::Invalid { what: "blob entry", reason: "stored length out of range" });
        }
        Ok(())
    }

    /// End offset of the sealed bytes.
    pub fn end(&self) -> u64 {
        u64::from(self.offset) + u64::from(self.stored_len)
    }
}

/// Builds one pack in memory.
#[derive(Debug)]
pub struct PackBuilder {
    kind: BlobKind,
    buf: Vec<u8>,
    entries: Vec<BlobEntry>,
}

impl PackBuilder {
    /// An empty pack for blobs of `kind`.
    pub fn new(kind: BlobKind, capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity);
        buf.extend_from_slice(&ObjectKind::Pack.header());
        Self { kind, buf, entries: Vec::new() }
    }

    /// The kind of blob this pack holds.
    pub fn kind(&self) -> BlobKind {
        self.kind
    }

    /// Bytes so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether no blob was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Blobs added so far.
    pub fn entries(&self) -> &[BlobEntry] {
        &self.entries
    }

    /// Appends a blob. Panics if its kind differs from the pack's: mixing kinds is a program bug.
    pub fn add(&mut self, blob: &SealedBlob) {
        assert_eq!(blob.kind, self.kind, "data and tree blobs go to separate packs");
        let stored_len = u32::try_from(blob.sealed.len()).expect("blob sizes are bounded far below 4 GiB");
        let mut w = Writer::with_buffer(std::mem::take(&mut self.buf));
        w.u8(blob.kind as u8);
        w.u8(blob.compression as u8);
        w.u16(0);
        w.u32(blob.plain_len);
        w.u32(stored_len);
        w.raw(blob.id.as_bytes());
        let offset = u32::try_from(w.len()).expect("packs are closed long before 4 GiB");
        w.raw(&blob.sealed);
        self.buf = w.into_bytes();
        self.entries.push(BlobEntry {
            kind: blob.kind,
            id: blob.id,
            compression: blob.compression,
            offset,
            stored_len,
            plain_len: blob.plain_len,
        });
    }

    /// Seals the header, appends the trailer and returns the stored bytes with the entries.
    pub fn finish(self, key: &MasterKey, nonce: &Nonce) -> (Vec<u8>, Vec<BlobEntry>) {
        let mut w = Writer::new();
        w.u32(self.entries.len() as u32);
        for e in &self.entries {
            e.encode(&mut w);
        }
        let sealed = key.seal(SealKind::PackHeader, &[], nonce, &w.into_bytes());
        let mut buf = self.buf;
        buf.extend_from_slice(&sealed);
        buf.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
        buf.extend_from_slice(&TRAILER_MAGIC);
        (buf, self.entries)
    }
}

/// Reads the trailer (the last [`TRAILER_LEN`] bytes of a pack of `pack_len` bytes) and returns the
/// length of the sealed header that precedes it.
pub fn read_trailer(trailer: &[u8], pack_len: u64) -> Result<u32> {
    let what = "pack trailer";
    if trailer.len() != TRAILER_LEN {
        return Err(FormatError::Truncated { what, need: TRAILER_LEN as u64, got: trailer.len() as u64 });
    }
    if trailer[4..] != TRAILER_MAGIC {
        let found = trailer[4..].try_into().expect("four bytes");
        return Err(FormatError::BadMagic { what, found });
    }
    let len = u32::from_le_bytes(trailer[..4].try_into().expect("four bytes"));
    let max = pack_len.saturating_sub((HEADER_LEN + TRAILER_LEN) as u64);
    if u64::from(len) > max || (len as usize) < SEAL_OVERHEAD + 4 {
        return Err(FormatError::Invalid { what, reason: "header length does not fit the pack" });
    }
    Ok(len)
}

/// Opens a pack's sealed header and checks that every entry lies inside the blob area of a pack of
/// `pack_len` bytes, in order and without overlap.
pub fn decode_header(sealed: &[u8], key: &MasterKey, pack_len: u64) -> Result<Vec<BlobEntry>> {
    let plain = key.open(SealKind::PackHeader, &[], sealed)?;
    let mut r = Reader::new(&plain, "pack header");
    let count = r.count(ENTRY_LEN)?;
    let blob_area_end = pack_len.saturating_sub((TRAILER_LEN + sealed.len()) as u64);
    let mut entries = Vec::with_capacity(count);
    let mut next_free = HEADER_LEN as u64;
    for _ in 0..count {
        let e = BlobEntry::decode(&mut r)?;
        if u64::from(e.offset) < next_free + FRAME_LEN as u64 || e.end() > blob_area_end {
            return Err(FormatError::Invalid {
                what: "pack header",
                reason: "blob entry outside the pack or overlapping",
            });
        }
        next_free = e.end();
        entries.push(e);
    }
    r.finish()?;
    Ok(entries)
}

/// Walks a whole pack's plaintext frames, without the key, and returns the entries they describe.
/// Stops at the first frame that does not parse (the header or damage); used to salvage blobs of a
/// pack whose header is damaged. Every returned entry still has to authenticate when opened.
pub fn scan_frames(pack: &[u8]) -> Result<Vec<BlobEntry>> {
    let mut r = Reader::new(pack, "pack");
    ObjectKind::Pack.read_header(&mut r)?;
    let mut entries = Vec::new();
    while r.remaining() >= FRAME_LEN {
        let mut probe = r.clone();
        let frame = (|| -> Result<BlobEntry> {
            let kind = BlobKind::from_u8(probe.u8()?)?;
            let compression = Compression::from_u8(probe.u8()?)?;
            if probe.u16()? != 0 {
                return Err(FormatError::Invalid { what: "pack frame", reason: "reserved field is not zero" });
            }
            let plain_len = probe.u32()?;
            let stored_len = probe.u32()?;
            let id = BlobId::from_bytes(probe.id()?);
            let offset = u32::try_from(probe.position()).map_err(|_| FormatError::TooLarge {
                what: "pack",
                len: probe.position() as u64,
                max: MAX_PACK_LEN,
            })?;
            let e = BlobEntry { kind, id, compression, offset, stored_len, plain_len };
            e.check_lengths()?;
            probe.take(stored_len as usize)?;
            Ok(e)
        })();
        match frame {
            Ok(e) => {
                entries.push(e);
                r = probe;
            }
            Err(_) => break,
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::{open_blob, seal_blob};
    use crate::crypto::MASTER_SECRET_LEN;

    #[test]
    fn build_and_read_back() {
        let key = MasterKey::from_random([8; MASTER_SECRET_LEN]);
        let mut pb = PackBuilder::new(BlobKind::Data, 1024);
        let blobs: Vec<Vec<u8>> = vec![b"one".to_vec(), b"two two two two two two two two".to_vec(), vec![0u8; 1000]];
        for (i, b) in blobs.iter().enumerate() {
            pb.add(&seal_blob(&key, BlobKind::Data, key.blob_id(b), b, Some(1), &[i as u8; 24]));
        }
        let (bytes, entries) = pb.finish(&key, &[9; 24]);
        let len = bytes.len() as u64;
        let hlen = read_trailer(&bytes[bytes.len() - TRAILER_LEN..], len).expect("trailer");
        let start = bytes.len() - TRAILER_LEN - hlen as usize;
        let header = decode_header(&bytes[start..bytes.len() - TRAILER_LEN], &key, len).expect("header");
        assert_eq!(header, entries);
        assert_eq!(scan_frames(&bytes).expect("frames"), entries);
        for (e, b) in entries.iter().zip(&blobs) {
            let sealed = &bytes[e.offset as usize..e.end() as usize];
            assert_eq!(&open_blob(&key, e.kind, e.id, e.compression, e.plain_len, sealed).expect("opens"), b);
        }
    }
}
