//! Getting the repository password without ever putting it on a command line or in a message:
//! `CAIRN_PASSWORD`, `--password-file`, `--password-command` (its standard output), or a prompt on
//! the terminal.

use std::io::IsTerminal;

use anyhow::{Context, Result, bail};

use crate::GlobalArgs;

/// A password held only in memory.
pub struct Password(Vec<u8>);

impl Password {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

fn strip_newline(mut v: Vec<u8>) -> Vec<u8> {
    if let Some(pos) = v.iter().position(|&b| b == b'\n') {
        v.truncate(pos);
    }
    if v.last() == Some(&b'\r') {
        v.pop();
    }
    v
}

/// Gets the password; `confirm` asks twice on a terminal (for `init`).
pub fn get(global: &GlobalArgs, confirm: bool) -> Result<Password> {
    if let Some(p) = std::env::var_os("CAIRN_PASSWORD") {
        use std::os::unix::ffi::OsStringExt;
        return non_empty(p.into_vec());
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
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("enter password for repository: ").context("reading the password")?;
        if confirm {
            let second = rpassword::prompt_password("enter password again: ").context("reading the password")?;
            if first != second {
                bail!("the passwords do not match");
            }
        }
        return non_empty(first.into_bytes());
    }
    bail!("no password given: set CAIRN_PASSWORD, CAIRN_PASSWORD_FILE or --password-file, or --password-command")
}

fn non_empty(v: Vec<u8>) -> Result<Password> {
    if v.is_empty() {
        bail!("the password is empty");
    }
    Ok(Password(v))
}
