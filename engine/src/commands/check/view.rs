//! The live index as `check` loads it from the index files, with its per-blob part on disk.
//!
//! Any in-memory view of every indexed copy costs at least an id (32 bytes) per blob, so at ten
//! million blobs it alone would pass the memory `check` may use. Only the pack rows stay in
//! memory here; every indexed copy is a fixed-size record in two unnamed scratch files (in the
//! cache folder, else the system's temp folder; unnamed, so they are gone when the check ends,
//! however it ends):
//!
//! - the *entries file*, only when pack contents are opened (`--read-data`): the copies in load
//!   order, pack after pack, so a pack's entries are one contiguous read (its row says where);
//! - the *sorted file*: the same records ordered by (blob id, load order), so the copies of one blob
//!   sit next to each other, first loaded first, as the tree walk wants them. It is made by an
//!   external merge sort: the copies are sorted in memory in runs of [`RUN_RECORDS`], the runs
//!   written to a third file and merged, and that file is dropped. A directory of the ids'
//!   leading bits (4 bytes per 2–4 blobs) turns a lookup into one positioned read of a few records.
//!
//! Each file takes 52 bytes per indexed copy: 104 bytes while the runs are merged, then 52 (with
//! the entries file 156, then 104). They are read back through the page cache with positioned
//! reads and never mapped, so they do not count towards the process's memory. Two listings of one
//! pack in different index files are compared through a digest of each pack's entries (32 bytes
//! per pack in memory). Nothing here knows about findings: the caller turns what
//! [`ViewBuilder::finish`] reports into them.

use std::collections::{BinaryHeap, HashMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use cairn_format::blob::{BlobKind, Compression};
use cairn_format::pack::BlobEntry;
use cairn_format::{BlobId, PackId};

use crate::error::{Error, ErrorKind, Result};

/// Bytes of one record: id (32), load order (4), offset, stored and plain length (4 each), kind,
/// compression (1 each), two zero bytes.
const RECORD: usize = 52;

/// Copies sorted in memory at a time (27 MiB of records).
const RUN_RECORDS: usize = 1 << 19;

/// Records a merge reader reads at a time, per run.
const MERGE_READ_RECORDS: usize = 1024;

/// One indexed copy of a blob: the pack row it is in and its entry there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct CopyRef {
    pub pack: u32,
    pub entry: BlobEntry,
}

/// One pack as the live index lists it, with what the check learned about it.
#[derive(Debug)]
pub(super) struct PackRow {
    pub id: PackId,
    pub indexed_len: u64,
    /// Its entries are records `first..first + count` of the entries file.
    pub first: u32,
    pub count: u32,
    /// Size in `data/`, `None` when missing.
    pub stored_len: Option<u64>,
    /// A finding that makes every blob of the pack unusable (missing, or damaged when only hashes
    /// were read).
    pub whole_problem: Option<usize>,
    /// A finding for a pack shorter than the index says; blobs past its end are unusable.
    pub short_problem: Option<usize>,
}

/// Two copies of one blob that disagree about its kind or length: the first loaded copy and a
/// later one, each with its load order.
#[derive(Debug, Clone, Copy)]
pub(super) struct KindConflict {
    pub first: (u32, BlobEntry),
    pub other: (u32, BlobEntry),
}

/// What the merge of the sorted file learned about the copies.
#[derive(Debug, Default)]
pub(super) struct CopyCounts {
    /// Distinct blob ids.
    pub unique: u64,
    /// Blob ids with more than one copy.
    pub duplicated: u64,
    /// Later copies that disagree with the first, in (blob id, load order) order.
    pub conflicts: Vec<KindConflict>,
}

/// The live index: pack rows in memory, copies on disk.
#[derive(Debug)]
pub(super) struct IndexView {
    pub packs: Vec<PackRow>,
    pub by_pack: HashMap<PackId, u32>,
    /// Packs listed as condemned by a live index file (and not live in another).
    pub condemned: HashSet<PackId>,
    /// Blobs held by condemned packs, for naming them when no live copy exists.
    pub condemned_blobs: HashMap<BlobId, PackId>,
    scratch: Scratch,
    /// The entries file, kept only when packs are read and opened.
    entries: Option<File>,
    sorted: File,
    /// Records `dir[p]..dir[p + 1]` of the sorted file hold the ids whose leading `bits` bits are `p`.
    dir: Vec<u32>,
    bits: u32,
}

/// Where the scratch files go, for error messages.
#[derive(Debug, Clone)]
struct Scratch {
    dir: Option<PathBuf>,
}

