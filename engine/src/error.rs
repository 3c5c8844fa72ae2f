//! Engine errors: a kind that tells the caller what it can do about it, and a one-line message that
//! names the object, id or path involved. Messages never contain secrets.

use std::fmt;

/// What kind of failure happened; the CLI maps kinds to exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No repository at the location, or it lacks a config.
    NoRepository,
    /// A repository already exists where one was to be created.
    AlreadyExists,
    /// The password opened no key file.
    WrongPassword,
    /// The storage refused the credentials (or their rights do not cover the request).
    AccessDenied,
    /// A stored object is damaged or fails authentication.
    Corrupt,
    /// Snapshots use blobs that no index file locates, and packs no index file names may hold
    /// them: a command that deletes refused to plan past that. Rebuilding the index from the packs
    /// (`repair index`) adopts what they hold.
    IndexIncomplete,
    /// The repository is locked by another process in a way that forbids this operation.
    Locked,
    /// The user's request cannot be satisfied (unknown snapshot, bad pattern, bad path...).
    InvalidInput,
    /// Something was not found (a path inside a snapshot, a named snapshot).
    NotFound,
    /// A storage or local I/O failure; retrying may help.
    Io,
    /// A source command exited unsuccessfully.
    CommandFailed,
    /// The operation stopped because a stop was asked for (SIGINT, SIGTERM; see [`crate::cancel`]).
    Interrupted,
    /// The reader of the output went away (a closed pipe): a quiet end, not a failure.
    OutputClosed,
    /// An internal invariant broke: a bug.
    Bug,
}

/// An engine error.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    /// An error of `kind` with a message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }

    /// The error's kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Prefixes the message with what was being done.
    pub fn context(self, what: impl fmt::Display) -> Self {
        Self { kind: self.kind, message: format!("{what}: {}", self.message) }
    }

    pub(crate) fn io(what: impl fmt::Display, e: std::io::Error) -> Self {
        Self::new(ErrorKind::Io, format!("{what}: {e}"))
    }

    pub(crate) fn corrupt(what: impl fmt::Display) -> Self {
        Self::new(ErrorKind::Corrupt, what.to_string())
    }

    pub(crate) fn invalid(what: impl fmt::Display) -> Self {
        Self::new(ErrorKind::InvalidInput, what.to_string())
    }

    pub(crate) fn format(what: impl fmt::Display, e: cairn_format::FormatError) -> Self {
        use cairn_format::FormatError as F;
        let kind = match e {
            F::WrongPassword => ErrorKind::WrongPassword,
            F::BadHex { .. } | F::PrefixNotFound { .. } | F::PrefixAmbiguous { .. } => ErrorKind::InvalidInput,
            _ => ErrorKind::Corrupt,
        };
        Self::new(kind, format!("{what}: {e}"))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Result type of the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;
