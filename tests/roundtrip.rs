//! Backup then restore gives back exactly what was there: bytes and metadata of every kind of entry
//! a real file system holds, and the ways of getting parts of a snapshot back (`SNAPSHOT:PATH`,
//! include and exclude patterns, dry runs, `--verify`, `dump`, `ls`, `snapshots --json`, `latest`
//! and id prefixes).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::support::TestRepo;
use crate::support::data::{Rng, write_random_file};
use crate::support::fstree::{assert_same_tree, contents, relative_paths, restored_path, set_distinct_mtimes};

const LARGE_FILE: u64 = 40 << 20;
const SMALL_FILES: usize = 20_000;
const DEPTH: usize = 100;

fn mkdir(p: &Path) -> PathBuf {
    std::fs::create_dir_all(p).expect("create folder");
    p.to_path_buf()
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn symlink(target: impl AsRef<OsStr>, link: &Path) {
    std::os::unix::fs::symlink(target.as_ref(), link).expect("symlink");
}

/// Every kind of entry, name and metadata a backup should carry through unchanged.
fn build_rich_tree(root: &Path) {
    let mut rng = Rng::new(0x5eed_0001);

    std::fs::write(root.join("empty"), b"").expect("write");
    mkdir(&root.join("empty-dir"));
    write_random_file(&root.join("large.bin"), 0x5eed_0002, LARGE_FILE);
    // Explicit zeros that are not a hole, next to a real hole.
    std::fs::write(root.join("zeros.bin"), vec![0u8; 5 << 20]).expect("write");
    let sparse = std::fs::File::create(root.join("sparse.img")).expect("create");
    sparse.write_all_at(b"head", 0).expect("write");
    sparse.write_all_at(&rng.bytes(100_000), 20 << 20).expect("write");
    sparse.write_all_at(b"tail", 64 << 20).expect("write");
    drop(sparse);

    let names = mkdir(&root.join("names"));
    for name in [
        "naïve café.txt",
        "日本語のファイル.txt",
        "emoji 🦀.md",
        "e\u{301}",
        "\u{e9}",
        "with space",
        " leading space",
        "trailing space ",
        "new\nline",
        "-rf",
        "--help",
        "tab\tname",
        "back\\slash",
        "*?[glob]{x}",
        "quote'\"",
        "$HOME",
        ".hidden",
        "..dots",
        "colon:name",
    ] {
        std::fs::write(names.join(name), name.as_bytes()).expect("write odd name");
    }
    for raw in [&b"latin1-caf\xe9"[..], b"\xff\xfe\xfd", b"\xc3\x28 broken"] {
        std::fs::write(names.join(OsStr::from_bytes(raw)), raw).expect("write non-UTF-8 name");
    }
    let raw_dir = mkdir(&names.join(OsStr::from_bytes(b"dir-\x80")));
    std::fs::write(raw_dir.join("inside"), b"inside a non-UTF-8 folder").expect("write");

    let links = mkdir(&root.join("links"));
    symlink("../names/with space", &links.join("relative"));
    symlink(root.join("large.bin"), &links.join("absolute"));
    symlink("/nonexistent/absolute/target", &links.join("absolute-dangling"));
    symlink("does/not/exist", &links.join("dangling"));
    symlink("../deep", &links.join("to-folder"));
    symlink(OsStr::from_bytes(b"target-\xff"), &links.join("non-utf8-target"));
    symlink("loop-b", &links.join("loop-a"));
    symlink("loop-a", &links.join("loop-b"));

    let mut deep = root.join("deep");
    for level in 0..DEPTH {
        deep.push(format!("level-{level:03}"));
    }
    mkdir(&deep);
    std::fs::write(deep.join("bottom.txt"), b"a hundred folders down\n").expect("write");

    let hard = mkdir(&root.join("hard"));
    std::fs::write(hard.join("a"), rng.bytes(70_000)).expect("write");
    std::fs::hard_link(hard.join("a"), hard.join("b")).expect("link");
    std::fs::hard_link(hard.join("a"), mkdir(&hard.join("sub")).join("c")).expect("link");
    std::fs::hard_link(hard.join("a"), root.join("names").join("link to hard a")).expect("link");
    std::fs::write(hard.join("x"), b"second group").expect("write");
    std::fs::hard_link(hard.join("x"), hard.join("y")).expect("link");
    std::fs::write(hard.join("single"), b"second group").expect("write");

    let special = mkdir(&root.join("special"));
    nix::unistd::mkfifo(&special.join("pipe"), nix::sys::stat::Mode::from_bits_truncate(0o640)).expect("mkfifo");

    let modes = mkdir(&root.join("modes"));
    for (name, mode) in [("exec", 0o755), ("read-only", 0o444), ("nothing", 0o000), ("group", 0o660)] {
        std::fs::write(modes.join(name), name).expect("write");
        chmod(&modes.join(name), mode);
    }
    // Owner first, then mode: chown clears set-id bits, so a restore must apply them in this order.
    for (name, mode, uid, gid) in [("setuid", 0o4755, 1234, 5678), ("setgid", 0o2750, 0, 4321)] {
        std::fs::write(modes.join(name), name).expect("write");
        std::os::unix::fs::chown(modes.join(name), Some(uid), Some(gid)).expect("chown");
        chmod(&modes.join(name), mode);
    }
    chmod(&mkdir(&modes.join("sticky")), 0o1777);
    let private = mkdir(&modes.join("private"));
    std::fs::write(private.join("secret"), b"s").expect("write");
    chmod(&private, 0o700);

    let owners = mkdir(&root.join("owners"));
    std::fs::write(owners.join("file"), b"owned").expect("write");
    std::os::unix::fs::chown(owners.join("file"), Some(1234), Some(5678)).expect("chown");
    let owned_dir = mkdir(&owners.join("folder"));
    std::os::unix::fs::chown(&owned_dir, Some(4321), Some(8765)).expect("chown");
    symlink("file", &owners.join("link"));
    std::os::unix::fs::lchown(owners.join("link"), Some(2222), Some(3333)).expect("lchown");

    let many = mkdir(&root.join("many"));
    for d in 0..100 {
        let dir = mkdir(&many.join(format!("d{d:02}")));
        for f in 0..SMALL_FILES / 100 {
            let len = rng.below(300) as usize;
            std::fs::write(dir.join(format!("f{f:04}")), rng.bytes(len)).expect("write small file");
        }
    }

    set_distinct_mtimes(root, 1_600_000_000);
}

#[test]
fn rich_tree_round_trips_bytes_and_metadata() {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    build_rich_tree(&src);

    let backup = repo.json(&["backup", src.to_str().expect("UTF-8 path")]);
    assert_eq!(backup["warnings"], serde_json::json!([]), "backup warnings");
    let summary = &backup["summary"];
    // Regular files: large, zeros, sparse, empty, names (19 + 3 + 1 + 1 hard link), hard (a b c x y
    // single), modes (6 + 1), owners (1), deep (1) and the small ones.
    let files = 4 + 24 + 6 + 7 + 1 + 1 + SMALL_FILES as u64;
    assert_eq!(summary["files_new"], files, "files counted");

    let target = repo.scratch("target");
    // A guard, not a measurement: a restore that blocks (opening a FIFO did once) fails instead of hanging.
    let out = repo
        .cairn()
        .args(["restore", "latest", "--verify", "--json", "--target"])
        .arg(&target)
        .timeout(std::time::Duration::from_secs(600))
        .output()
        .expect("runs");
    assert!(out.status.success(), "restore failed: {}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["errors"], serde_json::json!([]));
    assert_eq!(report["warnings"], serde_json::json!([]));
    // Hard links beyond the first of each group: b, c, "link to hard a", y.
    assert_eq!(report["hardlinks"], 4);
    assert_eq!(report["files"], files - 4);
    assert_eq!(report["verified"], report["files"], "every restored file verified");
    assert_eq!(report["symlinks"], 9);
    assert_eq!(report["special"], 1);

    let restored = restored_path(&target, &src);
    assert_same_tree(&src, &restored);

    // Zero chunks are not written: the hole stays a hole.
    let sparse = std::fs::metadata(restored.join("sparse.img")).expect("sparse file restored");
    assert!(
        sparse.blocks() * 512 < sparse.len() / 4,
        "sparse file restored dense: {} bytes allocated for {}",
        sparse.blocks() * 512,
        sparse.len()
    );
}

/// The comparison above must be able to fail: a faithful copy (`cp -a`) passes, and each single
/// difference in bytes, time, mode, owner, link identity, link target or entries is caught.
#[test]
fn tree_comparison_notices_every_difference() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let src = mkdir(&dir.path().join("src"));
    std::fs::write(src.join("a"), b"alpha").expect("write");
    std::fs::hard_link(src.join("a"), src.join("b")).expect("link");
    std::fs::write(src.join("c"), b"gamma").expect("write");
    symlink("a", &src.join("l"));
    std::fs::write(mkdir(&src.join("d")).join("e"), b"epsilon").expect("write");
    set_distinct_mtimes(&src, 1_500_000_000);

    let copy = |name: &str| -> PathBuf {
        let to = dir.path().join(name);
        let status = std::process::Command::new("cp").arg("-a").arg(&src).arg(&to).status().expect("cp runs");
        assert!(status.success());
        to
    };
    assert_same_tree(&src, &copy("faithful"));

    let keep_time = |p: &Path, change: &dyn Fn(&Path)| {
        let m = std::fs::symlink_metadata(p).expect("stat");
        change(p);
        crate::support::fstree::set_mtime(p, m.mtime(), m.mtime_nsec());
    };
    type Mutation<'a> = Box<dyn Fn(&Path) + 'a>;
    let mutations: Vec<(&str, Mutation<'_>)> = vec![
        ("one byte", Box::new(|t| keep_time(&t.join("c"), &|p| std::fs::write(p, b"gammA").expect("write")))),
        ("one nanosecond", Box::new(|t| crate::support::fstree::set_mtime(&t.join("c"), 1_500_000_000, 1))),
        ("mode", Box::new(|t| chmod(&t.join("c"), 0o600))),
        ("owner", Box::new(|t| std::os::unix::fs::lchown(t.join("c"), Some(4242), None).expect("chown"))),
        (
            "hard link broken",
            Box::new(|t| {
                keep_time(&t.join("b"), &|p| {
                    std::fs::remove_file(p).expect("unlink");
                    std::fs::write(p, b"alpha").expect("write");
                })
            }),
        ),
        (
            "symlink target",
            Box::new(|t| {
                keep_time(&t.join("l"), &|p| {
                    std::fs::remove_file(p).expect("unlink");
                    symlink("c", p);
                })
            }),
        ),
        ("extra entry", Box::new(|t| keep_time(&t.join("d"), &|p| std::fs::write(p.join("x"), b"").expect("write")))),
        ("missing entry", Box::new(|t| keep_time(&t.join("d"), &|p| std::fs::remove_file(p.join("e")).expect("rm")))),
    ];
    for (i, (what, mutate)) in mutations.iter().enumerate() {
        let target = copy(&format!("copy-{i}"));
        mutate(&target);
        let caught = std::panic::catch_unwind(|| assert_same_tree(&src, &target)).is_err();
        assert!(caught, "a difference in {what} went unnoticed");
    }
}

/// A small tree for the tests of partial restores and listings.
fn build_small_tree(root: &Path) -> PathBuf {
    let mut rng = Rng::new(0x5eed_0100);
    for (path, len) in [
        ("docs/readme.txt", 1_000),
        ("docs/notes.md", 2_000),
        ("docs/old.tmp", 300),
        ("data/a.bin", 300_000),
        ("data/b.bin", 1),
        ("data/nested/c.txt", 50),
        ("data/nested/d.tmp", 70),
        ("logs/app.log", 4_000),
        ("top.txt", 10),
    ] {
        let p = root.join(path);
        mkdir(p.parent().expect("has a parent"));
        std::fs::write(&p, rng.bytes(len)).expect("write");
    }
    symlink("docs/readme.txt", &root.join("readme-link"));
    root.to_path_buf()
}

fn paths(list: &[&str]) -> BTreeSet<PathBuf> {
    list.iter().map(PathBuf::from).collect()
}

fn restore(repo: &TestRepo, args: &[&str]) -> (PathBuf, serde_json::Value) {
    let target = tempfile::tempdir_in(repo.dir.path()).expect("target folder").keep();
    let mut full: Vec<&str> = vec!["restore"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["--target", target.to_str().expect("UTF-8")]);
    let report = repo.json(&full);
    assert_eq!(report["errors"], serde_json::json!([]), "restore {args:?}");
    (target, report)
}

#[test]
fn restore_of_a_subpath_restores_only_that_part() {
    let repo = TestRepo::new();
    let src = build_small_tree(&repo.scratch("src"));
    repo.json(&["backup", src.to_str().expect("UTF-8")]);
    let original = contents(&src);

    let data = format!("latest:{}/data", src.display());
    let (target, report) = restore(&repo, &[&data]);
    assert_eq!(relative_paths(&target), paths(&["", "a.bin", "b.bin", "nested", "nested/c.txt", "nested/d.tmp"]));
    assert_eq!(report["files"], 4);
    for (rel, bytes) in contents(&target) {
        assert_eq!(&bytes, &original[&Path::new("data").join(&rel)], "{}", rel.display());
    }

    let one_file = format!("latest:{}/docs/readme.txt", src.display());
    let (target, _) = restore(&repo, &[&one_file]);
    assert_eq!(relative_paths(&target), paths(&["", "readme.txt"]));
    assert_eq!(std::fs::read(target.join("readme.txt")).expect("restored"), original[Path::new("docs/readme.txt")]);

    // A path that is not in the snapshot is an error, not an empty restore.
    let missing = format!("latest:{}/no/such/thing", src.display());
    let out =
        repo.cairn().args(["restore", &missing, "--target"]).arg(repo.dir.path().join("none")).output().expect("runs");
    assert!(!out.status.success(), "restoring a missing path succeeded");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not in the snapshot"), "{out:?}");
}

#[test]
fn restore_include_and_exclude_patterns_select_paths() {
    let repo = TestRepo::new();
    let src = build_small_tree(&repo.scratch("src"));
    repo.json(&["backup", src.to_str().expect("UTF-8")]);
    let under_src = |target: &Path| -> BTreeSet<PathBuf> {
        relative_paths(&restored_path(target, &src)).into_iter().filter(|p| !p.as_os_str().is_empty()).collect()
    };

    let (target, _) = restore(&repo, &["latest", "--include", "*.txt"]);
    assert_eq!(
        under_src(&target),
        paths(&["docs", "docs/readme.txt", "data", "data/nested", "data/nested/c.txt", "top.txt"])
    );

    let logs = format!("{}/logs", src.display());
    let (target, _) = restore(&repo, &["latest", "--exclude", "*.tmp", "--exclude", &logs]);
    assert_eq!(
        under_src(&target),
        paths(&[
            "docs",
            "docs/readme.txt",
            "docs/notes.md",
            "data",
            "data/a.bin",
            "data/b.bin",
            "data/nested",
            "data/nested/c.txt",
            "top.txt",
            "readme-link"
        ])
    );

    // Include a folder, then exclude inside it: the later, narrower rule wins for what it names.
    let data = format!("{}/data", src.display());
    let (target, _) = restore(&repo, &["latest", "--include", &data, "--exclude", "nested"]);
    assert_eq!(under_src(&target), paths(&["data", "data/a.bin", "data/b.bin"]));
}

#[test]
fn restore_dry_run_writes_nothing() {
    let repo = TestRepo::new();
    let src = build_small_tree(&repo.scratch("src"));
    repo.json(&["backup", src.to_str().expect("UTF-8")]);

    let fresh = repo.dir.path().join("never-created");
    let report = repo.json(&["restore", "latest", "--dry-run", "--target", fresh.to_str().expect("UTF-8")]);
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["files"], 9, "a dry run still says what it would restore");
    assert_eq!(report["symlinks"], 1);
    assert!(!fresh.exists(), "a dry run created the target folder");

    let existing = repo.scratch("existing");
    std::fs::write(existing.join("keep.txt"), b"mine").expect("write");
    repo.json(&["restore", "latest", "--dry-run", "--target", existing.to_str().expect("UTF-8")]);
    assert_eq!(relative_paths(&existing), paths(&["", "keep.txt"]));
    assert_eq!(std::fs::read(existing.join("keep.txt")).expect("read"), b"mine");
}

