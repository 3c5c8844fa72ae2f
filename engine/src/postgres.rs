//! What `pg backup`, `pg restore` and `pg drill` share: the connection settings (a URL or the usual
//! `PG*` variables), a private tokio runtime for tokio-postgres, the environment handed to
//! `pg_dump`/`pg_restore`, the manifest stored beside the tables, and the bridge that turns a
//! `COPY ... TO STDOUT` into a blocking reader for the backup pipeline.
//!
//! A password never appears on a child's command line, in an error or in a report: children get it
//! through `PGPASSWORD` in their environment only.

use std::io::Read;
use std::process::Command;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls};

use crate::error::{Error, ErrorKind, Result};

/// Name of the manifest file inside `/<database>/`.
pub const MANIFEST: &str = "manifest.json";
/// Name of the schema dump (`pg_dump -Fc`) inside `/<database>/`.
pub const SCHEMA: &str = "schema.dump";
/// Folder of the table files inside `/<database>/`.
pub const DATA: &str = "data";
/// The manifest's format name and version.
pub const MANIFEST_FORMAT: &str = "cairn-pg-manifest";
pub const MANIFEST_VERSION: u32 = 1;

/// Bytes of COPY data gathered before they cross to the backup pipeline.
const COPY_BATCH: usize = 1024 * 1024;
/// Batches of one table queued ahead of the pipeline (memory per table stream: this × COPY_BATCH).
const COPY_QUEUE: usize = 4;

/// Where a database is: a libpq URL or `key=value` string, completed from the `PG*` variables.
#[derive(Clone)]
pub struct PgTarget {
    config: Config,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        f.debug_struct("PgTarget").field("database", &self.dbname()).field("server", &self.server()).finish()
    }
}

impl PgTarget {
    /// From `url` (`postgresql://...` or `host=... dbname=...`), with what it leaves out taken from
    /// `PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD` and `PGDATABASE`, as libpq does.
    pub fn new(url: Option<&str>) -> Result<Self> {
        let mut config = match url {
            Some(u) => u.parse::<Config>().map_err(|e| {
                Error::invalid(format!("cannot read the database URL: {e} (use postgresql://USER@HOST:PORT/DB)"))
            })?,
            None => Config::new(),
        };
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if config.get_hosts().is_empty() {
            match env("PGHOST") {
                Some(h) => {
                    for h in h.split(',') {
                        config.host(h);
                    }
                }
                None => {
                    config.host("/var/run/postgresql");
                }
            }
        }
        if config.get_ports().is_empty()
            && let Some(p) = env("PGPORT")
        {
            let port = p.parse().map_err(|_| Error::invalid(format!("PGPORT '{p}' is not a port number")))?;
            config.port(port);
        }
        if config.get_user().is_none() {
            config.user(env("PGUSER").unwrap_or_else(crate::repository::username));
        }
        if config.get_password().is_none()
            && let Some(p) = env("PGPASSWORD")
        {
            config.password(p);
        }
        if config.get_dbname().is_none() {
            let db = env("PGDATABASE").or_else(|| config.get_user().map(str::to_owned)).unwrap_or_default();
            config.dbname(db);
        }
        if config.get_application_name().is_none() {
            // So that a DBA sees what the sessions are (pg_stat_activity).
            config.application_name("cairn");
        }
        Ok(Self { config })
    }

    /// A server reached through its Unix socket in `dir` (no password, no `PG*` variables).
    pub fn unix_socket(dir: &std::path::Path, port: u16, user: &str, dbname: &str) -> Self {
        let mut config = Config::new();
        config.host_path(dir).port(port).user(user).dbname(dbname).application_name("cairn");
        Self { config }
    }

    /// The same server, another database.
    pub fn with_dbname(&self, dbname: &str) -> Self {
        let mut config = self.config.clone();
        config.dbname(dbname);
        Self { config }
    }

    /// The database name.
    pub fn dbname(&self) -> String {
        self.config.get_dbname().unwrap_or_default().to_owned()
    }

    /// The host names or socket folders, comma-separated (libpq's `PGHOST` form).
    fn hosts(&self) -> String {
        let hosts: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .map(|h| match h {
                Host::Tcp(s) => s.clone(),
                Host::Unix(p) => p.display().to_string(),
            })
            .collect();
        hosts.join(",")
    }

    /// The server, for messages: hosts and port, never credentials.
    pub fn server(&self) -> String {
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!("{}:{port}", self.hosts())
    }

