//! Retention and garbage collection end to end: forget policies on real snapshots, prune, prune
//! running beside backups, and prune or forget killed at random moments.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::support::TestRepo;

/// Small deterministic generator (xorshift64*), so every run sees the same data and timings.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n.div_ceil(8)).flat_map(|_| self.next().to_le_bytes()).take(n).collect()
    }
}

/// The content of the "database dump" at step `step`: rows change a few at a time.
fn dump_at(step: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(3 << 20);
    for row in 0..40_000u64 {
        let version = if row % 97 == step % 97 { step } else { 0 };
        out.extend_from_slice(
            format!(
                "INSERT INTO accounts VALUES ({row}, 'user_{row}', {}, 'v{version}-{:016x}');\n",
                row * 7 % 1000,
                row.wrapping_mul(0x9e37_79b9_7f4a_7c15)
            )
            .as_bytes(),
        );
    }
    out
}

/// Writes the source folder as it is at `step`: the dump plus one random file unique to the step.
fn write_source(src: &Path, step: u64) {
    std::fs::write(src.join("db.sql"), dump_at(step)).expect("write dump");
    for e in std::fs::read_dir(src).expect("list source").flatten() {
        if e.file_name().to_string_lossy().starts_with("unique-") {
            std::fs::remove_file(e.path()).expect("remove old unique file");
        }
    }
    std::fs::write(src.join(format!("unique-{step}.bin")), Rng(step + 1).bytes(300_000)).expect("write unique");
}

/// Restores `snapshot` and checks it is exactly the source at `step`.
fn assert_restores_as_step(repo: &TestRepo, snapshot: &str, src: &Path, step: u64) {
    let target = tempfile::tempdir().expect("temporary folder");
    repo.cairn().args(["restore", snapshot, "--verify", "--target"]).arg(target.path()).assert().success();
    let restored = target.path().join(src.strip_prefix("/").expect("absolute source"));
    assert_eq!(std::fs::read(restored.join("db.sql")).expect("restored dump"), dump_at(step), "dump of step {step}");
    assert_eq!(
        std::fs::read(restored.join(format!("unique-{step}.bin"))).expect("restored unique file"),
        Rng(step + 1).bytes(300_000),
        "unique file of step {step}"
    );
    let names: Vec<String> = std::fs::read_dir(&restored)
        .expect("list")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "snapshot of step {step} holds exactly two files: {names:?}");
}

/// Snapshot id → step, read from the `step-N` tag.
fn snapshot_steps(repo: &TestRepo) -> BTreeMap<String, u64> {
    let list = repo.json(&["snapshots"]);
    list.as_array()
        .expect("array")
        .iter()
        .map(|s| {
            let id = s["id"].as_str().expect("id").to_owned();
            let tag = s["tags"]
                .as_array()
                .expect("tags")
                .iter()
                .filter_map(|t| t.as_str())
                .find(|t| t.starts_with("step-"))
                .expect("step tag");
            (id, tag["step-".len()..].parse().expect("step number"))
        })
        .collect()
}

fn backup_step(repo: &TestRepo, src: &Path, step: u64, time: &str) {
    write_source(src, step);
    repo.cairn()
        .env("TZ", "UTC")
        .args(["backup", "--quiet", "--tag", &format!("step-{step}"), "--time", time])
        .arg(src)
        .assert()
        .success();
}

