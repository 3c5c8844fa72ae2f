//! The shortest end-to-end path: init, back up a folder, restore it identical.

use crate::support::TestRepo;

#[test]
fn backup_then_restore_is_identical() {
    let repo = TestRepo::new();
    let src = repo.scratch("src");
    std::fs::write(src.join("a.txt"), b"hello cairn\n").expect("write");
    std::fs::create_dir(src.join("sub")).expect("mkdir");
    std::fs::write(src.join("sub/b.bin"), vec![7u8; 100_000]).expect("write");
    repo.cairn().arg("backup").arg(&src).assert().success();
    let target = repo.scratch("out");
    repo.cairn().args(["restore", "latest", "--verify", "--target"]).arg(&target).assert().success();
    let restored = target.join(src.strip_prefix("/").expect("absolute"));
    assert_eq!(std::fs::read(restored.join("a.txt")).expect("read"), b"hello cairn\n");
    assert_eq!(std::fs::read(restored.join("sub/b.bin")).expect("read"), vec![7u8; 100_000]);
}
