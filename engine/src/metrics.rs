//! Prometheus text exposition (format 0.0.4) for node_exporter's textfile collector: what a
//! backup did, and what the repository holds.
//!
//! Files are written atomically (a temporary file in the same folder, then a rename), because the
//! collector may read the file at any moment and must never see half of it. Every metric is a
//! gauge: each file describes the last run, not a running total.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use crate::commands::backup::BackupReport;
use crate::commands::status::StatusReport;
use crate::error::{Error, Result};

/// Labels of one sample, in the order given.
pub type Labels = Vec<(String, String)>;

#[derive(Debug)]
struct Family {
    help: &'static str,
    samples: Vec<(Labels, f64)>,
}

/// A set of gauge families, rendered in the order they were first added.
#[derive(Debug, Default)]
pub struct Metrics {
    order: Vec<String>,
    families: BTreeMap<String, Family>,
}

impl Metrics {
    /// Adds a sample of the gauge `name`.
    pub fn gauge(&mut self, name: &str, help: &'static str, labels: &Labels, value: f64) {
        if !self.families.contains_key(name) {
            self.order.push(name.to_owned());
        }
        self.families
            .entry(name.to_owned())
            .or_insert(Family { help, samples: Vec::new() })
            .samples
            .push((labels.clone(), value));
    }

    /// Adds every sample of `other`, family by family (a family both have keeps this one's help).
    pub fn merge(&mut self, other: Metrics) {
        let mut other = other;
        for name in other.order {
            let Some(family) = other.families.remove(&name) else { continue };
            match self.families.get_mut(&name) {
                Some(mine) => mine.samples.extend(family.samples),
                None => {
                    self.order.push(name.clone());
                    self.families.insert(name, family);
                }
            }
        }
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for name in &self.order {
            let Some(family) = self.families.get(name) else { continue };
            // writeln! into a String cannot fail.
            let _ = writeln!(out, "# HELP {name} {}", family.help);
            let _ = writeln!(out, "# TYPE {name} gauge");
            for (labels, value) in &family.samples {
                let _ = writeln!(out, "{name}{} {}", render_labels(labels), render_value(*value));
            }
        }
        out
    }
}

fn render_labels(labels: &Labels) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
    format!("{{{}}}", parts.join(","))
}

/// Label values escape backslash, double quote and line feed.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn render_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 { format!("{}", v as i64) } else { format!("{v}") }
}

fn seconds(ns: i64) -> f64 {
    ns as f64 / 1e9
}

/// `host` plus `job` when there is one.
pub fn base_labels(host: &str, job: Option<&str>) -> Labels {
    let mut labels = vec![("host".to_owned(), host.to_owned())];
    if let Some(job) = job {
        labels.push(("job".to_owned(), job.to_owned()));
    }
    labels
}

fn with(labels: &Labels, key: &str, value: &str) -> Labels {
    let mut l = labels.clone();
    l.push((key.to_owned(), value.to_owned()));
    l
}

const LAST_SUCCESS: &str = "cairn_backup_last_success_timestamp_seconds";

