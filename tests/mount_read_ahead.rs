//! `cairn mount` under sequential readers, which get the chunks ahead of them opened in parallel:
//! whatever the cache size the bytes are the source's, a damaged chunk costs EIO on its own bytes
//! (and the kernel's read window around it) and never wrong bytes, and a folder listed with
//! `ls -l` (attributes answered with the listing) shows every entry's stored metadata.

use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use crate::mount::Mount;
use crate::support::TestRepo;
use crate::support::data::write_random_file;
use crate::support::fstree::restored_path;

fn backup(repo: &TestRepo, src: &Path) {
    repo.json(&["backup", src.to_str().expect("UTF-8"), "--time", "2026-11-01 10:00:00"]);
}

/// Reads `file` front to back in `piece`-byte reads; each read's bytes, or its error.
fn read_in_pieces(file: &Path, size: usize, piece: usize) -> Vec<(usize, std::io::Result<Vec<u8>>)> {
    let f = std::fs::File::open(file).expect("open on the mount");
    let mut out = Vec::new();
    let mut at = 0;
    while at < size {
        let mut buf = vec![0u8; piece.min(size - at)];
        let read = f.read_exact_at(&mut buf, at as u64).map(|()| buf);
        out.push((at, read));
        at += piece;
    }
    out
}

#[test]
fn sequential_reads_return_the_source_bytes_with_the_default_and_a_tiny_chunk_cache() {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    write_random_file(&src.join("big.bin"), 11, 20_000_000);
    let bytes = std::fs::read(src.join("big.bin")).expect("read source");
    backup(&repo, &src);
    // Two chunks of cache leave one chunk of read-ahead; 32 (the default) leave a window of 8.
    for args in [&["--blob-cache", "2"][..], &[]] {
        let at = repo.scratch(&format!("mnt{}", args.len()));
        let mount = Mount::start_with(&repo, &at, args);
        let file = restored_path(&at.join("snapshots/latest"), &src).join("big.bin");
        for (offset, read) in read_in_pieces(&file, bytes.len(), 128 * 1024) {
            let got = read.unwrap_or_else(|e| panic!("read at {offset} with {args:?}: {e}"));
            assert!(got == bytes[offset..offset + got.len()], "wrong bytes at {offset} with {args:?}");
        }
        drop(mount);
    }
}

#[test]
fn a_damaged_chunk_in_the_middle_of_a_sequential_read_fails_only_around_itself() {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    write_random_file(&src.join("big.bin"), 12, 12_000_000);
    let bytes = std::fs::read(src.join("big.bin")).expect("read source");
    backup(&repo, &src);

    // Flip a byte in the data blob stored in the middle of the biggest pack: some chunk of the file.
    let index = std::fs::read_dir(repo.repo_path().join("index")).expect("index").next().expect("index file");
    let v = repo.json(&["cat", "index", index.expect("entry").file_name().to_str().expect("name")]);
    let pack = v["index"]["packs"]
        .as_array()
        .expect("packs")
        .iter()
        .filter(|p| p["blobs"].as_array().expect("blobs").iter().all(|b| b["kind"] != "tree"))
        .max_by_key(|p| p["blobs"].as_array().expect("blobs").len())
        .expect("a data pack");
    let blobs = pack["blobs"].as_array().expect("blobs");
    let middle = &blobs[blobs.len() / 2];
    let offset = middle["offset"].as_u64().expect("offset") as usize;
    let path = crate::mount::pack_file(&repo, pack["id"].as_str().expect("pack id"));
    let mut perms = std::fs::metadata(&path).expect("stat").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
    std::fs::set_permissions(&path, perms).expect("chmod");
    let mut packed = std::fs::read(&path).expect("read pack");
    packed[offset + 100] ^= 0xff;
    std::fs::write(&path, packed).expect("write pack");

    let at = repo.scratch("mnt");
    let _mount = Mount::start(&repo, &at);
    let file = restored_path(&at.join("snapshots/latest"), &src).join("big.bin");
    let piece = 64 * 1024;
    let mut failed = Vec::new();
    for (offset, read) in read_in_pieces(&file, bytes.len(), piece) {
        match read {
            Ok(got) => assert!(got == bytes[offset..offset + got.len()], "wrong bytes at {offset}"),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(nix::libc::EIO), "read at {offset}: {e}");
                failed.push(offset);
            }
        }
    }
    assert!(!failed.is_empty(), "the damaged chunk must not read");
    // One run of failed reads: the damaged chunk (at most 1 MiB) and the kernel's read requests
    // that overlap it; everything before and after it reads.
    let (first, last) = (failed[0], *failed.last().expect("one"));
    assert_eq!(failed.len(), (last - first) / piece + 1, "failures are not contiguous: {failed:?}");
    assert!(last + piece - first <= 4 << 20, "{} bytes failed around one chunk", last + piece - first);
}

#[test]
fn ls_l_of_a_mounted_folder_shows_every_entrys_stored_metadata() {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    for d in 0..3 {
        let dir = src.join(format!("d{d}"));
        std::fs::create_dir_all(&dir).expect("folder");
        for f in 0..150 {
            let path = dir.join(format!("d{d}-file-with-a-longer-name-{f:04}.txt"));
            std::fs::write(&path, vec![b'x'; f * 7 + d]).expect("write");
            let mut perms = std::fs::metadata(&path).expect("stat").permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600 + (f as u32 % 8) * 0o10);
            std::fs::set_permissions(&path, perms).expect("chmod");
        }
        std::os::unix::fs::symlink(format!("d{d}-file-with-a-longer-name-0001.txt"), dir.join(format!("link{d}")))
            .expect("symlink");
    }
    backup(&repo, &src);

    let at = repo.scratch("mnt");
    let _mount = Mount::start(&repo, &at);
    let mounted = restored_path(&at.join("snapshots/latest"), &src);
    let ls = std::process::Command::new("ls").arg("-lRn").arg("--time-style=+%s").arg(&mounted).output().expect("ls");
    assert!(ls.status.success(), "ls -lR: {}", String::from_utf8_lossy(&ls.stderr));
    let listed = String::from_utf8(ls.stdout).expect("UTF-8");
    let mut seen = 0;
    for d in 0..3 {
        let dir = src.join(format!("d{d}"));
        for entry in std::fs::read_dir(&dir).expect("list source") {
            let entry = entry.expect("entry");
            let name = entry.file_name().into_string().expect("UTF-8");
            let source = std::fs::symlink_metadata(entry.path()).expect("lstat source");
            let on_mount = std::fs::symlink_metadata(mounted.join(format!("d{d}")).join(&name)).expect("lstat mount");
            assert_eq!(
                (on_mount.mode(), on_mount.size(), on_mount.mtime(), on_mount.uid(), on_mount.nlink()),
                (source.mode(), source.size(), source.mtime(), source.uid(), source.nlink()),
                "{name}"
            );
            // The listing's own line for the entry carries the same size and time.
            let line = listed
                .lines()
                .find(|l| l.ends_with(&format!(" {name}")) || l.contains(&format!(" {name} -> ")))
                .unwrap_or_else(|| panic!("{name} is not in ls -lR"));
            assert!(line.contains(&format!(" {} {} ", source.size(), source.mtime())), "{line}");
            seen += 1;
        }
    }
    assert_eq!(seen, 3 * 151);
}
