//! A request to stop, set from outside the engine (the command line sets it on SIGINT or SIGTERM)
//! and polled at safe points by the long operations: a backup stops at its next blob or entry and
//! still indexes the packs it wrote, a restore removes the files it had not finished. Operations
//! that are safe to kill at any moment (prune, repair) poll it only before they delete, so that
//! one whose exclusive lock was lost ([`abort`]) deletes nothing more; check does not poll it.

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

/// Why the engine itself asked to stop (a lock it could not keep), when it did.
fn reason_cell() -> &'static OnceLock<String> {
    static REASON: OnceLock<String> = OnceLock::new();
    &REASON
}

/// Asks the running operation to stop because it cannot go on safely (its repository lock was
/// lost); the operation then fails with `reason` (kind [`ErrorKind::Io`]) instead of
/// "interrupted" (exit code 1, as restic's "failed to refresh lock in time"). The first reason is kept.
pub fn abort(reason: String) {
    let _ = reason_cell().set(reason);
    flag_cell().store(true, Ordering::SeqCst);
}

/// `Err` once a stop was asked for: of kind [`ErrorKind::Interrupted`] for a signal, of kind
/// [`ErrorKind::Io`] with its reason after [`abort`].
pub fn check() -> Result<()> {
    if !requested() {
        return Ok(());
    }
    match reason_cell().get() {
        Some(reason) => Err(Error::new(ErrorKind::Io, reason.clone())),
        None => Err(Error::new(ErrorKind::Interrupted, "interrupted")),
    }
}
