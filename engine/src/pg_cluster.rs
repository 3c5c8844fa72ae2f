//! A throwaway PostgreSQL cluster for `pg drill --scratch-cluster`: `initdb` into a private
//! temporary folder (as the `postgres` user when cairn runs as root, since initdb refuses root),
//! started with `pg_ctl` listening only on a Unix socket inside that folder (authentication is
//! `trust`, so no TCP listener: no other local user can reach the restored copy of the data), and
//! stopped and removed when the value is dropped, whatever happened.
//!
//! The server runs in its own process group, so that a Ctrl-C meant for cairn does not shut it down
//! under the drill; a watchdog shell (also in its own group) stops it and removes the folder if cairn
//! itself dies without dropping the value (SIGKILL, a second Ctrl-C).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, ErrorKind, Result};
use crate::postgres::PgTarget;

/// The superuser of the scratch cluster.
const SUPERUSER: &str = "postgres";

/// A running throwaway cluster; dropping it stops the server and removes its folder.
#[derive(Debug)]
pub struct ScratchCluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    major: u32,
    as_root: bool,
    watchdog: Option<std::process::Child>,
    stopped: bool,
}

/// The server binaries to use: `PG_BIN` when set, else the newest `/usr/lib/postgresql/*/bin`
/// (Debian), else the folder of `initdb` found on `PATH`.
fn server_bin() -> Result<PathBuf> {
    if let Some(b) = std::env::var_os("PG_BIN").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(b));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((major, bin))
        })
        .collect();
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return Ok(bin);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).find(|p| p.join("initdb").exists()).ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidInput,
            "initdb not found for --scratch-cluster: install the PostgreSQL server (postgresql) or set PG_BIN to its bin folder",
        )
    })
}

/// The major version of a `server_version` string ("15.14 (Debian ...)" → 15).
pub fn major_version(version: &str) -> Option<u32> {
    version.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A free port number: the socket file is named after it (no TCP listener is opened).
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| Error::io("choosing a port", e))?;
    Ok(l.local_addr().map_err(|e| Error::io("choosing a port", e))?.port())
}

