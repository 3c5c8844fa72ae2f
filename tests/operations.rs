//! Operations: `status` as a monitoring plugin (exit codes 0/1/2/3, first line, `--json`), the
//! Prometheus metrics files, and the shell completions and man pages.

use std::process::Output;

use crate::support::TestRepo;

/// The clock every status check in this module reads.
const NOW: &str = "2026-11-22T12:00:00Z";

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A backup of `src` as host `host` at `time`.
fn backup_at(repo: &TestRepo, src: &std::path::Path, host: &str, time: &str) {
    repo.cairn().args(["backup", "--host", host, "--time", time]).arg(src).assert().success();
}

/// A repository with host `fresh` backed up 2 hours before [`NOW`] (and once a day earlier) and
/// host `stale` backed up 30 hours before it.
fn two_groups() -> (TestRepo, std::path::PathBuf) {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    std::fs::write(src.join("a.txt"), b"first").expect("write source");
    backup_at(&repo, &src, "fresh", "2026-11-21T10:00:00Z");
    backup_at(&repo, &src, "stale", "2026-11-21T06:00:00Z");
    std::fs::write(src.join("b.txt"), vec![7u8; 5000]).expect("write source");
    backup_at(&repo, &src, "fresh", "2026-11-22T10:00:00Z");
    (repo, src)
}

fn status(repo: &TestRepo, args: &[&str]) -> (i32, String) {
    let out = repo.cairn().args(["status", "--time", NOW]).args(args).output().expect("runs");
    (out.status.code().expect("exit code"), stdout(&out))
}

