//! Systematic crash points: every storage operation of backup, forget --prune, prune, repair index
//! and repair snapshots is, in turn, the one where the process stops (as with SIGKILL) or the one
//! that fails. After each, fresh processes must find a repository that needs no manual step: the
//! same command run again succeeds, `check --read-data` finds no damage (leftovers are notices),
//! and every snapshot that existed before restores byte for byte.
//!
//! The faults come from the binary's `fault-injection` feature (engine/src/fault.rs), which the
//! test build enables: `CAIRN_FAULT=trace` prints every storage operation, `crash-at=N` stops the
//! process before the Nth mutating one (write or delete), `crash-after=N` after it, and
//! `fail-at-op=N` fails the Nth operation of any kind (read, list and stat too). Each command is
//! first run with `trace` on a copy of its starting repository to learn how many operations it
//! performs; then every point from the first to the last is tried on a fresh copy.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use crate::support::TestRepo;
use crate::support::data::{Rng, write_random_file};
use crate::support::fstree::{assert_same_tree, restored_path, set_mtime};

/// Notices `check` may give after a crash: garbage and duplicates that the next prune removes.
const HARMLESS_NOTICES: &[&str] = &["packs_unindexed", "index_superseded", "blobs_duplicated"];

const STREAM_NAME: &str = "db.sql";

/// What a snapshot must restore to.
#[derive(Debug, Clone)]
enum Content {
    /// A frozen copy of the backed-up folder.
    Tree(PathBuf),
    /// The bytes of a stream backed up with `--stdin`.
    Stream(Vec<u8>),
}

/// A repository to start from, the folders its snapshots were taken of, and what each holds.
struct Template {
    repo: TestRepo,
    /// The folder every file snapshot was taken of (its current state is the next backup's input).
    src: PathBuf,
    /// Snapshot id -> what it restores to.
    snapshots: BTreeMap<String, Content>,
    /// Ids by role: "v1", "v2", "v3" (file snapshots), "stream".
    named: BTreeMap<&'static str, String>,
    /// The data packs v3's backup wrote (they hold e.bin, which only v3 has).
    v3_data_packs: Vec<String>,
}

