//! What `cairn backup` reads: files that change while they are read, missing backup roots, empty
//! standard input, packs that went missing since the index named them, sparse files, and names
//! that are not UTF-8.

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::TestRepo;
use crate::support::data::{Rng, write_random_file};
use crate::support::fstree::restored_path;

/// The exit code of a backup that wrote a snapshot but could not read all of its input.
const INCOMPLETE: i32 = 3;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("JSON output ({e}): {}; stderr: {}", String::from_utf8_lossy(&out.stdout), stderr(out))
    })
}

/// The size `ls --json` records for `path` in snapshot `id`.
fn recorded_size(repo: &TestRepo, id: &str, path: &Path) -> u64 {
    let out = repo.cairn().args(["ls", id, "--json"]).output().expect("runs");
    assert!(out.status.success(), "ls failed: {}", stderr(&out));
    let wanted = path.to_str().expect("UTF-8 path");
    String::from_utf8(out.stdout)
        .expect("UTF-8")
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON line"))
        .find(|e| e["path"] == wanted)
        .unwrap_or_else(|| panic!("{wanted} not in snapshot {id}"))["size"]
        .as_u64()
        .expect("size")
}

fn restore_all(repo: &TestRepo, id: &str, target: &Path) {
    let out = repo.cairn().args(["restore", id, "--target"]).arg(target).output().expect("runs");
    assert!(out.status.success(), "restore failed: {}", stderr(&out));
}

/// The descriptor number under which process `pid` has `file` open, if it has.
fn open_fd(pid: u32, file: &Path) -> Option<String> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    for fd in fds.flatten() {
        if std::fs::read_link(fd.path()).is_ok_and(|t| t == file) {
            return Some(fd.file_name().to_string_lossy().into_owned());
        }
    }
    None
}

/// The file offset of descriptor `fd` of process `pid`.
fn fd_position(pid: u32, fd: &str) -> Option<u64> {
    let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).ok()?;
    info.lines().find_map(|l| l.strip_prefix("pos:")).and_then(|p| p.trim().parse().ok())
}

/// Backs up `src` and, while cairn has `file` open and has read only part of it, stops cairn
/// (SIGSTOP), applies `change` to the file and lets cairn go on (SIGCONT). The change is staged
/// from what the kernel reports (the open descriptor and its offset), not from timing. Returns the
/// backup's output, or `None` when cairn read the whole file before it could be stopped.
fn backup_changing_mid_read(
    repo: &TestRepo,
    src: &Path,
    file: &Path,
    change: &dyn Fn(&Path),
) -> Option<std::process::Output> {
    let size = std::fs::metadata(file).expect("file").len();
    let mut child = repo
        .cairn_std()
        .args(["backup", "--json"])
        .arg(src)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts cairn");
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    let mut staged = false;
    loop {
        if child.try_wait().expect("polls cairn").is_some() {
            break;
        }
        let Some(fd) = open_fd(child.id(), file) else {
            std::thread::yield_now();
            continue;
        };
        kill(pid, Signal::SIGSTOP).expect("stops cairn");
        // Stopped now: look again, the file may have been closed meanwhile.
        if open_fd(child.id(), file).as_deref() == Some(fd.as_str())
            && fd_position(child.id(), &fd).is_some_and(|pos| pos < size)
        {
            change(file);
            staged = true;
        }
        kill(pid, Signal::SIGCONT).expect("continues cairn");
        break;
    }
    let out = child.wait_with_output().expect("cairn output");
    staged.then_some(out)
}

/// Runs [`backup_changing_mid_read`] on a fresh repository and a large random file until the
/// change could be staged (each attempt with a larger file, which takes cairn longer to read).
fn stage(seed: u64, change: &dyn Fn(&Path)) -> (TestRepo, PathBuf, Vec<u8>, std::process::Output) {
    for attempt in 0..4u32 {
        let repo = TestRepo::new();
        let src = repo.scratch("src");
        let file = src.join("big.bin");
        write_random_file(&file, seed, (96u64 << 20) << attempt);
        let original = std::fs::read(&file).expect("read");
        if let Some(out) = backup_changing_mid_read(&repo, &src, &file, change) {
            return (repo, file, original, out);
        }
        eprintln!("attempt {attempt}: cairn read the whole file before it could be stopped");
    }
    panic!("cairn always read the whole file before it could be stopped");
}

