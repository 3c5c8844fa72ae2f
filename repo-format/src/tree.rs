//! Trees: the canonical encoding of one directory's entries, stored as a tree blob.
//!
//! ```text
//! "CRNT" v1 or v2 | count u32 | count × node, strictly ascending by name bytes
//! node = name (u16 len + bytes) | kind u8 | mode u32 | uid u32 | gid u32
//!        | user (u16 len + UTF-8) | group (u16 len + UTF-8) | mtime_ns i64 | ctime_ns i64
//!        | inode u64 | device u64 | links u64 | size u64 | payload
//!        | v2 only: xattr_count u16 | xattr_count × (name (u8 len + bytes) | value (u32 len + bytes))
//! payload: file    = chunk_count u32 | chunk_count × blob id [32]
//!          dir     = subtree id [32]
//!          symlink = target (u16 len + bytes)
//!          block / char device = rdev u64
//!          fifo / socket = nothing
//! ```
//! Version 2 adds each entry's extended attributes (POSIX ACLs among them, as the kernel's raw
//! `system.posix_acl_*` values). A tree in which no entry has any is written as version 1, so that
//! trees written before version 2 existed keep their bytes and their ids.
//! Names are raw bytes (Linux file names need not be UTF-8) and are refused when empty, `.`, `..`, or
//! containing `/` or NUL, so a tree can never lead a restore outside its target. Identical directories
//! encode to identical bytes and therefore to the same id.

use crate::object::ObjectKind;
use crate::wire::{Reader, Writer, clamp_short};
use crate::{BlobId, FormatError, Result, TreeId};

/// Largest number of chunks one file may list (at the smallest chunk size, 16 TiB of content).
pub const MAX_FILE_CHUNKS: usize = 1 << 28;

/// The version of a tree whose entries carry no extended attributes.
const VERSION_PLAIN: u32 = 1;
/// The version of a tree in which at least one entry carries extended attributes.
const VERSION_XATTRS: u32 = 2;

/// Longest extended attribute name, namespace included (Linux `XATTR_NAME_MAX`).
pub const MAX_XATTR_NAME: usize = 255;
/// Largest extended attribute value (Linux `XATTR_SIZE_MAX`).
pub const MAX_XATTR_VALUE: usize = 64 * 1024;
/// Most extended attributes one entry may carry.
pub const MAX_XATTRS: usize = 1024;
/// Largest sum of the name and value lengths of one entry's extended attributes.
pub const MAX_XATTR_BYTES: usize = 1024 * 1024;
/// The smallest encoded attribute: name length 1, a 1-byte name, value length 4.
const MIN_XATTR_LEN: usize = 6;

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
    /// Extended attributes, ascending by name (POSIX ACLs are `system.posix_acl_access` and
    /// `system.posix_acl_default`, in the kernel's binary form).
    pub xattrs: Vec<Xattr>,
}

/// One extended attribute: its full name, namespace included (`user.comment`), and its raw value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Xattr {
    pub name: Vec<u8>,
    pub value: Vec<u8>,
}

/// Checks that `name` can be an extended attribute name: 1 to 255 bytes, no NUL.
pub fn validate_xattr_name(name: &[u8]) -> Result<()> {
    let what = "tree";
    if name.is_empty() || name.contains(&0) {
        return Err(FormatError::Invalid { what, reason: "extended attribute name is empty or contains NUL" });
    }
    if name.len() > MAX_XATTR_NAME {
        return Err(FormatError::TooLarge { what, len: name.len() as u64, max: MAX_XATTR_NAME as u64 });
    }
    Ok(())
}

