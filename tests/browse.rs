//! Browsing verbs end to end: diff, find, stats, tag and rewrite against known trees, with their
//! `--json` shapes checked, and ls's quoting of awkward names and special mode bits.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::Value;

use crate::support::data::write_random_file;
use crate::support::fstree::{restored_path, set_mtime};
use crate::support::{TestRepo, dir_size};

/// Runs `cairn ARGS --json` and parses each line of standard output.
fn json_lines(repo: &TestRepo, args: &[&str]) -> Vec<Value> {
    let out = repo.cairn().args(args).arg("--json").output().expect("runs");
    assert!(out.status.success(), "cairn {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .expect("UTF-8")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

/// Backs up `src` at a fixed time and returns the snapshot id.
fn backup(repo: &TestRepo, src: &Path, time: &str) -> String {
    let v = repo.json(&["backup", src.to_str().expect("UTF-8 path"), "--time", time]);
    v["snapshot_id"].as_str().or_else(|| v["id"].as_str()).expect("snapshot id in the backup report").to_owned()
}

fn snapshot_ids(repo: &TestRepo) -> Vec<String> {
    let v = repo.json(&["snapshots"]);
    v.as_array().expect("array").iter().map(|s| s["id"].as_str().expect("id").to_owned()).collect()
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("folder");
    std::fs::write(path, bytes).expect("write");
}

#[test]
fn diff_lists_each_change_with_restics_modifiers_and_json_shape() {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    write(&src.join("same/keep.txt"), b"unchanged");
    write(&src.join("a/change.txt"), b"version one");
    write(&src.join("a/meta.txt"), b"metadata only");
    write(&src.join("gone/old.txt"), b"removed later");
    std::os::unix::fs::symlink("target", src.join("a/becomes-file")).expect("symlink");
    let first = backup(&repo, &src, "2026-11-01 10:00:00");

    write(&src.join("a/change.txt"), b"version two, longer");
    std::fs::set_permissions(src.join("a/meta.txt"), std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::fs::remove_dir_all(src.join("gone")).expect("remove");
    write(&src.join("new/added.txt"), b"added");
    std::fs::remove_file(src.join("a/becomes-file")).expect("remove link");
    write(&src.join("a/becomes-file"), b"now a file");
    let second = backup(&repo, &src, "2026-11-01 11:00:00");

    let base = src.to_str().expect("UTF-8").to_owned();
    let lines = json_lines(&repo, &["diff", &first, &second]);
    let (stats, changes) = lines.split_last().expect("at least the statistics");
    let got: BTreeSet<(String, String)> = changes
        .iter()
        .map(|c| {
            assert_eq!(c["message_type"], "change");
            (c["path"].as_str().expect("path").to_owned(), c["modifier"].as_str().expect("modifier").to_owned())
        })
        .collect();
    let want: BTreeSet<(String, String)> = [
        ("/a/change.txt", "M"),
        ("/a/becomes-file", "T"),
        ("/gone/", "-"),
        ("/gone/old.txt", "-"),
        ("/new/", "+"),
        ("/new/added.txt", "+"),
    ]
    .into_iter()
    .map(|(p, m)| (format!("{base}{p}"), m.to_owned()))
    .collect();
    assert_eq!(got, want, "without --metadata, a chmod alone is not listed and unchanged folders are silent");

    assert_eq!(stats["message_type"], "statistics");
    assert!(stats["source_snapshot"].as_str().expect("id").starts_with(&first[..8]));
    assert!(stats["target_snapshot"].as_str().expect("id").starts_with(&second[..8]));
    assert_eq!(stats["changed_files"], 1);
    assert_eq!((stats["added"]["files"].as_u64(), stats["added"]["dirs"].as_u64()), (Some(1), Some(1)));
    assert_eq!((stats["removed"]["files"].as_u64(), stats["removed"]["dirs"].as_u64()), (Some(1), Some(1)));
    for side in ["added", "removed"] {
        for key in ["files", "dirs", "others", "data_blobs", "tree_blobs", "bytes"] {
            assert!(stats[side][key].is_u64(), "{side}.{key} missing in {stats}");
        }
        assert!(stats[side]["bytes"].as_u64() > Some(0));
    }

    let with_meta = json_lines(&repo, &["diff", "--metadata", &first, &second]);
    assert!(
        with_meta.iter().any(|c| c["path"] == format!("{base}/a/meta.txt") && c["modifier"] == "U"),
        "--metadata shows the chmod: {with_meta:?}"
    );
    // The same snapshot twice: nothing changed, nothing read below the root.
    let same = json_lines(&repo, &["diff", &first, &first]);
    assert_eq!(same.len(), 1);
    assert_eq!(same[0]["changed_files"], 0);

    let text = repo.cairn().args(["diff", &first, &second]).output().expect("runs");
    let text = String::from_utf8(text.stdout).expect("UTF-8");
    assert!(text.starts_with(&format!("comparing snapshot {} to {}:", &first[..8], &second[..8])), "{text}");
    assert!(text.contains(&format!("M    {base}/a/change.txt\n")), "{text}");
    assert!(text.contains("Files:           1 new,     1 removed,     1 changed"), "{text}");
}

#[test]
fn find_groups_matches_per_snapshot_and_finds_the_users_of_a_blob() {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    write(&src.join("db/main.sql"), b"select 1;");
    write(&src.join("etc/app.conf"), b"x=1");
    set_mtime(&src.join("db/main.sql"), 1_700_000_000, 0);
    let first = backup(&repo, &src, "2026-11-01 10:00:00");
    write(&src.join("db/extra.sql"), b"select 2;");
    let second = backup(&repo, &src, "2026-11-01 11:00:00");

    let v = repo.json(&["find", "*.sql"]);
    let groups = v.as_array().expect("one array");
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0]["snapshot"], first.as_str());
    assert_eq!(groups[0]["hits"], 1);
    assert_eq!(groups[1]["snapshot"], second.as_str());
    assert_eq!(groups[1]["hits"], 2);
    let paths: Vec<&str> =
        groups[1]["matches"].as_array().expect("matches").iter().map(|m| m["path"].as_str().expect("path")).collect();
    let base = src.to_str().expect("UTF-8");
    assert_eq!(paths, [format!("{base}/db/extra.sql"), format!("{base}/db/main.sql")]);
    assert_eq!(groups[1]["matches"][0]["type"], "file");

    // --snapshot narrows; --newest filters on the entries' modification time.
    let only = repo.json(&["find", "*.sql", "--snapshot", &second[..8], "--newest", "2024-01-01 00:00:00"]);
    let only = only.as_array().expect("array");
    assert_eq!(only.len(), 1);
    assert_eq!(only[0]["hits"], 1);
    assert_eq!(only[0]["matches"][0]["path"], format!("{base}/db/main.sql"));
    assert_eq!(repo.json(&["find", "nothing-like-this"]), serde_json::json!([]));

    let text = repo.cairn().args(["find", "app.conf"]).output().expect("runs");
    let text = String::from_utf8(text.stdout).expect("UTF-8");
    assert!(
        text.starts_with(&format!(
            "Found matching entries in snapshot {} from 2026-11-01 10:00:00\n{base}/etc/app.conf\n",
            &first[..8]
        )),
        "{text}"
    );

    // --tree: the root tree of the first snapshot is used by it (and by no other: the trees differ).
    let snap = repo.json(&["cat", "snapshot", &first]);
    let root = snap["snapshot"]["tree"].as_str().expect("tree").to_owned();
    let users = repo.json(&["find", "--tree", &root[..12]]);
    assert_eq!(users.as_array().expect("array").len(), 1, "{users}");
    assert_eq!(users[0]["object_type"], "tree");
    assert_eq!(users[0]["path"], "/");
    assert_eq!(users[0]["snapshot"], first.as_str());

    // --blob: the one data blob of extra.sql is used by that file in the second snapshot only.
    let mut data_blobs = Vec::new();
    for index in std::fs::read_dir(repo.repo_path().join("index")).expect("index folder") {
        let name = index.expect("entry").file_name().into_string().expect("name");
        let v = repo.json(&["cat", "index", &name]);
        for pack in v["index"]["packs"].as_array().expect("packs") {
            for b in pack["blobs"].as_array().expect("blobs") {
                if b["kind"] == "data" && b["plain_len"] == 9 {
                    data_blobs.push(b["id"].as_str().expect("id").to_owned());
                }
            }
        }
    }
    assert_eq!(data_blobs.len(), 2, "the two 9-byte .sql files");
    let mut found = BTreeSet::new();
    for id in &data_blobs {
        let users = repo.json(&["find", "--blob", id]);
        for u in users.as_array().expect("array") {
            assert_eq!(u["object_type"], "blob");
            assert_eq!(u["id"], id.as_str());
            found
                .insert((u["path"].as_str().expect("path").to_owned(), u["snapshot"].as_str().expect("id").to_owned()));
        }
    }
    let want: BTreeSet<(String, String)> = [
        (format!("{base}/db/main.sql"), first.clone()),
        (format!("{base}/db/main.sql"), second.clone()),
        (format!("{base}/db/extra.sql"), second.clone()),
    ]
    .into_iter()
    .collect();
    assert_eq!(found, want);
}

#[test]
fn stats_counts_in_restics_modes_and_what_each_snapshot_alone_costs() {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    write_random_file(&src.join("shared.bin"), 1, 300_000);
    write(&src.join("copy/one.txt"), b"same text");
    write(&src.join("copy/two.txt"), b"same text");
    let first = backup(&repo, &src, "2026-11-01 10:00:00");
    write_random_file(&src.join("only-second.bin"), 2, 2_000_000);
    let second = backup(&repo, &src, "2026-11-01 11:00:00");

    let restore = repo.json(&["stats", &first]);
    assert_eq!(restore["mode"], "restore-size");
    assert_eq!(restore["snapshots_count"], 1);
    assert_eq!(restore["total_size"], 300_000 + 9 + 9);
    let by_contents = repo.json(&["stats", "--mode", "files-by-contents", &first]);
    assert_eq!(by_contents["total_file_count"], 2, "one.txt and two.txt have one content");
    assert_eq!(by_contents["total_size"], 300_000 + 9);
    let raw = repo.json(&["stats", "--mode", "raw-data"]);
    assert_eq!(raw["snapshots_count"], 2);
    let (plain, stored) =
        (raw["total_uncompressed_size"].as_u64().expect("plain"), raw["total_size"].as_u64().expect("stored"));
    assert!(plain >= 2_300_009 && stored > 0, "{raw}");
    let ratio = raw["compression_ratio"].as_f64().expect("ratio");
    assert!((ratio - plain as f64 / stored as f64).abs() < 1e-9);
    let per_file = repo.json(&["stats", "--mode", "blobs-per-file", &first]);
    assert!(per_file["total_blob_count"].as_u64() >= Some(2), "{per_file}");

    let costs = raw["snapshots"].as_array().expect("per snapshot");
    assert_eq!(costs.len(), 2);
    assert_eq!(costs[1]["id"], second.as_str());
    let alone = |i: usize| costs[i]["unique_stored_size"].as_u64().expect("size");
    // Only the second holds the 2 MB random file; everything the first holds, the second holds too
    // except its own folder trees.
    assert!(alone(1) >= 2_000_000, "{raw}");
    assert!(alone(0) < 10_000, "{raw}");
}

#[test]
fn tag_writes_a_new_snapshot_that_keeps_the_original_id() {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    write(&src.join("f"), b"x");
    let first = backup(&repo, &src, "2026-11-01 10:00:00");

    let lines = json_lines(&repo, &["tag", "--add", "keep,db", &first]);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["message_type"], "changed");
    assert_eq!(lines[0]["old_snapshot_id"], first.as_str());
    let second = lines[0]["new_snapshot_id"].as_str().expect("new id").to_owned();
    assert_eq!(lines[1], serde_json::json!({"message_type": "summary", "changed_snapshots": 1}));
    assert_eq!(snapshot_ids(&repo), std::slice::from_ref(&second), "the old snapshot is gone");
    let snap = repo.json(&["cat", "snapshot", &second]);
    assert_eq!(snap["snapshot"]["tags"], serde_json::json!(["keep", "db"]));
    assert_eq!(snap["snapshot"]["original"], first.as_str());

    // A second change keeps the first id, not the intermediate one.
    let lines = json_lines(&repo, &["tag", "--remove", "db", "--add", "x", "latest"]);
    let third = lines[0]["new_snapshot_id"].as_str().expect("new id").to_owned();
    let snap = repo.json(&["cat", "snapshot", &third]);
    assert_eq!(snap["snapshot"]["tags"], serde_json::json!(["keep", "x"]));
    assert_eq!(snap["snapshot"]["original"], first.as_str());
    // --set replaces everything; nothing to change changes nothing.
    json_lines(&repo, &["tag", "--set", "only"]);
    let lines = json_lines(&repo, &["tag", "--set", "only"]);
    assert_eq!(lines, [serde_json::json!({"message_type": "summary", "changed_snapshots": 0})]);
    repo.cairn().args(["check"]).assert().success();
}

