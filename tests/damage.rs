//! Damage done to real repositories made by the binary, one kind per test: what `check` reports,
//! what still restores byte for byte, and that a restore touching the damage fails loudly and never
//! leaves wrong bytes behind.
//!
//! Every test builds the same two snapshots from seeded data: `a` and `b` share no data and no
//! tree, so each damage done to `a`'s packs must leave `b` untouched.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::support::TestRepo;

/// Small deterministic generator (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n.div_ceil(8)).flat_map(|_| self.next().to_le_bytes()).take(n).collect()
    }
}

/// A SQL-dump-like text of about `rows` lines.
pub fn sql_dump(seed: u64, rows: u64) -> Vec<u8> {
    let mut rng = Rng(seed);
    let mut out = Vec::new();
    for row in 0..rows {
        out.extend_from_slice(
            format!(
                "INSERT INTO orders VALUES ({row}, 'customer_{}', {}.{:02});\n",
                rng.next() % 5000,
                rng.next() % 900,
                rng.next() % 100
            )
            .as_bytes(),
        );
    }
    out
}

/// Writes a source folder: a dump, an incompressible file and a small file in a subfolder.
pub fn write_source(dir: &Path, seed: u64) {
    std::fs::write(dir.join("dump.sql"), sql_dump(seed, 30_000)).expect("write dump");
    std::fs::write(dir.join("noise.bin"), Rng(seed).bytes(2_500_000)).expect("write noise");
    std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
    std::fs::write(dir.join("sub/conf.txt"), format!("setting = {seed}\n")).expect("write conf");
}

/// One backup and what it added to the repository.
pub struct Backed {
    pub id: String,
    pub src: PathBuf,
    pub data_packs: Vec<String>,
    pub tree_packs: Vec<String>,
    pub index_files: Vec<String>,
    pub snapshot_file: String,
}

impl Backed {
    pub fn short(&self) -> &str {
        &self.id[..8]
    }
}

/// A repository with snapshots `a` and `b` of two unrelated folders.
pub struct Fixture {
    pub repo: TestRepo,
    pub a: Backed,
    pub b: Backed,
}

impl Fixture {
    pub fn new() -> Self {
        let repo = TestRepo::new();
        let a_src = repo.scratch("src_a");
        write_source(&a_src, 1);
        let a = backup(&repo, &a_src);
        let b_src = repo.scratch("src_b");
        write_source(&b_src, 2);
        let b = backup(&repo, &b_src);
        Self { repo, a, b }
    }

    pub fn pack_path(&self, id: &str) -> PathBuf {
        pack_path(&self.repo, id)
    }
}

pub fn pack_path(repo: &TestRepo, id: &str) -> PathBuf {
    repo.repo_path().join("data").join(&id[..2]).join(id)
}

