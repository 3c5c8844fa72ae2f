//! Backing up streams: standard input (`--stdin`) and a command's output (`--stdin-from-command`),
//! read back with `dump`; a failing command stores nothing.

use crate::support::TestRepo;
use crate::support::data::{Rng, SqlDump};

fn snapshot_count(repo: &TestRepo) -> usize {
    repo.json(&["snapshots"]).as_array().expect("a JSON array").len()
}

#[test]
fn stdin_is_stored_under_its_file_name_and_dumps_back_identical() {
    let repo = TestRepo::new();
    let dump = SqlDump::new(0x57d1_0001);
    let mut input = Vec::new();
    for row in 0..60_000 {
        dump.push_row(&mut input, row, 0);
    }
    input.extend_from_slice(&Rng::new(7).bytes(3 << 20));

    let out = repo
        .cairn()
        .args(["backup", "--json", "--stdin", "--stdin-filename", "db.sql", "--tag", "pg"])
        .write_stdin(input.clone())
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["summary"]["bytes_read"], input.len());
    assert_eq!(report["summary"]["files_new"], 1);

    let dumped = repo.cairn().args(["dump", "latest", "/db.sql"]).output().expect("runs");
    assert!(dumped.status.success(), "{}", String::from_utf8_lossy(&dumped.stderr));
    assert!(
        dumped.stdout == input,
        "dumped stream differs from the input ({} vs {} bytes)",
        dumped.stdout.len(),
        input.len()
    );

    let snapshots = repo.json(&["snapshots"]);
    let s = &snapshots[0];
    assert_eq!(s["paths"], serde_json::json!(["/db.sql"]));
    assert_eq!(s["source"], "stdin");
    assert_eq!(s["source_detail"], "db.sql");
    // restic's shape: the snapshot, then one line per entry.
    let out = repo.cairn().args(["ls", "latest", "--json"]).output().expect("runs");
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .expect("UTF-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["struct_type"], "snapshot");
    let listing = &lines[1];
    assert_eq!(listing["path"], "/db.sql");
    assert_eq!(listing["size"], input.len());

    // The same stream again: the previous one is the parent, and nothing new is stored.
    let again = repo
        .cairn()
        .args(["backup", "--json", "--stdin", "--stdin-filename", "db.sql"])
        .write_stdin(input.clone())
        .output()
        .expect("runs");
    assert!(again.status.success());
    let again: serde_json::Value = serde_json::from_slice(&again.stdout).expect("JSON");
    assert_eq!(again["parent"], report["snapshot_id"]);
    assert_eq!(again["summary"]["files_changed"], 1);
    assert_eq!(again["summary"]["data_blobs_added"], 0, "an identical stream stored new data");

    // An empty stream is stored as an empty file, with a warning and exit 3 (it is how a failed
    // producer before a pipe looks; see backup_input::empty_stdin_is_warned_about_and_exits_3).
    let out = repo
        .cairn()
        .args(["backup", "--stdin", "--stdin-filename", "empty.sql"])
        .write_stdin(Vec::new())
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    repo.cairn().args(["dump", "latest", "/empty.sql"]).assert().success().stdout("");
}

#[test]
fn a_commands_output_is_stored_without_its_arguments() {
    let repo = TestRepo::new();
    let script = "i=0; while [ $i -lt 20000 ]; do echo \"row $i TOKEN=s3cr3t-argument\"; i=$((i+1)); done";
    let out = repo
        .cairn()
        .args(["backup", "--json", "--stdin-from-command", "--stdin-filename", "rows.txt", "--", "sh", "-c", script])
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert!(r["snapshot_id"].is_string());
    let expected: String = (0..20_000).map(|i| format!("row {i} TOKEN=s3cr3t-argument\n")).collect();
    assert_eq!(r["summary"]["bytes_read"], expected.len());
    repo.cairn().args(["dump", "latest", "/rows.txt"]).assert().success().stdout(expected);

    let listing = repo.cairn().args(["snapshots", "--json"]).output().expect("runs");
    let text = String::from_utf8(listing.stdout).expect("UTF-8");
    let s: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(s[0]["source"], "command");
    assert_eq!(s[0]["source_detail"], "sh", "only the program name is recorded");
    assert!(!text.contains("s3cr3t"), "the command's arguments were recorded: {text}");
}

#[test]
fn a_failing_command_writes_no_snapshot() {
    let repo = TestRepo::new();
    repo.cairn().args(["backup", "--stdin", "--stdin-filename", "ok.sql"]).write_stdin("fine\n").assert().success();
    assert_eq!(snapshot_count(&repo), 1);

    let out = repo
        .cairn()
        .args([
            "backup",
            "--stdin-from-command",
            "--stdin-filename",
            "db.sql",
            "--",
            "sh",
            "-c",
            "echo partial; exit 3",
        ])
        .output()
        .expect("runs");
    assert!(!out.status.success(), "a failing source command reported success");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exit status: 3"), "the exit status is not named: {err}");
    assert!(err.contains("no snapshot"), "{err}");
    assert_eq!(snapshot_count(&repo), 1, "a snapshot was written for a failed command");

    // Killed by a signal, and a command that does not exist: the same.
    let out = repo
        .cairn()
        .args(["backup", "--stdin-from-command", "--", "sh", "-c", "echo partial; kill -9 $$"])
        .output()
        .expect("runs");
    assert!(!out.status.success(), "a killed source command reported success");
    assert!(String::from_utf8_lossy(&out.stderr).contains("signal: 9"), "{out:?}");
    let out =
        repo.cairn().args(["backup", "--stdin-from-command", "--", "/nonexistent/pg_dump"]).output().expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/pg_dump"), "{out:?}");
    assert_eq!(snapshot_count(&repo), 1);

    // The repository is still fine for the next run.
    repo.cairn()
        .args(["backup", "--stdin-from-command", "--stdin-filename", "db.sql", "--", "echo", "full"])
        .assert()
        .success();
    repo.cairn().args(["dump", "latest", "/db.sql"]).assert().success().stdout("full\n");
    assert_eq!(snapshot_count(&repo), 2);
}
