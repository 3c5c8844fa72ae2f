//! A request to stop, set from outside the engine (the command line sets it on SIGINT or SIGTERM)
//! and polled at safe points by the long operations: a backup stops at its next blob or entry and
//! still indexes the packs it wrote, a restore removes the files it had not finished. Operations
//! that are safe to kill at any moment (prune, check) do not poll it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use crate::error::{Error, ErrorKind, Result};

fn flag_cell() -> &'static Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// The flag a signal handler sets to ask the running operation to stop.
pub fn flag() -> Arc<AtomicBool> {
    flag_cell().clone()
}

/// Whether a stop was asked for.
pub fn requested() -> bool {
    flag_cell().load(Ordering::SeqCst)
}

/// `Err` (of kind [`ErrorKind::Interrupted`]) once a stop was asked for.
pub fn check() -> Result<()> {
    if requested() { Err(Error::new(ErrorKind::Interrupted, "interrupted")) } else { Ok(()) }
}
