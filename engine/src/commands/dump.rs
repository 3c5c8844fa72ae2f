//! `dump`: stream one file of a snapshot to a writer (`cairn dump latest db.sql | psql`), or a
//! folder as a tar archive (as restic does). Chunks are fetched and opened a window at a time in
//! parallel and written in order. Nothing is written to the local file system.

use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;

use cairn_format::tree::NodeKind;
use cairn_format::{BlobId, TreeId};
use rayon::prelude::*;

use crate::commands::MAX_TREE_DEPTH;
use crate::commands::snapshots::{SnapshotFilter, find_node_in, find_snapshot};
use crate::error::{Error, ErrorKind, Result};
use crate::repository::Repository;

/// Chunks fetched ahead of the writer.
const WINDOW: usize = 8;

/// Writes the file at `path` in snapshot `spec` to `out`. A closed output (`| head`) is
/// [`ErrorKind::OutputClosed`], which callers treat as a quiet end.
pub fn dump(
    repo: &Repository,
    spec: &str,
    path: &std::ffi::OsStr,
    filter: &SnapshotFilter,
    out: &mut dyn Write,
) -> Result<u64> {
    let (id, snapshot) = find_snapshot(repo, spec, filter)?;
    repo.sync_index()?;
    let (node, walked) = find_node_in(repo, spec, id, &snapshot, path)?;
    match &node.kind {
        NodeKind::File { content } => {
            let written = write_content(repo, content, &walked, out)?;
            out.flush().map_err(output_error)?;
            Ok(written)
        }
        NodeKind::Dir { subtree } => {
            let mut tar = tar::Builder::new(out);
            tar.mode(tar::HeaderMode::Complete);
            tar.follow_symlinks(false);
            // Names in the archive are relative: the folder's path without its leading `/`, as restic.
            let base = walked.trim_start_matches('/').as_bytes().to_vec();
            let mut written = 0u64;
            write_tree(repo, *subtree, &base, 0, &mut tar, &mut written)?;
            let out = tar.into_inner().map_err(output_error)?;
            out.flush().map_err(output_error)?;
            Ok(written)
        }
        other => Err(Error::invalid(format!(
            "{walked} is a {}, not a file or folder; use 'cairn restore' for it",
            other.name()
        ))),
    }
}

/// Writes the chunks of one file in order; returns the bytes written.
fn write_content(repo: &Repository, content: &[BlobId], walked: &str, out: &mut dyn Write) -> Result<u64> {
    let mut written = 0u64;
    for window in content.chunks(WINDOW) {
        let blobs: Vec<Result<Vec<u8>>> =
            window.par_iter().map(|id| repo.load_blob(cairn_format::blob::BlobKind::Data, id)).collect();
        for blob in blobs {
            let blob = blob.map_err(|e| e.context(format!("dumping {walked}")))?;
            out.write_all(&blob).map_err(output_error)?;
            written += blob.len() as u64;
        }
    }
    Ok(written)
}

/// Appends every entry below tree `id` to the archive, folders before their contents.
fn write_tree(
    repo: &Repository,
    id: TreeId,
    base: &[u8],
    depth: usize,
    tar: &mut tar::Builder<&mut dyn Write>,
    written: &mut u64,
) -> Result<()> {
    if depth > MAX_TREE_DEPTH {
        return Err(Error::corrupt(format!("tree {} is nested deeper than {MAX_TREE_DEPTH} levels", id.short())));
    }
    let tree = repo.load_tree(id)?;
    for node in tree.nodes() {
        let mut name = base.to_vec();
        if !name.is_empty() {
            name.push(b'/');
        }
        name.extend_from_slice(&node.name);
        let path = std::path::PathBuf::from(std::ffi::OsStr::from_bytes(&name));
        let shown = String::from_utf8_lossy(&name).into_owned();
        let mut header = tar::Header::new_gnu();
        header.set_mode(node.mode & 0o7777);
        header.set_uid(u64::from(node.uid));
        header.set_gid(u64::from(node.gid));
        // Names too long for the header are left out; the numeric ids stay.
        let _ = header.set_username(&node.user);
        let _ = header.set_groupname(&node.group);
        header.set_mtime(node.mtime_ns.div_euclid(1_000_000_000).max(0) as u64);
        header.set_size(0);
        let appended = match &node.kind {
            NodeKind::File { content } => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(node.size);
                let mut reader =
                    ContentReader { repo, content, next: 0, buf: Vec::new(), pos: 0, produced: 0, failure: None };
                // The header promised `size` bytes: never more, and fewer is an error (below).
                let result = tar.append_data(&mut header, &path, (&mut reader).take(node.size));
                if let Some(e) = reader.failure {
                    return Err(e.context(format!("dumping {shown}")));
                }
                if result.is_ok() && reader.produced != node.size {
                    return Err(Error::corrupt(format!(
                        "dumping {shown}: its chunks hold {} bytes, its entry says {}; the archive is cut here",
                        reader.produced, node.size
                    )));
                }
                *written += node.size;
                result
            }
            NodeKind::Dir { .. } => {
                header.set_entry_type(tar::EntryType::Directory);
                tar.append_data(&mut header, &path, std::io::empty())
            }
            NodeKind::Symlink { target } => {
                header.set_entry_type(tar::EntryType::Symlink);
                tar.append_link(&mut header, &path, std::ffi::OsStr::from_bytes(target))
            }
            NodeKind::Fifo => {
                header.set_entry_type(tar::EntryType::Fifo);
                tar.append_data(&mut header, &path, std::io::empty())
            }
            NodeKind::BlockDevice { rdev } | NodeKind::CharDevice { rdev } => {
                let block = matches!(node.kind, NodeKind::BlockDevice { .. });
                header.set_entry_type(if block { tar::EntryType::Block } else { tar::EntryType::Char });
                let (major, minor) = (nix::sys::stat::major(*rdev), nix::sys::stat::minor(*rdev));
                let _ = header.set_device_major(major as u32);
                let _ = header.set_device_minor(minor as u32);
                tar.append_data(&mut header, &path, std::io::empty())
            }
            // A tar archive has no entry type for sockets (restic leaves them out too).
            NodeKind::Socket => continue,
        };
        appended.map_err(output_error)?;
        if let NodeKind::Dir { subtree } = &node.kind {
            write_tree(repo, *subtree, &name, depth + 1, tar, written)?;
        }
    }
    Ok(())
}

/// A file's content as a reader, one chunk at a time, for the tar writer. A repository error is
/// kept to be reported as itself rather than as an I/O error.
struct ContentReader<'a> {
    repo: &'a Repository,
    content: &'a [BlobId],
    next: usize,
    buf: Vec<u8>,
    pos: usize,
    produced: u64,
    failure: Option<Error>,
}

impl Read for ContentReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            let Some(id) = self.content.get(self.next) else { return Ok(0) };
            match self.repo.load_blob(cairn_format::blob::BlobKind::Data, id) {
                Ok(blob) => {
                    self.buf = blob;
                    self.pos = 0;
                    self.next += 1;
                }
                Err(e) => {
                    let message = e.to_string();
                    self.failure = Some(e);
                    return Err(std::io::Error::other(message));
                }
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        self.produced += n as u64;
        Ok(n)
    }
}

fn output_error(e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Error::new(ErrorKind::OutputClosed, "output closed")
    } else {
        Error::io("writing output", e)
    }
}
