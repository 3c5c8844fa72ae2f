//! `pg restore`: a `pg backup` snapshot back into a database, in pg_restore's order: the schema's
//! pre-data section (types, tables), the tables' rows with `COPY ... FROM STDIN` on several
//! connections, the data section (sequences' values, large objects), then post-data (indexes,
//! constraints, triggers), so that a restored table has its keys and indexes.
//!
//! A restore of some tables reads only those tables' files from the repository. Every table's
//! stream is checked against the manifest's checksum before its COPY is committed. It never prints.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use cairn_format::blob::BlobKind;
use cairn_format::snapshot::{Snapshot, SourceKind};
use cairn_format::tree::NodeKind;
use cairn_format::{BlobId, SnapshotId};
use rayon::prelude::*;
use serde::Serialize;

use crate::commands::snapshots::{SnapshotFilter, find_node, find_snapshot};
use crate::error::{Error, ErrorKind, Result};
use crate::postgres::{
    DATA, MANIFEST, MANIFEST_FORMAT, MANIFEST_VERSION, Manifest, PgTarget, SCHEMA, StreamDigest, TableEntry,
    TablePattern, copy_table_in, pg_error, quote_ident, tool_error,
};
use crate::repository::Repository;

/// Chunks fetched ahead of a table's COPY.
const WINDOW: usize = 8;

/// What `pg restore` restores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sections {
    /// Schema and data.
    #[default]
    All,
    /// Only the schema (with sequences' values and large objects).
    SchemaOnly,
    /// Only the rows (and sequences' values), into existing tables.
    DataOnly,
}

/// Options of `pg restore`.
#[derive(Debug, Clone)]
pub struct PgRestoreOptions {
    pub target: PgTarget,
    /// Only tables matching one of these (with their indexes, constraints and owned sequences).
    pub tables: Vec<String>,
    pub sections: Sections,
    /// Connections loading tables at once (and pg_restore's jobs for indexes).
    pub jobs: usize,
    /// Replace what is there: every schema and large object of the target database (or, with
    /// `tables`, those tables) is dropped first.
    pub clean: bool,
}

/// One restored table.
#[derive(Debug, Clone, Serialize)]
pub struct RestoredTable {
    pub table: String,
    pub rows: u64,
    pub bytes: u64,
}

/// What `pg restore` did.
#[derive(Debug, Clone, Serialize)]
pub struct PgRestoreReport {
    pub snapshot: SnapshotId,
    /// The database the snapshot was taken from.
    pub source_database: String,
    pub target_database: String,
    pub tables: Vec<RestoredTable>,
    pub rows: u64,
    pub bytes: u64,
    pub duration_ns: u64,
}

/// A `pg backup` snapshot opened for reading.
#[derive(Debug)]
pub struct PgSnapshot {
    pub id: SnapshotId,
    pub snapshot: Snapshot,
    /// `/<database>` inside the snapshot.
    pub root: String,
    pub manifest: Manifest,
}

impl PgSnapshot {
    /// Finds the snapshot `spec` and reads its manifest; refuses a snapshot `pg backup` did not write.
    pub fn open(repo: &Repository, spec: &str, filter: &SnapshotFilter) -> Result<Self> {
        let (id, snapshot) = find_snapshot(repo, spec, filter)?;
        if snapshot.source != SourceKind::Postgres || snapshot.paths.len() != 1 {
            return Err(Error::invalid(format!(
                "snapshot {} was not written by 'cairn pg backup'; restore it with 'cairn restore'",
                id.short()
            )));
        }
        repo.sync_index()?;
        let root = snapshot.paths[0].clone();
        let bytes = read_small(repo, &snapshot, &format!("{root}/{MANIFEST}"))?;
        let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
            Error::new(
                ErrorKind::Corrupt,
                format!("{root}/{MANIFEST} of snapshot {} is not a manifest: {e}", id.short()),
            )
        })?;
        if manifest.format != MANIFEST_FORMAT || manifest.version != MANIFEST_VERSION {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "{root}/{MANIFEST} has format {} version {}, which this cairn does not know; use a newer cairn",
                    manifest.format, manifest.version
                ),
            ));
        }
        Ok(Self { id, snapshot, root, manifest })
    }

    /// Writes the schema dump to `dir` (pg_restore needs a file it can seek in).
    fn schema_file(&self, repo: &Repository, dir: &Path) -> Result<PathBuf> {
        let path = dir.join(SCHEMA);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        let (node, walked) = find_node(repo, &self.snapshot, format!("{}/{SCHEMA}", self.root))?;
        for blob in blobs(repo, &node, &walked)? {
            file.write_all(&blob?).map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        }
        file.flush().map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        Ok(path)
    }

    /// The chunk list of a table's file.
    fn table_content(&self, repo: &Repository, table: &TableEntry) -> Result<Vec<BlobId>> {
        let (node, walked) = find_node(repo, &self.snapshot, format!("{}/{DATA}/{}", self.root, table.file))?;
        match node.kind {
            NodeKind::File { content } => Ok(content),
            _ => Err(Error::new(ErrorKind::Corrupt, format!("{walked} is not a file"))),
        }
    }
}