#[test]
fn rewrite_drops_excluded_paths_and_prune_then_frees_their_data() {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    write(&src.join("app/config.yml"), b"port: 80");
    write_random_file(&src.join("app/secret.key"), 7, 3_000_000);
    write(&src.join("tmp/keep.txt"), b"kept");
    write_random_file(&src.join("tmp/huge.tmp"), 8, 2_000_000);
    let original = backup(&repo, &src, "2026-11-01 10:00:00");

    let dry = repo.json(&["rewrite", "--exclude", "secret.key", "--exclude", "*.tmp", "--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(snapshot_ids(&repo), std::slice::from_ref(&original), "a dry run writes nothing");
    let excluded: BTreeSet<&str> = dry["rewritten"][0]["excluded"]
        .as_array()
        .expect("excluded")
        .iter()
        .map(|p| p.as_str().expect("path"))
        .collect();
    let base = src.to_str().expect("UTF-8");
    assert_eq!(
        excluded,
        [format!("{base}/app/secret.key"), format!("{base}/tmp/huge.tmp")].iter().map(String::as_str).collect()
    );

    let before = dir_size(&repo.repo_path());
    let exclude_file = repo.dir.path().join("excludes");
    std::fs::write(&exclude_file, "*.tmp\n").expect("exclude file");
    let report = repo.json(&[
        "rewrite",
        "--exclude",
        "secret.key",
        "--exclude-file",
        exclude_file.to_str().expect("UTF-8"),
        "--forget",
    ]);
    let entry = &report["rewritten"][0];
    assert_eq!(entry["original"], original.as_str());
    assert_eq!(entry["forgotten"], true);
    let rewritten = entry["rewritten"].as_str().expect("new id").to_owned();
    assert_eq!(snapshot_ids(&repo), std::slice::from_ref(&rewritten));
    let snap = repo.json(&["cat", "snapshot", &rewritten]);
    assert_eq!(snap["snapshot"]["original"], original.as_str());
    assert!(snap["snapshot"]["tags"].as_array().expect("tags").contains(&Value::from("rewrite")));

    repo.cairn().args(["prune"]).assert().success();
    let after = dir_size(&repo.repo_path());
    assert!(before - after > 4_500_000, "prune freed {} bytes of the 5 MB left out", before - after);
    repo.cairn().args(["check", "--read-data"]).assert().success();

    let target = repo.scratch("restored");
    repo.cairn().args(["restore", &rewritten, "--target"]).arg(&target).assert().success();
    let restored = restored_path(&target, &src);
    assert_eq!(std::fs::read(restored.join("app/config.yml")).expect("config"), b"port: 80");
    assert_eq!(std::fs::read(restored.join("tmp/keep.txt")).expect("kept"), b"kept");
    assert!(!restored.join("app/secret.key").exists());
    assert!(!restored.join("tmp/huge.tmp").exists());
}

#[test]
fn rewrite_recounts_the_summary_of_what_is_left() {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    write(&src.join("keep/a.txt"), b"aaaa");
    write(&src.join("keep/b.txt"), b"bb");
    std::fs::create_dir_all(src.join("cache/deeper")).expect("folders");
    write_random_file(&src.join("cache/x.bin"), 1, 100_000);
    write_random_file(&src.join("cache/deeper/y.bin"), 2, 50_000);
    write_random_file(&src.join("big.tmp"), 3, 30_000);
    let original = backup(&repo, &src, "2026-11-01 10:00:00");
    let before = repo.json(&["cat", "snapshot", &original])["snapshot"]["summary"].clone();
    let files = |s: &Value| {
        ["files_new", "files_changed", "files_unchanged"].iter().map(|k| s[k].as_u64().expect(k)).sum::<u64>()
    };
    let dirs =
        |s: &Value| ["dirs_new", "dirs_changed", "dirs_unchanged"].iter().map(|k| s[k].as_u64().expect(k)).sum::<u64>();
    assert_eq!(files(&before), 5);
    assert_eq!(before["total_size"], 180_006);

    let report = repo.json(&["rewrite", "--exclude", "cache", "--exclude", "*.tmp"]);
    let rewritten = report["rewritten"][0]["rewritten"].as_str().expect("new id").to_owned();
    let after = repo.json(&["cat", "snapshot", &rewritten])["snapshot"]["summary"].clone();
    assert_eq!(files(&after), 2, "a.txt and b.txt are left: {after}");
    assert_eq!(dirs(&after), dirs(&before) - 2, "cache/ and cache/deeper/ are gone: {after}");
    assert_eq!(after["total_size"], 6);
    // What the backup itself did is kept.
    for k in ["bytes_read", "data_blobs_added", "started_ns", "duration_ns"] {
        assert_eq!(after[k], before[k], "{k}");
    }
}

#[test]
fn ls_quotes_names_with_control_characters_and_shows_special_mode_bits() {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    write(&src.join("line\nbreak"), b"1");
    write(&src.join("red\x1b[31m"), b"2");
    write(&src.join("setuid"), b"3");
    write(&src.join("setgid-noexec"), b"4");
    std::fs::set_permissions(src.join("setuid"), std::fs::Permissions::from_mode(0o4755)).expect("chmod");
    std::fs::set_permissions(src.join("setgid-noexec"), std::fs::Permissions::from_mode(0o2644)).expect("chmod");
    std::fs::create_dir(src.join("sticky")).expect("mkdir");
    std::fs::set_permissions(src.join("sticky"), std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    backup(&repo, &src, "2026-11-01 10:00:00");

    let out = repo.cairn().args(["ls", "latest"]).output().expect("runs");
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let base = src.to_str().expect("UTF-8");
    assert!(text.lines().any(|l| l == format!("\"{base}/line\\nbreak\"")), "{text}");
    assert!(text.lines().any(|l| l == format!("\"{base}/red\\x1b[31m\"")), "{text}");
    assert!(!text.contains('\x1b'), "no raw escape sequence reaches the terminal");

    let out = repo.cairn().args(["ls", "--long", "latest"]).output().expect("runs");
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let mode_of = |name: &str| {
        text.lines().find(|l| l.ends_with(&format!("/{name}"))).unwrap_or_else(|| panic!("{name} in {text}"))[..10]
            .to_owned()
    };
    assert_eq!(mode_of("setuid"), "-rwsr-xr-x");
    assert_eq!(mode_of("setgid-noexec"), "-rw-r-Sr--");
    assert_eq!(mode_of("sticky"), "drwxrwxrwt");
}
