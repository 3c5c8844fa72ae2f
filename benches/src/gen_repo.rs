//! Writes a large, valid format-v1 repository directly, for the scale benchmark
//! (`benches/scale.sh`, `examples/gen_repo.rs`): N small distinct data blobs in packs of the normal
//! size, index files as a backup writes them, and ten snapshots whose trees reference them, each
//! snapshot owning a distinct tenth of the data blobs (so `forget` of one snapshot and `prune`
//! remove 10%).
//!
//! Nothing is encoded here: blobs are sealed with `seal_blob`, packs built with `PackBuilder`,
//! index files, trees and snapshots encoded by the format crate, and every object written through
//! the engine's backend (temporary name, fsync, rename) into a repository made by `cairn init`, in
//! the order a backup writes them: packs, then the index file naming them, then the snapshot.
//!
//! Each data blob is 64–512 pseudo-random bytes (stored raw: zstd cannot shrink them), made from
//! the seed and the blob's number, so the plaintext is the same on every run; ids depend on the
//! repository's key and nonces are fresh, so the stored bytes differ. Files hold 100 blobs, folders
//! 1000 files; snapshots are dated one hour apart from 2026-01-01 00:00 UTC. The work runs on
//! rayon's pool, one task per index file (two packs of 32768 blobs).

use cairn_engine::Repository;
use cairn_engine::backend::FileType;
use cairn_engine::repository::nonce;
use cairn_format::blob::{BlobKind, SealedBlob, seal_blob};
use cairn_format::crypto::object_name;
use cairn_format::index::{IndexFile, IndexedPack};
use cairn_format::pack::PackBuilder;
use cairn_format::snapshot::{Snapshot, SourceKind, Summary};
use cairn_format::tree::{Node, NodeKind, Tree};
use cairn_format::{BlobId, PackId, SnapshotId, TreeId};
use rayon::prelude::*;

use crate::XorShift;

/// As the engine's packer: a pack closes at its target size or at this many blobs...
const PACK_MAX_BLOBS: usize = 32_768;
/// ...and an index file is written after this many blobs.
const INDEX_BLOBS: u64 = 65_536;
/// Snapshots written; each owns a distinct share of the data blobs.
pub const SNAPSHOTS: u64 = 10;
const CHUNKS_PER_FILE: usize = 100;
const FILES_PER_FOLDER: usize = 1000;
/// 2026-01-01 00:00:00 UTC.
const FIRST_SNAPSHOT_NS: i64 = 1_767_225_600_000_000_000;
const HOUR_NS: i64 = 3_600_000_000_000;

/// An error of the generator: the engine's, or a tree the format crate refused.
pub type GenError = Box<dyn std::error::Error + Send + Sync>;

