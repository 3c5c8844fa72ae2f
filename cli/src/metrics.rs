//! `--metrics-file`: writing a run's Prometheus metrics where node_exporter's textfile collector
//! reads them.

use std::path::PathBuf;

use anyhow::{Context, Result};
use cairn_engine::Repository;
use cairn_engine::commands::backup::{BackupReport, now_ns};
use cairn_engine::metrics::{
    backup_metrics, base_labels, maintenance_metrics, previous_command_success, previous_success, write_atomic,
};

/// Where and under which labels a backup's metrics go.
pub struct BackupMetrics {
    pub path: PathBuf,
    pub host: String,
    pub job: Option<String>,
}

impl BackupMetrics {
    /// Writes the metrics of a backup that ended with `outcome`. A dry run writes nothing. When
    /// the backup failed, the file says so and keeps the previous success time, and a failure to
    /// write the file is only a warning (the backup's own error is what the caller reports).
    pub fn write(&self, repo: &Repository, outcome: &cairn_engine::Result<BackupReport>) -> Result<()> {
        if outcome.as_ref().is_ok_and(|r| r.dry_run) {
            return Ok(());
        }
        let labels = base_labels(&self.host, self.job.as_deref());
        let report = outcome.as_ref().ok();
        let previous = if report.is_none() { previous_success(&self.path, &labels) } else { None };
        // Counting this host's snapshots reads every snapshot file; a failure only leaves it out.
        let snapshots =
            repo.load_snapshots().ok().map(|(all, _)| all.iter().filter(|(_, s)| s.host == self.host).count());
        let text = backup_metrics(&labels, report, now_ns(), previous, snapshots).render();
        let written = write_atomic(&self.path, &text);
        match (written, report) {
            (Ok(()), _) => Ok(()),
            (Err(e), Some(_)) => Err(e).context("the snapshot was saved, but its metrics were not"),
            (Err(e), None) => {
                eprintln!("warning: {e}");
                Ok(())
            }
        }
    }
}

/// `--metrics-file` and `--metrics-job` for maintenance commands (check, prune).
#[derive(Debug, Clone, clap::Args)]
pub struct MetricsArgs {
    /// Write Prometheus metrics of this run to FILE (atomically; for node_exporter's textfile collector)
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,
    /// Add the label job="NAME" to the metrics
    #[arg(long, value_name = "NAME", requires = "metrics_file")]
    pub metrics_job: Option<String>,
}

impl MetricsArgs {
    /// Writes the outcome of `command`, labelled with this machine's host name. A failure to write
    /// is a warning: the command's own result is what the exit code reports.
    pub fn write(&self, command: &str, succeeded: bool, started: std::time::Instant, damage: Option<usize>) {
        let Some(path) = &self.metrics_file else { return };
        let labels = base_labels(&cairn_engine::repository::hostname(), self.metrics_job.as_deref());
        let previous = if succeeded { None } else { previous_command_success(path, command, &labels) };
        let duration = started.elapsed().as_secs_f64();
        let text = maintenance_metrics(command, &labels, succeeded, now_ns(), duration, previous, damage).render();
        if let Err(e) = write_atomic(path, &text) {
            eprintln!("warning: {e}");
        }
    }
}
