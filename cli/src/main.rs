//! `cairn`: the command line. Parses arguments, gets the password, calls the engine, renders what it
//! returns and maps errors to documented exit codes. No repository logic lives here.

mod commands;
mod log;
mod metrics;
mod output;
mod password;
mod profile;
mod progress;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgAction, CommandFactory, FromArgMatches, Parser, Subcommand};

/// Exit codes (documented in README.md).
pub mod exit {
    pub const OK: u8 = 0;
    pub const FATAL: u8 = 1;
    /// The command line or a profile is not understood (a usage error).
    pub const USAGE: u8 = 2;
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

/// Options every command accepts. The environment variables are read after parsing
/// ([`GlobalArgs::fill_from_env`]), not by clap: a usage error then shows only what was typed, not
/// `--repo` because `CAIRN_REPOSITORY` happens to be set.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Read options (and the jobs of `cairn run`) from this TOML file
    #[arg(long, global = true, value_name = "FILE", conflicts_with = "profile")]
    pub config: Option<PathBuf>,
    /// Read options and jobs from the profile NAME: $XDG_CONFIG_HOME/cairn/NAME.toml, else /etc/cairn/NAME.toml
    #[arg(long, global = true, value_name = "NAME")]
    pub profile: Option<String>,
    /// Repository location: a local folder, s3:http(s)://HOST:PORT/BUCKET/PREFIX (prefix optional), or
    /// opendal:SCHEME [env: CAIRN_REPOSITORY]
    #[arg(short = 'r', long = "repo", global = true, value_name = "LOCATION")]
    pub repo: Option<String>,
    /// Storage setting (repeatable): connections=N, retries=N, timeout=SECS, s3.path-style=true|false,
    /// s3.region=R, s3.NAME (a setting of OpenDAL's S3 service), or any OpenDAL setting of an opendal:SCHEME location
    #[arg(short = 'o', long = "option", global = true, value_name = "KEY=VALUE", value_parser = parse_option)]
    pub options: Vec<(String, String)>,
    /// Read the password from this file (first line) [env: CAIRN_PASSWORD_FILE]
    #[arg(long, global = true, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Run this shell command and read the password from its output [env: CAIRN_PASSWORD_COMMAND]
    #[arg(long, global = true, value_name = "COMMAND")]
    pub password_command: Option<String>,
    /// Folder for the local cache (default: $XDG_CACHE_HOME/cairn or ~/.cache/cairn) [env: CAIRN_CACHE_DIR]
    #[arg(long, global = true, value_name = "DIR")]
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
    /// Say more: -v lists each file a backup or restore processes and each step of a run (on standard
    /// error), -vv details too
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,
    /// Append one timestamped line per event (start, steps, warnings, errors, end) to FILE
    #[arg(long, global = true, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
}

impl GlobalArgs {
    /// The name of the profile in use (its file name without `.toml`), if any.
    pub fn profile_name(&self) -> Option<String> {
        match (&self.config, &self.profile) {
            (Some(path), _) => path.file_stem().map(|s| s.to_string_lossy().into_owned()),
            (None, Some(name)) => Some(name.clone()),
            (None, None) => None,
        }
    }
}

impl GlobalArgs {
    /// Options not given on the command line are taken from their environment variables (an empty
    /// variable counts as unset).
    pub fn fill_from_env(&mut self) {
        fn var(name: &str) -> Option<std::ffi::OsString> {
            std::env::var_os(name).filter(|v| !v.is_empty())
        }
        if self.repo.is_none() {
            self.repo = var("CAIRN_REPOSITORY").map(|v| v.to_string_lossy().into_owned());
        }
        if self.password_file.is_none() {
            self.password_file = var("CAIRN_PASSWORD_FILE").map(PathBuf::from);
        }
        if self.password_command.is_none() {
            self.password_command = var("CAIRN_PASSWORD_COMMAND").map(|v| v.to_string_lossy().into_owned());
        }
        if self.cache_dir.is_none() {
            self.cache_dir = var("CAIRN_CACHE_DIR").map(PathBuf::from);
        }
    }
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
    /// Write a file of a snapshot to standard output (a folder as a tar archive)
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
    /// Copy snapshots from another repository (those not copied yet)
    Copy(commands::copy::Args),
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
    /// Back up, restore and drill PostgreSQL databases table by table
    Pg(commands::pg::Args),
    /// Remove stale locks (with --remove-all, every lock)
    Unlock(commands::unlock::Args),
    /// Check how fresh each backup group is (a monitoring plugin: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)
    Status(commands::status::Args),
    /// Run the jobs of a profile: backup, forget, and prune and check when due
    Run(commands::run::Args),
    /// Generate shell completions, man pages or systemd units
    Generate(commands::generate::Args),
    /// Print version information
    Version(commands::version::Args),
}