/// What one backup run did. `outcome` is the report of a backup that wrote its snapshot, or
/// `None` for one that failed; `previous_success_s` is the last success time to carry over from
/// the previous file when this run failed. `snapshots` counts the host's snapshots afterwards.
pub fn backup_metrics(
    labels: &Labels,
    outcome: Option<&BackupReport>,
    finished_ns: i64,
    previous_success_s: Option<f64>,
    snapshots: Option<usize>,
) -> Metrics {
    let mut m = Metrics::default();
    m.gauge(
        "cairn_backup_success",
        "1 if the last backup wrote a snapshot, 0 if it failed.",
        labels,
        if outcome.is_some() { 1.0 } else { 0.0 },
    );
    m.gauge(
        "cairn_backup_last_run_timestamp_seconds",
        "Unix time the last backup run ended.",
        labels,
        seconds(finished_ns),
    );
    let last_success = if outcome.is_some() { Some(seconds(finished_ns)) } else { previous_success_s };
    if let Some(t) = last_success {
        m.gauge(LAST_SUCCESS, "Unix time the last successful backup ended.", labels, t);
    }
    if let Some(r) = outcome {
        let s = &r.summary;
        m.gauge(
            "cairn_backup_duration_seconds",
            "How long the last successful backup took.",
            labels,
            s.duration_ns as f64 / 1e9,
        );
        m.gauge(
            "cairn_backup_read_bytes",
            "Bytes the last successful backup read from its source.",
            labels,
            s.bytes_read as f64,
        );
        m.gauge(
            "cairn_backup_added_bytes",
            "Plaintext bytes the last successful backup added to the repository.",
            labels,
            s.bytes_added_plain as f64,
        );
        m.gauge(
            "cairn_backup_added_stored_bytes",
            "Stored (compressed, encrypted) bytes the last successful backup added.",
            labels,
            s.bytes_added_stored as f64,
        );
        m.gauge(
            "cairn_backup_source_size_bytes",
            "Size of every file in the last successful backup's snapshot.",
            labels,
            s.total_size as f64,
        );
        for (state, n) in [("new", s.files_new), ("changed", s.files_changed), ("unchanged", s.files_unchanged)] {
            m.gauge(
                "cairn_backup_files",
                "Files in the last successful backup, by state.",
                &with(labels, "state", state),
                n as f64,
            );
        }
        m.gauge(
            "cairn_backup_errors",
            "Entries the last successful backup could not read (missing from its snapshot).",
            labels,
            r.warnings.len() as f64,
        );
    }
    if let Some(n) = snapshots {
        m.gauge("cairn_snapshots", "Snapshots of this host in the repository.", labels, n as f64);
    }
    m
}

/// The outcome of a maintenance command (`check`, `prune`): success (1, or 0 when it failed or found
/// damage), when it last ran and last succeeded (`previous_success_s` is carried over from the
/// previous file when this run did not succeed), how long it took, and the damage found.
pub fn maintenance_metrics(
    command: &str,
    labels: &Labels,
    succeeded: bool,
    finished_ns: i64,
    duration_s: f64,
    previous_success_s: Option<f64>,
    damage: Option<usize>,
) -> Metrics {
    let mut m = Metrics::default();
    m.gauge(
        &format!("cairn_{command}_success"),
        "1 if the last run succeeded (for check: found no damage), 0 if not.",
        labels,
        if succeeded { 1.0 } else { 0.0 },
    );
    m.gauge(
        &format!("cairn_{command}_last_run_timestamp_seconds"),
        "Unix time the last run ended.",
        labels,
        seconds(finished_ns),
    );
    let last_success = if succeeded { Some(seconds(finished_ns)) } else { previous_success_s };
    if let Some(t) = last_success {
        m.gauge(
            &format!("cairn_{command}_last_success_timestamp_seconds"),
            "Unix time the last successful run ended.",
            labels,
            t,
        );
    }
    m.gauge(&format!("cairn_{command}_duration_seconds"), "How long the last run took.", labels, duration_s);
    if let Some(n) = damage {
        m.gauge(&format!("cairn_{command}_damage"), "Problems the last run found.", labels, n as f64);
    }
    m
}