impl Scratch {
    fn create(&self) -> Result<File> {
        match &self.dir {
            Some(d) => tempfile::tempfile_in(d),
            None => tempfile::tempfile(),
        }
        .map_err(|e| self.error("creating", e))
    }

    fn error(&self, doing: &str, e: std::io::Error) -> Error {
        let dir = self.dir.clone().unwrap_or_else(std::env::temp_dir);
        Error::new(
            ErrorKind::Io,
            format!(
                "{doing} check's scratch files in {}: {e} (check needs a writable folder there with up to 156 bytes of free space per indexed blob)",
                dir.display()
            ),
        )
    }
}

impl IndexView {
    /// Where pack row `pos`'s entries are.
    pub fn pack_entries(&self, pos: u32) -> Result<Vec<BlobEntry>> {
        let r = &self.packs[pos as usize];
        let entries = self
            .entries
            .as_ref()
            .ok_or_else(|| Error::new(ErrorKind::Bug, "pack entries asked of a view built without them"))?;
        read_records(entries, u64::from(r.first), r.count as usize)
            .map_err(|e| self.scratch.error("reading", e))
            .map(|records| records.into_iter().map(|(_, e)| e).collect())
    }

    /// The pack row holding the copy loaded as number `seq`.
    pub fn pack_of(&self, seq: u32) -> u32 {
        (self.packs.partition_point(|r| r.first <= seq) - 1) as u32
    }

    /// Every indexed copy of `id`, first loaded first.
    pub fn copies(&self, id: &BlobId) -> Result<Vec<CopyRef>> {
        let b = bucket(id, self.bits);
        let (lo, hi) = (self.dir[b] as usize, self.dir[b + 1] as usize);
        if lo == hi {
            return Ok(Vec::new());
        }
        // A bucket holds a few records: read them onto the stack, and decode only the matches.
        let mut small = [0u8; RECORD * 16];
        let mut large = Vec::new();
        let buf = if hi - lo <= 16 {
            &mut small[..(hi - lo) * RECORD]
        } else {
            large.resize((hi - lo) * RECORD, 0);
            &mut large[..]
        };
        self.sorted.read_exact_at(buf, (lo * RECORD) as u64).map_err(|e| self.scratch.error("reading", e))?;
        let mut copies = Vec::new();
        for r in buf.chunks_exact(RECORD).filter(|r| &r[..32] == id.as_bytes()) {
            let (seq, entry) = decode(r).map_err(|e| self.scratch.error("reading", e))?;
            copies.push(CopyRef { pack: self.pack_of(seq), entry });
        }
        Ok(copies)
    }
}

/// Builds an [`IndexView`]: packs are added in load order, then [`ViewBuilder::finish`] sorts.
pub(super) struct ViewBuilder {
    packs: Vec<PackRow>,
    by_pack: HashMap<PackId, u32>,
    /// Per pack row, a digest of its entries (order-insensitive), to compare listings of one pack.
    digests: Vec<[u8; 32]>,
    scratch: Scratch,
    entries: Option<BufWriter<File>>,
    /// Copies added so far.
    count: u32,
    /// The current run, sorted and written to `runs` when full.
    run: Vec<(BlobEntry, u32)>,
    runs: BufWriter<File>,
    /// Length in records of each run written.
    run_lens: Vec<usize>,
}

impl ViewBuilder {
    /// Starts a view whose scratch files go into `dir` (the system's temp folder when `None`);
    /// with `pack_entries`, the view can list each pack's entries.
    pub fn new(dir: Option<&Path>, pack_entries: bool) -> Result<Self> {
        let scratch = Scratch { dir: dir.map(Path::to_path_buf) };
        let entries = if pack_entries { Some(BufWriter::with_capacity(1 << 20, scratch.create()?)) } else { None };
        let runs = BufWriter::with_capacity(1 << 20, scratch.create()?);
        Ok(Self {
            packs: Vec::new(),
            by_pack: HashMap::new(),
            digests: Vec::new(),
            scratch,
            entries,
            count: 0,
            run: Vec::new(),
            runs,
            run_lens: Vec::new(),
        })
    }

    /// The row of pack `id`, when it was added.
    pub fn pack_pos(&self, id: &PackId) -> Option<u32> {
        self.by_pack.get(id).copied()
    }

    /// The indexed length of the pack at row `pos`.
    pub fn pack_len(&self, pos: u32) -> u64 {
        self.packs[pos as usize].indexed_len
    }

