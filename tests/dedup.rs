//! Deduplication on realistic volumes: the same data stored twice costs almost nothing, and a large
//! database dump with a few percent of its rows changed costs a small fraction of its size.
//! The measured figures are printed (run with `--nocapture` to see them).

use std::path::Path;

use crate::support::data::{SqlDump, write_random_file};
use crate::support::{TestRepo, dir_size};

const MIB: f64 = 1024.0 * 1024.0;

fn backup(repo: &TestRepo, path: &Path) -> serde_json::Value {
    let r = repo.json(&["backup", path.to_str().expect("UTF-8 path")]);
    assert_eq!(r["warnings"], serde_json::json!([]), "backup of {} had warnings", path.display());
    r
}

fn u64_of(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn the_same_200_mb_twice_grows_the_repository_by_under_one_percent() {
    const SIZE: u64 = 200_000_000;
    let repo = TestRepo::new();
    let first = repo.scratch("first");
    write_random_file(&first.join("data.bin"), 0xdedb_0001, SIZE);
    let r1 = backup(&repo, &first);
    let after_first = dir_size(&repo.repo_path());
    assert!(after_first > SIZE, "incompressible data stored in {after_first} bytes");

    // The same bytes under another name in another folder: no parent, no files cache; only the
    // content can match.
    let second = repo.scratch("second");
    std::fs::copy(first.join("data.bin"), second.join("copy-of-data.bin")).expect("copy");
    std::fs::remove_file(first.join("data.bin")).expect("remove the original, to spare the disk");
    let r2 = backup(&repo, &second);
    assert_eq!(u64_of(&r2["summary"]["bytes_read"]), SIZE, "the copy was not read");
    assert!(r2["parent"].is_null());
    let after_second = dir_size(&repo.repo_path());
    let growth = after_second - after_first;
    eprintln!(
        "dedup: first backup stored {} bytes ({:.1} MiB repo); the copy added {} bytes stored, repo grew {} bytes ({:.4}%)",
        u64_of(&r1["summary"]["bytes_added_stored"]),
        after_first as f64 / MIB,
        u64_of(&r2["summary"]["bytes_added_stored"]),
        growth,
        growth as f64 * 100.0 / SIZE as f64
    );
    assert!(growth < SIZE / 100, "repository grew by {growth} bytes for data already stored");
    assert_eq!(u64_of(&r2["summary"]["data_blobs_added"]), 0);

    // And the copy restores.
    let target = repo.scratch("out");
    repo.cairn().args(["restore", "latest", "--verify", "--target"]).arg(&target).assert().success();
    let restored = crate::support::fstree::restored_path(&target, &second).join("copy-of-data.bin");
    assert!(crate::support::data::same_contents(&restored, &second.join("copy-of-data.bin")));
}

/// Rows of the dump (about 1 GB of text).
const ROWS: u64 = 7_600_000;
/// Changed rows come in this many runs spread evenly through the file...
const CHANGED_RUNS: u64 = 24;
/// ...which together hold this share of all rows.
const CHANGED_SHARE: f64 = 0.03;

#[test]
fn a_1_gb_dump_with_a_few_percent_of_rows_changed_adds_a_small_fraction() {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    let path = src.join("accounts.sql");
    let dump = SqlDump::new(0xdedb_0002);

    let size1 = dump.write(&path, ROWS, |_| 0);
    let r1 = backup(&repo, &src);
    let stored1 = u64_of(&r1["summary"]["bytes_added_stored"]);
    let repo1 = dir_size(&repo.repo_path());

    // Tomorrow's dump: the same table with runs of rows updated here and there.
    let period = ROWS / CHANGED_RUNS;
    let run_len = (ROWS as f64 * CHANGED_SHARE / CHANGED_RUNS as f64) as u64;
    let changed = |row: u64| (row % period) >= period / 2 && (row % period) < period / 2 + run_len;
    let size2 = dump.write(&path, ROWS, |row| u64::from(changed(row)));
    let changed_rows = (0..ROWS).filter(|r| changed(*r)).count() as u64;
    let r2 = backup(&repo, &src);
    assert_eq!(r2["summary"]["files_changed"], 1);
    assert_eq!(u64_of(&r2["summary"]["bytes_read"]), size2, "the changed dump was not read whole");
    let plain2 = u64_of(&r2["summary"]["bytes_added_plain"]);
    let stored2 = u64_of(&r2["summary"]["bytes_added_stored"]);
    let growth = dir_size(&repo.repo_path()) - repo1;

    eprintln!(
        "dedup: dump of {size1} bytes ({:.0} MiB) stored in {stored1} bytes ({:.1}% of it); after changing {changed_rows} \
         rows ({:.1}%) in {CHANGED_RUNS} runs the next backup added {plain2} bytes plain, {stored2} stored ({:.2}% of the \
         file), repository grew {growth} bytes ({:.2}%)",
        size1 as f64 / MIB,
        stored1 as f64 * 100.0 / size1 as f64,
        changed_rows as f64 * 100.0 / ROWS as f64,
        stored2 as f64 * 100.0 / size2 as f64,
        growth as f64 * 100.0 / size2 as f64,
    );
    assert!(size1 > 1_000_000_000, "the dump is {size1} bytes, not about 1 GB");
    assert!(stored1 < size1, "text was not compressed at all");
    assert!(stored1 > size1 / 5, "the filler compresses far better than intended ({stored1} of {size1})");
    assert!(stored2 < size2 * 15 / 100, "the changed dump added {stored2} bytes stored, over 15% of {size2}");
    assert!(growth < size2 * 15 / 100, "the repository grew by {growth} bytes, over 15% of {size2}");

    // The new version reads back exactly, compared as it streams out of `cairn dump` (a restored
    // copy would be another gigabyte on the test machine's disk).
    let mut dump = repo
        .cairn_std()
        .args(["dump", "latest"])
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("dump runs");
    let same = crate::support::data::same_stream(dump.stdout.take().expect("piped stdout"), &path);
    let status = dump.wait().expect("dump ends");
    assert!(status.success(), "cairn dump failed: {status}");
    assert!(same, "the changed dump does not read back identical");
}

/// Files larger than one read block are read by a second thread, small files and streams of
/// unknown length in other ways; chunk boundaries must not depend on the way (or on where the read
/// blocks end), or the same bytes would be stored twice.
#[test]
fn a_stream_and_a_file_of_the_same_bytes_share_every_chunk() {
    const SIZE: u64 = 30 * 1024 * 1024 + 12_345;
    let repo = TestRepo::new();
    let dir = repo.scratch("src");
    let file = dir.join("dump.bin");
    write_random_file(&file, 0xdedb_0003, SIZE);
    let first = backup(&repo, &file);
    assert!(u64_of(&first["summary"]["data_blobs_added"]) > 10, "expected many chunks: {first}");

    let bytes = std::fs::read(&file).expect("read source");
    let out = repo
        .cairn()
        .args(["backup", "--json", "--stdin", "--stdin-filename", "dump.bin"])
        .write_stdin(bytes.clone())
        .assert()
        .success();
    let stream: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).expect("JSON report");
    assert_eq!(u64_of(&stream["summary"]["bytes_read"]), SIZE);
    assert_eq!(u64_of(&stream["summary"]["data_blobs_added"]), 0, "the stream stored new chunks: {stream}");

    // A small file (one read, no reader thread) made of the first chunk-sized piece, then the
    // same piece as a stream: again one shared chunk.
    let small = dir.join("small.bin");
    std::fs::write(&small, &bytes[..100_000]).expect("write small file");
    backup(&repo, &small);
    let out = repo
        .cairn()
        .args(["backup", "--json", "--stdin", "--stdin-filename", "small.bin"])
        .write_stdin(bytes[..100_000].to_vec())
        .assert()
        .success();
    let stream: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).expect("JSON report");
    assert_eq!(u64_of(&stream["summary"]["data_blobs_added"]), 0, "{stream}");
    let dumped = repo.cairn().args(["dump", "latest", "/small.bin"]).assert().success();
    assert_eq!(dumped.get_output().stdout, &bytes[..100_000]);
}
