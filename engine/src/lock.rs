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
//!
//! Clocks of different hosts disagree: a reader counts a lock as live for [`CLOCK_SKEW`] longer
//! than [`STALE_AFTER`], and a holder that could not refresh its lock for [`STALE_AFTER`] less
//! [`CLOCK_SKEW`] — or finds it removed — stops its operation (through [`crate::cancel::abort`])
//! rather than go on unprotected: a prune may already count that lock as gone.

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
/// How far the clocks of two hosts sharing a repository may disagree.
pub const CLOCK_SKEW: Duration = Duration::from_secs(2 * 60);

/// The refresh interval: [`HEARTBEAT`], or, for tests only, the milliseconds in
/// `CAIRN_TEST_LOCK_REFRESH_MS` (so that a test sees a lost lock noticed at once). Not for use in
/// production: the staleness rules are unchanged by it.
fn refresh_interval() -> Duration {
    std::env::var("CAIRN_TEST_LOCK_REFRESH_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis)
        .unwrap_or(HEARTBEAT)
}

/// A lock found in the repository.
#[derive(Debug, Clone)]
pub struct LockEntry {
    pub name: String,
    pub lock: Lock,
}

impl LockEntry {
    /// Whether the lock still counts, at `now_ns`.
    pub fn is_live(&self, now_ns: i64) -> bool {
        if now_ns.saturating_sub(self.lock.refreshed_ns) > (STALE_AFTER + CLOCK_SKEW).as_nanos() as i64 {
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

/// Deletes every lock file, live or not, readable or not (`cairn unlock --remove-all`): for when
/// the operator knows that no other cairn process uses the repository. A live holder notices at
/// its next refresh and stops. Returns how many.
pub fn remove_all(repo: &Repository) -> Result<usize> {
    let names: Vec<String> = repo.backend().list(FileType::Lock)?.into_iter().map(|o| o.name).collect();
    for name in &names {
        repo.backend().delete(FileType::Lock, name)?;
    }
    Ok(names.len())
}

/// One refresh of a held lock: rewrites it if it is still there. `Err` carries why the lock is
/// lost for good (removed by someone); a failed write is `Ok(false)`, to be retried.
fn refresh(
    backend: &Backend,
    key: &cairn_format::crypto::MasterKey,
    name: &str,
    lock: &mut Lock,
) -> Result<bool, String> {
    match backend.stat(FileType::Lock, name) {
        Ok(Some(_)) => {}
        Ok(None) => {
            return Err(format!(
                "the repository lock {} of this process was removed by another process (cairn unlock --remove-all?); stopped, as the repository is no longer protected",
                &name[..name.len().min(8)]
            ));
        }
        Err(_) => return Ok(false),
    }
    lock.refreshed_ns = crate::commands::backup::now_ns();
    Ok(backend.write(FileType::Lock, name, lock.encode(key, &nonce())).is_ok())
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
            let interval = refresh_interval();
            let mut last_refresh = std::time::Instant::now();
            let mut stopped = stop.stopped.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                let (guard, _) = stop.wake.wait_timeout(stopped, interval).unwrap_or_else(|p| p.into_inner());
                stopped = guard;
                if *stopped {
                    return;
                }
                match refresh(&backend, &key, &name, &mut lock) {
                    Ok(true) => last_refresh = std::time::Instant::now(),
                    // A failed refresh is retried at the next beat, until others may count the
                    // lock as stale (with the clock-skew margin on their side of it).
                    Ok(false) if last_refresh.elapsed() < STALE_AFTER - CLOCK_SKEW => {}
                    Ok(false) => {
                        crate::cancel::abort(format!(
                            "the repository lock could not be refreshed for {} s; stopped, as other processes may count it as stale",
                            last_refresh.elapsed().as_secs()
                        ));
                        return;
                    }
                    Err(reason) => {
                        crate::cancel::abort(reason);
                        return;
                    }
                }
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
