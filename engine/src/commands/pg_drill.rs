//! `pg drill`: proves a `pg backup` snapshot restores. It creates a scratch database, restores the
//! snapshot into it, reads every table back with `COPY ... TO STDOUT` and compares its row count
//! and BLAKE3 with the manifest, runs the caller's assertions, and drops the scratch database
//! whatever happened. It never prints; the report says what passed and how long recovery took.
//!
//! With [`Scratch::Cluster`] the scratch database lives in a throwaway cluster
//! ([`crate::pg_cluster::ScratchCluster`]) started for the drill and removed after it, also when
//! the drill fails or is interrupted.

use std::time::Instant;

use cairn_format::SnapshotId;
use serde::Serialize;

use crate::commands::pg_restore::{PgRestoreOptions, PgSnapshot, Sections, restore_into};
use crate::commands::snapshots::SnapshotFilter;
use crate::error::Result;
use crate::pg_cluster::{ScratchCluster, major_version};
use crate::postgres::{CopyReader, PgTarget, copy_table_out, pg_error, pg_message, quote_ident};
use crate::repository::Repository;

/// Where the scratch database is created.
#[derive(Debug, Clone)]
pub enum Scratch {
    /// On this server (the database named is only connected to).
    Server(Box<PgTarget>),
    /// In a throwaway cluster started with `initdb` for the drill and removed after it.
    Cluster,
}

/// Options of `pg drill`.
#[derive(Debug, Clone)]
pub struct PgDrillOptions {
    pub scratch: Scratch,
    /// Assertions: each must return one row whose first column is true.
    pub check_sql: Vec<String>,
    pub jobs: usize,
}

/// One table compared with the manifest.
#[derive(Debug, Clone, Serialize)]
pub struct DrilledTable {
    pub table: String,
    pub rows_expected: u64,
    pub rows_restored: u64,
    pub checksum_matches: bool,
}

/// One assertion's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct DrillCheck {
    pub sql: String,
    pub passed: bool,
    /// What it returned, or its error.
    pub result: String,
}

/// What `pg drill` found.
#[derive(Debug, Clone, Serialize)]
pub struct PgDrillReport {
    pub snapshot: SnapshotId,
    pub database: String,
    pub scratch_database: String,
    /// The throwaway cluster's folder (removed when the drill ended), with `--scratch-cluster`.
    pub scratch_cluster: Option<String>,
    /// Time to create and start the throwaway cluster (0 without one).
    pub cluster_setup_ns: u64,
    pub passed: bool,
    /// Why the drill failed, one line per problem.
    pub problems: Vec<String>,
    pub tables: Vec<DrilledTable>,
    pub checks: Vec<DrillCheck>,
    /// Time to a usable database: schema, rows, indexes (the restore alone).
    pub recovery_ns: u64,
    pub duration_ns: u64,
    /// The record of this drill in the repository (kind `drill`, scope the database), when saved.
    pub record: Option<String>,
    /// Why the record could not be saved or older ones not trimmed (the drill's result stands).
    pub record_warning: Option<String>,
}

/// Runs `pg drill`. A restore that fails is a failed drill (reported), not an error; errors are
/// for what stops the drill from running at all (no repository, no server).
pub fn pg_drill(
    repo: &Repository,
    spec: &str,
    filter: &SnapshotFilter,
    opts: &PgDrillOptions,
) -> Result<PgDrillReport> {
    let started = Instant::now();
    let snap = PgSnapshot::open(repo, spec, filter)?;
    let rt = crate::postgres::runtime()?;
    let cluster = match &opts.scratch {
        Scratch::Server(_) => None,
        Scratch::Cluster => Some(ScratchCluster::start(major_version(&snap.manifest.server_version))?),
    };
    let cluster_setup_ns = started.elapsed().as_nanos() as u64;
    let server = match (&opts.scratch, &cluster) {
        (_, Some(c)) => c.target(),
        (Scratch::Server(t), None) => (**t).clone(),
        (Scratch::Cluster, None) => unreachable!("a cluster drill has its cluster"),
    };
    crate::cancel::check()?;
    let admin = rt.block_on(server.connect())?;
    let suffix: [u8; 6] = crate::repository::random_bytes();
    let scratch_name = format!("cairn_drill_{}", suffix.iter().map(|b| format!("{b:02x}")).collect::<String>());
    rt.block_on(admin.batch_execute(&format!("CREATE DATABASE {} TEMPLATE template0", quote_ident(&scratch_name))))
        .map_err(|e| pg_error(format!("creating the scratch database on {}", server.server()), &e))?;
    let scratch = server.with_dbname(&scratch_name);

    let mut report = PgDrillReport {
        snapshot: snap.id,
        database: snap.manifest.database.clone(),
        scratch_database: scratch_name.clone(),
        scratch_cluster: cluster.as_ref().map(|c| c.dir().display().to_string()),
        cluster_setup_ns,
        passed: false,
        problems: Vec::new(),
        tables: Vec::new(),
        checks: Vec::new(),
        recovery_ns: 0,
        duration_ns: 0,
        record: None,
        record_warning: None,
    };
    let outcome = drill_in(repo, &snap, &rt, &scratch, opts, &mut report);
    if let Err(e) = outcome {
        report.problems.push(e.to_string());
    }
    // The scratch database goes whatever happened; a connection left over must not keep it.
    let dropped = rt
        .block_on(admin.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(&scratch_name))));
    if let Err(e) = dropped {
        report.problems.push(format!("could not drop the scratch database {scratch_name}: {}", pg_message(&e)));
    }
    drop(admin);
    if let Some(c) = cluster {
        let dir = c.dir().display().to_string();
        if let Err(e) = c.remove() {
            report.problems.push(format!("could not remove the scratch cluster {dir}: {e}"));
        }
    }
    // An interrupted drill proves nothing either way: it is not recorded.
    crate::cancel::check()?;
    report.passed = report.problems.is_empty();
    report.duration_ns = started.elapsed().as_nanos() as u64;
    record(repo, &mut report);
    Ok(report)
}

