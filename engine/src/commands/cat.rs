//! `cat`: decode one stored object for debugging. Secrets are never shown.

use cairn_format::blob::BlobKind;
use cairn_format::pack::{TRAILER_LEN, decode_header, read_trailer};
use cairn_format::{IndexId, KeyId, PackId, SnapshotId};
use serde::Serialize;

use crate::backend::FileType;
use crate::error::{Error, ErrorKind, Result};
use crate::repository::Repository;

/// A key file without its sealed secret.
#[derive(Debug, Clone, Serialize)]
pub struct KeyView {
    pub id: KeyId,
    pub created_unix: i64,
    pub host: String,
    pub user: String,
    pub kdf: cairn_format::key::KdfParams,
}

/// A pack's header.
#[derive(Debug, Clone, Serialize)]
pub struct PackView {
    pub id: PackId,
    pub len: u64,
    pub blobs: Vec<cairn_format::pack::BlobEntry>,
}

fn resolve<T: cairn_format::id::TypedId>(spec: &str, all: Vec<T>) -> Result<T> {
    cairn_format::id::resolve_prefix(spec, all).map_err(|e| Error::new(ErrorKind::NotFound, e.to_string()))
}

/// Decodes a key file by id or prefix.
pub fn key(repo: &Repository, spec: &str) -> Result<KeyView> {
    let keys = repo.list_keys()?;
    let id = resolve(spec, keys.iter().map(|k| k.0).collect())?;
    let (_, file) = keys.into_iter().find(|k| k.0 == id).ok_or_else(|| Error::new(ErrorKind::Bug, "key vanished"))?;
    let file = file?;
    Ok(KeyView { id, created_unix: file.created_unix, host: file.host, user: file.user, kdf: file.kdf })
}

/// Decodes a snapshot by id or prefix.
pub fn snapshot(repo: &Repository, spec: &str) -> Result<(SnapshotId, cairn_format::snapshot::Snapshot)> {
    let id = resolve(spec, repo.list_snapshot_ids()?)?;
    Ok((id, repo.load_snapshot(id)?))
}

/// Decodes an index file by id or prefix.
pub fn index(repo: &Repository, spec: &str) -> Result<(IndexId, cairn_format::index::IndexFile)> {
    let id = resolve(spec, repo.list_index_ids()?)?;
    Ok((id, repo.load_index(id)?))
}

/// Reads and decodes a pack's header by id or prefix.
pub fn pack(repo: &Repository, spec: &str) -> Result<PackView> {
    let all: Vec<PackId> =
        repo.backend().list(FileType::Pack)?.into_iter().filter_map(|o| PackId::from_hex(&o.name).ok()).collect();
    let id = resolve(spec, all)?;
    let name = id.to_hex();
    let len = repo.backend().stat(FileType::Pack, &name)?.unwrap_or(0);
    if len < TRAILER_LEN as u64 {
        return Err(Error::corrupt(format!("pack {} is shorter than its trailer", id.short())));
    }
    let trailer = repo.backend().read_range(FileType::Pack, &name, len - TRAILER_LEN as u64, TRAILER_LEN as u64)?;
    let header_len = read_trailer(&trailer, len).map_err(|e| Error::format(format!("pack {}", id.short()), e))?;
    let start = len - TRAILER_LEN as u64 - u64::from(header_len);
    let sealed = repo.backend().read_range(FileType::Pack, &name, start, u64::from(header_len))?;
    let blobs =
        decode_header(&sealed, repo.key(), len).map_err(|e| Error::format(format!("pack {}", id.short()), e))?;
    Ok(PackView { id, len, blobs })
}

/// A tree blob, decoded to a listing of names and kinds.
pub fn tree_names(repo: &Repository, spec: &str) -> Result<Vec<(String, &'static str)>> {
    let id = cairn_format::TreeId::from_hex(spec).map_err(|e| Error::invalid(e.to_string()))?;
    repo.sync_index()?;
    let tree = repo.load_tree(id)?;
    let _ = BlobKind::Tree;
    Ok(tree.nodes().iter().map(|n| (String::from_utf8_lossy(&n.name).into_owned(), n.kind.name())).collect())
}
