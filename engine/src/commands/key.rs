//! `key`: list, add and remove key files, and change the password. Every key file wraps the same
//! master secret, so none of this re-encrypts data.
//!
//! A new key file is durable before anything is removed, so changing a password never leaves the
//! repository without a working key. Neither passwords nor key material ever appear in a report or
//! an error message.

use cairn_format::KeyId;
use cairn_format::crypto::object_name;
use cairn_format::key::{KdfParams, KeyFile, SALT_LEN};
use serde::Serialize;

use crate::backend::FileType;
use crate::error::{Error, ErrorKind, Result};
use crate::repository::{Repository, hostname, nonce, random_bytes, unix_now, username};

/// One key file as listed.
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    pub id: KeyId,
    /// Whether this key opened the repository in this run.
    pub current: bool,
    pub created_unix: Option<i64>,
    pub host: Option<String>,
    pub user: Option<String>,
    pub kdf: Option<KdfParams>,
    /// Why the file cannot be used, when it is damaged.
    pub damaged: Option<String>,
}

/// Every key file, current first, then by creation time.
pub fn list(repo: &Repository) -> Result<Vec<KeyInfo>> {
    let mut out = Vec::new();
    for o in repo.backend().list(FileType::Key)? {
        let Ok(id) = KeyId::from_hex(&o.name) else { continue };
        let decoded = repo.backend().read(FileType::Key, &o.name).and_then(|bytes| {
            if &object_name(&bytes) != id.as_bytes() {
                return Err(Error::corrupt("does not match its name (the file is damaged)"));
            }
            KeyFile::decode(&bytes).map_err(|e| Error::corrupt(format!("does not decode: {e}")))
        });
        let info = match decoded {
            Ok(k) => KeyInfo {
                id,
                current: id == repo.key_id(),
                created_unix: Some(k.created_unix),
                host: Some(k.host),
                user: Some(k.user),
                kdf: Some(k.kdf),
                damaged: None,
            },
            Err(e) if e.kind() == ErrorKind::Corrupt => KeyInfo {
                id,
                current: id == repo.key_id(),
                created_unix: None,
                host: None,
                user: None,
                kdf: None,
                damaged: Some(e.to_string()),
            },
            Err(e) => return Err(e),
        };
        out.push(info);
    }
    out.sort_by(|a, b| b.current.cmp(&a.current).then(a.created_unix.cmp(&b.created_unix)).then(a.id.cmp(&b.id)));
    Ok(out)
}

/// Adds a key file opened by `password`; returns its id.
pub fn add(repo: &Repository, password: &[u8], kdf: KdfParams) -> Result<KeyId> {
    if password.is_empty() {
        return Err(Error::invalid("the new password is empty"));
    }
    let file = KeyFile::create(
        repo.key(),
        password,
        kdf,
        random_bytes::<SALT_LEN>(),
        &nonce(),
        unix_now(),
        &hostname(),
        &username(),
    )
    .map_err(|e| Error::format("creating the key file", e))?;
    let id = KeyId::from_bytes(repo.write_named(FileType::Key, file.encode())?);
    Ok(id)
}

/// Removes the key file `spec` (an id or unique prefix). The key in use cannot be removed: that
/// would lock out the password just typed, and could remove the last key.
pub fn remove(repo: &Repository, spec: &str) -> Result<KeyId> {
    let ids: Vec<KeyId> =
        repo.backend().list(FileType::Key)?.into_iter().filter_map(|o| KeyId::from_hex(&o.name).ok()).collect();
    let id = cairn_format::id::resolve_prefix(spec, ids).map_err(|e| match e {
        cairn_format::FormatError::PrefixNotFound { .. } => Error::new(ErrorKind::NotFound, e.to_string()),
        other => Error::invalid(other.to_string()),
    })?;
    if id == repo.key_id() {
        return Err(Error::invalid(format!(
            "key {} is the one in use; open the repository with another password to remove it, or use 'cairn key passwd'",
            id.short()
        )));
    }
    repo.backend().delete(FileType::Key, &id.to_hex())?;
    Ok(id)
}

/// Replaces the key in use by a new one opened by `password`: the new key file is written (and
/// durable) first, then the old one is removed. Returns `(new, removed)`.
pub fn change_password(repo: &Repository, password: &[u8], kdf: KdfParams) -> Result<(KeyId, KeyId)> {
    let new = add(repo, password, kdf)?;
    let old = repo.key_id();
    if new != old {
        repo.backend().delete(FileType::Key, &old.to_hex())?;
    }
    Ok((new, old))
}
