//! Keys, hashing and the AEAD envelope.
//!
//! Every sealed object is `nonce (24) || ciphertext || tag (16)` under XChaCha20-Poly1305 with the
//! repository's data key. The associated data binds what the object is (and its id where it has one),
//! so a blob cannot be presented as another blob, nor an index as a snapshot. Nonces come from the
//! caller, who must draw them from a cryptographic random source.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::{Zeroize, Zeroizing};

use crate::id::ID_LEN;
use crate::wire::Reader;
use crate::{BlobId, FormatError, Result};

/// Nonce length of XChaCha20-Poly1305.
pub const NONCE_LEN: usize = 24;
/// Authentication tag length.
pub const TAG_LEN: usize = 16;
/// Bytes a sealed object adds to its plaintext.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;
/// Length of the master secret's encoding: data key, id key, chunker seed.
pub const MASTER_SECRET_LEN: usize = 32 + 32 + 8;

/// A 24-byte nonce; callers fill it from a cryptographic RNG.
pub type Nonce = [u8; NONCE_LEN];

/// What a sealed object is, bound into its associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SealKind {
    Config = 1,
    MasterSecret = 2,
    DataBlob = 3,
    TreeBlob = 4,
    PackHeader = 5,
    Index = 6,
    Snapshot = 7,
    Lock = 8,
    Record = 9,
}

impl SealKind {
    fn what(self) -> &'static str {
        match self {
            SealKind::Config => "config",
            SealKind::MasterSecret => "key file",
            SealKind::DataBlob => "data blob",
            SealKind::TreeBlob => "tree blob",
            SealKind::PackHeader => "pack header",
            SealKind::Index => "index file",
            SealKind::Snapshot => "snapshot",
            SealKind::Lock => "lock file",
            SealKind::Record => "record",
        }
    }
}

/// The repository's master secret: generated once at `init`, wrapped by every key file. Wiped from
/// memory when dropped; deliberately not comparable (`PartialEq` would invite comparisons that
/// are not constant-time): tests compare [`MasterKey::encode_secret`].
#[derive(Clone)]
pub struct MasterKey {
    data_key: [u8; 32],
    id_key: [u8; 32],
    chunker_seed: u64,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        self.data_key.zeroize();
        self.id_key.zeroize();
        self.chunker_seed.zeroize();
    }
}

impl zeroize::ZeroizeOnDrop for MasterKey {}

impl MasterKey {
    /// Builds a master key from random bytes supplied by the caller (wiped here after use).
    pub fn from_random(random: [u8; MASTER_SECRET_LEN]) -> Self {
        let random = Zeroizing::new(random);
        Self::decode_secret(&*random).expect("a buffer of the exact length always decodes")
    }

    /// The 72-byte encoding that key files wrap, wiped when dropped.
    pub fn encode_secret(&self) -> Zeroizing<[u8; MASTER_SECRET_LEN]> {
        let mut out = Zeroizing::new([0u8; MASTER_SECRET_LEN]);
        out[..32].copy_from_slice(&self.data_key);
        out[32..64].copy_from_slice(&self.id_key);
        out[64..].copy_from_slice(&self.chunker_seed.to_le_bytes());
        out
    }

    /// Decodes the 72-byte encoding.
    pub fn decode_secret(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "master secret");
        let data_key = r.id()?;
        let id_key = r.id()?;
        let chunker_seed = r.u64()?;
        r.finish()?;
        Ok(Self { data_key, id_key, chunker_seed })
    }

    /// The seed XOR'd into the chunker's gear table.
    pub fn chunker_seed(&self) -> u64 {
        self.chunker_seed
    }

    /// The id of a blob: keyed BLAKE3 of its plaintext under the id key.
    pub fn blob_id(&self, plaintext: &[u8]) -> BlobId {
        BlobId::from_bytes(*blake3::keyed_hash(&self.id_key, plaintext).as_bytes())
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&self.data_key.into())
    }

    /// Seals `plaintext` as `kind`, binding `context` (an id or header bytes) into the associated data.
    pub fn seal(&self, kind: SealKind, context: &[u8], nonce: &Nonce, plaintext: &[u8]) -> Vec<u8> {
        seal_with(&self.cipher(), kind, context, nonce, plaintext)
    }

    /// Opens an object sealed by [`MasterKey::seal`] with the same kind and context.
    pub fn open(&self, kind: SealKind, context: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
        open_with(&self.cipher(), kind, context, sealed, kind.what())
    }
}

