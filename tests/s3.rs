//! Repositories on a real S3-compatible object store (SeaweedFS on loopback, `support::s3`): the
//! round trip, the maintenance commands, one-line errors, request counts, a store killed
//! mid-backup, connections reset on the way, and many hosts backing up while another prunes.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;

use crate::support::data::{Rng, write_random_file};
use crate::support::fstree::{assert_same_tree, restored_path};
use crate::support::s3::{FlakyProxy, S3Repo, Server, traced_ops};

/// A small tree of files of varied sizes (some share content, one is empty).
fn make_tree(root: &Path, seed: u64) {
    let mut rng = Rng::new(seed);
    std::fs::create_dir_all(root.join("sub/deeper")).expect("mkdir");
    write_random_file(&root.join("big.bin"), seed, 3_000_000);
    write_random_file(&root.join("sub/medium.bin"), seed + 1, 400_000);
    std::fs::write(root.join("sub/deeper/text.txt"), "hello object store\n".repeat(2000)).expect("write");
    std::fs::write(root.join("empty"), b"").expect("write");
    std::fs::write(root.join("sub/copy.bin"), std::fs::read(root.join("sub/medium.bin")).expect("read")).expect("w");
    std::fs::write(root.join("small"), rng.bytes(1234)).expect("write");
}

/// Standard error of a failed run, which must be exactly one line.
fn one_error_line(out: &std::process::Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).trim_end().to_owned();
    assert_eq!(err.lines().count(), 1, "expected one line, got: {err}");
    err
}

#[test]
fn tree_and_stdin_round_trip_byte_exact_with_check_read_data() {
    let repo = S3Repo::new();
    let src = repo.scratch("src");
    make_tree(&src, 1);
    repo.cairn().arg("backup").arg(&src).assert().success();
    let dump: Vec<u8> = Rng::new(7).bytes(2_500_000);
    repo.cairn().args(["backup", "--stdin", "--stdin-filename", "db.sql"]).write_stdin(dump.clone()).assert().success();
    let snaps = repo.json(&["snapshots"]);
    assert_eq!(snaps.as_array().expect("array").len(), 2);

    let target = repo.scratch("restored");
    let first = snaps[0]["id"].as_str().expect("id");
    repo.cairn().args(["restore", first, "--target"]).arg(&target).assert().success();
    assert_same_tree(&src, &restored_path(&target, &src));
    let out = repo.cairn().args(["dump", "latest", "/db.sql"]).output().expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout == dump, "the dumped stream differs from what was backed up");

    let out = repo.cairn().args(["check", "--read-data"]).output().expect("runs");
    assert!(out.status.success(), "check failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no damage found"));
}

#[test]
fn forget_prune_and_repair_index_on_s3() {
    let repo = S3Repo::new();
    let src = repo.scratch("src");
    make_tree(&src, 2);
    repo.cairn().arg("backup").arg(&src).assert().success();
    // A second version that keeps part of the data: prune must keep what the newer one uses.
    write_random_file(&src.join("big.bin"), 99, 3_000_000);
    repo.cairn().arg("backup").arg(&src).assert().success();
    let snaps = repo.json(&["snapshots"]);
    let oldest = snaps[0]["id"].as_str().expect("id").to_owned();
    repo.cairn().args(["forget", &oldest, "--prune"]).assert().success();
    assert_eq!(repo.json(&["snapshots"]).as_array().expect("array").len(), 1);
    repo.cairn().args(["check", "--read-data"]).assert().success();

    repo.cairn().args(["repair", "index"]).assert().success();
    // With the local cache gone, everything is read back from the bucket.
    std::fs::remove_dir_all(repo.cache_path()).expect("remove cache");
    repo.cairn().args(["check", "--read-data"]).assert().success();
    let target = repo.scratch("restored");
    repo.cairn().args(["restore", "latest", "--target"]).arg(&target).assert().success();
    assert_same_tree(&src, &restored_path(&target, &src));
}

