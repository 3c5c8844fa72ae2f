//! No command may destroy a repository: every command that deletes first builds its complete plan
//! (every snapshot's trees loaded, every referenced blob located) and deletes nothing when that
//! fails (`spec/ordering.md`, "Removing data"). Each test is named after what broke.

use crate::damage::{Fixture, assert_restores, flip_bit, names, run, stderr, stdout};
use crate::support::TestRepo;

fn remove_index_files(repo: &TestRepo) {
    for e in std::fs::read_dir(repo.repo_path().join("index")).expect("index folder").flatten() {
        std::fs::remove_file(e.path()).expect("remove index file");
    }
}

fn packs(repo: &TestRepo) -> std::collections::BTreeSet<String> {
    names(&repo.repo_path().join("data"))
}

/// A prune (or a command that prunes) refused: non-zero exit, one line that says what to do, and
/// not one pack deleted.
fn assert_refused_for_lost_index(repo: &TestRepo, args: &[&str], before: &std::collections::BTreeSet<String>) {
    let o = run(repo, args);
    assert_eq!(o.status.code(), Some(1), "{args:?} must refuse:\n{}{}", stdout(&o), stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("cairn repair index"), "{args:?}: the refusal must say what to do:\n{err}");
    assert_eq!(&packs(repo), before, "{args:?} deleted packs although its plan was incomplete");
}

#[test]
fn prune_without_index_deleted_every_pack() {
    let f = Fixture::new();
    let before = packs(&f.repo);
    remove_index_files(&f.repo);
    assert_refused_for_lost_index(&f.repo, &["prune"], &before);
    // A fresh cache knows nothing of the old index either.
    std::fs::remove_dir_all(f.repo.cache_path()).expect("remove cache");
    assert_refused_for_lost_index(&f.repo, &["prune"], &before);
    // What the refusal asks for makes the repository whole again, and prune then works.
    let o = run(&f.repo, &["repair", "index"]);
    assert!(o.status.success(), "repair index: {}", stderr(&o));
    let o = run(&f.repo, &["prune"]);
    assert!(o.status.success(), "prune after repair index: {}", stderr(&o));
    assert_restores(&f.repo, &f.a.id, &f.a.src);
    assert_restores(&f.repo, &f.b.id, &f.b.src);
}

#[test]
fn prune_dry_run_without_index_reported_no_refusal() {
    let f = Fixture::new();
    let before = packs(&f.repo);
    remove_index_files(&f.repo);
    let dry = run(&f.repo, &["prune", "--dry-run"]);
    let real = run(&f.repo, &["prune"]);
    assert_eq!(dry.status.code(), Some(1), "dry run must refuse:\n{}", stdout(&dry));
    assert_eq!(stderr(&dry), stderr(&real), "a dry run must report the same refusal as the prune");
    assert_eq!(packs(&f.repo), before);
}

#[test]
fn forget_prune_without_index_deleted_every_pack() {
    let f = Fixture::new();
    let before = packs(&f.repo);
    remove_index_files(&f.repo);
    assert_refused_for_lost_index(&f.repo, &["forget", "--keep-last", "1", "--prune"], &before);
}

#[test]
fn check_suggested_prune_for_unindexed_packs_that_snapshots_need() {
    let f = Fixture::new();
    remove_index_files(&f.repo);
    let o = run(&f.repo, &["check"]);
    let out = stdout(&o);
    assert!(out.contains("repair index"), "check must point to 'cairn repair index':\n{out}");
    assert!(!out.contains("prune removes"), "check must not suggest prune for packs snapshots need:\n{out}");
}