#[test]
fn file_that_shrinks_while_read_is_recorded_with_the_bytes_read_and_warned() {
    let (repo, file, original, out) = stage(0x5111, &|f| {
        std::fs::OpenOptions::new().write(true).open(f).expect("open").set_len(1 << 20).expect("truncate");
    });
    assert_eq!(out.status.code(), Some(INCOMPLETE), "stderr: {}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("file changed while it was read: {}", file.display())),
        "stderr: {}",
        stderr(&out)
    );
    let report = json(&out);
    let id = report["snapshot_id"].as_str().expect("a snapshot was written");
    let size = recorded_size(&repo, id, &file);
    assert!(size < original.len() as u64, "recorded {size} bytes of a file that shrank");
    let target = repo.scratch("target");
    restore_all(&repo, id, &target);
    let restored = std::fs::read(restored_path(&target, &file)).expect("restored file");
    assert_eq!(restored.len() as u64, size, "restored length differs from the recorded size");
    assert!(original.starts_with(&restored), "the restored file is not what was read (zeros padded?)");
}

#[test]
fn file_that_grows_while_read_is_recorded_with_the_bytes_read_and_warned() {
    let (repo, file, _, out) = stage(0x6202, &|f| {
        let mut a = std::fs::OpenOptions::new().append(true).open(f).expect("open");
        a.write_all(&Rng::new(7).bytes(1 << 20)).expect("append");
    });
    assert_eq!(out.status.code(), Some(INCOMPLETE), "stderr: {}", stderr(&out));
    assert!(stderr(&out).contains("file changed while it was read"), "stderr: {}", stderr(&out));
    let id = json(&out)["snapshot_id"].as_str().expect("a snapshot was written").to_owned();
    let now = std::fs::read(&file).expect("read");
    assert_eq!(recorded_size(&repo, &id, &file), now.len() as u64, "the size recorded is not the bytes stored");
    let target = repo.scratch("target");
    restore_all(&repo, &id, &target);
    let restored = std::fs::read(restored_path(&target, &file)).expect("restored file");
    assert!(restored == now, "restored {} bytes, the grown file has {}", restored.len(), now.len());
    let verify = repo.cairn().args(["restore", &id, "--verify", "--target"]).arg(repo.scratch("again")).output();
    assert!(verify.expect("runs").status.success(), "restore --verify failed for a grown file");
}

#[test]
fn one_missing_backup_root_does_not_abort_the_backup() {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    std::fs::write(src.join("kept.txt"), b"still backed up").expect("write");
    let missing = repo.dir.path().join("gone");
    let out = repo.cairn().args(["backup", "--json"]).arg(&src).arg(&missing).output().expect("runs");
    assert_eq!(out.status.code(), Some(INCOMPLETE), "stderr: {}", stderr(&out));
    assert!(stderr(&out).contains(&missing.display().to_string()), "the missing root is not named: {}", stderr(&out));
    let id = json(&out)["snapshot_id"].as_str().expect("a snapshot was written").to_owned();
    // As restic: the snapshot names only the paths it holds.
    assert_eq!(repo.json(&["snapshots"])[0]["paths"], serde_json::json!([src.to_str().expect("UTF-8")]));
    let target = repo.scratch("target");
    restore_all(&repo, &id, &target);
    assert_eq!(std::fs::read(restored_path(&target, &src.join("kept.txt"))).expect("restored"), b"still backed up");
}

#[test]
fn backup_whose_only_roots_are_missing_fails_without_a_snapshot() {
    let repo = TestRepo::new();
    let a = repo.dir.path().join("gone-a");
    let b = repo.dir.path().join("gone-b");
    let out = repo.cairn().arg("backup").arg(&a).arg(&b).output().expect("runs");
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    assert!(stderr(&out).contains("gone-a"), "stderr: {}", stderr(&out));
    assert!(std::fs::read_dir(repo.repo_path().join("snapshots")).expect("snapshots folder").next().is_none());
}

