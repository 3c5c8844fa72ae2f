//! Shared helpers: a temporary repository with a cheap key-derivation setting, and a way to run
//! the real binary against it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use assert_cmd::Command;

pub mod craft;
pub mod data;
pub mod fstree;
pub mod pg;
pub mod pg_cluster_mount;
pub mod s3;

/// The `cairn` binary under test: `CAIRN_BIN` when set, otherwise the one cargo built next to this
/// test executable (`scripts/test.sh` builds it before running the tests). Fails loudly if absent.
pub fn cairn_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CAIRN_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("path of the test executable");
    // target/<profile>/deps/integration-HASH -> target/<profile>/cairn
    let bin =
        exe.parent().and_then(Path::parent).expect("test executable lives in target/<profile>/deps").join("cairn");
    assert!(bin.exists(), "{} is missing: build it first (cargo build -p cairn-cli)", bin.display());
    bin
}

/// Password used by every test repository.
pub const PASSWORD: &str = "test password";

/// A temporary folder holding a repository, its cache and scratch space.
pub struct TestRepo {
    pub dir: tempfile::TempDir,
}

impl TestRepo {
    /// A new, initialised repository (argon2id with tiny parameters to keep tests fast).
    pub fn new() -> Self {
        let r = Self::uninitialised();
        r.cairn().args(["init", "--kdf-memory-kib", "64", "--kdf-time", "1"]).assert().success();
        r
    }

    /// A temporary folder with no repository yet.
    pub fn uninitialised() -> Self {
        Self { dir: tempfile::tempdir().expect("temporary folder") }
    }

    pub fn repo_path(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    /// The repository opened in this process through the engine, with the test password and no
    /// cache (the binary under test keeps its own).
    pub fn open_engine(&self) -> cairn_engine::Repository {
        cairn_engine::Repository::open(
            &cairn_engine::backend::Location::Local(self.repo_path()),
            PASSWORD.as_bytes(),
            &cairn_engine::OpenOptions { cache_dir: None::<PathBuf> },
        )
        .expect("open the test repository")
    }

    pub fn cache_path(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    /// A scratch folder inside the temporary folder (created).
    pub fn scratch(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::create_dir_all(&p).expect("scratch folder");
        p
    }

    /// The binary with repository, password and cache set through the environment.
    pub fn cairn(&self) -> Command {
        let mut c = Command::new(cairn_bin());
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("CAIRN_REPOSITORY", self.repo_path())
            .env("CAIRN_PASSWORD", PASSWORD)
            .env("CAIRN_CACHE_DIR", self.cache_path());
        c
    }

    /// The same as [`TestRepo::cairn`] as a plain `std::process::Command`, for spawning and killing.
    pub fn cairn_std(&self) -> std::process::Command {
        self.command(cairn_bin())
    }

    /// Another program (one that runs cairn) with the same environment as [`TestRepo::cairn`].
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
        let mut c = std::process::Command::new(program);
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("CAIRN_REPOSITORY", self.repo_path())
            .env("CAIRN_PASSWORD", PASSWORD)
            .env("CAIRN_CACHE_DIR", self.cache_path());
        c
    }

    /// Runs `cairn ARGS --json` successfully and parses standard output.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.cairn().args(args).arg("--json").output().expect("runs");
        assert!(out.status.success(), "cairn {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("JSON output")
    }
}

/// Total size of the files below `dir`.
pub fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let m = e.metadata().expect("metadata");
            total += if m.is_dir() { dir_size(&e.path()) } else { m.len() };
        }
    }
    total
}
