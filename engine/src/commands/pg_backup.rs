//! `pg backup`: one consistent snapshot of a PostgreSQL database, stored as one file per table.
//!
//! One REPEATABLE READ, READ ONLY transaction exports its snapshot and locks the tables it will
//! copy (ACCESS SHARE, as pg_dump does, so that no table is dropped or rewritten under the copy);
//! `pg_dump -Fc --snapshot` writes the schema, the sequences' values and the large objects from the
//! same snapshot, and `jobs` connections adopt the snapshot and stream each table with
//! `COPY ... TO STDOUT` straight into the backup pipeline: no temporary files, and memory bounded
//! by a few batches per connection. The snapshot holds `/<db>/schema.dump`,
//! `/<db>/data/<schema>.<table>.copy` and `/<db>/manifest.json`.
//!
//! Any failure (connection lost, COPY error, pg_dump failing) fails the backup before a snapshot is
//! written, naming the table or tool. It never prints.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use cairn_format::snapshot::SourceKind;
use serde::Serialize;

use crate::commands::backup::{
    BackupOptions, BackupReport, BackupSource, ParentChoice, StreamFile, StreamFiles, backup,
};
use crate::error::{Error, ErrorKind, Result};
use crate::postgres::{
    CopyReader, CopySender, DATA, MANIFEST, MANIFEST_FORMAT, MANIFEST_VERSION, Manifest, PgTarget, SCHEMA,
    StreamDigest, TableEntry, TablePattern, copy_table_out, pg_error, quote_ident, quote_literal, table_file_name,
    tool_error,
};
use crate::progress::Progress;
use crate::repository::Repository;

/// Options of `pg backup`.
#[derive(Debug)]
pub struct PgBackupOptions {
    pub target: PgTarget,
    /// Connections copying tables at once.
    pub jobs: usize,
    /// Only tables matching one of these (`schema.table` or `table`; `*` and `?`); all when empty.
    pub tables: Vec<String>,
    /// Tables matching one of these are left out (their definition stays in the schema).
    pub exclude_tables: Vec<String>,
    pub tags: Vec<String>,
    pub host: Option<String>,
    /// The snapshot's time (default: now), as `backup --time`.
    pub time_ns: Option<i64>,
}

/// What `pg backup` did.
#[derive(Debug, Clone, Serialize)]
pub struct PgBackupReport {
    pub database: String,
    pub server_version: String,
    pub snapshot_lsn: String,
    pub tables: u64,
    pub rows: u64,
    pub large_objects: u64,
    pub backup: BackupReport,
}

/// Facts read inside the exported snapshot.
struct SnapshotFacts {
    snapshot_id: String,
    lsn: String,
    server_version: String,
    database: String,
    large_objects: u64,
    /// Every ordinary table pg_dump would dump data for (its data is left out of schema.dump).
    all_tables: Vec<TableEntry>,
}

