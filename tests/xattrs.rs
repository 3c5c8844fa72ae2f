//! Extended attributes and POSIX ACLs: backed up from a real file system and set back by restore,
//! compared with `getfattr` and `getfacl` (Debian packages `attr` and `acl`). The test folders must be
//! on a file system with extended attributes (ext4, xfs, btrfs, tmpfs since Linux 6.6): the tests
//! fail, not skip, where they are not. The refusing target is a ramfs, which has none at all
//! (mounting it needs root, as the other tests that mount do).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::TestRepo;
use crate::support::fstree::restored_path;

/// Runs a tool that must succeed; returns its standard output.
fn run(program: &str, args: &[&str], path: &Path) -> String {
    let out = Command::new(program)
        .args(args)
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("running {program} (Debian packages attr and acl): {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Every extended attribute of `path` itself (not through a symlink), values in hex, sorted, without
/// the line naming the file.
fn attributes(path: &Path) -> Vec<String> {
    let dump = run("getfattr", &["--absolute-names", "-h", "-d", "-m", "-", "-e", "hex"], path);
    let mut lines: Vec<String> =
        dump.lines().filter(|l| !l.is_empty() && !l.starts_with("# file:")).map(str::to_owned).collect();
    lines.sort();
    lines
}

/// The ACL of `path` as `getfacl` prints it, numeric ids, without the line naming the file.
fn acl(path: &Path) -> Vec<String> {
    let dump = run("getfacl", &["-p", "-n"], path);
    dump.lines().filter(|l| !l.is_empty() && !l.starts_with("# file:")).map(str::to_owned).collect()
}

fn setfattr(path: &Path, name: &str, value: &str) {
    run("setfattr", &["-h", "-n", name, "-v", value], path);
}

/// Fails loudly unless the file system holding `dir` takes user extended attributes.
fn require_xattr_support(dir: &Path) {
    let probe = dir.join("xattr-probe");
    std::fs::write(&probe, b"").expect("write");
    let status = Command::new("setfattr").args(["-n", "user.probe", "-v", "1"]).arg(&probe).status();
    let ok = status.as_ref().is_ok_and(|s| s.success());
    std::fs::remove_file(&probe).expect("remove");
    assert!(
        ok,
        "{} is on a file system without user extended attributes ({status:?}); these tests need one that \
         has them (ext4, xfs, btrfs, tmpfs on Linux 6.6 or later) and setfattr (Debian package attr)",
        dir.display()
    );
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn src_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

/// A source folder with attributes on files, a folder and (as root) a symlink, access ACLs on a
/// folder and a file and a default ACL on the folder. Returns the entries to compare.
fn build_source(src: &Path) -> Vec<PathBuf> {
    let file = src.join("file.txt");
    std::fs::write(&file, b"attributes on a file\n").expect("write");
    setfattr(&file, "user.comment", "hello");
    // A binary value with NUL and 0xff bytes.
    setfattr(&file, "user.binary", "0x00ff0102");

    let plain = src.join("plain.txt");
    std::fs::write(&plain, b"no attributes\n").expect("write");

    let dir = src.join("shared");
    std::fs::create_dir(&dir).expect("mkdir");
    setfattr(&dir, "user.project", "cairn");
    run("setfacl", &["-m", "u:1234:rwx,g:2345:r-x,m::rwx"], &dir);
    run("setfacl", &["-d", "-m", "u:1234:r-x,o::---"], &dir);
    let inner = dir.join("inner.txt");
    std::fs::write(&inner, b"an access ACL on a file\n").expect("write");
    run("setfacl", &["-m", "u:4321:r--"], &inner);

    let link = src.join("link");
    std::os::unix::fs::symlink("file.txt", &link).expect("symlink");
    if is_root() {
        // user.* is not allowed on symlinks; trusted.* is (for root).
        setfattr(&link, "trusted.on-link", "0x01");
        setfattr(&file, "trusted.on-file", "t");
    }
    vec![file, plain, dir, inner, link]
}

#[test]
fn xattrs_and_acls_round_trip_on_files_folders_and_symlinks() {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    require_xattr_support(&src);
    let entries = build_source(&src);

    // The source has what the test means to carry through.
    assert!(attributes(&src.join("file.txt")).contains(&"user.binary=0x00ff0102".to_owned()));
    assert!(acl(&src.join("shared")).contains(&"default:user:1234:r-x".to_owned()));

    repo.cairn().args(["backup", src_str(&src)]).assert().success();
    let target = repo.scratch("target");
    let out = repo.cairn().args(["restore", "latest", "--target", src_str(&target)]).output().expect("runs");
    assert!(out.status.success(), "restore failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "restore warned: {}", String::from_utf8_lossy(&out.stderr));

    for path in &entries {
        let restored = restored_path(&target, path);
        assert_eq!(attributes(&restored), attributes(path), "extended attributes of {}", path.display());
        let meta = std::fs::symlink_metadata(path).expect("lstat");
        if !meta.file_type().is_symlink() {
            assert_eq!(acl(&restored), acl(path), "ACL of {}", path.display());
            let restored_meta = std::fs::symlink_metadata(&restored).expect("lstat");
            use std::os::unix::fs::MetadataExt;
            assert_eq!(restored_meta.mode(), meta.mode(), "mode of {}", path.display());
            assert_eq!(restored_meta.mtime(), meta.mtime(), "mtime of {} (set after the attributes)", path.display());
        }
    }
    assert_eq!(attributes(&restored_path(&target, &src.join("plain.txt"))), Vec::<String>::new());
    assert_eq!(
        std::fs::read(restored_path(&target, &src.join("shared/inner.txt"))).expect("read"),
        b"an access ACL on a file\n"
    );
    // The default ACL works on the restored folder: a new file in it inherits it.
    let born = restored_path(&target, &src.join("shared/born-after-restore"));
    std::fs::write(&born, b"").expect("write");
    assert!(acl(&born).iter().any(|l| l.starts_with("user:1234:r-x")), "{:?}", acl(&born));
}

#[test]
fn an_xattr_change_on_an_otherwise_unchanged_file_appears_in_the_next_snapshot() {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    require_xattr_support(&src);
    let file = src.join("config.yml");
    std::fs::write(&file, b"same bytes in every snapshot\n").expect("write");
    setfattr(&file, "user.version", "1");
    let first = repo.json(&["backup", src_str(&src)]);

    // Nothing changed: the content is taken from the parent, the attributes must still be recorded.
    let unchanged = repo.json(&["backup", src_str(&src)]);
    assert_eq!(unchanged["summary"]["files_unchanged"], 1, "{unchanged}");

    // Only the attributes change; the bytes stay the same.
    setfattr(&file, "user.version", "2");
    setfattr(&file, "user.added", "new");
    run("setfacl", &["-m", "u:1234:rw-"], &file);
    let changed = repo.json(&["backup", src_str(&src)]);
    assert_eq!(changed["summary"]["data_blobs_added"], 0, "the content was stored again: {changed}");

    let restore = |snapshot: &serde_json::Value, name: &str| -> PathBuf {
        let target = repo.scratch(name);
        let id = snapshot["snapshot_id"].as_str().expect("snapshot id");
        repo.cairn().args(["restore", id, "--target", src_str(&target)]).assert().success();
        restored_path(&target, &file)
    };
    let expected_first = ["user.version=0x31"];
    assert_eq!(attributes(&restore(&first, "r1")), expected_first);
    assert_eq!(attributes(&restore(&unchanged, "r2")), expected_first, "an unchanged file lost its attributes");
    let latest = restore(&changed, "r3");
    assert_eq!(attributes(&latest), attributes(&file));
    assert!(attributes(&latest).contains(&"user.version=0x32".to_owned()));
    assert!(acl(&latest).iter().any(|l| l.starts_with("user:1234:rw-")), "{:?}", acl(&latest));
    assert_eq!(std::fs::read(&latest).expect("read"), b"same bytes in every snapshot\n");
}

/// A ramfs (no extended attributes at all) mounted for one test and unmounted after it.
struct NoXattrDisk {
    dir: tempfile::TempDir,
}

impl NoXattrDisk {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temporary folder");
        let status = Command::new("mount").args(["-t", "ramfs", "ramfs"]).arg(dir.path()).status().expect("runs mount");
        assert!(status.success(), "mounting a ramfs at {} failed (needs root)", dir.path().display());
        Self { dir }
    }
}

impl Drop for NoXattrDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

#[test]
fn restore_to_a_file_system_that_refuses_xattrs_warns_and_goes_on() {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    require_xattr_support(&src);
    let entries = build_source(&src);
    repo.cairn().args(["backup", src_str(&src)]).assert().success();

    let disk = NoXattrDisk::new();
    let target = disk.dir.path();
    let out = repo.cairn().args(["restore", "latest", "--target", src_str(target)]).output().expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "attributes the target refuses are warnings: {stderr}");
    let file = restored_path(target, &src.join("file.txt"));
    let dir = restored_path(target, &src.join("shared"));
    for (path, name) in [(&file, "user.comment"), (&file, "user.binary"), (&dir, "system.posix_acl_access")] {
        assert!(
            stderr.lines().any(|l| l.starts_with("warning: ")
                && l.contains(&format!("{}: setting extended attribute {name}: ", path.display()))),
            "no warning naming {} and {name}: {stderr}",
            path.display()
        );
    }
    // Everything else was restored: contents, modes and times.
    use std::os::unix::fs::MetadataExt;
    for path in &entries {
        let restored = restored_path(target, path);
        let (a, b) =
            (std::fs::symlink_metadata(path).expect("lstat"), std::fs::symlink_metadata(&restored).expect("lstat"));
        assert_eq!(b.mode(), a.mode(), "mode of {}", restored.display());
        if a.is_file() {
            assert_eq!(std::fs::read(&restored).expect("read"), std::fs::read(path).expect("read"));
            assert_eq!(b.mtime(), a.mtime(), "mtime of {}", restored.display());
        }
    }
    assert_eq!(std::fs::read(restored_path(target, &src.join("plain.txt"))).expect("read"), b"no attributes\n");
}
