//! `cairn key list|add|remove|passwd`. The new password comes from `--new-password-file`,
//! `CAIRN_NEW_PASSWORD`, or a prompt on the terminal (asked twice); it is never printed.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use cairn_engine::commands::key;
use cairn_format::key::KdfParams;

use crate::{GlobalArgs, exit, output};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub what: What,
}

#[derive(Debug, clap::Subcommand)]
pub enum What {
    /// List the key files (the one in use is marked)
    List,
    /// Add a key file for another password
    Add(NewKeyArgs),
    /// Remove a key file (not the one in use)
    Remove {
        /// Key id or unique prefix
        id: String,
    },
    /// Change the password: add a key file for the new password, then remove the one in use
    Passwd(NewKeyArgs),
}

#[derive(Debug, clap::Args)]
pub struct NewKeyArgs {
    /// Read the new password from this file (first line); default: CAIRN_NEW_PASSWORD or a prompt
    #[arg(long, value_name = "FILE")]
    pub new_password_file: Option<PathBuf>,
    /// argon2id memory in KiB for the new key file (lower values weaken the password protection)
    #[arg(long, default_value_t = KdfParams::DEFAULT.m_cost, value_name = "KIB")]
    pub kdf_memory_kib: u32,
    /// argon2id passes for the new key file
    #[arg(long, default_value_t = KdfParams::DEFAULT.t_cost, value_name = "N")]
    pub kdf_time: u32,
}

impl NewKeyArgs {
    fn kdf(&self) -> KdfParams {
        KdfParams::with_costs(self.kdf_memory_kib, self.kdf_time)
    }
}

pub fn run(global: &GlobalArgs, args: Args) -> Result<u8> {
    let repo = super::open(global)?;
    match args.what {
        What::List => {
            let keys = key::list(&repo)?;
            if global.json {
                output::json(&keys)?;
            } else {
                let rows: Vec<Vec<String>> = keys
                    .iter()
                    .map(|k| {
                        vec![
                            format!("{}{}", if k.current { "*" } else { " " }, k.id.short()),
                            k.user.clone().unwrap_or_default(),
                            k.host.clone().unwrap_or_default(),
                            k.created_unix.map(|t| output::time(t.saturating_mul(1_000_000_000))).unwrap_or_default(),
                            k.damaged.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                output::table(&[" ID", "User", "Host", "Created", "Problem"], &rows)?;
            }
            Ok(if keys.iter().any(|k| k.damaged.is_some()) { exit::DAMAGE } else { exit::OK })
        }
        What::Add(a) => {
            let password = new_password(&a)?;
            let id = key::add(&repo, &password, a.kdf())?;
            if global.json {
                output::json(&serde_json::json!({ "added": id }))?;
            } else if !global.quiet {
                output::line(&format!("added key {}", id.short()))?;
            }
            Ok(exit::OK)
        }
        What::Remove { id } => {
            let removed = key::remove(&repo, &id)?;
            if global.json {
                output::json(&serde_json::json!({ "removed": removed }))?;
            } else if !global.quiet {
                output::line(&format!("removed key {}", removed.short()))?;
            }
            Ok(exit::OK)
        }
        What::Passwd(a) => {
            let password = new_password(&a)?;
            let (new, old) = key::change_password(&repo, &password, a.kdf())?;
            if global.json {
                output::json(&serde_json::json!({ "added": new, "removed": old }))?;
            } else if !global.quiet {
                output::line(&format!("password changed: key {} replaces key {}", new.short(), old.short()))?;
            }
            Ok(exit::OK)
        }
    }
}

/// The new password, held only in memory.
fn new_password(a: &NewKeyArgs) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    // The file named for this run comes before the variable, as for the repository password.
    let bytes = if let Some(file) = &a.new_password_file {
        let b = std::fs::read(file).with_context(|| format!("reading the new password file {}", file.display()))?;
        crate::password::strip_newline(b)
    } else if let Some(p) = std::env::var_os("CAIRN_NEW_PASSWORD") {
        use std::os::unix::ffi::OsStringExt;
        p.into_vec()
    } else if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("enter new password: ").context("reading the new password")?;
        let second = zeroize::Zeroizing::new(
            rpassword::prompt_password("enter new password again: ").context("reading the new password")?,
        );
        if first != *second {
            bail!("the passwords do not match");
        }
        first.into_bytes()
    } else {
        bail!("no new password given: set CAIRN_NEW_PASSWORD or use --new-password-file")
    };
    let bytes = zeroize::Zeroizing::new(bytes);
    if bytes.is_empty() {
        bail!("the new password is empty");
    }
    Ok(bytes)
}
