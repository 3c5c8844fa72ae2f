//! `cairn mount` while things happen: snapshots written while mounted appear, `--host`/`--tag`/
//! `--path` narrow what is shown, hard links share an inode, `statfs` answers what `df` needs, an
//! unmount with a reader in the middle of a file ends both cleanly, a killed mount process leaves a
//! mountpoint `fusermount3 -u` clears, and ordinary tools (`tar`, `find`, `diff -r`) walk the mount.

use std::io::Read;
use std::os::unix::fs::{DirEntryExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::mount::Mount;
use crate::support::TestRepo;
use crate::support::data::write_random_file;
use crate::support::fstree::restored_path;

/// Sorted names in a folder.
fn names(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(p)
        .unwrap_or_else(|e| panic!("listing {}: {e}", p.display()))
        .map(|e| e.expect("entry").file_name().into_string().expect("UTF-8"))
        .collect();
    v.sort();
    v
}

fn backup(repo: &TestRepo, src: &Path, extra: &[&str]) -> String {
    let mut args = vec!["backup", src.to_str().expect("UTF-8")];
    args.extend_from_slice(extra);
    repo.json(&args)["snapshot_id"].as_str().expect("snapshot id").to_owned()
}

/// Waits up to a minute for `cond`, polling; false if it never held.
fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    cond()
}

/// Waits for a child with a timeout; kills it and fails the test if it does not end.
fn wait_with_timeout(child: &mut std::process::Child, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not end within a minute");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn is_mounted(at: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let at = at.to_str().expect("UTF-8");
    mounts.lines().any(|l| l.split(' ').nth(4) == Some(at))
}

#[test]
fn mount_shows_snapshots_written_while_mounted_without_remounting() {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    std::fs::write(src.join("a.txt"), b"first").expect("write");
    let first = backup(&repo, &src, &["--time", "2026-11-01 10:00:00"]);
    let at = repo.scratch("mnt");
    let _mount = Mount::start_with(&repo, &at, &["--refresh-interval", "1"]);
    assert_eq!(names(&at.join("ids")), [first[..8].to_owned()]);
    let snapshots_ino = std::fs::metadata(at.join("snapshots")).expect("stat").ino();

    std::fs::write(src.join("a.txt"), b"second").expect("write");
    let second = backup(&repo, &src, &["--time", "2026-11-01 11:00:00", "--tag", "new"]);
    // Readiness, not timing: the listing is read again once the refresh interval has passed.
    assert!(
        eventually(|| names(&at.join("ids")).len() == 2),
        "the snapshot written while mounted never appeared: {:?}",
        names(&at.join("ids"))
    );
    let mut both = vec![first[..8].to_owned(), second[..8].to_owned()];
    both.sort();
    assert_eq!(names(&at.join("ids")), both);
    assert_eq!(names(&at.join("snapshots")).len(), 3, "two snapshots and latest");
    assert_eq!(names(&at.join("tags")), ["new"]);
    // Its data is readable (the new index was read), and `latest` moved to it.
    let latest = restored_path(&at.join("snapshots/latest"), &src);
    assert_eq!(std::fs::read(latest.join("a.txt")).expect("read the new snapshot"), b"second");
    let older = restored_path(&at.join("ids").join(&first[..8]), &src);
    assert_eq!(std::fs::read(older.join("a.txt")).expect("read the old snapshot"), b"first");
    // Made-up folders keep their inode numbers across refreshes.
    assert_eq!(std::fs::metadata(at.join("snapshots")).expect("stat").ino(), snapshots_ino);

    // A forgotten snapshot goes away the same way.
    repo.cairn().args(["forget", &first]).assert().success();
    assert!(eventually(|| names(&at.join("ids")).len() == 1), "the forgotten snapshot is still listed");
    assert_eq!(names(&at.join("ids")), [second[..8].to_owned()]);
}

