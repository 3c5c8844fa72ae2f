//! Profiles with `pg` jobs: `cairn run` backs up a database beside a folder, applies the pg job's
//! own retention to the database's group, drills it when due, and a pg job whose database does
//! not exist fails alone (its on-error hook fires, the folder job still runs, the run exits
//! non-zero). Against the shared throwaway cluster of tests/support/pg.rs.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::operations::assert_valid_exposition;
use crate::support::TestRepo;
use crate::support::pg::cluster;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `profile.toml` with `[global]` naming the test repository and cache, then `body`.
fn profile(repo: &TestRepo, body: &str) -> PathBuf {
    let path = repo.scratch("profiles").join("ops.toml");
    let global = format!(
        "[global]\nrepo = \"{}\"\ncache-dir = \"{}\"\n",
        repo.repo_path().display(),
        repo.cache_path().display()
    );
    std::fs::write(&path, format!("{global}{body}")).expect("write profile");
    path
}

fn run(repo: &TestRepo, profile: &Path, args: &[&str]) -> Output {
    repo.cairn().arg("--config").arg(profile).arg("run").args(args).output().expect("cairn run runs")
}

/// RFC 3339 of `days_ago` days before now (snapshots in the past, so that `status` sees them).
fn days_ago(days: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::days(days)).format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[test]
fn a_profile_backs_up_a_folder_and_a_database_applies_retention_and_drills_when_due() {
    let c = cluster();
    let db = c.create_db("profile_app");
    c.psql_script(
        &db,
        "CREATE TABLE orders (id int PRIMARY KEY, item text);
         INSERT INTO orders SELECT g, 'item ' || g FROM generate_series(1, 500) g;
         CREATE TABLE audit (line text);
         INSERT INTO audit SELECT 'noise ' || g FROM generate_series(1, 100) g;",
    );
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    std::fs::write(src.join("a.txt"), vec![7u8; 20_000]).expect("write source");
    let hooks = repo.dir.path().join("hooks.log");
    let body = format!(
        r#"
[jobs.files]
paths = ["{src}"]

[jobs.app]
pg = "{url}"
exclude-table = ["audit"]
jobs = 2
tag = ["db"]
after = "echo after $CAIRN_JOB $CAIRN_RESULT $CAIRN_SNAPSHOT_ID >> {log}"
on-error = "echo on-error $CAIRN_JOB >> {log}"

[jobs.app.forget]
keep-last = 1

[jobs.app.drill]
every = "7d"
scratch-db = "{scratch}"
check-sql = ["SELECT count(*) = 500 FROM orders"]
"#,
        src = src.display(),
        url = c.url(&db),
        scratch = c.url("postgres"),
        log = hooks.display()
    );
    let profile = profile(&repo, &body);

    let metrics = repo.dir.path().join("run.prom");
    let mut summaries = Vec::new();
    for (i, time) in [days_ago(2), days_ago(1)].iter().enumerate() {
        let out = run(&repo, &profile, &["--time", time, "--json", "--metrics-file", &metrics.display().to_string()]);
        assert!(out.status.success(), "run {i}: {}{}", text(&out.stdout), text(&out.stderr));
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON summary");
        assert_eq!(summary["exit_code"], 0, "{summary}");
        summaries.push(summary);
    }
    let app = |s: &serde_json::Value| s["jobs"][1].clone();
    assert_eq!(app(&summaries[0])["job"], "app");
    assert_eq!(app(&summaries[0])["database"]["database"], db.as_str());
    assert_eq!(app(&summaries[0])["database"]["tables"], 1, "audit's rows are excluded");
    assert_eq!(app(&summaries[0])["database"]["rows"], 500);
    // The first run drills (never drilled); the second does not (7 days have not passed).
    let drill = &app(&summaries[0])["drill"];
    assert_eq!(drill["ok"], true, "{drill}");
    assert_eq!(drill["report"]["passed"], true, "{drill}");
    assert_eq!(drill["report"]["snapshot"], app(&summaries[0])["snapshot_id"], "{drill}");
    assert!(app(&summaries[1]).get("drill").is_none(), "{}", summaries[1]);

    // Both jobs' snapshots exist; the pg job kept its last one only, the folder job both.
    let snaps = repo.json(&["snapshots"]);
    let snaps = snaps.as_array().expect("list");
    let src_path = src.display().to_string();
    let of = |path: &str| snaps.iter().filter(|s| s["paths"][0].as_str() == Some(path)).count();
    assert_eq!(of(&src_path), 2, "{snaps:?}");
    let pg_snaps: Vec<&serde_json::Value> =
        snaps.iter().filter(|s| s["tags"].as_array().is_some_and(|t| t.iter().any(|t| t == "db"))).collect();
    assert_eq!(pg_snaps.len(), 1, "keep-last 1 on the pg job's group: {snaps:?}");
    let pg_id = app(&summaries[1])["snapshot_id"].as_str().expect("pg snapshot id").to_owned();
    assert_eq!(pg_snaps[0]["id"], pg_id.as_str());

    // The pg job's backup metrics are labelled with the job, and the file is valid.
    let prom = std::fs::read_to_string(&metrics).expect("metrics file written");
    assert_valid_exposition(&prom);
    assert!(
        prom.lines()
            .any(|l| l.starts_with("cairn_backup_last_success_timestamp_seconds{") && l.contains("job=\"ops/app\"")),
        "{prom}"
    );

    // The after hook fired once per run with the pg snapshot.
    let log = std::fs::read_to_string(&hooks).expect("hooks ran");
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert_eq!(lines[1], format!("after app success {pg_id}"));

    // The pg snapshot restores with `cairn pg restore`.
    let restored = c.create_db("profile_app_restored");
    let out = repo.cairn().args(["pg", "restore", &pg_id[..12], "--db", &c.url(&restored)]).output().expect("runs");
    assert!(out.status.success(), "pg restore: {}", text(&out.stderr));
    assert_eq!(c.psql(&restored, "SELECT count(*) FROM orders"), "500");
    assert_eq!(c.psql(&restored, "SELECT count(*) FROM audit"), "0", "excluded rows stay out, the table stays");

    // status shows both groups, the database's with its drill.
    let status = repo.json(&["status"]);
    let groups = status["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 2, "{status}");
    let pg_group =
        groups.iter().find(|g| g["group"]["paths"][0].as_str() != Some(&src_path)).expect("the database's group");
    assert_eq!(pg_group["id"], pg_id.as_str(), "{status}");
    assert!(pg_group["last_drill"]["time"].is_string(), "{status}");
    let out = repo.cairn().args(["status"]).output().expect("runs");
    assert!(text(&out.stdout).contains(&db), "{}", text(&out.stdout));
}

#[test]
fn a_pg_job_whose_database_does_not_exist_fails_alone() {
    let c = cluster();
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    std::fs::write(src.join("a.txt"), b"kept").expect("write source");
    let hooks = repo.dir.path().join("hooks.log");
    let body = format!(
        r#"
[jobs.gone]
pg = "{url}"
on-error = "echo on-error $CAIRN_JOB $CAIRN_RESULT $CAIRN_EXIT_CODE >> {log}"
after = "echo after $CAIRN_JOB >> {log}"

[jobs.files]
paths = ["{src}"]
after = "echo after $CAIRN_JOB $CAIRN_RESULT >> {log}"
"#,
        url = c.url("no_such_database_here"),
        src = src.display(),
        log = hooks.display()
    );
    let profile = profile(&repo, &body);
    let out = run(&repo, &profile, &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}{stderr}", text(&out.stdout));
    let errors: Vec<&str> = stderr.lines().collect();
    assert_eq!(errors.len(), 1, "one line per error: {stderr}");
    assert!(
        errors[0].starts_with("cairn: job gone: cannot connect to database 'no_such_database_here' on 127.0.0.1:")
            && errors[0].ends_with("does not exist"),
        "{stderr}"
    );

    let log = std::fs::read_to_string(&hooks).expect("hooks ran");
    assert_eq!(log.lines().collect::<Vec<_>>(), ["on-error gone failure 1", "after files success"], "{log}");
    let snaps = repo.json(&["snapshots"]);
    let snaps = snaps.as_array().expect("list");
    assert_eq!(snaps.len(), 1, "only the folder job saved a snapshot: {snaps:?}");
    assert_eq!(snaps[0]["paths"][0], src.display().to_string());
}

#[test]
fn a_failing_drill_fails_the_job_with_exit_code_4_and_stays_due() {
    let c = cluster();
    let db = c.create_db("profile_drill");
    c.psql(&db, "CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 10) g");
    let repo = TestRepo::new();
    let hooks = repo.dir.path().join("hooks.log");
    let body = format!(
        r#"
[jobs.app]
pg = "{url}"
on-error = "echo on-error $CAIRN_JOB $CAIRN_EXIT_CODE $CAIRN_SNAPSHOT_ID >> {log}"

[jobs.app.drill]
every = "30d"
check-sql = ["SELECT count(*) = 11 FROM t"]
"#,
        url = c.url(&db),
        log = hooks.display()
    );
    let profile = profile(&repo, &body);
    for i in 0..2 {
        let out = run(&repo, &profile, &["--json"]);
        assert_eq!(out.status.code(), Some(4), "run {i}: {}{}", text(&out.stdout), text(&out.stderr));
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON summary");
        let job = &summary["jobs"][0];
        assert_eq!(job["ok"], false, "{summary}");
        assert!(job["snapshot_id"].is_string(), "the backup itself was saved: {summary}");
        assert_eq!(job["drill"]["report"]["passed"], false, "run {i}: a failed drill is due again: {summary}");
        assert!(job["errors"][0].as_str().is_some_and(|e| e.starts_with("drill failed: ")), "{summary}");
    }
    let log = std::fs::read_to_string(&hooks).expect("hooks ran");
    assert_eq!(log.lines().filter(|l| l.starts_with("on-error app 4 ")).count(), 2, "{log}");
    let status = repo.json(&["status"]);
    assert!(status["last_drill"].is_null(), "no successful drill: {status}");
}

#[test]
fn pg_job_keys_are_checked_with_their_line() {
    let repo = TestRepo::new();
    let cases = [
        ("[jobs.a]\npg = \"postgresql://x/y\"\nexclude = [\"*.tmp\"]\n", 6, "unknown key 'exclude'"),
        ("[jobs.a]\npg = \"postgresql://x/y\"\ndb = \"postgresql://x/z\"\n", 6, "the database is given by 'pg'"),
        ("[jobs.a]\npg = \"postgresql://x/y\"\npaths = [\"/srv\"]\n", 4, "give one of 'paths', 'command' or 'pg'"),
        ("[jobs.a]\npaths = [\"/srv\"]\n[jobs.a.drill]\nevery = \"7d\"\n", 6, "'drill' is for pg jobs only"),
        ("[jobs.a]\npg = true\n[jobs.a.drill]\nscratch-db = \"postgresql://x/postgres\"\n", 4, "give 'every'"),
        ("[jobs.a]\npg = 5\n", 5, "'pg' must be a database URL or true"),
    ];
    for (body, line, message) in cases {
        let path = profile(&repo, body);
        let out = run(&repo, &path, &[]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{body}: {stderr}");
        assert!(stderr.contains(&format!("ops.toml:{line}: ")) && stderr.contains(message), "{body}: {stderr}");
    }
}
