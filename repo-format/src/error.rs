//! The one error type of the format crate. Variants carry data, never free-form strings, and never
//! carry secret material.

use thiserror::Error;

/// Everything that can go wrong while decoding, opening or building a repository object.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FormatError {
    /// The input ended before a field could be read.
    #[error("{what} is truncated: needed {need} bytes, found {got}")]
    Truncated { what: &'static str, need: u64, got: u64 },
    /// The object does not start with the magic of its kind.
    #[error("{what} has a wrong magic {found:02x?} (not a cairn object of this kind)")]
    BadMagic { what: &'static str, found: [u8; 4] },
    /// The object was written by a format version this program does not know.
    #[error("{what} has format version {version}, this program reads version {supported} only; upgrade cairn")]
    UnsupportedVersion { what: &'static str, version: u32, supported: u32 },
    /// The AEAD tag did not verify: the object was damaged or tampered with, or the key is wrong.
    #[error("{what} failed authentication (damaged, tampered with, or not of this repository)")]
    AuthenticationFailed { what: &'static str },
    /// The password did not open the key file.
    #[error("wrong password (no key file could be opened with it)")]
    WrongPassword,
    /// A length or count field is larger than the format allows.
    #[error("{what} declares length {len}, more than the allowed {max}")]
    TooLarge { what: &'static str, len: u64, max: u64 },
    /// A field holds a value the format forbids.
    #[error("{what} is invalid: {reason}")]
    Invalid { what: &'static str, reason: &'static str },
    /// Bytes remain after a complete object was decoded.
    #[error("{what} has {extra} unexpected trailing bytes")]
    TrailingBytes { what: &'static str, extra: u64 },
    /// A compressed blob did not decompress to its declared length.
    #[error("{what} does not decompress to its declared content")]
    Decompress { what: &'static str },
    /// A hexadecimal id could not be parsed.
    #[error("'{input}' is not a valid id (expected up to 64 hexadecimal characters)")]
    BadHex { input: String },
    /// No id starts with the given prefix.
    #[error("no {what} matches '{prefix}'")]
    PrefixNotFound { what: &'static str, prefix: String },
    /// More than one id starts with the given prefix.
    #[error("'{prefix}' matches {count} {what}s ({}{}); give more characters", candidates.join(", "), if *count > candidates.len() { ", ..." } else { "" })]
    PrefixAmbiguous {
        what: &'static str,
        prefix: String,
        count: usize,
        /// The first few matching ids, as short ids.
        candidates: Vec<String>,
    },
}