#[test]
fn mount_shows_only_the_snapshots_matching_host_tag_and_path() {
    let repo = TestRepo::new();
    let a = repo.scratch("a");
    let b = repo.scratch("b");
    std::fs::write(a.join("f"), b"a").expect("write");
    std::fs::write(b.join("f"), b"b").expect("write");
    let web_a = backup(&repo, &a, &["--host", "web", "--tag", "daily,keep"]);
    let web_b = backup(&repo, &b, &["--host", "web", "--tag", "daily"]);
    let db_a = backup(&repo, &a, &["--host", "db", "--tag", "hourly"]);
    let shown = |args: &[&str]| {
        let at = repo.scratch(&format!("mnt{}", args.join("_").replace('/', "_")));
        let _mount = Mount::start_with(&repo, &at, args);
        (names(&at.join("ids")), names(&at.join("hosts")), names(&at.join("tags")))
    };
    let short = |s: &str| s[..8].to_owned();
    let mut web = vec![short(&web_a), short(&web_b)];
    web.sort();
    assert_eq!(shown(&["--host", "web"]), (web, vec!["web".to_owned()], vec!["daily".to_owned(), "keep".to_owned()]));
    // `--tag a,b` needs both; repeated `--tag` takes either (restic's rule).
    assert_eq!(shown(&["--tag", "daily,keep"]).0, [short(&web_a)]);
    let mut either = vec![short(&web_a), short(&db_a)];
    either.sort();
    assert_eq!(shown(&["--tag", "keep", "--tag", "hourly"]).0, either);
    let mut of_a = vec![short(&web_a), short(&db_a)];
    of_a.sort();
    assert_eq!(shown(&["--path", a.to_str().expect("UTF-8")]).0, of_a);
    assert_eq!(shown(&["--host", "db", "--path", b.to_str().expect("UTF-8")]).0, Vec::<String>::new());
}

#[test]
fn mount_gives_hard_links_one_inode_keeps_inodes_stable_and_answers_statfs() {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    std::fs::create_dir_all(src.join("sub")).expect("folders");
    std::fs::write(src.join("one"), b"linked").expect("write");
    std::fs::hard_link(src.join("one"), src.join("sub/two")).expect("hard link");
    std::fs::write(src.join("other"), b"linked").expect("write");
    backup(&repo, &src, &[]);
    let at = repo.scratch("mnt");
    let _mount = Mount::start(&repo, &at);
    let snap = restored_path(&at.join("snapshots/latest"), &src);
    let one = std::fs::metadata(snap.join("one")).expect("stat");
    let two = std::fs::metadata(snap.join("sub/two")).expect("stat");
    let other = std::fs::metadata(snap.join("other")).expect("stat");
    assert_eq!(one.ino(), two.ino(), "hard links within a snapshot share an inode");
    assert_eq!(one.nlink(), 2);
    assert_ne!(one.ino(), other.ino());
    assert_eq!(other.nlink(), 1);
    // Looking again (after the kernel forgot, or through readdir) gives the same numbers.
    let listed: Vec<(String, u64)> = std::fs::read_dir(&snap)
        .expect("list")
        .map(|e| {
            let e = e.expect("entry");
            (e.file_name().into_string().expect("UTF-8"), e.ino())
        })
        .collect();
    assert!(listed.contains(&("one".to_owned(), one.ino())), "{listed:?}");
    assert!(listed.contains(&("other".to_owned(), other.ino())), "{listed:?}");
    assert_eq!(std::fs::read(snap.join("sub/two")).expect("read"), b"linked");
    // Another mount of the same repository gives every entry the same number.
    let at2 = repo.scratch("mnt2");
    let _mount2 = Mount::start(&repo, &at2);
    // Looked at in another order than in the first mount: through ids/ first.
    let id = names(&at2.join("ids")).pop().expect("one snapshot");
    assert!(std::fs::read_dir(restored_path(&at2.join("ids").join(id), &src).join("sub")).is_ok());
    let snap2 = restored_path(&at2.join("snapshots/latest"), &src);
    for rel in ["one", "sub/two", "other", "sub"] {
        assert_eq!(
            std::fs::metadata(snap2.join(rel)).expect("stat").ino(),
            std::fs::metadata(snap.join(rel)).expect("stat").ino(),
            "{rel} has the same inode number in both mounts"
        );
    }
    assert_eq!(
        std::fs::metadata(at2.join("snapshots")).expect("stat").ino(),
        std::fs::metadata(at.join("snapshots")).expect("stat").ino()
    );

    // statfs: a block size, the repository's size as used, nothing free; `df` reads it.
    let st = nix::sys::statvfs::statvfs(&at).expect("statvfs");
    assert!(st.block_size() > 0 && st.fragment_size() > 0, "block size");
    assert!(st.blocks() > 0, "the repository's size shows as the file system's size");
    assert_eq!(st.blocks_free(), 0);
    assert!(st.files() > 0);
    assert!(st.name_max() >= 255);
    let df = Command::new("df").arg("-P").arg(&at).output().expect("df");
    assert!(df.status.success(), "df: {}", String::from_utf8_lossy(&df.stderr));
    assert!(String::from_utf8_lossy(&df.stdout).contains("cairn"), "{}", String::from_utf8_lossy(&df.stdout));
}

