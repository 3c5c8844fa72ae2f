//! Restore of many small files: the walk looks up the chunks of a window of entries at once, and a
//! small file is created with its mode and only changed where the target left it different. These
//! tests hold the shortcuts to the restore they replace: every file's bytes, mode, owner and time
//! come back exactly, whatever the umask, the target folder's group or its default ACL, across
//! windows cut by folders, by their size, and by files of more chunks than a window.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::TestRepo;
use crate::support::data::{Rng, write_random_file};
use crate::support::fstree::{assert_same_tree, relative_paths, restored_path, set_distinct_mtimes};

fn mkdir(p: &Path) -> PathBuf {
    std::fs::create_dir_all(p).expect("create folder");
    p.to_path_buf()
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Runs cairn with `args` under `umask` (through sh, so the umask is the restore's own).
fn cairn_with_umask(repo: &TestRepo, umask: &str, args: &[&str]) -> serde_json::Value {
    let cairn = crate::support::cairn_bin();
    let out = repo
        .command("sh")
        .arg("-c")
        .arg(format!("umask {umask}; exec \"$0\" \"$@\""))
        .arg(&cairn)
        .args(args)
        .arg("--json")
        .output()
        .expect("runs sh");
    assert!(
        out.status.success(),
        "cairn {args:?} under umask {umask} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON report")
}

fn restore_into(repo: &TestRepo, umask: &str, target: &Path) {
    let report = cairn_with_umask(repo, umask, &["restore", "latest", "--target", target.to_str().expect("UTF-8")]);
    assert_eq!(report["errors"], serde_json::json!([]), "restore errors");
    assert_eq!(report["warnings"], serde_json::json!([]), "restore warnings");
}

fn setfacl(args: &[&str], path: &Path) {
    let out = Command::new("setfacl")
        .args(args)
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("running setfacl (Debian package acl): {e}"));
    assert!(out.status.success(), "setfacl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn restore_gives_small_files_their_mode_and_owner_whatever_the_umask_group_or_default_acl() {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    let modes = [0o644, 0o600, 0o666, 0o777, 0o755, 0o444, 0o000, 0o640, 0o070, 0o007, 0o660, 0o711];
    for (n, mode) in modes.into_iter().enumerate() {
        for (owner, ids) in [("root", (0, 0)), ("other", (1234, 5678)), ("group", (0, 4321))] {
            let file = src.join(format!("{mode:04o}-{owner}"));
            std::fs::write(&file, format!("file {n} {owner}")).expect("write");
            std::os::unix::fs::chown(&file, Some(ids.0), Some(ids.1)).expect("chown (the tests run as root)");
            chmod(&file, mode);
        }
    }
    // Empty ones have no chunk and are created without one.
    std::fs::write(src.join("empty-0666"), b"").expect("write");
    chmod(&src.join("empty-0666"), 0o666);
    set_distinct_mtimes(&src, 1_600_000_000);
    cairn_with_umask(&repo, "022", &["backup", src.to_str().expect("UTF-8")]);

    // A umask that takes bits away from most modes, and one that takes none.
    for umask in ["077", "000", "022"] {
        let target = repo.scratch(&format!("umask-{umask}"));
        restore_into(&repo, umask, &target);
        assert_same_tree(&src, &restored_path(&target, &src));
    }

    // New files in a set-group-id folder take the folder's group, not the restorer's.
    let setgid = repo.scratch("setgid");
    std::os::unix::fs::chown(&setgid, None, Some(4321)).expect("chown");
    chmod(&setgid, 0o2777);
    restore_into(&repo, "000", &setgid);
    assert_same_tree(&src, &restored_path(&setgid, &src));

    // A default ACL decides the mode of new files instead of the umask.
    let acl = repo.scratch("acl");
    setfacl(&["-d", "-m", "u::rwx,g::---,o::---"], &acl);
    restore_into(&repo, "000", &acl);
    assert_same_tree(&src, &restored_path(&acl, &src));
}

/// More files in one folder than the walk looks up at once, folders between them, duplicates, and
/// a file of more chunks than a window (1–4 KiB chunks).
#[test]
fn restore_of_folders_larger_than_a_lookup_window_and_of_a_file_of_many_chunks() {
    let repo = TestRepo::uninitialised();
    repo.cairn()
        .args(["init", "--kdf-memory-kib", "64", "--kdf-time", "1", "--chunk-size", "1,2,4"])
        .assert()
        .success();
    let src = repo.scratch("src");
    let mut rng = Rng::new(0x5eed_0014);
    let big = mkdir(&src.join("big"));
    for f in 0..5000 {
        // Every seventh file repeats an earlier one's bytes: one blob, looked up for several files.
        let bytes = if f % 7 == 6 { format!("repeated {}", f % 3).into_bytes() } else { rng.bytes(20 + (f % 40)) };
        std::fs::write(big.join(format!("f{f:04}")), bytes).expect("write small file");
        // Folders between the files: a window of lookups ends at each.
        if f % 1500 == 0 && f < 4000 {
            let sub = mkdir(&big.join(format!("f{f:04}-sub")));
            for s in 0..30 {
                std::fs::write(sub.join(format!("s{s:02}")), rng.bytes(30)).expect("write");
            }
        }
    }
    // At least 6,144 chunks (of at most 4 KiB): more than one window of lookups.
    write_random_file(&big.join("f2000-many-chunks.bin"), 0x5eed_0015, 24 << 20);
    set_distinct_mtimes(&src, 1_600_000_000);
    cairn_with_umask(&repo, "022", &["backup", src.to_str().expect("UTF-8")]);

    let target = repo.scratch("target");
    restore_into(&repo, "022", &target);
    assert_same_tree(&src, &restored_path(&target, &src));

    // With a pattern, a window holds only the selected files; the others are not restored.
    let selected = repo.scratch("selected");
    let report = cairn_with_umask(
        &repo,
        "022",
        &["restore", "latest", "--include", "f4*", "--target", selected.to_str().expect("UTF-8")],
    );
    assert_eq!(report["errors"], serde_json::json!([]), "restore errors");
    let restored = restored_path(&selected, &src).join("big");
    let names: Vec<PathBuf> = relative_paths(&restored).into_iter().filter(|p| !p.as_os_str().is_empty()).collect();
    assert_eq!(names.len(), 1000, "files f4000..f4999");
    for name in names {
        assert!(name.to_string_lossy().starts_with("f4"), "{} restored without being selected", name.display());
        assert_eq!(
            std::fs::read(restored.join(&name)).expect("restored"),
            std::fs::read(src.join("big").join(&name)).expect("source"),
            "{}",
            name.display()
        );
    }
}
