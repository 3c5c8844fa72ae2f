//! `cairn pg backup|restore|drill`: PostgreSQL databases backed up table by table from one
//! consistent snapshot, restored whole or per table, and drilled. The database is `--db URL`
//! (a `postgresql://` URL or `key=value` string) completed from the usual `PG*` variables; its
//! password goes to pg_dump/pg_restore only through their environment.

use anyhow::Result;
use cairn_engine::commands::pg_backup::{PgBackupOptions, pg_backup};
use cairn_engine::commands::pg_drill::{PgDrillOptions, Scratch, pg_drill};
use cairn_engine::commands::pg_restore::{PgRestoreOptions, Sections, pg_restore};
use cairn_engine::postgres::PgTarget;

use super::FilterArgs;
use crate::progress::Bar;
use crate::{GlobalArgs, exit, output};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub what: What,
}

#[derive(Debug, clap::Subcommand)]
pub enum What {
    /// Back up a database: one consistent snapshot, one file per table
    Backup(BackupArgs),
    /// Restore a `pg backup` snapshot into a database (whole, or some tables)
    Restore(RestoreArgs),
    /// Restore a snapshot into a scratch database, compare every table with the manifest, drop it
    Drill(DrillArgs),
}

#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// Database: postgresql://USER@HOST:PORT/DB or 'host=... dbname=...' (default: the PG* variables)
    #[arg(long, value_name = "URL")]
    pub db: Option<String>,
    /// Connections copying tables at once
    #[arg(short, long, default_value_t = 2, value_name = "N")]
    pub jobs: usize,
    /// Only tables matching this pattern (`schema.table` or `table`, `*` and `?`; repeatable)
    #[arg(short = 't', long = "table", value_name = "PATTERN")]
    pub tables: Vec<String>,
    /// Leave out the rows of tables matching this pattern (repeatable; their definition stays)
    #[arg(short = 'T', long = "exclude-table", value_name = "PATTERN")]
    pub exclude_tables: Vec<String>,
    /// Add tags to the snapshot (repeatable or comma-separated)
    #[arg(long = "tag", value_name = "TAG", value_delimiter = ',')]
    pub tags: Vec<String>,
    /// Host name recorded in the snapshot (default: this machine's)
    #[arg(long)]
    pub host: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// Snapshot: `latest`, an id or a unique prefix
    pub snapshot: String,
    /// Target database (default: the PG* variables)
    #[arg(long, value_name = "URL")]
    pub db: Option<String>,
    /// Only tables matching this pattern, with their indexes, constraints and sequences (repeatable)
    #[arg(short = 't', long = "table", value_name = "PATTERN")]
    pub tables: Vec<String>,
    /// Only the schema (with sequences' values and large objects), no rows
    #[arg(long, conflicts_with = "data_only")]
    pub schema_only: bool,
    /// Only the rows, into existing empty tables
    #[arg(long)]
    pub data_only: bool,
    /// Connections loading tables at once
    #[arg(short, long, default_value_t = 2, value_name = "N")]
    pub jobs: usize,
    /// Replace what is there: drop the target's schemas (with --table: those tables) first
    #[arg(long)]
    pub clean: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Debug, clap::Args)]
pub struct DrillArgs {
    /// Snapshot: `latest`, an id or a unique prefix
    pub snapshot: String,
    /// Server to create the scratch database on (connects to the database named, e.g. postgres)
    #[arg(long, value_name = "URL")]
    pub scratch_db: Option<String>,
    /// Restore into a throwaway cluster started with initdb (in $TMPDIR; newest server under
    /// /usr/lib/postgresql or PG_BIN), removed after the drill
    #[arg(long, conflicts_with = "scratch_db")]
    pub scratch_cluster: bool,
    /// An assertion run in the restored database: its first row's first column must be true (repeatable)
    #[arg(long = "check-sql", value_name = "SQL")]
    pub check_sql: Vec<String>,
    /// Connections loading tables at once
    #[arg(short, long, default_value_t = 2, value_name = "N")]
    pub jobs: usize,
    #[command(flatten)]
    pub filter: FilterArgs,
}

pub fn run(global: &GlobalArgs, args: Args) -> Result<u8> {
    match args.what {
        What::Backup(a) => backup(global, a),
        What::Restore(a) => restore(global, a),
        What::Drill(a) => drill(global, a),
    }
}

