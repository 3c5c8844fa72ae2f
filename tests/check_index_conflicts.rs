//! `check` on index files that list one pack or one blob more than once: a pack listed again with
//! the same entries in another order is harmless; a pack listed with different entries, or a blob
//! indexed as another kind or length in another pack, is damage named by pack and blob. (Check keeps
//! its view of the index in scratch files on disk; these listings go through the digests of pack
//! entries and the merge that sorts the copies by id.)

use cairn_engine::Repository;
use cairn_format::PackId;
use cairn_format::blob::BlobKind;
use cairn_format::index::{IndexFile, IndexedPack};

use crate::damage::{Fixture, check, run, stdout};
use crate::support::TestRepo;

fn open(t: &TestRepo) -> Repository {
    t.open_engine()
}

/// A data pack of the repository with at least two blobs, as its index file lists it.
fn data_pack(repo: &Repository) -> IndexedPack {
    for id in repo.list_index_ids().expect("list index") {
        let file = repo.load_index(id).expect("load index");
        if let Some(p) = file.packs.into_iter().find(|p| p.blobs.len() >= 2 && p.blobs[0].kind == BlobKind::Data) {
            return p;
        }
    }
    panic!("no data pack with two blobs");
}

fn save(repo: &Repository, packs: Vec<IndexedPack>) {
    repo.save_index(&IndexFile { supersedes: Vec::new(), packs, condemned: Vec::new() }).expect("save index");
}

/// The findings of `check --json` with `code`, as (code, id, message).
fn findings(t: &TestRepo, list: &str) -> Vec<(String, String, String)> {
    let o = run(t, &["check", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON report");
    report[list]
        .as_array()
        .expect("list")
        .iter()
        .map(|f| {
            let s = |k: &str| f[k].as_str().unwrap_or_default().to_owned();
            (s("code"), s("id"), s("message"))
        })
        .collect()
}

#[test]
fn a_pack_listed_again_in_another_order_is_no_conflict() {
    let f = Fixture::new();
    let repo = open(&f.repo);
    let mut pack = data_pack(&repo);
    pack.blobs.reverse();
    save(&repo, vec![pack]);
    for args in [&[][..], &["--read-data"]] {
        let out = check(&f.repo, args, 0);
        assert!(!out.contains("damage:") && !out.contains("notice:"), "{out}");
    }
}

#[test]
fn index_files_that_disagree_about_a_pack_or_a_blob_are_damage() {
    let f = Fixture::new();
    let repo = open(&f.repo);
    let pack = data_pack(&repo);
    let mut changed = pack.clone();
    changed.blobs[0].plain_len += 1;
    // A pack no other index file names, holding a copy of one of `pack`'s blobs as a tree blob.
    let mut as_tree = pack.blobs[1];
    as_tree.kind = BlobKind::Tree;
    let other = IndexedPack { id: PackId::from_bytes([7; 32]), len: pack.len, blobs: vec![as_tree] };
    save(&repo, vec![changed, other.clone()]);

    let damage = findings(&f.repo, "damage");
    let codes: Vec<&str> = damage.iter().map(|d| d.0.as_str()).collect();
    assert!(codes.contains(&"pack_index_conflict"), "{damage:?}");
    assert!(damage.iter().any(|d| d.0 == "pack_index_conflict" && d.1 == pack.id.to_hex()), "{damage:?}");
    let blob = damage.iter().find(|d| d.0 == "blob_index_conflict").expect("a blob conflict");
    assert_eq!(blob.1, as_tree.id.to_hex());
    for part in ["as data of", "as tree of", &pack.id.short(), &other.id.short()] {
        assert!(blob.2.contains(part), "{blob:?} lacks {part}");
    }
    assert!(damage.iter().any(|d| d.0 == "pack_missing" && d.1 == other.id.to_hex()), "{damage:?}");
    let notices = findings(&f.repo, "notices");
    let dup = notices.iter().find(|n| n.0 == "blobs_duplicated").expect("the duplicate is noted");
    assert!(dup.2.starts_with("1 blobs are stored more than once"), "{dup:?}");
    // Both snapshots still restore through their usable copies: no snapshot is named.
    let out = check(&f.repo, &[], 4);
    assert!(!out.contains(f.a.short()) && !out.contains(f.b.short()), "{out}");
}
