//! The options of `cairn backup`: exclusions, tags, host, time, dry runs, and incremental runs
//! (parent chosen automatically, unchanged files not read again, `--force` reading everything).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::support::TestRepo;
use crate::support::data::Rng;
use crate::support::fstree::relative_paths;

/// A source tree with things to exclude: caches, temporary files, a marked folder.
fn build_source(root: &Path) {
    let mut rng = Rng::new(0x0b0b_0001);
    for (path, len) in [
        ("app/main.rs", 2_000),
        ("app/data.bin", 200_000),
        ("app/build.tmp", 500),
        ("app/cache/blob", 10_000),
        ("app/cache/more/blob2", 10_000),
        ("docs/guide.md", 3_000),
        ("docs/draft.tmp", 100),
        ("scratch/.nobackup", 0),
        ("scratch/huge.iso", 50_000),
        ("scratch/sub/also", 10),
        ("notes.txt", 40),
        ("secrets/key.pem", 64),
    ] {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, rng.bytes(len)).expect("write");
    }
}

/// The paths a snapshot holds below `src`, relative to it (from `ls --json`).
fn snapshot_paths(repo: &TestRepo, snapshot: &str, src: &Path) -> BTreeSet<PathBuf> {
    let out = repo.cairn().args(["ls", snapshot, "--json"]).output().expect("runs");
    assert!(out.status.success(), "ls failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .expect("UTF-8")
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON line"))
        .filter(|e| e["struct_type"] == "node")
        .filter_map(|e| Path::new(e["path"].as_str().expect("path")).strip_prefix(src).ok().map(Path::to_path_buf))
        .filter(|p| !p.as_os_str().is_empty())
        .collect()
}

fn set(list: &[&str]) -> BTreeSet<PathBuf> {
    list.iter().map(PathBuf::from).collect()
}

fn src_str(src: &Path) -> &str {
    src.to_str().expect("UTF-8 path")
}

#[test]
fn exclude_patterns_files_and_marker_files_leave_paths_out() {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    build_source(&src);
    let cache = format!("{}/app/cache", src.display());
    let r = repo.json(&["backup", src_str(&src), "--exclude", "*.tmp", "--exclude", &cache]);
    assert_eq!(r["warnings"], serde_json::json!([]));
    let id = r["snapshot_id"].as_str().expect("id").to_owned();
    assert_eq!(
        snapshot_paths(&repo, &id, &src),
        set(&[
            "app",
            "app/main.rs",
            "app/data.bin",
            "docs",
            "docs/guide.md",
            "scratch",
            "scratch/.nobackup",
            "scratch/huge.iso",
            "scratch/sub",
            "scratch/sub/also",
            "notes.txt",
            "secrets",
            "secrets/key.pem"
        ])
    );

    // The same through a file, with comments, blank lines and a re-include.
    let list = repo.dir.path().join("excludes.txt");
    std::fs::write(&list, "# generated files\n*.tmp\n\n**/cache\nsecrets\n!docs/draft.tmp\n").expect("write");
    let r = repo.json(&["backup", src_str(&src), "--exclude-file", list.to_str().expect("UTF-8")]);
    let id = r["snapshot_id"].as_str().expect("id").to_owned();
    assert_eq!(
        snapshot_paths(&repo, &id, &src),
        set(&[
            "app",
            "app/main.rs",
            "app/data.bin",
            "docs",
            "docs/guide.md",
            "docs/draft.tmp",
            "scratch",
            "scratch/.nobackup",
            "scratch/huge.iso",
            "scratch/sub",
            "scratch/sub/also",
            "notes.txt"
        ])
    );

    // A folder holding the marker file is skipped whole.
    let r = repo.json(&["backup", src_str(&src), "--exclude-if-present", ".nobackup"]);
    let id = r["snapshot_id"].as_str().expect("id").to_owned();
    let paths = snapshot_paths(&repo, &id, &src);
    assert!(paths.iter().all(|p| !p.starts_with("scratch")), "marked folder backed up: {paths:?}");
    assert!(paths.contains(Path::new("app/cache/more/blob2")) && paths.contains(Path::new("docs/draft.tmp")));
    assert_eq!(paths.len(), 14, "{paths:?}");
    // Restoring gives exactly what was kept.
    let target = repo.scratch("out");
    repo.cairn().args(["restore", &id, "--target"]).arg(&target).assert().success();
    let restored = crate::support::fstree::restored_path(&target, &src);
    assert_eq!(
        relative_paths(&restored).into_iter().filter(|p| !p.as_os_str().is_empty()).collect::<BTreeSet<_>>(),
        paths
    );
}

#[test]
fn tags_host_and_time_are_recorded_and_filter_listings() {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    build_source(&src);
    repo.json(&["backup", src_str(&src), "--tag", "daily,db", "--tag", "pg", "--host", "db-primary"]);
    repo.json(&["backup", src_str(&src), "--host", "web-1", "--time", "2021-03-04T05:06:07.5+02:00"]);
    // A local time is read in the local zone; TZ pins it.
    let out = repo
        .cairn()
        .env("TZ", "UTC")
        .args(["backup", "--json", src_str(&src), "--time", "2022-12-31 23:59:58"])
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let all = repo.json(&["snapshots"]);
    let all = all.as_array().expect("array");
    assert_eq!(all.len(), 3);
    let by_host = |h: &str| all.iter().find(|s| s["host"] == h).cloned().expect("snapshot of host");
    let tagged = by_host("db-primary");
    assert_eq!(tagged["tags"], serde_json::json!(["daily", "db", "pg"]));
    let web = by_host("web-1");
    assert_eq!(web["time_ns"], 1_614_827_167_500_000_000i64, "2021-03-04T03:06:07.5Z");
    assert_eq!(web["tags"], serde_json::json!([]));
    let local = all.iter().find(|s| s["time_ns"] == 1_672_531_198_000_000_000i64);
    assert!(local.is_some(), "local time not read as 2022-12-31T23:59:58Z: {all:?}");
    let machine = local.expect("checked")["host"].as_str().expect("host").to_owned();
    assert!(!machine.is_empty(), "the default host is this machine's name");

    let hosts = |args: &[&str]| -> Vec<String> {
        let mut full = vec!["snapshots"];
        full.extend_from_slice(args);
        repo.json(&full)
            .as_array()
            .expect("array")
            .iter()
            .map(|s| s["host"].as_str().expect("host").to_owned())
            .collect()
    };
    assert_eq!(hosts(&["--host", "web-1"]), ["web-1"]);
    assert_eq!(hosts(&["--tag", "db"]), ["db-primary"]);
    assert_eq!(hosts(&["--tag", "daily,pg"]), ["db-primary"]);
    assert_eq!(hosts(&["--tag", "daily,web"]), Vec::<String>::new());

    // A time that cannot be read is refused before anything is written.
    let out = repo.cairn().args(["backup", src_str(&src), "--time", "yesterday-ish"]).output().expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read time"), "{out:?}");
    assert_eq!(repo.json(&["snapshots"]).as_array().expect("array").len(), 3);
}

#[test]
fn dry_run_leaves_the_repository_unchanged() {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    build_source(&src);
    let before = relative_paths(&repo.repo_path());
    let r = repo.json(&["backup", src_str(&src), "--dry-run"]);
    assert_eq!(r["dry_run"], true);
    assert!(r["snapshot_id"].is_null());
    assert_eq!(r["summary"]["files_new"], 12, "a dry run still counts what it would store");
    assert!(r["summary"]["bytes_added_plain"].as_u64().expect("number") > 270_000);
    assert_eq!(relative_paths(&repo.repo_path()), before, "a dry run wrote to the repository");
    assert_eq!(repo.json(&["snapshots"]), serde_json::json!([]));

    // Also on a repository that already has a snapshot, and with a changed file.
    repo.json(&["backup", src_str(&src)]);
    let before = relative_paths(&repo.repo_path());
    std::fs::write(src.join("notes.txt"), b"changed").expect("write");
    let r = repo.json(&["backup", src_str(&src), "--dry-run"]);
    assert_eq!(r["summary"]["files_changed"], 1);
    assert_eq!(relative_paths(&repo.repo_path()), before, "a dry run wrote to the repository");
    assert_eq!(repo.json(&["snapshots"]).as_array().expect("array").len(), 1);
}

#[test]
fn incremental_runs_use_the_parent_and_read_only_what_changed() {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    build_source(&src);
    let total: u64 = crate::support::fstree::contents(&src).values().map(|v| v.len() as u64).sum();

    let first = repo.json(&["backup", src_str(&src)]);
    assert!(first["parent"].is_null());
    assert_eq!(first["summary"]["files_new"], 12);
    assert_eq!(first["summary"]["bytes_read"], total);

    let second = repo.json(&["backup", src_str(&src)]);
    assert_eq!(second["parent"], first["snapshot_id"], "parent chosen automatically");
    let s = &second["summary"];
    assert_eq!(
        (s["files_new"].as_u64(), s["files_changed"].as_u64(), s["files_unchanged"].as_u64()),
        (Some(0), Some(0), Some(12))
    );
    assert_eq!(s["bytes_read"], 0, "unchanged files were read again");
    assert_eq!(s["data_blobs_added"], 0);

    // One file modified (same size, new bytes), one added.
    let mut data = std::fs::read(src.join("app/data.bin")).expect("read");
    data[100_000] ^= 0xff;
    std::fs::write(src.join("app/data.bin"), &data).expect("write");
    std::fs::write(src.join("docs/new.md"), b"new file\n").expect("write");
    let third = repo.json(&["backup", src_str(&src)]);
    assert_eq!(third["parent"], second["snapshot_id"]);
    let s = &third["summary"];
    assert_eq!(
        (s["files_new"].as_u64(), s["files_changed"].as_u64(), s["files_unchanged"].as_u64()),
        (Some(1), Some(1), Some(11))
    );
    assert_eq!(s["bytes_read"], 200_000 + 9, "only the changed and the new file are read");
    assert!(s["data_blobs_added"].as_u64().expect("number") >= 2);

    // --force reads everything again, and finds nothing new to store.
    let forced = repo.json(&["backup", src_str(&src), "--force"]);
    let s = &forced["summary"];
    assert_eq!(s["files_unchanged"], 0);
    assert_eq!(s["bytes_read"], total + 9);
    assert_eq!(s["data_blobs_added"], 0, "re-read data was stored again");

    // Another set of paths has another parent (none yet); an explicit --parent is honoured.
    let docs = format!("{}/docs", src.display());
    let other = repo.json(&["backup", &docs]);
    assert!(other["parent"].is_null(), "a snapshot of other paths was taken as parent");
    let first_id = first["snapshot_id"].as_str().expect("id");
    let named = repo.json(&["backup", src_str(&src), "--parent", &first_id[..10]]);
    assert_eq!(named["parent"], first["snapshot_id"]);

    // Every snapshot restores to what the source was at its time; the last equals the source now.
    let target = repo.scratch("out");
    let last = named["snapshot_id"].as_str().expect("id");
    repo.cairn().args(["restore", last, "--verify", "--target"]).arg(&target).assert().success();
    let restored = crate::support::fstree::restored_path(&target, &src);
    assert_eq!(crate::support::fstree::contents(&restored), crate::support::fstree::contents(&src));
}
