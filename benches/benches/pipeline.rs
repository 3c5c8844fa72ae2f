//! Micro-benchmarks of the backup pipeline's stages, one core each, through cairn-format's public
//! API only: FastCDC cutting, keyed BLAKE3 ids, seal (zstd + XChaCha20-Poly1305), open (decrypt +
//! decompress + re-hash), pack building, tree and index-file encodings.
//!
//! Input is a 64 MiB seeded corpus, half pg_dump-like text and half random bytes (see
//! `cairn_benches::mixed_corpus`). Throughput is reported in plaintext bytes (MB = 10^6) except
//! where noted. Run with `cargo bench -p cairn-benches` (add a filter such as `-- seal` to run one
//! group).
//!
//! Every stage here runs on the calling thread, so the clock is that thread's CPU time, not wall
//! time: the numbers are MB per CPU-second, comparable with `benches/compare.sh`'s CPU column, and
//! compilers or tests running beside the benchmark on a shared machine barely move them. On an idle
//! machine wall time is the same within a few percent.
//!
//! The engine's blob lookup is a query against its SQLite cache, which this crate cannot reach
//! without depending on the engine, so there is no lookup benchmark here; `index_file` measures
//! the part of index handling the format owns (encoding and decoding index files).

use std::hint::black_box;
use std::time::Duration;

use cairn_benches::{XorShift, mixed_corpus};
use cairn_format::blob::{BlobKind, SealedBlob, open_blob, seal_blob};
use cairn_format::chunker::{Chunker, ChunkerParams};
use cairn_format::crypto::{MASTER_SECRET_LEN, MasterKey};
use cairn_format::index::{IndexFile, IndexedPack};
use cairn_format::pack::PackBuilder;
use cairn_format::tree::{Node, NodeKind, Tree};
use cairn_format::{BlobId, PackId, TreeId};
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};

const CORPUS_LEN: usize = 64 * 1024 * 1024;
/// The engine closes packs at about this size.
const PACK_TARGET: usize = 16 * 1024 * 1024;
/// Benchmark-only nonce: uniqueness does not matter when nothing is stored.
const NONCE: [u8; 24] = [7; 24];

/// CPU time consumed by the calling thread (`CLOCK_THREAD_CPUTIME_ID`).
#[derive(Debug, Clone, Copy)]
struct ThreadCpuTime;

static WALL_TIME: WallTime = WallTime;

fn thread_cpu_now() -> Duration {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .expect("Linux always has a per-thread CPU clock");
    Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32)
}

impl Measurement for ThreadCpuTime {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        thread_cpu_now()
    }
    fn end(&self, started: Duration) -> Duration {
        thread_cpu_now().saturating_sub(started)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        // Values are nanoseconds, exactly as for wall time, so its formatter fits.
        WALL_TIME.formatter()
    }
}

type Bench = Criterion<ThreadCpuTime>;

fn key() -> MasterKey {
    MasterKey::from_random([42; MASTER_SECRET_LEN])
}

/// The corpus cut with the default parameters, as the engine would cut it.
fn chunks(key: &MasterKey, corpus: &[u8]) -> Vec<std::ops::Range<usize>> {
    let chunker = Chunker::new(ChunkerParams::DEFAULT, key.chunker_seed());
    let (lengths, _) = chunker.cut(corpus, true);
    let mut at = 0;
    lengths
        .into_iter()
        .map(|len| {
            at += len;
            at - len..at
        })
        .collect()
}

fn seal_all(key: &MasterKey, corpus: &[u8], chunks: &[std::ops::Range<usize>], level: Option<i32>) -> Vec<SealedBlob> {
    chunks
        .iter()
        .map(|r| {
            let plain = &corpus[r.clone()];
            seal_blob(key, BlobKind::Data, key.blob_id(plain), plain, level, &NONCE)
        })
        .collect()
}

/// Stage benchmarks over the whole corpus take 0.05–0.5 s per iteration: few flat samples suffice.
fn slow_group<'a>(c: &'a mut Bench, name: &str, bytes: usize) -> BenchmarkGroup<'a, ThreadCpuTime> {
    let mut group = c.benchmark_group(name);
    group.sampling_mode(SamplingMode::Flat).sample_size(10).measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::BytesDecimal(bytes as u64));
    group
}

