//! Downloads from an object store run several at once (SeaweedFS on loopback, `support::s3`):
//! restore and `check --read-data` hint the pack reads ahead, the hinted GETs run in the
//! background, and `-o connections=N` bounds them. The reads in flight are counted from the
//! `CAIRN_FAULT=trace` lines: a read runs from its `op ... Read` line to its `done Read` line.

use std::path::Path;

use crate::support::data::write_random_file;
use crate::support::fstree::{assert_same_tree, restored_path};
use crate::support::s3::S3Repo;

/// The most reads that were in flight at once, from a run's trace on standard error.
fn peak_reads_in_flight(stderr: &[u8]) -> usize {
    let (mut now, mut peak, mut started) = (0usize, 0usize, 0usize);
    for line in String::from_utf8_lossy(stderr).lines() {
        if line.starts_with("cairn-fault: op ") && line.split_whitespace().nth(5) == Some("Read") {
            now += 1;
            started += 1;
            peak = peak.max(now);
        } else if line.starts_with("cairn-fault: done Read ") {
            now = now.checked_sub(1).expect("a read ended that never started");
        }
    }
    assert!(started > 0, "no traced reads: is the binary built with fault-injection?");
    assert_eq!(now, 0, "reads that never ended");
    peak
}

/// Random data in two files: six packs of about 16 MiB, so six pack spans to read.
fn make_source(root: &Path) {
    write_random_file(&root.join("a.bin"), 31, 56 << 20);
    write_random_file(&root.join("b.bin"), 32, 40 << 20);
}

#[test]
fn restore_and_check_read_data_run_several_gets_at_once_and_never_more_than_connections() {
    let repo = S3Repo::new();
    let src = repo.scratch("src");
    make_source(&src);
    repo.cairn().arg("backup").arg(&src).assert().success();

    for (connections, lowest) in [(3, 3), (1, 1)] {
        let target = repo.scratch(&format!("restored-{connections}"));
        let out = repo
            .cairn()
            .env("CAIRN_FAULT", "trace")
            .args(["-o", &format!("connections={connections}"), "restore", "latest", "--target"])
            .arg(&target)
            .output()
            .expect("runs");
        assert!(out.status.success(), "restore failed: {}", String::from_utf8_lossy(&out.stderr));
        let peak = peak_reads_in_flight(&out.stderr);
        assert!(
            (lowest..=connections).contains(&peak),
            "restore with connections={connections}: {peak} reads in flight at most"
        );
        assert_same_tree(&src, &restored_path(&target, &src));

        let out = repo
            .cairn()
            .env("CAIRN_FAULT", "trace")
            .args(["-o", &format!("connections={connections}"), "check", "--read-data"])
            .output()
            .expect("runs");
        assert!(out.status.success(), "check failed: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("no damage found"));
        let peak = peak_reads_in_flight(&out.stderr);
        assert!(
            (lowest..=connections).contains(&peak),
            "check --read-data with connections={connections}: {peak} reads in flight at most"
        );
    }
}

#[test]
fn read_ahead_keeps_a_large_restore_from_s3_within_bounded_memory() {
    assert!(
        Path::new("/usr/bin/time").exists(),
        "/usr/bin/time is missing (apt-get install time; scripts/test.sh does)"
    );
    let repo = S3Repo::new();
    let src = repo.scratch("src");
    // Five times the read-ahead budget (52 MiB): reading ahead without a bound would hold far
    // more than the limit below.
    write_random_file(&src.join("big.bin"), 41, 256 << 20);
    repo.cairn().arg("backup").arg(&src).assert().success();
    let target = repo.scratch("restored");
    let report = repo.dir.path().join("time.out");
    let out = repo
        .shell(r#"exec /usr/bin/time -f %M -o "$REPORT" "$CAIRN" -o connections=8 restore latest --target "$TARGET""#)
        .env("REPORT", &report)
        .env("TARGET", &target)
        .output()
        .expect("runs");
    assert!(out.status.success(), "restore failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_same_tree(&src, &restored_path(&target, &src));
    let text = std::fs::read_to_string(&report).expect("the report of /usr/bin/time");
    let kib: u64 = text.trim().lines().last().and_then(|l| l.trim().parse().ok()).expect("peak RSS in KiB");
    assert!(kib < 200 << 10, "restoring 256 MiB from S3 peaked at {} MiB", kib >> 10);
}
