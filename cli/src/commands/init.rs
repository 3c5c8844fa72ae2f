//! `cairn init`.

use anyhow::Result;
use cairn_engine::InitOptions;
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
}

pub fn run(global: &GlobalArgs, args: Args) -> Result<u8> {
    let location = super::location(global)?;
    let password = password::get(global, true)?;
    let init = InitOptions {
        kdf: KdfParams { m_cost: args.kdf_memory_kib, t_cost: args.kdf_time, p_cost: 1 },
        compression_level: args.compression_level,
        chunker: None,
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