/// A repository with one large file, mounted; the file's path on the mount and its bytes.
fn mounted_large_file(repo: &TestRepo) -> (Mount, PathBuf, PathBuf, Vec<u8>) {
    let src = repo.scratch("src");
    write_random_file(&src.join("big.bin"), 7, 24_000_000);
    backup(repo, &src, &[]);
    let at = repo.scratch("mnt");
    let mount = Mount::start(repo, &at);
    let file = restored_path(&at.join("snapshots/latest"), &src).join("big.bin");
    let bytes = std::fs::read(src.join("big.bin")).expect("read source");
    (mount, at, file, bytes)
}

#[test]
fn sigterm_with_a_reader_in_the_middle_of_a_file_ends_the_mount_and_the_reader_gets_an_error() {
    let repo = TestRepo::new();
    let (mut mount, at, file, bytes) = mounted_large_file(&repo);
    let mut reader = std::fs::File::open(&file).expect("open on the mount");
    let mut head = vec![0u8; 1 << 20];
    reader.read_exact(&mut head).expect("first MiB");
    assert!(head == bytes[..head.len()]);

    nix::sys::signal::kill(mount.pid(), nix::sys::signal::Signal::SIGTERM).expect("signal");
    let status = wait_with_timeout(mount.child(), "cairn mount after SIGTERM with a file open");
    assert!(status.success(), "cairn mount ended with {status}");
    assert!(!is_mounted(&at), "the busy mount is detached");

    // The reader goes on in a thread: it must get an error or the end of the file, never hang,
    // and what it got before that is the file's bytes.
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let mut rest = Vec::new();
        let result = reader.read_to_end(&mut rest);
        let _ = done.send((result.map_err(|e| e.to_string()), rest));
    });
    let (result, rest) = finished.recv_timeout(Duration::from_secs(60)).expect("the reader hangs after the unmount");
    let from = head.len();
    assert!(rest[..] == bytes[from..from + rest.len()], "the reader got wrong bytes after the unmount");
    if let Ok(n) = result {
        assert_eq!(n, rest.len());
    }
    assert!(names(&at).is_empty(), "the mountpoint is an empty folder again");
}

#[test]
fn lazy_fusermount_with_an_active_reader_lets_it_finish_then_the_mount_process_exits() {
    let repo = TestRepo::new();
    let (mut mount, at, file, bytes) = mounted_large_file(&repo);
    let mut reader = std::fs::File::open(&file).expect("open on the mount");
    let mut head = vec![0u8; 1 << 20];
    reader.read_exact(&mut head).expect("first MiB");

    let status = Command::new("fusermount3").args(["-u", "-z"]).arg(&at).status().expect("fusermount3");
    assert!(status.success());
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).expect("the open file reads on after a lazy unmount");
    head.extend_from_slice(&rest);
    assert!(head == bytes, "the whole file, byte for byte");
    drop(reader);
    let status = wait_with_timeout(mount.child(), "cairn mount after its last file was closed");
    assert!(status.success(), "cairn mount ended with {status}");
}

