//! What survives a machine crash, not only a killed process: every object is written under a
//! temporary name, `fsync`ed, renamed into place, and its folder `fsync`ed before the next object
//! (an index file naming a pack, a snapshot naming trees) is published. A crash of the machine
//! cannot be staged here, so the test watches the system calls of a real backup with strace and
//! checks that order.

use std::path::{Path, PathBuf};

use crate::support::TestRepo;
use crate::support::data::write_random_file;

/// One system call of interest, in the order strace saw them complete or start.
#[derive(Debug)]
enum Call {
    /// `rename(from, to)`: a new name published.
    Rename(PathBuf),
    /// `fsync(fd)` of the file or folder strace names for the descriptor.
    Fsync(PathBuf),
}

/// The path strace shows for the descriptor of `fsync(FD</path>)` in `line`.
fn fsynced_path(line: &str) -> Option<PathBuf> {
    let rest = &line[line.find("fsync(")? + "fsync(".len()..];
    let bracketed = &rest[..rest.find('>')?];
    Some(PathBuf::from(bracketed.split_once('<')?.1))
}

fn parse(log: &str) -> Vec<Call> {
    let mut calls = Vec::new();
    for line in log.lines() {
        if line.contains("rename(") {
            // rename("FROM", "TO") = 0
            let Some(to) = line.split("\", \"").nth(1) else { continue };
            calls.push(Call::Rename(PathBuf::from(&to[..to.find('"').unwrap_or(to.len())])));
        } else if let Some(path) = fsynced_path(line) {
            calls.push(Call::Fsync(path));
        }
    }
    calls
}

#[test]
fn every_published_name_is_synced_with_its_folder_before_the_next_object_names_it() {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    // Two packs' worth of incompressible data and a few small files: packs, index, snapshot.
    write_random_file(&src.join("big.bin"), 0xd0_0001, 40 << 20);
    for i in 0..5 {
        std::fs::write(src.join(format!("small-{i}.txt")), format!("file {i}\n")).expect("write");
    }
    let log_path = repo.dir.path().join("strace.log");
    let mut cmd = repo.command("strace");
    cmd.args(["-f", "-qq", "-y", "-e", "trace=rename,renameat,renameat2,fsync,fdatasync", "-o"])
        .arg(&log_path)
        .arg(crate::support::cairn_bin())
        .args(["-q", "backup"])
        .arg(&src);
    let status = cmd.status().expect("runs strace (apt-get install strace)");
    assert!(status.success(), "traced backup failed: {status}");
    let log = std::fs::read_to_string(&log_path).expect("strace log");
    let calls = parse(&log);

    let repo_root = repo.repo_path().canonicalize().expect("repository path");
    let published: Vec<(usize, &PathBuf)> = calls
        .iter()
        .enumerate()
        .filter_map(|(i, c)| match c {
            Call::Rename(to) if to.starts_with(&repo_root) && !to.starts_with(repo_root.join("locks")) => Some((i, to)),
            _ => None,
        })
        .collect();
    let kinds = |dir: &str| published.iter().filter(|(_, p)| p.starts_with(repo_root.join(dir))).count();
    assert!(kinds("data") >= 3, "expected two data packs and a tree pack:\n{log}");
    assert!(kinds("index") >= 1 && kinds("snapshots") == 1, "expected index files and one snapshot:\n{log}");

    // Each rename is followed by an fsync of its folder before the next object is published.
    for (n, (i, to)) in published.iter().enumerate() {
        let folder: &Path = to.parent().expect("a folder");
        let next = published.get(n + 1).map_or(calls.len(), |(j, _)| *j);
        let synced = calls[*i + 1..next].iter().any(|c| matches!(c, Call::Fsync(p) if p == folder));
        assert!(
            synced,
            "{} was not made durable (no fsync of {}) before the next object:\n{log}",
            to.display(),
            folder.display()
        );
    }
    // And the file itself was synced under its temporary name before it was renamed.
    let fsynced_files =
        calls.iter().filter(|c| matches!(c, Call::Fsync(p) if p.starts_with(repo_root.join("tmp")))).count();
    assert!(
        fsynced_files >= published.len(),
        "{fsynced_files} temporary files synced for {} published:\n{log}",
        published.len()
    );
}
