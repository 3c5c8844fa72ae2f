//! Profiles and `cairn run`: jobs of folders and commands run on a schedule (`--time` spanning
//! days), retention, rotating check subsets, hooks, `-q`, failing sources, broken files, records
//! in `status`, metrics files, systemd units, the log file, and the precedence of the command
//! line over the file over the environment.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::operations::assert_valid_exposition;
use crate::support::TestRepo;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Writes `profile.toml` (in a scratch folder) with `body` after a `[global]` table naming the
/// test repository and cache (keys of `body` before its first table stay at the top); returns its
/// path.
fn profile(repo: &TestRepo, name: &str, body: &str) -> PathBuf {
    let dir = repo.scratch("profiles");
    let path = dir.join(format!("{name}.toml"));
    let global = format!(
        "[global]\nrepo = \"{}\"\ncache-dir = \"{}\"\n\n",
        repo.repo_path().display(),
        repo.cache_path().display()
    );
    let tables = body.find("\n[").map_or(0, |i| i + 1);
    let top = if body.starts_with('[') { "" } else { &body[..tables] };
    std::fs::write(&path, format!("{top}{global}{}", &body[top.len()..])).expect("write profile");
    path
}

fn run(repo: &TestRepo, profile: &Path, args: &[&str]) -> Output {
    repo.cairn().arg("--config").arg(profile).arg("run").args(args).output().expect("cairn run runs")
}

fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_owned).collect()
}

/// A profile with a folder job and a command job, daily retention keeping 2, a prune every
/// 2 days and a check of one third of the packs every day; hooks append to `hooks.log`.
fn two_jobs(repo: &TestRepo) -> (PathBuf, PathBuf, PathBuf) {
    let src = repo.scratch("src");
    std::fs::write(src.join("a.txt"), vec![1u8; 50_000]).expect("write source");
    let hooks = repo.dir.path().join("hooks.log");
    let log = hooks.display();
    let body = format!(
        r#"
[forget]
keep-daily = 2

[prune]
every = "2d"

[check]
every = "1d"
read-data-subset = "1/3"

[jobs.files]
paths = ["{src}"]
tag = ["files"]
before = "echo before $CAIRN_JOB >> {log}"
after = "echo after $CAIRN_JOB $CAIRN_RESULT $CAIRN_EXIT_CODE $CAIRN_SNAPSHOT_ID >> {log}"
on-error = "echo on-error $CAIRN_JOB >> {log}"

[jobs.db]
command = "echo dump of $CAIRN_JOB; date +%N"
stdin-filename = "db.sql"
after = "echo after $CAIRN_JOB $CAIRN_RESULT password=[$CAIRN_PASSWORD] >> {log}"
on-error = "echo on-error $CAIRN_JOB >> {log}"
"#,
        src = src.display()
    );
    (profile(repo, "nightly", &body), src, hooks)
}

