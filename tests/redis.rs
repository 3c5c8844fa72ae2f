//! Redis: `backup --stdin-from-command -- redis-cli --rdb -` against a real `redis-server` (Debian's
//! package) started by the test on its own loopback port, restored with `dump` and loaded into a
//! second throwaway server, whose keys and values must equal the first's.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::TestRepo;

/// A `redis-server` on loopback, killed when dropped.
struct Redis {
    child: Child,
    port: u16,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("a free loopback port").local_addr().expect("address").port()
}

impl Redis {
    /// Starts a server whose data folder is `dir` (loading `dir/dump.rdb` if present); fails the
    /// test loudly if it does not answer within 20 s.
    fn start(dir: &Path) -> Self {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--dbfilename", "dump.rdb", "--enable-debug-command", "yes", "--dir"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test.sh installs redis-server and redis-tools)");
        let server = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while server.cli(&["ping"]) != "PONG" {
            assert!(Instant::now() < deadline, "redis-server on port {port} did not answer within 20 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// Runs `redis-cli -p PORT ARGS` and returns its output, trimmed (empty if it failed).
    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli").arg("-p").arg(self.port.to_string()).args(args).output();
        let out = out.expect("redis-cli is installed");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Sends commands, one per line, through `redis-cli`.
    fn feed(&self, commands: &str) {
        let mut child = Command::new("redis-cli")
            .arg("-p")
            .arg(self.port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-cli is installed");
        use std::io::Write;
        child.stdin.take().expect("stdin").write_all(commands.as_bytes()).expect("feed redis-cli");
        assert!(child.wait().expect("redis-cli ends").success());
    }

    fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.cli(&["--scan"]).lines().map(str::to_owned).collect();
        keys.sort();
        keys
    }
}

#[test]
fn a_redis_rdb_backed_up_from_redis_cli_loads_into_a_new_server_with_the_same_keys() {
    let repo = TestRepo::new();
    let source = Redis::start(&repo.scratch("redis-source"));
    let mut commands = String::new();
    for i in 0..5000 {
        commands.push_str(&format!("SET key:{i} value-{i}-{}\n", "x".repeat(i % 200)));
    }
    commands.push_str("HSET user:1 name alice email alice@example.org\n");
    commands.push_str("RPUSH queue a b c d\nSADD tags red green blue\nZADD scores 1 one 2 two 3.5 three\n");
    commands.push_str("SET counter 41\nINCR counter\nSET 'name with spaces' 'caf\u{e9} \u{2603}'\n");
    source.feed(&commands);
    assert_eq!(source.cli(&["dbsize"]), "5006");

    let port = source.port.to_string();
    let out = repo
        .cairn()
        .args(["backup", "--json", "--stdin-from-command", "--stdin-filename", "redis.rdb", "--"])
        .args(["redis-cli", "-p", &port, "--rdb", "-"])
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(report["summary"]["bytes_read"].as_u64().expect("bytes") > 10_000, "{report}");

    // The RDB comes back with `dump` and a second server loads it at start.
    let restored_dir = repo.scratch("redis-restored");
    let dumped = repo.cairn().args(["dump", "latest", "/redis.rdb"]).output().expect("runs");
    assert!(dumped.status.success(), "{}", String::from_utf8_lossy(&dumped.stderr));
    assert!(dumped.stdout.starts_with(b"REDIS"), "not an RDB file");
    std::fs::write(restored_dir.join("dump.rdb"), &dumped.stdout).expect("write the RDB");
    let restored = Redis::start(&restored_dir);

    assert_eq!(restored.cli(&["dbsize"]), "5006");
    assert_eq!(restored.keys(), source.keys());
    // The digest covers every key, type and value.
    assert_eq!(restored.cli(&["debug", "digest"]), source.cli(&["debug", "digest"]));
    assert_eq!(restored.cli(&["get", "key:4999"]), source.cli(&["get", "key:4999"]));
    assert_eq!(restored.cli(&["get", "counter"]), "42");
    assert_eq!(restored.cli(&["zscore", "scores", "three"]), "3.5");
}
