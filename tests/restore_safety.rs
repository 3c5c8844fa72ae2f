//! Restore never writes (or reads) outside its target, whatever the target already holds, and never
//! writes more than a file's stored content: hard links and symlinks already in the target are
//! replaced or refused, never followed; a size claim larger or smaller than the content is reported,
//! not padded; every kind of entry, sockets included, is recreated or reported.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Output;

use cairn_format::tree::NodeKind;

use crate::support::TestRepo;
use crate::support::craft::{Crafter, dir, file, node, symlink};
use crate::support::fstree::fingerprint;

fn restore(t: &TestRepo, target: &Path, extra: &[&str]) -> Output {
    t.cairn().args(["restore", "latest"]).args(extra).arg("--target").arg(target).output().expect("runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn write(p: &Path, bytes: &[u8]) {
    std::fs::write(p, bytes).expect("write");
}

fn hard_link(original: &Path, link: &Path) {
    std::fs::hard_link(original, link).expect("hard link");
}

fn symlink_at(target: &Path, link: &Path) {
    std::os::unix::fs::symlink(target, link).expect("symlink");
}

/// A hard-linked pair (`links` 2, one inode) as backup records it.
fn linked(name: &[u8], content: Vec<cairn_format::BlobId>, size: u64, inode: u64) -> cairn_format::tree::Node {
    cairn_format::tree::Node { links: 2, inode, device: 1, ..file(name, content, size) }
}

#[test]
fn restore_wrote_through_a_hard_link_in_the_target_to_a_file_outside_it() {
    let t = TestRepo::new();
    let mut c = Crafter::open(&t);
    let content = c.data(b"restored content");
    let root = c.tree(vec![file(b"f", vec![content], 16)]);
    c.snapshot(root);

    let outside = t.scratch("outside");
    write(&outside.join("secret"), b"outside, must not change");
    let target = t.scratch("target");
    hard_link(&outside.join("secret"), &target.join("f"));
    let before = fingerprint(&outside);

    let out = restore(&t, &target, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fingerprint(&outside), before, "restore changed a file outside its target");
    assert_eq!(std::fs::read(target.join("f")).expect("read"), b"restored content");
}

#[test]
fn restore_replaces_every_kind_of_entry_without_following_what_stood_there() {
    let t = TestRepo::new();
    let mut c = Crafter::open(&t);
    let content = c.data(b"file content");
    let inner = c.data(b"inner content");
    let shared = c.data(b"shared by two names");
    let sub = c.tree(vec![file(b"inner", vec![inner], 13)]);
    let root = c.tree(vec![
        file(b"file", vec![content], 12),
        symlink(b"link", b"file"),
        node(b"fifo", NodeKind::Fifo),
        node(b"socket", NodeKind::Socket),
        linked(b"h1", vec![shared], 19, 42),
        linked(b"h2", vec![shared], 19, 42),
        dir(b"dir", sub),
    ]);
    c.snapshot(root);

    let names = ["file", "link", "fifo", "socket", "h1", "h2", "dir/inner"];
    // Once with hard links to outside files at every path, once with symlinks to them.
    for use_symlinks in [false, true] {
        let outside = t.scratch(&format!("outside-{use_symlinks}"));
        let target = t.scratch(&format!("target-{use_symlinks}"));
        std::fs::create_dir(target.join("dir")).expect("mkdir");
        for (i, name) in names.iter().enumerate() {
            let victim = outside.join(format!("victim{i}"));
            write(&victim, format!("outside file {i}").as_bytes());
            if use_symlinks {
                symlink_at(&victim, &target.join(name));
            } else {
                hard_link(&victim, &target.join(name));
            }
        }
        let before = fingerprint(&outside);

        let out = restore(&t, &target, &[]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(
            fingerprint(&outside),
            before,
            "restore changed a file outside its target (symlinks: {use_symlinks})"
        );
        let kind = |n: &str| std::fs::symlink_metadata(target.join(n)).expect("restored").file_type();
        assert_eq!(std::fs::read(target.join("file")).expect("read"), b"file content");
        assert_eq!(std::fs::read(target.join("dir/inner")).expect("read"), b"inner content");
        assert_eq!(std::fs::read_link(target.join("link")).expect("readlink"), Path::new("file"));
        assert!(kind("fifo").is_fifo());
        assert!(kind("socket").is_socket());
        let (h1, h2) = (target.join("h1"), target.join("h2"));
        assert_eq!(std::fs::read(&h2).expect("read"), b"shared by two names");
        assert_eq!(
            std::fs::metadata(&h1).expect("stat").ino(),
            std::fs::metadata(&h2).expect("stat").ino(),
            "h1 and h2 are one file again"
        );
    }
}

#[test]
fn restore_followed_a_symlink_in_the_target_where_the_snapshot_has_a_folder() {
    let t = TestRepo::new();
    let mut c = Crafter::open(&t);
    let inner = c.data(b"must stay inside");
    let other = c.data(b"other entry");
    let sub = c.tree(vec![file(b"inner", vec![inner], 16)]);
    // "dir" sorts before "file": refusing the folder must not stop the rest of the restore.
    let root = c.tree(vec![dir(b"dir", sub), file(b"file", vec![other], 11)]);
    c.snapshot(root);

    let outside = t.scratch("outside");
    let target = t.scratch("target");
    symlink_at(&outside, &target.join("dir"));
    let before = fingerprint(&outside);

    let out = restore(&t, &target, &[]);
    assert!(!out.status.success(), "a refused folder is an error");
    assert!(stderr(&out).contains("dir"), "the message names the folder: {}", stderr(&out));
    assert_eq!(fingerprint(&outside), before, "restore wrote through a symlink in its target");
    assert_eq!(std::fs::read(target.join("file")).expect("the other entry is restored"), b"other entry");
}

#[test]
fn restore_padded_a_file_with_zeros_up_to_its_recorded_size() {
    let t = TestRepo::new();
    let mut c = Crafter::open(&t);
    let hello = c.data(b"hello");
    let ten = c.data(b"0123456789");
    let root = c.tree(vec![
        // A file that shrank while it was read: 300 MB recorded, 5 bytes stored.
        file(b"shrunk", vec![hello], 300 << 20),
        // A file that grew while it was read: 5 bytes recorded, 10 stored.
        file(b"grown", vec![ten], 5),
        // A "sparse" 10 GB claim with no content at all.
        file(b"claim", Vec::new(), 10 << 30),
        file(b"ok", vec![hello], 5),
    ]);
    c.snapshot(root);

    let target = t.scratch("target");
    let out = restore(&t, &target, &[]);
    assert!(!out.status.success(), "a size that differs from the content is reported");
    let len = |n: &str| std::fs::symlink_metadata(target.join(n)).expect("restored").len();
    assert_eq!(len("shrunk"), 5, "never extended past the stored content");
    assert_eq!(len("claim"), 0, "never extended past the stored content");
    assert_eq!(len("grown"), 10, "the stored content is written whole");
    assert_eq!(std::fs::read(target.join("ok")).expect("read"), b"hello");
    let err = stderr(&out);
    for name in ["shrunk", "grown", "claim"] {
        assert!(err.lines().any(|l| l.contains(name) && l.contains("size")), "{name} is reported: {err}");
    }
    assert!(!err.contains("/ok"), "an intact file is not reported: {err}");
}

#[test]
fn restore_verify_passed_a_file_whose_recorded_size_its_content_does_not_have() {
    let t = TestRepo::new();
    let mut c = Crafter::open(&t);
    let hello = c.data(b"hello");
    let root = c.tree(vec![file(b"shrunk", vec![hello], 1 << 20), file(b"ok", vec![hello], 5)]);
    c.snapshot(root);

    let target = t.scratch("target");
    let out = restore(&t, &target, &["--verify", "--json"]);
    assert!(!out.status.success(), "--verify must not pass a length mismatch: {}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["verified"], 1, "only the intact file verifies: {report}");
    assert!(report["errors"].to_string().contains("shrunk"), "{report}");
}

#[test]
fn restore_dropped_sockets_silently() {
    let t = TestRepo::new();
    let src = t.scratch("src");
    let listener = std::os::unix::net::UnixListener::bind(src.join("sock")).expect("bind a socket");
    write(&src.join("file"), b"x");
    let out = t.cairn().arg("backup").arg(&src).output().expect("runs");
    assert!(out.status.success(), "{}", stderr(&out));
    drop(listener);

    let target = t.scratch("target");
    let out = t
        .cairn()
        .args(["restore", &format!("latest:{}", src.display()), "--target"])
        .arg(&target)
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", stderr(&out));
    let m = std::fs::symlink_metadata(target.join("sock")).expect("the socket is restored");
    assert!(m.file_type().is_socket(), "restored as a socket, not {:?}", m.file_type());
}
