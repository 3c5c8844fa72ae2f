//! Content-defined chunking parameters and boundaries (FastCDC 2020, gear table keyed by the
//! repository's chunker seed so chunk sizes do not fingerprint content across repositories).

use fastcdc::v2020::{FastCDC, Normalization};

use crate::{FormatError, Result};

/// FastCDC size limits, stored in the repository config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ChunkerParams {
    pub min_size: u32,
    pub avg_size: u32,
    pub max_size: u32,
}

impl ChunkerParams {
    /// The default: 128 KiB / 256 KiB / 1 MiB. Chosen by measurement on hourly database dumps (see
    /// the README): a quarter of the bytes a 1 MiB average adds per hour, at the same speed.
    pub const DEFAULT: ChunkerParams =
        ChunkerParams { min_size: 128 * 1024, avg_size: 256 * 1024, max_size: 1024 * 1024 };

    /// Checks the limits the chunker needs: even sizes, min < avg < max, each inside FastCDC's range.
    pub fn validate(self) -> Result<Self> {
        let what = "chunker parameters";
        let (min, avg, max) = (self.min_size as usize, self.avg_size as usize, self.max_size as usize);
        let in_range = (fastcdc::v2020::MINIMUM_MIN..=fastcdc::v2020::MINIMUM_MAX).contains(&min)
            && (fastcdc::v2020::AVERAGE_MIN..=fastcdc::v2020::AVERAGE_MAX).contains(&avg)
            && (fastcdc::v2020::MAXIMUM_MIN..=fastcdc::v2020::MAXIMUM_MAX).contains(&max);
        if !in_range {
            return Err(FormatError::Invalid { what, reason: "size outside FastCDC's limits" });
        }
        if min % 2 != 0 || avg % 2 != 0 || max % 2 != 0 {
            return Err(FormatError::Invalid { what, reason: "sizes must be even" });
        }
        if !(min < avg && avg < max) {
            return Err(FormatError::Invalid { what, reason: "sizes must satisfy min < avg < max" });
        }
        Ok(self)
    }
}

/// Splits buffers into chunks with fixed parameters and seed.
#[derive(Debug, Clone, Copy)]
pub struct Chunker {
    params: ChunkerParams,
    seed: u64,
}

impl Chunker {
    /// A chunker; `params` must have passed [`ChunkerParams::validate`].
    pub fn new(params: ChunkerParams, seed: u64) -> Self {
        Self { params, seed }
    }

    /// The parameters.
    pub fn params(&self) -> ChunkerParams {
        self.params
    }

    /// Chunk lengths covering `buf` completely. When `at_end` is false the last chunk is left out if
    /// it was cut only because the buffer ended, and the returned total is the number of bytes
    /// consumed; the caller keeps the rest and prepends it to the next buffer. Boundaries depend
    /// only on the bytes from the start of a chunk, so this gives the same cut points as one pass
    /// over the whole stream.
    pub fn cut(&self, buf: &[u8], at_end: bool) -> (Vec<usize>, usize) {
        let mut lengths = Vec::new();
        let mut consumed = 0usize;
        let cdc = FastCDC::with_level_and_seed(
            buf,
            self.params.min_size as usize,
            self.params.avg_size as usize,
            self.params.max_size as usize,
            Normalization::Level1,
            self.seed,
        );
        for chunk in cdc {
            let end = chunk.offset + chunk.length;
            if !at_end && end == buf.len() && chunk.length < self.params.max_size as usize {
                break;
            }
            lengths.push(chunk.length);
            consumed = end;
        }
        (lengths, consumed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(n: usize, mut x: u64) -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn streaming_cuts_match_one_pass() {
        let params = ChunkerParams { min_size: 2048, avg_size: 8192, max_size: 32768 }.validate().expect("valid");
        let c = Chunker::new(params, 42);
        let data = pseudo_random(1 << 20, 99);
        let (whole, total) = c.cut(&data, true);
        assert_eq!(total, data.len());
        // Feed the same data in uneven buffers, carrying the tail.
        let mut streamed = Vec::new();
        let mut carry: Vec<u8> = Vec::new();
        for piece in data.chunks(50_000) {
            carry.extend_from_slice(piece);
            let (lens, used) = c.cut(&carry, false);
            streamed.extend(lens);
            carry.drain(..used);
        }
        let (lens, _) = c.cut(&carry, true);
        streamed.extend(lens);
        assert_eq!(streamed, whole);
    }

    #[test]
    fn seed_changes_boundaries() {
        let params = ChunkerParams { min_size: 2048, avg_size: 8192, max_size: 32768 };
        let data = pseudo_random(1 << 19, 5);
        assert_ne!(Chunker::new(params, 1).cut(&data, true).0, Chunker::new(params, 2).cut(&data, true).0);
    }

    #[test]
    fn bad_params_refused() {
        assert!(ChunkerParams { min_size: 3, avg_size: 8192, max_size: 32768 }.validate().is_err());
        assert!(ChunkerParams { min_size: 8192, avg_size: 8192, max_size: 32768 }.validate().is_err());
        assert!(ChunkerParams::DEFAULT.validate().is_ok());
    }
}
