//! The ceiling of this machine for cairn's two data paths, so that every command's speed can be
//! stated as a share of it:
//!
//! - backup: read → chunk → hash → compress → seal, and
//! - restore: read → decrypt → decompress → hash → write,
//!
//! each run on every core at once with nothing else in the way (no index, no cache, no pack
//! framing, no fsync), plus the CPU cost of every stage on its own, in CPU-seconds per GB of
//! plaintext. CPU-seconds do not depend on what else runs on the machine; wall time and MB/s do,
//! so on a shared machine compare commands by CPU-s/GB against the stage table, and by wall time
//! only against a run of this example made in the same minute.
//!
//!   cargo run -p cairn-benches --example ceiling [--release] -- [MIB] [FILE] [WORKDIR]
//!
//! MIB (default 512) of FILE, or of a seeded corpus (half pg_dump-like text, half random) written
//! to WORKDIR (default /var/tmp) first. Inputs and outputs are read from and written to the page
//! cache; zstd level 1 (cairn's default). cairn-format is optimised even in debug builds, so the
//! numbers of a debug and a release build of this example agree within noise.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cairn_benches::mixed_corpus;
use cairn_format::BlobId;
use cairn_format::blob::{BlobKind, Compression, SealedBlob, open_blob, seal_blob};
use cairn_format::chunker::{Chunker, ChunkerParams};
use cairn_format::crypto::{MASTER_SECRET_LEN, MasterKey};

/// Input is handled in windows of this size (each a unit of work for one core).
const WINDOW: usize = 16 * 1024 * 1024;
const LEVEL: Option<i32> = Some(1);
/// Only speed is measured: a fixed nonce is fine when nothing is kept.
const NONCE: [u8; 24] = [7; 24];

fn thread_cpu() -> Duration {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID).expect("thread CPU clock");
    Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32)
}

fn process_cpu() -> f64 {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).expect("getrusage");
    let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
    t(usage.user_time()) + t(usage.system_time())
}

/// Where one sealed blob of the stored pack file is, and what it holds.
#[derive(Clone, Copy)]
struct Stored {
    id: BlobId,
    compression: Compression,
    offset: u64,
    stored_len: u32,
    plain_offset: u64,
    plain_len: u32,
}

#[derive(Default)]
struct Stages {
    read: Duration,
    chunk: Duration,
    hash: Duration,
    compress: Duration,
    seal: Duration,
    decompress: Duration,
    open: Duration,
    write: Duration,
}

fn timed<T>(total: &mut Duration, f: impl FnOnce() -> T) -> T {
    let start = thread_cpu();
    let out = f();
    *total += thread_cpu().saturating_sub(start);
    out
}

