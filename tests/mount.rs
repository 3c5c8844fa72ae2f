//! `cairn mount` end to end: a real FUSE mount of a repository with several snapshots, read with
//! ordinary file system calls: the layout, every file compared with its source, reads at a few
//! thousand random offsets, and a clean unmount on SIGTERM.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::TestRepo;
use crate::support::data::{Rng, write_random_file};
use crate::support::fstree::restored_path;

/// A running `cairn mount`; on drop (a failed test) the process is killed and the mount detached.
pub(crate) struct Mount {
    child: std::process::Child,
    at: PathBuf,
}

impl Mount {
    pub(crate) fn start(repo: &TestRepo, at: &Path) -> Self {
        Self::start_with(repo, at, &[])
    }

    /// `cairn mount` with more options (filters, refresh interval).
    pub(crate) fn start_with(repo: &TestRepo, at: &Path, args: &[&str]) -> Self {
        assert!(Path::new("/dev/fuse").exists(), "/dev/fuse is missing: the mount tests need FUSE");
        let child = repo.cairn_std().arg("mount").arg(at).arg("--quiet").args(args).spawn().expect("start cairn mount");
        let mount = Mount { child, at: at.to_path_buf() };
        // Readiness, not timing: wait until the mount answers (or give up after a minute).
        let deadline = Instant::now() + Duration::from_secs(60);
        while !at.join("snapshots").exists() {
            assert!(Instant::now() < deadline, "the mount did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        mount
    }

    pub(crate) fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id() as i32)
    }

    pub(crate) fn child(&mut self) -> &mut std::process::Child {
        &mut self.child
    }

    fn is_mounted(at: &Path) -> bool {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        let at = at.to_str().expect("UTF-8");
        mounts.lines().any(|l| l.split(' ').nth(4) == Some(at))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if Mount::is_mounted(&self.at) {
            let _ = std::process::Command::new("umount").arg("-l").arg(&self.at).status();
        }
    }
}

fn backup(repo: &TestRepo, src: &Path, time: &str, tag: &str) -> String {
    let v = repo.json(&["backup", src.to_str().expect("UTF-8"), "--time", time, "--tag", tag, "--host", "db1"]);
    v["snapshot_id"].as_str().expect("snapshot id").to_owned()
}

#[test]
fn mount_serves_every_snapshot_in_restics_layout_and_reads_at_any_offset() {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    std::fs::create_dir_all(src.join("dir/sub")).expect("folders");
    write_random_file(&src.join("dump.bin"), 1, 6_000_000);
    std::fs::write(src.join("dir/small.txt"), b"small").expect("write");
    std::fs::write(src.join("dir/sub/empty"), b"").expect("write");
    std::os::unix::fs::symlink("../dump.bin", src.join("dir/link")).expect("symlink");
    let first = backup(&repo, &src, "2026-11-01 10:00:00", "hourly");
    let first_dump = std::fs::read(src.join("dump.bin")).expect("read");
    write_random_file(&src.join("dump.bin"), 2, 5_000_123);
    std::fs::write(src.join("dir/small.txt"), b"changed").expect("write");
    let second = backup(&repo, &src, "2026-11-01 11:00:00", "daily");

    let at = repo.scratch("mnt");
    let mount = Mount::start(&repo, &at);
    let names = |p: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(p)
            .expect("list")
            .map(|e| e.expect("entry").file_name().into_string().expect("UTF-8"))
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&at), ["hosts", "ids", "snapshots", "tags"]);
    let times = names(&at.join("snapshots"));
    assert_eq!(times.len(), 3, "two snapshots and latest: {times:?}");
    assert_eq!(times[2], "latest");
    assert_eq!(std::fs::read_link(at.join("snapshots/latest")).expect("latest"), Path::new(&times[1]));
    let mut ids = vec![first[..8].to_owned(), second[..8].to_owned()];
    ids.sort();
    assert_eq!(names(&at.join("ids")), ids, "listed in name order");
    assert_eq!(names(&at.join("hosts")), ["db1"]);
    assert_eq!(names(&at.join("tags")), ["daily", "hourly"]);
    assert_eq!(names(&at.join("tags/hourly")), [times[0].clone(), "latest".to_owned()]);

    // The newest snapshot is the source as it is now: every entry, byte for byte.
    let latest = restored_path(&at.join("snapshots/latest"), &src);
    assert_eq!(std::fs::read(latest.join("dir/small.txt")).expect("small"), b"changed");
    assert_eq!(std::fs::read(latest.join("dir/sub/empty")).expect("empty"), b"");
    assert_eq!(std::fs::read_link(latest.join("dir/link")).expect("link"), Path::new("../dump.bin"));
    let meta = std::fs::metadata(latest.join("dump.bin")).expect("stat");
    assert_eq!(meta.len(), 5_000_123);
    assert_eq!(meta.mtime(), std::fs::metadata(src.join("dump.bin")).expect("stat").mtime());
    let now_dump = std::fs::read(src.join("dump.bin")).expect("read");
    assert!(std::fs::read(latest.join("dump.bin")).expect("read through the mount") == now_dump);
    // The older one, through ids/, is the source as it was.
    let older = restored_path(&at.join("ids").join(&first[..8]), &src);
    assert_eq!(std::fs::read(older.join("dir/small.txt")).expect("small"), b"small");

    // Reads at random offsets and lengths, crossing chunk boundaries, against the source bytes.
    let mut f = std::fs::File::open(older.join("dump.bin")).expect("open");
    let mut rng = Rng::new(42);
    let mut buf = vec![0u8; 70_000];
    for _ in 0..3000 {
        let offset = rng.below(first_dump.len() as u64 + 1000);
        let len = 1 + rng.below(buf.len() as u64) as usize;
        f.seek(SeekFrom::Start(offset)).expect("seek");
        let mut got = 0;
        while got < len {
            let n = f.read(&mut buf[got..len]).expect("read");
            if n == 0 {
                break;
            }
            got += n;
        }
        let start = (offset as usize).min(first_dump.len());
        let end = (offset as usize + len).min(first_dump.len());
        assert!(buf[..got] == first_dump[start..end], "bytes at {offset}+{len} differ");
    }
    drop(f);

    // SIGTERM unmounts cleanly.
    let mut mount = mount;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(mount.child.id() as i32), nix::sys::signal::Signal::SIGTERM)
        .expect("signal");
    let status = mount.child.wait().expect("wait");
    assert!(status.success(), "cairn mount ended with {status}");
    assert!(!Mount::is_mounted(&at), "still mounted after SIGTERM");
    assert!(names(&at).is_empty());
}

