//! The command line as a restic user expects it: restic's JSON shapes (read here the way restic
//! tooling reads them), `-v` listings, help and usage errors, `--files-from` and the other backup
//! exclusions, `dump` of a folder as tar, id prefixes and the `latest` hint.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use crate::support::TestRepo;

/// Runs cairn and returns (exit code, stdout, stderr).
fn run(repo: &TestRepo, args: &[&str]) -> (i32, String, String) {
    let out = repo.cairn().args(args).output().expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs cairn successfully and returns standard output.
fn ok(repo: &TestRepo, args: &[&str]) -> String {
    let (code, stdout, stderr) = run(repo, args);
    assert_eq!(code, 0, "cairn {args:?} failed: {stderr}");
    stdout
}

/// Each line of standard output as JSON.
fn lines(stdout: &str) -> Vec<Value> {
    stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}"))).collect()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// A small source folder: `a.txt`, `sub/b.txt`.
fn source(repo: &TestRepo) -> std::path::PathBuf {
    let src = repo.scratch("src");
    std::fs::create_dir_all(src.join("sub")).expect("mkdir");
    std::fs::write(src.join("a.txt"), b"alpha\n").expect("write");
    std::fs::write(src.join("sub/b.txt"), b"beta\n").expect("write");
    src
}

/// The paths a snapshot holds below `under`, from `ls --json` (nodes only).
fn listed(repo: &TestRepo, snapshot: &str, under: &Path) -> BTreeSet<String> {
    lines(&ok(repo, &["ls", snapshot, "--json"]))
        .into_iter()
        .filter(|v| v["struct_type"] == "node")
        .map(|v| v["path"].as_str().expect("path").to_owned())
        .filter_map(|p| p.strip_prefix(s(under)).map(str::to_owned))
        .filter(|p| !p.is_empty())
        .collect()
}

#[test]
fn snapshots_and_ls_json_have_restic_fields() {
    let repo = TestRepo::new();
    let src = source(&repo);
    // Backed up where local time is UTC+2 (a POSIX TZ string: no time zone database needed).
    let out = repo
        .cairn()
        .env("TZ", "XYZ-2")
        .args(["backup", s(&src), "--tag", "web,daily", "--time", "2026-03-04T03:06:07.25Z"])
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    ok(&repo, &["backup", s(&src)]);
    let list: Value = serde_json::from_str(&ok(&repo, &["snapshots", "--json"])).expect("JSON");
    let list = list.as_array().expect("array");
    assert_eq!(list.len(), 2);
    let first = &list[0];
    // restic's names and formats.
    assert_eq!(first["time"], "2026-03-04T05:06:07.250000000+02:00", "RFC 3339, nanoseconds, recorded offset");
    let parsed = chrono::DateTime::parse_from_rfc3339(first["time"].as_str().expect("time")).expect("RFC 3339");
    assert_eq!(parsed.timestamp_nanos_opt(), first["time_ns"].as_i64(), "time and cairn's time_ns agree");
    assert_eq!(first["hostname"], first["host"]);
    assert!(first["username"].as_str().is_some_and(|u| !u.is_empty()), "{first}");
    assert_eq!(first["uid"], nix::unistd::getuid().as_raw());
    assert_eq!(first["gid"], nix::unistd::getgid().as_raw());
    assert_eq!(first["tags"], serde_json::json!(["web", "daily"]));
    assert_eq!(first["paths"], serde_json::json!([s(&src)]));
    let id = first["id"].as_str().expect("id");
    assert_eq!(id.len(), 64);
    assert_eq!(first["short_id"], &id[..8]);
    assert_eq!(first["tree"].as_str().map(str::len), Some(64));
    assert!(first.get("parent").is_none(), "restic leaves out a missing parent: {first}");
    assert_eq!(list[1]["parent"], id, "the second names the first as parent");
    // cairn's own facts are extra fields.
    assert_eq!(first["source"], "files");
    assert!(first["summary"]["files_new"].as_u64() == Some(2), "{first}");

    // `ls --json`: the snapshot first, then one node per line.
    let ls = lines(&ok(&repo, &["ls", id, "--json"]));
    assert_eq!(ls[0]["struct_type"], "snapshot");
    assert_eq!(ls[0]["id"], id);
    let file = ls.iter().find(|v| v["path"] == format!("{}/a.txt", s(&src))).expect("a.txt listed");
    assert_eq!(file["struct_type"], "node");
    assert_eq!(file["name"], "a.txt");
    assert_eq!(file["type"], "file");
    assert_eq!(file["size"], 6);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(src.join("a.txt")).expect("stat").permissions());
    assert_eq!(file["mode"], mode & 0o777, "Go's file mode: a regular file has only permission bits");
    assert_eq!(file["unix_mode"], mode);
    let dir = ls.iter().find(|v| v["path"] == format!("{}/sub", s(&src))).expect("sub listed");
    assert_eq!(dir["mode"].as_u64().map(|m| m >> 31), Some(1), "Go's ModeDir bit");
    assert!(dir["permissions"].as_str().is_some_and(|p| p.starts_with('d')), "{dir}");
    chrono::DateTime::parse_from_rfc3339(file["mtime"].as_str().expect("mtime")).expect("RFC 3339 mtime");

    // `find --json`: restic's groups of matches per snapshot.
    let found: Value = serde_json::from_str(&ok(&repo, &["find", "b.txt", "--json"])).expect("JSON");
    assert_eq!(found[0]["hits"], 1);
    assert_eq!(found[0]["snapshot"], id);
    assert_eq!(found[0]["matches"][0]["path"], format!("{}/sub/b.txt", s(&src)));
    assert_eq!(found[0]["matches"][0]["permissions"].as_str().map(str::len), Some(10));
}