fn read_window(input: &File, at: usize, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    input.read_exact_at(&mut buf, at as u64).expect("reading the input");
    buf
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().map(|a| a.parse().expect("MIB is a number")).unwrap_or(512);
    let file_arg = args.next().filter(|f| !f.is_empty());
    let work = std::path::PathBuf::from(args.next().unwrap_or_else(|| "/var/tmp".to_owned()));
    let work = tempfile::tempdir_in(&work).expect("a work folder");
    let input_path = match file_arg {
        Some(f) => std::path::PathBuf::from(f),
        None => {
            let path = work.path().join("input");
            // Written 64 MiB at a time, so memory does not grow with the input.
            let mut out = File::create(&path).expect("creating the corpus");
            for (i, piece) in (0..mib).step_by(64).enumerate() {
                let bytes = mixed_corpus((mib - piece).min(64) * 1024 * 1024, 14 + i as u64);
                std::io::Write::write_all(&mut out, &bytes).expect("writing the corpus");
            }
            path
        }
    };
    let input = File::open(&input_path).expect("opening the input");
    let len = (input.metadata().expect("input size").len() as usize).min(mib * 1024 * 1024);
    let windows: Vec<(usize, usize)> = (0..len).step_by(WINDOW).map(|at| (at, WINDOW.min(len - at))).collect();
    let key = MasterKey::from_random([42; MASTER_SECRET_LEN]);
    let chunker = Chunker::new(ChunkerParams::DEFAULT, key.chunker_seed());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let gb = len as f64 / 1e9;
    println!("input: {:.0} MB ({}), {cores} cores", len as f64 / 1e6, input_path.display());

    // 1. Every stage on its own, one thread, over the whole input (window by window). Chunks are
    // cut within a window: a cut at a window's end costs the same as any other.
    let mut s = Stages::default();
    let mut scratch = File::create(work.path().join("stage-write")).expect("scratch file");
    for &(at, n) in &windows {
        let mut buf = vec![0; n];
        timed(&mut s.read, || {
            let mut f = &input;
            std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(at as u64)).expect("seek");
            f.read_exact(&mut buf).expect("read")
        });
        let (lengths, _) = timed(&mut s.chunk, || chunker.cut(&buf, true));
        let mut spans = Vec::with_capacity(lengths.len());
        let mut from = 0;
        for l in lengths {
            spans.push(from..from + l);
            from += l;
        }
        let ids: Vec<BlobId> = timed(&mut s.hash, || spans.iter().map(|r| key.blob_id(&buf[r.clone()])).collect());
        // zstd alone (the same library and level seal_blob uses), to split seal_blob's time.
        let mut compressor = zstd::bulk::Compressor::new(LEVEL.unwrap_or(1)).expect("zstd context");
        let compressed: Vec<Vec<u8>> = timed(&mut s.compress, || {
            spans.iter().map(|r| compressor.compress(&buf[r.clone()]).expect("compresses")).collect()
        });
        let sealed: Vec<SealedBlob> = timed(&mut s.seal, || {
            spans
                .iter()
                .zip(&ids)
                .map(|(r, id)| seal_blob(&key, BlobKind::Data, *id, &buf[r.clone()], LEVEL, &NONCE))
                .collect()
        });
        let mut decompressor = zstd::bulk::Decompressor::new().expect("zstd context");
        timed(&mut s.decompress, || {
            for (c, r) in compressed.iter().zip(&spans).filter(|(c, r)| c.len() < r.len()) {
                decompressor.decompress(c, r.len()).expect("decompresses");
            }
        });
        timed(&mut s.open, || {
            for b in &sealed {
                open_blob(&key, b.kind, b.id, b.compression, b.plain_len, &b.sealed).expect("opens");
            }
        });
        timed(&mut s.write, || std::io::Write::write_all(&mut scratch, &buf).expect("write"));
    }
    drop(scratch);
    let per_gb = |d: Duration| d.as_secs_f64() / gb;
    // seal_blob = compress (when it pays) + encrypt; open_blob = decrypt + decompress + hash.
    let encrypt = s.seal.saturating_sub(s.compress);
    let decrypt = s.open.saturating_sub(s.decompress + s.hash);
    println!("\nstage (one core)              CPU-s per GB of plaintext");
    for (name, d) in [
        ("read (page cache)", s.read),
        ("chunk (FastCDC)", s.chunk),
        ("hash (keyed BLAKE3)", s.hash),
        ("compress (zstd-1)", s.compress),
        ("encrypt (XChaCha20-Poly1305)", encrypt),
        ("decrypt", decrypt),
        ("decompress", s.decompress),
        ("write (page cache)", s.write),
    ] {
        println!("  {name:<28} {:6.3}", per_gb(d));
    }
    let backup_sum = s.read + s.chunk + s.hash + s.seal;
    let restore_sum = s.read + s.open + s.write;
    println!("  backup path, sum            {:6.3}", per_gb(backup_sum));
    println!("  restore path, sum           {:6.3}", per_gb(restore_sum));

    // 2. The backup pipeline on every core: each core takes the next window, reads, chunks,
    // hashes, compresses and seals it; sealed blobs go to one pack file (as a restore's input).
    let pack_path = work.path().join("pack");
    let pack = File::create(&pack_path).expect("pack file");
    let stored: Mutex<Vec<Stored>> = Mutex::new(Vec::new());
    let pack_end = Mutex::new(0u64);
    let next = AtomicUsize::new(0);
    let (wall, cpu) = (Instant::now(), process_cpu());
    std::thread::scope(|scope| {
        for _ in 0..cores {
            scope.spawn(|| {
                while let Some(&(at, n)) = windows.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let buf = read_window(&input, at, n);
                    let (lengths, _) = chunker.cut(&buf, true);
                    let mut from = 0;
                    let mut bytes = Vec::with_capacity(n);
                    let mut rows = Vec::with_capacity(lengths.len());
                    for l in lengths {
                        let plain = &buf[from..from + l];
                        let id = key.blob_id(plain);
                        let b = seal_blob(&key, BlobKind::Data, id, plain, LEVEL, &NONCE);
                        rows.push(Stored {
                            id,
                            compression: b.compression,
                            offset: bytes.len() as u64,
                            stored_len: b.sealed.len() as u32,
                            plain_offset: (at + from) as u64,
                            plain_len: l as u32,
                        });
                        bytes.extend_from_slice(&b.sealed);
                        from += l;
                    }
                    let base = {
                        let mut end = pack_end.lock().expect("not poisoned");
                        let base = *end;
                        *end += bytes.len() as u64;
                        base
                    };
                    pack.write_all_at(&bytes, base).expect("writing the pack");
                    let mut all = stored.lock().expect("not poisoned");
                    all.extend(rows.into_iter().map(|r| Stored { offset: base + r.offset, ..r }));
                }
            });
        }
    });
    let (backup_wall, backup_cpu) = (wall.elapsed().as_secs_f64(), process_cpu() - cpu);
    drop(pack);
    let stored = stored.into_inner().expect("not poisoned");

    // 3. The restore pipeline on every core: each core takes the next run of blobs (one window's
    // worth), reads them from the pack, opens them (decrypt, decompress, hash check) and writes
    // the plaintext at its place in the output file.
    let mut runs: Vec<Vec<Stored>> = Vec::new();
    let mut sorted = stored;
    sorted.sort_by_key(|b| b.offset);
    let mut run = Vec::new();
    let mut run_bytes = 0;
    for b in sorted {
        run_bytes += b.plain_len as usize;
        run.push(b);
        if run_bytes >= WINDOW {
            runs.push(std::mem::take(&mut run));
            run_bytes = 0;
        }
    }
    runs.push(run);
    let pack = File::open(&pack_path).expect("pack file");
    let output = File::create(work.path().join("output")).expect("output file");
    output.set_len(len as u64).expect("output size");
    let next = AtomicUsize::new(0);
    let (wall, cpu) = (Instant::now(), process_cpu());
    std::thread::scope(|scope| {
        for _ in 0..cores {
            scope.spawn(|| {
                while let Some(run) = runs.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let (Some(first), Some(last)) = (run.first(), run.last()) else { continue };
                    let start = first.offset;
                    let mut bytes = vec![0; (last.offset + u64::from(last.stored_len) - start) as usize];
                    pack.read_exact_at(&mut bytes, start).expect("reading the pack");
                    for b in run {
                        let at = (b.offset - start) as usize;
                        let sealed = &bytes[at..at + b.stored_len as usize];
                        let plain = open_blob(&key, BlobKind::Data, b.id, b.compression, b.plain_len, sealed)
                            .expect("a blob sealed above opens");
                        output.write_all_at(&plain, b.plain_offset).expect("writing the output");
                    }
                }
            });
        }
    });
    let (restore_wall, restore_cpu) = (wall.elapsed().as_secs_f64(), process_cpu() - cpu);
    let pack_len = std::fs::metadata(&pack_path).map(|m| m.len()).unwrap_or(0);

    println!("\npipeline on {cores} cores              wall s   MB/s (wall)   CPU-s   CPU-s/GB");
    for (name, w, c) in [
        ("backup  (read→chunk→hash→zstd-1→seal)", backup_wall, backup_cpu),
        ("restore (read→decrypt→unzstd→hash→write)", restore_wall, restore_cpu),
    ] {
        println!("  {name:<40} {w:7.2} {:10.0} {c:9.2} {:9.3}", len as f64 / 1e6 / w, c / gb);
    }
    println!("stored {:.0} MB for {:.0} MB of plaintext", pack_len as f64 / 1e6, len as f64 / 1e6);
}