    /// Points a `pg_dump`/`pg_restore`/`psql` child at this database through its environment only,
    /// so that the password never shows on a command line (`ps`) or in a message.
    pub fn child_env(&self, cmd: &mut Command) {
        cmd.env("PGHOST", self.hosts());
        let ports = self.config.get_ports();
        if !ports.is_empty() {
            let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
            cmd.env("PGPORT", ports.join(","));
        } else {
            cmd.env_remove("PGPORT");
        }
        if let Some(u) = self.config.get_user() {
            cmd.env("PGUSER", u);
        }
        match self.config.get_password() {
            Some(p) => cmd.env("PGPASSWORD", String::from_utf8_lossy(p).into_owned()),
            None => cmd.env_remove("PGPASSWORD"),
        };
        cmd.env("PGDATABASE", self.dbname());
        // A service file or a different database in the caller's environment must not redirect the child.
        cmd.env_remove("PGSERVICE");
        cmd.env("PGAPPNAME", "cairn");
    }

    /// Opens a connection; its I/O runs on `rt`.
    pub async fn connect(&self) -> Result<Client> {
        let (client, connection) = self.config.connect(NoTls).await.map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("cannot connect to database '{}' on {}: {}", self.dbname(), self.server(), pg_message(&e)),
            )
        })?;
        tokio::spawn(async move {
            // Errors surface on the client's next request.
            let _ = connection.await;
        });
        Ok(client)
    }
}

/// The runtime that drives tokio-postgres for one command.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("cairn-pg")
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the PostgreSQL runtime", e))
}

/// A server error's own message (with its detail), or the client's.
pub fn pg_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(d) => format!("{} ({d})", db.message()),
            None => db.message().to_owned(),
        },
        None => {
            let mut s = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(inner) = source {
                s.push_str(&format!(": {inner}"));
                source = inner.source();
            }
            s
        }
    }
}

/// A database error about `what`.
pub fn pg_error(what: impl std::fmt::Display, e: &tokio_postgres::Error) -> Error {
    Error::new(ErrorKind::Io, format!("{what}: {}", pg_message(e)))
}

