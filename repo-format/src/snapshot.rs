//! Snapshots: small sealed manifests naming a root tree and describing the backup that made it.
//!
//! ```text
//! header "CRNS" v1 | sealed(kind Snapshot, context = header) of:
//!   time_ns i64 | utc_offset_s i32 | host str16 | user str16 | uid u32 | gid u32
//!   | tag_count u32 | tags str16… | path_count u32 | paths (u32 len + UTF-8)…
//!   | source_kind u8 | source_detail str16 | tree id [32]
//!   | has_parent u8 | parent id [32] if has_parent | has_original u8 | original id [32] if has_original
//!   | program_version str16 | summary: 15 × u64/i64 fields (see spec/snapshot.md)
//! ```

use crate::crypto::{MasterKey, Nonce, SealKind};
use crate::object::{HEADER_LEN, ObjectKind};
use crate::wire::{Reader, Writer, clamp_short, clamp_to};
use crate::{FormatError, Result, SnapshotId, TreeId};

/// Longest snapshot path accepted.
pub const MAX_PATH_LEN: u32 = 64 * 1024;

/// Where the snapshot's data came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum SourceKind {
    Files = 1,
    Stdin = 2,
    Command = 3,
    Postgres = 4,
}

impl SourceKind {
    fn from_u8(v: u8) -> Result<Self> {
        Ok(match v {
            1 => SourceKind::Files,
            2 => SourceKind::Stdin,
            3 => SourceKind::Command,
            4 => SourceKind::Postgres,
            _ => return Err(FormatError::Invalid { what: "snapshot", reason: "unknown source kind" }),
        })
    }
}

/// What the backup that made a snapshot did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unchanged: u64,
    pub dirs_new: u64,
    pub dirs_changed: u64,
    pub dirs_unchanged: u64,
    pub data_blobs_added: u64,
    pub tree_blobs_added: u64,
    /// Bytes read from the source.
    pub bytes_read: u64,
    /// Sum of the sizes of every file in the snapshot.
    pub total_size: u64,
    /// Plaintext bytes of the blobs this backup added.
    pub bytes_added_plain: u64,
    /// Stored (compressed, sealed) bytes of the blobs this backup added.
    pub bytes_added_stored: u64,
    /// Unix time in nanoseconds when the backup started.
    pub started_ns: i64,
    pub duration_ns: u64,
    /// Entries that could not be read and are missing from the snapshot.
    pub warnings: u64,
}

/// A decoded snapshot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Snapshot {
    /// Unix time in nanoseconds.
    pub time_ns: i64,
    /// Offset of the local time zone from UTC at `time_ns`, in seconds (retention buckets use it).
    pub utc_offset_s: i32,
    pub host: String,
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    pub tags: Vec<String>,
    pub paths: Vec<String>,
    pub source: SourceKind,
    /// Stdin file name, command program, or database name, depending on `source`.
    pub source_detail: String,
    pub tree: TreeId,
    pub parent: Option<SnapshotId>,
    /// For a snapshot rewritten by repair, the snapshot it replaces.
    pub original: Option<SnapshotId>,
    pub program_version: String,
    pub summary: Summary,
}

