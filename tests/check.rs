//! `check` on healthy repositories (quiet, JSON, every level), partial reads and how successive
//! partial runs cover everything, the check without the key, condemned packs, key management, and
//! the exclusive lock of `repair`.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::damage::{Fixture, Rng, assert_line, check, flip_bit, names, run, stderr, stdout};
use crate::support::TestRepo;

fn packs_read(report: &serde_json::Value) -> u64 {
    report["stats"]["packs_read"].as_u64().expect("packs_read")
}

#[test]
fn healthy_repository_is_clean_at_every_level() {
    let f = Fixture::new();
    for args in [&[][..], &["--read-hashes"], &["--read-data"]] {
        let out = check(&f.repo, args, 0);
        assert!(!out.contains("damage:") && !out.contains("notice:"), "{out}");
        assert_line(&out, &["checked 2 snapshots", "no damage found"], &[]);
    }
    // Quiet prints nothing at all when all is well (cron mails stay empty).
    let quiet = run(&f.repo, &["check", "--read-data", "--quiet"]);
    assert_eq!(quiet.status.code(), Some(0));
    assert!(quiet.stdout.is_empty() && quiet.stderr.is_empty(), "{}{}", stdout(&quiet), stderr(&quiet));

    let report = f.repo.json(&["check", "--read-data"]);
    assert_eq!(report["level"], "data");
    assert_eq!(report["damage"].as_array().expect("list").len(), 0);
    assert_eq!(report["notices"].as_array().expect("list").len(), 0);
    let stats = &report["stats"];
    assert_eq!(stats["snapshots"], 2);
    assert_eq!(stats["packs_read"], stats["packs_stored"]);
    assert_eq!(stats["packs"], stats["packs_stored"]);
    assert_eq!(stats["bytes_read"], stats["bytes_stored"]);
    assert!(stats["blobs_read"].as_u64().expect("count") >= stats["blobs"].as_u64().expect("count"));
}

#[test]
fn groups_partition_the_packs() {
    let f = Fixture::new();
    let total = f.repo.json(&["check", "--read-hashes"])["stats"]["packs_stored"].as_u64().expect("count");
    let mut sum = 0;
    for n in 1..=3 {
        let report = f.repo.json(&["check", "--read-data-subset", &format!("{n}/3")]);
        assert_eq!(report["level"], "data", "a subset implies --read-data");
        assert_eq!(report["subset"], format!("{n}/3"));
        sum += packs_read(&report);
    }
    assert_eq!(sum, total, "groups 1/3..3/3 read every pack exactly once");
}

#[test]
fn successive_partial_runs_continue_where_the_last_stopped() {
    let f = Fixture::new();
    let total = f.repo.json(&["check", "--read-hashes", "--no-cache"])["stats"]["packs_stored"].as_u64().expect("n");
    assert_eq!(total, 4, "the fixture has one data and one tree pack per backup");
    // Each 50% run reads the packs verified least recently, so two runs read every pack.
    let first = f.repo.json(&["check", "--read-data-subset", "50%"]);
    let second = f.repo.json(&["check", "--read-data-subset", "50%"]);
    assert_eq!(packs_read(&first) + packs_read(&second), total);
    // A size smaller than any pack still reads one pack.
    assert_eq!(packs_read(&f.repo.json(&["check", "--read-data-subset", "1K"])), 1);
    assert_eq!(packs_read(&f.repo.json(&["check", "--read-data-subset", "1G"])), total);

    // Damage in a pack that a partial run reads is found by it.
    let pack = &f.a.data_packs[0];
    flip_bit(&f.pack_path(pack), 100);
    let mut found = false;
    for _ in 0..2 {
        let o = run(&f.repo, &["check", "--read-hashes", "--read-data-subset", "50%"]);
        found |= stdout(&o).contains(&pack[..8]);
    }
    assert!(found, "two half runs cover the damaged pack");

    for bad in ["0/3", "4/3", "150%", "lots"] {
        let o = run(&f.repo, &["check", "--read-data-subset", bad]);
        assert_eq!(o.status.code(), Some(1), "{bad}");
        assert!(stderr(&o).contains("--read-data-subset"), "{}", stderr(&o));
    }
}

