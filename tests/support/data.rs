//! Deterministic test data: a seeded generator, incompressible files written in pieces (so large
//! files never sit in memory), and a SQL-dump-like text file whose rows can be changed by version.

use std::io::Write;
use std::path::Path;

/// SplitMix64: tiny, seedable and good enough that its output does not compress.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// A number in `range`.
    pub fn between(&mut self, range: std::ops::Range<u64>) -> u64 {
        range.start + self.below(range.end - range.start)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut words = buf.chunks_exact_mut(8);
        for w in &mut words {
            w.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = words.into_remainder();
        let last = self.next_u64().to_le_bytes();
        let n = rest.len();
        rest.copy_from_slice(&last[..n]);
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0; n];
        self.fill(&mut v);
        v
    }
}

/// Writes `len` pseudo-random (incompressible) bytes from `seed` to `path`.
pub fn write_random_file(path: &Path, seed: u64, len: u64) {
    let mut rng = Rng::new(seed);
    let mut f = std::fs::File::create(path).expect("create data file");
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill(&mut buf[..n]);
        f.write_all(&buf[..n]).expect("write data file");
        left -= n as u64;
    }
}

/// Whether two files hold the same bytes, compared a piece at a time.
pub fn same_contents(a: &Path, b: &Path) -> bool {
    same_stream(std::fs::File::open(a).expect("open to compare"), b)
}

/// Whether a stream (a child's standard output, say) holds exactly the bytes of a file, compared a
/// piece at a time so that neither is ever held whole, nor written to disk a second time.
pub fn same_stream(a: impl std::io::Read, b: &Path) -> bool {
    use std::io::Read;
    let mut fa = std::io::BufReader::with_capacity(1 << 20, a);
    let mut fb = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(b).expect("open to compare"));
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let na = read_full(&mut fa, &mut ba);
        let nb = read_full(&mut fb, &mut bb);
        if na != nb || ba[..na] != bb[..nb] {
            return false;
        }
        if na == 0 {
            return true;
        }
    }

    fn read_full(r: &mut impl Read, buf: &mut [u8]) -> usize {
        let mut filled = 0;
        while filled < buf.len() {
            match r.read(&mut buf[filled..]).expect("read to compare") {
                0 => break,
                n => filled += n,
            }
        }
        filled
    }
}

/// A table dump in the style of `pg_dump --inserts`: one `INSERT` per row, each row's balance and
/// filler derived from (row, version), so a row changes exactly when its version changes.
/// The filler is random text (base64 alphabet): it compresses by a few tens of percent, not 100×.
#[derive(Debug)]
pub struct SqlDump {
    pool: Vec<u8>,
}

impl SqlDump {
    const ALPHABET: &'static [u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn new(seed: u64) -> Self {
        // Fillers are cut from a 16 MiB pool at random offsets: cheap to produce, and no two rows
        // within a compression window share one.
        let mut rng = Rng::new(seed);
        let pool = (0..16 << 20).map(|_| Self::ALPHABET[(rng.next_u64() & 63) as usize]).collect();
        Self { pool }
    }

    /// Appends row `row` at `version` to `out`.
    pub fn push_row(&self, out: &mut Vec<u8>, row: u64, version: u64) {
        let mut rng = Rng::new(row.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ version.wrapping_mul(0xd1b5_4a32_d192_ed03));
        let cents = rng.below(100_000_000);
        let filler_len = rng.between(48..96) as usize;
        let at = rng.below((self.pool.len() - filler_len) as u64) as usize;
        write!(out, "INSERT INTO accounts VALUES ({row}, 'name_{row}', {}.{:02}, '", cents / 100, cents % 100)
            .expect("write to memory");
        out.extend_from_slice(&self.pool[at..at + filler_len]);
        out.extend_from_slice(b"');\n");
    }

    /// Writes `rows` rows to `path`, each at the version `version_of(row)`; returns the file size.
    pub fn write(&self, path: &Path, rows: u64, version_of: impl Fn(u64) -> u64) -> u64 {
        let mut f = std::fs::File::create(path).expect("create dump");
        let mut buf = Vec::with_capacity(2 << 20);
        let header = "-- PostgreSQL database dump\n\nCREATE TABLE accounts (id bigint PRIMARY KEY, name text, \
                      balance numeric(12,2), note text);\n\n";
        buf.extend_from_slice(header.as_bytes());
        let mut size = 0u64;
        for row in 0..rows {
            self.push_row(&mut buf, row, version_of(row));
            if buf.len() >= 1 << 20 {
                f.write_all(&buf).expect("write dump");
                size += buf.len() as u64;
                buf.clear();
            }
        }
        buf.extend_from_slice(b"\n-- PostgreSQL database dump complete\n");
        f.write_all(&buf).expect("write dump");
        size + buf.len() as u64
    }
}
