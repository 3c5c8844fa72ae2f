//! `cairn init`.

use anyhow::Result;
use cairn_engine::InitOptions;
use cairn_format::chunker::ChunkerParams;
use cairn_format::key::KdfParams;

use crate::{GlobalArgs, exit, output, password};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// zstd level for new data (1 fast ... 19 small; 0 stores uncompressed)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(-7..=19))]
    pub compression_level: i32,
    /// argon2id memory in KiB for the key file (lower values weaken the password protection)
    #[arg(long, default_value_t = KdfParams::DEFAULT.m_cost, value_name = "KIB")]
    pub kdf_memory_kib: u32,
    /// argon2id passes for the key file
    #[arg(long, default_value_t = KdfParams::DEFAULT.t_cost, value_name = "N")]
    pub kdf_time: u32,
    /// Content-defined chunk sizes in KiB as MIN,AVG,MAX (default 128,256,1024), fixed for the
    /// repository's lifetime. Smaller chunks store less for small edits but make the index larger.
    /// Needs MIN < AVG < MAX with MIN 1..=1024, AVG 1..=4096, MAX 1..=16384
    #[arg(long, value_name = "MIN,AVG,MAX", value_parser = parse_chunk_size)]
    pub chunk_size: Option<ChunkerParams>,
    /// Cut and name data as the repository given by --from-repo does (its chunk sizes, chunker
    /// seed and blob-id key; never its data key), so that `copy` between the two reads only what
    /// is missing and dumps deduplicate across them
    #[arg(long, requires = "from_repo", conflicts_with = "chunk_size")]
    pub copy_chunker_params: bool,
    #[command(flatten)]
    pub from: super::copy::FromRepoArgs,
}

/// Parses `--chunk-size MIN,AVG,MAX` (KiB) into validated chunker parameters.
fn parse_chunk_size(s: &str) -> Result<ChunkerParams, String> {
    let kib: Vec<u32> = s
        .split(',')
        .map(|part| part.trim().parse::<u32>().map_err(|_| format!("'{part}' is not a whole number of KiB")))
        .collect::<Result<_, _>>()?;
    let [min, avg, max] = kib[..] else {
        return Err(format!("expected three sizes in KiB as MIN,AVG,MAX (e.g. 512,1024,4096), got {}", kib.len()));
    };
    let bytes = |k: u32| k.checked_mul(1024).ok_or_else(|| format!("{k} KiB is too large"));
    ChunkerParams { min_size: bytes(min)?, avg_size: bytes(avg)?, max_size: bytes(max)? }
        .validate()
        .map_err(|e| format!("{e} (limits: MIN 1..=1024, AVG 1..=4096, MAX 1..=16384 KiB, MIN < AVG < MAX)"))
}

pub fn run(global: &GlobalArgs, args: Args) -> Result<u8> {
    let location = super::location(global)?;
    // As with restic, --from-repo matters only with --copy-chunker-params.
    let source = if args.copy_chunker_params { Some(args.from.open(global)?) } else { None };
    let password = password::get(global, true)?;
    let init = InitOptions {
        kdf: KdfParams::with_costs(args.kdf_memory_kib, args.kdf_time),
        compression_level: args.compression_level,
        chunker: source.as_ref().map(|s| s.config().chunker).or(args.chunk_size),
        blob_ids_from: source.as_ref().map(|s| s.key().clone()),
    };
    let (_, report) =
        cairn_engine::commands::init::init(&location, password.as_bytes(), &init, &super::open_options(global))?;
    if global.json {
        output::json(&report)?;
    } else if !global.quiet {
        output::line(&format!("created cairn repository {} at {}", &report.repository_id[..10], report.location))?;
        output::line("Keep the password safe: without it the data cannot be read back.")?;
    }
    Ok(exit::OK)
}
