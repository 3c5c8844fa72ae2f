//! Ctrl-C (SIGINT) or SIGTERM during a backup or a restore: the command stops at its next safe
//! point with exit code 130 and one line saying so. A backup writes no snapshot, indexes what it had
//! already stored (the next run reuses it), and leaves no lock or temporary file; a restore leaves
//! no partly written file. The moment is made certain, not timed: the backup reads from a command
//! that stalls with its output open, and the restore is stopped (SIGSTOP) once its files exist.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::TestRepo;
use crate::support::data::{same_contents, write_random_file};

fn files_under(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => files_under(&e.path()),
            Ok(_) => 1,
            Err(_) => 0,
        })
        .sum()
}

/// Waits until `ready` holds, failing loudly after two minutes (or if the process ended first).
fn wait_for(child: &mut Child, what: &str, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ready() {
        if let Some(status) = child.try_wait().expect("poll the child") {
            panic!("the process ended ({status}) before {what}");
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn signal(child: &Child, signal: Signal) {
    kill(Pid::from_raw(i32::try_from(child.id()).expect("pid")), signal).expect("send signal");
}

fn stderr_line(out: &std::process::Output) -> String {
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(text.lines().count(), 1, "expected one line on stderr: {text:?}");
    text
}

#[test]
fn an_interrupted_backup_indexes_what_it_stored_and_leaves_nothing_behind() {
    let repo = TestRepo::new();
    let part = repo.scratch("src").join("part.bin");
    write_random_file(&part, 0x1e7_0001, 48 << 20);
    // 48 MiB, then the command stalls with its output still open: the backup cannot end by itself.
    let stalling = format!("cat '{}'; exec sleep 120", part.display());
    let mut backup = repo
        .cairn_std()
        .args(["-q", "backup", "--stdin-filename", "db.dump", "--stdin-from-command", "--", "sh", "-c", &stalling])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts cairn");
    let data = repo.repo_path().join("data");
    wait_for(&mut backup, "two packs were stored", || files_under(&data) >= 2);
    signal(&backup, Signal::SIGINT);
    let out = backup.wait_with_output().expect("cairn ends");
    assert_eq!(out.status.code(), Some(130), "{out:?}");
    let line = stderr_line(&out);
    assert!(line.contains("interrupted") && line.contains("no snapshot"), "{line}");

    // No snapshot, no lock, no temporary file, and no pack that the index does not name.
    assert_eq!(repo.json(&["snapshots"]).as_array().expect("array").len(), 0);
    assert_eq!(files_under(&repo.repo_path().join("locks")), 0, "a lock was left behind");
    assert_eq!(files_under(&repo.repo_path().join("tmp")), 0, "a temporary file was left behind");
    let check = repo.cairn().arg("check").output().expect("runs");
    let said = format!("{}{}", String::from_utf8_lossy(&check.stdout), String::from_utf8_lossy(&check.stderr));
    assert!(check.status.success() && !said.contains("named by no index"), "{said}");

    // The next run of the same dump stores almost nothing: the chunks are already there.
    let out = repo
        .cairn()
        .args(["--json", "backup", "--stdin-filename", "db.dump", "--stdin-from-command", "--", "cat"])
        .arg(&part)
        .output()
        .expect("runs");
    assert!(out.status.success(), "{out:?}");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let added = r["summary"]["data_blobs_added"].as_u64().expect("count");
    assert!(added <= 2, "the rerun stored {added} new chunks: {r}");
    let dumped = repo.dir.path().join("dumped.bin");
    let file = std::fs::File::create(&dumped).expect("create");
    let status = repo.cairn_std().args(["dump", "latest", "/db.dump"]).stdout(file).status().expect("dump runs");
    assert!(status.success());
    assert!(same_contents(&dumped, &part));
}

#[test]
fn an_interrupted_restore_removes_the_files_it_had_not_finished() {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    for i in 0..3 {
        write_random_file(&src.join(format!("big-{i}.bin")), 0x1e7_0010 + i, 40 << 20);
    }
    repo.cairn().args(["-q", "backup"]).arg(&src).assert().success();

    let target = repo.dir.path().join("out");
    let mut restore = repo
        .cairn_std()
        .args(["-q", "restore", "latest", "--target"])
        .arg(&target)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts cairn");
    // A batch creates all of its files before writing any data: once one exists, stop the process,
    // so the signal certainly lands in the middle of the batch.
    wait_for(&mut restore, "the restore created its files", || files_under(&target) > 0);
    signal(&restore, Signal::SIGSTOP);
    signal(&restore, Signal::SIGINT);
    signal(&restore, Signal::SIGCONT);
    let out = restore.wait_with_output().expect("cairn ends");
    assert_eq!(out.status.code(), Some(130), "{out:?}");
    assert!(stderr_line(&out).contains("interrupted"));
    assert_eq!(files_under(&target), 0, "partly written files were left in {}", target.display());

    // Restoring again finishes the job.
    repo.cairn().args(["-q", "restore", "latest", "--verify", "--target"]).arg(&target).assert().success();
    let restored = crate::support::fstree::restored_path(&target, &src);
    for i in 0..3 {
        let name = format!("big-{i}.bin");
        assert!(same_contents(&restored.join(&name), &src.join(&name)), "{name}");
    }
}
