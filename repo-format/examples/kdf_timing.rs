//! Prints the wall time of argon2id derivations with the default key-file parameters, which is what
//! opening a repository costs before anything else happens. Informational; run it in release mode:
//! `cargo run --release -p cairn-format --example kdf_timing`.

use std::time::Instant;

use cairn_format::FormatError;
use cairn_format::key::{KdfParams, SALT_LEN};

fn main() -> Result<(), FormatError> {
    let params = KdfParams::DEFAULT;
    println!("argon2id m_cost={} KiB t_cost={} p_cost={}", params.m_cost, params.t_cost, params.p_cost);
    let mut times = Vec::new();
    for run in 0..5u8 {
        let start = Instant::now();
        let key = params.derive(b"correct horse", &[run; SALT_LEN])?;
        let elapsed = start.elapsed();
        std::hint::black_box(key);
        println!("derive {}: {:.1} ms", run + 1, elapsed.as_secs_f64() * 1000.0);
        times.push(elapsed);
    }
    times.sort();
    println!("median: {:.1} ms", times[times.len() / 2].as_secs_f64() * 1000.0);
    Ok(())
}
