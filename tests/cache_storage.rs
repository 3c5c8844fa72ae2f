//! The local cache, the storage location, file permissions, locks and duplicate blob copies: a
//! damaged or foreign cache is rebuilt with a warning, an unusable cache folder leaves reading
//! commands working, unsupported locations are refused, nothing is readable by other users, a
//! lock holder stops when it loses its lock, `unlock` clears what a killed process left, and a
//! reader falls back to another copy of a blob when one is damaged.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::support::TestRepo;
use crate::support::data::write_random_file;
use crate::support::fstree::{assert_same_tree, restored_path};

/// Every file below `dir` (not folders).
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.symlink_metadata().map(|m| m.is_dir()).unwrap_or(false) {
                out.extend(files_below(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// The cache database of the one repository cached under `cache`.
fn cache_db(cache: &Path) -> PathBuf {
    let dbs: Vec<PathBuf> = files_below(cache).into_iter().filter(|p| p.ends_with("cache.sqlite")).collect();
    assert_eq!(dbs.len(), 1, "one cache database expected under {}: {dbs:?}", cache.display());
    dbs[0].clone()
}

fn source(repo: &TestRepo) -> PathBuf {
    let src = repo.scratch("src");
    write_random_file(&src.join("big.bin"), 11, 3_000_000);
    std::fs::create_dir_all(src.join("sub")).expect("mkdir");
    std::fs::write(src.join("sub/small.txt"), b"a small file\n").expect("write");
    src
}

/// Runs cairn with `args` and returns its standard error; it must succeed.
fn succeeds(repo: &TestRepo, args: &[&str]) -> String {
    let out = repo.cairn().args(args).output().expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "cairn {args:?} failed: {stderr}");
    stderr
}

fn restore_and_compare(repo: &TestRepo, src: &Path, target_name: &str) -> String {
    restore_snapshot_and_compare(repo, "latest", src, target_name)
}

fn restore_snapshot_and_compare(repo: &TestRepo, snapshot: &str, src: &Path, target_name: &str) -> String {
    let target = repo.dir.path().join(target_name);
    let stderr = succeeds(repo, &["restore", snapshot, "--verify", "--target", target.to_str().expect("UTF-8")]);
    assert_same_tree(src, &restored_path(&target, src));
    stderr
}

fn count_warnings(stderr: &str) -> usize {
    stderr.lines().filter(|l| l.contains("cache")).count()
}

/// Damages the cache with `damage`, then checks that backup, snapshots and restore all work and
/// that the first of them warns once that it rebuilt the cache.
fn cache_damage_is_survived(damage: impl Fn(&Path)) {
    let repo = TestRepo::new();
    let src = source(&repo);
    repo.cairn().arg("backup").arg(&src).assert().success();
    let db = cache_db(&repo.cache_path());
    damage(&db);

    let stderr = succeeds(&repo, &["snapshots"]);
    assert_eq!(count_warnings(&stderr), 1, "one line about the rebuilt cache expected: {stderr}");
    assert!(stderr.contains("rebuil"), "the warning says the cache is rebuilt: {stderr}");
    // Rebuilt once: the next commands are quiet about it.
    let stderr = restore_and_compare(&repo, &src, "out1");
    assert_eq!(count_warnings(&stderr), 0, "{stderr}");
    std::fs::write(src.join("new.txt"), b"new\n").expect("write");
    let stderr = succeeds(&repo, &["backup", src.to_str().expect("UTF-8")]);
    assert_eq!(count_warnings(&stderr), 0, "{stderr}");
    restore_and_compare(&repo, &src, "out2");
    repo.cairn().arg("check").assert().success();
}

#[test]
fn a_cache_overwritten_with_garbage_no_longer_stops_every_command() {
    cache_damage_is_survived(|db| {
        let len = std::fs::metadata(db).expect("cache").len() as usize;
        std::fs::write(db, vec![0x5a; len.max(8192)]).expect("overwrite");
    });
}

#[test]
fn a_truncated_cache_no_longer_stops_every_command() {
    cache_damage_is_survived(|db| {
        // Fold the write-ahead log in first, so the file holds the pages that are cut off.
        let len = std::fs::metadata(db).expect("cache").len();
        let f = std::fs::OpenOptions::new().write(true).open(db).expect("open");
        f.set_len(len / 2).expect("truncate");
        for suffix in ["-wal", "-shm"] {
            let mut p = db.as_os_str().to_owned();
            p.push(suffix);
            let _ = std::fs::remove_file(PathBuf::from(p));
        }
    });
}

#[test]
fn a_cache_with_a_damaged_page_no_longer_stops_every_command() {
    cache_damage_is_survived(|db| {
        // Garbage over everything after the first page: the header still says "SQLite".
        let bytes = std::fs::read(db).expect("read");
        let mut bad = bytes.clone();
        for b in bad.iter_mut().skip(100) {
            *b = 0xa5;
        }
        std::fs::write(db, bad).expect("write");
    });
}

#[test]
fn a_cache_of_a_copied_repository_is_rebuilt_for_the_other_copy() {
    let repo = TestRepo::new();
    let src = source(&repo);
    repo.cairn().arg("backup").arg(&src).assert().success();
    let copy = repo.dir.path().join("copy");
    let status = std::process::Command::new("cp").arg("-a").arg(repo.repo_path()).arg(&copy).status().expect("cp");
    assert!(status.success());
    // The copy changes: a new snapshot there, sharing the cache (same repository id).
    let other = repo.scratch("other");
    std::fs::write(other.join("only-in-copy.txt"), b"copy\n").expect("write");
    let out = repo.cairn().env("CAIRN_REPOSITORY", &copy).arg("backup").arg(&other).output().expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("cache") && stderr.contains("rebuil"), "the copy's first use rebuilds the cache: {stderr}");
    // Back to the original: its cache is rebuilt again, and it holds one snapshot, not two.
    let out = repo.cairn().args(["snapshots", "--json"]).output().expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("rebuil"), "{stderr}");
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(list.as_array().expect("array").len(), 1);
    restore_and_compare(&repo, &src, "out");
    repo.cairn().arg("check").assert().success();
}

