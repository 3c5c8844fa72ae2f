//! Bad input gets one clear line and a documented exit code, and nothing already stored is lost:
//! a wrong password (12), a missing repository (10), `init` over an existing repository, and a
//! source file that cannot be read (a warning naming it, a snapshot of the rest, exit code 3), and a
//! repository disk that fills up (named, nothing lost, `prune` makes room again).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use assert_cmd::Command;

use crate::support::fstree::contents;
use crate::support::{PASSWORD, TestRepo};

fn one_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr).into_owned();
    assert_eq!(text.lines().count(), 1, "expected one line on stderr, got: {text:?}");
    text
}

fn repo_with_a_snapshot() -> (TestRepo, PathBuf) {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    std::fs::write(src.join("a.txt"), b"precious\n").expect("write");
    repo.cairn().arg("backup").arg(&src).assert().success();
    (repo, src)
}

#[test]
fn wrong_password_exits_12_with_one_line_about_the_password() {
    let (repo, src) = repo_with_a_snapshot();
    let target = repo.dir.path().join("out");
    let attempts: Vec<Vec<std::ffi::OsString>> = vec![
        vec!["snapshots".into()],
        vec!["backup".into(), src.clone().into()],
        vec!["restore".into(), "latest".into(), "--target".into(), target.clone().into()],
        vec!["ls".into(), "latest".into()],
    ];
    for args in &attempts {
        let out = repo.cairn().env("CAIRN_PASSWORD", "hunter2-wrong").args(args).output().expect("runs");
        assert_eq!(out.status.code(), Some(12), "{args:?}: {out:?}");
        let line = one_line(&out.stderr);
        assert!(line.contains("password"), "{args:?}: {line}");
        assert!(!line.contains("hunter2"), "the password was echoed: {line}");
        assert!(out.stdout.is_empty(), "{args:?} printed {:?}", String::from_utf8_lossy(&out.stdout));
    }
    assert!(!target.exists(), "restore with a wrong password created the target");

    // Through a password file too.
    let file = repo.dir.path().join("password.txt");
    std::fs::write(&file, "not it\n").expect("write");
    let out = repo
        .cairn()
        .env_remove("CAIRN_PASSWORD")
        .arg("--password-file")
        .arg(&file)
        .arg("snapshots")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(12), "{out:?}");
    assert!(one_line(&out.stderr).contains("password"));

    // Nothing was written and the right password still works.
    let snaps = repo.json(&["snapshots"]);
    assert_eq!(snaps.as_array().expect("array").len(), 1);
    let file = format!("{}/a.txt", src.display());
    repo.cairn().args(["dump", "latest", &file]).assert().success().stdout("precious\n");
}

#[test]
fn missing_repository_exits_10_and_creates_nothing() {
    let repo = TestRepo::uninitialised();
    let src = repo.scratch("src");
    std::fs::write(src.join("a.txt"), b"x").expect("write");
    let missing = repo.dir.path().join("no-such-repo");
    let target = repo.dir.path().join("out");
    let attempts: Vec<Vec<std::ffi::OsString>> = vec![
        vec!["snapshots".into()],
        vec!["backup".into(), src.clone().into()],
        vec!["restore".into(), "latest".into(), "--target".into(), target.clone().into()],
        vec!["ls".into(), "latest".into()],
        vec!["dump".into(), "latest".into(), "/a.txt".into()],
    ];
    for args in attempts {
        let out = repo.cairn().env("CAIRN_REPOSITORY", &missing).args(&args).output().expect("runs");
        assert_eq!(out.status.code(), Some(10), "{args:?}: {out:?}");
        let line = one_line(&out.stderr);
        assert!(line.contains("no repository") && line.contains(missing.to_str().expect("UTF-8")), "{line}");
        assert!(!missing.exists(), "{args:?} created the repository folder");
    }
    // An empty folder is not a repository either.
    let empty = repo.scratch("empty");
    let out = repo.cairn().env("CAIRN_REPOSITORY", &empty).arg("snapshots").output().expect("runs");
    assert_eq!(out.status.code(), Some(10), "{out:?}");
    assert!(!target.exists());
}