    /// Whether `blobs` lists the same entries as were added for the pack at row `pos`, in any order.
    pub fn same_entries(&self, pos: u32, blobs: &[BlobEntry]) -> bool {
        self.packs[pos as usize].count as usize == blobs.len() && self.digests[pos as usize] == entries_digest(blobs)
    }

    /// Copies added so far: the load order the next copy gets.
    pub fn copies_added(&self) -> usize {
        self.count as usize
    }

    /// Adds a pack not added before, with its entries.
    pub fn add_pack(&mut self, id: PackId, indexed_len: u64, blobs: &[BlobEntry]) -> Result<()> {
        let too_many = || Error::new(ErrorKind::Bug, "too many packs or blobs");
        let pos = u32::try_from(self.packs.len()).map_err(|_| too_many())?;
        let first = self.count;
        let count = u32::try_from(blobs.len()).map_err(|_| too_many())?;
        self.count = first.checked_add(count).ok_or_else(too_many)?;
        for (i, e) in blobs.iter().enumerate() {
            let seq = first + i as u32;
            if let Some(entries) = &mut self.entries {
                entries.write_all(&encode(seq, e)).map_err(|e| self.scratch.error("writing", e))?;
            }
            self.run.push((*e, seq));
            if self.run.len() == RUN_RECORDS {
                self.write_run()?;
            }
        }
        self.by_pack.insert(id, pos);
        self.digests.push(entries_digest(blobs));
        self.packs.push(PackRow {
            id,
            indexed_len,
            first,
            count,
            stored_len: None,
            whole_problem: None,
            short_problem: None,
        });
        Ok(())
    }

    fn write_run(&mut self) -> Result<()> {
        self.run.sort_unstable_by(|a, b| a.0.id.cmp(&b.0.id).then(a.1.cmp(&b.1)));
        for (e, seq) in &self.run {
            self.runs.write_all(&encode(*seq, e)).map_err(|e| self.scratch.error("writing", e))?;
        }
        self.run_lens.push(self.run.len());
        self.run.clear();
        Ok(())
    }

    /// Sorts the copies into the sorted file and counts distinct, duplicated and conflicting ids.
    pub fn finish(mut self) -> Result<(IndexView, CopyCounts)> {
        if !self.run.is_empty() {
            self.write_run()?;
        }
        self.run = Vec::new();
        let scratch = self.scratch.clone();
        let entries = match self.entries {
            Some(w) => Some(w.into_inner().map_err(|e| scratch.error("writing", e.into_error()))?),
            None => None,
        };
        let runs = self.runs.into_inner().map_err(|e| scratch.error("writing", e.into_error()))?;
        let n = self.count as usize;
        // Two to four records per bucket on average: 2 bytes of directory per copy.
        let bits = if n < 2 { 0 } else { (usize::BITS - 1 - n.leading_zeros()).saturating_sub(1).clamp(4, 25) };
        let mut dir = vec![0u32; (1usize << bits) + 1];
        let mut sorted = BufWriter::with_capacity(1 << 20, scratch.create()?);
        let mut counts = CopyCounts::default();
        let mut group: Option<(u32, BlobEntry)> = None;
        let mut group_len = 0u32;
        merge_runs(&runs, &self.run_lens, |seq, e, record| {
            dir[bucket(&e.id, bits) + 1] += 1;
            sorted.write_all(record)?;
            match group {
                Some((_, first)) if first.id == e.id => {
                    group_len += 1;
                    if group_len == 2 {
                        counts.duplicated += 1;
                    }
                    if first.kind != e.kind || first.plain_len != e.plain_len {
                        counts.conflicts.push(KindConflict { first: group.expect("matched above"), other: (seq, e) });
                    }
                }
                _ => {
                    group = Some((seq, e));
                    group_len = 1;
                    counts.unique += 1;
                }
            }
            Ok(())
        })
        .map_err(|e| scratch.error("sorting", e))?;
        drop(runs);
        let sorted = sorted.into_inner().map_err(|e| scratch.error("writing", e.into_error()))?;
        for p in 0..dir.len() - 1 {
            dir[p + 1] += dir[p];
        }
        let view = IndexView {
            packs: self.packs,
            by_pack: self.by_pack,
            condemned: HashSet::new(),
            condemned_blobs: HashMap::new(),
            scratch,
            entries,
            sorted,
            dir,
            bits,
        };
        Ok((view, counts))
    }
}

fn bucket(id: &BlobId, bits: u32) -> usize {
    if bits == 0 {
        return 0;
    }
    let b = id.as_bytes();
    (u32::from_be_bytes([b[0], b[1], b[2], b[3]]) >> (32 - bits)) as usize
}