impl Snapshot {
    /// Sealed, stored bytes.
    pub fn encode(&self, key: &MasterKey, nonce: &Nonce) -> Vec<u8> {
        let header = ObjectKind::Snapshot.header();
        let mut w = Writer::new();
        w.i64(self.time_ns);
        w.i32(self.utc_offset_s);
        w.bytes16(clamp_short(&self.host).as_bytes());
        w.bytes16(clamp_short(&self.user).as_bytes());
        w.u32(self.uid);
        w.u32(self.gid);
        w.u32(self.tags.len() as u32);
        for t in &self.tags {
            w.bytes16(clamp_short(t).as_bytes());
        }
        w.u32(self.paths.len() as u32);
        for p in &self.paths {
            w.bytes32(clamp_to(p, MAX_PATH_LEN as usize).as_bytes());
        }
        w.u8(self.source as u8);
        w.bytes16(clamp_short(&self.source_detail).as_bytes());
        w.raw(self.tree.as_bytes());
        for opt in [self.parent, self.original] {
            match opt {
                Some(id) => {
                    w.u8(1);
                    w.raw(id.as_bytes());
                }
                None => w.u8(0),
            }
        }
        w.bytes16(clamp_short(&self.program_version).as_bytes());
        let s = &self.summary;
        for v in [
            s.files_new,
            s.files_changed,
            s.files_unchanged,
            s.dirs_new,
            s.dirs_changed,
            s.dirs_unchanged,
            s.data_blobs_added,
            s.tree_blobs_added,
            s.bytes_read,
            s.total_size,
            s.bytes_added_plain,
            s.bytes_added_stored,
        ] {
            w.u64(v);
        }
        w.i64(s.started_ns);
        w.u64(s.duration_ns);
        w.u64(s.warnings);
        let mut out = header.to_vec();
        out.extend_from_slice(&key.seal(SealKind::Snapshot, &header, nonce, &w.into_bytes()));
        out
    }

    /// Opens and decodes stored bytes.
    pub fn decode(bytes: &[u8], key: &MasterKey) -> Result<Self> {
        let what = "snapshot";
        let mut r = Reader::new(bytes, what);
        ObjectKind::Snapshot.read_header(&mut r)?;
        let plain = key.open(SealKind::Snapshot, &bytes[..HEADER_LEN], r.take(r.remaining())?)?;
        let mut r = Reader::new(&plain, what);
        let time_ns = r.i64()?;
        let utc_offset_s = r.i32()?;
        if utc_offset_s.unsigned_abs() > 26 * 3600 {
            return Err(FormatError::Invalid { what, reason: "UTC offset beyond 26 hours" });
        }
        let host = r.string16()?;
        let user = r.string16()?;
        let uid = r.u32()?;
        let gid = r.u32()?;
        let n = r.count(2)?;
        let mut tags = Vec::with_capacity(n);
        for _ in 0..n {
            tags.push(r.string16()?);
        }
        let n = r.count(4)?;
        let mut paths = Vec::with_capacity(n);
        for _ in 0..n {
            let p = r.bytes32(MAX_PATH_LEN)?;
            paths.push(
                String::from_utf8(p.to_vec())
                    .map_err(|_| FormatError::Invalid { what, reason: "path is not UTF-8" })?,
            );
        }
        let source = SourceKind::from_u8(r.u8()?)?;
        let source_detail = r.string16()?;
        let tree = TreeId::from_bytes(r.id()?);
        let mut optional = || -> Result<Option<SnapshotId>> {
            match r.u8()? {
                0 => Ok(None),
                1 => Ok(Some(SnapshotId::from_bytes(r.id()?))),
                _ => Err(FormatError::Invalid { what, reason: "optional id flag is neither 0 nor 1" }),
            }
        };
        let parent = optional()?;
        let original = optional()?;
        let program_version = r.string16()?;
        let summary = Summary {
            files_new: r.u64()?,
            files_changed: r.u64()?,
            files_unchanged: r.u64()?,
            dirs_new: r.u64()?,
            dirs_changed: r.u64()?,
            dirs_unchanged: r.u64()?,
            data_blobs_added: r.u64()?,
            tree_blobs_added: r.u64()?,
            bytes_read: r.u64()?,
            total_size: r.u64()?,
            bytes_added_plain: r.u64()?,
            bytes_added_stored: r.u64()?,
            started_ns: r.i64()?,
            duration_ns: r.u64()?,
            warnings: r.u64()?,
        };
        r.finish()?;
        Ok(Snapshot {
            time_ns,
            utc_offset_s,
            host,
            user,
            uid,
            gid,
            tags,
            paths,
            source,
            source_detail,
            tree,
            parent,
            original,
            program_version,
            summary,
        })
    }
}
