//! `cairn`: the command line. Parses arguments, gets the password, calls the engine, renders what it
//! returns and maps errors to documented exit codes. No repository logic lives here.

mod commands;
mod metrics;
mod output;
mod password;
mod progress;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit codes (documented in README.md).
pub mod exit {
    pub const OK: u8 = 0;
    pub const FATAL: u8 = 1;
    /// Finished, but some files could not be read or restored.
    pub const INCOMPLETE: u8 = 3;
    /// `check` (or `key list`) found damage in the repository.
    pub const DAMAGE: u8 = 4;
    pub const NO_REPOSITORY: u8 = 10;
    pub const LOCKED: u8 = 11;
    pub const WRONG_PASSWORD: u8 = 12;
    /// The storage refused the credentials.
    pub const ACCESS_DENIED: u8 = 13;
    pub const INTERRUPTED: u8 = 130;
}

#[derive(Debug, Parser)]
#[command(name = "cairn", version, about = "Deduplicating, encrypted backups of files and database dumps", long_about = None)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Options every command accepts.
#[derive(Debug, clap::Args)]
pub struct GlobalArgs {
    /// Repository location: a local folder, s3:http(s)://HOST:PORT/BUCKET/PREFIX (prefix optional), or opendal:SCHEME
    #[arg(short = 'r', long = "repo", env = "CAIRN_REPOSITORY", global = true, value_name = "LOCATION")]
    pub repo: Option<String>,
    /// Storage setting (repeatable): connections=N, retries=N, timeout=SECS, s3.path-style=true|false,
    /// s3.region=R, s3.NAME (a setting of OpenDAL's S3 service), or any OpenDAL setting of an opendal:SCHEME location
    #[arg(short = 'o', long = "option", global = true, value_name = "KEY=VALUE", value_parser = parse_option)]
    pub options: Vec<(String, String)>,
    /// Read the password from this file (first line)
    #[arg(long, env = "CAIRN_PASSWORD_FILE", global = true, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Run this shell command and read the password from its output
    #[arg(long, env = "CAIRN_PASSWORD_COMMAND", global = true, value_name = "COMMAND")]
    pub password_command: Option<String>,
    /// Folder for the local cache (default: $XDG_CACHE_HOME/cairn or ~/.cache/cairn)
    #[arg(long, env = "CAIRN_CACHE_DIR", global = true, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Keep no local cache (slower; nothing is written outside the repository)
    #[arg(long, global = true)]
    pub no_cache: bool,
    /// Print nothing but warnings and errors
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Print machine-readable JSON on standard output
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a new repository
    Init(commands::init::Args),
    /// Back up files, standard input, or a command's output
    Backup(commands::backup::Args),
    /// List snapshots
    Snapshots(commands::snapshots::Args),
    /// Restore a snapshot into a folder
    Restore(commands::restore::Args),
    /// Write one file of a snapshot to standard output
    Dump(commands::dump::Args),
    /// List the files in a snapshot
    Ls(commands::ls::Args),
    /// Print a decoded repository object (for debugging)
    Cat(commands::cat::Args),
    /// Remove snapshots by id or by a keep policy
    Forget(commands::forget::Args),
    /// Reclaim the space of data no snapshot uses
    Prune(commands::prune::Args),
    /// Check the repository for damage (structure; with --read-data, every blob)
    Check(commands::check::Args),
    /// Repair the index or snapshots after damage
    Repair(commands::repair::Args),
    /// Manage key files and passwords
    Key(commands::key::Args),
    /// Show what changed between two snapshots
    Diff(commands::diff::Args),
    /// Find files (or the users of a blob or tree) in snapshots
    Find(commands::find::Args),
    /// Count the size of snapshots, and what each one alone costs
    Stats(commands::stats::Args),
    /// Add, remove or set the tags of snapshots
    Tag(commands::tag::Args),
    /// Drop paths from existing snapshots
    Rewrite(commands::rewrite::Args),
    /// Mount the repository as a read-only file system
    Mount(commands::mount::Args),
    /// Remove stale locks (with --remove-all, every lock)
    Unlock(commands::unlock::Args),
    /// Check how fresh each backup group is (a monitoring plugin: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)
    Status(commands::status::Args),
    /// Generate shell completions or man pages
    Generate(commands::generate::Args),
    /// Print version information
    Version(commands::version::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Init(a) => commands::init::run(&cli.global, a),
        Command::Backup(a) => commands::backup::run(&cli.global, a),
        Command::Snapshots(a) => commands::snapshots::run(&cli.global, a),
        Command::Restore(a) => commands::restore::run(&cli.global, a),
        Command::Dump(a) => commands::dump::run(&cli.global, a),
        Command::Ls(a) => commands::ls::run(&cli.global, a),
        Command::Cat(a) => commands::cat::run(&cli.global, a),
        Command::Check(a) => commands::check::run(&cli.global, a),
        Command::Repair(a) => commands::repair::run(&cli.global, a),
        Command::Key(a) => commands::key::run(&cli.global, a),
        Command::Forget(a) => commands::forget::run(&cli.global, a),
        Command::Prune(a) => commands::prune::run(&cli.global, a),
        Command::Diff(a) => commands::diff::run(&cli.global, a),
        Command::Find(a) => commands::find::run(&cli.global, a),
        Command::Stats(a) => commands::stats::run(&cli.global, a),
        Command::Tag(a) => commands::tag::run(&cli.global, a),
        Command::Rewrite(a) => commands::rewrite::run(&cli.global, a),
        Command::Mount(a) => commands::mount::run(&cli.global, a),
        Command::Unlock(a) => commands::unlock::run(&cli.global, a),
        Command::Status(a) => commands::status::run(&cli.global, a),
        Command::Generate(a) => commands::generate::run(&cli.global, a),
        Command::Version(a) => commands::version::run(&cli.global, a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let code = exit_code(&e);
            if code != exit::OK {
                eprintln!("cairn: {}", one_line(&e));
            }
            ExitCode::from(code)
        }
    }
}

/// A `--option KEY=VALUE` setting.
fn parse_option(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_owned(), value.to_owned())),
        _ => Err(format!("'{s}' is not KEY=VALUE")),
    }
}

/// The error chain on one line.
fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ").replace('\n', " ")
}

fn exit_code(e: &anyhow::Error) -> u8 {
    use cairn_engine::ErrorKind as K;
    for cause in e.chain() {
        if let Some(engine) = cause.downcast_ref::<cairn_engine::Error>() {
            return match engine.kind() {
                K::NoRepository => exit::NO_REPOSITORY,
                K::WrongPassword => exit::WRONG_PASSWORD,
                K::AccessDenied => exit::ACCESS_DENIED,
                K::Locked => exit::LOCKED,
                // A closed output pipe ends quietly.
                K::OutputClosed => exit::OK,
                K::Interrupted => exit::INTERRUPTED,
                _ => exit::FATAL,
            };
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::BrokenPipe
        {
            return exit::OK;
        }
    }
    exit::FATAL
}