/// Every file of the repository with its bytes.
fn repository_state(repo: &TestRepo) -> BTreeMap<PathBuf, Vec<u8>> {
    contents(&repo.repo_path())
}

#[test]
fn init_on_an_existing_repository_fails_without_damage() {
    let (repo, src) = repo_with_a_snapshot();
    let before = repository_state(&repo);
    for password in [PASSWORD, "another password"] {
        let out = repo
            .cairn()
            .env("CAIRN_PASSWORD", password)
            .args(["init", "--kdf-memory-kib", "64", "--kdf-time", "1"])
            .output()
            .expect("runs");
        assert!(!out.status.success(), "init over an existing repository succeeded");
        assert!(one_line(&out.stderr).contains("already exists"), "{out:?}");
        assert_eq!(repository_state(&repo), before, "init changed the existing repository");
    }
    // The new password was not added, the old one still opens everything.
    let out = repo.cairn().env("CAIRN_PASSWORD", "another password").arg("snapshots").output().expect("runs");
    assert_eq!(out.status.code(), Some(12));
    let target = repo.scratch("out");
    repo.cairn().args(["restore", "latest", "--verify", "--target"]).arg(&target).assert().success();
    let restored = crate::support::fstree::restored_path(&target, &src);
    assert_eq!(std::fs::read(restored.join("a.txt")).expect("restored"), b"precious\n");
}

/// A folder everyone may use, and the binary where an unprivileged user can run it: root reads
/// any file whatever its mode, so permission errors are only real for another user.
struct Unprivileged {
    dir: tempfile::TempDir,
    binary: PathBuf,
}

impl Unprivileged {
    const UID: u32 = 65534;

    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temporary folder");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let built = crate::support::cairn_bin();
        let binary = dir.path().join("cairn");
        // The build folder may sit below folders the user cannot enter.
        std::fs::hard_link(&built, &binary).or_else(|_| std::fs::copy(&built, &binary).map(|_| ())).expect("binary");
        Self { dir, binary }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `cairn` run as `nobody`, with repository, cache and home in the shared folder.
    fn cairn(&self) -> Command {
        let mut c = Command::new("setpriv");
        c.args([format!("--reuid={}", Self::UID), format!("--regid={}", Self::UID), "--clear-groups".to_owned()])
            .arg(&self.binary)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("CAIRN_REPOSITORY", self.path("repo"))
            .env("CAIRN_PASSWORD", PASSWORD)
            .env("CAIRN_CACHE_DIR", self.path("cache"));
        c
    }
}

fn write(path: &Path, bytes: &[u8], mode: u32) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, bytes).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[test]
fn unreadable_files_are_named_skipped_and_exit_3_with_a_snapshot_of_the_rest() {
    let user = Unprivileged::new();
    user.cairn().args(["init", "--kdf-memory-kib", "64", "--kdf-time", "1"]).assert().success();
    let src = user.path("src");
    write(&src.join("readable.txt"), b"readable\n", 0o644);
    write(&src.join("sub/also.txt"), b"also\n", 0o644);
    write(&src.join("locked.txt"), b"secret\n", 0o000);
    write(&src.join("closed/inside.txt"), b"hidden\n", 0o644);
    std::fs::set_permissions(src.join("closed"), std::fs::Permissions::from_mode(0o700)).expect("chmod");

    let out = user.cairn().args(["backup", "--json"]).arg(&src).output().expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let locked = src.join("locked.txt");
    let closed = src.join("closed");
    assert!(
        stderr.lines().any(|l| l.contains(locked.to_str().expect("UTF-8")) && l.contains("ermission denied")),
        "no warning names the unreadable file: {stderr}"
    );
    assert!(
        stderr.lines().any(|l| l.contains(closed.to_str().expect("UTF-8"))),
        "no warning names the folder: {stderr}"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["warnings"].as_array().expect("warnings").len(), 2, "{report}");
    assert_eq!(report["summary"]["warnings"], 2);
    let id = report["snapshot_id"].as_str().expect("a snapshot was written").to_owned();

    let list = user.cairn().args(["snapshots", "--json"]).output().expect("runs");
    assert!(list.status.success());
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).expect("JSON");
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list.as_array().expect("array").len(), 1);

    let target = user.path("out");
    user.cairn().args(["restore", &id, "--target"]).arg(&target).assert().success();
    let restored = crate::support::fstree::restored_path(&target, &src);
    let files: Vec<PathBuf> = contents(&restored).into_keys().collect();
    assert_eq!(files, [PathBuf::from("readable.txt"), PathBuf::from("sub/also.txt")]);
    assert_eq!(std::fs::read(restored.join("readable.txt")).expect("read"), b"readable\n");
}

