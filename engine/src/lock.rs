//! Repository locks with heartbeats.
//!
//! Backups take a *shared* lock and never wait for anything: the lock only announces "a backup
//! that loaded the index at this time is running". Prune and repair take an *exclusive* lock, which
//! fails at once (exit code 11) while another live exclusive lock exists. Prune reads the shared
//! locks to decide whether packs it found unused may be deleted now or must wait for a later run
//! (see `spec/ordering.md`).
//!
//! A lock is live while its heartbeat is recent. A holder rewrites its lock every
//! [`HEARTBEAT`]; a lock not refreshed for [`STALE_AFTER`] — or one taken on this host by a process
//! that no longer exists — is stale and ignored, so a process killed with SIGKILL never blocks the
//! next run and nobody ever has to unlock by hand.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use cairn_format::lock::{Lock, LockKind};

use crate::backend::{Backend, FileType};
use crate::error::{Error, ErrorKind, Result};
use crate::repository::{Repository, hostname, nonce, random_bytes, username};

/// How often a holder refreshes its lock.
pub const HEARTBEAT: Duration = Duration::from_secs(60);
/// A lock not refreshed for this long is stale.
pub const STALE_AFTER: Duration = Duration::from_secs(10 * 60);

/// A lock found in the repository.
#[derive(Debug, Clone)]
pub struct LockEntry {
    pub name: String,
    pub lock: Lock,
}

impl LockEntry {
    /// Whether the lock still counts, at `now_ns`.
    pub fn is_live(&self, now_ns: i64) -> bool {
        if now_ns.saturating_sub(self.lock.refreshed_ns) > STALE_AFTER.as_nanos() as i64 {
            return false;
        }
        if self.lock.host == hostname() && !process_exists(self.lock.pid) {
            return false;
        }
        true
    }

    /// A one-line description for messages.
    pub fn describe(&self) -> String {
        format!(
            "{} lock held by {}@{} (pid {}) since {}",
            match self.lock.kind {
                LockKind::Shared => "shared",
                LockKind::Exclusive => "exclusive",
            },
            self.lock.user,
            self.lock.host,
            self.lock.pid,
            chrono::DateTime::from_timestamp_nanos(self.lock.created_ns).format("%Y-%m-%d %H:%M:%S UTC")
        )
    }
}

fn process_exists(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else { return false };
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(nix::errno::Errno::ESRCH) => false,
        // EPERM: it exists but belongs to someone else.
        Err(_) => true,
    }
}

/// Every readable lock in the repository. Unreadable lock files are skipped: a damaged lock must
/// not block anyone.
pub fn list_locks(repo: &Repository) -> Result<Vec<LockEntry>> {
    let mut out = Vec::new();
    for o in repo.backend().list(FileType::Lock)? {
        let Ok(bytes) = repo.backend().read(FileType::Lock, &o.name) else { continue };
        if let Ok(lock) = Lock::decode(&bytes, repo.key()) {
            out.push(LockEntry { name: o.name, lock });
        }
    }
    Ok(out)
}

/// Deletes stale locks; returns how many.
pub fn remove_stale(repo: &Repository) -> Result<usize> {
    let now = crate::commands::backup::now_ns();
    let mut removed = 0;
    for l in list_locks(repo)? {
        if !l.is_live(now) {
            repo.backend().delete(FileType::Lock, &l.name)?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[derive(Debug, Default)]
struct Stop {
    stopped: Mutex<bool>,
    wake: Condvar,
}

/// A held lock; released (deleted) when dropped.
#[derive(Debug)]
pub struct LockGuard {
    backend: Backend,
    name: String,
    stop: Arc<Stop>,
    heartbeat: Option<std::thread::JoinHandle<()>>,
}

impl LockGuard {
    /// The lock file's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Releases the lock now.
    pub fn release(mut self) -> Result<()> {
        self.stop_heartbeat();
        self.backend.delete(FileType::Lock, &self.name)
    }

    fn stop_heartbeat(&mut self) {
        *self.stop.stopped.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.stop.wake.notify_all();
        if let Some(h) = self.heartbeat.take() {
            let _ = h.join();
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if self.heartbeat.is_some() {
            self.stop_heartbeat();
            let _ = self.backend.delete(FileType::Lock, &self.name);
        }
    }
}

/// Takes a lock. A shared lock always succeeds; an exclusive one fails with
/// [`ErrorKind::Locked`] while another live exclusive lock exists.
pub fn acquire(repo: &Repository, kind: LockKind) -> Result<LockGuard> {
    let now = crate::commands::backup::now_ns();
    if kind == LockKind::Exclusive
        && let Some(other) =
            list_locks(repo)?.into_iter().find(|l| l.lock.kind == LockKind::Exclusive && l.is_live(now))
    {
        return Err(Error::new(
            ErrorKind::Locked,
            format!("the repository is locked: {}; try again when it has finished", other.describe()),
        ));
    }
    let lock =
        Lock { kind, host: hostname(), user: username(), pid: std::process::id(), created_ns: now, refreshed_ns: now };
    let name = cairn_format::id::to_hex(&random_bytes::<32>());
    repo.backend().write(FileType::Lock, &name, lock.encode(repo.key(), &nonce()))?;
    let stop = Arc::new(Stop::default());
    let heartbeat = {
        let (backend, key, name, stop, lock) =
            (repo.backend().clone(), repo.key().clone(), name.clone(), stop.clone(), lock.clone());
        std::thread::spawn(move || {
            let mut lock = lock;
            let mut stopped = stop.stopped.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                let (guard, _) = stop.wake.wait_timeout(stopped, HEARTBEAT).unwrap_or_else(|p| p.into_inner());
                stopped = guard;
                if *stopped {
                    return;
                }
                lock.refreshed_ns = crate::commands::backup::now_ns();
                // A failed refresh is retried at the next beat; the lock only goes stale after many.
                let _ = backend.write(FileType::Lock, &name, lock.encode(&key, &nonce()));
            }
        })
    };
    let guard = LockGuard { backend: repo.backend().clone(), name: name.clone(), stop, heartbeat: Some(heartbeat) };
    if kind == LockKind::Exclusive {
        // Two exclusive lockers may have written at the same moment: the older lock (then the
        // smaller name) wins, the other backs off.
        let rivals: Vec<LockEntry> = list_locks(repo)?
            .into_iter()
            .filter(|l| l.name != name && l.lock.kind == LockKind::Exclusive && l.is_live(now))
            .collect();
        if let Some(winner) = rivals.iter().find(|l| (l.lock.created_ns, &l.name) < (now, &name)) {
            let message = format!("the repository is locked: {}; try again when it has finished", winner.describe());
            guard.release()?;
            return Err(Error::new(ErrorKind::Locked, message));
        }
    }
    Ok(guard)
}
