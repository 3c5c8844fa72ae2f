//! Events of unattended runs: `--log-file PATH` (appended, one timestamped line per event) and
//! the verbosity of `-v`/`-vv`/`-q` on standard error. The engine reports through the progress
//! trait; only this module decides where its events go.

use std::io::Write as _;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use anyhow::{Context, Result};

/// How much an event matters; the terminal shows an event when `-v` was given this many times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Errors and warnings: always shown (also with `-q`).
    Error = 0,
    Warn = 1,
    /// Steps of a run (shown with `-v`).
    Info = 2,
    /// Commands and details (shown with `-vv`).
    Debug = 3,
}

impl Level {
    fn word(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
        }
    }
}

#[derive(Debug)]
struct Sink {
    file: Option<std::fs::File>,
    verbose: u8,
}

static SINK: OnceLock<Mutex<Sink>> = OnceLock::new();

/// Opens the log file (appending; created 0600) and remembers the verbosity. Called once.
pub fn init(path: Option<&Path>, verbose: u8) -> Result<()> {
    let file = match path {
        None => None,
        Some(p) => {
            use std::os::unix::fs::OpenOptionsExt;
            Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .open(p)
                    .with_context(|| format!("opening log file {}", p.display()))?,
            )
        }
    };
    let _ = SINK.set(Mutex::new(Sink { file, verbose }));
    Ok(())
}

/// Records an event: one line in the log file, and on standard error when the verbosity asks for
/// it (`Info` with `-v`, `Debug` with `-vv`). Errors and warnings are printed by their callers
/// (they are printed also without a log), so here they only go to the file.
pub fn event(level: Level, message: &str) {
    let Some(sink) = SINK.get() else { return };
    let mut sink = sink.lock().unwrap_or_else(|p| p.into_inner());
    let message = message.replace('\n', " ");
    if level >= Level::Info && sink.verbose >= level as u8 - 1 {
        eprintln!("{message}");
    }
    if let Some(f) = sink.file.as_mut() {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        // A log that cannot be written must not stop a backup.
        let _ = writeln!(f, "{now} cairn[{}] {} {message}", std::process::id(), level.word());
    }
}

pub fn error(message: &str) {
    event(Level::Error, message);
}
pub fn warn(message: &str) {
    event(Level::Warn, message);
}
pub fn info(message: &str) {
    event(Level::Info, message);
}
pub fn debug(message: &str) {
    event(Level::Debug, message);
}