#[test]
fn a_killed_mount_process_leaves_a_mountpoint_that_fusermount_clears() {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    std::fs::write(src.join("f"), b"x").expect("write");
    backup(&repo, &src, &[]);
    let at = repo.scratch("mnt");
    let mut mount = Mount::start(&repo, &at);
    mount.child().kill().expect("SIGKILL");
    wait_with_timeout(mount.child(), "the killed cairn mount");
    let err = std::fs::read_dir(&at).expect_err("a dead mount cannot be listed");
    assert_eq!(err.raw_os_error(), Some(nix::libc::ENOTCONN), "{err}");
    let out = Command::new("fusermount3").arg("-u").arg(&at).output().expect("fusermount3");
    assert!(out.status.success(), "fusermount3 -u: {}", String::from_utf8_lossy(&out.stderr));
    assert!(!is_mounted(&at));
    assert!(names(&at).is_empty());
    // And the mountpoint can be used again at once.
    let _again = Mount::start(&repo, &at);
    assert_eq!(names(&at), ["hosts", "ids", "snapshots", "tags"]);
}

#[test]
fn tar_find_and_diff_walk_a_mounted_snapshot_as_they_walk_the_source() {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    for d in 0..8 {
        std::fs::create_dir_all(src.join(format!("d{d}/e"))).expect("folders");
        for f in 0..25 {
            write_random_file(&src.join(format!("d{d}/f{f}.bin")), d * 100 + f, 1 + (d * 7919 + f * 104_729) % 300_000);
        }
        std::fs::write(src.join(format!("d{d}/e/small")), format!("{d}")).expect("write");
    }
    std::os::unix::fs::symlink("d0/f0.bin", src.join("link")).expect("symlink");
    backup(&repo, &src, &[]);
    let at = repo.scratch("mnt");
    let _mount = Mount::start(&repo, &at);
    let snap = restored_path(&at.join("snapshots/latest"), &src);

    let diff = Command::new("diff").arg("-r").arg("--no-dereference").arg(&src).arg(&snap).output().expect("diff");
    assert!(diff.status.success(), "diff -r: {}", String::from_utf8_lossy(&diff.stdout));

    let listing = |root: &Path| {
        let out =
            Command::new("find").arg(".").arg("-printf").arg("%y %s %p\n").current_dir(root).output().expect("find");
        assert!(out.status.success(), "find: {}", String::from_utf8_lossy(&out.stderr));
        let mut lines: Vec<String> = String::from_utf8(out.stdout)
            .expect("UTF-8")
            .lines()
            // Folder sizes are the file system's own business.
            .map(
                |l| if l.starts_with("d ") { format!("d {}", l.splitn(3, ' ').nth(2).unwrap_or("")) } else { l.into() },
            )
            .collect();
        lines.sort();
        lines
    };
    assert_eq!(listing(&snap), listing(&src), "find sees the same entries, kinds and sizes");
    // find over the whole mount ends and finds the file once per list it appears in.
    let out = Command::new("find").arg(&at).arg("-name").arg("f7.bin").output().expect("find");
    assert!(out.status.success());
    let hits = String::from_utf8_lossy(&out.stdout).lines().count();
    // Under snapshots/<time>, ids/<id> and hosts/<host>/<time>; `latest` is a symlink find does not follow.
    assert_eq!(hits, 8 * 3, "{}", String::from_utf8_lossy(&out.stdout));

    let tarball = repo.scratch("tar").join("snap.tar");
    let status = Command::new("tar").arg("-cf").arg(&tarball).arg("-C").arg(&snap).arg(".").status().expect("tar");
    assert!(status.success(), "tar -c of the snapshot folder");
    let unpacked = repo.scratch("unpacked");
    let status = Command::new("tar").arg("-xf").arg(&tarball).arg("-C").arg(&unpacked).status().expect("tar -x");
    assert!(status.success());
    let diff = Command::new("diff").arg("-r").arg("--no-dereference").arg(&src).arg(&unpacked).output().expect("diff");
    assert!(diff.status.success(), "the tarball holds the source: {}", String::from_utf8_lossy(&diff.stdout));
}