impl ScratchCluster {
    /// Creates and starts a cluster whose server is at least `min_major` (the source's major
    /// version: pg_restore of a newer server's schema into an older one is not supported).
    pub fn start(min_major: Option<u32>) -> Result<Self> {
        let bin = server_bin()?;
        let major = tool_major(&bin.join("initdb"))?;
        if let Some(min) = min_major
            && major < min
        {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "the newest PostgreSQL server installed here ({major}, in {}) is older than the snapshot's ({min}): \
                     install PostgreSQL {min} or newer, set PG_BIN, or use --scratch-db",
                    bin.display()
                ),
            ));
        }
        let as_root = is_root();
        let dir = tempfile::Builder::new()
            .prefix("cairn-drill-cluster-")
            .tempdir()
            .map_err(|e| Error::io("creating the scratch cluster's folder", e))?
            .keep();
        let mut cluster = Self { dir, bin, port: free_port()?, major, as_root, watchdog: None, stopped: false };
        // From here on, Drop removes the folder whatever fails.
        cluster.watchdog = cluster.spawn_watchdog().ok();
        if as_root {
            nix::unistd::chown(cluster.dir.as_path(), Some(postgres_uid()?), None)
                .map_err(|e| Error::io(format!("handing {} to the postgres user", cluster.dir.display()), e.into()))?;
        }
        cluster.run(
            "initdb",
            cluster.owner(&cluster.bin.join("initdb")).arg("-D").arg(cluster.data()).args([
                "-A",
                "trust",
                "-U",
                SUPERUSER,
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ]),
        )?;
        let options = format!(
            "-k '{}' -p {} -c listen_addresses='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
             -c max_wal_size=4GB",
            cluster.dir.display(),
            cluster.port
        );
        let log = cluster.dir.join("server.log");
        cluster.run(
            "pg_ctl start",
            cluster
                .owner(&cluster.bin.join("pg_ctl"))
                .arg("-D")
                .arg(cluster.data())
                .args(["-w", "-t", "120", "-l"])
                .arg(&log)
                .args(["-o", &options, "start"]),
        )?;
        Ok(cluster)
    }

    /// Where the cluster lives (removed on drop).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's major version.
    pub fn major(&self) -> u32 {
        self.major
    }

    /// The cluster's `postgres` database, through its socket.
    pub fn target(&self) -> PgTarget {
        PgTarget::unix_socket(&self.dir, self.port, SUPERUSER, "postgres")
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// `program` run as the cluster's owner, in its own process group (out of reach of a Ctrl-C
    /// sent to cairn's group), with no PG* variables of the caller.
    fn owner(&self, program: &Path) -> Command {
        let mut c = if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        for (k, _) in std::env::vars_os() {
            if k.to_str().is_some_and(|k| k.starts_with("PG")) {
                c.env_remove(k);
            }
        }
        c.process_group(0).stdin(Stdio::null());
        c
    }

    fn run(&self, what: &str, cmd: &mut Command) -> Result<()> {
        let out = cmd.output().map_err(|e| crate::postgres::tool_error(what, e))?;
        if out.status.success() {
            return Ok(());
        }
        let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
        if text.trim().is_empty() {
            text = String::from_utf8_lossy(&out.stdout).into_owned();
        }
        if what.starts_with("pg_ctl")
            && let Ok(log) = std::fs::read_to_string(self.dir.join("server.log"))
        {
            text.push_str(&log);
        }
        let last = text.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or("").to_owned();
        Err(Error::new(
            ErrorKind::CommandFailed,
            format!("{what} of the scratch cluster in {} failed ({}): {last}", self.dir.display(), out.status),
        ))
    }

    /// A shell that waits for this process to end, then stops the server and removes the folder;
    /// after a normal drop it finds nothing left to do.
    fn spawn_watchdog(&self) -> Result<std::process::Child> {
        let owner = if self.as_root { "runuser -u postgres -- " } else { "" };
        let script = format!(
            "while kill -0 \"$1\" 2>/dev/null; do sleep 1; done; \
             [ -d \"$3\" ] || exit 0; {owner}\"$2\" -D \"$3\" -m immediate stop >/dev/null 2>&1; rm -rf \"$4\""
        );
        Command::new("sh")
            .args(["-c", &script, "cairn-drill-watchdog"])
            .arg(std::process::id().to_string())
            .arg(self.bin.join("pg_ctl"))
            .arg(self.data())
            .arg(&self.dir)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::io("starting the scratch cluster's watchdog", e))
    }

    /// Stops the server (immediately: its data is thrown away) and removes the folder.
    pub fn remove(mut self) -> Result<()> {
        self.stop_and_remove()
    }

    fn stop_and_remove(&mut self) -> Result<()> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        if self.data().join("postmaster.pid").exists() {
            let _ = self
                .owner(&self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.data())
                .args(["-m", "immediate", "-w", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let removed = std::fs::remove_dir_all(&self.dir);
        if let Some(mut w) = self.watchdog.take() {
            // Nothing is left for it to do; it would otherwise poll until cairn exits.
            let _ = w.kill();
            let _ = w.wait();
        }
        removed.map_err(|e| Error::io(format!("removing the scratch cluster's folder {}", self.dir.display()), e))
    }
}

impl Drop for ScratchCluster {
    fn drop(&mut self) {
        let _ = self.stop_and_remove();
    }
}

fn postgres_uid() -> Result<nix::unistd::Uid> {
    match nix::unistd::User::from_name("postgres") {
        Ok(Some(u)) => Ok(u.uid),
        _ => Err(Error::new(
            ErrorKind::InvalidInput,
            "--scratch-cluster run as root needs the postgres user (initdb refuses root): install postgresql or run cairn as another user",
        )),
    }
}

/// The major version of a server tool (`initdb --version` → "initdb (PostgreSQL) 15.14").
fn tool_major(program: &Path) -> Result<u32> {
    let out = Command::new(program).arg("--version").output().map_err(|e| crate::postgres::tool_error("initdb", e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace().skip_while(|t| *t != "(PostgreSQL)").nth(1).and_then(major_version).ok_or_else(|| {
        Error::new(
            ErrorKind::CommandFailed,
            format!("cannot read the version of {}: '{}'", program.display(), text.trim()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::major_version;

    #[test]
    fn major_versions() {
        assert_eq!(major_version("15.14 (Debian 15.14-0+deb12u1)"), Some(15));
        assert_eq!(major_version("17devel"), Some(17));
        assert_eq!(major_version("9.6.24"), Some(9));
        assert_eq!(major_version("x"), None);
    }
}