#[test]
fn empty_stdin_is_warned_about_and_exits_3() {
    let repo = TestRepo::new();
    let out = repo
        .cairn()
        .args(["backup", "--stdin", "--stdin-filename", "db.sql", "--json"])
        .write_stdin(Vec::new())
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(INCOMPLETE), "stderr: {}", stderr(&out));
    assert!(stderr(&out).contains("standard input was empty"), "stderr: {}", stderr(&out));
    assert!(json(&out)["snapshot_id"].is_string(), "the (empty) snapshot is still written");
}

#[test]
fn backup_does_not_deduplicate_against_a_pack_that_is_gone() {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    write_random_file(&src.join("a.bin"), 0xd13, 3 << 20);
    std::fs::write(src.join("b.txt"), b"small").expect("write");
    let first = repo.json(&["backup", src.to_str().expect("UTF-8")]);
    assert_eq!(first["warnings"], serde_json::json!([]));
    // Lose every data pack (tree packs stay).
    let mut lost = 0;
    for sub in std::fs::read_dir(repo.repo_path().join("data")).expect("data folder").flatten() {
        for pack in std::fs::read_dir(sub.path()).expect("pack folder").flatten() {
            let bytes = std::fs::read(pack.path()).expect("pack");
            // A data pack holds the file's incompressible bytes; tree packs are small.
            if bytes.len() > 1 << 20 {
                std::fs::remove_file(pack.path()).expect("remove");
                lost += 1;
            }
        }
    }
    assert!(lost > 0, "no data pack found to remove");
    // The files look unchanged since the parent snapshot, whose chunks the index still names.
    let out = repo.cairn().args(["backup", "--json"]).arg(&src).output().expect("runs");
    assert!(out.status.success(), "backup failed: {}", stderr(&out));
    let second = json(&out)["snapshot_id"].as_str().expect("id").to_owned();
    // Forget what the lost pack held: the index then names only packs that exist.
    let out = repo.cairn().args(["repair", "index"]).output().expect("runs");
    assert!(out.status.success(), "repair index failed: {}", stderr(&out));
    let out = repo.cairn().args(["forget", first["snapshot_id"].as_str().expect("id")]).output().expect("runs");
    assert!(out.status.success(), "forget failed: {}", stderr(&out));
    let check = repo.cairn().args(["check", "--read-data"]).output().expect("runs");
    assert!(check.status.success(), "check --read-data after a backup over a lost pack: {}", stderr(&check));
    let target = repo.scratch("target");
    restore_all(&repo, &second, &target);
    assert!(
        crate::support::data::same_contents(&src.join("a.bin"), &restored_path(&target, &src.join("a.bin"))),
        "restored file differs"
    );
}

/// Writes a sparse file: holes at the start, in the middle and at the end, data between.
fn write_sparse(path: &Path) -> Vec<u8> {
    let len: u64 = (40 << 20) + 4321;
    let f = std::fs::File::create(path).expect("create");
    f.set_len(len).expect("set_len");
    let mut rng = Rng::new(0x5ba5);
    use std::os::unix::fs::FileExt;
    for (at, n) in [((9u64 << 20) + 17, 3 << 20), ((21u64 << 20) + 5, 100_000), (30u64 << 20, 2 << 20)] {
        f.write_all_at(&rng.bytes(n), at).expect("write");
    }
    f.sync_all().expect("sync");
    std::fs::read(path).expect("read")
}

#[test]
fn sparse_file_with_holes_at_start_middle_and_end_round_trips() {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    let file = src.join("sparse.img");
    let content = write_sparse(&file);
    let r = repo.json(&["backup", src.to_str().expect("UTF-8")]);
    assert_eq!(r["warnings"], serde_json::json!([]));
    let id = r["snapshot_id"].as_str().expect("id").to_owned();
    assert_eq!(recorded_size(&repo, &id, &file), content.len() as u64);
    let target = repo.scratch("target");
    restore_all(&repo, &id, &target);
    let restored = std::fs::read(restored_path(&target, &file)).expect("restored");
    assert!(restored == content, "sparse file content differs after a round trip");
    // The holes are stored as the zero chunks a dense copy of the same bytes has: nothing new.
    let dense = repo.scratch("dense");
    std::fs::write(dense.join("sparse.img"), &content).expect("write");
    let r = repo.json(&["backup", dense.to_str().expect("UTF-8")]);
    assert_eq!(r["summary"]["data_blobs_added"], 0, "a dense copy stored new chunks: {r}");
}

