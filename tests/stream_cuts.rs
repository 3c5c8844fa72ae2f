//! A large stream is cut and stored by several threads at once: its chunks must be exactly those of
//! one serial FastCDC pass over the whole input (dedup across backups and `spec/chunking.md` depend
//! on it), whatever the 8 MiB read blocks' edges, holes of zeros across them, and pipes that
//! deliver the bytes in small pieces.

use cairn_engine::commands::snapshots::{SnapshotFilter, find_node, find_snapshot};
use cairn_format::BlobId;
use cairn_format::chunker::Chunker;
use cairn_format::tree::NodeKind;

use crate::support::TestRepo;
use crate::support::data::{Rng, SqlDump};

const MIB: usize = 1 << 20;

fn open_repo(repo: &TestRepo) -> cairn_engine::Repository {
    repo.open_engine()
}

/// SQL text, random bytes and runs of zeros, with zero runs and a change of content placed across
/// the read blocks' edges (8 MiB, 16 MiB) and a length that is not a multiple of anything.
fn awkward_stream() -> Vec<u8> {
    let dump = SqlDump::new(0x0c07_0001);
    let mut data = Vec::new();
    let mut row = 0;
    while data.len() < 8 * MIB - 300_000 {
        dump.push_row(&mut data, row, 0);
        row += 1;
    }
    // 2.5 MiB of zeros from just before the first block's edge to past it.
    data.resize(data.len() + 5 * MIB / 2, 0);
    data.extend_from_slice(&Rng::new(0x0c07).bytes(16 * MIB - 1_000 - data.len()));
    // Zeros that start 1,000 bytes before the second edge, then text again.
    data.resize(data.len() + 1_777_777, 0);
    while data.len() < 21 * MIB + 12_345 {
        dump.push_row(&mut data, row, 0);
        row += 1;
    }
    data
}

/// The blob ids of one serial pass of the repository's chunker over `data`.
fn serial_ids(repo: &cairn_engine::Repository, data: &[u8]) -> Vec<BlobId> {
    let chunker = Chunker::new(repo.config().chunker, repo.key().chunker_seed());
    let (lengths, used) = chunker.cut(data, true);
    assert_eq!(used, data.len());
    let mut at = 0;
    lengths
        .into_iter()
        .map(|len| {
            let id = repo.key().blob_id(&data[at..at + len]);
            at += len;
            id
        })
        .collect()
}

/// The chunk list of `/name` in the latest snapshot.
fn stored_ids(repo: &cairn_engine::Repository, name: &str) -> Vec<BlobId> {
    repo.sync_index().expect("index");
    let (_, snapshot) = find_snapshot(repo, "latest", &SnapshotFilter::default()).expect("snapshot");
    let (node, _) = find_node(repo, &snapshot, name).expect("file in snapshot");
    let NodeKind::File { content } = node.kind else { panic!("{name} is a file") };
    content
}

#[test]
fn stdin_across_block_edges_is_cut_as_one_serial_pass() {
    let repo = TestRepo::new();
    let input = awkward_stream();
    repo.cairn()
        .args(["backup", "--stdin", "--stdin-filename", "db.sql"])
        .write_stdin(input.clone())
        .assert()
        .success();
    let opened = open_repo(&repo);
    let want = serial_ids(&opened, &input);
    assert!(want.len() > 40, "the input spans many chunks ({})", want.len());
    assert_eq!(stored_ids(&opened, "/db.sql"), want);
    let dumped = repo.cairn().args(["dump", "latest", "/db.sql"]).output().expect("runs");
    assert!(dumped.stdout == input, "the stream dumps back identical");
    repo.cairn().args(["check", "--read-data"]).assert().success();
}

#[test]
fn a_pipe_of_small_writes_is_cut_as_one_serial_pass() {
    let repo = TestRepo::new();
    let input = awkward_stream();
    let file = repo.scratch("in").join("input.sql");
    std::fs::write(&file, &input).expect("write input");
    // `dd` writes 4 KiB at a time into the pipe, so reads return small pieces of unknown total.
    repo.cairn()
        .args(["backup", "--stdin-filename", "piped.sql", "--stdin-from-command", "--", "dd", "bs=4096", "status=none"])
        .arg(format!("if={}", file.display()))
        .assert()
        .success();
    let opened = open_repo(&repo);
    assert_eq!(stored_ids(&opened, "/piped.sql"), serial_ids(&opened, &input));
}

#[test]
fn a_large_file_is_cut_as_one_serial_pass_and_its_copy_adds_nothing() {
    let repo = TestRepo::new();
    let input = awkward_stream();
    let src = repo.scratch("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("a.sql"), &input).expect("write");
    repo.cairn().arg("backup").arg(&src).assert().success();
    let opened = open_repo(&repo);
    let want = serial_ids(&opened, &input);
    let path = format!("{}/a.sql", src.display());
    assert_eq!(stored_ids(&opened, &path), want);

    // The same bytes as a stream store no new data blob.
    let out = repo
        .cairn()
        .args(["backup", "--json", "--stdin", "--stdin-filename", "again.sql"])
        .write_stdin(input)
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["summary"]["data_blobs_added"], 0, "{report}");
}