#[test]
fn three_daily_runs_apply_retention_rotate_check_subsets_and_fire_hooks_once() {
    let repo = TestRepo::new();
    let (profile, src, hooks) = two_jobs(&repo);
    let days = ["2026-11-01T03:00:00Z", "2026-11-02T03:00:00Z", "2026-11-03T03:00:00Z"];
    let mut subsets = Vec::new();
    for (i, day) in days.iter().enumerate() {
        std::fs::write(src.join("day.txt"), format!("day {i}")).expect("write source");
        if i < 2 {
            let out = run(&repo, &profile, &["--time", day, "--json"]);
            assert!(out.status.success(), "run {i}: {}", text(&out.stderr));
            let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON summary");
            assert_eq!(summary["exit_code"], 0);
            assert_eq!(summary["jobs"].as_array().map(Vec::len), Some(2));
            assert_eq!(summary["prune"].is_null(), i == 1, "prune every 2 days: run 1 and 3 only");
            subsets.push(summary["check"]["report"]["subset"].as_str().expect("a check ran").to_owned());
        } else {
            // -q: a successful run prints nothing at all.
            let out = run(&repo, &profile, &["--time", day, "-q"]);
            assert!(out.status.success(), "run {i}: {}", text(&out.stderr));
            assert!(
                out.stdout.is_empty() && out.stderr.is_empty(),
                "-q printed: {}{}",
                text(&out.stdout),
                text(&out.stderr)
            );
        }
    }
    assert_eq!(subsets, ["1/3", "2/3"], "each run checks the next third");
    // The third run's check is in the records, shown by status.
    let status = repo.json(&["status", "--time", "2026-11-03T04:00:00Z"]);
    let check = &status["last_check"];
    assert!(check["summary"].as_str().is_some_and(|s| s.contains("subset 3/3")), "{status}");
    assert_eq!(check["time"], "2026-11-03T03:00:00Z");
    assert_eq!(status["groups"][0]["last_check"]["time"], "2026-11-03T03:00:00Z");

    // Retention: keep-daily 2 per job's group leaves two snapshots of each.
    let snaps = repo.json(&["snapshots"]);
    let snaps = snaps.as_array().expect("list");
    let count = |path: &str| snaps.iter().filter(|s| s["paths"][0].as_str() == Some(path)).count();
    assert_eq!(count(&src.display().to_string()), 2, "{snaps:?}");
    assert_eq!(count("/db.sql"), 2, "{snaps:?}");
    // 2026-11-02T00:00:00Z: day 1's snapshots are gone.
    assert!(snaps.iter().all(|s| s["time_ns"].as_i64().is_some_and(|t| t >= 1_793_577_600_000_000_000)), "{snaps:?}");

    // Hooks: once per job and run, with the result; the password never reaches them.
    let log = lines_of(&hooks);
    assert_eq!(log.iter().filter(|l| l.starts_with("before files")).count(), 3, "{log:?}");
    let after_files: Vec<&String> = log.iter().filter(|l| l.starts_with("after files success 0 ")).collect();
    assert_eq!(after_files.len(), 3, "{log:?}");
    assert!(after_files.iter().all(|l| l.split(' ').nth(4).is_some_and(|id| id.len() == 64)), "{log:?}");
    assert_eq!(log.iter().filter(|l| *l == "after db success password=[]").count(), 3, "{log:?}");
    assert!(!log.iter().any(|l| l.starts_with("on-error")), "{log:?}");
    // The newest snapshot of the folder job is the one its last after hook named.
    let newest = snaps
        .iter()
        .filter(|s| s["paths"][0].as_str() == Some(&src.display().to_string()))
        .max_by_key(|s| s["time_ns"].as_i64())
        .expect("a snapshot");
    assert!(after_files[2].ends_with(newest["id"].as_str().expect("id")), "{log:?}");
}

