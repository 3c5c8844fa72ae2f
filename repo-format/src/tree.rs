//! Trees: the canonical encoding of one directory's entries, stored as a tree blob.
//!
//! ```text
//! "CRNT" v1 | count u32 | count × node, strictly ascending by name bytes
//! node = name (u16 len + bytes) | kind u8 | mode u32 | uid u32 | gid u32
//!        | user (u16 len + UTF-8) | group (u16 len + UTF-8) | mtime_ns i64 | ctime_ns i64
//!        | inode u64 | device u64 | links u64 | size u64 | payload
//! payload: file    = chunk_count u32 | chunk_count × blob id [32]
//!          dir     = subtree id [32]
//!          symlink = target (u16 len + bytes)
//!          block / char device = rdev u64
//!          fifo / socket = nothing
//! ```
//! Names are raw bytes (Linux file names need not be UTF-8) and are refused when empty, `.`, `..`, or
//! containing `/` or NUL, so a tree can never lead a restore outside its target. Identical directories
//! encode to identical bytes and therefore to the same id.

use crate::object::ObjectKind;
use crate::wire::{Reader, Writer, clamp_short};
use crate::{BlobId, FormatError, Result, TreeId};

/// Largest number of chunks one file may list (at the smallest chunk size, 16 TiB of content).
pub const MAX_FILE_CHUNKS: usize = 1 << 28;

/// What an entry is, with what only that kind carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    File { content: Vec<BlobId> },
    Dir { subtree: TreeId },
    Symlink { target: Vec<u8> },
    BlockDevice { rdev: u64 },
    CharDevice { rdev: u64 },
    Fifo,
    Socket,
}

impl NodeKind {
    fn tag(&self) -> u8 {
        match self {
            NodeKind::File { .. } => 1,
            NodeKind::Dir { .. } => 2,
            NodeKind::Symlink { .. } => 3,
            NodeKind::BlockDevice { .. } => 4,
            NodeKind::CharDevice { .. } => 5,
            NodeKind::Fifo => 6,
            NodeKind::Socket => 7,
        }
    }

    /// A short name for listings.
    pub fn name(&self) -> &'static str {
        match self {
            NodeKind::File { .. } => "file",
            NodeKind::Dir { .. } => "dir",
            NodeKind::Symlink { .. } => "symlink",
            NodeKind::BlockDevice { .. } => "blockdev",
            NodeKind::CharDevice { .. } => "chardev",
            NodeKind::Fifo => "fifo",
            NodeKind::Socket => "socket",
        }
    }
}

/// One directory entry with its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: Vec<u8>,
    pub kind: NodeKind,
    /// Permission and type bits as `st_mode`.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub user: String,
    pub group: String,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub inode: u64,
    pub device: u64,
    /// Hard-link count at backup time.
    pub links: u64,
    /// File size in bytes (0 for others).
    pub size: u64,
}

/// Checks that `name` is a single, harmless path component.
pub fn validate_name(name: &[u8]) -> Result<()> {
    let what = "tree";
    if name.is_empty() || name == b"." || name == b".." {
        return Err(FormatError::Invalid { what, reason: "entry name is empty, '.' or '..'" });
    }
    if name.contains(&b'/') || name.contains(&0) {
        return Err(FormatError::Invalid { what, reason: "entry name contains '/' or NUL" });
    }
    if name.len() > usize::from(u16::MAX) {
        return Err(FormatError::TooLarge { what, len: name.len() as u64, max: u16::MAX.into() });
    }
    Ok(())
}

/// A directory: its entries sorted by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    nodes: Vec<Node>,
}

impl Tree {
    /// Builds a tree, sorting the entries; refuses invalid or duplicate names.
    pub fn from_nodes(mut nodes: Vec<Node>) -> Result<Self> {
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        for n in &nodes {
            validate_name(&n.name)?;
            if let NodeKind::Symlink { target } = &n.kind
                && target.len() > usize::from(u16::MAX)
            {
                return Err(FormatError::TooLarge { what: "tree", len: target.len() as u64, max: u16::MAX.into() });
            }
        }
        if nodes.windows(2).any(|w| w[0].name == w[1].name) {
            return Err(FormatError::Invalid { what: "tree", reason: "duplicate entry name" });
        }
        Ok(Tree { nodes })
    }