/// Runs `pg backup`.
pub fn pg_backup(repo: &Repository, opts: PgBackupOptions, progress: &dyn Progress) -> Result<PgBackupReport> {
    let include = TablePattern::parse_all(&opts.tables, "--table")?;
    let exclude = TablePattern::parse_all(&opts.exclude_tables, "--exclude-table")?;
    let rt = crate::postgres::runtime()?;
    let target = opts.target.clone();
    let exporter = rt.block_on(target.connect())?;
    let facts = rt.block_on(export_snapshot(&exporter))?;
    let tables: Vec<TableEntry> = facts
        .all_tables
        .iter()
        .filter(|t| {
            (include.is_empty() || include.iter().any(|p| p.matches(t))) && !exclude.iter().any(|p| p.matches(t))
        })
        .cloned()
        .collect();
    if tables.is_empty() && !opts.tables.is_empty() {
        return Err(Error::invalid(format!(
            "no table of database '{}' matches --table {}",
            facts.database,
            opts.tables.join(", ")
        )));
    }
    // No table can be dropped or rewritten between now and its copy.
    for batch in tables.chunks(500) {
        let names: Vec<String> = batch.iter().map(TableEntry::qualified).collect();
        let sql = format!("LOCK TABLE {} IN ACCESS SHARE MODE", names.join(", "));
        rt.block_on(exporter.batch_execute(&sql)).map_err(|e| pg_error("locking the tables to back up", &e))?;
    }

    let schema = SchemaDump::start(&target, &facts)?;

    // One bounded channel per table; workers take tables in order, so the pipeline, which reads
    // them in the same order, always waits on a table some worker is copying: no deadlock, and at
    // most `jobs` tables are in memory at once (a few batches each).
    let mut senders: Vec<Option<CopySender>> = Vec::new();
    let mut readers = Vec::new();
    let mut digests = Vec::new();
    for t in &tables {
        let (tx, rx, digest) = CopyReader::channel(t.display());
        senders.push(Some(tx));
        readers.push(Some(rx));
        digests.push(digest);
    }
    let senders = Arc::new(Mutex::new(senders));
    let next = Arc::new(AtomicUsize::new(0));
    let shared_tables = Arc::new(tables.clone());
    for _ in 0..opts.jobs.clamp(1, 64).min(tables.len().max(1)) {
        let (target, snapshot_id) = (target.clone(), facts.snapshot_id.clone());
        let (senders, next, tables) = (senders.clone(), next.clone(), shared_tables.clone());
        rt.spawn(async move {
            let client = worker_connection(&target, &snapshot_id).await;
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(table) = tables.get(i) else { break };
                let Some(tx) = senders.lock().expect("senders lock is never poisoned")[i].take() else { break };
                let outcome = match &client {
                    Ok(c) => copy_table_out(c, table, &tx).await,
                    Err(message) => Err(format!("table {}: {message}", table.display())),
                };
                match outcome {
                    Ok(()) => {
                        // The end marker: a stream that ends without it was cut short.
                        let _ = tx.send(Ok(bytes::Bytes::new())).await;
                    }
                    Err(message) => {
                        let _ = tx.send(Err(message)).await;
                    }
                }
            }
        });
    }

    let manifest_out = Arc::new(Mutex::new(None));
    let streams = PgStreams {
        database: facts.database.clone(),
        schema: Some(schema),
        tables: tables.clone(),
        readers,
        digests,
        next_table: 0,
        manifest_done: false,
        manifest: Manifest {
            format: MANIFEST_FORMAT.to_owned(),
            version: MANIFEST_VERSION,
            database: facts.database.clone(),
            server_version: facts.server_version.clone(),
            snapshot_lsn: facts.lsn.clone(),
            time_ns: crate::commands::backup::now_ns(),
            large_objects: facts.large_objects,
            tables: Vec::new(),
        },
        manifest_out: manifest_out.clone(),
    };
    let backup_opts = BackupOptions {
        source: BackupSource::Streams {
            kind: SourceKind::Postgres,
            detail: facts.database.clone(),
            root: crate::postgres::escape_name(&facts.database),
            files: Box::new(streams),
        },
        excludes: Vec::new(),
        exclude_files: Vec::new(),
        iexcludes: Vec::new(),
        iexclude_files: Vec::new(),
        exclude_if_present: Vec::new(),
        exclude_larger_than: None,
        one_file_system: false,
        tags: opts.tags,
        host: opts.host,
        time_ns: opts.time_ns,
        dry_run: false,
        parent: ParentChoice::Auto,
        force: false,
        read_ahead: None,
    };
    let report = backup(repo, backup_opts, progress);
    // Ends every worker's transaction and connection (and a COPY still running on the server).
    rt.shutdown_background();
    let report = report.map_err(|e| {
        if crate::cancel::requested() && e.kind() != ErrorKind::Interrupted {
            // A table stream noticed the stop first and failed its read; the stop is what happened.
            Error::new(ErrorKind::Interrupted, "interrupted: no snapshot was written; the data already stored is indexed, and the next backup reuses it")
        } else {
            e
        }
    })?;
    let manifest = manifest_out
        .lock()
        .expect("manifest lock is never poisoned")
        .take()
        .ok_or_else(|| Error::new(ErrorKind::Bug, "the backup ended without writing the manifest"))?;
    Ok(PgBackupReport {
        database: manifest.database.clone(),
        server_version: manifest.server_version.clone(),
        snapshot_lsn: manifest.snapshot_lsn.clone(),
        tables: manifest.tables.len() as u64,
        rows: manifest.tables.iter().map(|t| t.rows).sum(),
        large_objects: manifest.large_objects,
        backup: report,
    })
}

