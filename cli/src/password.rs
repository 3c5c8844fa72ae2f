//! Getting a repository password without ever putting it on a command line or in a message:
//! `--password-file`, `--password-command` (its standard output), `CAIRN_PASSWORD`, or a prompt on
//! the terminal. The source repository of `copy` and `init --from-repo` has the same four, spelled
//! `--from-password-file`, `--from-password-command`, `CAIRN_FROM_PASSWORD`.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::GlobalArgs;

/// A password held only in memory, wiped when dropped.
pub struct Password(zeroize::Zeroizing<Vec<u8>>);

impl Password {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Where one repository's password may come from, and how those places are spelled in messages.
pub struct PasswordSource<'a> {
    pub file: Option<&'a Path>,
    pub command: Option<&'a str>,
    /// The variable that holds the password itself.
    pub variable: &'static str,
    pub file_option: &'static str,
    pub command_option: &'static str,
    pub prompt: &'static str,
}

impl<'a> PasswordSource<'a> {
    /// The repository named by `-r/--repo`.
    fn of(global: &'a GlobalArgs) -> Self {
        Self {
            file: global.password_file.as_deref(),
            command: global.password_command.as_deref(),
            variable: "CAIRN_PASSWORD",
            file_option: "--password-file/CAIRN_PASSWORD_FILE",
            command_option: "--password-command/CAIRN_PASSWORD_COMMAND",
            prompt: "enter password for repository: ",
        }
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

/// Gets the password of the repository named by `-r/--repo`; `confirm` asks twice on a terminal
/// (for `init`).
pub fn get(global: &GlobalArgs, confirm: bool) -> Result<Password> {
    get_from(&PasswordSource::of(global), confirm)
}

/// Gets a password from `source`. As with restic, a password file or command named for this run
/// (flag or its variable) comes before the password variable, which a shell profile may set for
/// every run; naming both a file and a command is an error.
pub fn get_from(source: &PasswordSource<'_>, confirm: bool) -> Result<Password> {
    if source.file.is_some() && source.command.is_some() {
        bail!(
            "both a password file and a password command are given ({}, {}): keep one",
            source.file_option,
            source.command_option
        );
    }
    if let Some(file) = source.file {
        let bytes = std::fs::read(file).with_context(|| format!("reading the password file {}", file.display()))?;
        return non_empty(strip_newline(bytes));
    }
    if let Some(cmd) = source.command {
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
    if let Some(p) = std::env::var_os(source.variable) {
        use std::os::unix::ffi::OsStringExt;
        return non_empty(p.into_vec());
    }
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(source.prompt).context("reading the password")?;
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
    let file_variable = source.file_option.split('/').nth(1).unwrap_or_default();
    let file_flag = source.file_option.split('/').next().unwrap_or_default();
    let command_flag = source.command_option.split('/').next().unwrap_or_default();
    bail!("no password given: set {}, {file_variable} or {file_flag}, or {command_flag}", source.variable)
}

fn non_empty(v: Vec<u8>) -> Result<Password> {
    let v = zeroize::Zeroizing::new(v);
    if v.is_empty() {
        bail!("the password is empty");
    }
    Ok(Password(v))
}