#[test]
fn gfs_policy_keeps_the_expected_snapshots_and_prune_reclaims_the_rest() {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    // Every 6 hours for 20 days, starting on Monday 2026-11-02 00:00 UTC: 80 snapshots.
    let start = chrono::NaiveDate::from_ymd_opt(2026, 11, 2).expect("date").and_hms_opt(0, 0, 0).expect("time");
    let mut times = Vec::new();
    for step in 0..80u64 {
        let t = start + chrono::TimeDelta::hours(6 * step as i64);
        times.push(t);
        backup_step(&repo, &src, step, &t.format("%Y-%m-%d %H:%M:%S").to_string());
    }
    let size_before = crate::support::dir_size(&repo.repo_path().join("data"));
    let out = repo
        .cairn()
        .env("TZ", "UTC")
        .args([
            "forget",
            "--keep-last",
            "2",
            "--keep-daily",
            "3",
            "--keep-weekly",
            "2",
            "--keep-monthly",
            "1",
            "--prune",
            "--json",
        ])
        .output()
        .expect("runs");
    assert!(out.status.success(), "forget failed: {}", String::from_utf8_lossy(&out.stderr));
    // The groups as restic prints them, then the prune report.
    let stdout = String::from_utf8(out.stdout).expect("UTF-8");
    let report: serde_json::Value = serde_json::from_str(stdout.lines().next().expect("a line")).expect("JSON");

    // Worked out by hand from restic's documented rules, newest first:
    // last 2 -> steps 79, 78; daily 3 -> newest of Nov 21 (79), Nov 20 (75), Nov 19 (71);
    // weekly 2 -> newest of ISO week 47 (79) and week 46 (Sun Nov 15 18:00 = 55);
    // monthly 1 -> newest of November (79).
    let kept: Vec<u64> =
        snapshot_steps(&repo).values().copied().collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    assert_eq!(kept, vec![55, 71, 75, 78, 79]);
    let reasons: Vec<String> = report[0]["keep"]
        .as_array()
        .expect("kept list")
        .iter()
        .map(|k| {
            k["reasons"]
                .as_array()
                .expect("reasons")
                .iter()
                .map(|r| r.as_str().expect("text"))
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    assert_eq!(
        reasons,
        vec![
            "last snapshot+daily snapshot+weekly snapshot+monthly snapshot",
            "last snapshot",
            "daily snapshot",
            "daily snapshot",
            "weekly snapshot"
        ]
    );
    assert_eq!(report[0]["remove"].as_array().map(Vec::len), Some(75));

    // Prune reclaimed the unique files of the 75 removed snapshots.
    let size_after = crate::support::dir_size(&repo.repo_path().join("data"));
    assert!(size_after < size_before / 3, "data folder {size_before} -> {size_after} bytes");
    for (id, step) in snapshot_steps(&repo) {
        assert_restores_as_step(&repo, &id, &src, step);
    }
    // A second prune finds nothing more to do.
    let again = repo.json(&["prune"]);
    assert_eq!(again["packs_deleted"], 0);
    assert_eq!(again["plan"]["packs_repack"], 0);
}

#[test]
fn empty_policy_removes_nothing_and_says_so() {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    backup_step(&repo, &src, 1, "2026-11-01 00:00:00");
    let out = repo.cairn().args(["forget"]).output().expect("runs");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing is removed"));
    assert_eq!(snapshot_steps(&repo).len(), 1);

    // With nothing to repack or delete, prune leaves the index as it is (it writes no new file).
    let index_files = || {
        let mut names: Vec<_> = std::fs::read_dir(repo.repo_path().join("index"))
            .expect("index folder")
            .map(|e| e.expect("entry").file_name())
            .collect();
        names.sort();
        names
    };
    let before = index_files();
    assert!(!before.is_empty());
    let report = repo.json(&["prune"]);
    assert_eq!(report["index_files_written"], 0, "{report}");
    assert_eq!(index_files(), before);
    repo.cairn().args(["check", "--read-data"]).assert().success();
}

#[test]
fn forget_by_id_and_dry_run() {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    for step in 0..3 {
        backup_step(&repo, &src, step, &format!("2026-11-01 0{step}:00:00"));
    }
    let ids: Vec<String> = snapshot_steps(&repo).keys().cloned().collect();
    repo.cairn().args(["forget", "--dry-run", &ids[0]]).assert().success();
    assert_eq!(snapshot_steps(&repo).len(), 3, "dry run removes nothing");
    repo.cairn().args(["forget", &ids[0][..10]]).assert().success();
    let left = snapshot_steps(&repo);
    assert_eq!(left.len(), 2);
    assert!(!left.contains_key(&ids[0]));
}

#[test]
fn prune_beside_running_backups_never_breaks_a_snapshot() {
    let repo = TestRepo::new();
    let mut rng = Rng(0x5eed);
    let srcs: Vec<_> = (0..2).map(|i| repo.scratch(&format!("src{i}"))).collect();
    let delays: Vec<u64> = (0..12).map(|_| rng.below(300)).collect();
    std::thread::scope(|scope| {
        for (i, src) in srcs.iter().enumerate() {
            let repo = &repo;
            scope.spawn(move || {
                for round in 0..6u64 {
                    let step = 100 * (i as u64 + 1) + round;
                    write_source(src, step);
                    repo.cairn()
                        .args(["backup", "--quiet", "--tag", &format!("step-{step}")])
                        .arg(src)
                        .assert()
                        .success();
                }
            });
        }
        let repo = &repo;
        scope.spawn(move || {
            for d in delays {
                std::thread::sleep(Duration::from_millis(d));
                let out =
                    repo.cairn().args(["forget", "--keep-last", "2", "--prune", "--quiet"]).output().expect("runs");
                // Two prunes never overlap here, so the exclusive lock is always free.
                assert!(out.status.success(), "prune failed: {}", String::from_utf8_lossy(&out.stderr));
            }
        });
    });
    // Every snapshot still there restores exactly; then a final prune with nothing running.
    let check = |repo: &TestRepo| {
        for (id, step) in snapshot_steps(repo) {
            let src = &srcs[(step / 100 - 1) as usize];
            assert_restores_as_step(repo, &id, src, step);
        }
    };
    check(&repo);
    repo.cairn().args(["forget", "--keep-last", "2", "--prune", "--quiet"]).assert().success();
    check(&repo);
}

#[test]
fn killed_prune_or_forget_never_blocks_the_next_run_or_loses_kept_data() {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    let mut rng = Rng(0xdead_beef);
    for round in 0..6u64 {
        for step in (round * 4)..(round * 4 + 4) {
            backup_step(&repo, &src, step, &format!("2026-11-{:02} {:02}:00:00", 1 + step / 24, step % 24));
        }
        let verb: &[&str] = if round % 2 == 0 { &["prune"] } else { &["forget", "--keep-last", "3", "--prune"] };
        let mut child = repo.cairn_std().args(verb).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn");
        std::thread::sleep(Duration::from_millis(rng.below(250)));
        let _ = child.kill();
        let _ = child.wait();
        // The repository opens and lists at once: no lock left behind blocks anything.
        repo.cairn().args(["snapshots", "--quiet"]).assert().success();
    }
    // The next prune runs without any manual step, and every remaining snapshot restores.
    repo.cairn().args(["forget", "--keep-last", "3", "--prune", "--quiet"]).assert().success();
    let steps = snapshot_steps(&repo);
    assert_eq!(steps.len(), 3);
    for (id, step) in steps {
        assert_restores_as_step(&repo, &id, &src, step);
    }
}

fn count_files(dir: &Path) -> usize {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                n += count_files(&e.path());
            } else {
                n += 1;
            }
        }
    }
    n
}

