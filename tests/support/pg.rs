//! A throwaway PostgreSQL cluster for the whole test binary: `initdb` into a temporary folder (as the
//! `postgres` user when the tests run as root, since initdb refuses root), started on a free
//! loopback port with its socket in that folder, never touching a cluster on 5432. A watchdog
//! shell stops the server and removes the folder once the test process is gone. Fails loudly
//! when the cluster cannot start.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// The running cluster.
#[derive(Debug)]
pub struct Cluster {
    pub dir: PathBuf,
    pub port: u16,
    pub bin: PathBuf,
    /// Outlives the test process on purpose: it stops the server once that process is gone.
    _watchdog: std::process::Child,
}

/// The binaries of the newest PostgreSQL that Debian installed.
fn pg_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed (apt-get install postgresql)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().expect("no PostgreSQL server binaries under /usr/lib/postgresql")
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// `program` run as the cluster's owner.
fn as_owner(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    l.local_addr().expect("local address").port()
}

fn check(what: &str, out: Output) -> Output {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The cluster, started on first use.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(start)
}

fn start() -> Cluster {
    let bin = pg_bin();
    // Under /tmp, not $TMPDIR: the postgres user must be able to reach it when the tests run as root.
    let dir = PathBuf::from("/tmp").join(format!("cairn-pg-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("cluster folder");
    if is_root() {
        check("chown", Command::new("chown").arg("postgres:postgres").arg(&dir).output().expect("chown"));
    }
    let data = dir.join("data");
    check(
        "initdb",
        as_owner(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "--no-sync", "-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8"])
            .output()
            .expect("running initdb"),
    );
    let port = free_port();
    let opts = format!(
        "-k {} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
         -c full_page_writes=off -c max_connections=60",
        dir.display()
    );
    check(
        "pg_ctl start",
        as_owner(&bin.join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .args(["-w", "-t", "60", "-l"])
            .arg(dir.join("log"))
            .args(["-o", &opts, "start"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .expect("running pg_ctl"),
    );
    // Stops the server and removes its folder when this test process is gone.
    let owner = if is_root() { "runuser -u postgres -- " } else { "" };
    let watchdog = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {owner}{ctl} -D {data} -m immediate stop >/dev/null 2>&1; rm -rf {dir}",
        pid = std::process::id(),
        ctl = bin.join("pg_ctl").display(),
        data = data.display(),
        dir = dir.display()
    );
    let watchdog = Command::new("sh")
        .args(["-c", &watchdog])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the cluster's watchdog");
    Cluster { dir, port, bin, _watchdog: watchdog }
}

impl Cluster {
    /// A URL for `db` (user postgres, trust authentication on loopback).
    pub fn url(&self, db: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// A new empty database with a unique name.
    pub fn create_db(&self, prefix: &str) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!("{prefix}_{}", N.fetch_add(1, Ordering::SeqCst));
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        name
    }

    /// `program` from the server's bin folder, pointed at this cluster through PG* variables.
    pub fn tool(&self, program: &str) -> Command {
        let mut c = Command::new(self.bin.join(program));
        c.env("PGHOST", "127.0.0.1").env("PGPORT", self.port.to_string()).env("PGUSER", "postgres");
        c
    }

    /// Runs SQL in `db` with psql; panics on error; returns the unaligned output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = check(
            "psql",
            self.tool("psql")
                .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql])
                .output()
                .expect("running psql"),
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Runs an SQL script in `db` with psql (ON_ERROR_STOP).
    pub fn psql_script(&self, db: &str, script: &str) {
        use std::io::Write;
        let mut child = self
            .tool("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running psql");
        child.stdin.take().expect("stdin").write_all(script.as_bytes()).expect("writing the script");
        check("psql script", child.wait_with_output().expect("psql"));
    }

    /// `pg_dump` of `db` in plain format without the lines that differ between two dumps of equal
    /// databases (the header comments and the random `\restrict` key).
    pub fn plain_dump(&self, db: &str) -> String {
        let out = check("pg_dump", self.tool("pg_dump").args(["--no-sync", "-d", db]).output().expect("pg_dump"));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| {
                !l.starts_with("\\restrict")
                    && !l.starts_with("\\unrestrict")
                    && !l.starts_with("-- Dumped from")
                    && !l.starts_with("-- Dumped by")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}
