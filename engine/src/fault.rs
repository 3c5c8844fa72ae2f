//! Fault injection for crash-point tests: makes the Nth storage operation fail, or stops the
//! process there as SIGKILL would. Compiled in only with the `fault-injection` feature, which the
//! end-to-end tests enable; in any other build every hook is an empty inline function, so no
//! environment variable can make a user's `cairn` misbehave.
//!
//! Every storage operation of [`crate::backend::Backend`] calls [`before`] first (and a write or
//! delete calls [`after`] once it is durable, a read calls [`read_done`] when it ended); only
//! the read-ahead hint and `init`'s creation of empty folders are left out. (On a remote store a
//! hint starts a read in the background, which calls [`before`] when its request is sent.) Operations are numbered from 1 in the order they start, in
//! two counts: *mutating* ones (write, delete: the only ones that change what a crash leaves
//! behind) and *all* ones (also read, list, stat). `CAIRN_FAULT`, read once at the first
//! operation, holds comma-separated settings:
//!
//! - `crash-at=N`: stop the process (SIGKILL to itself: no destructor runs, no lock is removed)
//!   just before the Nth mutating operation;
//! - `crash-after=N`: the same, just after N mutating operations completed (after the last one,
//!   a crash leaves what a finished run leaves, but stops before the process's own clean-up);
//! - `fail-at=N`: the Nth mutating operation fails with an I/O error (later ones work again);
//! - `fail-at-op=N`: the Nth operation of any kind fails with an I/O error;
//! - `pause-before=KIND` (`write`, `delete`, `read`, `list`, `stat`): just before the first
//!   operation of that kind, print `cairn-fault: pausing before KIND PATH` and stop the process
//!   with SIGSTOP, so a test can change the world (kill the storage server, say) at that exact
//!   point and then let it go on with SIGCONT;
//! - `trace`: print every operation on standard error as
//!   `cairn-fault: op ALL mutating M|- KIND PATH`, so a test learns how many a command runs, and
//!   `cairn-fault: done KIND PATH` once a write or delete is durable (so a test can stop the
//!   storage just after a given object was stored) or a read ended (so a test can count the
//!   reads in flight: a read runs from its `op` line to its `done Read` line).
//!
//! Operations that run concurrently (pack uploads, parallel deletions) are numbered in the order
//! they start, which may differ between two runs of the same command; a crash point is a count of
//! operations, not a particular object.

/// The kind of a storage operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Read,
    List,
    Stat,
    Write,
    Delete,
}

#[cfg(not(feature = "fault-injection"))]
mod hooks {
    use super::Op;
    use crate::error::Result;

    /// Called before a storage operation starts.
    #[inline(always)]
    pub fn before(_op: Op, _path: &str) -> Result<()> {
        Ok(())
    }

    /// Called after a mutating storage operation completed.
    #[inline(always)]
    pub fn after(_op: Op, _path: &str) {}

    /// Called when a read ended, whether it succeeded or not.
    #[inline(always)]
    pub fn read_done(_path: &str) {}
}

#[cfg(feature = "fault-injection")]
mod hooks {
    use std::sync::LazyLock;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use super::Op;
    use crate::error::{Error, ErrorKind, Result};

    /// What `CAIRN_FAULT` asks for.
    #[derive(Debug, Default)]
    struct Plan {
        crash_at: Option<u64>,
        crash_after: Option<u64>,
        fail_at: Option<u64>,
        fail_at_op: Option<u64>,
        pause_before: Option<Op>,
        trace: bool,
    }

    static PLAN: LazyLock<Plan> = LazyLock::new(|| parse(&std::env::var("CAIRN_FAULT").unwrap_or_default()));
    static ALL: AtomicU64 = AtomicU64::new(0);
    static MUTATING: AtomicU64 = AtomicU64::new(0);
    static COMPLETED: AtomicU64 = AtomicU64::new(0);
    static PAUSED: AtomicBool = AtomicBool::new(false);

    fn parse(setting: &str) -> Plan {
        let mut plan = Plan::default();
        for part in setting.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once('=').unwrap_or((part, ""));
            let n = value.parse::<u64>().ok();
            match key {
                "crash-at" => plan.crash_at = n,
                "crash-after" => plan.crash_after = n,
                "fail-at" => plan.fail_at = n,
                "fail-at-op" => plan.fail_at_op = n,
                "pause-before" if op_kind(value).is_some() => plan.pause_before = op_kind(value),
                "trace" => plan.trace = true,
                // A typo must not silently test nothing.
                _ => {
                    eprintln!("cairn-fault: unknown setting '{part}' in CAIRN_FAULT");
                    std::process::exit(2);
                }
            }
        }
        plan
    }

    fn op_kind(name: &str) -> Option<Op> {
        Some(match name {
            "read" => Op::Read,
            "list" => Op::List,
            "stat" => Op::Stat,
            "write" => Op::Write,
            "delete" => Op::Delete,
            _ => return None,
        })
    }

    fn mutating(op: Op) -> bool {
        matches!(op, Op::Write | Op::Delete)
    }

    /// Stops the process the way SIGKILL does: at once, with no destructor, exit handler or lock
    /// removal.
    fn crash(when: &str, n: u64, op: Op, path: &str) -> ! {
        eprintln!("cairn-fault: crashing {when} mutating operation {n} ({op:?} {path})");
        let _ = nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGKILL);
        std::process::abort()
    }

    pub fn before(op: Op, path: &str) -> Result<()> {
        let plan = &*PLAN;
        let all = ALL.fetch_add(1, Ordering::SeqCst) + 1;
        let m = if mutating(op) { Some(MUTATING.fetch_add(1, Ordering::SeqCst) + 1) } else { None };
        if plan.trace {
            let m_text = m.map_or_else(|| "-".to_owned(), |m| m.to_string());
            eprintln!("cairn-fault: op {all} mutating {m_text} {op:?} {path}");
        }
        if plan.pause_before == Some(op) && !PAUSED.swap(true, Ordering::SeqCst) {
            eprintln!("cairn-fault: pausing before {op:?} {path}");
            let _ = nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGSTOP);
        }
        if let Some(m) = m
            && plan.crash_at == Some(m)
        {
            crash("before", m, op, path);
        }
        if (m.is_some() && m == plan.fail_at) || plan.fail_at_op == Some(all) {
            return Err(Error::new(ErrorKind::Io, format!("{op:?} {path}: injected fault (operation {all})")));
        }
        Ok(())
    }

    pub fn after(op: Op, path: &str) {
        if PLAN.trace {
            eprintln!("cairn-fault: done {op:?} {path}");
        }
        let done = COMPLETED.fetch_add(1, Ordering::SeqCst) + 1;
        if PLAN.crash_after.is_some_and(|n| n == done) {
            crash("after", done, op, path);
        }
    }

    pub fn read_done(path: &str) {
        if PLAN.trace {
            eprintln!("cairn-fault: done Read {path}");
        }
    }
}

pub use hooks::{after, before, read_done};