/// Waits until `cond` holds, polling; fails the test after a minute.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "gave up waiting until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The case prune's two-phase delete exists for: a backup loaded the index, then a prune found a
/// blob unused that the backup is about to deduplicate against.
#[test]
fn prune_defers_deleting_what_a_running_backup_may_use() {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    let mut rng = Rng(77);
    let old = rng.bytes(20 << 20);
    std::fs::write(src.join("x_old.bin"), &old).expect("write");
    repo.cairn().args(["backup", "--quiet", "--tag", "a"]).arg(&src).assert().success();
    std::fs::remove_file(src.join("x_old.bin")).expect("remove");
    std::fs::write(src.join("other.txt"), b"b").expect("write");
    repo.cairn().args(["backup", "--quiet", "--tag", "b"]).arg(&src).assert().success();
    // Snapshot a goes; x_old.bin is now unused.
    let ids: Vec<String> = repo
        .json(&["snapshots", "--tag", "a"])
        .as_array()
        .expect("array")
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_owned())
        .collect();
    repo.cairn().arg("forget").args(&ids).assert().success();

    // Backup c: a large new file first (sorted first), then the old file again.
    std::fs::write(src.join("a_new.bin"), rng.bytes(120 << 20)).expect("write");
    std::fs::write(src.join("x_old.bin"), &old).expect("write");
    let packs_before = count_files(&repo.repo_path().join("data"));
    // Its own cache, as on another host: what it loaded is not updated by the prune's process.
    let other_cache = repo.scratch("other-cache");
    let mut backup = repo
        .cairn_std()
        .env("CAIRN_CACHE_DIR", &other_cache)
        .args(["backup", "--quiet", "--tag", "c"])
        .arg(&src)
        .spawn()
        .expect("spawn backup");
    let pid = nix::unistd::Pid::from_raw(backup.id() as i32);
    // Once it has stored a pack it has loaded the index (with x_old.bin's blobs in it). Pause it.
    wait_until("the backup stores its first pack", || count_files(&repo.repo_path().join("data")) > packs_before);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).expect("pause backup");

    let report = repo.json(&["prune"]);
    assert!(report["plan"]["packs_delete"].as_u64().expect("count") >= 1, "x_old.bin's pack is unused: {report}");
    assert!(
        report["packs_deferred"].as_u64().expect("count") >= 1,
        "deletion must wait for the running backup: {report}"
    );
    assert_eq!(report["packs_deleted"], 0);

    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).expect("resume backup");
    assert!(backup.wait().expect("backup ends").success(), "backup c failed");
    let c = repo.json(&["snapshots", "--tag", "c"]);
    let c_id = c[0]["id"].as_str().expect("id").to_owned();

    // Now nothing runs: the second prune brings back what c uses and deletes the rest.
    let second = repo.json(&["prune"]);
    assert_eq!(second["packs_deferred"], 0, "{second}");
    assert!(
        second["plan"]["packs_resurrected"].as_u64().expect("count") >= 1,
        "c deduplicated against x_old.bin's condemned packs, which must come back: {second}"
    );
    let target = tempfile::tempdir().expect("temporary folder");
    repo.cairn().args(["restore", &c_id, "--verify", "--target"]).arg(target.path()).assert().success();
    let restored = target.path().join(src.strip_prefix("/").expect("absolute"));
    assert_eq!(std::fs::read(restored.join("x_old.bin")).expect("restored"), old);
    // And a third prune finds nothing waiting from earlier runs.
    let third = repo.json(&["prune"]);
    assert_eq!(third["packs_deferred"], 0, "{third}");
    assert_eq!(third["plan"]["packs_condemned_earlier"], 0, "{third}");
}