/// Quotes an identifier for SQL (`"a""b"`).
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Quotes a string literal for SQL.
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The manifest stored as `/<database>/manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub database: String,
    pub server_version: String,
    /// The WAL position of the snapshot (`pg_current_wal_lsn()` inside it).
    pub snapshot_lsn: String,
    /// When the snapshot was taken, Unix nanoseconds.
    pub time_ns: i64,
    /// Large objects in the snapshot (stored in `schema.dump` with the sequences' values).
    pub large_objects: u64,
    pub tables: Vec<TableEntry>,
}

/// One table's data in the manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TableEntry {
    pub schema: String,
    pub table: String,
    /// The file under `data/`.
    pub file: String,
    /// The columns in COPY order (generated columns are never copied).
    pub columns: Vec<String>,
    /// Indexes on the table that are not constraints (for restoring one table with its indexes).
    #[serde(default)]
    pub indexes: Vec<String>,
    /// Sequences the table owns (serial and identity columns), in the table's schema.
    #[serde(default)]
    pub sequences: Vec<String>,
    pub rows: u64,
    pub bytes: u64,
    /// BLAKE3 of the COPY text stream, hex.
    pub blake3: String,
}

impl TableEntry {
    /// `schema.table`, quoted for SQL.
    pub fn qualified(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.table))
    }

    /// `schema.table` for messages.
    pub fn display(&self) -> String {
        format!("{}.{}", self.schema, self.table)
    }

    /// The column list for `COPY`.
    pub fn column_list(&self) -> String {
        let cols: Vec<String> = self.columns.iter().map(|c| quote_ident(c)).collect();
        cols.join(", ")
    }
}

/// The file name under `data/` for a table: `schema.table.copy`, with `/` and `%` escaped so that
/// every identifier gives a valid, distinct name.
pub fn table_file_name(schema: &str, table: &str) -> String {
    format!("{}.{}.copy", escape_name(schema), escape_name(table))
}

/// An identifier as a file name: `%` and `/` percent-escaped.
pub fn escape_name(s: &str) -> String {
    s.replace('%', "%25").replace('/', "%2F")
}

/// Row count, byte count and BLAKE3 of a COPY text stream, computed as it passes.
#[derive(Debug, Default)]
pub struct StreamDigest {
    hasher: blake3::Hasher,
    pub rows: u64,
    pub bytes: u64,
}

impl StreamDigest {
    pub fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
        // In COPY text format a newline inside a value is escaped (`\n`): one line is one row.
        self.rows += memchr::memchr_iter(b'\n', data).count() as u64;
        self.bytes += data.len() as u64;
    }

    pub fn hex(&self) -> String {
        self.hasher.finalize().to_hex().to_string()
    }
}

/// The receiving end of one table's COPY stream, as a blocking reader for the backup pipeline.
/// A COPY that fails ends the reader with an error naming the table.
pub struct CopyReader {
    /// The table, for messages.
    what: String,
    rx: tokio::sync::mpsc::Receiver<std::result::Result<bytes::Bytes, String>>,
    current: bytes::Bytes,
    /// The worker sent its end marker (an empty batch): the stream is complete.
    ended: bool,
    digest: Arc<Mutex<StreamDigest>>,
}

impl std::fmt::Debug for CopyReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyReader").finish_non_exhaustive()
    }
}

/// The sending end: what a COPY worker pushes into.
pub type CopySender = tokio::sync::mpsc::Sender<std::result::Result<bytes::Bytes, String>>;

impl CopyReader {
    /// A bounded channel for the stream of table `what` and the digest its reader fills. The
    /// sender ends a complete stream with an empty batch; a channel closed without it is an error.
    pub fn channel(what: String) -> (CopySender, CopyReader, Arc<Mutex<StreamDigest>>) {
        let (tx, rx) = tokio::sync::mpsc::channel(COPY_QUEUE);
        let digest = Arc::new(Mutex::new(StreamDigest::default()));
        (tx, CopyReader { what, rx, current: bytes::Bytes::new(), ended: false, digest: digest.clone() }, digest)
    }
}

impl Read for CopyReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            if self.ended {
                return Ok(0);
            }
            if crate::cancel::requested() {
                return Err(std::io::Error::other("interrupted"));
            }
            match self.rx.blocking_recv() {
                Some(Ok(b)) if b.is_empty() => self.ended = true,
                Some(Ok(b)) => {
                    self.digest.lock().expect("digest lock is never poisoned").update(&b);
                    self.current = b;
                }
                Some(Err(message)) => return Err(std::io::Error::other(message)),
                None => {
                    return Err(std::io::Error::other(format!(
                        "COPY of table {} ended before its end (connection lost?)",
                        self.what
                    )));
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

/// Streams `COPY <table> (<columns>) TO STDOUT` on `client` into `tx` in batches of about 1 MiB.
/// Returns an error message naming the table when the COPY fails.
pub async fn copy_table_out(client: &Client, table: &TableEntry, tx: &CopySender) -> std::result::Result<(), String> {
    use futures_util::StreamExt;
    let sql = format!("COPY {} ({}) TO STDOUT", table.qualified(), table.column_list());
    let failed = |e: &tokio_postgres::Error| format!("COPY of table {} failed: {}", table.display(), pg_message(e));
    let stream = client.copy_out(sql.as_str()).await.map_err(|e| failed(&e))?;
    futures_util::pin_mut!(stream);
    let mut batch = bytes::BytesMut::with_capacity(COPY_BATCH);
    while let Some(piece) = stream.next().await {
        let piece = piece.map_err(|e| failed(&e))?;
        batch.extend_from_slice(&piece);
        if batch.len() >= COPY_BATCH {
            let full = std::mem::replace(&mut batch, bytes::BytesMut::with_capacity(COPY_BATCH));
            // The reader went away: the backup failed or stopped elsewhere; say nothing more.
            if tx.send(Ok(full.freeze())).await.is_err() {
                return Ok(());
            }
        }
    }
    if !batch.is_empty() {
        let _ = tx.send(Ok(batch.freeze())).await;
    }
    Ok(())
}

/// Loads `data` into `table` with `COPY ... FROM STDIN`, fed by `chunks` (blocking reads of the
/// repository happen on the caller's side). Returns the digest of what was loaded.
pub async fn copy_table_in(
    client: &Client,
    table: &TableEntry,
    mut chunks: tokio::sync::mpsc::Receiver<Result<bytes::Bytes>>,
) -> Result<()> {
    use futures_util::SinkExt;
    let sql = format!("COPY {} ({}) FROM STDIN", table.qualified(), table.column_list());
    let failed = |e: &tokio_postgres::Error| pg_error(format!("loading table {}", table.display()), e);
    let sink = client.copy_in::<_, bytes::Bytes>(sql.as_str()).await.map_err(|e| failed(&e))?;
    futures_util::pin_mut!(sink);
    while let Some(chunk) = chunks.recv().await {
        let chunk = chunk?;
        sink.send(chunk).await.map_err(|e| failed(&e))?;
    }
    sink.finish().await.map_err(|e| failed(&e))?;
    Ok(())
}

/// A PostgreSQL client tool from `PATH` (Debian's wrappers in /usr/bin pick the version matching
/// the server); a missing one becomes one clear line through [`tool_error`].
pub fn pg_tool(name: &str) -> Command {
    Command::new(name)
}

/// The error for a tool that could not be started.
pub fn tool_error(name: &str, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        Error::new(
            ErrorKind::InvalidInput,
            format!("{name} not found: install the PostgreSQL client tools (postgresql-client)"),
        )
    } else {
        Error::io(format!("starting {name}"), e)
    }
}

/// A child's exit status as an error naming the tool and its last line of standard error.
pub fn check_tool(name: &str, output: &std::process::Output) -> Result<()> {
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The first error line says what went wrong; hints and context follow it.
    let lines: Vec<&str> = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let last = lines.iter().find(|l| l.contains("error:")).or(lines.last()).copied().unwrap_or("").to_owned();
    Err(Error::new(ErrorKind::CommandFailed, format!("{name} failed ({}): {last}", output.status)))
}

/// A private temporary folder (0700) for a schema dump or list file.
pub fn private_tempdir() -> Result<tempfile::TempDir> {
    tempfile::Builder::new().prefix("cairn-pg-").tempdir().map_err(|e| Error::io("creating a temporary folder", e))
}

/// A `--table` pattern: `schema.table`, or `table` in any schema; `*` and `?` wildcards.
#[derive(Debug)]
pub struct TablePattern {
    qualified: bool,
    matcher: globset::GlobMatcher,
}

impl TablePattern {
    /// Parses the patterns given to `option` (named in errors).
    pub fn parse_all(list: &[String], option: &str) -> Result<Vec<Self>> {
        list.iter()
            .map(|p| {
                let glob = globset::GlobBuilder::new(p)
                    .literal_separator(false)
                    .build()
                    .map_err(|e| Error::invalid(format!("{option} '{p}' is not a valid pattern: {e}")))?;
                Ok(Self { qualified: p.contains('.'), matcher: glob.compile_matcher() })
            })
            .collect()
    }

    /// Whether the pattern selects `t`.
    pub fn matches(&self, t: &TableEntry) -> bool {
        if self.qualified { self.matcher.is_match(t.display()) } else { self.matcher.is_match(&t.table) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(schema: &str, table: &str) -> TableEntry {
        TableEntry {
            schema: schema.into(),
            table: table.into(),
            file: table_file_name(schema, table),
            columns: vec!["a".into(), "we\"ird".into()],
            indexes: Vec::new(),
            sequences: Vec::new(),
            rows: 0,
            bytes: 0,
            blake3: String::new(),
        }
    }

    #[test]
    fn every_identifier_gives_one_valid_distinct_file_name() {
        assert_eq!(table_file_name("public", "t"), "public.t.copy");
        assert_eq!(table_file_name("a/b", "100%"), "a%2Fb.100%25.copy");
        // `%2F` typed literally and `/` must not collide.
        assert_ne!(table_file_name("a%2Fb", "t"), table_file_name("a/b", "t"));
        assert!(!table_file_name("..", "/").contains('/'));
    }

    #[test]
    fn identifiers_and_literals_are_quoted() {
        let t = entry("my schema", "Tab\"le");
        assert_eq!(t.qualified(), "\"my schema\".\"Tab\"\"le\"");
        assert_eq!(t.column_list(), "\"a\", \"we\"\"ird\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }

    #[test]
    fn table_patterns_match_qualified_or_bare_names() {
        let p = TablePattern::parse_all(&["public.acc*".into(), "hist?ry".into()], "--table").expect("valid");
        assert!(p[0].matches(&entry("public", "accounts")));
        assert!(!p[0].matches(&entry("other", "accounts")));
        assert!(p[1].matches(&entry("any", "history")));
        assert!(!p[1].matches(&entry("any", "histories")));
        assert!(TablePattern::parse_all(&["[".into()], "--table").is_err());
    }

    #[test]
    fn digest_counts_copy_lines_as_rows_across_pieces() {
        let mut whole = StreamDigest::default();
        whole.update(b"1\ta\\nb\n2\tc\n");
        let mut pieces = StreamDigest::default();
        pieces.update(b"1\ta\\n");
        pieces.update(b"b\n2\tc\n");
        assert_eq!((whole.rows, whole.bytes), (2, 11));
        assert_eq!((pieces.rows, pieces.bytes, pieces.hex()), (whole.rows, whole.bytes, whole.hex()));
    }

    #[test]
    fn password_reaches_children_only_through_the_environment() {
        let target = PgTarget::new(Some("postgresql://u:s3cret@127.0.0.1:5499/db")).expect("URL");
        assert!(!format!("{target:?}").contains("s3cret"));
        assert!(!target.server().contains("s3cret"));
        let mut cmd = Command::new("true");
        target.child_env(&mut cmd);
        let envs: Vec<(String, String)> = cmd
            .get_envs()
            .filter_map(|(k, v)| Some((k.to_string_lossy().into_owned(), v?.to_string_lossy().into_owned())))
            .collect();
        assert!(envs.contains(&("PGPASSWORD".into(), "s3cret".into())));
        assert!(envs.contains(&("PGDATABASE".into(), "db".into())));
        assert!(envs.contains(&("PGPORT".into(), "5499".into())));
        assert_eq!(cmd.get_args().count(), 0);
    }
}
