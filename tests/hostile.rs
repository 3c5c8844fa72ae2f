//! A repository written by an attacker who has the key, restored into a target that already holds
//! symlinks pointing outside it: restore stays inside the target, ends, restores every entry it
//! can and fails each bad one with a message. `ls` and `dump` end too.
//!
//! A tree cycle cannot be written: a tree blob is accepted only when its content hashes (keyed
//! BLAKE3) to its id, so a tree naming itself, directly or through others, would need a hash
//! cycle. The nearest an attacker gets, a subtree id that nothing stores, is covered here.

use std::path::{Path, PathBuf};

use cairn_format::tree::{Node, NodeKind};
use cairn_format::{BlobId, TreeId};

use crate::support::TestRepo;
use crate::support::craft::{Crafter, dir, file, node, symlink};
use crate::support::fstree::fingerprint;

/// A folder entry whose only entry is named `name` once stored (names the encoder refuses).
fn bad_name_dir(c: &mut Crafter, folder: &[u8], name: &[u8], content: BlobId) -> Node {
    let placeholder = b"PLACEHOLDER-NAME";
    let sub = c.tree_with_names(vec![file(placeholder, vec![content], 4)], &[(placeholder, name)]);
    dir(folder, sub)
}

fn linked(name: &[u8], content: Vec<BlobId>, size: u64, inode: u64) -> Node {
    Node { links: 2, inode, device: 1, ..file(name, content, size) }
}

struct Hostile {
    t: TestRepo,
    outside: PathBuf,
    target: PathBuf,
}

/// The hostile snapshot and a target prepared by an attacker who can write in it.
fn hostile() -> Hostile {
    let t = TestRepo::new();
    let outside = t.scratch("outside");
    std::fs::write(outside.join("secret"), b"outside").expect("write");
    std::fs::create_dir(outside.join("folder")).expect("mkdir");
    let secret = outside.join("secret");

    let mut c = Crafter::open(&t);
    let evil = c.data(b"evil");
    let good = c.data(b"good");
    let missing = BlobId::from_bytes([7; 32]);
    let mut nodes = vec![
        file(b"a-good", vec![good], 4),
        bad_name_dir(&mut c, b"bad-dotdot", b"..", evil),
        bad_name_dir(&mut c, b"bad-dot", b".", evil),
        bad_name_dir(&mut c, b"bad-slash", format!("../../../{}", secret.display()).as_bytes(), evil),
        bad_name_dir(&mut c, b"bad-absolute", secret.to_string_lossy().as_bytes(), evil),
        bad_name_dir(&mut c, b"bad-empty", b"", evil),
        dir(b"dangling-tree", TreeId::from_bytes([9; 32])),
        symlink(b"link-absolute", secret.to_string_lossy().as_bytes()),
        symlink(b"link-loop", b"link-loop"),
        symlink(b"link-up", b"../../../../../../../../"),
        file(b"sparse-claim", Vec::new(), 10 << 30),
        file(b"missing-chunk", vec![missing], 4),
        // The first name of a hard-linked pair fails (its chunk is missing); the target already
        // holds a hard link to an outside file there. The second name must not link to it.
        linked(b"pair-1", vec![missing], 4, 77),
        linked(b"pair-2", vec![missing], 4, 77),
        // Where the target holds a symlink to an outside folder.
        dir(b"through-link", c.tree(vec![file(b"planted", vec![evil], 4)])),
        node(b"fifo", NodeKind::Fifo),
    ];
    // Device nodes can only be made by root; as another user they are a warning.
    nodes.push(node(b"null-device", NodeKind::CharDevice { rdev: nix::sys::stat::makedev(1, 3) }));
    let root = c.tree(nodes);
    c.snapshot(root);

    let target = t.scratch("target");
    std::os::unix::fs::symlink(outside.join("folder"), target.join("through-link")).expect("symlink");
    std::fs::hard_link(&secret, target.join("pair-1")).expect("hard link");
    std::fs::hard_link(&secret, target.join("sparse-claim")).expect("hard link");
    Hostile { t, outside, target }
}

#[test]
fn restore_of_a_hostile_snapshot_stays_in_its_target_and_restores_the_rest() {
    let h = hostile();
    let before = fingerprint(&h.outside);
    let out = h.t.cairn().args(["restore", "latest", "--target"]).arg(&h.target).output().expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);

    assert!(!out.status.success(), "bad entries make the exit code non-zero: {err}");
    assert_eq!(fingerprint(&h.outside), before, "restore changed something outside its target: {err}");
    assert_eq!(std::fs::read(h.target.join("a-good")).expect("good entry restored"), b"good");
    for name in [
        "bad-dotdot",
        "bad-dot",
        "bad-slash",
        "bad-absolute",
        "bad-empty",
        "dangling-tree",
        "sparse-claim",
        "missing-chunk",
        "pair-1",
        "pair-2",
        "through-link",
    ] {
        assert!(err.lines().any(|l| l.contains(name)), "{name} is reported: {err}");
    }
    // Symlinks are restored as they were stored (as restic does), never followed.
    let link = |n: &str| std::fs::read_link(h.target.join(n)).expect("symlink restored");
    assert_eq!(link("link-absolute"), h.outside.join("secret"));
    assert_eq!(link("link-loop"), Path::new("link-loop"));
    assert_eq!(link("link-up"), Path::new("../../../../../../../../"));
    assert_eq!(std::fs::symlink_metadata(h.target.join("sparse-claim")).expect("restored").len(), 0);
    assert!(!h.target.join("pair-2").exists(), "no link to what the failed first name left behind");
    // Nothing escaped into the target's parent either.
    let parent: Vec<_> =
        std::fs::read_dir(h.t.dir.path()).expect("list").map(|e| e.expect("entry").file_name()).collect();
    assert!(!parent.iter().any(|n| n == "PLACEHOLDER-NAME"), "{parent:?}");
}

