//! Typed 32-byte identifiers. Every id kind comes from one macro, so a bare `[u8; 32]` never crosses a
//! public function and a pack id cannot be passed where a blob id is expected.

use crate::{FormatError, Result};

/// Length in bytes of every id.
pub const ID_LEN: usize = 32;

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name([u8; ID_LEN]);

        impl $name {
            /// What this id names, for messages.
            pub const WHAT: &'static str = $what;

            /// Wraps raw bytes.
            pub const fn from_bytes(bytes: [u8; ID_LEN]) -> Self {
                Self(bytes)
            }

            /// The raw bytes.
            pub const fn as_bytes(&self) -> &[u8; ID_LEN] {
                &self.0
            }

            /// Lower-case hexadecimal, 64 characters.
            pub fn to_hex(&self) -> String {
                crate::id::to_hex(&self.0)
            }

            /// The first eight hexadecimal characters, as shown in listings.
            pub fn short(&self) -> String {
                let mut s = self.to_hex();
                s.truncate(8);
                s
            }

            /// Parses a full 64-character hexadecimal id.
            pub fn from_hex(s: &str) -> Result<Self> {
                crate::id::parse_full_hex(s).map(Self)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl std::str::FromStr for $name {
            type Err = FormatError;
            fn from_str(s: &str) -> Result<Self> {
                Self::from_hex(s)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }

        impl crate::id::TypedId for $name {
            const WHAT: &'static str = $what;
            fn as_bytes(&self) -> &[u8; ID_LEN] {
                &self.0
            }
        }
    };
}

/// What every typed id offers to generic helpers such as [`resolve_prefix`].
pub trait TypedId: Copy + Ord {
    /// What this id names, for messages.
    const WHAT: &'static str;
    /// The raw bytes.
    fn as_bytes(&self) -> &[u8; ID_LEN];
}

typed_id!(
    /// A data or tree blob: keyed BLAKE3 of its plaintext under the repository's id key.
    BlobId, "blob"
);
typed_id!(
    /// A tree blob (a directory listing); same derivation as [`BlobId`].
    TreeId, "tree"
);
typed_id!(
    /// A pack file: BLAKE3 of its stored bytes.
    PackId, "pack"
);
typed_id!(
    /// An index file: BLAKE3 of its stored bytes.
    IndexId, "index"
);
typed_id!(
    /// A snapshot file: BLAKE3 of its stored bytes.
    SnapshotId, "snapshot"
);
typed_id!(
    /// A key file: BLAKE3 of its stored bytes.
    KeyId, "key"
);
typed_id!(
    /// A record of an operation (spec/records.md): BLAKE3 of its stored bytes.
    RecordId, "record"
);

impl From<TreeId> for BlobId {
    fn from(t: TreeId) -> Self {
        BlobId(t.0)
    }
}

impl From<BlobId> for TreeId {
    fn from(b: BlobId) -> Self {
        TreeId(b.0)
    }
}

/// Lower-case hexadecimal of any byte string.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

fn parse_full_hex(s: &str) -> Result<[u8; ID_LEN]> {
    let bad = || FormatError::BadHex { input: s.chars().take(80).collect() };
    if s.len() != ID_LEN * 2 {
        return Err(bad());
    }
    let mut out = [0u8; ID_LEN];
    for (i, pair) in s.as_bytes().chunks_exact(2).enumerate() {
        let hi = hex_digit(pair[0]).ok_or_else(bad)?;
        let lo = hex_digit(pair[1]).ok_or_else(bad)?;
        out[i] = (hi << 4) | lo;
    }
    Ok(out)
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Finds the one id among `candidates` whose hexadecimal form starts with `prefix`.
///
/// An exact 64-character id matches itself even when it is not among the candidates' prefixes twice;
/// an empty or non-hexadecimal prefix is refused.
pub fn resolve_prefix<T: TypedId>(prefix: &str, candidates: impl IntoIterator<Item = T>) -> Result<T> {
    if prefix.is_empty() || prefix.len() > ID_LEN * 2 || !prefix.bytes().all(|c| hex_digit(c).is_some()) {
        return Err(FormatError::BadHex { input: prefix.chars().take(80).collect() });
    }
    let wanted = prefix.to_ascii_lowercase();
    let mut found: Option<T> = None;
    let mut count = 0usize;
    for id in candidates {
        if to_hex(id.as_bytes()).starts_with(&wanted) {
            if found != Some(id) {
                count += 1;
            }
            found = Some(id);
        }
    }
    match (found, count) {
        (Some(id), 1) => Ok(id),
        (None, _) => Err(FormatError::PrefixNotFound { what: T::WHAT, prefix: wanted }),
        (_, n) => Err(FormatError::PrefixAmbiguous { what: T::WHAT, prefix: wanted, count: n }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = PackId::from_bytes([0xab; 32]);
        assert_eq!(id.to_hex().len(), 64);
        assert_eq!(PackId::from_hex(&id.to_hex()), Ok(id));
        assert!(PackId::from_hex("zz").is_err());
        assert!(PackId::from_hex(&"g".repeat(64)).is_err());
    }

    #[test]
    fn prefix_matching() {
        let a = SnapshotId::from_bytes([0x12; 32]);
        let b = SnapshotId::from_bytes([0x13; 32]);
        assert_eq!(resolve_prefix("1212", [a, b]), Ok(a));
        assert_eq!(resolve_prefix("1313", [a, b]), Ok(b));
        assert!(matches!(resolve_prefix("1", [a, b]), Err(FormatError::PrefixAmbiguous { count: 2, .. })));
        assert!(matches!(resolve_prefix("14", [a, b]), Err(FormatError::PrefixNotFound { .. })));
        assert!(matches!(resolve_prefix("", [a, b]), Err(FormatError::BadHex { .. })));
        assert!(matches!(resolve_prefix("xy", [a, b]), Err(FormatError::BadHex { .. })));
        // The same id listed twice is still one match.
        assert_eq!(resolve_prefix("12", [a, a]), Ok(a));
    }
}