#[test]
fn status_exit_codes_follow_the_plugin_convention() {
    let (repo, _src) = two_groups();

    let (code, out) = status(&repo, &["--warn", "24h", "--crit", "48h"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(code, 1, "{out}");
    assert!(lines[0].starts_with("CAIRN WARNING - 1 of 2 groups stale, newest 2h ago, oldest 1d 6h ago | "), "{out}");
    assert!(lines[0].contains("groups=2 snapshots=3 damaged=0 oldest_age=108000s;86400;172800;0"), "{out}");
    assert!(lines[1].starts_with("WARNING: host [stale] paths ["), "{out}");
    assert!(lines[1].contains("is 1d 6h old, more than 1d"), "{out}");
    assert!(lines[2].starts_with("OK: host [fresh] paths ["), "{out}");
    assert_eq!(lines.len(), 3, "{out}");

    let (code, out) = status(&repo, &["--max-age", "25h"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.starts_with("CAIRN CRITICAL - 1 of 2 groups stale"), "{out}");
    assert!(out.lines().nth(1).is_some_and(|l| l.starts_with("CRITICAL: host [stale]")), "{out}");

    // The default limit is 25 hours.
    let (code, out) = status(&repo, &[]);
    assert_eq!(code, 2, "{out}");

    let (code, out) = status(&repo, &["--host", "fresh", "--max-age", "25h"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("CAIRN OK - 1 group, newest 2h ago, oldest 2h ago | groups=1 snapshots=2"), "{out}");

    // With -q only the groups needing attention follow the first line.
    let out = repo.cairn().args(["status", "-q", "--time", NOW, "--host", "fresh"]).output().expect("runs");
    assert_eq!(stdout(&out).lines().count(), 1, "{}", stdout(&out));

    // Measured from a later clock, the fresh group goes stale too.
    let out = repo.cairn().args(["status", "--time", "2026-11-25T12:00:00Z", "--warn", "1d"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).starts_with("CAIRN WARNING - 2 of 2 groups stale"), "{}", stdout(&out));
}

#[test]
fn status_of_an_empty_selection_is_unknown() {
    let (repo, _src) = two_groups();
    let (code, out) = status(&repo, &["--host", "nosuch"]);
    assert_eq!(code, 3, "{out}");
    assert!(out.starts_with("CAIRN UNKNOWN - no snapshots match | groups=0 snapshots=0"), "{out}");

    let empty = TestRepo::new();
    let (code, out) = status(&empty, &[]);
    assert_eq!(code, 3, "{out}");
    assert!(out.starts_with("CAIRN UNKNOWN - no snapshots match"), "{out}");
}

#[test]
fn status_of_an_unreadable_repository_is_unknown() {
    let missing = TestRepo::uninitialised();
    let (code, out) = status(&missing, &[]);
    assert_eq!(code, 3, "{out}");
    assert!(out.starts_with("CAIRN UNKNOWN - "), "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");

    let (repo, _src) = two_groups();
    let out =
        repo.cairn().env("CAIRN_PASSWORD", "hunter2-not-it").args(["status", "--time", NOW]).output().expect("runs");
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    assert!(stdout(&out).starts_with("CAIRN UNKNOWN - "), "{}", stdout(&out));
    assert!(!stdout(&out).contains("hunter2"), "the password must not be echoed: {}", stdout(&out));

    // A bad threshold is UNKNOWN as well, not a success.
    let (code, out) = status(&repo, &["--warn", "5y"]);
    assert_eq!(code, 3, "{out}");
}

#[test]
fn status_json_has_the_documented_shape() {
    let (repo, _src) = two_groups();
    let out = repo
        .cairn()
        .args(["status", "--json", "--time", NOW, "--warn", "24h", "--crit", "48h"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["state"], "WARNING");
    assert_eq!(v["now"], NOW);
    assert_eq!(v["warn_s"], 86_400);
    assert_eq!(v["crit_s"], 172_800);
    assert_eq!(v["snapshots"], 3);
    assert_eq!(v["damaged"], 0);
    let groups = v["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 2);
    let fresh = &groups[0];
    assert_eq!(fresh["state"], "OK");
    assert_eq!(fresh["group"]["host"], "fresh");
    assert!(fresh["group"]["paths"].as_array().is_some_and(|p| p.len() == 1));
    assert_eq!(fresh["snapshots"], 2);
    assert_eq!(fresh["time"], "2026-11-22T10:00:00Z");
    assert_eq!(fresh["age_s"], 7200);
    assert!(fresh["bytes_added"].as_u64().is_some_and(|b| b >= 5000), "{fresh}");
    assert!(fresh["bytes_added_stored"].is_u64());
    assert_eq!(fresh["warnings"], 0);
    let id = fresh["id"].as_str().expect("id");
    assert_eq!(id.len(), 64);
    assert!(id.starts_with(fresh["short_id"].as_str().expect("short id")));
    let stale = &groups[1];
    assert_eq!(stale["state"], "WARNING");
    assert_eq!(stale["group"]["host"], "stale");
    assert_eq!(stale["age_s"], 30 * 3600);
}

/// Runs `promtool check metrics` on `text`; fails loudly when promtool is not installed
/// (Debian package `prometheus`; scripts/test.sh installs it).
pub(crate) fn assert_valid_exposition(text: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is missing: install the Debian package 'prometheus' (scripts/test.sh does)");
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("feed promtool");
    let out = child.wait_with_output().expect("promtool runs");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool rejects the metrics:\n{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The sample of `name` with exactly `labels` (`{host="db1",job="nightly"}`) in `text`.
fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn backup_metrics_file_passes_promtool_and_keeps_the_last_success_after_a_failure() {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    std::fs::write(src.join("a.txt"), vec![1u8; 10_000]).expect("write source");
    let dir = repo.scratch("textfile");
    let prom = dir.join("cairn.prom");
    let labels = r#"{host="db\"1",job="nightly"}"#;

    repo.cairn()
        .args(["backup", "-q", "--host", "db\"1", "--metrics-job", "nightly", "--metrics-file"])
        .arg(&prom)
        .arg(&src)
        .assert()
        .success();
    let text = std::fs::read_to_string(&prom).expect("metrics file written");
    assert_valid_exposition(&text);
    assert_eq!(sample(&text, &format!("cairn_backup_success{labels}")), Some(1.0), "{text}");
    let success = sample(&text, &format!("cairn_backup_last_success_timestamp_seconds{labels}")).expect("{text}");
    assert!(success > 1.7e9, "{text}");
    assert_eq!(sample(&text, &format!("cairn_backup_read_bytes{labels}")), Some(10_000.0), "{text}");
    assert!(sample(&text, &format!("cairn_backup_added_bytes{labels}")).is_some_and(|b| b >= 10_000.0), "{text}");
    assert_eq!(sample(&text, r#"cairn_backup_files{host="db\"1",job="nightly",state="new"}"#), Some(1.0), "{text}");
    assert_eq!(sample(&text, &format!("cairn_backup_errors{labels}")), Some(0.0), "{text}");
    assert_eq!(sample(&text, &format!("cairn_snapshots{labels}")), Some(1.0), "{text}");
    assert!(sample(&text, &format!("cairn_backup_duration_seconds{labels}")).is_some(), "{text}");

    // A failing source: no snapshot, the file says so and still holds the last success.
    repo.cairn()
        .args(["backup", "-q", "--host", "db\"1", "--metrics-job", "nightly", "--metrics-file"])
        .arg(&prom)
        .args(["--stdin-from-command", "--", "false"])
        .assert()
        .failure();
    let text = std::fs::read_to_string(&prom).expect("metrics file written");
    assert_valid_exposition(&text);
    assert_eq!(sample(&text, &format!("cairn_backup_success{labels}")), Some(0.0), "{text}");
    assert_eq!(sample(&text, &format!("cairn_backup_last_success_timestamp_seconds{labels}")), Some(success), "{text}");
    assert_eq!(sample(&text, &format!("cairn_snapshots{labels}")), Some(1.0), "{text}");
    let names: Vec<_> = std::fs::read_dir(&dir).expect("list").flatten().map(|e| e.file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("cairn.prom")], "no temporary file is left behind");
}

#[test]
fn status_prometheus_passes_promtool() {
    let (repo, _src) = two_groups();
    let out = repo
        .cairn()
        .args(["status", "--prometheus", "--metrics-job", "offsite", "--time", NOW, "--max-age", "25h"])
        .output()
        .expect("runs");
    // A stale group is in the metrics, not in the exit code: the metrics were produced.
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = stdout(&out);
    assert_valid_exposition(&text);
    assert_eq!(sample(&text, r#"cairn_status_snapshots{job="offsite"}"#), Some(3.0), "{text}");
    assert_eq!(sample(&text, r#"cairn_status_state{job="offsite"}"#), Some(2.0), "{text}");
    let stale = text.lines().find(|l| l.starts_with(r#"cairn_group_state{host="stale",job="offsite",paths=""#));
    assert!(stale.is_some_and(|l| l.ends_with(" 2")), "{text}");
    let fresh = text
        .lines()
        .find(|l| l.starts_with(r#"cairn_group_latest_snapshot_timestamp_seconds{host="fresh",job="offsite","#));
    assert!(fresh.is_some_and(|l| l.ends_with(" 1795341600")), "{text}");
}

#[test]
fn bash_completions_load() {
    let bin = crate::support::cairn_bin();
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("source <('{}' generate --completions bash) && complete -p cairn", bin.display()))
        .output()
        .expect("bash runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout(&out).contains("-F _cairn cairn"), "{}", stdout(&out));
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = std::process::Command::new(&bin).args(["generate", "--completions", shell]).output().expect("runs");
        assert!(out.status.success(), "{shell}");
        assert!(stdout(&out).contains("status") && stdout(&out).contains("max-age"), "{shell}");
    }
    let out = std::process::Command::new(&bin).args(["generate", "--completions", "tcsh"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(2), "an unknown shell is a usage error");
}

#[test]
fn man_pages_render() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let bin = crate::support::cairn_bin();
    let out = std::process::Command::new(&bin).arg("generate").arg("--man").arg(dir.path()).output().expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for page in ["cairn.1", "cairn-backup.1", "cairn-status.1", "cairn-key-add.1"] {
        let out = std::process::Command::new("man")
            .arg("-l")
            .arg(dir.path().join(page))
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .output()
            .expect("man is missing: install the Debian package 'man-db' (scripts/test.sh does)");
        assert!(out.status.success(), "{page}: {}", String::from_utf8_lossy(&out.stderr));
        let text = stdout(&out);
        let name = page.trim_end_matches(".1");
        assert!(text.contains("NAME") && text.contains(name), "{page}:\n{text}");
    }
    let out = std::process::Command::new("man")
        .arg("-l")
        .arg(dir.path().join("cairn-status.1"))
        .env("MANPAGER", "cat")
        .output()
        .expect("man runs");
    assert!(stdout(&out).contains("--max-age"), "{}", stdout(&out));
}

#[test]
fn version_prints_the_package_version() {
    let bin = crate::support::cairn_bin();
    let out = std::process::Command::new(&bin).arg("version").output().expect("runs");
    assert!(out.status.success());
    assert!(stdout(&out).starts_with(&format!("cairn {} on ", env!("CARGO_PKG_VERSION"))), "{}", stdout(&out));
    let out = std::process::Command::new(&bin).args(["version", "--json"]).output().expect("runs");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn check_metrics_file_records_damage_and_keeps_the_last_success() {
    let (repo, _src) = two_groups();
    let prom = repo.scratch("textfile").join("check.prom");
    let labels = r#"{job="weekly"}"#;
    let check = |expect: i32| {
        let out = repo
            .cairn()
            .args(["check", "-q", "--read-hashes", "--metrics-job", "weekly", "--metrics-file"])
            .arg(&prom)
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(expect), "{}", String::from_utf8_lossy(&out.stderr));
        let text = std::fs::read_to_string(&prom).expect("metrics file written");
        assert_valid_exposition(&text);
        text
    };
    // The host label is this machine's name; find the sample by its other labels.
    let value = |text: &str, name: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{name}{{host=")) && l.contains(&format!(",{}", &labels[1..])))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    let text = check(0);
    assert_eq!(value(&text, "cairn_check_success"), Some(1.0), "{text}");
    assert_eq!(value(&text, "cairn_check_damage"), Some(0.0), "{text}");
    let success = value(&text, "cairn_check_last_success_timestamp_seconds").expect("last success");

    let pack = walk_files(&repo.repo_path().join("data")).into_iter().next().expect("a pack file");
    crate::damage::flip_bit(&pack, 40);
    let text = check(4);
    assert_eq!(value(&text, "cairn_check_success"), Some(0.0), "{text}");
    assert!(value(&text, "cairn_check_damage").is_some_and(|n| n >= 1.0), "{text}");
    assert_eq!(value(&text, "cairn_check_last_success_timestamp_seconds"), Some(success), "{text}");
}

fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    crate::support::fstree::walk(dir, &mut |p, m| {
        if m.is_file() {
            out.push(p.to_path_buf());
        }
    });
    out.sort();
    out
}

#[test]
fn prune_metrics_file_passes_promtool() {
    let (repo, _src) = two_groups();
    let prom = repo.scratch("textfile").join("prune.prom");
    repo.cairn().args(["prune", "-q", "--metrics-file"]).arg(&prom).assert().success();
    let text = std::fs::read_to_string(&prom).expect("metrics file written");
    assert_valid_exposition(&text);
    let success = text.lines().find(|l| l.starts_with("cairn_prune_success{host="));
    assert!(success.is_some_and(|l| l.ends_with(" 1")), "{text}");
    assert!(text.contains("\ncairn_prune_last_success_timestamp_seconds{host="), "{text}");

    // A dry run changes nothing, and writes no metrics either.
    std::fs::remove_file(&prom).expect("remove");
    repo.cairn().args(["prune", "-q", "--dry-run", "--metrics-file"]).arg(&prom).assert().success();
    assert!(!prom.exists());
}
