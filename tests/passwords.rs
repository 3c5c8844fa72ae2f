//! Where the password comes from: a file or a command named for the run comes before
//! `CAIRN_PASSWORD`, the variables of the flags work alike, naming both a file and a command is
//! refused, and without any of them `init` asks twice on the terminal (a real pseudo-terminal, made
//! by util-linux's `script`). The password itself never shows in a message.

use std::io::Write;
use std::process::Stdio;

use crate::support::{PASSWORD, TestRepo, cairn_bin};

const WRONG: &str = "hunter2-not-it";

fn one_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr).into_owned();
    assert_eq!(text.lines().count(), 1, "expected one line on stderr, got: {text:?}");
    assert!(!text.contains(PASSWORD) && !text.contains(WRONG), "a password was echoed: {text}");
    text
}

#[test]
fn a_named_file_or_command_comes_before_the_variable_and_both_at_once_are_refused() {
    let repo = TestRepo::new();
    let right = repo.dir.path().join("right.txt");
    std::fs::write(&right, format!("{PASSWORD}\n")).expect("write");
    let snapshots =
        |c: &mut assert_cmd::Command| c.env("CAIRN_PASSWORD", WRONG).arg("snapshots").output().expect("runs");

    // Each source, with a wrong CAIRN_PASSWORD beside it that must not be used.
    let file_flag = snapshots(repo.cairn().arg("--password-file").arg(&right));
    assert!(file_flag.status.success(), "--password-file: {file_flag:?}");
    let file_var = snapshots(repo.cairn().env("CAIRN_PASSWORD_FILE", &right));
    assert!(file_var.status.success(), "CAIRN_PASSWORD_FILE: {file_var:?}");
    let command = format!("cat '{}'", right.display());
    let command_flag = snapshots(repo.cairn().args(["--password-command", &command]));
    assert!(command_flag.status.success(), "--password-command: {command_flag:?}");
    let command_var = snapshots(repo.cairn().env("CAIRN_PASSWORD_COMMAND", &command));
    assert!(command_var.status.success(), "CAIRN_PASSWORD_COMMAND: {command_var:?}");
    // Only the variable: it is used, and it is wrong.
    let variable = snapshots(&mut repo.cairn());
    assert_eq!(variable.status.code(), Some(12), "{variable:?}");
    one_line(&variable.stderr);

    let both = snapshots(repo.cairn().arg("--password-file").arg(&right).args(["--password-command", &command]));
    assert_eq!(both.status.code(), Some(1), "{both:?}");
    assert!(one_line(&both.stderr).contains("keep one"));

    let failing = snapshots(repo.cairn().args(["--password-command", "echo oops >&2; exit 3"]));
    assert_eq!(failing.status.code(), Some(1), "{failing:?}");
    let text = String::from_utf8_lossy(&failing.stderr);
    assert!(text.contains("oops") && text.contains("the password command failed"), "{text}");

    let empty = repo.dir.path().join("empty.txt");
    std::fs::write(&empty, "\n").expect("write");
    let blank = snapshots(repo.cairn().arg("--password-file").arg(&empty));
    assert_eq!(blank.status.code(), Some(1), "{blank:?}");
    assert!(one_line(&blank.stderr).contains("empty"));

    let missing = snapshots(repo.cairn().arg("--password-file").arg(repo.dir.path().join("no-such-file")));
    assert_eq!(missing.status.code(), Some(1), "{missing:?}");
    assert!(one_line(&missing.stderr).contains("no-such-file"));
}

/// Runs `cairn ARGS` on a pseudo-terminal with no password in the environment, typing `typed`.
fn on_a_terminal(repo: &TestRepo, args: &str, typed: &str) -> (Option<i32>, String) {
    let line = format!("exec '{}' {args}", cairn_bin().display());
    let mut child = repo
        .command("timeout")
        .args(["120", "script", "--quiet", "--return", "--command", &line, "/dev/null"])
        .env_remove("CAIRN_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs script (util-linux)");
    child.stdin.take().expect("stdin").write_all(typed.as_bytes()).expect("type");
    let out = child.wait_with_output().expect("script ends");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_ne!(out.status.code(), Some(124), "timed out on the terminal: {text}");
    (out.status.code(), text)
}

#[test]
fn init_asks_twice_on_a_terminal_and_other_commands_once() {
    let repo = TestRepo::uninitialised();
    let init = "init --kdf-memory-kib 64 --kdf-time 1";

    let (code, text) = on_a_terminal(&repo, init, "first try\nsecond try\n");
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("enter password again") && text.contains("do not match"), "{text}");
    assert!(!repo.repo_path().join("config").exists(), "a repository was created with mismatched passwords");

    let (code, text) = on_a_terminal(&repo, init, &format!("{PASSWORD}\n{PASSWORD}\n"));
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("created cairn repository"), "{text}");

    // The password typed at the prompt is the repository's: the usual environment opens it.
    repo.cairn().arg("snapshots").assert().success();
    let (code, text) = on_a_terminal(&repo, "snapshots", &format!("{PASSWORD}\n"));
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(text.matches("enter password").count(), 1, "{text}");
    let (code, text) = on_a_terminal(&repo, "snapshots", &format!("{WRONG}\n"));
    assert_eq!(code, Some(12), "{text}");
    assert!(text.contains("wrong password"), "{text}");
}
