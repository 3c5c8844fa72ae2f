//! What a backup prints: a progress bar (bytes, throughput, ETA) when standard error is a terminal,
//! and nothing at all with `--quiet` when it is not, so that cron mails stay empty. The terminal is
//! a real pseudo-terminal made by util-linux's `script`; the source command waits on a FIFO until
//! the test has seen the bar, so no timing decides the outcome.

use std::io::{Read, Write};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{TestRepo, cairn_bin};

#[test]
fn a_backup_on_a_terminal_shows_progress_and_a_quiet_one_elsewhere_prints_nothing() {
    let repo = TestRepo::new();
    let data = repo.scratch("src").join("dump.sql");
    crate::support::data::write_random_file(&data, 0x7e_0001, 8 << 20);
    let gate = repo.dir.path().join("gate");
    nix::unistd::mkfifo(&gate, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");

    // The command sends its data, then waits for a line on the FIFO before it ends.
    let source = format!("cat '{}'; read line < '{}'", data.display(), gate.display());
    let line = format!(
        "exec '{}' backup --stdin-filename dump.sql --stdin-from-command -- sh -c \"{source}\"",
        cairn_bin().display()
    );
    let mut child = repo
        .command("timeout")
        .args(["120", "script", "--quiet", "--return", "--command", &line, "/dev/null"])
        // A terminal always has a type; without one the bar library takes it for a dumb one.
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs script (util-linux)");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock().expect("lock").extend_from_slice(&buf[..n]);
            }
        })
    };
    let text = || String::from_utf8_lossy(&seen.lock().expect("lock")).into_owned();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !(text().contains("ETA") && text().contains("backup ")) {
        assert!(child.try_wait().expect("poll").is_none(), "ended before showing progress: {}", text());
        assert!(Instant::now() < deadline, "no progress bar in two minutes: {:?}", text());
        std::thread::sleep(Duration::from_millis(10));
    }
    std::fs::OpenOptions::new().write(true).open(&gate).expect("open FIFO").write_all(b"go\n").expect("release");
    let status = child.wait().expect("script ends");
    reader.join().expect("reader");
    let all = text();
    assert!(status.success(), "{status}: {all}");
    assert!(all.contains("B/s"), "no throughput in the bar: {all:?}");
    assert!(all.contains("snapshot") && all.contains("saved"), "no summary: {all:?}");

    // Not a terminal, and --quiet: a successful backup says nothing at all.
    repo.cairn().args(["-q", "backup"]).arg(data.parent().expect("folder")).assert().success().stdout("").stderr("");
}