/// Checks one entry's attribute list against every bound, and that it is strictly ascending by name.
fn validate_xattrs(xattrs: &[Xattr]) -> Result<()> {
    let what = "tree";
    if xattrs.len() > MAX_XATTRS {
        return Err(FormatError::TooLarge { what, len: xattrs.len() as u64, max: MAX_XATTRS as u64 });
    }
    let mut total = 0usize;
    for x in xattrs {
        validate_xattr_name(&x.name)?;
        if x.value.len() > MAX_XATTR_VALUE {
            return Err(FormatError::TooLarge { what, len: x.value.len() as u64, max: MAX_XATTR_VALUE as u64 });
        }
        total += x.name.len() + x.value.len();
    }
    if total > MAX_XATTR_BYTES {
        return Err(FormatError::TooLarge { what, len: total as u64, max: MAX_XATTR_BYTES as u64 });
    }
    if xattrs.windows(2).any(|w| w[0].name >= w[1].name) {
        return Err(FormatError::Invalid { what, reason: "extended attributes not in strictly ascending name order" });
    }
    Ok(())
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
    /// Builds a tree, sorting the entries and each entry's extended attributes; refuses invalid or
    /// duplicate names and attributes beyond the bounds.
    pub fn from_nodes(mut nodes: Vec<Node>) -> Result<Self> {
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        for n in &mut nodes {
            validate_name(&n.name)?;
            n.xattrs.sort_by(|a, b| a.name.cmp(&b.name));
            validate_xattrs(&n.xattrs)?;
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
        let with_xattrs = self.nodes.iter().any(|n| !n.xattrs.is_empty());
        ObjectKind::Tree.write_header_version(&mut w, if with_xattrs { VERSION_XATTRS } else { VERSION_PLAIN });
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
            if with_xattrs {
                // from_nodes and decode bound the count, names and values.
                w.u16(n.xattrs.len() as u16);
                for x in &n.xattrs {
                    w.u8(x.name.len() as u8);
                    w.raw(&x.name);
                    w.bytes32(&x.value);
                }
            }
        }
        w.into_bytes()
    }

    /// Decodes a tree blob's plaintext, refusing anything non-canonical.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let what = "tree";
        let mut r = Reader::new(bytes, what);
        let version = ObjectKind::Tree.read_header_versions(&mut r, VERSION_XATTRS)?;
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
            let xattrs = if version == VERSION_XATTRS { read_xattrs(&mut r)? } else { Vec::new() };
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
                xattrs,
            });
        }
        r.finish()?;
        if version == VERSION_XATTRS && nodes.iter().all(|n| n.xattrs.is_empty()) {
            return Err(FormatError::Invalid { what, reason: "version 2 tree without extended attributes" });
        }
        Ok(Tree { nodes })
    }
}