#[test]
fn storage_failures_give_one_line_and_their_exit_code() {
    let server = Server::shared();
    let repo = S3Repo::new();

    // Wrong secret key: the signature does not match.
    let out = repo.cairn().env("AWS_SECRET_ACCESS_KEY", "wrong").arg("snapshots").output().expect("runs");
    assert_eq!(out.status.code(), Some(13));
    let line = one_error_line(&out);
    assert!(line.contains("refused") && line.contains("AWS_SECRET_ACCESS_KEY"), "{line}");
    assert!(!line.contains("wrong"), "a secret must never be printed: {line}");

    // A bucket that does not exist.
    let out = repo.cairn().env("CAIRN_REPOSITORY", server.repo_url("no-such-bucket-here")).arg("snapshots").output();
    let out = out.expect("runs");
    assert_eq!(out.status.code(), Some(10));
    let line = one_error_line(&out);
    assert!(line.contains("bucket 'no-such-bucket-here'") && line.contains("does not exist"), "{line}");

    // A prefix with no repository in an existing bucket.
    let url = format!("{}/elsewhere", repo.url);
    let out = repo.cairn().env("CAIRN_REPOSITORY", &url).arg("snapshots").output().expect("runs");
    assert_eq!(out.status.code(), Some(10));
    let line = one_error_line(&out);
    assert!(line.contains("no repository at") && line.contains("elsewhere"), "{line}");

    // A port nobody listens on (bound and closed again, so it is free).
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let url = format!("s3:http://127.0.0.1:{port}/{}", repo.bucket);
    let out = repo.cairn().env("CAIRN_REPOSITORY", &url).args(["-o", "retries=2", "snapshots"]).output();
    let out = out.expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let line = one_error_line(&out);
    assert!(line.contains("cannot reach") && line.contains("after 2 retries"), "{line}");

    // init into a missing bucket says so too, and never creates anything.
    let out = repo
        .cairn()
        .env("CAIRN_REPOSITORY", server.repo_url("no-such-bucket-here"))
        .args(["init", "--kdf-memory-kib", "64", "--kdf-time", "1"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(10));
    assert!(one_error_line(&out).contains("does not exist"));
}

#[test]
fn snapshots_and_an_unchanged_backup_download_no_pack_data_and_list_each_folder_once() {
    let repo = S3Repo::new();
    let src = repo.scratch("src");
    make_tree(&src, 3);
    repo.cairn().arg("backup").arg(&src).assert().success();

    for args in [vec!["snapshots"], vec!["backup", src.to_str().expect("UTF-8")]] {
        let out = repo.cairn().env("CAIRN_FAULT", "trace").args(&args).output().expect("runs");
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let ops = traced_ops(&out.stderr);
        assert!(!ops.is_empty(), "no traced operations: is the binary built with fault-injection?");
        let pack_reads: Vec<_> = ops.iter().filter(|(k, p)| k == "Read" && p.starts_with("data/")).collect();
        assert!(pack_reads.is_empty(), "{args:?} read pack data: {pack_reads:?}");
        let mut lists: Vec<&str> = ops.iter().filter(|(k, _)| k == "List").map(|(_, p)| p.as_str()).collect();
        let n = lists.len();
        lists.sort();
        lists.dedup();
        assert_eq!(lists.len(), n, "{args:?} listed a folder twice: {ops:?}");
        if args[0] == "snapshots" {
            assert!(!lists.contains(&"data/"), "{args:?} listed the packs: {ops:?}");
        }
        // (A backup lists the packs once, to store again what an index names in a lost pack. It
        // may write one small tree pack: the folders above the source, /tmp here, are recorded
        // with their metadata, which other processes change.)
    }
}

#[test]
fn connections_reset_on_the_way_are_retried_and_the_backup_succeeds() {
    let server = Server::shared();
    let repo = S3Repo::new();
    // Every third connection through the proxy is reset after the client's first bytes.
    let proxy = FlakyProxy::start(server.s3_port, 3);
    let url = format!("s3:http://127.0.0.1:{}/{}", proxy.port, repo.bucket);
    let src = repo.scratch("src");
    make_tree(&src, 4);
    // One connection per request, so that resets hit many requests.
    let flaky = |args: &[&str]| {
        let out = repo
            .cairn()
            .env("CAIRN_REPOSITORY", &url)
            .args(["-o", "retries=8", "-o", "connections=4"])
            .args(args)
            .output()
            .expect("runs");
        assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    };
    flaky(&["backup", src.to_str().expect("UTF-8")]);
    flaky(&["check", "--read-data"]);
    assert!(proxy.resets.load(std::sync::atomic::Ordering::SeqCst) > 0, "the proxy reset no connection");
    // Directly, without the proxy, everything is there.
    std::fs::remove_dir_all(repo.cache_path()).expect("remove cache");
    repo.cairn().args(["check", "--read-data"]).assert().success();
    let target = repo.scratch("restored");
    repo.cairn().args(["restore", "latest", "--target"]).arg(&target).assert().success();
    assert_same_tree(&src, &restored_path(&target, &src));
}

#[test]
fn a_store_killed_mid_backup_fails_the_run_and_the_next_one_reuses_the_uploaded_packs() {
    // A private server: killing the shared one would fail every other test.
    let server: &'static Server = Box::leak(Box::new(Server::start()));
    let repo = S3Repo::uninitialised(server);
    repo.cairn().args(["init", "--kdf-memory-kib", "64", "--kdf-time", "1"]).assert().success();
    let src = repo.scratch("src");
    // Random data: an index file is written after 8 packs of 16 MiB, and the backup goes on.
    for i in 0..6 {
        write_random_file(&src.join(format!("part{i}")), 100 + i, 32 << 20);
    }
    let mut child = repo
        .cairn_std()
        .env("CAIRN_FAULT", "trace")
        .args(["-o", "retries=2", "-o", "timeout=20", "backup"])
        .arg(&src)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut killed = false;
    while stderr.read_line(&mut line).expect("read") > 0 {
        // Once an index file is stored, the packs it names are there for the next run.
        if !killed && line.starts_with("cairn-fault: done Write index/") {
            server.kill();
            killed = true;
        }
        lines.push(std::mem::take(&mut line));
    }
    let status = child.wait().expect("wait");
    assert!(killed, "the backup wrote no index file before it ended: {}", lines.concat());
    assert!(!status.success(), "the backup succeeded although its store was killed");
    let errors: Vec<&String> = lines.iter().filter(|l| !l.starts_with("cairn-fault:")).collect();
    assert_eq!(errors.len(), 1, "expected one error line: {errors:?}");
    assert!(errors[0].contains("data/") || errors[0].contains("index/") || errors[0].contains("locks/"), "{errors:?}");

    server.launch();
    let out = repo.cairn().args(["backup", "--json"]).arg(&src).output().expect("runs");
    assert!(out.status.success(), "the next backup failed: {}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let added = report["summary"]["bytes_added_plain"].as_u64().expect("bytes added");
    assert!(added <= (192 << 20) - (100 << 20), "the next backup stored {added} bytes again: nothing was reused");
    repo.cairn().args(["check", "--read-data"]).assert().success();
    let target = repo.scratch("restored");
    repo.cairn().args(["restore", "latest", "--target"]).arg(&target).assert().success();
    assert_same_tree(&src, &restored_path(&target, &src));
    server.destroy();
}

#[test]
fn a_store_killed_mid_prune_fails_the_run_and_the_next_prune_finishes_the_work() {
    let server: &'static Server = Box::leak(Box::new(Server::start()));
    let repo = S3Repo::uninitialised(server);
    repo.cairn().args(["init", "--kdf-memory-kib", "64", "--kdf-time", "1"]).assert().success();
    let src = repo.scratch("src");
    for i in 0..4 {
        write_random_file(&src.join(format!("part{i}")), 200 + i, 12 << 20);
    }
    repo.cairn().arg("backup").arg(&src).assert().success();
    // The second snapshot keeps half of the data: prune deletes the packs of the other half.
    for i in 0..2 {
        write_random_file(&src.join(format!("part{i}")), 300 + i, 12 << 20);
    }
    repo.cairn().arg("backup").arg(&src).assert().success();
    let oldest = repo.json(&["snapshots"])[0]["id"].as_str().expect("id").to_owned();
    repo.cairn().args(["forget", &oldest]).assert().success();

    // The prune stops itself just before its first deletion (its new index is stored by then);
    // the store is killed there, and only then does the prune go on.
    let mut child = repo
        .cairn_std()
        .env("CAIRN_FAULT", "pause-before=delete")
        .args(["-o", "retries=1", "-o", "timeout=10", "prune"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut killed = false;
    while stderr.read_line(&mut line).expect("read") > 0 {
        if !killed && line.starts_with("cairn-fault: pausing before Delete") {
            // The prune is stopped (SIGSTOP) until it is let go.
            server.kill();
            killed = true;
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).expect("continue the prune");
        }
        lines.push(std::mem::take(&mut line));
    }
    let status = child.wait().expect("wait");
    assert!(killed, "the prune deleted nothing: {}", lines.concat());
    assert!(!status.success(), "the prune succeeded although its store was killed: {}", lines.concat());
    let errors: Vec<&String> = lines.iter().filter(|l| !l.starts_with("cairn-fault:")).collect();
    assert_eq!(errors.len(), 1, "expected one error line: {errors:?}");

    // After a restart nothing blocks the next run (the killed prune's lock is stale: its process is
    // gone), nothing was lost, and the next prune finishes the work.
    server.launch();
    repo.cairn().args(["check", "--read-data"]).assert().success();
    repo.cairn().arg("prune").assert().success();
    repo.cairn().args(["check", "--read-data"]).assert().success();
    let stats = repo.json(&["stats", "--mode", "raw-data"]);
    let stored = stats["total_size"].as_u64().expect("total_size");
    assert!(stored < 60 << 20, "the forgotten half is still stored after the second prune: {stats}");
    let target = repo.scratch("restored");
    repo.cairn().args(["restore", "latest", "--target"]).arg(&target).assert().success();
    assert_same_tree(&src, &restored_path(&target, &src));
    server.destroy();
}

#[test]
fn many_hosts_back_up_into_one_bucket_while_another_forgets_and_prunes() {
    let repo = S3Repo::new();
    let hosts: Vec<(String, std::path::PathBuf)> = (0..3)
        .map(|h| {
            let src = repo.scratch(&format!("src{h}"));
            make_tree(&src, 10 + h);
            (format!("host{h}"), src)
        })
        .collect();
    // Each host: its own cache folder, three backups (changing one file in between).
    let backup_runs: Vec<std::process::Child> = hosts
        .iter()
        .map(|(host, src)| {
            let script = format!(
                "set -e; for i in 1 2 3; do head -c 300000 /dev/urandom > '{src}/changing'; \
                 \"$CAIRN\" backup --quiet --host {host} '{src}'; done",
                src = src.display()
            );
            repo.shell(&script)
                .env("CAIRN_CACHE_DIR", repo.dir.path().join(format!("cache-{host}")))
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect::<Vec<_>>();
    // The fourth process: forget + prune, over and over, until the backups are done.
    let pruner = repo
        .shell(
            "for i in 1 2 3 4 5 6; do \"$CAIRN\" forget --quiet --keep-last 1 --group-by host --prune \
             || echo \"prune $i: exit $?\" >&2; done",
        )
        .env("CAIRN_CACHE_DIR", repo.dir.path().join("cache-pruner"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    for c in backup_runs {
        let out = c.wait_with_output().expect("wait");
        assert!(out.status.success(), "a backup failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let pruned = pruner.wait_with_output().expect("wait");
    // A prune that found another prune's lock exits 11 and tries again; any other failure is one.
    let prune_errors = String::from_utf8_lossy(&pruned.stderr);
    for l in prune_errors.lines().filter(|l| l.starts_with("prune ")) {
        assert!(l.ends_with("exit 11"), "a prune failed: {prune_errors}");
    }

    // Afterwards: every remaining snapshot restores, and the whole repository reads back clean.
    let out = repo.cairn().args(["check", "--read-data"]).output().expect("runs");
    assert!(out.status.success(), "check failed: {}", String::from_utf8_lossy(&out.stderr));
    let snaps = repo.json(&["snapshots"]);
    let snaps = snaps.as_array().expect("array");
    assert!(!snaps.is_empty());
    for s in snaps {
        let id = s["id"].as_str().expect("id");
        let target = repo.scratch(&format!("restore-{id}"));
        let out = repo.cairn().args(["restore", id, "--target"]).arg(&target).output().expect("runs");
        assert!(out.status.success(), "restore of {id} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    // The last snapshot of each host is its final state, byte for byte.
    for (host, src) in &hosts {
        let target = repo.scratch(&format!("latest-{host}"));
        repo.cairn().args(["restore", "latest", "--host", host, "--target"]).arg(&target).assert().success();
        assert_same_tree(src, &restored_path(&target, src));
    }
}
