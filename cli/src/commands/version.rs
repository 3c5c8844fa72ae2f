//! `cairn version`: the program's version, as `restic version` prints it.

use anyhow::Result;

use crate::{GlobalArgs, exit, output};

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(global: &GlobalArgs, _args: Args) -> Result<u8> {
    let version = env!("CARGO_PKG_VERSION");
    let (os, arch) = (std::env::consts::OS, std::env::consts::ARCH);
    if global.json {
        output::json(&serde_json::json!({ "version": version, "os": os, "arch": arch }))?;
    } else {
        output::line(&format!("cairn {version} on {os}/{arch}"))?;
    }
    Ok(exit::OK)
}
