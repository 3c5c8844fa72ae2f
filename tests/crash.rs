//! A backup killed with SIGKILL at a random moment leaves a repository that opens, in which every
//! earlier snapshot restores byte for byte, and whose next backup succeeds and reuses what the
//! killed runs had already stored and indexed. The moments are drawn from a seeded generator as
//! points in each run's work.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;

use crate::support::data::{Rng, same_contents, write_random_file};
use crate::support::fstree::restored_path;
use crate::support::{TestRepo, dir_size};

const BASE_FILES: u64 = 6;
const BASE_FILE_SIZE: u64 = 48 << 20;
const EXTRA_FILE_SIZE: u64 = 24 << 20;
const ATTEMPTS: u64 = 5;
/// This attempt is left to finish, so that the kills after it have a finished snapshot to damage.
const FINISHED_ATTEMPT: u64 = 1;

/// What the repository's index files name.
#[derive(Debug, Default)]
struct Indexed {
    /// Plaintext bytes of the distinct data blobs.
    data_plain: u64,
    /// Bytes of the distinct packs.
    pack_bytes: u64,
}

fn indexed(repo: &TestRepo) -> Indexed {
    let (mut blobs, mut packs) = (BTreeSet::new(), BTreeSet::new());
    let mut out = Indexed::default();
    let Ok(entries) = std::fs::read_dir(repo.repo_path().join("index")) else { return out };
    for e in entries {
        let name = e.expect("index entry").file_name().to_string_lossy().into_owned();
        let index = repo.json(&["cat", "index", &name]);
        for pack in index["index"]["packs"].as_array().expect("packs") {
            if packs.insert(pack["id"].as_str().expect("pack id").to_owned()) {
                out.pack_bytes += pack["len"].as_u64().expect("pack length");
            }
            for blob in pack["blobs"].as_array().expect("blobs") {
                if blob["kind"] == "data" && blobs.insert(blob["id"].as_str().expect("id").to_owned()) {
                    out.data_plain += blob["plain_len"].as_u64().expect("plain_len");
                }
            }
        }
    }
    out
}

/// Bytes a process has read so far (`rchar` of `/proc/PID/io`).
fn bytes_read_by(pid: u32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines().find_map(|l| l.strip_prefix("rchar:")).and_then(|v| v.trim().parse().ok())
}

fn file_bytes(dir: &Path, names: &[String]) -> u64 {
    names.iter().map(|n| std::fs::metadata(dir.join(n)).expect("stat").len()).sum()
}

