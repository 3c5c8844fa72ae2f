//! `cairn copy`, and the options naming the source repository (shared with `init --from-repo`).

use std::path::PathBuf;

use anyhow::Result;
use cairn_engine::backend::Location;
use cairn_engine::commands::copy::{CopyOptions, copy};
use cairn_engine::{ErrorKind, Repository};

use super::FilterArgs;
use crate::password::PasswordSource;
use crate::progress::Bar;
use crate::{GlobalArgs, exit, output};

/// The repository to copy from (restic's `--from-*` options and `RESTIC_FROM_*` variables).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct FromRepoArgs {
    /// Source repository location
    #[arg(long, env = "CAIRN_FROM_REPOSITORY", value_name = "LOCATION")]
    pub from_repo: Option<String>,
    /// Read the source repository's password from this file (first line)
    #[arg(long, env = "CAIRN_FROM_PASSWORD_FILE", value_name = "FILE")]
    pub from_password_file: Option<PathBuf>,
    /// Run this shell command and read the source repository's password from its output
    #[arg(long, env = "CAIRN_FROM_PASSWORD_COMMAND", value_name = "COMMAND")]
    pub from_password_command: Option<String>,
}

impl FromRepoArgs {
    /// Opens and unlocks the source repository (its password from the `--from-*` options,
    /// `CAIRN_FROM_PASSWORD` or a prompt).
    pub fn open(&self, global: &GlobalArgs) -> Result<Repository> {
        let spec = self.from_repo.as_deref().ok_or_else(|| {
            anyhow::anyhow!("no source repository given: use --from-repo or set CAIRN_FROM_REPOSITORY")
        })?;
        // The -o/--option settings apply to the source as to the destination (as restic's -o).
        let location = Location::parse_with_options(spec, &global.options)?;
        cairn_engine::backend::Backend::open(&location, false).map_err(|e| e.context("source repository"))?;
        let source = PasswordSource {
            file: self.from_password_file.as_deref(),
            command: self.from_password_command.as_deref(),
            variable: "CAIRN_FROM_PASSWORD",
            file_option: "--from-password-file/CAIRN_FROM_PASSWORD_FILE",
            command_option: "--from-password-command/CAIRN_FROM_PASSWORD_COMMAND",
            prompt: "enter password for the source repository: ",
        };
        let password = crate::password::get_from(&source, false)?;
        let repo = Repository::open(&location, password.as_bytes(), &super::open_options(global)).map_err(|e| {
            if e.kind() == ErrorKind::WrongPassword {
                cairn_engine::Error::new(
                    ErrorKind::WrongPassword,
                    format!(
                        "wrong password for the source repository {location}: no key file could be opened with it \
                         (check CAIRN_FROM_PASSWORD / --from-password-file / --from-password-command)"
                    ),
                )
            } else {
                e.context("source repository")
            }
        })?;
        super::warn_about_cache(&repo);
        Ok(repo)
    }
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Snapshots of the source to copy (`latest`, ids or prefixes; default: all that pass the filters)
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    #[command(flatten)]
    pub from: FromRepoArgs,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Show what would be copied without writing anything to the destination
    #[arg(short = 'n', long)]
    pub dry_run: bool,
}

pub fn run(global: &GlobalArgs, args: Args) -> Result<u8> {
    let src = args.from.open(global)?;
    let dst = super::open(global)?;
    let opts = CopyOptions { snapshots: args.snapshots, filter: args.filter.to_filter(), dry_run: args.dry_run };
    let bar = Bar::new(!global.quiet && !global.json, "copying");
    let report = copy(&src, &dst, &opts, &bar);
    bar.finish();
    let report = report?;
    let code = if report.warnings.is_empty() { exit::OK } else { exit::INCOMPLETE };
    if global.json {
        output::json(&report)?;
        return Ok(code);
    }
    if global.quiet {
        return Ok(code);
    }
    for s in &report.already_copied {
        let at = s.destination.map(|d| d.short()).unwrap_or_default();
        output::line(&format!("snapshot {} of {} already copied as {at}", s.source.short(), output::time(s.time_ns)))?;
    }
    for s in &report.copied {
        let what = format!("snapshot {} of {} ({})", s.source.short(), output::time(s.time_ns), s.host);
        match s.destination {
            Some(id) => output::line(&format!("copied {what} as {}", id.short()))?,
            None => output::line(&format!("would copy {what} (dry run)"))?,
        }
    }
    let verb = if report.dry_run { "would add" } else { "added" };
    let plural = |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    output::line(&format!(
        "{} copied, {} already present; read {} in {}, {verb} {} ({} stored)",
        plural(report.copied.len(), "snapshot", "snapshots"),
        report.already_copied.len(),
        output::size(report.bytes_read),
        plural(report.data_blobs_read as usize, "data blob", "data blobs"),
        output::size(report.bytes_added_plain),
        output::size(report.bytes_added_stored),
    ))?;
    Ok(code)
}