/// A small file of the snapshot, whole.
fn read_small(repo: &Repository, snapshot: &Snapshot, path: &str) -> Result<Vec<u8>> {
    let (node, walked) = find_node(repo, snapshot, path)?;
    let mut out = Vec::new();
    for blob in blobs(repo, &node, &walked)? {
        out.extend_from_slice(&blob?);
    }
    Ok(out)
}

/// A file's blobs in order, fetched a window at a time in parallel.
fn blobs<'a>(
    repo: &'a Repository,
    node: &cairn_format::tree::Node,
    walked: &'a str,
) -> Result<impl Iterator<Item = Result<Vec<u8>>> + 'a> {
    let NodeKind::File { content } = &node.kind else {
        return Err(Error::new(ErrorKind::Corrupt, format!("{walked} is not a file")));
    };
    let content = content.clone();
    Ok(content.chunks(WINDOW).map(|w| w.to_vec()).collect::<Vec<_>>().into_iter().flat_map(move |window| {
        let loaded: Vec<Result<Vec<u8>>> = window
            .par_iter()
            .map(|id| repo.load_blob(BlobKind::Data, id).map_err(|e| e.context(format!("reading {walked}"))))
            .collect();
        loaded
    }))
}

/// Runs `pg restore`.
pub fn pg_restore(
    repo: &Repository,
    spec: &str,
    filter: &SnapshotFilter,
    opts: &PgRestoreOptions,
) -> Result<PgRestoreReport> {
    let started = Instant::now();
    let snap = PgSnapshot::open(repo, spec, filter)?;
    let tables = select_tables(&snap.manifest, &opts.tables)?;
    let restored = restore_into(repo, &snap, &tables, opts)?;
    Ok(PgRestoreReport {
        snapshot: snap.id,
        source_database: snap.manifest.database.clone(),
        target_database: opts.target.dbname(),
        rows: restored.iter().map(|t| t.rows).sum(),
        bytes: restored.iter().map(|t| t.bytes).sum(),
        tables: restored,
        duration_ns: started.elapsed().as_nanos() as u64,
    })
}

/// The manifest's tables that `patterns` select (all when empty).
fn select_tables(manifest: &Manifest, patterns: &[String]) -> Result<Option<Vec<TableEntry>>> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let patterns = TablePattern::parse_all(patterns, "--table")?;
    let chosen: Vec<TableEntry> =
        manifest.tables.iter().filter(|t| patterns.iter().any(|p| p.matches(t))).cloned().collect();
    if chosen.is_empty() {
        return Err(Error::invalid(format!(
            "no table of the snapshot of '{}' matches the --table patterns; 'cairn ls SNAPSHOT /{}/{DATA}' lists them",
            manifest.database, manifest.database
        )));
    }
    Ok(Some(chosen))
}

