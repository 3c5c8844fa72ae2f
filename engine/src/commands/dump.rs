//! `dump`: stream one file of a snapshot to a writer (`cairn dump latest db.sql | psql`).
//! Chunks are fetched and opened a window at a time in parallel and written in order.

use std::io::Write;

use cairn_format::tree::NodeKind;
use rayon::prelude::*;

use crate::commands::snapshots::{SnapshotFilter, find_node, find_snapshot};
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
    let (_, snapshot) = find_snapshot(repo, spec, filter)?;
    repo.sync_index()?;
    let (node, walked) = find_node(repo, &snapshot, path)?;
    let NodeKind::File { content } = &node.kind else {
        return Err(Error::invalid(format!(
            "{walked} is a {}, not a file; use 'cairn restore' for folders",
            node.kind.name()
        )));
    };
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
    out.flush().map_err(output_error)?;
    Ok(written)
}

fn output_error(e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Error::new(ErrorKind::OutputClosed, "output closed")
    } else {
        Error::io("writing output", e)
    }
}
