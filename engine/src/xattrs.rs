//! Extended attributes of files, folders and symlinks, POSIX ACLs among them: read at backup, set
//! back at restore.
//!
//! ACLs are the kernel's own binary values of `system.posix_acl_access` and
//! `system.posix_acl_default`, stored and set back as they are (as borg, restic and `tar --xattrs`
//! do). Nothing here follows a symlink: the attributes of a link are the link's own
//! (`llistxattr`, `lgetxattr`, `lsetxattr`). Nothing here fails an operation either: an attribute
//! that cannot be read or set is a warning naming the path and the attribute, and the entry is kept
//! without it.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use cairn_format::tree::{MAX_XATTR_BYTES, MAX_XATTR_NAME, MAX_XATTR_VALUE, MAX_XATTRS, Xattr};

/// The attributes of the entry at `path`, ascending by name, and a warning for each one that could
/// not be read. A file system without extended attributes has none, without a warning. Names the
/// process may not see (`trusted.*` unless root) are not listed by the kernel.
pub fn read(path: &Path) -> (Vec<Xattr>, Vec<String>) {
    let mut xattrs = Vec::new();
    let mut warnings = Vec::new();
    let names = match xattr::list(path) {
        Ok(names) => names,
        Err(e) if unsupported(&e) => return (xattrs, warnings),
        Err(e) => {
            warnings.push(format!("{}: listing extended attributes: {e} (none stored)", path.display()));
            return (xattrs, warnings);
        }
    };
    let mut total = 0usize;
    for name in names {
        let shown = show(name.as_bytes());
        let value = match xattr::get(path, &name) {
            Ok(Some(value)) => value,
            // Removed between the listing and now: it is gone, as if listed a moment later.
            Ok(None) => continue,
            Err(e) => {
                warnings.push(format!("{}: reading extended attribute {shown}: {e} (not stored)", path.display()));
                continue;
            }
        };
        let size = name.len() + value.len();
        if name.len() > MAX_XATTR_NAME
            || value.len() > MAX_XATTR_VALUE
            || xattrs.len() >= MAX_XATTRS
            || total + size > MAX_XATTR_BYTES
        {
            warnings.push(format!(
                "{}: extended attribute {shown} is beyond what a snapshot holds per entry \
                 ({MAX_XATTRS} attributes, {MAX_XATTR_BYTES} bytes) (not stored)",
                path.display()
            ));
            continue;
        }
        total += size;
        xattrs.push(Xattr { name: name.into_vec(), value });
    }
    xattrs.sort_by(|a, b| a.name.cmp(&b.name));
    (xattrs, warnings)
}

/// Sets `xattrs` on the entry at `path`; returns a warning for each attribute the target refused
/// (a file system without extended attributes, `trusted.*` or `security.*` without the privilege).
/// Attributes the entry already has and the snapshot does not are left alone.
pub fn apply(path: &Path, xattrs: &[Xattr]) -> Vec<String> {
    let mut warnings = Vec::new();
    for x in xattrs {
        if let Err(e) = xattr::set(path, OsStr::from_bytes(&x.name), &x.value) {
            warnings.push(format!("{}: setting extended attribute {}: {e}", path.display(), show(&x.name)));
        }
    }
    warnings
}

/// Sets `xattrs` on the open file `file` (whose path, for messages, is `path`), as [`apply`] does
/// by path: no path lookup, and nothing at the path can stand in for the file between calls.
pub fn apply_to_file(file: &std::fs::File, path: &Path, xattrs: &[Xattr]) -> Vec<String> {
    use xattr::FileExt;
    let mut warnings = Vec::new();
    for x in xattrs {
        if let Err(e) = file.set_xattr(OsStr::from_bytes(&x.name), &x.value) {
            warnings.push(format!("{}: setting extended attribute {}: {e}", path.display(), show(&x.name)));
        }
    }
    warnings
}

/// Whether `e` says the file system has no extended attributes at all.
fn unsupported(e: &io::Error) -> bool {
    e.raw_os_error() == Some(nix::libc::EOPNOTSUPP)
}

/// An attribute name for a message: printable ASCII as it is, other bytes escaped.
fn show(name: &[u8]) -> String {
    name.escape_ascii().to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_user_attribute_set_is_read_back_and_a_missing_file_warns() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let wanted = vec![
            Xattr { name: b"user.a".to_vec(), value: b"1".to_vec() },
            Xattr { name: b"user.b".to_vec(), value: vec![0, 255, 7] },
        ];
        assert_eq!(apply(&file, &wanted), Vec::<String>::new(), "the test folder's file system must take user.*");
        let (read_back, warnings) = read(&file);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(read_back, wanted);
        let (none, warnings) = read(&dir.path().join("missing"));
        assert!(none.is_empty());
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let refused = apply(&dir.path().join("missing"), &wanted);
        assert_eq!(refused.len(), 2);
        assert!(refused[0].contains("user.a"), "{refused:?}");
    }
}