fn run_ok(cmd: &mut std::process::Command) -> Output {
    let out = cmd.output().expect("runs");
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn latest_id(repo: &TestRepo) -> String {
    let list = repo.json(&["snapshots"]);
    let list = list.as_array().expect("array");
    let latest = list.iter().max_by_key(|s| s["time_ns"].as_i64().expect("time_ns")).expect("a snapshot");
    latest["id"].as_str().expect("id").to_owned()
}

/// Freezes the current state of `src` as the expected content of a snapshot.
fn freeze(repo: &TestRepo, src: &Path, name: &str) -> PathBuf {
    let to = repo.dir.path().join("versions").join(name);
    std::fs::create_dir_all(to.parent().expect("parent")).expect("versions folder");
    run_ok(std::process::Command::new("cp").arg("-a").arg(src).arg(&to));
    to
}

/// The stream is large enough (over a quarter of the data pack target) that its pack is neither
/// small nor partly used: the one pack prune keeps as it is.
fn stream(version: u64) -> Vec<u8> {
    let mut bytes = Rng::new(0xc0de_5000).bytes(5 << 20);
    // A later version changes a stretch in the middle and grows, as a dump of a live database does.
    if version > 1 {
        let patch = Rng::new(0xc0de_5000 + version).bytes(40 << 10);
        bytes[150 << 10..190 << 10].copy_from_slice(&patch);
        bytes.extend_from_slice(&Rng::new(0xc0de_6000 + version).bytes(60 << 10));
    }
    bytes
}

impl Template {
    /// Three file snapshots of a small changing folder (each the parent of the next) and one
    /// stream snapshot. v1 holds a file no later snapshot holds (partly used packs after forget),
    /// v3 one stored in a pack of its own (an unused pack after forget). The snapshots to keep are
    /// tagged `keep`.
    fn new() -> Self {
        let repo = TestRepo::new();
        let src = repo.scratch("src");
        let mut snapshots = BTreeMap::new();
        let mut named = BTreeMap::new();
        let mut backup = |repo: &TestRepo, role: &'static str, tag: &str, content: Content| {
            let mut cmd = repo.cairn_std();
            cmd.args(["backup", "--quiet", "--tag", tag]);
            if let Content::Stream(bytes) = &content {
                let file = repo.dir.path().join("stream-input");
                std::fs::write(&file, bytes).expect("stream file");
                cmd.args(["--stdin", "--stdin-filename", STREAM_NAME])
                    .stdin(Stdio::from(std::fs::File::open(&file).expect("stream file")));
            } else {
                cmd.arg(&src);
            }
            run_ok(&mut cmd);
            let id = latest_id(repo);
            snapshots.insert(id.clone(), content);
            named.insert(role, id);
        };

        write_random_file(&src.join("a.bin"), 0xc0de_0001, 200 << 10);
        std::fs::write(src.join("b.txt"), "first version\n").expect("write");
        std::fs::create_dir(src.join("sub")).expect("mkdir");
        write_random_file(&src.join("sub/c.bin"), 0xc0de_0003, 150 << 10);
        std::os::unix::fs::symlink("../a.bin", src.join("sub/link")).expect("symlink");
        let v1 = freeze(&repo, &src, "v1");
        backup(&repo, "v1", "drop", Content::Tree(v1));

        backup(&repo, "stream", "keep", Content::Stream(stream(1)));

        std::fs::write(src.join("b.txt"), "second version, longer\n").expect("write");
        std::fs::remove_file(src.join("sub/c.bin")).expect("rm");
        write_random_file(&src.join("sub/d.bin"), 0xc0de_0004, 100 << 10);
        let v2 = freeze(&repo, &src, "v2");
        backup(&repo, "v2", "keep", Content::Tree(v2));

        write_random_file(&src.join("e.bin"), 0xc0de_0005, 300 << 10);
        let v3 = freeze(&repo, &src, "v3");
        let index_before = index_files(&repo);
        backup(&repo, "v3", "drop", Content::Tree(v3));
        let v3_data_packs = data_packs_named_by_new_index_files(&repo, &index_before);
        assert!(!v3_data_packs.is_empty(), "v3's backup wrote no data pack");

        // The input of the next file backup: one file changed, one new.
        std::fs::write(src.join("b.txt"), "third version\n").expect("write");
        write_random_file(&src.join("sub/f.bin"), 0xc0de_0006, 120 << 10);
        Self { repo, src, snapshots, named, v3_data_packs }
    }

    fn id(&self, role: &str) -> String {
        self.named[role].clone()
    }
}

/// A command to run at every crash point, and what must hold afterwards.
struct Scenario<'t> {
    name: &'static str,
    template: &'t Template,
    args: Vec<String>,
    /// Standard input of the command (a stream backup).
    stdin: Option<Vec<u8>>,
    /// Snapshots that must exist after the command's rerun, and what they restore to.
    keep: BTreeMap<String, Content>,
    /// Snapshots that must be gone after the rerun.
    gone: Vec<String>,
    /// What every snapshot the command created restores to.
    created: Option<Content>,
    /// Whether the starting repository is free of damage (a repair starts from a damaged one), so
    /// that the state the fault leaves must be too.
    starts_whole: bool,
}

/// A throwaway copy of a template's repository and cache; the source folder stays where it is,
/// so that a backup finds its parent.
struct Work {
    repo: TestRepo,
}

impl Work {
    fn copy_of(template: &Template) -> Self {
        let repo = TestRepo::uninitialised();
        for (from, to) in
            [(template.repo.repo_path(), repo.repo_path()), (template.repo.cache_path(), repo.cache_path())]
        {
            if from.exists() {
                run_ok(std::process::Command::new("cp").arg("-a").arg(&from).arg(&to));
            }
        }
        Self { repo }
    }

    fn run(&self, scenario: &Scenario, fault: Option<&str>) -> Output {
        let mut cmd = self.repo.cairn_std();
        cmd.args(&scenario.args);
        if let Some(fault) = fault {
            cmd.env("CAIRN_FAULT", fault);
        }
        match &scenario.stdin {
            Some(bytes) => {
                let file = self.repo.dir.path().join("stdin");
                std::fs::write(&file, bytes).expect("stdin file");
                cmd.stdin(Stdio::from(std::fs::File::open(&file).expect("stdin file")));
            }
            None => {
                cmd.stdin(Stdio::null());
            }
        }
        cmd.output().expect("runs")
    }
}