#[test]
fn backup_json_prints_status_lines_verbose_lines_and_restic_summary() {
    let repo = TestRepo::new();
    let src = source(&repo);
    // Without CAIRN_PROGRESS_FPS: one summary object, nothing else.
    let first = lines(&ok(&repo, &["backup", s(&src), "--json"]));
    assert_eq!(first.len(), 1, "{first:?}");
    let summary = &first[0];
    assert_eq!(summary["message_type"], "summary");
    for (name, want) in [
        ("files_new", 2),
        ("files_changed", 0),
        ("files_unmodified", 0),
        ("dirs_new", 2),
        ("dirs_changed", 0),
        ("dirs_unmodified", 0),
        ("data_blobs", 2),
        ("total_files_processed", 2),
        ("total_bytes_processed", 11),
    ] {
        assert_eq!(summary[name], want, "{name} in {summary}");
    }
    assert!(summary["tree_blobs"].as_u64() > Some(0), "{summary}");
    assert!(summary["data_added"].as_u64() >= Some(11), "{summary}");
    assert!(summary["total_duration"].as_f64().is_some_and(|d| d > 0.0), "{summary}");
    let id = summary["snapshot_id"].as_str().expect("snapshot_id").to_owned();
    let snaps: Value = serde_json::from_str(&ok(&repo, &["snapshots", "--json"])).expect("JSON");
    assert_eq!(snaps[0]["id"], id.as_str(), "the summary names the snapshot written");
    // cairn's earlier report stays as extra fields.
    assert_eq!(summary["summary"]["files_new"], 2);
    assert_eq!(summary["warnings"], serde_json::json!([]));

    std::fs::write(src.join("a.txt"), b"alpha, changed\n").expect("write");
    let out = repo
        .cairn()
        .env("CAIRN_PROGRESS_FPS", "1000")
        .args(["backup", s(&src), "--json", "-v"])
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let all = lines(&String::from_utf8(out.stdout).expect("UTF-8"));
    let last = all.last().expect("lines");
    assert_eq!(last["message_type"], "summary");
    assert_eq!((last["files_changed"].as_u64(), last["files_unmodified"].as_u64()), (Some(1), Some(1)));
    assert_eq!(last["parent"], id.as_str());
    let status: Vec<&Value> = all.iter().filter(|v| v["message_type"] == "status").collect();
    assert!(!status.is_empty(), "no status line: {all:?}");
    let end = status.last().expect("a status line");
    assert_eq!(end["percent_done"], 1.0, "{end}");
    assert_eq!((end["files_done"].as_u64(), end["total_files"].as_u64()), (Some(2), Some(2)), "{end}");
    assert_eq!(end["bytes_done"], end["total_bytes"], "{end}");
    let verbose: Vec<(String, String)> = all
        .iter()
        .filter(|v| v["message_type"] == "verbose_status")
        .map(|v| (v["action"].as_str().expect("action").to_owned(), v["item"].as_str().expect("item").to_owned()))
        .collect();
    assert_eq!(
        verbose,
        vec![
            ("modified".to_owned(), format!("{}/a.txt", s(&src))),
            ("unchanged".to_owned(), format!("{}/sub/b.txt", s(&src)))
        ]
    );
}

