//! How the local cache grows with the repository: rebuilds the merged index of a synthetic
//! repository from scratch (the cache folder deleted) and reports time, CPU time, bytes on disk per
//! blob and peak RSS; then adds one backup's index file, and supersedes half of the index files
//! (what a prune of half the data leaves) to show what the file gives back.
//!
//! The repository is made of `IndexFile` values in memory (random blob ids, 1000 blobs per pack,
//! 50 packs per index file, as a backup of many small files writes them), so only the cache's own
//! work is measured: no decryption, no storage I/O.
//!
//!   cargo run -p cairn-benches --example cache_rebuild [--release] -- [BLOBS] [WORKDIR]
//!
//! defaults: 1000000 blobs, a temporary folder. Times are wall and process CPU seconds; the
//! process runs alone on its thread, so on a loaded machine the CPU column is the one to compare.

use std::time::Instant;

use cairn_benches::XorShift;
use cairn_engine::cache::Cache;
use cairn_format::blob::{BlobKind, Compression};
use cairn_format::index::{IndexFile, IndexedPack};
use cairn_format::pack::BlobEntry;
use cairn_format::{BlobId, IndexId, PackId};

const BLOBS_PER_PACK: usize = 1000;
const PACKS_PER_INDEX: usize = 50;

fn id(rng: &mut XorShift) -> [u8; 32] {
    let mut b = [0; 32];
    rng.fill(&mut b);
    b
}

fn index_file(rng: &mut XorShift, blobs: usize) -> IndexFile {
    let mut packs = Vec::new();
    let mut left = blobs;
    while left > 0 {
        let n = left.min(BLOBS_PER_PACK);
        left -= n;
        let mut offset = 0u32;
        let blobs = (0..n)
            .map(|_| {
                let stored_len = 40 + (rng.next_u64() % 4000) as u32;
                let e = BlobEntry {
                    kind: BlobKind::Data,
                    id: BlobId::from_bytes(id(rng)),
                    compression: Compression::Zstd,
                    offset,
                    stored_len,
                    plain_len: stored_len * 3,
                };
                offset += stored_len;
                e
            })
            .collect();
        packs.push(IndexedPack { id: PackId::from_bytes(id(rng)), len: u64::from(offset) + 200, blobs });
    }
    IndexFile { supersedes: Vec::new(), packs, condemned: Vec::new() }
}

fn cpu_seconds() -> f64 {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).expect("getrusage");
    let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
    t(usage.user_time()) + t(usage.system_time())
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn on_disk(cache: &Cache) -> u64 {
    let db = cache.path().expect("a cache on disk");
    let mut total = 0;
    for suffix in ["", "-wal"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        total += std::fs::metadata(std::path::PathBuf::from(p)).map(|m| m.len()).unwrap_or(0);
    }
    total
}

fn step<T>(what: &str, blobs: usize, f: impl FnOnce() -> T) -> T {
    let (wall, cpu) = (Instant::now(), cpu_seconds());
    let out = f();
    let (wall, cpu) = (wall.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    println!(
        "{what:<44} wall {wall:7.2} s  cpu {cpu:7.2} s  ({:.2} cpu-s per million blobs)",
        cpu * 1e6 / blobs.max(1) as f64
    );
    out
}

fn main() {
    let mut args = std::env::args().skip(1);
    let blobs: usize = args.next().map(|a| a.parse().expect("BLOBS is a number")).unwrap_or(1_000_000);
    let temp = tempfile::tempdir().expect("temporary folder");
    let dir = args.next().map(std::path::PathBuf::from).unwrap_or_else(|| temp.path().to_path_buf());
    let per_index = BLOBS_PER_PACK * PACKS_PER_INDEX;
    let mut rng = XorShift::new(14);
    let mut files: Vec<(IndexId, IndexFile)> = Vec::new();
    let mut left = blobs;
    while left > 0 {
        let n = left.min(per_index);
        left -= n;
        files.push((IndexId::from_bytes(id(&mut rng)), index_file(&mut rng, n)));
    }
    let repository_id = [14; 32];
    let _ = std::fs::remove_dir_all(dir.join(cairn_format::id::to_hex(&repository_id)));
    let mut cache = Cache::open(Some(&dir), &repository_id).expect("cache");
    let ids: Vec<IndexId> = files.iter().map(|f| f.0).collect();
    let fetch = |want: IndexId| Ok(files.iter().find(|f| f.0 == want).expect("listed").1.clone());
    step(&format!("rebuild from scratch ({blobs} blobs)"), blobs, || {
        cache.sync_index(|| Ok(ids.clone()), fetch).expect("sync")
    });
    let size = on_disk(&cache);
    println!(
        "cache on disk: {:.1} MiB, {:.0} bytes per blob",
        size as f64 / 1048576.0,
        size as f64 / blobs.max(1) as f64
    );

    let extra = index_file(&mut rng, 20_000);
    let extra_id = IndexId::from_bytes(id(&mut rng));
    step("add one backup's index (20000 blobs)", 20_000, || cache.add_index(extra_id, &extra).expect("add"));
    let mut lookup_rng = XorShift::new(99);
    let probes: Vec<BlobId> = (0..100_000).map(|_| BlobId::from_bytes(id(&mut lookup_rng))).collect();
    step("100000 locate() of absent ids", 100_000, || {
        for p in &probes {
            assert!(cache.locate(p).expect("lookup").is_none());
        }
    });
    step("100000 has_blob() of absent ids", 100_000, || {
        for p in &probes {
            assert!(!cache.has_blob(p).expect("lookup"));
        }
    });
    let present: Vec<BlobId> =
        files.iter().flat_map(|f| &f.1.packs).flat_map(|p| &p.blobs).step_by(10).take(100_000).map(|b| b.id).collect();
    step("100000 locate() of present ids", present.len(), || {
        for p in &present {
            assert!(cache.locate(p).expect("lookup").is_some());
        }
    });

    // A prune that rewrote half of the repository: one new small index supersedes half the files.
    let half: Vec<IndexId> = ids[..ids.len() / 2].to_vec();
    let mut survivor = index_file(&mut rng, 1000);
    survivor.supersedes = half.clone();
    let survivor_id = IndexId::from_bytes(id(&mut rng));
    let mut after: Vec<IndexId> = ids[ids.len() / 2..].to_vec();
    after.push(extra_id);
    after.push(survivor_id);
    step("supersede half of the index files", blobs / 2, || {
        cache
            .sync_index(
                || Ok(after.clone()),
                |want| {
                    if want == survivor_id { Ok(survivor.clone()) } else { fetch(want) }
                },
            )
            .expect("sync")
    });
    let (live, _) = cache.counts().expect("counts");
    let size = on_disk(&cache);
    println!(
        "cache on disk after: {:.1} MiB for {live} blobs, {:.0} bytes per blob",
        size as f64 / 1048576.0,
        size as f64 / live.max(1) as f64
    );
    println!("peak RSS {:.0} MiB", peak_rss_mib());
}