fn chunker(c: &mut Bench) {
    let key = key();
    let corpus = mixed_corpus(CORPUS_LEN, 1);
    let mut group = slow_group(c, "chunker", corpus.len());
    // The defaults and the alternatives measured for the chunk-size choice (min = avg/2, max = 4·avg).
    for avg_kib in [256u32, 512, 1024, 2048] {
        let params = ChunkerParams { min_size: avg_kib * 512, avg_size: avg_kib * 1024, max_size: avg_kib * 4096 }
            .validate()
            .expect("these sizes are inside FastCDC's limits");
        let chunker = Chunker::new(params, key.chunker_seed());
        group.bench_function(format!("fastcdc_avg_{avg_kib}k"), |b| b.iter(|| chunker.cut(black_box(&corpus), true)));
    }
    group.finish();
}

fn hash(c: &mut Bench) {
    let key = key();
    let corpus = mixed_corpus(CORPUS_LEN, 1);
    let chunks = chunks(&key, &corpus);
    let mut group = slow_group(c, "hash", corpus.len());
    group.bench_function("keyed_blake3_blob_id", |b| {
        b.iter(|| {
            for r in &chunks {
                black_box(key.blob_id(black_box(&corpus[r.clone()])));
            }
        })
    });
    group.finish();
}

fn seal(c: &mut Bench) {
    let key = key();
    let corpus = mixed_corpus(CORPUS_LEN, 1);
    let chunks = chunks(&key, &corpus);
    let ids: Vec<BlobId> = chunks.iter().map(|r| key.blob_id(&corpus[r.clone()])).collect();
    let mut group = slow_group(c, "seal", corpus.len());
    for (name, level) in [("raw", None), ("zstd_1", Some(1)), ("zstd_3", Some(3))] {
        group.bench_function(name, |b| {
            b.iter(|| {
                chunks
                    .iter()
                    .zip(&ids)
                    .map(|(r, id)| seal_blob(&key, BlobKind::Data, *id, black_box(&corpus[r.clone()]), level, &NONCE))
                    .map(|s| s.sealed.len())
                    .sum::<usize>()
            })
        });
    }
    // What the single-core critical path of a backup does with new data: cut, hash, seal at level 1.
    let chunker = Chunker::new(ChunkerParams::DEFAULT, key.chunker_seed());
    group.bench_function("cut_hash_seal_zstd_1", |b| {
        b.iter(|| {
            let (lengths, _) = chunker.cut(black_box(&corpus), true);
            let mut at = 0;
            let mut stored = 0;
            for len in lengths {
                let plain = &corpus[at..at + len];
                at += len;
                stored += seal_blob(&key, BlobKind::Data, key.blob_id(plain), plain, Some(1), &NONCE).sealed.len();
            }
            stored
        })
    });
    group.finish();
}

fn open(c: &mut Bench) {
    let key = key();
    let corpus = mixed_corpus(CORPUS_LEN, 1);
    let chunks = chunks(&key, &corpus);
    let mut group = slow_group(c, "open", corpus.len());
    for (name, level) in [("raw", None), ("zstd_1", Some(1)), ("zstd_3", Some(3))] {
        let sealed = seal_all(&key, &corpus, &chunks, level);
        group.bench_function(name, |b| {
            b.iter(|| {
                for s in &sealed {
                    let plain = open_blob(&key, s.kind, s.id, s.compression, s.plain_len, black_box(&s.sealed))
                        .expect("a blob sealed above opens");
                    black_box(plain);
                }
            })
        });
    }
    group.finish();
}

fn pack(c: &mut Bench) {
    let key = key();
    let corpus = mixed_corpus(CORPUS_LEN, 1);
    let chunks = chunks(&key, &corpus);
    let sealed = seal_all(&key, &corpus, &chunks, Some(1));
    let stored: usize = sealed.iter().map(|s| s.sealed.len()).sum();
    // Throughput here is in sealed (stored) bytes: that is what the pack builder copies.
    let mut group = slow_group(c, "pack", stored);
    group.bench_function("add_finish_16MiB_packs", |b| {
        b.iter(|| {
            let mut packs = 0usize;
            let mut builder = PackBuilder::new(BlobKind::Data, PACK_TARGET + 4 * 1024 * 1024);
            for s in &sealed {
                builder.add(black_box(s));
                if builder.len() >= PACK_TARGET {
                    let done = std::mem::replace(
                        &mut builder,
                        PackBuilder::new(BlobKind::Data, PACK_TARGET + 4 * 1024 * 1024),
                    );
                    packs += done.finish(&key, &NONCE).0.len();
                }
            }
            packs + builder.finish(&key, &NONCE).0.len()
        })
    });
    group.finish();
}