#[test]
fn verbose_backup_and_restore_list_each_file_and_the_parent() {
    let repo = TestRepo::new();
    let src = source(&repo);
    let first = ok(&repo, &["backup", "-v", s(&src)]);
    assert!(first.contains(&format!("new        {}/a.txt", s(&src))), "{first}");
    assert!(first.contains(&format!("new        {}/sub/b.txt", s(&src))), "{first}");
    assert!(!first.contains("using parent"), "{first}");
    let id = lines(&ok(&repo, &["snapshots", "--json"]))[0][0]["short_id"].as_str().expect("id").to_owned();
    std::fs::write(src.join("sub/b.txt"), b"beta, changed\n").expect("write");
    let second = ok(&repo, &["backup", "--verbose", s(&src)]);
    assert!(second.contains(&format!("using parent snapshot {id}")), "{second}");
    assert!(second.contains(&format!("unchanged  {}/a.txt", s(&src))), "{second}");
    assert!(second.contains(&format!("modified   {}/sub/b.txt", s(&src))), "{second}");
    // Without -v: only the summary.
    let quiet = ok(&repo, &["backup", s(&src)]);
    assert!(!quiet.contains("a.txt"), "{quiet}");

    let target = repo.scratch("target");
    let restored = ok(&repo, &["restore", "latest", "--target", s(&target), "-v"]);
    for f in ["a.txt", "sub/b.txt"] {
        assert!(restored.contains(&format!("restored   {}/{f}", s(&src))), "{f} not listed: {restored}");
    }
    assert!(restored.contains("restored 2 files, "), "{restored}");

    // restic 0.17's restore summary, with cairn's report as extra fields.
    let again = repo.scratch("again");
    let report: Value =
        serde_json::from_str(&ok(&repo, &["restore", "latest", "--target", s(&again), "--json"])).expect("JSON");
    assert_eq!(report["message_type"], "summary");
    assert_eq!(report["files"], 2);
    assert_eq!(report["bytes_restored"], report["bytes"]);
    assert_eq!(report["total_bytes"], 6 + 14);
}

#[test]
fn help_groups_global_options_and_usage_errors_show_only_what_was_typed() {
    let repo = TestRepo::new();
    let help = ok(&repo, &["backup", "--help"]);
    let heading = help.find("Global options:").expect("a 'Global options' heading");
    for global in ["--repo", "--password-file", "--cache-dir", "--json", "--quiet", "--verbose"] {
        let at = help.find(global).unwrap_or_else(|| panic!("{global} missing from help"));
        assert!(at > heading, "{global} is listed before the global heading:\n{help}");
    }
    assert!(help.find("--exclude-caches").expect("own option") < heading, "{help}");
    assert!(help.contains("[env: CAIRN_REPOSITORY]"), "{help}");

    // CAIRN_REPOSITORY is set (by TestRepo): the usage line does not show --repo as if typed.
    let (code, stdout, stderr) = run(&repo, &["dump", "latest"]);
    assert_eq!(code, 2, "usage errors exit 2: {stderr}");
    assert!(stdout.is_empty());
    assert!(stderr.contains("<PATH>"), "{stderr}");
    assert!(!stderr.contains("--repo"), "an option from the environment shown as typed: {stderr}");
    let (code, _, stderr) = run(&repo, &["backup", "--no-such-flag"]);
    assert_eq!(code, 2, "{stderr}");
    // --help and --version succeed.
    assert_eq!(run(&repo, &["--version"]).0, 0);
}