/// A hash of a pack's entries that does not depend on their order: equal exactly when two
/// listings hold the same entries (as far as BLAKE3 tells).
fn entries_digest(blobs: &[BlobEntry]) -> [u8; 32] {
    let mut records: Vec<[u8; RECORD]> = blobs.iter().map(|e| encode(0, e)).collect();
    records.sort_unstable();
    cairn_format::crypto::object_name(records.as_flattened())
}

fn encode(seq: u32, e: &BlobEntry) -> [u8; RECORD] {
    let mut r = [0u8; RECORD];
    r[..32].copy_from_slice(e.id.as_bytes());
    r[32..36].copy_from_slice(&seq.to_le_bytes());
    r[36..40].copy_from_slice(&e.offset.to_le_bytes());
    r[40..44].copy_from_slice(&e.stored_len.to_le_bytes());
    r[44..48].copy_from_slice(&e.plain_len.to_le_bytes());
    r[48] = e.kind as u8;
    r[49] = e.compression as u8;
    r
}

fn decode(r: &[u8]) -> std::io::Result<(u32, BlobEntry)> {
    let u32_at = |i: usize| u32::from_le_bytes([r[i], r[i + 1], r[i + 2], r[i + 3]]);
    let mut id = [0u8; 32];
    id.copy_from_slice(&r[..32]);
    // The records were written by this process; a byte it did not write means the scratch file
    // was changed underneath it.
    let bad = |_| std::io::Error::new(std::io::ErrorKind::InvalidData, "a scratch record changed on disk");
    Ok((
        u32_at(32),
        BlobEntry {
            kind: BlobKind::from_u8(r[48]).map_err(bad)?,
            id: BlobId::from_bytes(id),
            compression: Compression::from_u8(r[49]).map_err(bad)?,
            offset: u32_at(36),
            stored_len: u32_at(40),
            plain_len: u32_at(44),
        },
    ))
}

/// Reads `count` records from record number `first` on.
fn read_records(file: &File, first: u64, count: usize) -> std::io::Result<Vec<(u32, BlobEntry)>> {
    let mut buf = vec![0u8; count * RECORD];
    file.read_exact_at(&mut buf, first * RECORD as u64)?;
    buf.chunks_exact(RECORD).map(decode).collect()
}

/// One run of the runs file, read a block at a time.
struct RunReader {
    next: u64,
    end: u64,
    buf: Vec<u8>,
    at: usize,
}

impl RunReader {
    /// The next record, or `None` at the end of the run.
    fn record(&mut self, file: &File) -> std::io::Result<Option<&[u8]>> {
        if self.at == self.buf.len() {
            let count = (self.end - self.next).min(MERGE_READ_RECORDS as u64) as usize;
            if count == 0 {
                return Ok(None);
            }
            self.buf.resize(count * RECORD, 0);
            file.read_exact_at(&mut self.buf, self.next * RECORD as u64)?;
            self.next += count as u64;
            self.at = 0;
        }
        let r = &self.buf[self.at..self.at + RECORD];
        self.at += RECORD;
        Ok(Some(r))
    }
}