fn drill_in(
    repo: &Repository,
    snap: &PgSnapshot,
    rt: &tokio::runtime::Runtime,
    scratch: &PgTarget,
    opts: &PgDrillOptions,
    report: &mut PgDrillReport,
) -> Result<()> {
    let restore = PgRestoreOptions {
        target: scratch.clone(),
        tables: Vec::new(),
        sections: Sections::All,
        jobs: opts.jobs,
        clean: false,
    };
    let restore_started = Instant::now();
    restore_into(repo, snap, &None, &restore)?;
    report.recovery_ns = restore_started.elapsed().as_nanos() as u64;

    let client = rt.block_on(scratch.connect())?;
    for t in &snap.manifest.tables {
        let (tx, mut reader, digest) = CopyReader::channel(t.display());
        let copy = {
            let t = t.clone();
            let client = &client;
            async move {
                let r = copy_table_out(client, &t, &tx).await;
                match r {
                    Ok(()) => {
                        let _ = tx.send(Ok(bytes::Bytes::new())).await;
                        Ok(())
                    }
                    Err(m) => Err(m),
                }
            }
        };
        // The reader is drained on this thread while the COPY runs on the runtime.
        let read = std::thread::scope(|s| {
            let drain = s.spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
            let copied = rt.block_on(copy);
            (copied, drain.join())
        });
        if let (Err(m), _) = &read {
            report.problems.push(m.clone());
            continue;
        }
        let d = digest.lock().expect("digest lock is never poisoned");
        let matches = d.rows == t.rows && d.hex() == t.blake3;
        if !matches {
            report.problems.push(format!(
                "table {} differs from the manifest: {} rows restored, {} expected{}",
                t.display(),
                d.rows,
                t.rows,
                if d.rows == t.rows { " (same count, different contents)" } else { "" }
            ));
        }
        report.tables.push(DrilledTable {
            table: t.display(),
            rows_expected: t.rows,
            rows_restored: d.rows,
            checksum_matches: matches,
        });
    }
    for sql in &opts.check_sql {
        let check = match rt.block_on(client.simple_query(sql)) {
            Ok(messages) => {
                let first = messages.iter().find_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).map(str::to_owned)),
                    _ => None,
                });
                match first {
                    Some(Some(v)) => DrillCheck { sql: sql.clone(), passed: v == "t", result: v },
                    Some(None) => DrillCheck { sql: sql.clone(), passed: false, result: "NULL".into() },
                    None => DrillCheck { sql: sql.clone(), passed: false, result: "no rows".into() },
                }
            }
            Err(e) => DrillCheck { sql: sql.clone(), passed: false, result: format!("error: {}", pg_message(&e)) },
        };
        if !check.passed {
            report.problems.push(format!("check failed ({}): {}", check.result, check.sql));
        }
        report.checks.push(check);
    }
    drop(client);
    Ok(())
}

/// Records the drill's outcome in the repository (spec/records.md, kind `drill`), so that `status`
/// can report the last successful drill of the database.
fn record(repo: &Repository, report: &mut PgDrillReport) {
    let summary = if report.passed {
        format!(
            "snapshot {} restored and matched its manifest ({} tables)",
            report.snapshot.short(),
            report.tables.len()
        )
    } else {
        format!(
            "snapshot {} failed: {}",
            report.snapshot.short(),
            report.problems.first().map(String::as_str).unwrap_or("")
        )
    };
    let details = serde_json::json!({
        "snapshot": report.snapshot.to_string(),
        // `status` shows this drill in the group of the snapshot it restored.
        "snapshot_id": report.snapshot.to_hex(),
        "tables": report.tables.len(),
        "checks": report.checks.len(),
        "recovery_ns": report.recovery_ns,
        "scratch_cluster": report.scratch_cluster.is_some(),
        "problems": report.problems,
    });
    let rec = crate::records::new_record(
        "drill",
        &report.database,
        crate::commands::backup::now_ns(),
        report.duration_ns,
        report.passed,
        summary,
        details,
    );
    match crate::records::save(repo, &rec) {
        Ok((id, cleanup)) => {
            report.record = Some(id.to_string());
            report.record_warning = cleanup.map(|e| format!("trimming older drill records: {e}"));
        }
        Err(e) => report.record_warning = Some(format!("the drill's record was not saved: {e}")),
    }
}