#[test]
fn counts_are_pluralised() {
    let repo = TestRepo::new();
    let src = source(&repo);
    ok(&repo, &["backup", s(&src), "--time", "2026-01-01 00:00:00"]);
    let one = ok(&repo, &["snapshots"]);
    assert!(one.lines().any(|l| l == "1 snapshot"), "{one}");
    ok(&repo, &["backup", s(&src), "--time", "2026-01-02 00:00:00"]);
    let two = ok(&repo, &["snapshots"]);
    assert!(two.lines().any(|l| l == "2 snapshots"), "{two}");
    let plan = ok(&repo, &["forget", "--keep-last", "1", "--dry-run"]);
    assert!(plan.contains("keep 1 snapshot:"), "{plan}");
    assert!(plan.contains("would remove 1 snapshot\n"), "{plan}");
    let target = repo.scratch("one-file");
    let restored = ok(&repo, &["restore", &format!("latest:{}/sub", s(&src)), "--target", s(&target)]);
    assert!(restored.contains("restored 1 file, 0 folders, 0 symlinks"), "{restored}");
}

#[test]
fn files_from_verbatim_and_raw_lists_follow_restic_rules() {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    for name in ["one.log", "two.log", "keep.txt", "skip.txt", "space name.txt", "#hash.txt"] {
        std::fs::write(src.join(name), name.as_bytes()).expect("write");
    }
    let list = repo.dir.path().join("list");
    std::fs::write(&list, format!("# a comment\n\n{0}/*.log\n{0}/keep.txt\r\n{0}/none-*.x\n", s(&src)).as_bytes())
        .expect("write list");
    let (code, _, stderr) = run(&repo, &["backup", "--files-from", s(&list)]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("matches no file"), "a pattern matching nothing is a warning: {stderr}");
    assert_eq!(
        listed(&repo, "latest", &src),
        BTreeSet::from(["/keep.txt".to_owned(), "/one.log".to_owned(), "/two.log".to_owned()])
    );

    // Verbatim: no comments, no patterns; a name starting with `#` is a name.
    let verbatim = repo.dir.path().join("verbatim");
    std::fs::write(&verbatim, format!("{0}/#hash.txt\n{0}/space name.txt\n", s(&src))).expect("write");
    ok(&repo, &["backup", "--files-from-verbatim", s(&verbatim)]);
    assert_eq!(listed(&repo, "latest", &src), BTreeSet::from(["/#hash.txt".to_owned(), "/space name.txt".to_owned()]));

    // Raw: NUL-separated, as `find -print0` writes.
    let raw = repo.dir.path().join("raw");
    std::fs::write(&raw, format!("{0}/skip.txt\0{0}/one.log\0", s(&src))).expect("write");
    ok(&repo, &["backup", "--files-from-raw", s(&raw)]);
    assert_eq!(listed(&repo, "latest", &src), BTreeSet::from(["/one.log".to_owned(), "/skip.txt".to_owned()]));

    // A list plus --stdin is refused.
    let (code, _, stderr) = run(&repo, &["backup", "--stdin", "--files-from", s(&list)]);
    assert_ne!(code, 0);
    assert!(stderr.contains("--files-from"), "{stderr}");
}

