//! Shared inputs for cairn's benchmarks: deterministic, seeded corpora that look like what cairn
//! backs up (database dumps mixed with already-compressed or encrypted content).
//!
//! Benchmarks must be comparable across runs and machines, so nothing here reads the clock, the
//! file system or an operating-system RNG, except [`gen_repo`], which writes a repository (its
//! plaintext is deterministic; keys and nonces are fresh, as in any repository). The end-to-end comparison with restic and borg lives in
//! `benches/compare.sh`, not here.

pub mod gen_repo;

/// A small, fast, seeded xorshift64 generator: good enough to make bytes zstd cannot shrink, and
/// identical on every run.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator; a zero seed is replaced because xorshift would stay at zero.
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 { 0x9e37_79b9_7f4a_7c15 } else { seed })
    }

    /// The next 64 pseudo-random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Fills `out` with pseudo-random bytes.
    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

const WORDS: &str = "alpha bravo invoice customer shipped pending refund berlin lisbon oslo premium basic \
                     warehouse order note returned express standard north south";

/// `len` bytes of text shaped like the `COPY ... FROM stdin` section of a `pg_dump`: tab-separated
/// rows of integers, a date, and a few words. It compresses roughly 3–5× with zstd, like real dumps.
pub fn sql_text(len: usize, seed: u64) -> Vec<u8> {
    let words: Vec<&str> = WORDS.split_whitespace().collect();
    let mut rng = XorShift::new(seed);
    let mut out = Vec::with_capacity(len + 256);
    let mut row: u64 = 1;
    while out.len() < len {
        let r = rng.next_u64();
        let picked: Vec<&str> =
            (0..3 + (r % 5) as usize).map(|i| words[((r >> (8 * i)) as usize) % words.len()]).collect();
        let line = format!(
            "{row}\t{}\t{}\t2026-{:02}-{:02} {:02}:{:02}:{:02}\t{}\n",
            r % 1000,
            (r >> 10) as i32 % 100_000,
            1 + (r >> 20) % 12,
            1 + (r >> 24) % 28,
            (r >> 30) % 24,
            (r >> 36) % 60,
            (r >> 42) % 60,
            picked.join(" ")
        );
        out.extend_from_slice(line.as_bytes());
        row += 1;
    }
    out.truncate(len);
    out
}

/// `len` bytes alternating 4 MiB stripes of [`sql_text`] and pseudo-random bytes, so that chunks
/// of every size see both kinds of content (half compressible, half not).
pub fn mixed_corpus(len: usize, seed: u64) -> Vec<u8> {
    const STRIPE: usize = 4 * 1024 * 1024;
    let text = sql_text(len.div_ceil(2) + STRIPE, seed);
    let mut rng = XorShift::new(seed ^ 0x5eed);
    let mut out = vec![0u8; len];
    let mut text_at = 0;
    for (i, stripe) in out.chunks_mut(STRIPE).enumerate() {
        if i % 2 == 0 {
            stripe.copy_from_slice(&text[text_at..text_at + stripe.len()]);
            text_at += stripe.len();
        } else {
            rng.fill(stripe);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpora_are_deterministic_and_sized() {
        assert_eq!(mixed_corpus(10 << 20, 7), mixed_corpus(10 << 20, 7));
        assert_eq!(mixed_corpus(10 << 20, 7).len(), 10 << 20);
        assert_eq!(sql_text(1000, 1).len(), 1000);
        assert!(sql_text(1000, 1).is_ascii());
    }
}