/// Opens the exporting transaction and reads what the backup needs from inside its snapshot.
async fn export_snapshot(client: &tokio_postgres::Client) -> Result<SnapshotFacts> {
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(|e| pg_error("starting the snapshot transaction", &e))?;
    let row = client
        .query_one(
            "SELECT pg_export_snapshot(), \
             (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)::text, \
             current_setting('server_version'), current_database()::text, \
             (SELECT count(*) FROM pg_largeobject_metadata)",
            &[],
        )
        .await
        .map_err(|e| pg_error("exporting the snapshot (pg_export_snapshot)", &e))?;
    let mut facts = SnapshotFacts {
        snapshot_id: row.get(0),
        lsn: row.get::<_, Option<String>>(1).unwrap_or_default(),
        server_version: row.get(2),
        database: row.get(3),
        large_objects: row.get::<_, i64>(4) as u64,
        all_tables: Vec::new(),
    };
    // Extensions whose configuration tables pg_dump dumps by special rules: refused rather than
    // half backed up.
    let refused = client
        .query("SELECT extname::text FROM pg_extension WHERE extconfig IS NOT NULL ORDER BY 1", &[])
        .await
        .map_err(|e| pg_error("listing extensions", &e))?;
    if let Some(row) = refused.first() {
        let name: String = row.get(0);
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "database '{}' uses extension '{name}', whose configuration tables cairn pg backup does not \
                 support yet; back this database up with 'cairn backup --stdin-from-command -- pg_dump -Fc'",
                facts.database
            ),
        ));
    }
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text, \
               ARRAY(SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 \
                     AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum), \
               ARRAY(SELECT i.relname::text FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid \
                     WHERE x.indrelid = c.oid AND NOT EXISTS \
                       (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid AND k.conrelid = c.oid) \
                     ORDER BY 1), \
               ARRAY(SELECT s.relname::text FROM pg_depend d JOIN pg_class s ON s.oid = d.objid \
                     WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass \
                       AND d.refobjid = c.oid AND s.relkind = 'S' AND d.deptype IN ('a', 'i') ORDER BY 1) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'r' AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_' \
               AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass \
                               AND d.objid = c.oid AND d.deptype = 'e') \
             ORDER BY 1, 2",
            &[],
        )
        .await
        .map_err(|e| pg_error("listing the tables", &e))?;
    for row in rows {
        let (schema, table): (String, String) = (row.get(0), row.get(1));
        facts.all_tables.push(TableEntry {
            file: table_file_name(&schema, &table),
            schema,
            table,
            columns: row.get(2),
            indexes: row.get(3),
            sequences: row.get(4),
            rows: 0,
            bytes: 0,
            blake3: String::new(),
        });
    }
    Ok(facts)
}

/// A connection whose transaction sees the exported snapshot, set up as pg_dump sets its own.
async fn worker_connection(
    target: &PgTarget,
    snapshot_id: &str,
) -> std::result::Result<tokio_postgres::Client, String> {
    let client = target.connect().await.map_err(|e| e.to_string())?;
    let setup = format!(
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT {}; \
         SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = 0; \
         SET LOCAL idle_in_transaction_session_timeout = 0; SET LOCAL extra_float_digits = 3; \
         SET LOCAL DateStyle = ISO; SET LOCAL IntervalStyle = postgres; SET LOCAL row_security = off",
        quote_literal(snapshot_id)
    );
    client
        .batch_execute(&setup)
        .await
        .map_err(|e| format!("adopting the snapshot: {}", crate::postgres::pg_message(&e)))?;
    Ok(client)
}

/// `pg_dump -Fc` of the schema, the sequences' values and the large objects, from the snapshot.
struct SchemaDump {
    child: std::process::Child,
    stdout: Option<std::process::ChildStdout>,
    stderr: Option<std::thread::JoinHandle<Vec<u8>>>,
}