#[test]
fn exclude_larger_than_caches_and_case_insensitive_patterns() {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    for d in ["cache", "fake-cache", "data"] {
        std::fs::create_dir_all(src.join(d)).expect("mkdir");
    }
    // A real cache tag (the signature), and a file of the same name without it.
    std::fs::write(src.join("cache/CACHEDIR.TAG"), b"Signature: 8a477f597d28d172789f06886806bc55\n# cache\n")
        .expect("write");
    std::fs::write(src.join("cache/blob"), b"cached").expect("write");
    std::fs::write(src.join("fake-cache/CACHEDIR.TAG"), b"not a signature").expect("write");
    std::fs::write(src.join("data/big.bin"), vec![7u8; 4096]).expect("write");
    std::fs::write(src.join("data/small.bin"), vec![7u8; 1024]).expect("write");
    std::fs::write(src.join("data/exactly.bin"), vec![9u8; 2048]).expect("write");
    std::fs::write(src.join("data/NOTES.TMP"), b"x").expect("write");
    std::fs::write(src.join("data/Other.Tmp"), b"x").expect("write");
    std::fs::write(src.join("data/keep.TMP.txt"), b"x").expect("write");
    ok(&repo, &["backup", s(&src), "--exclude-caches", "--exclude-larger-than", "2K", "--iexclude", "*.tmp"]);
    let got = listed(&repo, "latest", &src);
    let want: BTreeSet<String> = [
        "/data",
        "/data/exactly.bin",
        "/data/keep.TMP.txt",
        "/data/small.bin",
        "/fake-cache",
        "/fake-cache/CACHEDIR.TAG",
    ]
    .iter()
    .map(|p| p.to_string())
    .collect();
    assert_eq!(got, want);

    // --exclude stays case-sensitive; --iexclude-file reads patterns from a file.
    let patterns = repo.dir.path().join("ipatterns");
    std::fs::write(&patterns, b"# comment\n*.BIN\n").expect("write");
    ok(&repo, &["backup", s(&src), "--exclude", "*.tmp", "--iexclude-file", s(&patterns)]);
    let got = listed(&repo, "latest", &src);
    assert!(got.contains("/data/NOTES.TMP"), "{got:?}");
    assert!(!got.iter().any(|p| p.ends_with(".bin")), "{got:?}");
    assert!(got.contains("/cache/blob"), "without --exclude-caches the cache is kept: {got:?}");
}

#[test]
fn dump_of_a_folder_is_a_tar_archive() {
    let repo = TestRepo::new();
    let src = source(&repo);
    std::os::unix::fs::symlink("a.txt", src.join("link")).expect("symlink");
    crate::support::data::write_random_file(&src.join("sub/big.bin"), 7, 3 * 1024 * 1024 + 17);
    ok(&repo, &["backup", s(&src)]);
    let out = repo.cairn().args(["dump", "latest", s(&src)]).output().expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let archive = repo.dir.path().join("dump.tar");
    std::fs::write(&archive, &out.stdout).expect("write");
    let unpacked = repo.scratch("unpacked");
    let tar = std::process::Command::new("tar")
        .args(["-x", "-f", s(&archive), "-C", s(&unpacked)])
        .status()
        .expect("the tar program is needed for this test");
    assert!(tar.success());
    // Names are the folder's path without the leading '/', as restic writes them.
    let root = unpacked.join(s(&src).trim_start_matches('/'));
    for f in ["a.txt", "sub/b.txt", "sub/big.bin"] {
        assert!(crate::support::data::same_contents(&src.join(f), &root.join(f)), "{f} differs");
    }
    assert_eq!(std::fs::read_link(root.join("link")).expect("a symlink"), Path::new("a.txt"));
    // A file is still dumped as its bytes.
    let file = repo.cairn().args(["dump", "latest", &format!("{}/a.txt", s(&src))]).output().expect("runs");
    assert_eq!(file.stdout, b"alpha\n");
}