/// Restores `snap` (all tables when `tables` is `None`) into `opts.target`.
pub fn restore_into(
    repo: &Repository,
    snap: &PgSnapshot,
    tables: &Option<Vec<TableEntry>>,
    opts: &PgRestoreOptions,
) -> Result<Vec<RestoredTable>> {
    let rt = crate::postgres::runtime()?;
    let client = rt.block_on(opts.target.connect())?;
    let db = opts.target.dbname();
    let data_tables: Vec<TableEntry> = tables.clone().unwrap_or_else(|| snap.manifest.tables.clone());

    rt.block_on(prepare_target(&client, &db, tables.as_deref(), &data_tables, opts))?;

    let tmp = crate::postgres::private_tempdir()?;
    let schema = snap.schema_file(repo, tmp.path())?;
    let list = match tables {
        Some(t) => Some(toc_list(&schema, tmp.path(), t)?),
        None => None,
    };
    let run = |section: &str, jobs: usize| -> Result<()> {
        let mut cmd = crate::postgres::pg_tool("pg_restore");
        opts.target.child_env(&mut cmd);
        cmd.arg(format!("--section={section}"))
            .arg("--exit-on-error")
            .arg(format!("--dbname={db}"))
            .stdin(std::process::Stdio::null());
        if jobs > 1 {
            cmd.arg(format!("--jobs={jobs}"));
        }
        if let Some(l) = &list {
            cmd.arg(format!("--use-list={}", l.display()));
        }
        cmd.arg(&schema);
        let output = cmd.output().map_err(|e| tool_error("pg_restore", e))?;
        crate::postgres::check_tool("pg_restore", &output)
            .map_err(|e| e.context(format!("restoring the {section} section into database '{db}'")))
    };
    if opts.sections != Sections::DataOnly {
        run("pre-data", 1)?;
    }
    let mut restored = Vec::new();
    if opts.sections != Sections::SchemaOnly {
        restored = load_tables(repo, snap, &rt, &opts.target, &data_tables, opts.jobs)?;
    }
    // Sequences' values and large objects. A table restore whose tables own no sequence has none:
    // one pg_restore run (a process and a connection) less.
    let data_section = match &list {
        Some(l) => std::fs::read_to_string(l).map(|t| t.contains(" SEQUENCE SET ")).unwrap_or(true),
        None => true,
    };
    if data_section {
        run("data", 1)?;
    }
    if opts.sections != Sections::DataOnly {
        run("post-data", opts.jobs)?;
    }
    Ok(restored)
}