/// Merges the sorted runs of `file` (lengths `lens`, back to back), calling `out` with every
/// record in (blob id, load order) order.
fn merge_runs(
    file: &File,
    lens: &[usize],
    mut out: impl FnMut(u32, BlobEntry, &[u8]) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut readers = Vec::with_capacity(lens.len());
    let mut start = 0u64;
    for &len in lens {
        readers.push(RunReader { next: start, end: start + len as u64, buf: Vec::new(), at: 0 });
        start += len as u64;
    }
    // Min-heap on (id, load order) of each run's next record; ids and orders are unique per copy.
    let mut heap = BinaryHeap::with_capacity(readers.len());
    for (i, r) in readers.iter_mut().enumerate() {
        if let Some(rec) = r.record(file)? {
            let (seq, e) = decode(rec)?;
            heap.push(std::cmp::Reverse((e.id, seq, i)));
        }
    }
    while let Some(std::cmp::Reverse((_, _, i))) = heap.pop() {
        let r = &mut readers[i];
        let rec = &r.buf[r.at - RECORD..r.at];
        let (seq, e) = decode(rec)?;
        out(seq, e, rec)?;
        if let Some(rec) = r.record(file)? {
            let (seq, e) = decode(rec)?;
            heap.push(std::cmp::Reverse((e.id, seq, i)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u32, kind: BlobKind) -> BlobEntry {
        let mut id = [0u8; 32];
        id[..4].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_be_bytes());
        id[4..8].copy_from_slice(&i.to_be_bytes());
        BlobEntry {
            kind,
            id: BlobId::from_bytes(id),
            compression: cairn_format::blob::Compression::Raw,
            offset: i,
            stored_len: 1,
            plain_len: 1,
        }
    }

    fn pack_id(n: usize) -> PackId {
        PackId::from_bytes([n as u8; 32])
    }

    /// Builds a view of `lists` (one pack each), writing a run after every pack that leaves at
    /// least `run` copies unsorted (small runs exercise the merge).
    fn build(lists: &[Vec<BlobEntry>], run: usize) -> (IndexView, CopyCounts) {
        let mut b = ViewBuilder::new(None, true).expect("builder");
        for (n, blobs) in lists.iter().enumerate() {
            b.add_pack(pack_id(n), 0, blobs).expect("add");
            if b.run.len() >= run {
                b.write_run().expect("run");
            }
        }
        b.finish().expect("finish")
    }

    #[test]
    fn view_finds_every_copy_first_loaded_first() {
        // Three packs; pack 2 repeats blobs of pack 0, and one blob id is in no pack; the copies
        // are sorted in one run and in several, with the same answers.
        let lists: [Vec<BlobEntry>; 3] = [
            (0..5000).map(|i| entry(i, BlobKind::Data)).collect(),
            (5000..9000).map(|i| entry(i, BlobKind::Tree)).collect(),
            (0..100).map(|i| entry(i * 7, BlobKind::Data)).collect(),
        ];
        for run in [1, usize::MAX] {
            let (view, counts) = build(&lists, run);
            assert_eq!(counts.unique, 9000);
            assert_eq!(counts.duplicated, 100);
            assert!(counts.conflicts.is_empty());
            for i in 0..9000u32 {
                let want = entry(i, if i < 5000 { BlobKind::Data } else { BlobKind::Tree });
                let copies = view.copies(&want.id).expect("lookup");
                let first_pack = u32::from(i >= 5000);
                assert_eq!(copies[0].pack, first_pack, "blob {i}");
                assert_eq!(copies[0].entry, want, "blob {i}");
                if i % 7 == 0 && i < 700 {
                    assert_eq!(copies.len(), 2, "blob {i}");
                    assert_eq!(copies[1].pack, 2);
                    assert_eq!(copies[1].entry.id, want.id);
                } else {
                    assert_eq!(copies.len(), 1, "blob {i}");
                }
            }
            assert!(view.copies(&entry(9001, BlobKind::Data).id).expect("lookup").is_empty());
            assert_eq!(view.pack_entries(1).expect("entries"), lists[1]);
            assert_eq!(view.pack_of(5000), 1);
            assert_eq!(view.pack_of(8999), 1);
            assert_eq!(view.pack_of(9000), 2);
        }
        let (empty, counts) = build(&[], 1);
        assert_eq!(counts.unique, 0);
        assert!(empty.copies(&entry(1, BlobKind::Data).id).expect("lookup").is_empty());
    }

    #[test]
    fn listings_of_one_pack_compare_in_any_order() {
        let blobs: Vec<BlobEntry> = (0..50).map(|i| entry(i, BlobKind::Data)).collect();
        let mut b = ViewBuilder::new(None, false).expect("builder");
        b.add_pack(pack_id(0), 10, &blobs).expect("add");
        let mut reversed = blobs.clone();
        reversed.reverse();
        assert!(b.same_entries(0, &reversed));
        assert!(!b.same_entries(0, &blobs[1..]));
        let mut moved = blobs.clone();
        moved[7].offset += 1;
        assert!(!b.same_entries(0, &moved));
        let (view, _) = b.finish().expect("finish");
        assert!(view.pack_entries(0).is_err(), "built without the entries file");
        assert_eq!(view.copies(&blobs[3].id).expect("lookup")[0].entry, blobs[3]);
    }

    #[test]
    fn copies_that_disagree_are_reported_in_id_order() {
        let mut other = entry(3, BlobKind::Tree);
        other.offset = 99;
        let lists = [vec![entry(1, BlobKind::Data), entry(3, BlobKind::Data)], vec![other, entry(1, BlobKind::Data)]];
        let (_, counts) = build(&lists, 1);
        assert_eq!(counts.unique, 2);
        assert_eq!(counts.duplicated, 2);
        assert_eq!(counts.conflicts.len(), 1);
        assert_eq!(counts.conflicts[0].first, (1, entry(3, BlobKind::Data)));
        assert_eq!(counts.conflicts[0].other, (2, other));
    }
}