#[test]
fn an_unsupported_repository_location_is_refused_instead_of_created_locally() {
    let repo = TestRepo::uninitialised();
    let cwd = repo.scratch("cwd");
    // (s3: locations are supported: tests/s3.rs.)
    for location in ["sftp:host:/srv/backup", "rest:http://127.0.0.1:8000/", "b2:bucket"] {
        for command in [&["init"][..], &["snapshots"][..]] {
            let out =
                repo.cairn().current_dir(&cwd).env("CAIRN_REPOSITORY", location).args(command).output().expect("runs");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{location} was accepted by {command:?}");
            assert!(stderr.contains("not supported"), "{location}: {stderr}");
            assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        }
    }
    assert_eq!(std::fs::read_dir(&cwd).expect("list").count(), 0, "nothing may be created locally");
    // Plain paths (a colon after a slash is no scheme) and local:PATH stay local folders.
    let local = repo.dir.path().join("with:colon");
    repo.cairn()
        .env("CAIRN_REPOSITORY", format!("local:{}", local.display()))
        .args(["init", "--kdf-memory-kib", "64", "--kdf-time", "1"])
        .assert()
        .success();
    assert!(local.join("config").is_file());
    repo.cairn()
        .current_dir(repo.dir.path())
        .env("CAIRN_REPOSITORY", "./with:colon")
        .arg("snapshots")
        .assert()
        .success();
}

/// A backup reading standard input that never ends: it holds its lock until killed or stopped.
fn stalled_backup(repo: &TestRepo, extra_env: &[(&str, &str)]) -> Child {
    let mut cmd = repo.cairn_std();
    cmd.args(["backup", "--stdin"]).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn backup")
}

fn lock_files(repo: &TestRepo) -> Vec<PathBuf> {
    files_below(&repo.repo_path().join("locks"))
}