/// Refuses a target that already holds what the restore would create, unless `clean`, which
/// removes it first.
async fn prepare_target(
    client: &tokio_postgres::Client,
    db: &str,
    tables: Option<&[TableEntry]>,
    data_tables: &[TableEntry],
    opts: &PgRestoreOptions,
) -> Result<()> {
    let exists = |t: &TableEntry| {
        let sql = format!("SELECT to_regclass({})::text", crate::postgres::quote_literal(&t.qualified()));
        async move {
            let row = client.query_one(&sql, &[]).await.map_err(|e| pg_error("inspecting the target", &e))?;
            Ok::<bool, Error>(row.get::<_, Option<String>>(0).is_some())
        }
    };
    if opts.sections == Sections::DataOnly {
        for t in data_tables {
            if !exists(t).await? {
                return Err(Error::invalid(format!(
                    "table {} does not exist in database '{db}': --data-only loads into existing tables",
                    t.display()
                )));
            }
            let sql = format!("SELECT EXISTS (SELECT 1 FROM {})", t.qualified());
            let row = client.query_one(&sql, &[]).await.map_err(|e| pg_error("inspecting the target", &e))?;
            if row.get::<_, bool>(0) {
                if !opts.clean {
                    return Err(Error::invalid(format!(
                        "table {} in database '{db}' is not empty: pass --clean to empty it first",
                        t.display()
                    )));
                }
                client
                    .batch_execute(&format!("TRUNCATE {} CASCADE", t.qualified()))
                    .await
                    .map_err(|e| pg_error(format!("emptying {}", t.display()), &e))?;
            }
        }
        return Ok(());
    }
    if let Some(tables) = tables {
        for t in tables {
            if exists(t).await? {
                if !opts.clean {
                    return Err(Error::invalid(format!(
                        "table {} already exists in database '{db}': pass --clean to replace it",
                        t.display()
                    )));
                }
                client
                    .batch_execute(&format!("DROP TABLE {} CASCADE", t.qualified()))
                    .await
                    .map_err(|e| pg_error(format!("dropping {}", t.display()), &e))?;
            }
        }
        return Ok(());
    }
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
               WHERE n.nspname <> 'information_schema' AND n.nspname !~ '^pg_' \
               AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass \
                               AND d.objid = c.oid AND d.deptype = 'e')), \
             (SELECT count(*) FROM pg_largeobject_metadata)",
            &[],
        )
        .await
        .map_err(|e| pg_error("inspecting the target", &e))?;
    let (relations, large_objects): (i64, i64) = (row.get(0), row.get(1));
    if relations == 0 && large_objects == 0 {
        return Ok(());
    }
    if !opts.clean {
        return Err(Error::invalid(format!(
            "database '{db}' is not empty ({relations} relations, {large_objects} large objects): restore into an \
             empty database, or pass --clean to drop its schemas first"
        )));
    }
    let schemas = client
        .query(
            "SELECT nspname::text FROM pg_namespace WHERE nspname <> 'information_schema' AND nspname !~ '^pg_'",
            &[],
        )
        .await
        .map_err(|e| pg_error("listing the target's schemas", &e))?;
    let mut sql = String::from("BEGIN; SELECT lo_unlink(oid) FROM pg_largeobject_metadata; ");
    for s in schemas {
        let name: String = s.get(0);
        sql.push_str(&format!("DROP SCHEMA {} CASCADE; ", quote_ident(&name)));
    }
    // The schema every new database has, as PostgreSQL 15 creates it.
    sql.push_str(
        "CREATE SCHEMA public AUTHORIZATION pg_database_owner; GRANT USAGE ON SCHEMA public TO PUBLIC; COMMIT;",
    );
    client.batch_execute(&sql).await.map_err(|e| pg_error(format!("cleaning database '{db}'"), &e))
}

/// Loads the tables' rows on `jobs` connections; each table's stream is checked against the manifest
/// before its COPY ends, so a damaged file loads nothing.
fn load_tables(
    repo: &Repository,
    snap: &PgSnapshot,
    rt: &tokio::runtime::Runtime,
    target: &PgTarget,
    tables: &[TableEntry],
    jobs: usize,
) -> Result<Vec<RestoredTable>> {
    let next = AtomicUsize::new(0);
    let results: Vec<Result<Vec<(usize, RestoredTable)>>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs.clamp(1, 64).min(tables.len().max(1)))
            .map(|_| {
                scope.spawn(|| -> Result<Vec<(usize, RestoredTable)>> {
                    let mut done = Vec::new();
                    let mut client: Option<Arc<tokio_postgres::Client>> = None;
                    loop {
                        if crate::cancel::requested() {
                            return Err(Error::new(ErrorKind::Interrupted, "interrupted"));
                        }
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some(table) = tables.get(i) else { return Ok(done) };
                        let c = match &client {
                            Some(c) => c.clone(),
                            None => {
                                let c = Arc::new(rt.block_on(target.connect())?);
                                client = Some(c.clone());
                                c
                            }
                        };
                        let loaded = load_table(repo, snap, rt, c, table)
                            .map_err(|e| e.context(format!("restoring table {}", table.display())))?;
                        done.push((i, loaded));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|_| Err(Error::new(ErrorKind::Bug, "a loader panicked"))))
            .collect()
    });
    let mut all = Vec::new();
    for r in results {
        all.extend(r?);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, t)| t).collect())
}

