//! Getting the repository password without ever putting it on a command line or in a message:
//! `--password-file`, `--password-command` (its standard output), `CAIRN_PASSWORD`, or a prompt on
//! the terminal.

use std::io::IsTerminal;

use anyhow::{Context, Result, bail};

use crate::GlobalArgs;

/// A password held only in memory, wiped when dropped.
pub struct Password(zeroize::Zeroizing<Vec<u8>>);

impl Password {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// The first line of a password file or command output, without its line ending.
pub(crate) fn strip_newline(mut v: Vec<u8>) -> Vec<u8> {
    if let Some(pos) = v.iter().position(|&b| b == b'\n') {
        v.truncate(pos);
    }
    if v.last() == Some(&b'\r') {
        v.pop();
    }
    v
}

/// Gets the password; `confirm` asks twice on a terminal (for `init`). As with restic, a password
/// file or command named for this run (flag or its variable) comes before `CAIRN_PASSWORD`, which
/// a shell profile may set for every run; naming both a file and a command is an error.
pub fn get(global: &GlobalArgs, confirm: bool) -> Result<Password> {
    if global.password_file.is_some() && global.password_command.is_some() {
        bail!(
            "both a password file and a password command are given (--password-file/CAIRN_PASSWORD_FILE, \
             --password-command/CAIRN_PASSWORD_COMMAND): keep one"
        );
    }
    if let Some(file) = &global.password_file {
        let bytes = std::fs::read(file).with_context(|| format!("reading the password file {}", file.display()))?;
        return non_empty(strip_newline(bytes));
    }
    if let Some(cmd) = &global.password_command {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .output()
            .context("running the password command")?;
        if !out.status.success() {
            bail!("the password command failed ({})", out.status);
        }
        return non_empty(strip_newline(out.stdout));
    }
    if let Some(p) = std::env::var_os("CAIRN_PASSWORD") {
        use std::os::unix::ffi::OsStringExt;
        return non_empty(p.into_vec());
    }
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("enter password for repository: ").context("reading the password")?;
        if confirm {
            let second = zeroize::Zeroizing::new(
                rpassword::prompt_password("enter password again: ").context("reading the password")?,
            );
            if first != *second {
                bail!("the passwords do not match");
            }
        }
        return non_empty(first.into_bytes());
    }
    bail!("no password given: set CAIRN_PASSWORD, CAIRN_PASSWORD_FILE or --password-file, or --password-command")
}

fn non_empty(v: Vec<u8>) -> Result<Password> {
    let v = zeroize::Zeroizing::new(v);
    if v.is_empty() {
        bail!("the password is empty");
    }
    Ok(Password(v))
}