fn wait_for_lock(repo: &TestRepo, child: &mut Child, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while lock_files(repo).len() < n {
        if let Some(status) = child.try_wait().expect("poll") {
            panic!("the backup ended ({status}) before taking its lock");
        }
        assert!(Instant::now() < deadline, "gave up waiting for the lock");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn mode(p: &Path) -> u32 {
    p.symlink_metadata().expect("metadata").permissions().mode() & 0o777
}

#[test]
fn repository_and_cache_are_not_readable_by_other_users_under_umask_022() {
    let repo = TestRepo::uninitialised();
    let run = |args: &str| {
        let out = repo
            .command("sh")
            .arg("-c")
            .arg(format!("umask 022; exec \"$0\" {args}"))
            .arg(crate::support::cairn_bin())
            .output()
            .expect("runs");
        assert!(out.status.success(), "{args}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run("init --kdf-memory-kib 64 --kdf-time 1");
    let src = source(&repo);
    run(&format!("backup {}", src.display()));
    // A backup that holds its lock (and the cache's write-ahead files) while the modes are read.
    let mut child = repo
        .command("sh")
        .arg("-c")
        .arg("umask 022; exec \"$0\" backup --stdin")
        .arg(crate::support::cairn_bin())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    wait_for_lock(&repo, &mut child, 1);
    let mut checked = 0;
    for root in [repo.repo_path(), repo.cache_path()] {
        assert_eq!(mode(&root), 0o700, "{}", root.display());
        let mut stack = vec![root];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).expect("list").flatten() {
                let p = e.path();
                if p.symlink_metadata().expect("metadata").is_dir() {
                    assert_eq!(mode(&p), 0o700, "folder {}", p.display());
                    stack.push(p);
                } else {
                    assert_eq!(mode(&p), 0o600, "file {}", p.display());
                }
                checked += 1;
            }
        }
    }
    assert!(lock_files(&repo).iter().all(|l| mode(l) == 0o600));
    let _ = child.kill();
    let _ = child.wait();
    assert!(checked > 10, "only {checked} entries looked at");
}

#[test]
fn reading_commands_work_without_a_cache_when_the_cache_folder_cannot_be_created() {
    let repo = TestRepo::new();
    let src = source(&repo);
    repo.cairn().arg("backup").arg(&src).assert().success();
    let blocker = repo.dir.path().join("not-a-folder");
    std::fs::write(&blocker, b"a file where the cache folder would be").expect("write");
    let snapshot = {
        let list = repo.json(&["snapshots"]);
        list[0]["id"].as_str().expect("id").to_owned()
    };
    let file = format!("{}/sub/small.txt", src.display());
    let target = repo.dir.path().join("out");
    let commands: Vec<Vec<String>> = vec![
        vec!["snapshots".into()],
        vec!["ls".into(), "latest".into()],
        vec!["restore".into(), "latest".into(), "--target".into(), target.display().to_string()],
        vec!["dump".into(), "latest".into(), file],
        vec!["check".into()],
        vec!["cat".into(), "snapshot".into(), snapshot],
    ];
    for (variable, value) in [("CAIRN_CACHE_DIR", blocker.join("cairn")), ("XDG_CACHE_HOME", blocker.clone())] {
        for args in &commands {
            let mut cmd = repo.cairn();
            if variable != "CAIRN_CACHE_DIR" {
                cmd.env_remove("CAIRN_CACHE_DIR");
            }
            let out = cmd.env(variable, &value).args(args).output().expect("runs");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{variable}: cairn {args:?} failed: {stderr}");
            assert_eq!(count_warnings(&stderr), 1, "one line about the cache: {stderr}");
        }
        let _ = std::fs::remove_dir_all(&target);
    }
    assert!(std::fs::metadata(&blocker).expect("still there").is_file());
}

#[test]
fn unlock_removes_the_stale_lock_of_a_killed_backup_and_keeps_live_ones() {
    let repo = TestRepo::new();
    let mut killed = stalled_backup(&repo, &[]);
    wait_for_lock(&repo, &mut killed, 1);
    killed.kill().expect("SIGKILL");
    killed.wait().expect("reap");
    let stale = lock_files(&repo);
    assert_eq!(stale.len(), 1);

    let mut live = stalled_backup(&repo, &[]);
    wait_for_lock(&repo, &mut live, 2);
    let out = repo.cairn().arg("unlock").output().expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("1 stale lock"), "{stdout}");
    let left = lock_files(&repo);
    assert_eq!(left.len(), 1, "the live lock stays");
    assert!(!left.contains(&stale[0]), "the stale lock went");

    let out = repo.cairn().args(["unlock", "--remove-all"]).output().expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(lock_files(&repo).is_empty());
    let _ = live.kill();
    let _ = live.wait();
}

#[test]
fn a_backup_stops_when_its_lock_is_removed_under_it() {
    let repo = TestRepo::new();
    let mut child = stalled_backup(&repo, &[("CAIRN_TEST_LOCK_REFRESH_MS", "20")]);
    let mut stdin = child.stdin.take().expect("stdin");
    // Some data first, so that the backup is busy with a stream when the lock goes.
    let chunk = vec![0u8; 1 << 20];
    stdin.write_all(&chunk).expect("write");
    wait_for_lock(&repo, &mut child, 1);
    // Keep the backup fed until it gives up; it must, long before a gigabyte. The lock is removed
    // again each time: a refresh that checked for the file just before a removal writes it anew
    // (as it would for an operator's `rm`), and only the next check sees it gone.
    let mut fed = 0u64;
    while child.try_wait().expect("poll").is_none() {
        for l in lock_files(&repo) {
            let _ = std::fs::remove_file(l);
        }
        if stdin.write_all(&chunk).is_err() {
            break;
        }
        fed += 1;
        assert!(fed < 1024, "the backup went on for 1 GiB after losing its lock");
    }
    drop(stdin);
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("lock"), "the error names the lock: {stderr}");
    let list = repo.json(&["snapshots"]);
    assert_eq!(list.as_array().expect("array").len(), 0, "no snapshot after the lock was lost");
}