/// Operations a fault-free run performs: (all, mutating).
fn count_operations(scenario: &Scenario) -> (u64, u64) {
    let work = Work::copy_of(scenario.template);
    let out = work.run(scenario, Some("trace"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}: the fault-free run failed: {stderr}", scenario.name);
    let (mut all, mut mutating) = (0, 0);
    for line in stderr.lines() {
        let Some(rest) = line.strip_prefix("cairn-fault: op ") else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        all = all.max(fields[0].parse().expect("operation number"));
        if let Ok(m) = fields[2].parse::<u64>() {
            mutating = mutating.max(m);
        }
    }
    assert!(
        all > 0,
        "{}: the cairn binary does not trace storage operations: it was built without the \
         fault-injection feature (build with 'cargo build --workspace --bins --tests')",
        scenario.name
    );
    (all, mutating)
}

/// Runs the scenario with `fault` on a fresh copy, then checks the repository in fresh processes.
fn try_point(scenario: &Scenario, fault: &str, expect_crash: bool) {
    let what = format!("{} with CAIRN_FAULT={fault}", scenario.name);
    let work = Work::copy_of(scenario.template);
    let out = work.run(scenario, Some(fault));
    let stderr = String::from_utf8_lossy(&out.stderr);
    if expect_crash {
        assert_eq!(out.status.signal(), Some(9), "{what}: the process was not stopped there: {stderr}");
    } else {
        // A failed operation ends the command with an error line, or is one it may shrug off (the
        // removal of its own lock); never a panic or a signal.
        let code = out.status.code();
        assert!(matches!(code, Some(0 | 1)), "{what}: exit {:?}: {stderr}", out.status);
        assert!(!stderr.contains("panicked"), "{what}: {stderr}");
        if code == Some(1) {
            assert!(stderr.contains("injected fault"), "{what}: the error does not name the failure: {stderr}");
        }
    }

    // The repository itself, as the fault left it, is whole (spec/ordering.md): checked without
    // the cache, which could otherwise stand in for index files the command already deleted.
    if scenario.starts_whole {
        assert_no_damage(&work, &["--no-cache"], &format!("{what}, before the next run"));
    }

    // The next run of the same command needs no manual step.
    let again = work.run(scenario, None);
    assert!(again.status.success(), "{what}: the next run failed: {}", String::from_utf8_lossy(&again.stderr));
    assert_no_damage(&work, &[], &what);

    let list = work.repo.json(&["snapshots"]);
    let ids: Vec<String> =
        list.as_array().expect("array").iter().map(|s| s["id"].as_str().expect("id").to_owned()).collect();
    for gone in &scenario.gone {
        assert!(!ids.contains(gone), "{what}: snapshot {gone} should be gone");
    }
    for (id, content) in &scenario.keep {
        assert!(ids.contains(id), "{what}: snapshot {id} is missing");
        assert_restores(&work, &scenario.template.src, id, content, &what);
    }
    for id in ids.iter().filter(|id| !scenario.keep.contains_key(*id)) {
        let content = scenario.created.as_ref().unwrap_or_else(|| panic!("{what}: unexpected snapshot {id}"));
        assert_restores(&work, &scenario.template.src, id, content, &what);
    }
}

/// `check --read-data` finds no damage, and nothing but harmless notices.
fn assert_no_damage(work: &Work, extra: &[&str], what: &str) {
    let check = work.repo.cairn_std().args(["check", "--read-data", "--json"]).args(extra).output().expect("runs");
    let report: serde_json::Value = serde_json::from_slice(&check.stdout)
        .unwrap_or_else(|_| panic!("{what}: check: {}", String::from_utf8_lossy(&check.stderr)));
    assert_eq!(report["damage"].as_array().map(Vec::len), Some(0), "{what}: check found damage: {report}");
    for notice in report["notices"].as_array().expect("notices") {
        let code = notice["code"].as_str().expect("code");
        assert!(HARMLESS_NOTICES.contains(&code), "{what}: check notice {code}: {notice}");
    }
    assert!(check.status.success(), "{what}: check exit {:?}", check.status);
}

fn assert_restores(work: &Work, src: &Path, id: &str, content: &Content, what: &str) {
    match content {
        Content::Tree(expected) => {
            let target = work.repo.dir.path().join(format!("restore-{id}"));
            let out = work.repo.cairn_std().args(["restore", id, "--quiet", "--target"]).arg(&target).output();
            let out = out.expect("runs");
            assert!(out.status.success(), "{what}: restoring {id}: {}", String::from_utf8_lossy(&out.stderr));
            assert_same_tree(expected, &restored_path(&target, src));
        }
        Content::Stream(bytes) => {
            let out = work.repo.cairn_std().args(["dump", id, &format!("/{STREAM_NAME}")]).output().expect("runs");
            assert!(out.status.success(), "{what}: dumping {id}: {}", String::from_utf8_lossy(&out.stderr));
            assert!(out.stdout == *bytes, "{what}: snapshot {id} dumps {} bytes that differ", out.stdout.len());
        }
    }
}

/// Tries every crash point and every failure point of a scenario. All points are tried even when
/// one fails, so that a failure names every point that shows the defect.
fn every_point(scenario: &Scenario) {
    let (all, mutating) = count_operations(scenario);
    assert!(mutating > 0, "{}: the command changes nothing, so it tests nothing", scenario.name);
    let mut points: Vec<(String, bool)> = (1..=mutating).map(|n| (format!("crash-at={n}"), true)).collect();
    points.push((format!("crash-after={mutating}"), true));
    points.extend((1..=all).map(|n| (format!("fail-at-op={n}"), false)));
    let failed: Vec<String> = points
        .iter()
        .filter(|(fault, crash)| std::panic::catch_unwind(|| try_point(scenario, fault, *crash)).is_err())
        .map(|(fault, _)| fault.clone())
        .collect();
    eprintln!(
        "{}: {} crash points ({mutating} mutating operations and after the last), {all} failure points",
        scenario.name,
        mutating + 1
    );
    assert!(
        failed.is_empty(),
        "{}: {} of {} points failed (messages above): {failed:?}",
        scenario.name,
        failed.len(),
        points.len()
    );
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn backup_of_a_folder_survives_a_crash_at_every_storage_operation() {
    let t = Template::new();
    let mut a = args(&["backup", "--quiet"]);
    a.push(t.src.to_string_lossy().into_owned());
    let scenario = Scenario {
        name: "backup (folder)",
        template: &t,
        args: a,
        stdin: None,
        keep: t.snapshots.clone(),
        gone: Vec::new(),
        created: Some(Content::Tree(t.src.clone())),
        starts_whole: true,
    };
    every_point(&scenario);
}

#[test]
fn backup_of_a_stream_survives_a_crash_at_every_storage_operation() {
    let t = Template::new();
    let scenario = Scenario {
        name: "backup (stdin)",
        template: &t,
        args: args(&["backup", "--quiet", "--stdin", "--stdin-filename", STREAM_NAME]),
        stdin: Some(stream(2)),
        keep: t.snapshots.clone(),
        gone: Vec::new(),
        created: Some(Content::Stream(stream(2))),
        starts_whole: true,
    };
    every_point(&scenario);
}

/// The snapshots tagged `keep` and the ids of the others.
fn kept_and_dropped(t: &Template) -> (BTreeMap<String, Content>, Vec<String>) {
    let keep: BTreeMap<String, Content> =
        ["v2", "stream"].iter().map(|r| (t.id(r), t.snapshots[&t.id(r)].clone())).collect();
    (keep, vec![t.id("v1"), t.id("v3")])
}

#[test]
fn forget_with_prune_survives_a_crash_at_every_storage_operation() {
    let t = Template::new();
    let (keep, gone) = kept_and_dropped(&t);
    let scenario = Scenario {
        name: "forget --prune",
        template: &t,
        args: args(&["forget", "--quiet", "--keep-tag", "keep", "--prune", "--max-unused", "0%"]),
        stdin: None,
        keep,
        gone,
        created: None,
        starts_whole: true,
    };
    every_point(&scenario);
}

#[test]
fn prune_survives_a_crash_at_every_storage_operation() {
    let t = Template::new();
    run_ok(t.repo.cairn_std().args(["forget", "--quiet", "--keep-tag", "keep"]));
    let (keep, gone) = kept_and_dropped(&t);
    let scenario = Scenario {
        name: "prune",
        template: &t,
        args: args(&["prune", "--quiet", "--max-unused", "0%"]),
        stdin: None,
        keep,
        gone,
        created: None,
        starts_whole: true,
    };
    let plan = t.repo.json(&["prune", "--dry-run", "--max-unused", "0%"]);
    assert!(plan["plan"]["packs_delete"].as_u64() > Some(0), "nothing to delete: {plan}");
    assert!(plan["plan"]["packs_repack"].as_u64() > Some(0), "nothing to repack: {plan}");
    assert!(plan["plan"]["packs_keep"].as_u64() > Some(0), "nothing kept as it is: {plan}");
    every_point(&scenario);
}

#[test]
fn repair_index_survives_a_crash_at_every_storage_operation() {
    let t = Template::new();
    for e in std::fs::read_dir(t.repo.repo_path().join("index")).expect("index folder") {
        std::fs::remove_file(e.expect("entry").path()).expect("remove index file");
    }
    let scenario = Scenario {
        name: "repair index",
        template: &t,
        args: args(&["repair", "index", "--quiet"]),
        stdin: None,
        keep: t.snapshots.clone(),
        gone: Vec::new(),
        created: None,
        starts_whole: false,
    };
    every_point(&scenario);
}

fn index_files(repo: &TestRepo) -> Vec<String> {
    std::fs::read_dir(repo.repo_path().join("index"))
        .expect("index folder")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

/// The data packs named by index files that are not in `before`.
fn data_packs_named_by_new_index_files(repo: &TestRepo, before: &[String]) -> Vec<String> {
    let mut packs = Vec::new();
    for name in index_files(repo).into_iter().filter(|n| !before.contains(n)) {
        let index = repo.json(&["cat", "index", &name]);
        for pack in index["index"]["packs"].as_array().expect("packs") {
            if pack["blobs"].as_array().expect("blobs").iter().all(|b| b["kind"] == "data") {
                packs.push(pack["id"].as_str().expect("id").to_owned());
            }
        }
    }
    packs
}

#[test]
fn repair_snapshots_survives_a_crash_at_every_storage_operation() {
    let t = Template::new();
    // Lose the pack holding the file only v3 has (e.bin), and let the index forget it.
    for lost in &t.v3_data_packs {
        std::fs::remove_file(t.repo.repo_path().join("data").join(&lost[..2]).join(lost)).expect("remove pack");
    }
    run_ok(t.repo.cairn_std().args(["repair", "index", "--quiet"]));

    // The repaired v3: v3 without e.bin, the folder's own metadata unchanged.
    let Content::Tree(v3) = &t.snapshots[&t.id("v3")] else { unreachable!("v3 is a folder snapshot") };
    let repaired = t.repo.dir.path().join("versions/v3-repaired");
    run_ok(std::process::Command::new("cp").arg("-a").arg(v3).arg(&repaired));
    std::fs::remove_file(repaired.join("e.bin")).expect("rm");
    let mtime = std::fs::symlink_metadata(v3).expect("stat");
    set_mtime(
        &repaired,
        std::os::unix::fs::MetadataExt::mtime(&mtime),
        std::os::unix::fs::MetadataExt::mtime_nsec(&mtime),
    );

    let mut keep = t.snapshots.clone();
    keep.remove(&t.id("v3"));
    let scenario = Scenario {
        name: "repair snapshots --forget",
        template: &t,
        args: args(&["repair", "snapshots", "--forget", "--quiet"]),
        stdin: None,
        keep,
        gone: vec![t.id("v3")],
        created: Some(Content::Tree(repaired)),
        starts_whole: false,
    };
    every_point(&scenario);
}