/// Finds the file of a pack below the repository's data folder.
pub(crate) fn pack_file(repo: &TestRepo, pack: &str) -> PathBuf {
    let mut found = None;
    crate::support::fstree::walk(&repo.repo_path().join("data"), &mut |p, _| {
        if p.file_name().and_then(|n| n.to_str()) == Some(pack) {
            found = Some(p.to_path_buf());
        }
    });
    found.unwrap_or_else(|| panic!("pack {pack} not found"))
}

#[test]
fn mount_gives_eio_for_a_damaged_chunk_only_and_ends_when_unmounted_from_outside() {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    write_random_file(&src.join("damaged.bin"), 3, 100_000);
    std::fs::write(src.join("fine.txt"), b"still readable").expect("write");
    backup(&repo, &src, "2026-11-01 10:00:00", "t");

    // Flip a byte inside the one 100 000-byte data blob.
    let index_dir = repo.repo_path().join("index");
    let index = std::fs::read_dir(&index_dir).expect("index").next().expect("one index file").expect("entry");
    let v = repo.json(&["cat", "index", index.file_name().to_str().expect("name")]);
    let (pack, offset) = v["index"]["packs"]
        .as_array()
        .expect("packs")
        .iter()
        .find_map(|p| {
            p["blobs"]
                .as_array()
                .expect("blobs")
                .iter()
                .find(|b| b["plain_len"] == 100_000)
                .map(|b| (p["id"].as_str().expect("pack id").to_owned(), b["offset"].as_u64().expect("offset")))
        })
        .expect("the blob of damaged.bin");
    let path = pack_file(&repo, &pack);
    let mut perms = std::fs::metadata(&path).expect("stat").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
    std::fs::set_permissions(&path, perms).expect("chmod");
    let mut bytes = std::fs::read(&path).expect("read pack");
    bytes[offset as usize + 500] ^= 0xff;
    std::fs::write(&path, bytes).expect("write pack");

    let at = repo.scratch("mnt");
    let mut mount = Mount::start(&repo, &at);
    let snap = restored_path(&at.join("snapshots/latest"), &src);
    assert_eq!(std::fs::read(snap.join("fine.txt")).expect("the undamaged file reads"), b"still readable");
    let err = std::fs::read(snap.join("damaged.bin")).expect_err("the damaged file must not read");
    assert_eq!(err.raw_os_error(), Some(nix::libc::EIO), "{err}");

    // An unmount from outside ends the process, successfully.
    let status = std::process::Command::new("umount").arg(&at).status().expect("umount");
    assert!(status.success());
    let status = mount.child.wait().expect("wait");
    assert!(status.success(), "cairn mount ended with {status}");
}