/// The plaintext of data blob number `n`: its number (so every blob is distinct), then
/// pseudo-random bytes, 64–512 bytes in all.
pub fn plaintext(seed: u64, n: u64) -> Vec<u8> {
    let mut rng = XorShift::new(seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let len = 64 + (rng.next_u64() % 449) as usize;
    let mut out = vec![0u8; len];
    out[..8].copy_from_slice(&n.to_le_bytes());
    rng.fill(&mut out[8..]);
    out
}

/// Writes the ten snapshots of a repository of `blobs` data blobs into `repo`, which must hold no
/// snapshot yet. `progress` is called after each snapshot with its number (from 1) and id.
pub fn generate(
    repo: &Repository,
    blobs: u64,
    seed: u64,
    mut progress: impl FnMut(u64, SnapshotId),
) -> Result<Vec<SnapshotId>, GenError> {
    if !repo.list_snapshot_ids()?.is_empty() {
        return Err("the repository already holds snapshots; give one just made with 'cairn init'".into());
    }
    let level = Some(repo.config().compression_level).filter(|l| *l != 0);
    let mut written = Vec::new();
    for s in 0..SNAPSHOTS {
        let (first, end) = (blobs * s / SNAPSHOTS, blobs * (s + 1) / SNAPSHOTS);
        // Data: one task per index file, each returning its blobs' ids and sizes in order.
        let groups: Vec<u64> = (first..end).step_by(INDEX_BLOBS as usize).collect();
        let ids: Vec<Vec<(BlobId, u32)>> = groups
            .par_iter()
            .map(|&g| {
                let sealed: Vec<SealedBlob> = (g..end.min(g + INDEX_BLOBS))
                    .map(|n| {
                        let plain = plaintext(seed, n);
                        let id = repo.key().blob_id(&plain);
                        seal_blob(repo.key(), BlobKind::Data, id, &plain, level, &nonce())
                    })
                    .collect();
                let ids = sealed.iter().map(|b| (b.id, b.plain_len)).collect();
                store(repo, sealed, BlobKind::Data).map(|()| ids)
            })
            .collect::<Result<_, _>>()?;
        let ids: Vec<(BlobId, u32)> = ids.into_iter().flatten().collect();

        // Trees: files of CHUNKS_PER_FILE blobs, folders of FILES_PER_FOLDER files, under one
        // top folder named after the snapshot.
        let time_ns = FIRST_SNAPSHOT_NS + s as i64 * HOUR_NS;
        let mut trees = Vec::new();
        let mut folders = Vec::new();
        let mut total_size = 0u64;
        for (d, folder) in ids.chunks(CHUNKS_PER_FILE * FILES_PER_FOLDER).enumerate() {
            let files: Vec<Node> = folder
                .chunks(CHUNKS_PER_FILE)
                .enumerate()
                .map(|(f, chunks)| {
                    let size: u64 = chunks.iter().map(|c| u64::from(c.1)).sum();
                    let content = chunks.iter().map(|c| c.0).collect();
                    let inode = first + (d * FILES_PER_FOLDER + f) as u64;
                    node(format!("f{f:04}.dat"), NodeKind::File { content }, size, time_ns, inode)
                })
                .collect();
            total_size += files.iter().map(|f| f.size).sum::<u64>();
            let subtree = seal_tree(repo, Tree::from_nodes(files)?, level, &mut trees);
            folders.push(node(format!("d{d:05}"), NodeKind::Dir { subtree }, 0, time_ns, d as u64));
        }
        let name = format!("part-{s:02}");
        let part = seal_tree(repo, Tree::from_nodes(folders)?, level, &mut trees);
        let root = Tree::from_nodes(vec![node(name.clone(), NodeKind::Dir { subtree: part }, 0, time_ns, 1)])?;
        let root = seal_tree(repo, root, level, &mut trees);
        let tree_blobs = trees.len() as u64;
        store(repo, trees, BlobKind::Tree)?;

        // The snapshot last: everything it names is durable and indexed.
        let summary = Summary {
            files_new: ids.len().div_ceil(CHUNKS_PER_FILE) as u64,
            dirs_new: tree_blobs,
            data_blobs_added: ids.len() as u64,
            tree_blobs_added: tree_blobs,
            bytes_read: total_size,
            total_size,
            bytes_added_plain: total_size,
            started_ns: time_ns,
            ..Summary::default()
        };
        let snapshot = Snapshot {
            time_ns,
            utc_offset_s: 0,
            host: "gen-repo".to_owned(),
            user: "gen".to_owned(),
            uid: 1000,
            gid: 1000,
            tags: vec!["generated".to_owned()],
            paths: vec![format!("/{name}")],
            source: SourceKind::Files,
            source_detail: String::new(),
            tree: root,
            parent: None,
            original: None,
            program_version: format!("gen_repo {}", env!("CARGO_PKG_VERSION")),
            summary,
        };
        let id = repo.save_snapshot(&snapshot)?;
        written.push(id);
        progress(s + 1, id);
    }
    Ok(written)
}

/// Packs the sealed blobs as the engine's packer does, writes the packs and then one index file
/// naming them (the backend syncs each write, so the packs are durable before the index is).
fn store(repo: &Repository, blobs: Vec<SealedBlob>, kind: BlobKind) -> cairn_engine::Result<()> {
    let target = match kind {
        BlobKind::Data => repo.config().data_pack_target,
        BlobKind::Tree => repo.config().tree_pack_target,
    } as usize;
    let mut packs = Vec::new();
    let mut close = |pack: PackBuilder| -> cairn_engine::Result<()> {
        let (bytes, blobs) = pack.finish(repo.key(), &nonce());
        let id = PackId::from_bytes(object_name(&bytes));
        packs.push(IndexedPack { id, len: bytes.len() as u64, blobs });
        repo.backend().write(FileType::Pack, &id.to_hex(), bytes)
    };
    let mut open: Option<PackBuilder> = None;
    for blob in blobs {
        let pack = open.get_or_insert_with(|| PackBuilder::new(kind, target + (1 << 20)));
        pack.add(&blob);
        if pack.len() >= target || pack.entries().len() >= PACK_MAX_BLOBS {
            close(open.take().expect("just used"))?;
        }
    }
    if let Some(pack) = open.filter(|p| !p.is_empty()) {
        close(pack)?;
    }
    let file = IndexFile { supersedes: Vec::new(), packs, condemned: Vec::new() };
    repo.write_named(FileType::Index, file.encode(repo.key(), &nonce()))?;
    Ok(())
}

/// A file or folder entry with plausible metadata.
fn node(name: String, kind: NodeKind, size: u64, time_ns: i64, inode: u64) -> Node {
    let dir = matches!(kind, NodeKind::Dir { .. });
    Node {
        name: name.into_bytes(),
        kind,
        mode: if dir { 0o040_755 } else { 0o100_644 },
        uid: 1000,
        gid: 1000,
        user: "gen".to_owned(),
        group: "gen".to_owned(),
        mtime_ns: time_ns,
        ctime_ns: time_ns,
        inode,
        device: 64,
        links: if dir { 2 } else { 1 },
        size,
        xattrs: Vec::new(),
    }
}

/// Seals a tree into `out` and returns its id.
fn seal_tree(repo: &Repository, tree: Tree, level: Option<i32>, out: &mut Vec<SealedBlob>) -> TreeId {
    let bytes = tree.encode();
    let id = repo.key().blob_id(&bytes);
    out.push(seal_blob(repo.key(), BlobKind::Tree, id, &bytes, level, &nonce()));
    TreeId::from(id)
}
