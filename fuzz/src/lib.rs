//! What the fuzz targets share: a fixed key, and sealing fuzz input with it. Random bytes almost never
//! pass an AEAD tag, so each target also seals its input as the plaintext of a well-formed envelope to
//! reach the parser behind it; whatever that parser accepts must encode back to the same plaintext.

use cairn_format::crypto::{MasterKey, NONCE_LEN, SealKind};
use cairn_format::object::{HEADER_LEN, ObjectKind};

/// The fixed key every target uses.
pub fn key() -> MasterKey {
    MasterKey::from_random(std::array::from_fn(|i| (i as u8).wrapping_mul(31).wrapping_add(7)))
}

/// A stored object of `kind` whose envelope holds `plaintext`: header || seal(header, plaintext).
pub fn sealed_object(key: &MasterKey, kind: ObjectKind, seal: SealKind, plaintext: &[u8]) -> Vec<u8> {
    let header = kind.header();
    let mut out = header.to_vec();
    out.extend_from_slice(&key.seal(seal, &header, &[0; NONCE_LEN], plaintext));
    out
}

/// The plaintext of a stored object made by an encoder of the format crate.
pub fn plaintext_of(key: &MasterKey, seal: SealKind, stored: &[u8]) -> Vec<u8> {
    key.open(seal, &stored[..HEADER_LEN], &stored[HEADER_LEN..]).expect("an object this key just sealed opens")
}

/// `header || data`: input that gets past the magic and version check at once.
pub fn with_header(kind: ObjectKind, data: &[u8]) -> Vec<u8> {
    let mut out = kind.header().to_vec();
    out.extend_from_slice(data);
    out
}