#[test]
fn check_without_the_key_verifies_every_file() {
    let f = Fixture::new();
    let nokey = |args: &[&str]| f.repo.cairn().env_remove("CAIRN_PASSWORD").args(args).output().expect("runs");
    let o = nokey(&["check", "--no-key"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_line(&stdout(&o), &["checked without the key", "no damage found"], &[]);
    let report: serde_json::Value =
        serde_json::from_slice(&nokey(&["check", "--no-key", "--json"]).stdout).expect("JSON");
    assert_eq!(report["keyless"], true);
    assert_eq!(report["stats"]["packs_read"], report["stats"]["packs_stored"]);

    flip_bit(&f.repo.repo_path().join("snapshots").join(&f.b.snapshot_file), 20);
    let pack = &f.a.tree_packs[0];
    flip_bit(&f.pack_path(pack), 9);
    let o = nokey(&["check", "--no-key"]);
    assert_eq!(o.status.code(), Some(4));
    assert_line(&stdout(&o), &["damage: pack", &pack[..8], "does not match its name"], &[]);
    assert_line(&stdout(&o), &["damage: snapshot", f.b.short()], &[]);
}

#[test]
fn blobs_only_in_condemned_packs_are_reported() {
    let f = Fixture::new();
    // Keep a copy of a's snapshot file, forget a, and prune: a's packs are condemned, not deleted.
    let file = f.repo.repo_path().join("snapshots").join(&f.a.snapshot_file);
    let saved = std::fs::read(&file).expect("read snapshot");
    f.repo.cairn().args(["forget", &f.a.id]).assert().success();
    f.repo.cairn().args(["prune"]).assert().success();
    check(&f.repo, &["--read-data"], 0);
    // A snapshot that still references them (as one from a backup that started before the prune).
    std::fs::write(&file, saved).expect("restore snapshot file");
    let out = check(&f.repo, &[], 4);
    assert_line(&out, &["damage: tree", "condemned", f.a.short()], &[f.b.short()]);
}

#[test]
fn keys_are_added_listed_removed_and_passwords_changed() {
    let repo = TestRepo::new();
    let with =
        |password: &str, args: &[&str]| repo.cairn().env("CAIRN_PASSWORD", password).args(args).output().expect("runs");
    let add = repo
        .cairn()
        .env("CAIRN_NEW_PASSWORD", "two")
        .args(["key", "add", "--kdf-memory-kib", "64", "--kdf-time", "1", "--json"])
        .output()
        .expect("runs");
    assert!(add.status.success(), "{}", stderr(&add));
    assert!(!stdout(&add).contains("two") && !stderr(&add).contains("two"), "the password is never printed");
    let added: serde_json::Value = serde_json::from_slice(&add.stdout).expect("JSON");
    let added = added["added"].as_str().expect("id").to_owned();
    let keys = repo.json(&["key", "list"]);
    assert_eq!(keys.as_array().expect("list").len(), 2);
    assert_eq!(keys[0]["current"], true);

    // Both passwords open the repository; the key in use cannot be removed.
    assert!(with("two", &["snapshots"]).status.success());
    let o = with("two", &["key", "remove", &added[..10]]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("in use"), "{}", stderr(&o));
    let o = with("two", &["key", "remove", keys[0]["id"].as_str().expect("id")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(with(crate::support::PASSWORD, &["snapshots"]).status.code(), Some(12));

    // passwd: a new key for the new password, then the old key goes.
    let o = repo
        .cairn()
        .env("CAIRN_PASSWORD", "two")
        .env("CAIRN_NEW_PASSWORD", "three")
        .args(["key", "passwd", "--kdf-memory-kib", "64", "--kdf-time", "1"])
        .output()
        .expect("runs");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(with("two", &["snapshots"]).status.code(), Some(12));
    assert!(with("three", &["snapshots"]).status.success());
    let left: BTreeSet<String> = names(&repo.repo_path().join("keys"));
    assert_eq!(left.len(), 1);
    assert!(!left.contains(&added));
    // Without a new password and no terminal, the command explains what to set.
    let o = with("three", &["key", "add"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("CAIRN_NEW_PASSWORD"), "{}", stderr(&o));
}

#[test]
fn repair_waits_for_no_one_and_fails_while_another_repair_runs() {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    std::fs::write(src.join("big.bin"), Rng(5).bytes(96 << 20)).expect("write");
    repo.cairn().args(["backup", "--quiet"]).arg(&src).assert().success();
    // A repair that reads every data blob holds the exclusive lock for a while; pause it there.
    let mut slow = repo.cairn_std().args(["repair", "snapshots", "--read-data", "--quiet"]).spawn().expect("spawn");
    let locks = repo.repo_path().join("locks");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while names(&locks).is_empty() {
        assert!(std::time::Instant::now() < deadline, "the repair never took its lock");
        std::thread::sleep(Duration::from_millis(2));
    }
    let pid = nix::unistd::Pid::from_raw(slow.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).expect("pause");
    let o = run(&repo, &["repair", "index"]);
    // check takes no lock and runs meanwhile; it says that a repair is running.
    let c = run(&repo, &["check"]);
    // Resumed before anything is asserted, so a failure never leaves a stopped process behind.
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).expect("resume");
    assert_eq!(o.status.code(), Some(11), "{}", stderr(&o));
    assert!(stderr(&o).contains("locked"), "{}", stderr(&o));
    assert_eq!(c.status.code(), Some(0), "{}", stderr(&c));
    assert_line(&stdout(&c), &["notice:", "exclusive lock"], &[]);
    assert!(slow.wait().expect("ends").success());
    assert!(run(&repo, &["repair", "index"]).status.success());
    check(&repo, &["--read-data"], 0);
}