/// Names of the files of a repository folder (recursively for `data`).
pub fn names(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.path().is_dir() {
                out.extend(names(&e.path()));
            } else {
                out.insert(e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    out
}

/// Backs `src` up and records which packs, index files and snapshot file the backup added.
pub fn backup(repo: &TestRepo, src: &Path) -> Backed {
    let root = repo.repo_path();
    let (packs_before, index_before) = (names(&root.join("data")), names(&root.join("index")));
    let report = repo.json(&["backup", src.to_str().expect("UTF-8 path")]);
    let id = report["snapshot_id"].as_str().expect("snapshot id").to_owned();
    let mut data_packs = Vec::new();
    let mut tree_packs = Vec::new();
    for p in names(&root.join("data")).difference(&packs_before) {
        let view = repo.json(&["cat", "pack", p]);
        match view["blobs"][0]["kind"].as_str() {
            Some("data") => data_packs.push(p.clone()),
            Some("tree") => tree_packs.push(p.clone()),
            other => panic!("pack {p} holds {other:?}"),
        }
    }
    let index_files = names(&root.join("index")).difference(&index_before).cloned().collect();
    assert!(!data_packs.is_empty() && !tree_packs.is_empty(), "the backup wrote data and tree packs");
    Backed { snapshot_file: id.clone(), id, src: src.to_path_buf(), data_packs, tree_packs, index_files }
}

/// Flips one bit of a file.
pub fn flip_bit(path: &Path, offset: u64) {
    let mut bytes = std::fs::read(path).expect("read for damage");
    bytes[offset as usize] ^= 0x10;
    std::fs::write(path, bytes).expect("write damage");
}

/// `(offset, stored_len)` of every blob of a pack, from its header.
pub fn blob_ranges(repo: &TestRepo, pack: &str) -> Vec<(u64, u64)> {
    let view = repo.json(&["cat", "pack", pack]);
    view["blobs"]
        .as_array()
        .expect("blobs")
        .iter()
        .map(|b| (b["offset"].as_u64().expect("offset"), b["stored_len"].as_u64().expect("length")))
        .collect()
}

/// Runs `cairn ARGS` and returns its output whatever the exit code.
pub fn run(repo: &TestRepo, args: &[&str]) -> Output {
    repo.cairn().args(args).output().expect("runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts that some line of `text` contains every needle and none of `absent`.
pub fn assert_line(text: &str, needles: &[&str], absent: &[&str]) {
    let found = text.lines().any(|l| needles.iter().all(|n| l.contains(n)) && !absent.iter().any(|n| l.contains(n)));
    assert!(found, "no line with {needles:?} (and without {absent:?}) in:\n{text}");
}

/// Asserts `check ARGS` exits with `code`; returns its standard output.
pub fn check(repo: &TestRepo, args: &[&str], code: i32) -> String {
    let o = run(repo, &[&["check"], args].concat());
    assert_eq!(o.status.code(), Some(code), "check {args:?}:\n{}{}", stdout(&o), stderr(&o));
    stdout(&o)
}

/// Every file below `dir`, by path relative to it, with its bytes.
pub fn tree_of(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(dir).expect("list").flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.insert(p.strip_prefix(base).expect("below base").to_path_buf(), std::fs::read(&p).expect("read"));
            }
        }
    }
    let mut out = BTreeMap::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out
}

/// Restores `snapshot` with a fresh, empty cache (so nothing cached can mask damage) and asserts
/// the result is exactly `src`.
pub fn assert_restores(repo: &TestRepo, snapshot: &str, src: &Path) {
    let target = tempfile::tempdir().expect("temporary folder");
    let cache = tempfile::tempdir().expect("temporary cache");
    let o = repo
        .cairn()
        .env("CAIRN_CACHE_DIR", cache.path())
        .args(["restore", snapshot, "--verify", "--target"])
        .arg(target.path())
        .output()
        .expect("runs");
    assert!(o.status.success(), "restore {snapshot} failed:\n{}", stderr(&o));
    let restored = target.path().join(src.strip_prefix("/").expect("absolute source"));
    assert!(tree_of(&restored) == tree_of(src), "snapshot {snapshot} did not restore byte for byte");
}

/// Restores a snapshot that includes damage: the restore must fail (non-zero exit, a message),
/// must leave out at least one file, and every file it did write must be exactly the source's.
/// Returns standard error.
pub fn assert_restore_fails_cleanly(repo: &TestRepo, snapshot: &str, src: &Path) -> String {
    let target = tempfile::tempdir().expect("temporary folder");
    let cache = tempfile::tempdir().expect("temporary cache");
    let o = repo
        .cairn()
        .env("CAIRN_CACHE_DIR", cache.path())
        .args(["restore", snapshot, "--target"])
        .arg(target.path())
        .output()
        .expect("runs");
    assert!(!o.status.success(), "restoring damaged snapshot {snapshot} must fail");
    let err = stderr(&o);
    assert!(!err.trim().is_empty(), "the failure must be explained");
    let source = tree_of(src);
    let restored = tree_of(&target.path().join(src.strip_prefix("/").expect("absolute source")));
    assert!(restored.len() < source.len(), "some file must be missing after the failed restore");
    for (path, bytes) in &restored {
        assert!(source.get(path) == Some(bytes), "{} was restored with wrong bytes", path.display());
    }
    err
}

#[test]
fn bit_flipped_in_a_data_blob() {
    let f = Fixture::new();
    let pack = &f.a.data_packs[0];
    let (offset, len) = blob_ranges(&f.repo, pack)[0];
    flip_bit(&f.pack_path(pack), offset + len / 2);

    // The structure check reads no data, so it cannot see this; the reading levels do.
    check(&f.repo, &[], 0);
    let hashes = check(&f.repo, &["--read-hashes"], 4);
    assert_line(&hashes, &["damage: pack", &pack[..8], "does not match its name", f.a.short()], &[f.b.short()]);
    let data = check(&f.repo, &["--read-data"], 4);
    assert_line(&data, &["damage: pack", &pack[..8], "data blob", "fails authentication", f.a.short()], &[f.b.short()]);

    assert_restores(&f.repo, &f.b.id, &f.b.src);
    let err = assert_restore_fails_cleanly(&f.repo, &f.a.id, &f.a.src);
    assert!(err.contains("fail"), "the message names the failure: {err}");
}

#[test]
fn bit_flipped_in_a_tree_blob() {
    let f = Fixture::new();
    let pack = &f.a.tree_packs[0];
    let (offset, len) = blob_ranges(&f.repo, pack)[0];
    flip_bit(&f.pack_path(pack), offset + len / 2);

    // Trees are loaded by every check level.
    let out = check(&f.repo, &[], 4);
    assert_line(&out, &["damage: pack", &pack[..8], "tree blob", "fails authentication", f.a.short()], &[f.b.short()]);
    assert_restores(&f.repo, &f.b.id, &f.b.src);
    assert_restore_fails_cleanly(&f.repo, &f.a.id, &f.a.src);
}

#[test]
fn bit_flipped_in_a_pack_header_then_index_rebuilt_from_frames() {
    let f = Fixture::new();
    let pack = &f.a.data_packs[0];
    let path = f.pack_path(pack);
    let bytes = std::fs::read(&path).expect("read pack");
    let n = bytes.len();
    let header_len = u32::from_le_bytes(bytes[n - 8..n - 4].try_into().expect("four bytes")) as usize;
    flip_bit(&path, (n - 8 - header_len / 2) as u64);

    check(&f.repo, &[], 0);
    let out = check(&f.repo, &["--read-data"], 4);
    assert_line(&out, &["damage: pack", &pack[..8], "header fails authentication"], &[]);
    // The blobs themselves are intact and found through the index: both snapshots restore.
    assert_restores(&f.repo, &f.a.id, &f.a.src);
    assert_restores(&f.repo, &f.b.id, &f.b.src);

    // Without the index, the header cannot help: repair salvages the pack from its frames.
    for i in &f.a.index_files {
        std::fs::remove_file(f.repo.repo_path().join("index").join(i)).expect("remove index");
    }
    check(&f.repo, &[], 4);
    let repair = run(&f.repo, &["repair", "index"]);
    assert!(repair.status.success(), "{}", stderr(&repair));
    assert_line(&stderr(&repair), &["pack", &pack[..8], "salvaged", "0 did not authenticate"], &[]);
    check(&f.repo, &[], 0);
    assert_restores(&f.repo, &f.a.id, &f.a.src);
}

#[test]
fn truncated_pack() {
    let f = Fixture::new();
    let pack = &f.a.data_packs[0];
    let path = f.pack_path(pack);
    let len = std::fs::metadata(&path).expect("stat").len();
    std::fs::OpenOptions::new().write(true).open(&path).expect("open").set_len(len / 2).expect("truncate");

    let out = check(&f.repo, &[], 4);
    assert_line(&out, &["damage: pack", &pack[..8], "truncated", f.a.short()], &[f.b.short()]);
    assert_restores(&f.repo, &f.b.id, &f.b.src);
    assert_restore_fails_cleanly(&f.repo, &f.a.id, &f.a.src);
}

#[test]
fn deleted_pack_then_snapshot_repaired() {
    let f = Fixture::new();
    let pack = &f.a.data_packs[0];
    std::fs::remove_file(f.pack_path(pack)).expect("delete pack");

    let out = check(&f.repo, &[], 4);
    assert_line(&out, &["damage: pack", &pack[..8], "missing", f.a.short()], &[f.b.short()]);
    assert_restores(&f.repo, &f.b.id, &f.b.src);
    assert_restore_fails_cleanly(&f.repo, &f.a.id, &f.a.src);

    // The index forgets the pack; the snapshot is rewritten without the lost files.
    assert!(run(&f.repo, &["repair", "index"]).status.success());
    let plan = run(&f.repo, &["repair", "snapshots", "--dry-run"]);
    assert!(plan.status.success(), "{}", stderr(&plan));
    assert_line(&stdout(&plan), &["would repair snapshot", f.a.short()], &[]);
    assert_line(&stdout(&plan), &["removed", "noise.bin"], &[]);
    assert_eq!(names(&f.repo.repo_path().join("snapshots")).len(), 2, "a dry run writes nothing");

    let done = f.repo.json(&["repair", "snapshots"]);
    let repaired = done["repaired"][0]["repaired"].as_str().expect("new snapshot id").to_owned();
    assert_eq!(done["repaired"][0]["original"].as_str(), Some(f.a.id.as_str()));
    let listing = f.repo.json(&["snapshots", "--tag", "repaired"]);
    assert_eq!(listing[0]["id"].as_str(), Some(repaired.as_str()));
    assert_eq!(listing[0]["original"].as_str(), Some(f.a.id.as_str()));
    // The original is kept, so check still reports it; the repaired one restores cleanly.
    check(&f.repo, &[], 4);
    let target = tempfile::tempdir().expect("temporary folder");
    f.repo.cairn().args(["restore", &repaired, "--verify", "--target"]).arg(target.path()).assert().success();
    let restored = tree_of(&target.path().join(f.a.src.strip_prefix("/").expect("absolute")));
    let source = tree_of(&f.a.src);
    for (path, bytes) in &restored {
        assert!(source.get(path) == Some(bytes), "{} differs", path.display());
    }

    // Dropping the original leaves a repository without damage.
    let forget = f.repo.json(&["repair", "snapshots", "--forget"]);
    assert_eq!(forget["already_repaired"][0]["forgotten"], true, "{forget}");
    check(&f.repo, &[], 0);
    check(&f.repo, &["--read-data"], 0);
}

#[test]
fn deleted_index_file_then_index_repaired() {
    let f = Fixture::new();
    for i in &f.a.index_files {
        std::fs::remove_file(f.repo.repo_path().join("index").join(i)).expect("remove index");
    }
    let out = check(&f.repo, &[], 4);
    assert_line(&out, &["damage: tree", "in no index", f.a.short()], &[f.b.short()]);
    assert_line(&out, &["notice:", "named by no index"], &[]);
    assert_restores(&f.repo, &f.b.id, &f.b.src);

    let plan = run(&f.repo, &["repair", "index", "--dry-run"]);
    assert!(plan.status.success());
    check(&f.repo, &[], 4);
    let repair = f.repo.json(&["repair", "index"]);
    assert_eq!(repair["packs_added"].as_array().expect("list").len(), f.a.data_packs.len() + f.a.tree_packs.len());
    check(&f.repo, &[], 0);
    check(&f.repo, &["--read-data"], 0);
    assert_restores(&f.repo, &f.a.id, &f.a.src);
    assert_restores(&f.repo, &f.b.id, &f.b.src);
}

#[test]
fn damaged_index_file_then_index_repaired() {
    let f = Fixture::new();
    let index = &f.a.index_files[0];
    flip_bit(&f.repo.repo_path().join("index").join(index), 40);

    let out = check(&f.repo, &[], 4);
    assert_line(&out, &["damage: index", &index[..8], "does not match its name", "repair index"], &[]);
    assert_line(&out, &["in no index", f.a.short()], &[f.b.short()]);
    // The machine that made the backups still has the index merged in its cache: b restores there.
    let target = tempfile::tempdir().expect("temporary folder");
    f.repo.cairn().args(["restore", &f.b.id, "--verify", "--target"]).arg(target.path()).assert().success();

    let repair = run(&f.repo, &["repair", "index"]);
    assert!(repair.status.success(), "{}", stderr(&repair));
    assert_line(&stderr(&repair), &["index", &index[..8], "replaced"], &[]);
    check(&f.repo, &[], 0);
    assert!(names(&f.repo.repo_path().join("index")).iter().all(|i| !f.a.index_files.contains(i)));
    assert_restores(&f.repo, &f.a.id, &f.a.src);
    assert_restores(&f.repo, &f.b.id, &f.b.src);
}

#[test]
fn damaged_snapshot_file() {
    let f = Fixture::new();
    flip_bit(&f.repo.repo_path().join("snapshots").join(&f.a.snapshot_file), 30);

    let out = check(&f.repo, &[], 4);
    assert_line(&out, &["damage: snapshot", f.a.short(), "does not match its name"], &[]);
    assert_restores(&f.repo, &f.b.id, &f.b.src);
    // With no intact copy in the local cache (deletion_safety covers the case with one), the
    // damaged file goes with --forget; then nothing is damaged (its data is merely unused).
    std::fs::remove_dir_all(f.repo.cache_path()).expect("remove cache");
    let repair = f.repo.json(&["repair", "snapshots", "--forget"]);
    assert_eq!(repair["unreadable"][0]["forgotten"], true, "{repair}");
    check(&f.repo, &["--read-data"], 0);
}

#[test]
fn damaged_key_file_with_another_key_working() {
    let f = Fixture::new();
    let added = f
        .repo
        .cairn()
        .env("CAIRN_NEW_PASSWORD", "second password")
        .args(["key", "add", "--kdf-memory-kib", "64", "--kdf-time", "1", "--json"])
        .output()
        .expect("runs");
    assert!(added.status.success(), "{}", stderr(&added));
    let keys = f.repo.json(&["key", "list"]);
    let first = keys.as_array().expect("keys").iter().find(|k| k["current"] == true).expect("current key");
    let first = first["id"].as_str().expect("id").to_owned();
    flip_bit(&f.repo.repo_path().join("keys").join(&first), 60);

    // The first password no longer opens anything; the second does, and check names the damage.
    let o = f.repo.cairn().arg("snapshots").output().expect("runs");
    assert_eq!(o.status.code(), Some(12), "the damaged key's password is refused");
    let out = f.repo.cairn().env("CAIRN_PASSWORD", "second password").arg("check").output().expect("runs");
    assert_eq!(out.status.code(), Some(4));
    assert_line(&stdout(&out), &["damage: key", &first[..8], "does not match its name"], &[]);
    let second = TestRepoWithPassword { repo: &f.repo, password: "second password" };
    second.assert_restores(&f.a.id, &f.a.src);
    second.assert_restores(&f.b.id, &f.b.src);
}

/// Runs restores with another password.
struct TestRepoWithPassword<'a> {
    repo: &'a TestRepo,
    password: &'a str,
}