#[test]
fn restore_verify_checks_every_file() {
    let repo = TestRepo::new();
    let src = build_small_tree(&repo.scratch("src"));
    repo.json(&["backup", src.to_str().expect("UTF-8")]);
    let target = repo.scratch("out");
    let out = repo.cairn().args(["restore", "latest", "--verify", "--target"]).arg(&target).output().expect("runs");
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("verified 9 files"), "{out:?}");
    assert!(out.stderr.is_empty(), "unexpected output on stderr: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(contents(&restored_path(&target, &src)), contents(&src));
}

#[test]
fn dump_writes_one_file_byte_exact_and_stops_quietly_at_a_closed_pipe() {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    write_random_file(&src.join("big.bin"), 0x5eed_0200, 20 << 20);
    std::fs::write(src.join("small.txt"), b"small\n").expect("write");
    repo.json(&["backup", src.to_str().expect("UTF-8")]);

    let big = format!("{}/big.bin", src.display());
    let out = repo.cairn().args(["dump", "latest", &big]).output().expect("runs");
    assert!(out.status.success(), "dump failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout == std::fs::read(src.join("big.bin")).expect("read"), "dumped bytes differ");
    assert!(out.stderr.is_empty());
    let small = format!("{}/small.txt", src.display());
    repo.cairn().args(["dump", "latest", &small]).assert().success().stdout("small\n");

    // `cairn dump ... | head -c 10`, as a shell runs it: the reader goes away after ten bytes.
    let mut shell = std::process::Command::new("bash");
    shell
        .args(["-c", "set -o pipefail; \"$CAIRN\" dump latest \"$FILE\" | head -c 10 | od -An -tx1"])
        .env("CAIRN", crate::support::cairn_bin())
        .env("FILE", &big)
        .env("CAIRN_REPOSITORY", repo.repo_path())
        .env("CAIRN_PASSWORD", crate::support::PASSWORD)
        .env("CAIRN_CACHE_DIR", repo.cache_path())
        .stdin(Stdio::null());
    let out = shell.output().expect("runs bash");
    assert!(out.status.success(), "pipeline failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "closed pipe produced: {}", String::from_utf8_lossy(&out.stderr));
    let head: Vec<u8> = std::fs::read(src.join("big.bin")).expect("read")[..10].to_vec();
    let hex: String = head.iter().map(|b| format!(" {b:02x}")).collect();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), hex.trim());

    // The same directly: read ten bytes, close, and the process ends with status 0 and no message.
    let mut child = repo
        .cairn_std()
        .args(["dump", "latest", &big])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn dump");
    let mut first = [0u8; 10];
    child.stdout.take().expect("stdout").read_exact(&mut first).expect("ten bytes");
    let out = child.wait_with_output().expect("dump ends");
    assert!(out.status.success(), "dump into a closed pipe: {}", out.status);
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(&first[..], &head[..]);

    // A folder is written as a tar archive (tests/cli_compat.rs unpacks one).
    let out = repo.cairn().args(["dump", "latest"]).arg(&src).output().expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout.get(257..262), Some(&b"ustar"[..]), "a tar header");
}

