//! Lock files: who is working on the repository, refreshed by a heartbeat and stale once the
//! heartbeat stops, so a killed process never leaves a lock that needs a manual step.
//!
//! ```text
//! header "CRNL" v1 | sealed(kind Lock, context = header) of:
//!   kind u8 (1 shared, 2 exclusive) | host str16 | user str16 | pid u32 | created_ns i64 | refreshed_ns i64
//! ```
//! Lock files live in `locks/` under random names and are the only objects that are rewritten in
//! place (each heartbeat rewrites the file whole).

use crate::crypto::{MasterKey, Nonce, SealKind};
use crate::object::{HEADER_LEN, ObjectKind};
use crate::wire::{Reader, Writer, clamp_short};
use crate::{FormatError, Result};

/// Shared locks (backups) coexist with everything; exclusive locks (prune, repair) exclude each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum LockKind {
    Shared = 1,
    Exclusive = 2,
}

/// A decoded lock file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Lock {
    pub kind: LockKind,
    pub host: String,
    pub user: String,
    pub pid: u32,
    /// Unix nanoseconds when the lock was taken.
    pub created_ns: i64,
    /// Unix nanoseconds of the last heartbeat.
    pub refreshed_ns: i64,
}

impl Lock {
    /// Sealed, stored bytes.
    pub fn encode(&self, key: &MasterKey, nonce: &Nonce) -> Vec<u8> {
        let header = ObjectKind::Lock.header();
        let mut w = Writer::new();
        w.u8(self.kind as u8);
        w.bytes16(clamp_short(&self.host).as_bytes());
        w.bytes16(clamp_short(&self.user).as_bytes());
        w.u32(self.pid);
        w.i64(self.created_ns);
        w.i64(self.refreshed_ns);
        let mut out = header.to_vec();
        out.extend_from_slice(&key.seal(SealKind::Lock, &header, nonce, &w.into_bytes()));
        out
    }

    /// Opens and decodes stored bytes.
    pub fn decode(bytes: &[u8], key: &MasterKey) -> Result<Self> {
        let what = "lock file";
        let mut r = Reader::new(bytes, what);
        ObjectKind::Lock.read_header(&mut r)?;
        let plain = key.open(SealKind::Lock, &bytes[..HEADER_LEN], r.take(r.remaining())?)?;
        let mut r = Reader::new(&plain, what);
        let kind = match r.u8()? {
            1 => LockKind::Shared,
            2 => LockKind::Exclusive,
            _ => return Err(FormatError::Invalid { what, reason: "unknown lock kind" }),
        };
        let lock = Lock {
            kind,
            host: r.string16()?,
            user: r.string16()?,
            pid: r.u32()?,
            created_ns: r.i64()?,
            refreshed_ns: r.i64()?,
        };
        r.finish()?;
        Ok(lock)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MASTER_SECRET_LEN;

    #[test]
    fn round_trip_and_tamper() {
        let key = MasterKey::from_random([4; MASTER_SECRET_LEN]);
        let lock = Lock {
            kind: LockKind::Exclusive,
            host: "db1".into(),
            user: "root".into(),
            pid: 42,
            created_ns: 1,
            refreshed_ns: 2,
        };
        let bytes = lock.encode(&key, &[3; 24]);
        assert_eq!(Lock::decode(&bytes, &key), Ok(lock));
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert!(Lock::decode(&bad, &key).is_err());
        }
    }
}