impl TestRepoWithPassword<'_> {
    fn assert_restores(&self, snapshot: &str, src: &Path) {
        let target = tempfile::tempdir().expect("temporary folder");
        let o = self
            .repo
            .cairn()
            .env("CAIRN_PASSWORD", self.password)
            .args(["restore", snapshot, "--verify", "--target"])
            .arg(target.path())
            .output()
            .expect("runs");
        assert!(o.status.success(), "{}", stderr(&o));
        let restored = target.path().join(src.strip_prefix("/").expect("absolute"));
        assert!(tree_of(&restored) == tree_of(src), "snapshot {snapshot} did not restore byte for byte");
    }
}

#[test]
fn lost_pack_of_a_later_backup_repairs_to_everything_else() {
    // a1 and a2 back up the same folder; a2 adds one file, whose data lands in a pack of its own.
    let f = Fixture::new();
    std::fs::write(f.a.src.join("late.bin"), Rng(9).bytes(1_500_000)).expect("write");
    let a2 = backup(&f.repo, &f.a.src);
    for p in &a2.data_packs {
        std::fs::remove_file(f.pack_path(p)).expect("delete pack");
    }
    let out = check(&f.repo, &[], 4);
    assert_line(&out, &["missing", a2.short()], &[f.a.short(), f.b.short()]);
    assert!(run(&f.repo, &["repair", "index"]).status.success());
    let done = f.repo.json(&["repair", "snapshots"]);
    assert_eq!(done["repaired"].as_array().expect("list").len(), 1, "only a2 needs repair: {done}");
    let removed: Vec<&str> =
        done["repaired"][0]["removed_files"].as_array().expect("list").iter().filter_map(|p| p.as_str()).collect();
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert!(removed[0].ends_with("/late.bin"), "{removed:?}");
    let repaired = done["repaired"][0]["repaired"].as_str().expect("id").to_owned();

    // The repaired snapshot restores as the folder without the lost file; the others are intact.
    std::fs::remove_file(f.a.src.join("late.bin")).expect("remove");
    assert_restores(&f.repo, &repaired, &f.a.src);
    assert_restores(&f.repo, &f.a.id, &f.a.src);
    assert_restores(&f.repo, &f.b.id, &f.b.src);
    // Running it again changes nothing: a2 is already repaired.
    let again = f.repo.json(&["repair", "snapshots"]);
    assert!(again["repaired"].as_array().expect("list").is_empty(), "{again}");
}