#[test]
fn ls_lists_every_entry_with_its_metadata() {
    let repo = TestRepo::new();
    let src = build_small_tree(&repo.scratch("src"));
    repo.json(&["backup", src.to_str().expect("UTF-8")]);
    let prefix = format!("{}/", src.display());
    let expected: BTreeSet<String> = relative_paths(&src)
        .into_iter()
        .filter(|p| !p.as_os_str().is_empty())
        .map(|p| format!("{prefix}{}", p.display()))
        .collect();

    let out = repo.cairn().args(["ls", "latest"]).output().expect("runs");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("UTF-8 listing");
    let listed: BTreeSet<String> = text.lines().filter(|l| l.starts_with(&prefix)).map(str::to_owned).collect();
    assert_eq!(listed, expected);
    // The folders leading to the backed-up path are listed too, the path itself included.
    assert!(text.lines().any(|l| l == src.to_str().expect("UTF-8")));

    // One JSON object per line, each matching the file on disk.
    let out = repo.cairn().args(["ls", "latest", "--json"]).output().expect("runs");
    assert!(out.status.success());
    let mut seen = BTreeSet::new();
    for line in String::from_utf8(out.stdout).expect("UTF-8").lines() {
        let e: serde_json::Value = serde_json::from_str(line).expect("a JSON object per line");
        if e["struct_type"] == "snapshot" {
            continue;
        }
        let path = e["path"].as_str().expect("path").to_owned();
        if !path.starts_with(&prefix) {
            continue;
        }
        let meta = std::fs::symlink_metadata(&path).expect("listed path exists");
        let kind = if meta.is_dir() {
            "dir"
        } else if meta.file_type().is_symlink() {
            "symlink"
        } else {
            "file"
        };
        assert_eq!(e["type"], kind, "{path}");
        assert_eq!(e["unix_mode"], meta.mode(), "{path}");
        assert_eq!(e["permissions"].as_str().map(|p| p.len()), Some(10), "{path}");
        assert_eq!(e["uid"], meta.uid(), "{path}");
        assert_eq!(e["gid"], meta.gid(), "{path}");
        assert_eq!(e["mtime_ns"], meta.mtime() * 1_000_000_000 + meta.mtime_nsec(), "{path}");
        if kind == "file" {
            assert_eq!(e["size"], meta.len(), "{path}");
        }
        if kind == "symlink" {
            assert_eq!(e["link_target"], "docs/readme.txt");
        } else {
            assert!(e.get("link_target").is_none(), "{path}");
        }
        seen.insert(path);
    }
    assert_eq!(seen, expected);

    // Below a path, only that part.
    let docs = format!("{}/docs", src.display());
    let out = repo.cairn().args(["ls", "latest", &docs]).output().expect("runs");
    let listed: BTreeSet<String> = String::from_utf8(out.stdout).expect("UTF-8").lines().map(str::to_owned).collect();
    let want: BTreeSet<String> =
        ["docs/notes.md", "docs/old.tmp", "docs/readme.txt"].iter().map(|p| format!("{prefix}{p}")).collect();
    assert_eq!(listed, want);
}