    /// The entries, ascending by name.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Takes the entries.
    pub fn into_nodes(self) -> Vec<Node> {
        self.nodes
    }

    /// Finds an entry by name.
    pub fn get(&self, name: &[u8]) -> Option<&Node> {
        self.nodes.binary_search_by(|n| n.name.as_slice().cmp(name)).ok().map(|i| &self.nodes[i])
    }

    /// The canonical plaintext of the tree blob.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        ObjectKind::Tree.write_header(&mut w);
        w.u32(self.nodes.len() as u32);
        for n in &self.nodes {
            // from_nodes and decode bound names and targets to u16::MAX bytes.
            w.bytes16(&n.name);
            w.u8(n.kind.tag());
            w.u32(n.mode);
            w.u32(n.uid);
            w.u32(n.gid);
            w.bytes16(clamp_short(&n.user).as_bytes());
            w.bytes16(clamp_short(&n.group).as_bytes());
            w.i64(n.mtime_ns);
            w.i64(n.ctime_ns);
            w.u64(n.inode);
            w.u64(n.device);
            w.u64(n.links);
            w.u64(n.size);
            match &n.kind {
                NodeKind::File { content } => {
                    w.u32(content.len() as u32);
                    for c in content {
                        w.raw(c.as_bytes());
                    }
                }
                NodeKind::Dir { subtree } => w.raw(subtree.as_bytes()),
                NodeKind::Symlink { target } => w.bytes16(target),
                NodeKind::BlockDevice { rdev } | NodeKind::CharDevice { rdev } => w.u64(*rdev),
                NodeKind::Fifo | NodeKind::Socket => {}
            }
        }
        w.into_bytes()
    }

    /// Decodes a tree blob's plaintext, refusing anything non-canonical.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let what = "tree";
        let mut r = Reader::new(bytes, what);
        ObjectKind::Tree.read_header(&mut r)?;
        // The smallest node is 2 + 1 + 12 + 4 + 48 bytes.
        let count = r.count(67)?;
        let mut nodes: Vec<Node> = Vec::with_capacity(count);
        for _ in 0..count {
            let name = r.bytes16()?.to_vec();
            validate_name(&name)?;
            if let Some(prev) = nodes.last()
                && prev.name >= name
            {
                return Err(FormatError::Invalid { what, reason: "entries not in strictly ascending name order" });
            }
            let tag = r.u8()?;
            let mode = r.u32()?;
            let uid = r.u32()?;
            let gid = r.u32()?;
            let user = r.string16()?;
            let group = r.string16()?;
            let mtime_ns = r.i64()?;
            let ctime_ns = r.i64()?;
            let inode = r.u64()?;
            let device = r.u64()?;
            let links = r.u64()?;
            let size = r.u64()?;
            let kind = match tag {
                1 => {
                    let n = r.count(32)?;
                    if n > MAX_FILE_CHUNKS {
                        return Err(FormatError::TooLarge { what, len: n as u64, max: MAX_FILE_CHUNKS as u64 });
                    }
                    let mut content = Vec::with_capacity(n);
                    for _ in 0..n {
                        content.push(BlobId::from_bytes(r.id()?));
                    }
                    NodeKind::File { content }
                }
                2 => NodeKind::Dir { subtree: TreeId::from_bytes(r.id()?) },
                3 => NodeKind::Symlink { target: r.bytes16()?.to_vec() },
                4 => NodeKind::BlockDevice { rdev: r.u64()? },
                5 => NodeKind::CharDevice { rdev: r.u64()? },
                6 => NodeKind::Fifo,
                7 => NodeKind::Socket,
                _ => return Err(FormatError::Invalid { what, reason: "unknown entry kind" }),
            };
            nodes.push(Node {
                name,
                kind,
                mode,
                uid,
                gid,
                user,
                group,
                mtime_ns,
                ctime_ns,
                inode,
                device,
                links,
                size,
            });
        }
        r.finish()?;
        Ok(Tree { nodes })
    }
}