#[test]
fn repair_snapshots_without_index_emptied_every_snapshot() {
    let f = Fixture::new();
    let before = packs(&f.repo);
    let snapshots_before = names(&f.repo.repo_path().join("snapshots"));
    remove_index_files(&f.repo);
    let o = run(&f.repo, &["repair", "snapshots", "--forget"]);
    assert_eq!(o.status.code(), Some(1), "repair snapshots must refuse:\n{}{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains("cairn repair index"), "{}", stderr(&o));
    assert_eq!(names(&f.repo.repo_path().join("snapshots")), snapshots_before, "no snapshot may change");
    assert_eq!(packs(&f.repo), before);
}

fn snapshot_path(f: &Fixture, id: &str) -> std::path::PathBuf {
    f.repo.repo_path().join("snapshots").join(id)
}

#[test]
fn snapshots_hid_a_damaged_snapshot_file_behind_the_cache() {
    let f = Fixture::new();
    // `snapshots` has cached both snapshots; now the repository's copy of `a` is damaged.
    assert!(run(&f.repo, &["snapshots"]).status.success());
    flip_bit(&snapshot_path(&f, &f.a.id), 40);
    let o = run(&f.repo, &["snapshots"]);
    let err = stderr(&o);
    assert!(err.contains(f.a.short()) && err.contains("damaged"), "the listing must warn:\n{err}");
    assert!(err.contains("cairn repair snapshots"), "the warning must say what to do:\n{err}");
}

#[test]
fn restore_used_a_damaged_snapshot_file_through_the_cache_without_a_word() {
    let f = Fixture::new();
    assert!(run(&f.repo, &["snapshots"]).status.success());
    flip_bit(&snapshot_path(&f, &f.a.id), 40);
    let target = f.repo.scratch("restored-from-cached-copy");
    let o = run(&f.repo, &["restore", &f.a.id, "--target", target.to_str().expect("utf-8 path")]);
    let err = stderr(&o);
    assert!(err.contains(f.a.short()) && err.contains("damaged"), "restore must warn:\n{err}");
    assert!(err.contains("cairn repair snapshots"), "the warning must say what to do:\n{err}");
}

#[test]
fn repair_snapshots_forget_deleted_a_snapshot_the_cache_held_intact() {
    let f = Fixture::new();
    assert!(run(&f.repo, &["snapshots"]).status.success());
    let path = snapshot_path(&f, &f.a.id);
    let good = std::fs::read(&path).expect("snapshot file");
    flip_bit(&path, 40);
    let o = run(&f.repo, &["repair", "snapshots", "--forget"]);
    assert!(o.status.success(), "repair snapshots: {}", stderr(&o));
    assert_eq!(std::fs::read(&path).expect("snapshot file kept"), good, "the file is rewritten from the cache");
    let o = run(&f.repo, &["check"]);
    assert!(o.status.success(), "check after the repair:\n{}", stdout(&o));
    assert_restores(&f.repo, &f.a.id, &f.a.src);
}

fn check_no_key(repo: &TestRepo) -> std::process::Output {
    repo.cairn().env_remove("CAIRN_PASSWORD").args(["check", "--no-key"]).output().expect("runs")
}

#[test]
fn check_no_key_passed_a_repository_with_a_truncated_config() {
    let f = Fixture::new();
    let config = f.repo.repo_path().join("config");
    let bytes = std::fs::read(&config).expect("config");
    std::fs::write(&config, &bytes[..bytes.len() / 2]).expect("truncate config");
    let o = check_no_key(&f.repo);
    assert_eq!(o.status.code(), Some(4), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("config"), "{}", stdout(&o));
}

#[test]
fn check_no_key_passed_a_repository_without_key_files() {
    let f = Fixture::new();
    for e in std::fs::read_dir(f.repo.repo_path().join("keys")).expect("keys").flatten() {
        std::fs::remove_file(e.path()).expect("remove key");
    }
    let o = check_no_key(&f.repo);
    assert_eq!(o.status.code(), Some(4), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("key"), "{}", stdout(&o));
}

#[test]
fn key_remove_refuses_the_key_in_use() {
    let repo = TestRepo::new();
    let keys: Vec<String> = names(&repo.repo_path().join("keys")).into_iter().collect();
    let o = run(&repo, &["key", "remove", &keys[0]]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(names(&repo.repo_path().join("keys")).len(), 1, "the only key must stay");
}