impl SchemaDump {
    fn start(target: &PgTarget, facts: &SnapshotFacts) -> Result<Self> {
        let mut cmd = crate::postgres::pg_tool("pg_dump");
        target.child_env(&mut cmd);
        cmd.args(["--format=custom", "--blobs", "--no-sync"]).arg(format!("--snapshot={}", facts.snapshot_id));
        // Table rows travel as COPY streams; everything else (sequence values, large objects) stays in
        // the dump. Quoted patterns match exactly one table.
        for t in &facts.all_tables {
            cmd.arg(format!("--exclude-table-data={}.{}", quote_ident(&t.schema), quote_ident(&t.table)));
        }
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| tool_error("pg_dump", e))?;
        let stdout = child.stdout.take();
        let mut stderr = child.stderr.take().ok_or_else(|| Error::new(ErrorKind::Bug, "pg_dump has no stderr"))?;
        let stderr = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = std::io::Read::read_to_end(&mut stderr, &mut buf);
            buf
        });
        Ok(Self { child, stdout, stderr: Some(stderr) })
    }

    /// Waits for pg_dump; its failure is an error with its last message line.
    fn finish(&mut self) -> Result<()> {
        let status = self.child.wait().map_err(|e| Error::io("waiting for pg_dump", e))?;
        let stderr = self.stderr.take().and_then(|h| h.join().ok()).unwrap_or_default();
        let output = std::process::Output { status, stdout: Vec::new(), stderr };
        crate::postgres::check_tool("pg_dump", &output).map_err(|e| e.context("dumping the schema"))
    }
}

impl Drop for SchemaDump {
    fn drop(&mut self) {
        // A backup that failed elsewhere must not leave pg_dump behind.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The files of one database backup, in order: schema, tables, manifest.
struct PgStreams {
    database: String,
    schema: Option<SchemaDump>,
    tables: Vec<TableEntry>,
    readers: Vec<Option<CopyReader>>,
    digests: Vec<Arc<Mutex<StreamDigest>>>,
    next_table: usize,
    manifest_done: bool,
    manifest: Manifest,
    manifest_out: Arc<Mutex<Option<Manifest>>>,
}

impl StreamFiles for PgStreams {
    fn next_file(&mut self) -> Result<Option<StreamFile>> {
        if let Some(schema) = &mut self.schema {
            if let Some(stdout) = schema.stdout.take() {
                return Ok(Some(StreamFile { path: vec![SCHEMA.to_owned()], reader: Box::new(stdout) }));
            }
            // The schema was read to its end: pg_dump must have succeeded.
            schema.finish()?;
            self.schema = None;
        }
        if self.next_table > 0 {
            // The previous table was read to its end marker (a failure ends the read with its error).
            let i = self.next_table - 1;
            let digest = self.digests[i].lock().expect("digest lock is never poisoned");
            let mut entry = self.tables[i].clone();
            entry.rows = digest.rows;
            entry.bytes = digest.bytes;
            entry.blake3 = digest.hex();
            self.manifest.tables.push(entry);
        }
        if self.next_table < self.tables.len() {
            let i = self.next_table;
            self.next_table += 1;
            let reader = self.readers[i].take().ok_or_else(|| Error::new(ErrorKind::Bug, "table read twice"))?;
            let path = vec![DATA.to_owned(), self.tables[i].file.clone()];
            return Ok(Some(StreamFile { path, reader: Box::new(reader) }));
        }
        if self.manifest_done {
            return Ok(None);
        }
        self.manifest_done = true;
        let json = serde_json::to_vec_pretty(&self.manifest)
            .map_err(|e| Error::new(ErrorKind::Bug, format!("encoding the manifest of '{}': {e}", self.database)))?;
        *self.manifest_out.lock().expect("manifest lock is never poisoned") = Some(self.manifest.clone());
        Ok(Some(StreamFile { path: vec![MANIFEST.to_owned()], reader: Box::new(std::io::Cursor::new(json)) }))
    }
}
