//! A throwaway PostgreSQL 15 cluster for the mount tests: `initdb` into a temporary folder (as the
//! `postgres` user when the tests run as root, since initdb refuses root), a server on a free
//! loopback port with its socket in that folder, stopped when the value is dropped. Fails loudly
//! when PostgreSQL is missing or does not start.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Debian's PostgreSQL 15 binaries.
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

pub struct PgCluster {
    /// Holds the data folder and the socket.
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl PgCluster {
    pub fn start() -> Self {
        assert!(
            Path::new(PG_BIN).join("initdb").exists(),
            "{PG_BIN}/initdb is missing: install Debian's postgresql package (scripts/test.sh does)"
        );
        let dir = tempfile::Builder::new().prefix("cairn-pg-mount").tempdir().expect("temporary folder");
        let root = nix::unistd::geteuid().is_root();
        if root {
            let user = nix::unistd::User::from_name("postgres").expect("users").expect("a postgres user");
            nix::unistd::chown(dir.path(), Some(user.uid), Some(user.gid)).expect("chown to postgres");
        }
        // A free port: bind to port 0, read it, let it go (the server binds it a moment later).
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port();
        let cluster = PgCluster { dir, port };
        let data = cluster.data_dir();
        let initdb = cluster
            .as_server_user(Command::new(Path::new(PG_BIN).join("initdb")))
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "--no-sync"])
            .output()
            .expect("run initdb");
        assert!(initdb.status.success(), "initdb failed: {}", String::from_utf8_lossy(&initdb.stderr));
        let options = format!(
            "-k {} -p {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off",
            cluster.dir.path().display(),
            port
        );
        let start = cluster
            .as_server_user(Command::new(Path::new(PG_BIN).join("pg_ctl")))
            .arg("-D")
            .arg(&data)
            .args(["-w", "-t", "60", "-l"])
            .arg(cluster.dir.path().join("server.log"))
            .args(["-o", &options, "start"])
            .output()
            .expect("run pg_ctl start");
        let log = std::fs::read_to_string(cluster.dir.path().join("server.log")).unwrap_or_default();
        assert!(start.status.success(), "PostgreSQL did not start: {}\n{log}", String::from_utf8_lossy(&start.stderr));
        let deadline = Instant::now() + Duration::from_secs(60);
        while !cluster.client("pg_isready").status().is_ok_and(|s| s.success()) {
            assert!(Instant::now() < deadline, "PostgreSQL does not answer on port {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        cluster
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn as_server_user(&self, program: Command) -> Command {
        if !nix::unistd::geteuid().is_root() {
            return program;
        }
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program.get_program()).args(program.get_args());
        c
    }

    /// A client program (psql, pg_dump, pg_restore, createdb, ...) pointed at this cluster.
    pub fn client(&self, program: &str) -> Command {
        let mut c = Command::new(Path::new(PG_BIN).join(program));
        c.env("PGHOST", self.dir.path()).env("PGPORT", self.port.to_string()).env("PGUSER", "postgres");
        c
    }

    /// Runs SQL in `db` and returns what psql printed (unaligned, no headers).
    pub fn sql(&self, db: &str, sql: &str) -> String {
        let out = self
            .client("psql")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql])
            .output()
            .expect("psql");
        assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("UTF-8").trim().to_owned()
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self
            .as_server_user(Command::new(Path::new(PG_BIN).join("pg_ctl")))
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}