fn associated_data(kind: SealKind, context: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(1 + context.len());
    aad.push(kind as u8);
    aad.extend_from_slice(context);
    aad
}

pub(crate) fn seal_with(
    cipher: &XChaCha20Poly1305,
    kind: SealKind,
    context: &[u8],
    nonce: &Nonce,
    plaintext: &[u8],
) -> Vec<u8> {
    let aad = associated_data(kind, context);
    let ciphertext = cipher
        .encrypt(&XNonce::from(*nonce), Payload { msg: plaintext, aad: &aad })
        .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory buffers");
    let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
    out.extend_from_slice(nonce);
    out.extend_from_slice(&ciphertext);
    out
}

pub(crate) fn open_with(
    cipher: &XChaCha20Poly1305,
    kind: SealKind,
    context: &[u8],
    sealed: &[u8],
    what: &'static str,
) -> Result<Vec<u8>> {
    if sealed.len() < SEAL_OVERHEAD {
        return Err(FormatError::Truncated { what, need: SEAL_OVERHEAD as u64, got: sealed.len() as u64 });
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().expect("split at NONCE_LEN");
    let aad = associated_data(kind, context);
    cipher
        .decrypt(&XNonce::from(nonce), Payload { msg: ciphertext, aad: &aad })
        .map_err(|_| FormatError::AuthenticationFailed { what })
}

/// The name of a stored object: unkeyed BLAKE3 of its stored bytes, so anyone can verify a file
/// against its name without the key.
pub fn object_name(stored: &[u8]) -> [u8; ID_LEN] {
    *blake3::hash(stored).as_bytes()
}

/// A cipher under an arbitrary 32-byte key (the argon2id-derived key-wrapping key).
pub(crate) fn cipher_for(key: &[u8; 32]) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(&(*key).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> MasterKey {
        MasterKey::from_random([7; MASTER_SECRET_LEN])
    }

    #[test]
    fn seal_open_round_trip_and_binding() {
        let k = key();
        let sealed = k.seal(SealKind::DataBlob, b"ctx", &[1; NONCE_LEN], b"hello");
        assert_eq!(sealed.len(), 5 + SEAL_OVERHEAD);
        assert_eq!(k.open(SealKind::DataBlob, b"ctx", &sealed).as_deref(), Ok(&b"hello"[..]));
        // Another kind or another context must not open it.
        assert!(k.open(SealKind::TreeBlob, b"ctx", &sealed).is_err());
        assert!(k.open(SealKind::DataBlob, b"ctX", &sealed).is_err());
        // Any flipped bit fails authentication.
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert_eq!(
                k.open(SealKind::DataBlob, b"ctx", &bad),
                Err(FormatError::AuthenticationFailed { what: "data blob" })
            );
        }
        assert!(matches!(k.open(SealKind::DataBlob, b"ctx", &sealed[..10]), Err(FormatError::Truncated { .. })));
    }

    #[test]
    fn blob_ids_are_keyed() {
        let a = MasterKey::from_random([1; MASTER_SECRET_LEN]);
        let b = MasterKey::from_random([2; MASTER_SECRET_LEN]);
        assert_ne!(a.blob_id(b"x"), b.blob_id(b"x"));
        assert_eq!(a.blob_id(b"x"), a.blob_id(b"x"));
        assert_ne!(a.blob_id(b"x").as_bytes(), blake3::hash(b"x").as_bytes());
    }
}