#[test]
fn a_mount_whose_repository_goes_away_gives_eio_for_reads_and_keeps_its_listings() {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    write_random_file(&src.join("a.bin"), 11, 2_000_000);
    backup(&repo, &src, &[]);
    let at = repo.scratch("mnt");
    let _mount = Mount::start_with(&repo, &at, &["--refresh-interval", "0"]);
    let snap = restored_path(&at.join("snapshots/latest"), &src);
    assert_eq!(std::fs::metadata(snap.join("a.bin")).expect("stat").len(), 2_000_000);

    let moved = repo.dir.path().join("repo-moved");
    std::fs::rename(repo.repo_path(), &moved).expect("take the repository away");
    // Reads run in a thread so that a hang fails the test instead of stalling it.
    let file = snap.join("a.bin");
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(std::fs::read(file).map_err(|e| e.raw_os_error()));
    });
    let got = finished.recv_timeout(Duration::from_secs(60)).expect("the read hangs");
    assert_eq!(got.map(|b| b.len()), Err(Some(nix::libc::EIO)), "a read with the repository gone is EIO");
    // The folders already known stay listable (a failed refresh keeps them).
    assert_eq!(names(&at.join("snapshots")).len(), 2);
    std::fs::rename(&moved, repo.repo_path()).expect("bring it back");
}

/// Every pack file below the repository's data folder.
fn pack_files(repo: &TestRepo) -> std::collections::BTreeSet<PathBuf> {
    let mut packs = std::collections::BTreeSet::new();
    crate::support::fstree::walk(&repo.repo_path().join("data"), &mut |p, m| {
        if m.is_file() {
            packs.insert(p.to_path_buf());
        }
    });
    packs
}

#[test]
fn a_read_stuck_on_storage_does_not_stop_other_requests_and_ends_in_eio_when_storage_gives_up() {
    let repo = TestRepo::new();
    let stuck_src = repo.scratch("stuck");
    write_random_file(&stuck_src.join("a.bin"), 12, 500_000);
    backup(&repo, &stuck_src, &[]);
    let first_packs = pack_files(&repo);
    let fine_src = repo.scratch("fine");
    std::fs::write(fine_src.join("b.txt"), b"still served").expect("write");
    let fine = backup(&repo, &fine_src, &[]);

    let at = repo.scratch("mnt");
    let _mount = Mount::start(&repo, &at);
    let first_id = names(&at.join("ids")).into_iter().find(|id| id != &fine[..8]).expect("the first snapshot");
    let first_dir = at.join("ids").join(first_id);
    let a = restored_path(&first_dir, &stuck_src).join("a.bin");
    assert_eq!(std::fs::metadata(&a).expect("stat").len(), 500_000);
    // The first backup's packs become named pipes: reading one waits until a writer shows up.
    for pack in &first_packs {
        std::fs::remove_file(pack).expect("remove pack");
        nix::unistd::mkfifo(pack, nix::sys::stat::Mode::from_bits_truncate(0o644)).expect("mkfifo");
    }
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(std::fs::read(a).map_err(|e| e.raw_os_error()));
    });
    assert!(finished.recv_timeout(Duration::from_millis(500)).is_err(), "the read of a.bin waits for its pack");

    // Meanwhile the mount answers other requests: listings and a file of the other snapshot.
    let other = at.join("ids").join(&fine[..8]);
    let (done_other, finished_other) = mpsc::channel();
    let b = restored_path(&other, &fine_src).join("b.txt");
    std::thread::spawn(move || {
        let _ = done_other.send(std::fs::read(b).map_err(|e| e.to_string()));
    });
    let got = finished_other.recv_timeout(Duration::from_secs(60)).expect("a stuck read holds up the whole mount");
    assert_eq!(got.expect("read b.txt"), b"still served");

    // Storage gives up (a writer opens each pipe and closes it without writing, as long as someone
    // waits on one): the stuck read ends in EIO.
    let deadline = Instant::now() + Duration::from_secs(60);
    let got = loop {
        for pack in &first_packs {
            let flags = nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_NONBLOCK;
            drop(nix::fcntl::open(pack, flags, nix::sys::stat::Mode::empty()));
        }
        if let Ok(got) = finished.recv_timeout(Duration::from_millis(100)) {
            break got;
        }
        assert!(Instant::now() < deadline, "the stuck read never ended");
    };
    assert_eq!(got.map(|b| b.len()), Err(Some(nix::libc::EIO)));
}