/// A name that is not UTF-8.
fn latin1(name: &[u8]) -> &OsStr {
    OsStr::from_bytes(name)
}

#[test]
fn names_that_are_not_utf8_back_up_filter_and_restore_byte_exact() {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    let root = src.join(latin1(b"r\xe9pertoire"));
    std::fs::create_dir_all(root.join(latin1(b"sub\xff"))).expect("mkdir");
    std::fs::write(root.join(latin1(b"caf\xe9")), b"latin-1 name").expect("write");
    std::fs::write(root.join("caf\u{fffd}"), b"replacement character").expect("write");
    std::fs::write(root.join(latin1(b"sub\xff/x\xe9.tmp")), b"excluded").expect("write");
    std::fs::write(root.join(latin1(b"sub\xff/inner")), b"inner").expect("write");
    // The root itself is not UTF-8; the pattern names the UTF-8 look-alike only.
    let out = repo
        .cairn()
        .args(["backup", "--json", "--exclude", "*.tmp", "--exclude", "caf\u{fffd}"])
        .arg(&root)
        .output()
        .expect("runs");
    assert!(out.status.success(), "backup failed: {}", stderr(&out));
    let id = json(&out)["snapshot_id"].as_str().expect("id").to_owned();
    let target = repo.scratch("target");
    restore_all(&repo, &id, &target);
    let back = restored_path(&target, &root);
    assert_eq!(std::fs::read(back.join(latin1(b"caf\xe9"))).expect("latin-1 name restored"), b"latin-1 name");
    assert_eq!(std::fs::read(back.join(latin1(b"sub\xff/inner"))).expect("inner restored"), b"inner");
    assert!(!back.join("caf\u{fffd}").exists(), "the excluded UTF-8 look-alike was backed up");
    assert!(!back.join(latin1(b"sub\xff/x\xe9.tmp")).exists(), "*.tmp did not exclude a non-UTF-8 name");

    // SNAPSHOT:PATH with a path that is not UTF-8, for restore, ls and dump.
    let file = root.join(latin1(b"caf\xe9"));
    let mut spec = format!("{id}:").into_bytes();
    spec.extend_from_slice(file.as_os_str().as_bytes());
    let one = repo.scratch("one");
    let out = repo.cairn().arg("restore").arg(OsStr::from_bytes(&spec)).arg("--target").arg(&one).output();
    let out = out.expect("runs");
    assert!(out.status.success(), "restore SNAPSHOT:PATH failed: {}", stderr(&out));
    assert_eq!(std::fs::read(one.join(latin1(b"caf\xe9"))).expect("restored alone"), b"latin-1 name");
    let out = repo.cairn().args(["dump", &id]).arg(&file).output().expect("runs");
    assert!(out.status.success(), "dump failed: {}", stderr(&out));
    assert_eq!(out.stdout, b"latin-1 name");
    let out = repo.cairn().args(["ls", &id]).arg(root.join(latin1(b"sub\xff"))).output().expect("runs");
    assert!(out.status.success(), "ls failed: {}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("inner"), "ls: {}", String::from_utf8_lossy(&out.stdout));

    // Restore's own --exclude matches stored names as bytes too: a pattern naming the UTF-8
    // look-alike of a name that is not UTF-8 leaves that name alone.
    std::fs::write(root.join("caf\u{fffd}"), b"replacement character").expect("write");
    let out = repo.cairn().args(["backup", "--json"]).arg(&root).output().expect("runs");
    assert!(out.status.success(), "backup failed: {}", stderr(&out));
    let id = json(&out)["snapshot_id"].as_str().expect("id").to_owned();
    let filtered = repo.scratch("filtered");
    let out = repo
        .cairn()
        .args(["restore", &id, "--exclude", "caf\u{fffd}", "--target"])
        .arg(&filtered)
        .output()
        .expect("runs");
    assert!(out.status.success(), "restore --exclude failed: {}", stderr(&out));
    let back = restored_path(&filtered, &root);
    assert!(!back.join("caf\u{fffd}").exists(), "restore --exclude kept the name it names");
    assert_eq!(
        std::fs::read(back.join(latin1(b"caf\xe9"))).expect("restore --exclude dropped a name that is not UTF-8"),
        b"latin-1 name"
    );
}