fn main() -> ExitCode {
    let (mut cli, profile, name) = match parse(std::env::args_os().collect()) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("cairn: {}", one_line(&e));
            return ExitCode::from(exit::USAGE);
        }
    };
    cli.global.fill_from_env();
    if let Err(e) = log::init(cli.global.log_file.as_deref(), cli.global.verbose) {
        eprintln!("cairn: {}", one_line(&e));
        return ExitCode::from(exit::FATAL);
    }
    log::info(&format!(
        "cairn {name} started{}",
        profile.as_ref().map(|p| format!(" (profile {})", p.path.display())).unwrap_or_default()
    ));
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
        Command::Copy(a) => commands::copy::run(&cli.global, a),
        Command::Forget(a) => commands::forget::run(&cli.global, a),
        Command::Prune(a) => commands::prune::run(&cli.global, a),
        Command::Diff(a) => commands::diff::run(&cli.global, a),
        Command::Find(a) => commands::find::run(&cli.global, a),
        Command::Stats(a) => commands::stats::run(&cli.global, a),
        Command::Tag(a) => commands::tag::run(&cli.global, a),
        Command::Rewrite(a) => commands::rewrite::run(&cli.global, a),
        Command::Mount(a) => commands::mount::run(&cli.global, a),
        Command::Pg(a) => commands::pg::run(&cli.global, a),
        Command::Unlock(a) => commands::unlock::run(&cli.global, a),
        Command::Status(a) => commands::status::run(&cli.global, a),
        Command::Run(a) => commands::run::run(&cli.global, profile.as_ref(), a),
        Command::Generate(a) => commands::generate::run(&cli.global, a),
        Command::Version(a) => commands::version::run(&cli.global, a),
    };
    match result {
        Ok(code) => {
            log::info(&format!("cairn {name} ended with exit code {code}"));
            ExitCode::from(code)
        }
        Err(e) => {
            let code = exit_code(&e);
            if code != exit::OK {
                eprintln!("cairn: {}", one_line(&e));
                log::error(&one_line(&e));
            }
            log::info(&format!("cairn {name} ended with exit code {code}"));
            ExitCode::from(code)
        }
    }
}

/// Parses the command line; with `--config`/`--profile`, parses it again with the profile's
/// options for the global options and the chosen command added in front of `--`, leaving out
/// those the command line sets itself (README "Operations": command line > file > environment).
fn parse(argv: Vec<std::ffi::OsString>) -> anyhow::Result<(Cli, Option<profile::Profile>, String)> {
    let cmd = Cli::command();
    let matches = cmd.clone().try_get_matches_from(&argv).unwrap_or_else(|e| e.exit());
    let name = matches.subcommand_name().unwrap_or_default().to_owned();
    let path = match (matches.get_one::<PathBuf>("config"), matches.get_one::<String>("profile")) {
        (Some(path), _) => path.clone(),
        (None, Some(name)) => profile::find(name)?,
        (None, None) => return Ok((Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit()), None, name)),
    };
    let profile = profile::load(&path, &cmd)?;
    let (sub_name, sub_matches) = matches.subcommand().expect("clap requires a command");
    let typed = |id: &str| profile::typed_in(&matches, id) || profile::typed_in(sub_matches, id);
    let mut extra = profile::args_for(&profile, &profile.global, &cmd, &typed)?;
    if let (Some(t), Some(sub)) = (profile.commands.get(sub_name), cmd.find_subcommand(sub_name)) {
        extra.extend(profile::args_for(&profile, t, sub, &typed)?);
    }
    let split = argv.iter().position(|a| a == "--").unwrap_or(argv.len());
    let with = |extra: &[(usize, Vec<String>)]| -> Vec<std::ffi::OsString> {
        let mut out = argv[..split].to_vec();
        out.extend(extra.iter().flat_map(|(_, args)| args.iter().map(std::ffi::OsString::from)));
        out.extend_from_slice(&argv[split..]);
        out
    };
    match Cli::command().try_get_matches_from(with(&extra)) {
        Ok(m) => Ok((Cli::from_arg_matches(&m).unwrap_or_else(|e| e.exit()), Some(profile), name)),
        Err(e) => {
            // Name the line of the file whose option clap refused.
            let culprit =
                extra.iter().find(|one| Cli::command().try_get_matches_from(with(std::slice::from_ref(one))).is_err());
            let first = e.to_string().lines().next().unwrap_or_default().trim_start_matches("error: ").to_owned();
            match culprit {
                Some((line, _)) => anyhow::bail!("{}:{line}: {first}", path.display()),
                None => anyhow::bail!("{}: {first}", path.display()),
            }
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