#[test]
fn a_failing_source_command_saves_nothing_fires_on_error_and_the_other_job_still_runs() {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    std::fs::write(src.join("a.txt"), b"files").expect("write source");
    let hooks = repo.dir.path().join("hooks.log");
    let log = hooks.display();
    let body = format!(
        r#"after = "echo run-after >> {log}"
on-error = "echo run-on-error [$CAIRN_JOB] $CAIRN_RESULT $CAIRN_EXIT_CODE $CAIRN_ERROR >> {log}"

[jobs.db]
command = ["sh", "-c", "echo partial; exit 3"]
stdin-filename = "db.sql"
after = "echo after $CAIRN_JOB >> {log}"
on-error = "echo on-error $CAIRN_JOB $CAIRN_RESULT $CAIRN_EXIT_CODE [$CAIRN_SNAPSHOT_ID] >> {log}"

[jobs.files]
paths = ["{src}"]
after = "echo after $CAIRN_JOB $CAIRN_RESULT >> {log}"
on-error = "echo on-error $CAIRN_JOB >> {log}"
"#,
        src = src.display()
    );
    let profile = profile(&repo, "mixed", &body);
    let out = run(&repo, &profile, &["-q"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty(), "-q prints no summary: {}", text(&out.stdout));
    let errors: Vec<String> = text(&out.stderr).lines().map(str::to_owned).collect();
    assert_eq!(errors.len(), 1, "one line per error: {errors:?}");
    assert!(errors[0].starts_with("cairn: job db: ") && errors[0].contains("exit"), "{errors:?}");

    let snaps = repo.json(&["snapshots"]);
    let paths: Vec<&str> = snaps.as_array().expect("list").iter().filter_map(|s| s["paths"][0].as_str()).collect();
    assert_eq!(paths, [src.display().to_string().as_str()], "no snapshot of the failed dump");
    let fired = lines_of(&hooks);
    assert_eq!(fired[..2], ["on-error db failure 1 []", "after files success"], "{fired:?}");
    // The run's own hook fires once, after the jobs, with the run's result and first error.
    assert_eq!(fired.len(), 3, "{fired:?}");
    assert!(fired[2].starts_with("run-on-error [] failure 1 job db: "), "{fired:?}");
}

#[test]
fn a_broken_profile_names_its_file_and_line() {
    let repo = TestRepo::new();
    let unknown = profile(&repo, "typo", "[backup]\ntag = [\"a\"]\nexclude-fiel = \"x\"\n");
    let out = repo.cairn().arg("--config").arg(&unknown).args(["snapshots"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains(&format!("{}:7: unknown key 'exclude-fiel' in [backup]", unknown.display())), "{err}");

    let switch = profile(&repo, "switch", "[check]\nread-data = \"yes\"\n");
    let err = text(&repo.cairn().arg("--config").arg(&switch).arg("check").output().expect("runs").stderr);
    assert!(err.contains(&format!("{}:6: 'read-data' is a switch", switch.display())), "{err}");

    let syntax = profile(&repo, "syntax", "[jobs.x]\npaths = [\"/a\"\n");
    let err = text(&repo.cairn().arg("--config").arg(&syntax).arg("run").output().expect("runs").stderr);
    let at = |line: u32| format!("{}:{line}:", syntax.display());
    assert!(err.contains(&at(6)) || err.contains(&at(7)), "{err}");

    let misplaced = profile(&repo, "misplaced", "[jobs.x]\npaths = [\"/a\"]\nrepo = \"/elsewhere\"\n");
    let err = text(&repo.cairn().arg("--config").arg(&misplaced).arg("run").output().expect("runs").stderr);
    assert!(err.contains(&format!("{}:7: unknown key 'repo' in [jobs.x]", misplaced.display())), "{err}");
}

#[test]
fn the_command_line_wins_over_the_profile_and_the_profile_over_the_environment() {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    std::fs::write(src.join("a.txt"), b"x").expect("write source");
    repo.cairn().args(["backup", "-q", "--host", "h1"]).arg(&src).assert().success();
    let other = TestRepo::new();
    // The profile names `repo`; the environment names `other`.
    let path = profile(&repo, "p", "[snapshots]\nhost = [\"nosuch\"]\n");
    let count = |args: &[&str]| -> usize {
        let out =
            other.cairn().arg("--config").arg(&path).args(["snapshots", "--json"]).args(args).output().expect("runs");
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("JSON").as_array().map_or(0, Vec::len)
    };
    // File over environment: the profile's repository, and its host filter.
    assert_eq!(count(&[]), 0);
    // Command line over file.
    assert_eq!(count(&["--host", "h1"]), 1);
    let r = other.repo_path();
    assert_eq!(count(&["--host", "h1", "-r", r.to_str().expect("utf-8")]), 0);
    // Found by name under $XDG_CONFIG_HOME/cairn/.
    let config_home = repo.scratch("config");
    std::fs::create_dir_all(config_home.join("cairn")).expect("mkdir");
    std::fs::copy(&path, config_home.join("cairn/named.toml")).expect("copy");
    let out = other
        .cairn()
        .env("XDG_CONFIG_HOME", &config_home)
        .args(["--profile", "named", "snapshots", "--json", "--host", "h1"])
        .output()
        .expect("runs");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("JSON").as_array().map(Vec::len),
        Some(1)
    );
    let out = other
        .cairn()
        .env("XDG_CONFIG_HOME", &config_home)
        .args(["--profile", "absent", "snapshots"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("absent.toml"), "{}", text(&out.stderr));
}

#[test]
fn check_records_show_in_status_and_their_hashes_are_checked() {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    std::fs::write(src.join("a.txt"), b"x").expect("write source");
    repo.cairn().args(["backup", "-q", "--time", "2026-11-22T10:00:00Z"]).arg(&src).assert().success();
    let out = repo.cairn().args(["status", "--time", "2026-11-22T12:00:00Z"]).output().expect("runs");
    assert!(!text(&out.stdout).contains("last successful check"), "no check yet: {}", text(&out.stdout));
    repo.cairn().args(["check", "-q"]).assert().success();
    let out = repo.cairn().args(["status", "--time", "2026-11-22T12:00:00Z"]).output().expect("runs");
    let stdout = text(&out.stdout);
    assert!(
        stdout.lines().any(|l| l.starts_with("last successful check: ") && l.contains("no damage found")),
        "{stdout}"
    );
    let status = repo.json(&["status", "--time", "2026-11-22T12:00:00Z"]);
    assert!(status["last_check"]["hostname"].is_string(), "{status}");
    let prom = repo.cairn().args(["status", "--prometheus", "--time", "2026-11-22T12:00:00Z"]).output().expect("runs");
    assert!(text(&prom.stdout).contains("cairn_last_check_success_timestamp_seconds "), "{}", text(&prom.stdout));
    assert_valid_exposition(&text(&prom.stdout));

    // A damaged record is damage that touches no snapshot, found with and without the key.
    let records: Vec<PathBuf> = std::fs::read_dir(repo.repo_path().join("records"))
        .expect("records/ exists")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(records.len(), 1);
    let mut bytes = std::fs::read(&records[0]).expect("read record");
    bytes[12] ^= 0x20;
    std::fs::write(&records[0], bytes).expect("damage record");
    for args in [&["check"][..], &["check", "--no-key"][..]] {
        let out = repo.cairn().args(args).output().expect("runs");
        assert_eq!(out.status.code(), Some(4), "{args:?}: {}", text(&out.stdout));
        assert!(text(&out.stdout).contains("damage: record "), "{args:?}: {}", text(&out.stdout));
    }
    // Prune and repair pass over records/ without touching it.
    repo.cairn().args(["prune", "-q"]).assert().success();
    repo.cairn().args(["repair", "index", "-q"]).assert().success();
    assert!(records[0].exists());
}

#[test]
fn metrics_files_of_run_and_forget_pass_promtool() {
    let repo = TestRepo::new();
    let (profile, _src, _hooks) = two_jobs(&repo);
    let dir = repo.scratch("textfile");
    let prom = dir.join("run.prom");
    let out = run(&repo, &profile, &["-q", "--metrics-file", prom.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let metrics = std::fs::read_to_string(&prom).expect("metrics written");
    assert_valid_exposition(&metrics);
    assert!(metrics.contains(r#"cairn_run_success{host="#) && metrics.contains(r#",job="nightly"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"job="nightly/files"}"#) && metrics.contains(r#"job="nightly/db"}"#), "{metrics}");
    assert!(metrics.contains("cairn_run_failed_jobs{"), "{metrics}");

    let forget = dir.join("forget.prom");
    repo.cairn().args(["forget", "-q", "--keep-last", "1", "--metrics-file"]).arg(&forget).assert().success();
    let metrics = std::fs::read_to_string(&forget).expect("metrics written");
    assert_valid_exposition(&metrics);
    assert!(metrics.contains("cairn_forget_success{"), "{metrics}");
}

#[test]
fn the_log_file_gets_one_timestamped_line_per_event_and_verbose_shows_steps() {
    let repo = TestRepo::new();
    let (profile, _src, _hooks) = two_jobs(&repo);
    let log = repo.dir.path().join("cairn.log");
    let out =
        repo.cairn().arg("--config").arg(&profile).args(["run", "-q", "--log-file"]).arg(&log).output().expect("runs");
    assert!(out.status.success() && out.stderr.is_empty(), "{}", text(&out.stderr));
    let lines = lines_of(&log);
    assert!(lines.iter().all(|l| l.len() > 25 && l.as_bytes()[4] == b'-' && l.contains(" cairn[")), "{lines:?}");
    for event in
        ["cairn run started", "job files: started", "job db: snapshot ", "check: due", "ended with exit code 0"]
    {
        assert!(lines.iter().any(|l| l.contains(event)), "no '{event}' in {lines:?}");
    }
    // Appended, not replaced.
    let before = lines.len();
    let out =
        repo.cairn().arg("--config").arg(&profile).args(["run", "-v", "--log-file"]).arg(&log).output().expect("runs");
    assert!(out.status.success());
    assert!(lines_of(&log).len() > before);
    assert!(text(&out.stderr).contains("job files: started"), "-v shows steps: {}", text(&out.stderr));
}

#[test]
fn generated_systemd_units_pass_systemd_analyze_verify() {
    let repo = TestRepo::new();
    let dir = repo.scratch("units");
    repo.cairn()
        .args(["generate", "--systemd", "nightly", "--on-calendar", "*-*-* 03:17", "--unit-dir"])
        .arg(&dir)
        .assert()
        .success();
    let service = dir.join("cairn-nightly.service");
    let timer = dir.join("cairn-nightly.timer");
    let unit = std::fs::read_to_string(&service).expect("service written");
    assert!(unit.contains("--profile nightly run --quiet"), "{unit}");
    assert!(std::fs::read_to_string(&timer).expect("timer written").contains("OnCalendar=*-*-* 03:17"));
    let out = std::process::Command::new("systemd-analyze").arg("verify").arg(&service).arg(&timer).output().expect(
        "systemd-analyze is missing: install the Debian package 'systemd' (scripts/test.sh does) to verify the units",
    );
    assert!(
        out.status.success(),
        "systemd-analyze verify refused the units (or cannot run here: it needs systemd's unit loader, not a running systemd):\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}