/// Names of the index files in the repository.
fn index_files(repo: &TestRepo) -> BTreeSet<String> {
    std::fs::read_dir(repo.repo_path().join("index"))
        .expect("list index/")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn prune_rewrites_only_the_index_files_that_list_what_it_changes() {
    let repo = TestRepo::new();
    let backup = |name: &str, seed: u64| {
        let src = repo.scratch(name);
        std::fs::create_dir_all(&src).expect("source folder");
        // Incompressible and above a quarter of the 16 MiB pack target: a pack prune never
        // combines as "small".
        std::fs::write(src.join("data.bin"), Rng(seed).bytes(6 << 20)).expect("write source");
        repo.cairn().args(["backup", "--quiet"]).arg(&src).assert().success();
        src
    };
    let a = backup("a", 11);
    let b = backup("b", 12);
    // The first prune combines the two backups' small tree packs into one, listed by an index
    // file of its own; the packs it replaced stay listed as condemned (deleted by a later prune
    // once no backup can still be using them), so the file that lists them is rewritten by
    // every prune until then.
    repo.cairn().args(["prune", "--quiet"]).assert().success();
    let untouched: BTreeSet<String> = index_files(&repo)
        .into_iter()
        .filter(|id| {
            let file = repo.json(&["cat", "index", id]);
            file["index"]["condemned"].as_array().is_none_or(|c| c.is_empty())
        })
        .collect();
    assert!(!untouched.is_empty(), "an index file without condemned packs after the first prune");
    let before = index_files(&repo);
    backup("c", 13);
    let added: Vec<String> = index_files(&repo).difference(&before).cloned().collect();
    assert_eq!(added.len(), 1, "the backup of c adds one index file: {added:?}");
    let c_id = repo.json(&["snapshots"]).as_array().expect("array").last().expect("three snapshots")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    repo.cairn().args(["forget", "--quiet", &c_id]).assert().success();
    repo.cairn().args(["prune", "--quiet"]).assert().success();
    let after = index_files(&repo);
    assert!(
        untouched.is_subset(&after),
        "prune replaced index files that list only packs it kept: kept {untouched:?}, after {after:?}"
    );
    assert!(!after.contains(&added[0]), "the index file of the forgotten backup is replaced: {after:?}");
    repo.cairn().args(["check", "--read-data"]).assert().success();
    for (src, seed) in [(a, 11), (b, 12)] {
        let target = tempfile::tempdir().expect("temporary folder");
        repo.cairn()
            .args(["restore", "latest", "--path"])
            .arg(&src)
            .arg("--target")
            .arg(target.path())
            .assert()
            .success();
        let restored = target.path().join(src.strip_prefix("/").expect("absolute")).join("data.bin");
        assert_eq!(std::fs::read(restored).expect("restored"), Rng(seed).bytes(6 << 20));
    }
}
