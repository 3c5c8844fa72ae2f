//! Records: small sealed notes about operations on the repository (a check, a restore drill, a
//! scheduled run), so that `status` and `run` know what was done, when, by whom and how it ended.
//!
//! ```text
//! header "CRNR" v1 | sealed(kind Record, context = header) of:
//!   time_ns i64 | duration_ns u64 | host str16 | user str16 | kind str16 | scope str16 | ok u8
//!   | summary str32(65536) | details str32(65536) | program_version str16
//! ```
//!
//! A record names nothing else in the repository and nothing names a record: records can be
//! written and deleted at any time without a lock (spec/records.md).

use crate::crypto::{MasterKey, Nonce, SealKind};
use crate::object::{HEADER_LEN, ObjectKind};
use crate::wire::{Reader, Writer, clamp_short, clamp_to};
use crate::{FormatError, Result};

/// Longest summary and details text accepted.
pub const MAX_TEXT_LEN: u32 = 64 * 1024;

/// A decoded record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Record {
    /// When the operation ended, Unix time in nanoseconds.
    pub time_ns: i64,
    /// How long the operation took.
    pub duration_ns: u64,
    pub host: String,
    pub user: String,
    /// What was done: `check`, `drill`, `run`, `prune`, … (lower-case ASCII, never empty).
    pub kind: String,
    /// What it was done to, when the kind needs it (a profile's job, a database); may be empty.
    pub scope: String,
    /// Whether the operation succeeded.
    pub ok: bool,
    /// One human line.
    pub summary: String,
    /// A JSON object with the facts a program may want (empty string is an empty object).
    pub details: String,
    /// The writing program and its version, e.g. "cairn 0.1.0".
    pub program_version: String,
}

/// Whether a record kind is well formed: 1 to 32 characters of `a-z`, `0-9`, `-` and `_`.
pub fn valid_kind(kind: &str) -> bool {
    !kind.is_empty()
        && kind.len() <= 32
        && kind.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_')
}

impl Record {
    /// Sealed, stored bytes. Text fields longer than the format allows are cut on a character
    /// boundary; the caller checks [`valid_kind`] (a record of an invalid kind does not decode).
    pub fn encode(&self, key: &MasterKey, nonce: &Nonce) -> Vec<u8> {
        let header = ObjectKind::Record.header();
        let mut w = Writer::new();
        w.i64(self.time_ns);
        w.u64(self.duration_ns);
        w.bytes16(clamp_short(&self.host).as_bytes());
        w.bytes16(clamp_short(&self.user).as_bytes());
        w.bytes16(clamp_short(&self.kind).as_bytes());
        w.bytes16(clamp_short(&self.scope).as_bytes());
        w.u8(u8::from(self.ok));
        w.bytes32(clamp_to(&self.summary, MAX_TEXT_LEN as usize).as_bytes());
        w.bytes32(clamp_to(&self.details, MAX_TEXT_LEN as usize).as_bytes());
        w.bytes16(clamp_short(&self.program_version).as_bytes());
        let mut out = header.to_vec();
        out.extend_from_slice(&key.seal(SealKind::Record, &header, nonce, &w.into_bytes()));
        out
    }

    /// Opens and decodes stored bytes.
    pub fn decode(bytes: &[u8], key: &MasterKey) -> Result<Self> {
        let what = "record";
        let mut r = Reader::new(bytes, what);
        ObjectKind::Record.read_header(&mut r)?;
        let plain = key.open(SealKind::Record, &bytes[..HEADER_LEN], r.take(r.remaining())?)?;
        let mut r = Reader::new(&plain, what);
        let time_ns = r.i64()?;
        let duration_ns = r.u64()?;
        let host = r.string16()?;
        let user = r.string16()?;
        let kind = r.string16()?;
        if !valid_kind(&kind) {
            return Err(FormatError::Invalid { what, reason: "kind is not 1 to 32 characters of a-z, 0-9, - and _" });
        }
        let scope = r.string16()?;
        let ok = match r.u8()? {
            0 => false,
            1 => true,
            _ => return Err(FormatError::Invalid { what, reason: "ok flag is neither 0 nor 1" }),
        };
        let text = |r: &mut Reader<'_>| -> Result<String> {
            String::from_utf8(r.bytes32(MAX_TEXT_LEN)?.to_vec())
                .map_err(|_| FormatError::Invalid { what, reason: "text field is not UTF-8" })
        };
        let summary = text(&mut r)?;
        let details = text(&mut r)?;
        let program_version = r.string16()?;
        r.finish()?;
        Ok(Record { time_ns, duration_ns, host, user, kind, scope, ok, summary, details, program_version })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MASTER_SECRET_LEN;

    fn key() -> MasterKey {
        MasterKey::from_random([7u8; MASTER_SECRET_LEN])
    }

    fn sample() -> Record {
        Record {
            time_ns: 1_700_000_000_000_000_000,
            duration_ns: 5_000_000_000,
            host: "db1".into(),
            user: "postgres".into(),
            kind: "check".into(),
            scope: "nightly/db".into(),
            ok: true,
            summary: "no damage; read 5% of the packs".into(),
            details: r#"{"subset":"5%"}"#.into(),
            program_version: "cairn 0.1.0".into(),
        }
    }

    #[test]
    fn round_trip_and_tamper() {
        let k = key();
        let bytes = sample().encode(&k, &[1u8; 24]);
        assert_eq!(Record::decode(&bytes, &k).expect("decodes"), sample());
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(Record::decode(&bad, &k).is_err(), "flipped byte {i} accepted");
        }
        for n in 0..bytes.len() {
            assert!(Record::decode(&bytes[..n], &k).is_err());
        }
    }

    #[test]
    fn kinds() {
        assert!(valid_kind("check") && valid_kind("drill") && valid_kind("pg-drill_2"));
        assert!(!valid_kind("") && !valid_kind("Check") && !valid_kind("a b") && !valid_kind(&"a".repeat(33)));
        let k = key();
        let bad = Record { kind: "Not OK".into(), ..sample() }.encode(&k, &[2u8; 24]);
        assert!(matches!(Record::decode(&bad, &k), Err(FormatError::Invalid { .. })));
    }
}