/// The engine's options for `pg backup` ARGS, the snapshot dated `time_ns` (default: now).
pub fn backup_options(a: BackupArgs, time_ns: Option<i64>) -> Result<PgBackupOptions> {
    Ok(PgBackupOptions {
        target: PgTarget::new(a.db.as_deref())?,
        jobs: a.jobs,
        tables: a.tables,
        exclude_tables: a.exclude_tables,
        tags: a.tags.into_iter().filter(|t| !t.is_empty()).collect(),
        host: a.host,
        time_ns,
    })
}

fn backup(global: &GlobalArgs, a: BackupArgs) -> Result<u8> {
    let opts = backup_options(a, None)?;
    super::stop_on_signals()?;
    let repo = super::open(global)?;
    let bar = Bar::new(!global.quiet && !global.json, "pg backup");
    let report = pg_backup(&repo, opts, &bar);
    bar.finish();
    let report = report?;
    if global.json {
        output::json(&report)?;
    } else if !global.quiet {
        let s = &report.backup.summary;
        output::line(&format!(
            "Database {} (PostgreSQL {}, LSN {}): {} tables, {} rows, {} large objects",
            report.database,
            report.server_version,
            report.snapshot_lsn,
            report.tables,
            report.rows,
            report.large_objects
        ))?;
        output::line(&format!(
            "Added to the repository: {} ({} stored) in {}",
            output::size(s.bytes_added_plain),
            output::size(s.bytes_added_stored),
            output::duration(s.duration_ns)
        ))?;
        if let Some(id) = report.backup.snapshot_id {
            output::line(&format!("snapshot {} saved", id.short()))?;
        }
    }
    Ok(exit::OK)
}

fn sections(a: &RestoreArgs) -> Sections {
    if a.schema_only {
        Sections::SchemaOnly
    } else if a.data_only {
        Sections::DataOnly
    } else {
        Sections::All
    }
}

fn restore(global: &GlobalArgs, a: RestoreArgs) -> Result<u8> {
    let opts = PgRestoreOptions {
        target: PgTarget::new(a.db.as_deref())?,
        tables: a.tables.clone(),
        sections: sections(&a),
        jobs: a.jobs,
        clean: a.clean,
    };
    super::stop_on_signals()?;
    let repo = super::open(global)?;
    let report = pg_restore(&repo, &a.snapshot, &a.filter.to_filter(), &opts)?;
    if global.json {
        output::json(&report)?;
    } else if !global.quiet {
        output::line(&format!(
            "Restored snapshot {} of '{}' into '{}': {} tables, {} rows, {} in {}",
            report.snapshot.short(),
            report.source_database,
            report.target_database,
            report.tables.len(),
            report.rows,
            output::size(report.bytes),
            output::duration(report.duration_ns)
        ))?;
    }
    Ok(exit::OK)
}

fn drill(global: &GlobalArgs, a: DrillArgs) -> Result<u8> {
    let scratch = if a.scratch_cluster {
        Scratch::Cluster
    } else {
        Scratch::Server(Box::new(PgTarget::new(a.scratch_db.as_deref())?))
    };
    let opts = PgDrillOptions { scratch, check_sql: a.check_sql, jobs: a.jobs };
    super::stop_on_signals()?;
    let repo = super::open(global)?;
    let report = pg_drill(&repo, &a.snapshot, &a.filter.to_filter(), &opts)?;
    if global.json {
        output::json(&report)?;
    } else if !global.quiet || !report.passed {
        let verdict = if report.passed { "PASSED" } else { "FAILED" };
        output::line(&format!(
            "Drill of snapshot {} ('{}') {verdict}: {} tables compared, {} checks, recovery time {}",
            report.snapshot.short(),
            report.database,
            report.tables.len(),
            report.checks.len(),
            output::duration(report.recovery_ns)
        ))?;
        if report.scratch_cluster.is_some() {
            output::line(&format!(
                "  scratch cluster started in {}, stopped and removed",
                output::duration(report.cluster_setup_ns)
            ))?;
        }
        for p in &report.problems {
            output::line(&format!("  {p}"))?;
        }
    }
    if let Some(w) = &report.record_warning {
        eprintln!("cairn: warning: {w}");
    }
    Ok(if report.passed { exit::OK } else { exit::DAMAGE })
}