/// A directory of `n` files with realistic metadata, each listing `chunks_per_file` blobs.
fn sample_tree(n: usize, chunks_per_file: usize) -> Tree {
    let mut rng = XorShift::new(3);
    let mut id = || {
        let mut bytes = [0u8; 32];
        rng.fill(&mut bytes);
        bytes
    };
    let nodes = (0..n)
        .map(|i| {
            let kind = if i % 50 == 0 {
                NodeKind::Dir { subtree: TreeId::from_bytes(id()) }
            } else {
                NodeKind::File { content: (0..chunks_per_file).map(|_| BlobId::from_bytes(id())).collect() }
            };
            Node {
                name: format!("file-{i:06}.dat").into_bytes(),
                kind,
                mode: 0o100644,
                uid: 1000,
                gid: 1000,
                user: "app".to_owned(),
                group: "app".to_owned(),
                mtime_ns: 1_790_000_000_000_000_000 + i as i64,
                ctime_ns: 1_790_000_000_000_000_000 + i as i64,
                inode: 100_000 + i as u64,
                device: 2049,
                links: 1,
                size: 4096 * i as u64,
                xattrs: Vec::new(),
            }
        })
        .collect();
    Tree::from_nodes(nodes).expect("generated names are valid and unique")
}

fn tree(c: &mut Bench) {
    let mut group = c.benchmark_group("tree");
    for (files, chunks_per_file) in [(1_000usize, 1usize), (10_000, 1), (1_000, 64)] {
        let tree = sample_tree(files, chunks_per_file);
        let encoded = tree.encode();
        group.throughput(Throughput::BytesDecimal(encoded.len() as u64));
        let label = format!("{files}_files_{chunks_per_file}_chunks");
        group.bench_function(format!("encode_{label}"), |b| b.iter(|| black_box(&tree).encode()));
        group.bench_function(format!("decode_{label}"), |b| {
            b.iter(|| Tree::decode(black_box(&encoded)).expect("encoded above"))
        });
    }
    group.finish();
}

fn index_file(c: &mut Bench) {
    let key = key();
    // 1 000 packs of ~16 MiB with 16 blobs each: the index of about 16 GiB of new data at 1 MiB chunks.
    let mut rng = XorShift::new(9);
    let mut id = || {
        let mut bytes = [0u8; 32];
        rng.fill(&mut bytes);
        bytes
    };
    let corpus = mixed_corpus(16 * 1024 * 1024, 2);
    let chunks = chunks(&key, &corpus);
    let mut builder = PackBuilder::new(BlobKind::Data, corpus.len() + 1024 * 1024);
    for s in seal_all(&key, &corpus, &chunks, Some(1)) {
        builder.add(&s);
    }
    let (pack_bytes, template) = builder.finish(&key, &NONCE);
    let packs: Vec<IndexedPack> = (0..1_000)
        .map(|_| IndexedPack {
            id: PackId::from_bytes(id()),
            len: pack_bytes.len() as u64,
            blobs: template
                .iter()
                .map(|e| cairn_format::pack::BlobEntry { id: BlobId::from_bytes(id()), ..*e })
                .collect(),
        })
        .collect();
    let blobs: usize = packs.iter().map(|p| p.blobs.len()).sum();
    let file = IndexFile { supersedes: Vec::new(), packs, condemned: Vec::new() };
    let encoded = file.encode(&key, &NONCE);
    let mut group = c.benchmark_group("index_file");
    group.throughput(Throughput::BytesDecimal(encoded.len() as u64));
    let label = format!("1000_packs_{blobs}_blobs");
    group.bench_function(format!("encode_{label}"), |b| b.iter(|| black_box(&file).encode(&key, &NONCE)));
    group.bench_function(format!("decode_{label}"), |b| {
        b.iter(|| IndexFile::decode(black_box(&encoded), &key).expect("encoded above"))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = chunker, hash, seal, open, pack, tree, index_file
}
criterion_main!(benches);