/// Every pack file below the repository's `data/`.
fn packs(repo: &TestRepo) -> Vec<PathBuf> {
    files_below(&repo.repo_path().join("data"))
}

fn move_all(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("list").flatten() {
        std::fs::rename(e.path(), to.join(e.file_name())).expect("move");
    }
}

#[test]
fn restore_and_dump_read_another_copy_when_a_blob_copy_is_damaged_or_its_pack_missing() {
    let repo = TestRepo::new();
    let src = source(&repo);
    repo.cairn().arg("backup").arg(&src).assert().success();
    let first: Vec<PathBuf> = packs(&repo);
    // A second backup that did not see the first one's index (as two backups started together
    // would) stores every blob again, in packs of its own.
    let aside = repo.dir.path().join("aside");
    move_all(&repo.repo_path().join("index"), &aside.join("index"));
    move_all(&repo.repo_path().join("snapshots"), &aside.join("snapshots"));
    repo.cairn().arg("backup").arg(&src).assert().success();
    move_all(&aside.join("index"), &repo.repo_path().join("index"));
    move_all(&aside.join("snapshots"), &repo.repo_path().join("snapshots"));
    let second: Vec<PathBuf> = packs(&repo).into_iter().filter(|p| !first.contains(p)).collect();
    assert!(!first.is_empty() && !second.is_empty());

    let snapshots: Vec<String> = repo
        .json(&["snapshots"])
        .as_array()
        .expect("array")
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(snapshots.len(), 2);
    let file = format!("{}/big.bin", src.display());
    let expected = std::fs::read(src.join("big.bin")).expect("read");
    // Whichever copy a reader looks at first, one round damages it: the first set goes missing
    // (the second snapshot is read), then the second set is overwritten with garbage (the first
    // snapshot is read). Each snapshot's own trees may sit only in its own packs; its file data
    // has a copy in both.
    for (round, set) in [&first, &second].into_iter().enumerate() {
        let snapshot = &snapshots[1 - round];
        let saved: Vec<(PathBuf, Vec<u8>)> = set.iter().map(|p| (p.clone(), std::fs::read(p).expect("read"))).collect();
        for (p, bytes) in &saved {
            if round == 0 {
                std::fs::remove_file(p).expect("rm");
            } else {
                std::fs::write(p, bytes.iter().map(|b| b ^ 0xff).collect::<Vec<u8>>()).expect("damage");
            }
        }
        let _ = std::fs::remove_dir_all(repo.cache_path());
        restore_snapshot_and_compare(&repo, snapshot, &src, &format!("out{round}"));
        let out = repo.cairn().args(["dump", snapshot, &file]).output().expect("runs");
        assert!(out.status.success(), "dump: {}", String::from_utf8_lossy(&out.stderr));
        assert!(out.stdout == expected, "dump gave other bytes");
        for (p, bytes) in saved {
            std::fs::write(p, bytes).expect("undo the damage");
        }
    }
}
