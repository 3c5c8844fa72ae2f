//! `forget` keeps exactly what restic's `forget` keeps, for the same reasons: the same snapshot
//! times go into a restic repository and a cairn repository, and both tools' dry-run plans are
//! compared for a table of policies. Needs the `restic` program (Debian package `restic`, which
//! `scripts/test.sh` installs); the test fails loudly when it is missing.
//!
//! Debian's restic is 0.14, which predates two later rules cairn follows (restic's current
//! documentation): `-1` means unlimited, and a counting option with counts left keeps the oldest
//! snapshot too. The table therefore avoids `-1`, and the oldest snapshot of the group is compared
//! separately: cairn may keep it where restic 0.14 does not, with a reason naming the option whose
//! counts were left. The unit tests in `engine/src/retention.rs` cover both rules.

use std::collections::BTreeMap;
use std::process::Command;

use crate::support::TestRepo;

/// Snapshot times (UTC) spread over three years, several per hour, day, week and month at places.
fn times() -> Vec<String> {
    let mut out = Vec::new();
    let mut x: u64 = 0x1234_5678_9abc_def1;
    let mut t = chrono::NaiveDate::from_ymd_opt(2024, 2, 27).expect("date").and_hms_opt(23, 10, 0).expect("time");
    for _ in 0..70 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Mostly short steps (minutes to hours), sometimes days or months.
        let minutes = match x % 10 {
            0..=3 => 17 + (x >> 8) % 50,
            4..=6 => 60 + (x >> 8) % 300,
            7 | 8 => 1440 + (x >> 8) % 4000,
            _ => 20_000 + (x >> 8) % 60_000,
        };
        t += chrono::TimeDelta::minutes(minutes as i64);
        out.push(t.format("%Y-%m-%d %H:%M:%S").to_string());
    }
    out
}

/// Tags for snapshot `i`.
fn tag(i: usize) -> &'static str {
    if i % 11 == 3 { "monthly-dump" } else { "plain" }
}

fn restic(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    let out = Command::new("restic")
        .env("RESTIC_REPOSITORY", dir.join("restic-repo"))
        .env("RESTIC_PASSWORD", "parity")
        .env("RESTIC_CACHE_DIR", dir.join("restic-cache"))
        .env("TZ", "UTC")
        .args(args)
        .output()
        .expect("the restic program is needed for this test (apt-get install restic)");
    assert!(out.status.success(), "restic {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Kept snapshot times (as `YYYY-MM-DD HH:MM:SS`) with their reasons, from restic's JSON.
fn restic_plan(dir: &std::path::Path, policy: &[&str]) -> BTreeMap<String, Vec<String>> {
    let mut args = vec!["forget", "--dry-run", "--json"];
    args.extend_from_slice(policy);
    let out = restic(dir, &args);
    let groups: serde_json::Value = serde_json::from_slice(&out.stdout).expect("restic JSON");
    kept_with_reasons(&groups)
}

/// Kept snapshot times with their reasons from `forget --json` output in restic's shape (groups
/// with `reasons[].snapshot.time` and `reasons[].matches`): the same reader serves both programs.
fn kept_with_reasons(groups: &serde_json::Value) -> BTreeMap<String, Vec<String>> {
    let mut kept = BTreeMap::new();
    for g in groups.as_array().expect("an array of groups") {
        for r in g["reasons"].as_array().into_iter().flatten() {
            let time = r["snapshot"]["time"].as_str().expect("time");
            let time =
                chrono::DateTime::parse_from_rfc3339(time).expect("RFC 3339").format("%Y-%m-%d %H:%M:%S").to_string();
            let matches = r["matches"]
                .as_array()
                .expect("matches")
                .iter()
                .map(|m| m.as_str().expect("text").to_owned())
                .collect();
            kept.insert(time, matches);
        }
    }
    kept
}

fn cairn_plan(repo: &TestRepo, policy: &[&str]) -> BTreeMap<String, Vec<String>> {
    let mut args = vec!["forget", "--dry-run"];
    args.extend_from_slice(policy);
    let out = repo.cairn().env("TZ", "UTC").args(&args).arg("--json").output().expect("runs");
    assert!(out.status.success(), "cairn {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    kept_with_reasons(&v)
}

#[test]
fn forget_keeps_what_restic_keeps_for_the_same_reasons() {
    let repo = TestRepo::new();
    let dir = repo.dir.path().to_path_buf();
    restic(&dir, &["init"]);
    let src = repo.scratch("src");
    std::fs::write(src.join("f"), b"same content every time").expect("write");
    for (i, t) in times().iter().enumerate() {
        restic(
            &dir,
            &["backup", "--quiet", "--host", "db1", "--tag", tag(i), "--time", t, src.to_str().expect("UTF-8 path")],
        );
        repo.cairn()
            .env("TZ", "UTC")
            .args(["backup", "--quiet", "--host", "db1", "--tag", tag(i), "--time", t])
            .arg(&src)
            .assert()
            .success();
    }
    let policies: &[&[&str]] = &[
        &["--keep-last", "5"],
        &["--keep-hourly", "10"],
        &["--keep-daily", "7"],
        &["--keep-weekly", "4"],
        &["--keep-monthly", "6"],
        &["--keep-yearly", "1"],
        &["--keep-within", "2d3h"],
        &["--keep-within", "1y2m"],
        &["--keep-within-hourly", "3d"],
        &["--keep-within-daily", "1m"],
        &["--keep-within-weekly", "3m"],
        &["--keep-within-monthly", "1y"],
        &["--keep-within-yearly", "5y"],
        &["--keep-tag", "monthly-dump"],
        &[
            "--keep-last",
            "2",
            "--keep-hourly",
            "24",
            "--keep-daily",
            "30",
            "--keep-weekly",
            "12",
            "--keep-monthly",
            "12",
            "--keep-yearly",
            "7",
        ],
        &["--keep-last", "1", "--keep-tag", "monthly-dump", "--keep-within", "10d"],
        &["--keep-daily", "3", "--keep-within-weekly", "2m", "--keep-monthly", "2"],
    ];
    for policy in policies {
        let mut theirs = restic_plan(&dir, policy);
        let mut ours = cairn_plan(&repo, policy);
        assert!(!theirs.is_empty(), "restic kept nothing for {policy:?}");
        let oldest = times().into_iter().min().expect("times");
        let (their_oldest, our_oldest) = (theirs.remove(&oldest), ours.remove(&oldest));
        assert_eq!(ours, theirs, "policy {policy:?}");
        if let Some(reasons) = their_oldest {
            let ours = our_oldest.unwrap_or_default();
            assert!(
                reasons.iter().all(|r| ours.contains(r)),
                "policy {policy:?}: oldest kept by restic for {reasons:?}, by cairn for {ours:?}"
            );
        }
    }
}