#[test]
fn ambiguous_prefixes_list_candidates_and_unique_ones_work_everywhere() {
    let repo = TestRepo::new();
    let src = source(&repo);
    // 17 snapshots: two of them must share their first hex digit.
    for day in 1..=17 {
        ok(&repo, &["backup", s(&src), "--time", &format!("2026-01-{day:02} 00:00:00"), "-q"]);
    }
    let list: Value = serde_json::from_str(&ok(&repo, &["snapshots", "--json"])).expect("JSON");
    let ids: Vec<String> =
        list.as_array().expect("array").iter().map(|v| v["id"].as_str().expect("id").to_owned()).collect();
    let digit = (0..16)
        .map(|d| format!("{d:x}"))
        .find(|d| ids.iter().filter(|i| i.starts_with(d.as_str())).count() >= 2)
        .expect("a shared first digit");
    let (code, _, stderr) = run(&repo, &["cat", "snapshot", &digit]);
    assert_ne!(code, 0);
    assert!(stderr.contains("give more characters"), "{stderr}");
    for id in ids.iter().filter(|i| i.starts_with(digit.as_str())).take(10) {
        assert!(stderr.contains(&id[..8]), "candidate {} not listed: {stderr}", &id[..8]);
    }
    let (code, _, stderr) = run(&repo, &["ls", &digit]);
    assert_ne!(code, 0);
    assert!(stderr.contains("give more characters"), "{stderr}");
    // A unique prefix works for cat, ls, dump, restore and forget.
    let unique = &ids[0][..10];
    let cat: Value = serde_json::from_str(&ok(&repo, &["cat", "snapshot", unique])).expect("JSON");
    assert_eq!(cat["id"], ids[0].as_str());
    assert!(ok(&repo, &["ls", unique]).contains("a.txt"));
    assert_eq!(ok(&repo, &["dump", unique, &format!("{}/a.txt", s(&src))]), "alpha\n");
    ok(&repo, &["forget", unique]);
    let after: Value = serde_json::from_str(&ok(&repo, &["snapshots", "--json"])).expect("JSON");
    assert_eq!(after.as_array().map(Vec::len), Some(16));
}

#[test]
fn latest_without_the_path_names_the_snapshot_and_suggests_filters() {
    let repo = TestRepo::new();
    let files = source(&repo);
    let other = repo.scratch("other");
    std::fs::write(other.join("o.txt"), b"other\n").expect("write");
    ok(&repo, &["backup", s(&files), "--time", "2026-01-01 00:00:00"]);
    ok(&repo, &["backup", s(&other), "--tag", "o", "--time", "2026-01-02 00:00:00"]);
    let latest = lines(&ok(&repo, &["snapshots", "--json"]))[0][1]["short_id"].as_str().expect("id").to_owned();
    let wanted = format!("{}/a.txt", s(&files));
    for args in [vec!["dump", "latest", wanted.as_str()], vec!["ls", "latest", wanted.as_str()]] {
        let (code, _, stderr) = run(&repo, &args);
        assert_ne!(code, 0, "{args:?}");
        assert!(stderr.contains(&latest), "the error names snapshot {latest}: {stderr}");
        assert!(stderr.contains("--path") && stderr.contains("--tag"), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
    // The suggestion works.
    assert_eq!(ok(&repo, &["dump", "latest", &wanted, "--path", s(&files)]), "alpha\n");
}

/// The `cairn ...` commands in the README's `sh` blocks, as argument lists: comments, cron time
/// fields, `$ ` prompts, and what follows a pipe, `&&`, `;`, `&` or a redirection are left out.
fn readme_commands() -> Vec<Vec<String>> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).expect("README");
    let mut in_sh = false;
    let mut commands = Vec::new();
    let mut pending = String::new();
    for line in readme.lines() {
        if line.starts_with("```") {
            in_sh = line == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        pending.push_str(line);
        if let Some(stripped) = pending.strip_suffix('\\') {
            pending = format!("{stripped} ");
            continue;
        }
        let full = std::mem::take(&mut pending);
        let mut words: Vec<String> = Vec::new();
        let mut word = String::new();
        let (mut quote, mut in_word) = (None, false);
        let mut chars = full.chars().peekable();
        while let Some(c) = chars.next() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), c) => word.push(c),
                (None, '\'' | '"') => {
                    quote = Some(c);
                    in_word = true;
                }
                (None, ' ' | '\t') => {
                    if in_word {
                        words.push(std::mem::take(&mut word));
                        in_word = false;
                    }
                }
                (None, '#') if !in_word => break,
                (None, '|' | '&' | ';' | '>' | '<') => {
                    if in_word {
                        words.push(std::mem::take(&mut word));
                        in_word = false;
                    }
                    words.push(c.to_string());
                    while chars.peek().is_some_and(|n| "|&>".contains(*n)) {
                        chars.next();
                    }
                }
                (None, c) => {
                    word.push(c);
                    in_word = true;
                }
            }
        }
        if in_word {
            words.push(word);
        }
        let mut rest = &words[..];
        while let Some(at) = rest.iter().position(|w| w == "cairn") {
            let args = &rest[at + 1..];
            let end = args.iter().position(|w| ["|", "&", ";", ">", "<"].contains(&w.as_str())).unwrap_or(args.len());
            commands.push(args[..end].to_vec());
            rest = &args[end..];
        }
    }
    commands
}