/// Reads one entry's extended attributes, bounding the count by the bytes left before allocating.
fn read_xattrs(r: &mut Reader<'_>) -> Result<Vec<Xattr>> {
    let what = "tree";
    let count = usize::from(r.u16()?);
    let possible = (r.remaining() / MIN_XATTR_LEN).min(MAX_XATTRS);
    if count > possible {
        return Err(FormatError::TooLarge { what, len: count as u64, max: possible as u64 });
    }
    let mut xattrs = Vec::with_capacity(count);
    for _ in 0..count {
        let name_len = usize::from(r.u8()?);
        let name = r.take(name_len)?.to_vec();
        let value = r.bytes32(MAX_XATTR_VALUE as u32)?.to_vec();
        xattrs.push(Xattr { name, value });
    }
    validate_xattrs(&xattrs)?;
    Ok(xattrs)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn fifo(name: &[u8], xattrs: Vec<Xattr>) -> Node {
        Node {
            name: name.to_vec(),
            kind: NodeKind::Fifo,
            mode: 0o10644,
            uid: 1,
            gid: 2,
            user: String::new(),
            group: String::new(),
            mtime_ns: 3,
            ctime_ns: 4,
            inode: 5,
            device: 6,
            links: 1,
            size: 0,
            xattrs,
        }
    }

    fn xattr(name: &[u8], value: &[u8]) -> Xattr {
        Xattr { name: name.to_vec(), value: value.to_vec() }
    }

    /// A version 2 tree of one FIFO whose attribute list is `list` (count and entries, raw).
    fn v2_with_list(list: &[u8]) -> Vec<u8> {
        let mut bytes = Tree::from_nodes(vec![fifo(b"f", vec![])]).unwrap().encode();
        bytes[4] = 2;
        bytes.extend_from_slice(list);
        bytes
    }

    #[test]
    fn a_tree_without_xattrs_stays_version_1_and_one_with_them_is_version_2() {
        let plain = Tree::from_nodes(vec![fifo(b"a", vec![]), fifo(b"b", vec![])]).unwrap();
        assert_eq!(plain.encode()[4..8], [1, 0, 0, 0]);
        let tagged = Tree::from_nodes(vec![
            fifo(b"a", vec![]),
            fifo(b"b", vec![xattr(b"user.z", b""), xattr(b"system.posix_acl_access", &[2, 0, 0, 0])]),
        ])
        .unwrap();
        let bytes = tagged.encode();
        assert_eq!(bytes[4..8], [2, 0, 0, 0]);
        let decoded = Tree::decode(&bytes).unwrap();
        assert_eq!(decoded, tagged);
        let names: Vec<&[u8]> = decoded.nodes()[1].xattrs.iter().map(|x| x.name.as_slice()).collect();
        assert_eq!(names, [&b"system.posix_acl_access"[..], b"user.z"], "sorted by name");
    }

    #[test]
    fn hostile_xattr_lists_are_refused_before_allocating() {
        // The smallest valid list: one attribute "a" with an empty value.
        assert!(Tree::decode(&v2_with_list(&[1, 0, 1, b'a', 0, 0, 0, 0])).is_ok());
        // A version 2 tree without any attribute is not canonical.
        assert!(Tree::decode(&v2_with_list(&[0, 0])).is_err());
        // A count the remaining bytes cannot hold.
        assert!(matches!(
            Tree::decode(&v2_with_list(&[0xff, 0xff, 1, b'a', 0, 0, 0, 0])),
            Err(FormatError::TooLarge { .. })
        ));
        // An empty name, a name with NUL, a value above 64 KiB, duplicate and unsorted names.
        assert!(Tree::decode(&v2_with_list(&[1, 0, 0, 0, 0, 0, 0, 0])).is_err());
        assert!(Tree::decode(&v2_with_list(&[1, 0, 1, 0, 0, 0, 0, 0])).is_err());
        assert!(matches!(Tree::decode(&v2_with_list(&[1, 0, 1, b'a', 1, 0, 1, 0])), Err(FormatError::TooLarge { .. })));
        assert!(Tree::decode(&v2_with_list(&[2, 0, 1, b'a', 0, 0, 0, 0, 1, b'a', 0, 0, 0, 0])).is_err());
        assert!(Tree::decode(&v2_with_list(&[2, 0, 1, b'b', 0, 0, 0, 0, 1, b'a', 0, 0, 0, 0])).is_err());
        // An unknown later version.
        let mut v3 = v2_with_list(&[1, 0, 1, b'a', 0, 0, 0, 0]);
        v3[4] = 3;
        assert!(matches!(Tree::decode(&v3), Err(FormatError::UnsupportedVersion { version: 3, .. })));
    }

    #[test]
    fn from_nodes_refuses_xattrs_beyond_the_bounds() {
        let too_long_name = vec![b'n'; MAX_XATTR_NAME + 1];
        assert!(Tree::from_nodes(vec![fifo(b"f", vec![xattr(&too_long_name, b"")])]).is_err());
        let big = vec![0; MAX_XATTR_VALUE + 1];
        assert!(Tree::from_nodes(vec![fifo(b"f", vec![xattr(b"user.a", &big)])]).is_err());
        let many: Vec<Xattr> = (0..=MAX_XATTRS).map(|i| xattr(format!("user.{i:05}").as_bytes(), b"")).collect();
        assert!(Tree::from_nodes(vec![fifo(b"f", many)]).is_err());
        let heavy: Vec<Xattr> =
            (0..17).map(|i| xattr(format!("user.{i:02}").as_bytes(), &vec![1; MAX_XATTR_VALUE])).collect();
        assert!(Tree::from_nodes(vec![fifo(b"f", heavy)]).is_err());
        assert!(Tree::from_nodes(vec![fifo(b"f", vec![xattr(b"user.a", b""), xattr(b"user.a", b"")])]).is_err());
    }
}
