//! `copy` between repositories, and `init --from-repo --copy-chunker-params`: byte-exact restores
//! of copied folders and dumps, a second copy that copies nothing, restic's filters, deduplication
//! at the destination, a wrong source password, and a copy stopped at every write.
//!
//! Each scenario takes the two repositories as [`Place`]s, so that it runs for any pair of
//! locations: a test for another kind of location is one line naming the scenario and the places,
//! for example, with an S3 server fixture that gives a bucket's URL and the `AWS_*` variables:
//!
//! ```text
//! fn s3() -> Place { let s = Server::shared(); Place::at(s.repo_url(&s.new_bucket()), s.env(), tempdir()) }
//! #[test] fn local_to_s3_and_back() { copies_restore_byte_exact_and_a_second_copy_copies_nothing(Place::local(), s3(), &[]) }
//! ```

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};

use assert_cmd::Command;

use crate::support::cairn_bin;
use crate::support::data::{Rng, write_random_file};
use crate::support::fstree::{assert_same_tree, restored_path, set_distinct_mtimes};

/// A repository location for a copy test, with what cairn needs to reach it, and a private folder
/// for its cache and scratch files.
pub struct Place {
    pub location: String,
    /// Extra environment (credentials of an object store, say).
    pub env: Vec<(String, String)>,
    pub password: String,
    pub dir: tempfile::TempDir,
}

impl Place {
    /// A new folder on the local disk (not created: `init` does that).
    pub fn local() -> Self {
        let dir = tempfile::tempdir().expect("temporary folder");
        let location = dir.path().join("repo").to_string_lossy().into_owned();
        Self::at(location, Vec::new(), dir)
    }

    /// Any location cairn can reach with `env` (an `s3:` URL and its credentials, say).
    pub fn at(location: String, env: Vec<(String, String)>, dir: tempfile::TempDir) -> Self {
        let password = format!("password of {location}");
        Self { location, env, password, dir }
    }