/// Checks that the repository opens and every snapshot restores exactly the files of the attempt
/// that made it (named by its tag).
fn assert_every_snapshot_restores(repo: &TestRepo, src: &Path, attempt_files: &BTreeMap<u64, Vec<String>>) {
    let out = repo.cairn().args(["snapshots"]).output().expect("runs");
    assert!(out.status.success(), "snapshots after a kill: {}", String::from_utf8_lossy(&out.stderr));
    for s in repo.json(&["snapshots"]).as_array().expect("array") {
        let id = s["id"].as_str().expect("id");
        let tag = s["tags"][0].as_str().expect("every snapshot is tagged");
        let attempt: u64 = tag.trim_start_matches("attempt-").parse().expect("attempt number");
        let target = tempfile::tempdir_in(repo.dir.path()).expect("target");
        let out = repo
            .cairn()
            .args(["restore", id, "--verify", "--json", "--target"])
            .arg(target.path())
            .output()
            .expect("runs");
        assert!(
            out.status.success(),
            "snapshot {id} of attempt {attempt} does not restore: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let restored = restored_path(target.path(), src);
        let names: BTreeSet<String> = std::fs::read_dir(&restored)
            .expect("restored source folder")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        let expected: BTreeSet<String> = attempt_files[&attempt].iter().cloned().collect();
        assert_eq!(names, expected, "files of snapshot {id} (attempt {attempt})");
        for name in &names {
            assert!(same_contents(&restored.join(name), &src.join(name)), "{name} of snapshot {id} differs");
        }
    }
}

#[test]
fn backups_killed_at_random_moments_never_damage_the_repository() {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    let mut files: Vec<String> = Vec::new();
    for i in 0..BASE_FILES {
        let name = format!("base-{i}.bin");
        write_random_file(&src.join(&name), 0xc4a5_0000 + i, BASE_FILE_SIZE);
        files.push(name);
    }
    let mut rng = Rng::new(0xc4a5_109f);
    let mut attempt_files: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut killed = 0;

    for attempt in 0..ATTEMPTS {
        // Each attempt has something new to store, so none of them is a no-op.
        let name = format!("extra-{attempt}.bin");
        write_random_file(&src.join(&name), 0xc4a5_2000 + attempt, EXTRA_FILE_SIZE);
        files.push(name);
        attempt_files.insert(attempt, files.clone());

        let tag = format!("attempt-{attempt}");
        let indexed_before = indexed(&repo).data_plain;
        // What this run will read: only the new file when an earlier run finished (its snapshot is
        // the parent), everything otherwise.
        let has_parent = !repo.json(&["snapshots"]).as_array().expect("array").is_empty();
        let to_read = if has_parent { EXTRA_FILE_SIZE } else { file_bytes(&src, &files) };
        let kill_at = if attempt == FINISHED_ATTEMPT { u64::MAX } else { to_read * rng.between(2..100) / 100 };
        let mut child = repo
            .cairn_std()
            .args(["backup", "--json", "--tag", &tag])
            .arg(&src)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn backup");
        // The moment of the kill is a point in the work (bytes read so far), not in time, so it is
        // the same on a fast machine and a busy one; the polling interval only bounds how soon after
        // that point the signal lands.
        while child.try_wait().expect("poll backup").is_none() {
            if bytes_read_by(child.id()).is_some_and(|n| n >= kill_at) {
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(child.id() as i32),
                    nix::sys::signal::Signal::SIGKILL,
                )
                .expect("SIGKILL");
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let out = child.wait_with_output().expect("reap backup");
        let was_killed = out.status.signal() == Some(nix::sys::signal::Signal::SIGKILL as i32);
        eprintln!(
            "crash: attempt {attempt} {}; data indexed before it: {indexed_before} bytes, after: {}",
            if was_killed { "killed" } else { "finished" },
            indexed(&repo).data_plain
        );
        if was_killed {
            killed += 1;
        } else {
            assert!(out.status.success(), "attempt {attempt} ended on its own with {}", out.status);
            // A run that finishes stores only what no index named yet (plus its trees).
            let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
            let added = report["summary"]["bytes_added_plain"].as_u64().expect("number");
            let data = file_bytes(&src, &files);
            assert!(added <= data.saturating_sub(indexed_before) + (1 << 20), "attempt {attempt} stored {added} bytes");
        }
        assert_every_snapshot_restores(&repo, &src, &attempt_files);
    }

    // A complete run now: it succeeds, restores, and stores only what no index names yet.
    let total: u64 = BASE_FILES * BASE_FILE_SIZE + ATTEMPTS * EXTRA_FILE_SIZE;
    let before = indexed(&repo);
    let last = ATTEMPTS;
    attempt_files.insert(last, files.clone());
    let r = repo.json(&["backup", "--tag", &format!("attempt-{last}"), src.to_str().expect("UTF-8")]);
    let added = r["summary"]["bytes_added_plain"].as_u64().expect("number");
    let after = indexed(&repo);
    let size = dir_size(&repo.repo_path());
    let orphaned = dir_size(&repo.repo_path().join("data"))
        .checked_sub(after.pack_bytes)
        .expect("the packs the index names are all in data/");
    eprintln!(
        "crash: {killed} of {ATTEMPTS} runs killed; {} of {total} data bytes were indexed before the final run, which \
         added {added} bytes; repository {size} bytes ({:.2}x the data), of which {orphaned} in packs no index names",
        before.data_plain,
        size as f64 / total as f64
    );
    assert!(killed > 0, "no attempt was killed");
    let finished = repo.json(&["snapshots", "--tag", &format!("attempt-{FINISHED_ATTEMPT}")]);
    assert_eq!(finished.as_array().expect("array").len(), 1, "the attempt left to finish has its snapshot");
    // Tree blobs are the only plaintext beyond the data not yet indexed.
    let missing = total - before.data_plain;
    assert!(added <= missing + (1 << 20), "the final run stored {added} bytes though only {missing} were missing");
    // Nothing is indexed twice: the packs the index names hold the data once (plus trees and headers).
    assert!(
        after.pack_bytes < total + total / 50,
        "indexed packs of {} bytes for {total} bytes of data",
        after.pack_bytes
    );
    // A killed run can leave behind only the packs written since its last index flush (every 8 packs
    // of about 16 MiB, or sooner); prune reclaims them.
    assert!(orphaned <= killed * (160 << 20), "{orphaned} bytes of unindexed packs after {killed} kills");
    assert_every_snapshot_restores(&repo, &src, &attempt_files);
}
