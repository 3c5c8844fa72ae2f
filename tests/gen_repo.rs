//! The scale benchmark's repository generator (`cairn_benches::gen_repo`) writes repositories that
//! cairn reads as its own: `check` finds nothing at every level, every snapshot lists and restores
//! the generated content, and forgetting one snapshot lets prune remove exactly its tenth. Kept
//! small (12,000 blobs) so that the generator cannot silently rot.

use cairn_engine::backend::Location;
use cairn_engine::{OpenOptions, Repository};

use crate::support::{PASSWORD, TestRepo};

const BLOBS: u64 = 12_000;
const SEED: u64 = 7;

fn generated() -> (TestRepo, Vec<cairn_format::SnapshotId>) {
    let t = TestRepo::new();
    let repo = Repository::open(&Location::Local(t.repo_path()), PASSWORD.as_bytes(), &OpenOptions::default())
        .expect("the repository opens");
    let mut seen = Vec::new();
    let ids = cairn_benches::gen_repo::generate(&repo, BLOBS, SEED, |n, _| seen.push(n)).expect("generates");
    assert_eq!(seen, (1..=10).collect::<Vec<u64>>());
    (t, ids)
}

fn assert_clean(t: &TestRepo, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["check"];
    all.extend_from_slice(args);
    let report = t.json(&all);
    assert_eq!(report["damage"].as_array().expect("list").len(), 0, "{args:?}: {report}");
    assert_eq!(report["notices"].as_array().expect("list").len(), 0, "{args:?}: {report}");
    report
}

#[test]
fn generated_repository_passes_check_at_every_level() {
    let (t, ids) = generated();
    assert_eq!(ids.len(), 10);
    let report = assert_clean(&t, &[]);
    let stats = &report["stats"];
    assert_eq!(stats["snapshots"], 10);
    // Every data blob plus one tree per folder, one per top folder and one root per snapshot.
    let trees = 10 * 3;
    assert_eq!(stats["blobs"], BLOBS + trees);
    assert_eq!(stats["trees"], trees);
    assert_clean(&t, &["--read-data-subset", "1%"]);
    let full = assert_clean(&t, &["--read-data"]);
    assert_eq!(full["stats"]["blobs_read"], BLOBS + trees);
}

#[test]
fn generated_snapshots_restore_their_content() {
    let (t, ids) = generated();
    let listed = t.json(&["snapshots"]);
    let listed = listed.as_array().expect("list");
    assert_eq!(listed.len(), 10);
    assert!(listed.iter().all(|s| s["tags"][0] == "generated"), "{listed:?}");
    // The last snapshot owns blobs 10800..12000: 12 files of 100 blobs in one folder.
    let target = t.scratch("restored");
    let last = ids[9].to_hex();
    t.cairn().args(["restore", &last, "--target"]).arg(&target).assert().success();
    let folder = target.join("part-09/d00000");
    let mut names: Vec<String> = std::fs::read_dir(&folder)
        .expect("restored folder")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, (0..12).map(|f| format!("f{f:04}.dat")).collect::<Vec<_>>());
    let expected: Vec<u8> = (10_900..11_000).flat_map(|n| cairn_benches::gen_repo::plaintext(SEED, n)).collect();
    assert_eq!(std::fs::read(folder.join("f0001.dat")).expect("restored file"), expected);
}

#[test]
fn forgetting_one_generated_snapshot_lets_prune_remove_its_tenth() {
    let (t, ids) = generated();
    t.cairn().args(["forget", "--quiet", &ids[0].to_hex()]).assert().success();
    t.cairn().args(["prune", "--quiet"]).assert().success();
    let report = assert_clean(&t, &[]);
    assert_eq!(report["stats"]["snapshots"], 9);
    assert_eq!(report["stats"]["blobs"], BLOBS - BLOBS / 10 + 9 * 3);
}