    /// `cairn` with this repository as `-r` (through the environment).
    pub fn cairn(&self) -> Command {
        let mut c = Command::new(cairn_bin());
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("CAIRN_REPOSITORY", &self.location)
            .env("CAIRN_PASSWORD", &self.password)
            .env("CAIRN_CACHE_DIR", self.dir.path().join("cache"))
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// `cairn copy` into this repository from `src`.
    pub fn copy_from(&self, src: &Place) -> Command {
        let mut c = self.cairn();
        c.envs(src.env.iter().map(|(k, v)| (k, v)))
            .env("CAIRN_FROM_REPOSITORY", &src.location)
            .env("CAIRN_FROM_PASSWORD", &src.password)
            .arg("copy");
        c
    }

    pub fn init(&self, extra: &[&str]) {
        self.cairn().args(["init", "--kdf-memory-kib", "64", "--kdf-time", "1"]).args(extra).assert().success();
    }

    pub fn scratch(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::create_dir_all(&p).expect("scratch folder");
        p
    }

    /// Runs `cairn ARGS --json` successfully and parses standard output.
    pub fn json(&self, cmd: &mut Command) -> serde_json::Value {
        let out = cmd.arg("--json").output().expect("runs");
        assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("JSON output")
    }

    /// Ids of the snapshots, oldest first.
    pub fn snapshot_ids(&self) -> Vec<String> {
        let list = self.json(self.cairn().arg("snapshots"));
        list.as_array().expect("a list").iter().map(|s| s["id"].as_str().expect("an id").to_owned()).collect()
    }

    pub fn backup(&self, args: &[&str]) -> String {
        let report = self.json(self.cairn().arg("backup").args(args));
        report["snapshot_id"].as_str().expect("a snapshot id").to_owned()
    }

    pub fn backup_stdin(&self, name: &str, bytes: &[u8], args: &[&str]) -> String {
        let out = self
            .cairn()
            .args(["backup", "--json", "--stdin", "--stdin-filename", name])
            .args(args)
            .write_stdin(bytes.to_vec())
            .output()
            .expect("runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        report["snapshot_id"].as_str().expect("a snapshot id").to_owned()
    }

    pub fn check_read_data(&self) {
        let out = self.cairn().args(["check", "--read-data"]).output().expect("runs");
        assert!(
            out.status.success(),
            "check --read-data of {}: {}",
            self.location,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A folder with random files of several sizes, a few small ones and a sub-folder, with distinct
/// modification times.
fn build_tree(root: &Path, seed: u64) {
    std::fs::create_dir_all(root.join("sub/deeper")).expect("folders");
    write_random_file(&root.join("big.bin"), seed, 3 << 20);
    write_random_file(&root.join("sub/medium.bin"), seed + 1, 700_000);
    for i in 0..20u64 {
        write_random_file(&root.join(format!("sub/deeper/small-{i}.txt")), seed + 10 + i, 100 + i * 37);
    }
    std::fs::write(root.join("empty"), b"").expect("write");
    set_distinct_mtimes(root, 1_700_000_000);
}

fn dump_bytes(seed: u64, len: usize) -> Vec<u8> {
    Rng::new(seed).bytes(len)
}

fn copy_json(dst: &Place, src: &Place, args: &[&str]) -> serde_json::Value {
    dst.json(dst.copy_from(src).args(args))
}

fn ids(rows: &serde_json::Value) -> Vec<String> {
    rows.as_array().expect("a list").iter().map(|r| r["source"].as_str().expect("source id").to_owned()).collect()
}

fn count(rows: &serde_json::Value) -> usize {
    rows.as_array().expect("a list").len()
}

/// A folder and a dump copied from `src` to `dst` restore byte for byte from `dst`; every copy
/// remembers its source; a second copy copies and reads nothing; both repositories check clean.
pub fn copies_restore_byte_exact_and_a_second_copy_copies_nothing(src: Place, dst: Place, dst_init: &[&str]) {
    src.init(&[]);
    let tree = src.scratch("tree");
    build_tree(&tree, 0xc0b1_0001);
    let tree_snapshot = src.backup(&[tree.to_str().expect("UTF-8 path")]);
    let dump = dump_bytes(0xc0b1_0002, 2 << 20);
    let dump_snapshot = src.backup_stdin("db.dump", &dump, &["--tag", "db"]);
    let init_args: Vec<String> = dst_init.iter().map(|a| a.replace("{src}", &src.location)).collect();
    let mut init = dst.cairn();
    init.args(["init", "--kdf-memory-kib", "64", "--kdf-time", "1"]).args(&init_args);
    init.env("CAIRN_FROM_PASSWORD", &src.password).envs(src.env.iter().map(|(k, v)| (k, v)));
    init.assert().success();

    let first = copy_json(&dst, &src, &[]);
    assert_eq!(ids(&first["copied"]), vec![tree_snapshot.clone(), dump_snapshot.clone()], "{first}");
    assert_eq!(count(&first["already_copied"]), 0);
    assert!(first["data_blobs_added"].as_u64().expect("count") > 0);

    // Each copy names its source as its original, and restores to the same bytes.
    let listed = dst.json(dst.cairn().arg("snapshots"));
    let listed = listed.as_array().expect("a list");
    assert_eq!(listed.len(), 2);
    for (copy, source) in listed.iter().zip([&tree_snapshot, &dump_snapshot]) {
        assert_eq!(copy["original"].as_str(), Some(source.as_str()), "{copy}");
    }
    let target = dst.scratch("restored");
    let out = dst.cairn().args(["restore", listed[0]["id"].as_str().expect("id"), "--target"]).arg(&target).output();
    let out = out.expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_same_tree(&tree, &restored_path(&target, &tree));
    let dumped = dst.cairn().args(["dump", listed[1]["id"].as_str().expect("id"), "/db.dump"]).output().expect("runs");
    assert!(dumped.status.success(), "{}", String::from_utf8_lossy(&dumped.stderr));
    assert!(dumped.stdout == dump, "the copied dump differs ({} vs {} bytes)", dumped.stdout.len(), dump.len());

    // Copying again finds both and reads nothing.
    let second = copy_json(&dst, &src, &[]);
    assert_eq!(count(&second["copied"]), 0, "{second}");
    assert_eq!(ids(&second["already_copied"]), vec![tree_snapshot, dump_snapshot]);
    assert_eq!(second["data_blobs_read"], 0);
    assert_eq!(second["data_blobs_added"], 0);
    assert_eq!(dst.snapshot_ids().len(), 2);

    // A later backup of the folder (its parent is the first) changes one file and adds one:
    // only their blobs are read, whatever the id keys, and the copy restores byte for byte.
    write_random_file(&tree.join("sub/medium.bin"), 0xc0b1_0003, 700_000);
    write_random_file(&tree.join("sub/deeper/added.bin"), 0xc0b1_0004, 200_000);
    set_distinct_mtimes(&tree, 1_700_100_000);
    let third_snapshot = src.backup(&[tree.to_str().expect("UTF-8 path")]);
    let third = copy_json(&dst, &src, &[]);
    assert_eq!(ids(&third["copied"]), vec![third_snapshot], "{third}");
    let read = third["data_blobs_read"].as_u64().expect("count");
    assert!((1..=6).contains(&read), "only the changed and the new file are read, not {read} blobs: {third}");
    let copied = third["copied"][0]["destination"].as_str().expect("id").to_owned();
    // Its parent is the copy of its source's parent.
    let listed = dst.json(dst.cairn().arg("snapshots"));
    let copy = listed.as_array().expect("a list").iter().find(|s| s["id"] == copied.as_str()).expect("listed");
    assert_eq!(copy["parent"], first["copied"][0]["destination"], "{copy}");
    let target = dst.scratch("restored-third");
    let out = dst.cairn().args(["restore", &copied, "--target"]).arg(&target).output().expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_same_tree(&tree, &restored_path(&target, &tree));
    dst.check_read_data();
    src.check_read_data();
}

/// `--host`, `--tag`, `--path` and snapshot ids pick what is copied, as restic's do.
pub fn filters_pick_the_snapshots(src: Place, dst: Place) {
    src.init(&[]);
    let a = src.scratch("a");
    let b = src.scratch("b");
    std::fs::write(a.join("f"), b"a").expect("write");
    std::fs::write(b.join("f"), b"b").expect("write");
    let (a, b) = (a.to_str().expect("UTF-8"), b.to_str().expect("UTF-8"));
    let s1 = src.backup(&["--host", "alpha", "--tag", "daily", a]);
    let s2 = src.backup(&["--host", "beta", "--tag", "daily,db", b]);
    let s3 = src.backup(&["--host", "beta", "--tag", "weekly", a]);
    let s4 = src.backup_stdin("x.sql", b"select 1;", &["--host", "gamma"]);
    dst.init(&[]);

    let by_host = copy_json(&dst, &src, &["--host", "beta"]);
    assert_eq!(ids(&by_host["copied"]), vec![s2.clone(), s3.clone()], "{by_host}");
    let by_tag = copy_json(&dst, &src, &["--tag", "daily,db", "--tag", "weekly", "--dry-run"]);
    assert_eq!(count(&by_tag["copied"]), 0, "{by_tag}");
    assert_eq!(ids(&by_tag["already_copied"]), vec![s2.clone(), s3.clone()]);
    let by_path = copy_json(&dst, &src, &["--path", a]);
    assert_eq!(ids(&by_path["copied"]), vec![s1.clone()], "{by_path}");
    assert_eq!(ids(&by_path["already_copied"]), vec![s3.clone()]);
    // A dry run names what it would copy and writes nothing.
    let dry = copy_json(&dst, &src, &["--dry-run", &s4[..12]]);
    assert_eq!(ids(&dry["copied"]), vec![s4.clone()], "{dry}");
    assert_eq!(dst.snapshot_ids().len(), 3);
    let by_id = copy_json(&dst, &src, &[&s4[..12]]);
    assert_eq!(ids(&by_id["copied"]), vec![s4], "{by_id}");
    assert_eq!(dst.snapshot_ids().len(), 4);
}

/// A second snapshot that shares most of its data with one already copied adds only the new
/// part, and reads only the new blobs: with shared blob ids (`--copy-chunker-params`) because the
/// ids say what the destination holds, without them because the copy of the parent says it. A
/// snapshot whose parent was not copied is read whole unless the ids are shared.
pub fn a_snapshot_sharing_data_adds_little(src: Place, dst: Place, share_ids: bool) {
    src.init(&[]);
    let data = src.scratch("data");
    write_random_file(&data.join("base.bin"), 0xc0b1_0010, 8 << 20);
    let data = data.to_str().expect("UTF-8").to_owned();
    src.backup(&[&data]);
    let mut init = dst.cairn();
    init.args(["init", "--kdf-memory-kib", "64", "--kdf-time", "1"]);
    if share_ids {
        init.args(["--from-repo", &src.location, "--copy-chunker-params"]).env("CAIRN_FROM_PASSWORD", &src.password);
    }
    init.envs(src.env.iter().map(|(k, v)| (k, v))).assert().success();
    let first = copy_json(&dst, &src, &[]);
    assert_eq!(first["shared_blob_ids"], share_ids, "{first}");
    let first_blobs = first["data_blobs_read"].as_u64().expect("count");

    write_random_file(&Path::new(&data).join("new.bin"), 0xc0b1_0011, 300_000);
    src.backup(&[&data]);
    let second = copy_json(&dst, &src, &[]);
    assert_eq!(count(&second["copied"]), 1, "{second}");
    let added = second["bytes_added_stored"].as_u64().expect("bytes");
    assert!(added < 1 << 20, "copying a snapshot that shares 8 MiB with one already copied added {added} bytes");
    let read = second["data_blobs_read"].as_u64().expect("count");
    assert!((1..=3).contains(&read), "only the new file's blobs are read, not {read}: {second}");
    dst.check_read_data();

    // The same snapshot alone into a repository that holds the data but not the parent's copy.
    let latest = src.snapshot_ids().pop().expect("a snapshot");
    // Beside the destination: a sibling folder, or another prefix of the same bucket.
    let other_location = match dst.location.strip_prefix("s3:") {
        Some(_) => format!("{}/other", dst.location),
        None => format!("{}-other", dst.location),
    };
    let other = Place::at(other_location, dst.env.clone(), tempfile::tempdir().expect("folder"));
    let mut init = other.cairn();
    init.args(["init", "--kdf-memory-kib", "64", "--kdf-time", "1"]);
    if share_ids {
        init.args(["--from-repo", &src.location, "--copy-chunker-params"]).env("CAIRN_FROM_PASSWORD", &src.password);
    }
    init.envs(src.env.iter().map(|(k, v)| (k, v))).assert().success();
    copy_json(&other, &src, &[&latest[..]]);
    let older = copy_json(&other, &src, &[]);
    let read = older["data_blobs_read"].as_u64().expect("count");
    if share_ids {
        assert_eq!(read, 0, "with shared ids a blob the destination holds is never read: {older}");
    } else {
        assert!(read >= first_blobs, "without shared ids or a copied parent every blob is read: {older}");
    }
}

/// With `--copy-chunker-params` the destination cuts and names a dump as the source does, so a
/// dump backed up into the destination directly and the same dump copied from the source share
/// every blob; without it they share none.
pub fn copied_chunker_params_dedup_across_repositories(src: Place, dst: Place, other: Place) {
    src.init(&["--chunk-size", "64,128,512"]);
    let dump = dump_bytes(0xc0b1_0020, 4 << 20);
    src.backup_stdin("db.dump", &dump, &[]);
    for (place, share) in [(&dst, true), (&other, false)] {
        let mut init = place.cairn();
        init.args(["init", "--kdf-memory-kib", "64", "--kdf-time", "1"]);
        if share {
            init.args(["--from-repo", &src.location, "--copy-chunker-params"]);
        }
        init.env("CAIRN_FROM_PASSWORD", &src.password).envs(src.env.iter().map(|(k, v)| (k, v))).assert().success();
        place.backup_stdin("db.dump", &dump, &["--host", "direct"]);
        let copied = copy_json(place, &src, &[]);
        let added = copied["data_blobs_added"].as_u64().expect("count");
        if share {
            assert_eq!(added, 0, "the dump copied into a repository with the source's chunker stored data again");
        } else {
            assert!(added > 10, "without shared chunker parameters the cuts differ, yet only {added} blobs were added");
        }
        place.check_read_data();
    }
    // The data key is never shared: the destination's password does not open the source.
    let out = src.cairn().env("CAIRN_PASSWORD", &dst.password).arg("snapshots").output().expect("runs");
    assert_eq!(out.status.code(), Some(12), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A wrong source password is one line naming the source and exit code 12; nothing is written.
pub fn a_wrong_source_password_is_a_clear_error(src: Place, dst: Place) {
    src.init(&[]);
    src.backup_stdin("x", b"data", &[]);
    dst.init(&[]);
    let out = dst.copy_from(&src).env("CAIRN_FROM_PASSWORD", "not the password").output().expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(12), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("wrong password for the source repository"), "{stderr}");
    assert!(stderr.contains("CAIRN_FROM_PASSWORD"), "{stderr}");
    assert!(!stderr.contains("not the password"), "{stderr}");
    assert!(dst.snapshot_ids().is_empty());
    // Without any source password the error says where to give one.
    let out = dst.copy_from(&src).env_remove("CAIRN_FROM_PASSWORD").output().expect("runs");
    assert!(String::from_utf8_lossy(&out.stderr).contains("CAIRN_FROM_PASSWORD"));
    assert!(!out.status.success());
}

/// A copy stopped (as by SIGKILL) before each of its writes leaves a destination that `check`
/// accepts, and running it again completes the copy.
pub fn a_copy_stopped_at_any_write_is_completed_by_the_next(src: Place, make_dst: &dyn Fn() -> Place) {
    src.init(&[]);
    let tree = src.scratch("tree");
    build_tree(&tree, 0xc0b1_0030);
    src.backup(&[tree.to_str().expect("UTF-8")]);
    let dump = dump_bytes(0xc0b1_0031, 1 << 20);
    src.backup_stdin("db.dump", &dump, &[]);

    // How many writes and deletes a whole copy makes.
    let probe = make_dst();
    probe.init(&[]);
    let traced = probe.copy_from(&src).env("CAIRN_FAULT", "trace").output().expect("runs");
    assert!(traced.status.success(), "{}", String::from_utf8_lossy(&traced.stderr));
    let mutating = String::from_utf8_lossy(&traced.stderr)
        .lines()
        .filter(|l| l.starts_with("cairn-fault: op") && l.split_whitespace().nth(4).is_none_or(|m| m != "-"))
        .count();
    assert!(mutating >= 6, "a copy makes locks, packs, an index and snapshots: {mutating} writes seen");

    for point in 1..=mutating {
        let dst = make_dst();
        dst.init(&[]);
        let out = dst.copy_from(&src).env("CAIRN_FAULT", format!("crash-at={point}")).output().expect("runs");
        assert_eq!(out.status.signal(), Some(9), "crash-at={point}: {}", String::from_utf8_lossy(&out.stderr));
        let check = dst.cairn().arg("check").output().expect("runs");
        assert!(check.status.success(), "crash-at={point}: check: {}", String::from_utf8_lossy(&check.stderr));
        let again = copy_json(&dst, &src, &[]);
        assert_eq!(count(&again["copied"]) + count(&again["already_copied"]), 2, "crash-at={point}: {again}");
        assert_eq!(dst.snapshot_ids().len(), 2, "crash-at={point}");
        dst.check_read_data();
        let target = dst.scratch("restored");
        let first = dst.snapshot_ids()[0].clone();
        let out = dst.cairn().args(["restore", &first, "--target"]).arg(&target).output().expect("runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_same_tree(&tree, &restored_path(&target, &tree));
        let dumped = dst.cairn().args(["dump", "latest", "/db.dump"]).output().expect("runs");
        assert!(dumped.stdout == dump, "crash-at={point}: the dump differs");
    }
}

#[test]
fn local_to_local_restores_byte_exact_and_copies_once() {
    copies_restore_byte_exact_and_a_second_copy_copies_nothing(Place::local(), Place::local(), &[]);
}

#[test]
fn local_to_local_with_copied_chunker_params_restores_byte_exact_and_copies_once() {
    copies_restore_byte_exact_and_a_second_copy_copies_nothing(
        Place::local(),
        Place::local(),
        &["--from-repo", "{src}", "--copy-chunker-params"],
    );
}

#[test]
fn local_filters_pick_the_snapshots() {
    filters_pick_the_snapshots(Place::local(), Place::local());
}

#[test]
fn local_copy_of_a_snapshot_sharing_data_adds_little() {
    a_snapshot_sharing_data_adds_little(Place::local(), Place::local(), false);
}

#[test]
fn local_copy_with_shared_ids_reads_only_missing_blobs() {
    a_snapshot_sharing_data_adds_little(Place::local(), Place::local(), true);
}

#[test]
fn local_copied_chunker_params_dedup_a_dump_across_repositories() {
    copied_chunker_params_dedup_across_repositories(Place::local(), Place::local(), Place::local());
}

#[test]
fn local_wrong_source_password_is_a_clear_error() {
    a_wrong_source_password_is_a_clear_error(Place::local(), Place::local());
}

#[test]
fn local_copy_stopped_at_any_write_is_completed_by_the_next() {
    a_copy_stopped_at_any_write_is_completed_by_the_next(Place::local(), &Place::local);
}

/// A snapshot file of the source that cannot be read is named in a warning and skipped; the others
/// are copied and the exit code is 3 (local folders: the test damages the file directly).
#[test]
fn local_damaged_source_snapshot_is_skipped_with_a_warning_and_exit_3() {
    let (src, dst) = (Place::local(), Place::local());
    src.init(&[]);
    let good = src.backup_stdin("a", b"first", &[]);
    let bad = src.backup_stdin("b", b"second", &[]);
    dst.init(&[]);
    let file = Path::new(&src.location).join("snapshots").join(&bad);
    let mut bytes = std::fs::read(&file).expect("snapshot file");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&file, bytes).expect("damage the snapshot file");
    let out = dst.copy_from(&src).arg("--json").output().expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains(&bad[..8]) && stderr.contains("source repository"), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(ids(&report["copied"]), vec![good], "{report}");
    assert_eq!(dst.snapshot_ids().len(), 1);
}

/// A new bucket on the shared SeaweedFS server of the test binary, as a copy location.
fn s3() -> Place {
    let server = crate::support::s3::Server::shared();
    let env = server.env().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    Place::at(server.repo_url(&server.new_bucket()), env, tempfile::tempdir().expect("temporary folder"))
}

#[test]
fn local_to_s3_restores_byte_exact_and_copies_once() {
    copies_restore_byte_exact_and_a_second_copy_copies_nothing(Place::local(), s3(), &[]);
}

#[test]
fn s3_to_local_with_copied_chunker_params_restores_byte_exact_and_copies_once() {
    copies_restore_byte_exact_and_a_second_copy_copies_nothing(
        s3(),
        Place::local(),
        &["--from-repo", "{src}", "--copy-chunker-params"],
    );
}

#[test]
fn s3_to_s3_copy_of_a_snapshot_sharing_data_adds_little() {
    a_snapshot_sharing_data_adds_little(s3(), s3(), false);
}

#[test]
fn local_to_s3_copy_stopped_at_any_write_is_completed_by_the_next() {
    a_copy_stopped_at_any_write_is_completed_by_the_next(Place::local(), &s3);
}