/// The repository as `status` saw it, per backup group (labelled by `host` and `paths`, the
/// group's paths joined by `,`, and `tags` when grouped by them), plus totals.
pub fn repository_metrics(report: &StatusReport, job: Option<&str>) -> Metrics {
    let mut m = Metrics::default();
    let mut total = Vec::new();
    if let Some(job) = job {
        total.push(("job".to_owned(), job.to_owned()));
    }
    m.gauge(
        "cairn_status_snapshots",
        "Snapshots status considered (every snapshot unless filtered).",
        &total,
        report.snapshots as f64,
    );
    m.gauge("cairn_status_damaged_snapshots", "Snapshot files that could not be read.", &total, report.damaged as f64);
    m.gauge(
        "cairn_status_state",
        "Overall state: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
        &total,
        f64::from(report.state.code()),
    );
    if let Some(c) = &report.last_check {
        m.gauge(
            "cairn_last_check_success_timestamp_seconds",
            "Unix time the last successful check of the repository ended (from its records).",
            &total,
            seconds(c.time_ns),
        );
    }
    if let Some(d) = &report.last_drill {
        m.gauge(
            "cairn_last_drill_success_timestamp_seconds",
            "Unix time the last successful restore drill ended (from the records).",
            &total,
            seconds(d.time_ns),
        );
    }
    for g in &report.groups {
        let mut labels = base_labels(g.group.host.as_deref().unwrap_or(""), job);
        labels.push(("paths".to_owned(), g.group.paths.as_ref().map(|p| p.join(",")).unwrap_or_default()));
        if let Some(tags) = &g.group.tags {
            labels.push(("tags".to_owned(), tags.join(",")));
        }
        m.gauge("cairn_group_snapshots", "Snapshots in the backup group.", &labels, g.snapshots as f64);
        m.gauge(
            "cairn_group_state",
            "The group's state: 0 OK, 1 WARNING, 2 CRITICAL.",
            &labels,
            f64::from(g.state.code()),
        );
        m.gauge(
            "cairn_group_latest_snapshot_timestamp_seconds",
            "Unix time of the group's newest snapshot.",
            &labels,
            seconds(g.time_ns),
        );
        m.gauge(
            "cairn_group_latest_snapshot_added_bytes",
            "Plaintext bytes the group's newest snapshot added.",
            &labels,
            g.bytes_added as f64,
        );
        m.gauge(
            "cairn_group_latest_snapshot_errors",
            "Entries the group's newest snapshot could not read.",
            &labels,
            g.warnings as f64,
        );
        if let Some(d) = &g.last_drill {
            m.gauge(
                "cairn_group_last_drill_success_timestamp_seconds",
                "Unix time the last successful restore drill of the group ended.",
                &labels,
                seconds(d.time_ns),
            );
        }
    }
    m
}

/// The value of `name` with exactly `labels` in a previously written file, if any.
pub fn previous_value(path: &Path, name: &str, labels: &Labels) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    let prefix = format!("{name}{} ", render_labels(labels));
    text.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.trim().parse().ok())
}

/// The last success time of a backup recorded in the metrics file at `path` for these labels.
pub fn previous_success(path: &Path, labels: &Labels) -> Option<f64> {
    previous_value(path, LAST_SUCCESS, labels)
}

/// The last success time of `command` recorded in the metrics file at `path` for these labels.
pub fn previous_command_success(path: &Path, command: &str, labels: &Labels) -> Option<f64> {
    previous_value(path, &format!("cairn_{command}_last_success_timestamp_seconds"), labels)
}

/// Writes `text` to `path` atomically: into a temporary file in the same folder, flushed, then
/// renamed over `path`, so a reader sees the old file or the new one, never a part.
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| Error::invalid(format!("{} is not a file name", path.display())))?;
    // The collector only reads `*.prom`; the temporary name does not end so.
    let tmp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(format!("writing metrics file {}", path.display()), e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut m = Metrics::default();
        m.gauge("x", "help", &vec![("host".to_owned(), "a\"b\\c\nd".to_owned())], 1.5);
        assert_eq!(m.render(), "# HELP x help\n# TYPE x gauge\nx{host=\"a\\\"b\\\\c\\nd\"} 1.5\n");
    }

    #[test]
    fn the_previous_success_is_read_back() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let path = dir.path().join("cairn.prom");
        let labels = base_labels("db1", Some("nightly"));
        let m = backup_metrics(&labels, None, 2_000_000_000, Some(1234.0), None);
        write_atomic(&path, &m.render()).expect("write");
        assert_eq!(previous_success(&path, &labels), Some(1234.0));
        assert_eq!(previous_success(&path, &base_labels("db1", None)), None);
        let names: Vec<_> = std::fs::read_dir(dir.path()).expect("list").flatten().map(|e| e.file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("cairn.prom")], "no temporary file is left");
    }
}
