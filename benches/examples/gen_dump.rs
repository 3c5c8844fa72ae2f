//! Writes a database-dump-like file for the scale benchmark (`benches/scale.sh`): SQL `COPY` text
//! from [`cairn_benches::sql_text`] (compresses 3–5× with zstd), and, with `--changed`, the same
//! file with 4 KiB rewritten in every 4 MiB, as an hourly dump of a slowly changing database
//! differs from the one before (a few percent of its chunks change).
//!
//!   cargo run --release -p cairn-benches --example gen_dump -- OUT MIB [SEED] [--changed]

use std::io::Write;

const STRIPE: usize = 4 * 1024 * 1024;
const CHANGE: usize = 4 * 1024;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let changed = args.iter().any(|a| a == "--changed");
    let rest: Vec<&String> = args.iter().filter(|a| *a != "--changed").collect();
    let usage = "usage: gen_dump OUT MIB [SEED] [--changed]";
    let out = rest.first().ok_or(usage)?;
    let mib: usize = rest.get(1).ok_or(usage)?.parse()?;
    let seed: u64 = rest.get(2).map(|s| s.parse()).transpose()?.unwrap_or(14);
    let mut text = cairn_benches::sql_text(mib << 20, seed);
    if changed {
        let new = cairn_benches::sql_text(text.len() / STRIPE * CHANGE + CHANGE, seed ^ 0x0c4a_96ed);
        for (i, stripe) in text.chunks_mut(STRIPE).enumerate() {
            // Somewhere in the middle of each stripe, never at the same place twice.
            let at = (STRIPE / 3 + i * 7919 % (STRIPE / 3)).min(stripe.len().saturating_sub(CHANGE));
            let n = CHANGE.min(stripe.len() - at);
            stripe[at..at + n].copy_from_slice(&new[i * CHANGE..i * CHANGE + n]);
        }
    }
    let temp = format!("{out}.tmp");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&temp)?);
    file.write_all(&text)?;
    file.into_inner()?.sync_all()?;
    std::fs::rename(&temp, out)?;
    Ok(())
}