#[test]
fn snapshots_json_carries_the_recorded_fields() {
    let repo = TestRepo::new();
    let src = build_small_tree(&repo.scratch("src"));
    let src_str = src.to_str().expect("UTF-8");
    let first = repo.json(&["backup", src_str, "--tag", "daily,db", "--host", "db-1"]);
    std::fs::write(src.join("top.txt"), b"changed").expect("write");
    let second = repo.json(&["backup", src_str, "--tag", "daily,db", "--host", "db-1"]);

    let list = repo.json(&["snapshots"]);
    let list = list.as_array().expect("a JSON array");
    assert_eq!(list.len(), 2);
    let s = &list[1];
    assert_eq!(s["id"], second["snapshot_id"]);
    let id = s["id"].as_str().expect("id");
    assert_eq!(id.len(), 64);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(s["host"], "db-1");
    assert_eq!(s["tags"], serde_json::json!(["daily", "db"]));
    assert_eq!(s["paths"], serde_json::json!([src_str]));
    assert_eq!(s["source"], "files");
    assert_eq!(s["parent"], first["snapshot_id"], "the second snapshot names the first as parent");
    assert!(list[0]["parent"].is_null());
    assert_eq!(s["uid"], nix::unistd::getuid().as_raw());
    let me = nix::unistd::User::from_uid(nix::unistd::getuid()).expect("user lookup").expect("a named user");
    assert_eq!(s["user"], me.name.as_str());
    assert!(s["program_version"].as_str().is_some_and(|v| !v.is_empty()));
    assert!(s["tree"].as_str().is_some_and(|t| t.len() == 64));
    assert!(s["time_ns"].as_i64().expect("time") > list[0]["time_ns"].as_i64().expect("time"));
    let summary = &s["summary"];
    let total: u64 = contents(&src).values().map(|v| v.len() as u64).sum();
    assert_eq!(summary["total_size"], total);
    assert_eq!(summary["files_changed"], 1);
    assert_eq!(summary["files_unchanged"], 8);
    assert_eq!(summary["files_new"], 0);
    for field in ["bytes_added_plain", "bytes_added_stored", "duration_ns", "started_ns", "bytes_read"] {
        assert!(summary[field].as_u64().is_some(), "summary.{field} missing: {summary}");
    }
}

