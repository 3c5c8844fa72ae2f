//! Writing repositories the way an attacker who has the key could: trees and snapshots that the
//! backup command would never produce (names such as `..`, sizes their content does not have,
//! symlinks pointing anywhere), stored through the engine's own saver, index and snapshot code so
//! that only the content is hostile, never the encoding.
//!
//! Usage: [`Crafter::open`] a test repository, add data blobs and trees (each returns its id), then
//! [`Crafter::snapshot`] with the root tree writes the packs, an index file and a snapshot.

use cairn_engine::Repository;
use cairn_engine::pack_saver::PackSaver;
use cairn_format::blob::BlobKind;
use cairn_format::snapshot::{Snapshot, SourceKind, Summary};
use cairn_format::tree::{Node, NodeKind, Tree};
use cairn_format::{BlobId, SnapshotId, TreeId};

use super::TestRepo;

/// Builds blobs and snapshots directly in a repository, bypassing `backup`.
pub struct Crafter {
    repo: Repository,
    blobs: Vec<(BlobKind, BlobId, Vec<u8>)>,
}

impl Crafter {
    /// Opens `t`'s repository with the test password (no cache: the binary under test keeps its own).
    pub fn open(t: &TestRepo) -> Self {
        Self { repo: t.open_engine(), blobs: Vec::new() }
    }

    /// Adds a data blob holding `bytes`.
    pub fn data(&mut self, bytes: &[u8]) -> BlobId {
        let id = self.repo.key().blob_id(bytes);
        self.blobs.push((BlobKind::Data, id, bytes.to_vec()));
        id
    }

    /// Adds a tree of `nodes` (the format's own encoder; names must be valid).
    pub fn tree(&mut self, nodes: Vec<Node>) -> TreeId {
        let tree = Tree::from_nodes(nodes).expect("valid tree");
        self.tree_bytes(tree.encode())
    }

    /// Adds a tree of `nodes` in which each `(placeholder, name)` pair's placeholder entry name is
    /// replaced by `name` after encoding: the way to store names the encoder refuses (`..`, `a/b`,
    /// an empty name). Placeholders must be unique byte strings in the encoded tree.
    pub fn tree_with_names(&mut self, nodes: Vec<Node>, renames: &[(&[u8], &[u8])]) -> TreeId {
        let mut bytes = Tree::from_nodes(nodes).expect("valid tree").encode();
        for (placeholder, name) in renames {
            let mut from = (placeholder.len() as u16).to_le_bytes().to_vec();
            from.extend_from_slice(placeholder);
            let mut to = (name.len() as u16).to_le_bytes().to_vec();
            to.extend_from_slice(name);
            let at = bytes.windows(from.len()).position(|w| w == from.as_slice()).expect("placeholder in the tree");
            bytes.splice(at..at + from.len(), to);
        }
        self.tree_bytes(bytes)
    }

    /// Adds a tree blob with exactly these plaintext bytes.
    pub fn tree_bytes(&mut self, bytes: Vec<u8>) -> TreeId {
        let id = self.repo.key().blob_id(&bytes);
        self.blobs.push((BlobKind::Tree, id, bytes));
        id.into()
    }

    /// Stores every blob added so far (packs, then an index file) and a snapshot of `root`.
    pub fn snapshot(&mut self, root: TreeId) -> SnapshotId {
        let blobs = std::mem::take(&mut self.blobs);
        let repo = &self.repo;
        std::thread::scope(|scope| {
            let saver = PackSaver::start(scope, repo, false);
            let mut seen = std::collections::HashSet::new();
            for (kind, id, bytes) in blobs {
                if seen.insert(id) {
                    saver.save(kind, id, bytes).expect("queue a blob");
                }
            }
            saver.finish().expect("write packs and index");
        });
        let snapshot = Snapshot {
            time_ns: 1_700_000_000_000_000_000,
            utc_offset_s: 0,
            host: "crafted".into(),
            user: "crafted".into(),
            uid: 0,
            gid: 0,
            tags: Vec::new(),
            paths: vec!["/crafted".into()],
            source: SourceKind::Files,
            source_detail: String::new(),
            tree: root,
            parent: None,
            original: None,
            program_version: "crafted".into(),
            summary: Summary::default(),
        };
        repo.save_snapshot(&snapshot).expect("save the snapshot")
    }
}

/// An entry of `kind` named `name` with ordinary metadata (mode 0644 or 0755, mtime in 2023).
pub fn node(name: &[u8], kind: NodeKind) -> Node {
    let mode = match kind {
        NodeKind::Dir { .. } => 0o040755,
        NodeKind::File { .. } => 0o100644,
        NodeKind::Symlink { .. } => 0o120777,
        NodeKind::BlockDevice { .. } => 0o060600,
        NodeKind::CharDevice { .. } => 0o020600,
        NodeKind::Fifo => 0o010644,
        NodeKind::Socket => 0o140755,
    };
    Node {
        name: name.to_vec(),
        kind,
        mode,
        uid: 0,
        gid: 0,
        user: String::new(),
        group: String::new(),
        mtime_ns: 1_700_000_000_000_000_000,
        ctime_ns: 1_700_000_000_000_000_000,
        inode: 0,
        device: 0,
        links: 1,
        size: 0,
        xattrs: Vec::new(),
    }
}

/// A file whose tree entry claims `size` bytes and lists `content`.
pub fn file(name: &[u8], content: Vec<BlobId>, size: u64) -> Node {
    Node { size, ..node(name, NodeKind::File { content }) }
}

/// A folder entry pointing at `subtree`.
pub fn dir(name: &[u8], subtree: TreeId) -> Node {
    node(name, NodeKind::Dir { subtree })
}

/// A symlink entry to `target`.
pub fn symlink(name: &[u8], target: &[u8]) -> Node {
    node(name, NodeKind::Symlink { target: target.to_vec() })
}