#[test]
fn readme_examples_are_accepted_by_the_command_line() {
    let commands = readme_commands();
    assert!(commands.len() >= 30, "found only {} examples: {commands:?}", commands.len());
    let repo = TestRepo::uninitialised();
    // Examples that name a profile find README's own profile under that name.
    let config_home = repo.scratch("config");
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).expect("README");
    let profile = readme.split("```toml\n").nth(1).and_then(|b| b.split("```").next()).expect("a profile in README");
    for args in &commands {
        if let Some(at) = args.iter().position(|a| a == "--profile") {
            let name = args.get(at + 1).expect("a profile name");
            std::fs::create_dir_all(config_home.join("cairn")).expect("folder");
            std::fs::write(config_home.join("cairn").join(format!("{name}.toml")), profile).expect("profile");
        }
    }
    for args in &commands {
        // A repository that does not exist: a command that parses stops there (exit 10), or at a
        // missing input file (exit 1); a usage error is exit 2.
        let out = repo
            .cairn()
            .env("CAIRN_REPOSITORY", repo.dir.path().join("absent"))
            .env("XDG_CONFIG_HOME", &config_home)
            .env_remove("CAIRN_PASSWORD")
            .args(args)
            .write_stdin("")
            .output()
            .expect("runs");
        assert_ne!(
            out.status.code(),
            Some(2),
            "README example `cairn {}` is not accepted: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn readme_browsing_examples_run_on_a_repository_with_files_and_a_dump() {
    let repo = TestRepo::new();
    let src = source(&repo);
    ok(&repo, &["backup", s(&src), "--tag", "hourly"]);
    let out = repo
        .cairn()
        .args(["backup", "--stdin", "--stdin-filename", "redis.rdb", "--tag", "redis"])
        .write_stdin("REDIS0011 (a stand-in for an RDB file)")
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = repo
        .cairn()
        .args(["backup", "--stdin", "--stdin-filename", "mydb.sql"])
        .write_stdin("CREATE TABLE t (x int);\n")
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The examples as written, with the README's placeholder paths and ids replaced by real ones.
    let first = lines(&ok(&repo, &["snapshots", "--json"]))[0][0]["short_id"].as_str().expect("id").to_owned();
    let uploads = s(&src).to_owned();
    let target = repo.scratch("r");
    let mut ran = 0;
    for args in readme_commands() {
        let Some(verb) = args.first() else { continue };
        if !["snapshots", "ls", "restore", "dump", "diff", "find", "stats", "tag"].contains(&verb.as_str()) {
            continue;
        }
        let mut args: Vec<String> = args
            .iter()
            .map(|a| a.replace("/srv/uploads", &uploads).replace("1a2b3c4d", &first).replace("/tmp/r", s(&target)))
            .collect();
        // The test's snapshots are of this host.
        if let Some(at) = args.windows(2).position(|w| w[0] == "--host" && w[1] == "db1") {
            args.drain(at..at + 2);
        }
        if args.iter().any(|a| a == "--blob") {
            continue; // needs a blob id from a damaged repository
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = repo.cairn().args(&refs).output().expect("runs");
        assert!(
            out.status.success(),
            "README example `cairn {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        ran += 1;
    }
    assert!(ran >= 10, "only {ran} examples ran");
}