#[test]
fn latest_and_unique_id_prefixes_pick_the_right_snapshot() {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    let file = src.join("v.txt");
    let file_str = file.to_str().expect("UTF-8");
    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    // Seventeen snapshots: at least two share their first hex digit.
    for i in 0..17 {
        std::fs::write(&file, format!("version {i}\n")).expect("write");
        let time = format!("2021-01-01T00:{i:02}:00Z");
        let r = repo.json(&["backup", src.to_str().expect("UTF-8"), "--time", &time]);
        ids.insert(r["snapshot_id"].as_str().expect("id").to_owned(), format!("version {i}\n"));
    }
    // Made last but dated earliest: `latest` goes by snapshot time, not by creation order.
    std::fs::write(&file, b"old\n").expect("write");
    repo.json(&["backup", src.to_str().expect("UTF-8"), "--time", "2020-06-01T00:00:00Z"]);

    repo.cairn().args(["dump", "latest", file_str]).assert().success().stdout("version 16\n");
    for (id, content) in &ids {
        repo.cairn().args(["dump", &id[..8], file_str]).assert().success().stdout(content.clone());
        repo.cairn().args(["dump", id, file_str]).assert().success().stdout(content.clone());
    }

    let mut by_first: BTreeMap<char, usize> = BTreeMap::new();
    for id in ids.keys() {
        *by_first.entry(id.chars().next().expect("non-empty")).or_default() += 1;
    }
    let (shared, _) = by_first.iter().find(|(_, n)| **n > 1).expect("pigeonhole");
    let out = repo.cairn().args(["dump", &shared.to_string(), file_str]).output().expect("runs");
    assert!(!out.status.success(), "an ambiguous prefix was accepted");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("give more characters"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    let unused = (0..256u32).map(|n| format!("{n:02x}")).find(|p| !ids.keys().any(|id| id.starts_with(p.as_str())));
    let unused = unused.expect("18 ids cannot start with all 256 two-digit prefixes");
    let out = repo.cairn().args(["dump", &unused, file_str]).output().expect("runs");
    assert!(!out.status.success(), "a prefix matching nothing was accepted");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no snapshot matches"), "{out:?}");
}
