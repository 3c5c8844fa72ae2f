//! Building and comparing real file trees: exact modification times, owners, and a comparison of a
//! source tree with its restored copy that covers bytes, file type, mode, owner, mtime to the
//! nanosecond, symlink targets and hard-link identity.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::sys::stat::{UtimensatFlags, utimensat};
use nix::sys::time::TimeSpec;

/// Where `src` (an absolute path that was backed up) lands below a restore target.
pub fn restored_path(target: &Path, src: &Path) -> PathBuf {
    target.join(src.strip_prefix("/").expect("absolute source path"))
}

/// Sets the modification (and access) time of `path` without following a symlink.
pub fn set_mtime(path: &Path, secs: i64, nanos: i64) {
    let t = TimeSpec::new(secs, nanos);
    utimensat(nix::fcntl::AT_FDCWD, path, &t, &t, UtimensatFlags::NoFollowSymlink)
        .unwrap_or_else(|e| panic!("setting the time of {}: {e}", path.display()));
}

/// Gives every entry below `root` (and `root`) a distinct modification time with a non-zero
/// nanosecond part, deepest first so that later changes do not touch folders already set.
pub fn set_distinct_mtimes(root: &Path, base_secs: i64) {
    let mut all = Vec::new();
    walk(root, &mut |p, _| all.push(p.to_path_buf()));
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for (i, p) in all.iter().enumerate() {
        let i = i as i64;
        set_mtime(p, base_secs + i * 7, (i * 7919 + 123_456_789) % 1_000_000_000);
    }
}

/// Calls `f` for every entry below `root` and for `root` itself, parents before children, not
/// following symlinks.
pub fn walk(root: &Path, f: &mut dyn FnMut(&Path, &std::fs::Metadata)) {
    let meta = std::fs::symlink_metadata(root).unwrap_or_else(|e| panic!("stat {}: {e}", root.display()));
    f(root, &meta);
    if meta.is_dir() {
        let mut names: Vec<OsString> = std::fs::read_dir(root)
            .unwrap_or_else(|e| panic!("list {}: {e}", root.display()))
            .map(|e| e.expect("folder entry").file_name())
            .collect();
        names.sort();
        for n in names {
            walk(&root.join(n), f);
        }
    }
}

/// Paths below `root` relative to it, folders included.
pub fn relative_paths(root: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    walk(root, &mut |p, _| {
        out.insert(p.strip_prefix(root).expect("below root").to_path_buf());
    });
    out
}

/// Every file below `root` with its bytes (for small trees).
pub fn contents(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    walk(root, &mut |p, m| {
        if m.is_file() {
            out.insert(p.strip_prefix(root).expect("below root").to_path_buf(), std::fs::read(p).expect("read file"));
        }
    });
    out
}

fn kind(m: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = m.file_type();
    if t.is_dir() {
        "dir"
    } else if t.is_file() {
        "file"
    } else if t.is_symlink() {
        "symlink"
    } else if t.is_fifo() {
        "fifo"
    } else if t.is_char_device() {
        "chardev"
    } else if t.is_block_device() {
        "blockdev"
    } else {
        "socket"
    }
}

/// Asserts that `restored` is an exact copy of `src`: the same entries (nothing missing, nothing
/// extra), and for each the same type, mode bits, owner, modification time to the nanosecond, size
/// and bytes (files), target (symlinks) and link count; entries that share an inode in `src` share
/// one in `restored`, and entries that do not, do not. The root's own mtime is compared too.
pub fn assert_same_tree(src: &Path, restored: &Path) {
    let mut checked = 0usize;
    let mut inode_map: HashMap<u64, u64> = HashMap::new();
    let mut restored_inodes: HashMap<u64, u64> = HashMap::new();
    walk(src, &mut |p, sm| {
        let rel = p.strip_prefix(src).expect("below source");
        let rp = restored.join(rel);
        let shown = rel.display();
        let rm = std::fs::symlink_metadata(&rp).unwrap_or_else(|e| panic!("{shown} was not restored: {e}"));
        assert_eq!(kind(&rm), kind(sm), "{shown}: file type");
        assert_eq!(rm.mode(), sm.mode(), "{shown}: mode {:o} restored as {:o}", sm.mode(), rm.mode());
        assert_eq!((rm.uid(), rm.gid()), (sm.uid(), sm.gid()), "{shown}: owner");
        assert_eq!((rm.mtime(), rm.mtime_nsec()), (sm.mtime(), sm.mtime_nsec()), "{shown}: modification time");
        if sm.is_dir() {
            let names = |d: &Path| -> BTreeSet<OsString> {
                std::fs::read_dir(d).expect("list").map(|e| e.expect("entry").file_name()).collect()
            };
            assert_eq!(names(&rp), names(p), "{shown}: folder entries");
        } else {
            assert_eq!(rm.nlink(), sm.nlink(), "{shown}: link count");
            // Hard-link identity: a bijection between source and restored inodes.
            let first = *inode_map.entry(sm.ino()).or_insert(rm.ino());
            assert_eq!(first, rm.ino(), "{shown}: should be a hard link of an earlier restored entry");
            let owner = *restored_inodes.entry(rm.ino()).or_insert(sm.ino());
            assert_eq!(owner, sm.ino(), "{shown}: restored as a hard link of an unrelated entry");
        }
        if sm.is_file() {
            assert_eq!(rm.len(), sm.len(), "{shown}: size");
            assert!(super::data::same_contents(p, &rp), "{shown}: contents differ");
        }
        if sm.file_type().is_symlink() {
            let (st, rt) = (std::fs::read_link(p).expect("link"), std::fs::read_link(&rp).expect("link"));
            assert_eq!(rt.as_os_str().as_bytes(), st.as_os_str().as_bytes(), "{shown}: symlink target");
        }
        checked += 1;
    });
    assert!(checked > 0, "nothing compared");
}

/// Everything observable about the entries below `root` (type, content or link target, inode,
/// mode, owner, mtime), without following symlinks.
pub fn fingerprint(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).expect("lstat");
        let what = if m.file_type().is_symlink() {
            format!("link {:?}", std::fs::read_link(&p).expect("readlink"))
        } else if m.is_file() {
            format!("file {:?}", std::fs::read(&p).expect("read"))
        } else {
            if m.is_dir() {
                for e in std::fs::read_dir(&p).expect("list") {
                    stack.push(e.expect("entry").path());
                }
            }
            format!("{:?}", m.file_type())
        };
        let meta =
            format!("ino {} mode {:o} uid {} mtime {}.{}", m.ino(), m.mode(), m.uid(), m.mtime(), m.mtime_nsec());
        out.insert(p, format!("{what} {meta}"));
    }
    out
}
