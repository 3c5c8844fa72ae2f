//! `backup --stdin` and `--stdin-from-command` warn once when the stream is compressed or
//! encrypted (gzip, zstd, bzip2, xz, OpenPGP): such input changes throughout after any small change,
//! so it does not deduplicate. The backup itself still succeeds.

use std::process::{Command, Stdio};

use crate::support::TestRepo;
use crate::support::data::SqlDump;

fn sql_text() -> Vec<u8> {
    let dump = SqlDump::new(0xc0_11e5);
    let mut out = Vec::new();
    for row in 0..5_000 {
        dump.push_row(&mut out, row, 0);
    }
    out
}

/// `input` through a real tool (`gzip -c`, ...).
fn through(program: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} is installed: {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        stdin.write_all(&input).expect("feed");
    });
    let out = child.wait_with_output().expect("runs");
    writer.join().expect("writer");
    assert!(out.status.success(), "{program} failed");
    out.stdout
}

/// Stops the gpg agent of a home folder when dropped.
struct GpgAgent(String);

impl Drop for GpgAgent {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf").args(["--homedir", &self.0, "--kill", "gpg-agent"]).status();
    }
}

fn warnings(stderr: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stderr).lines().filter(|l| l.starts_with("warning:")).map(str::to_owned).collect()
}

#[test]
fn compressed_or_encrypted_standard_input_gets_one_warning_and_is_still_backed_up() {
    let repo = TestRepo::new();
    let plain = sql_text();
    let gpg_home = repo.scratch("gnupg");
    std::fs::set_permissions(&gpg_home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).expect("chmod");
    let home = gpg_home.to_str().expect("UTF-8 path");
    // gpg starts an agent for this home folder; it is stopped when the test ends, pass or fail.
    let _agent = GpgAgent(home.to_owned());
    let gpg = |armor: bool| {
        let mut args =
            vec!["--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", "test", "--homedir", home];
        args.push("--symmetric");
        if armor {
            args.push("--armor");
        }
        through("gpg", &args, &plain)
    };
    let cases: [(&str, Vec<u8>); 6] = [
        ("gzip", through("gzip", &["-c"], &plain)),
        ("zstd", through("zstd", &["-c", "-q"], &plain)),
        ("bzip2", through("bzip2", &["-c"], &plain)),
        ("xz", through("xz", &["-c"], &plain)),
        ("OpenPGP", gpg(false)),
        ("OpenPGP", gpg(true)),
    ];
    for (format, bytes) in cases {
        let out = repo
            .cairn()
            .args(["backup", "--stdin", "--stdin-filename", "db.sql.x"])
            .write_stdin(bytes.clone())
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(0), "{format}: {}", String::from_utf8_lossy(&out.stderr));
        let warned = warnings(&out.stderr);
        assert_eq!(warned.len(), 1, "{format}: {warned:?} for a stream starting {:02x?}", &bytes[..bytes.len().min(8)]);
        assert!(warned[0].contains(format) && warned[0].contains("does not deduplicate"), "{format}: {warned:?}");
        let dumped = repo.cairn().args(["dump", "latest", "/db.sql.x"]).output().expect("runs");
        assert!(dumped.stdout == bytes, "{format}: the stream was not stored as it came");
    }

    // The same from a command, and no warning at all for the plain dump.
    let file = repo.scratch("in").join("db.sql");
    std::fs::write(&file, &plain).expect("write");
    let out = repo
        .cairn()
        .args(["backup", "--stdin-from-command", "--stdin-filename", "db.sql.gz", "--", "gzip", "-c"])
        .arg(&file)
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(warnings(&out.stderr).len(), 1, "{}", String::from_utf8_lossy(&out.stderr));
    let out = repo
        .cairn()
        .args(["backup", "--stdin", "--stdin-filename", "db.sql"])
        .write_stdin(plain)
        .output()
        .expect("runs");
    assert!(out.status.success());
    assert!(warnings(&out.stderr).is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}
