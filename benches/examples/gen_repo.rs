//! Writes a large, valid repository directly (see `cairn_benches::gen_repo`): N small data blobs
//! in ten snapshots, for the scale benchmark `benches/scale.sh`.
//!
//!   cairn init -r REPO
//!   CAIRN_PASSWORD=... cargo run --release -p cairn-benches --example gen_repo -- REPO BLOBS [SEED]
//!
//! REPO is a local repository just made with `cairn init` (it must hold no snapshot); SEED
//! defaults to 14. The repository passes `cairn check`, also with `--read-data`.

use std::time::Instant;

use cairn_engine::backend::Location;
use cairn_engine::{OpenOptions, Repository};

fn main() -> Result<(), cairn_benches::gen_repo::GenError> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: gen_repo REPO BLOBS [SEED]   (with CAIRN_PASSWORD set)";
    let path = args.next().ok_or(usage)?;
    let blobs: u64 = args.next().ok_or(usage)?.parse()?;
    let seed: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(14);
    let password = std::env::var("CAIRN_PASSWORD").map_err(|_| usage)?;
    let location = Location::Local(std::path::PathBuf::from(&path));
    // No cache folder: the generator never reads the merged index.
    let repo = Repository::open(&location, password.as_bytes(), &OpenOptions { cache_dir: None })?;
    let started = Instant::now();
    cairn_benches::gen_repo::generate(&repo, blobs, seed, |n, id| {
        eprintln!(
            "snapshot {n} of {}: {} ({:.0} s)",
            cairn_benches::gen_repo::SNAPSHOTS,
            id.short(),
            started.elapsed().as_secs_f64()
        );
    })?;
    Ok(())
}