#[test]
fn ls_and_dump_end_on_a_hostile_snapshot() {
    let h = hostile();
    let out = h.t.cairn().args(["ls", "latest"]).output().expect("runs");
    assert!(!out.status.success(), "a tree that cannot be read is an error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("tree"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = h.t.cairn().args(["dump", "latest", "/sparse-claim"]).output().expect("runs");
    assert!(out.stdout.is_empty(), "a size claim is not content");
    let out = h.t.cairn().args(["dump", "latest", "/bad-dotdot/.."]).output().expect("runs");
    assert!(!out.status.success());
}

/// A chain of folders, each holding the next, `depth` deep, with a file at the bottom.
fn nested(c: &mut Crafter, depth: usize) -> TreeId {
    let bottom = c.data(b"bottom");
    let mut tree = c.tree(vec![file(b"f", vec![bottom], 6)]);
    for _ in 0..depth {
        tree = c.tree(vec![dir(b"d", tree)]);
    }
    tree
}

#[test]
fn ls_and_restore_end_on_trees_nested_deeper_than_any_path() {
    let t = TestRepo::new();
    let mut c = Crafter::open(&t);
    let root = nested(&mut c, 5_000);
    c.snapshot(root);

    let out = t.cairn().args(["ls", "latest"]).output().expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code().is_some(), "ls was killed by a signal: {err}");
    assert!(!out.status.success(), "a tree deeper than any path is refused");
    assert!(err.contains("deep"), "{err}");
    let target = t.scratch("target");
    for dry_run in [false, true] {
        let mut restore = t.cairn();
        restore.args(["restore", "latest", "--target"]).arg(&target);
        if dry_run {
            restore.arg("--dry-run");
        }
        let out = restore.output().expect("runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.code().is_some(), "restore was killed by a signal: {err}");
        assert!(!out.status.success(), "the part too deep to restore is reported");
        assert!(err.contains("deep") || err.contains("too long"), "{err}");
    }
}

#[test]
fn mount_of_a_hostile_snapshot_serves_what_it_can_and_fails_the_rest_with_eio() {
    use std::io::Read;
    let h = hostile();
    let before = fingerprint(&h.outside);
    let at = h.t.scratch("mnt");
    let _mount = crate::mount::Mount::start(&h.t, &at);
    let snap = at.join("ids").read_dir().expect("ids").next().expect("one snapshot").expect("entry").path();
    // Every entry is looked at without following symlinks; the walk ends (no entry leads back up).
    let mut seen = Vec::new();
    let mut unreadable = Vec::new();
    let mut stack = vec![snap.clone()];
    while let Some(p) = stack.pop() {
        assert!(seen.len() < 1000, "the walk over the mount does not end: {seen:?}");
        let Ok(m) = std::fs::symlink_metadata(&p) else { continue };
        if m.is_dir() {
            // A folder whose listing cannot be read (a bad name, a tree nothing stores) is EIO,
            // from opening it or from reading it.
            match std::fs::read_dir(&p).and_then(|entries| entries.collect::<std::io::Result<Vec<_>>>()) {
                Ok(entries) => stack.extend(entries.into_iter().map(|e| e.path())),
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(nix::libc::EIO), "{}: {e}", p.display());
                    unreadable.push(p.file_name().expect("name").to_owned());
                }
            }
        }
        seen.push(p);
    }
    for name in ["bad-dotdot", "bad-slash", "dangling-tree"] {
        assert!(unreadable.iter().any(|n| n == name), "{name} is EIO: {unreadable:?}");
    }
    assert_eq!(std::fs::read(snap.join("a-good")).expect("good entry"), b"good");
    // Symlinks are served as stored, for the reader's kernel to resolve in the reader's world.
    assert_eq!(std::fs::read_link(snap.join("link-absolute")).expect("readlink"), h.outside.join("secret"));
    assert_eq!(std::fs::read_link(snap.join("link-loop")).expect("readlink"), Path::new("link-loop"));
    // A chunk that is missing is EIO, never zeros; the 10 GB claim with no chunks is never
    // served as gigabytes of zeros.
    let e = std::fs::read(snap.join("missing-chunk")).expect_err("a missing chunk");
    assert_eq!(e.raw_os_error(), Some(nix::libc::EIO), "{e}");
    let mut claim = Vec::new();
    let read = std::fs::File::open(snap.join("sparse-claim"))
        .and_then(|f| f.take(1 << 20).read_to_end(&mut claim))
        .map(|_| claim.iter().any(|&b| b != 0));
    match read {
        Ok(nonzero) => assert!(claim.is_empty() || nonzero, "the size claim was served as zeros"),
        Err(e) => assert_eq!(e.raw_os_error(), Some(nix::libc::EIO), "{e}"),
    }
    assert_eq!(fingerprint(&h.outside), before, "the mount changed something outside");
}