/// A tmpfs of a few MiB mounted for one test and unmounted after it (mounting needs root, as the
/// tests that switch users do).
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn new(mib: u32) -> Self {
        let dir = tempfile::tempdir().expect("temporary folder");
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("runs mount");
        assert!(status.success(), "mounting a {mib} MiB tmpfs at {} failed (needs root)", dir.path().display());
        Self { dir }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

#[test]
fn a_full_repository_disk_is_named_loses_nothing_and_prune_makes_room_again() {
    let disk = SmallDisk::new(24);
    let repo = TestRepo::uninitialised();
    let on_disk = || {
        let mut c = repo.cairn();
        c.env("CAIRN_REPOSITORY", disk.dir.path().join("repo"));
        c
    };
    on_disk().args(["init", "--kdf-memory-kib", "64", "--kdf-time", "1"]).assert().success();
    let small = repo.scratch("small");
    std::fs::write(small.join("first.txt"), b"first\n").expect("write");
    on_disk().arg("backup").arg(&small).assert().success();

    // Incompressible and larger than the disk: the backup fails while writing packs.
    let big = repo.scratch("big").join("big.bin");
    crate::support::data::write_random_file(&big, 7, 64 << 20);
    let out = on_disk().arg("-q").arg("backup").arg(&big).output().expect("runs");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let line = one_line(&out.stderr);
    assert!(line.contains("No space left on device") && line.contains("cairn prune"), "{line}");

    let listed = |expected: usize| {
        let out = on_disk().args(["snapshots", "--json"]).output().expect("runs");
        assert!(out.status.success(), "{out:?}");
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(list.as_array().expect("array").len(), expected, "{list}");
    };
    listed(1);
    on_disk().arg("check").assert().success();
    // The write that failed took its partly written file away at once.
    let temporary: Vec<_> = std::fs::read_dir(disk.dir.path().join("repo/tmp")).expect("tmp folder").collect();
    assert!(temporary.is_empty(), "left in tmp/: {temporary:?}");

    // Something else fills the disk to the last few KB. What the failed backup left (a whole pack no
    // index names) goes first, and with nothing else to change prune writes no new index: it needs
    // room only for its lock.
    let filler = disk.dir.path().join("filler");
    let free = || {
        let st = nix::sys::statvfs::statvfs(disk.dir.path()).expect("statvfs");
        st.blocks_available() as u64 * st.fragment_size() as u64
    };
    crate::support::data::write_random_file(&filler, 8, free() - (16 << 10));
    assert!(free() <= 16 << 10, "{} bytes still free", free());
    on_disk().arg("prune").assert().success();
    assert!(free() > 8 << 20, "prune left {} bytes free", free());
    std::fs::remove_file(&filler).expect("remove filler");
    std::fs::write(small.join("second.txt"), b"second\n").expect("write");
    on_disk().arg("backup").arg(&small).assert().success();
    listed(2);
    on_disk().args(["check", "--read-data"]).assert().success();
    let target = repo.scratch("restored");
    on_disk().args(["restore", "latest", "--target"]).arg(&target).assert().success();
    let restored = crate::support::fstree::restored_path(&target, &small);
    assert_eq!(std::fs::read(restored.join("first.txt")).expect("read"), b"first\n");
    assert_eq!(std::fs::read(restored.join("second.txt")).expect("read"), b"second\n");
}