fn load_table(
    repo: &Repository,
    snap: &PgSnapshot,
    rt: &tokio::runtime::Runtime,
    client: Arc<tokio_postgres::Client>,
    table: &TableEntry,
) -> Result<RestoredTable> {
    let content = snap.table_content(repo, table)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes>>(WINDOW);
    let entry = table.clone();
    let copy = rt.spawn(async move { copy_table_in(&client, &entry, rx).await });
    let mut digest = StreamDigest::default();
    let walked = format!("{}/{DATA}/{}", snap.root, table.file);
    let mut failure = None;
    'read: for window in content.chunks(WINDOW) {
        let loaded: Vec<Result<Vec<u8>>> = window
            .par_iter()
            .map(|id| repo.load_blob(BlobKind::Data, id).map_err(|e| e.context(format!("reading {walked}"))))
            .collect();
        for blob in loaded {
            match blob {
                Ok(b) => {
                    digest.update(&b);
                    if tx.blocking_send(Ok(bytes::Bytes::from(b))).is_err() {
                        break 'read; // the COPY failed; its error says why
                    }
                }
                Err(e) => {
                    failure = Some(e);
                    break 'read;
                }
            }
        }
    }
    if failure.is_none() && (digest.rows != table.rows || digest.hex() != table.blake3) {
        failure = Some(Error::new(
            ErrorKind::Corrupt,
            format!(
                "{walked} does not match its manifest ({} rows, checksum {}; the manifest says {} rows, {})",
                digest.rows,
                short(&digest.hex()),
                table.rows,
                short(&table.blake3)
            ),
        ));
    }
    // An error sent ends the COPY without committing it.
    if let Some(e) = failure {
        let message = e.to_string();
        let kind = e.kind();
        let _ = tx.blocking_send(Err(e));
        drop(tx);
        let _ = rt.block_on(copy);
        return Err(Error::new(kind, message));
    }
    drop(tx);
    rt.block_on(copy).map_err(|e| Error::new(ErrorKind::Bug, format!("the COPY task failed: {e}")))??;
    Ok(RestoredTable { table: table.display(), rows: digest.rows, bytes: digest.bytes })
}

fn short(hex: &str) -> &str {
    &hex[..hex.len().min(12)]
}

/// A pg_restore list file (`--use-list`) that selects some tables with what belongs to them: their
/// schema, definition, defaults, owned sequences (and their values), constraints, indexes,
/// triggers, policies, comments and grants. Foreign keys are left out: they may point at tables not
/// restored. Each pg_restore run still takes only its own section from the list.
fn toc_list(schema: &Path, dir: &Path, tables: &[TableEntry]) -> Result<PathBuf> {
    let output = crate::postgres::pg_tool("pg_restore")
        .arg("--list")
        .arg(schema)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| tool_error("pg_restore", e))?;
    crate::postgres::check_tool("pg_restore --list", &output)?;
    let toc = String::from_utf8_lossy(&output.stdout);
    let mut wanted: Vec<String> = Vec::new();
    for t in tables {
        let (s, n) = (&t.schema, &t.table);
        wanted.push(format!("SCHEMA - {s} "));
        for desc in ["COMMENT", "ACL"] {
            wanted.push(format!("{desc} {s} TABLE {n} "));
            wanted.push(format!("{desc} {s} COLUMN {n}."));
        }
        for desc in ["TABLE", "DEFAULT", "CONSTRAINT", "TRIGGER", "POLICY", "RULE", "ROW SECURITY"] {
            wanted.push(format!("{desc} {s} {n} "));
        }
        for idx in &t.indexes {
            wanted.push(format!("INDEX {s} {idx} "));
        }
        for seq in &t.sequences {
            for desc in ["SEQUENCE", "SEQUENCE OWNED BY", "SEQUENCE SET"] {
                wanted.push(format!("{desc} {s} {seq} "));
            }
        }
    }
    let mut list = String::new();
    for line in toc.lines() {
        // `ID; CATALOG_OID OBJECT_OID DESC NAMESPACE TAG OWNER`
        let Some((_, rest)) = line.split_once("; ") else { continue };
        let mut parts = rest.splitn(3, ' ');
        let (Some(_), Some(_), Some(entry)) = (parts.next(), parts.next(), parts.next()) else { continue };
        let entry = format!("{entry} ");
        if wanted.iter().any(|w| entry.starts_with(w.as_str())) {
            list.push_str(line);
            list.push('\n');
        }
    }
    let path = dir.join("tables.list");
    std::fs::write(&path, list).map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    Ok(path)
}
