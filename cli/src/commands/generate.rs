//! `cairn generate`: shell completions and man pages, both derived from the command line's own
//! definition so they never disagree with it.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::CommandFactory;
use clap_complete::Shell;

use crate::{GlobalArgs, exit, output};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the completion script for this shell on standard output
    #[arg(long, value_name = "SHELL")]
    pub completions: Option<Shell>,
    /// Write man pages (cairn.1 and one per command) into this folder
    #[arg(long, value_name = "DIR")]
    pub man: Option<PathBuf>,
}

pub fn run(global: &GlobalArgs, args: Args) -> Result<u8> {
    if args.completions.is_none() && args.man.is_none() {
        bail!("nothing to generate: give --completions SHELL or --man DIR");
    }
    if let Some(shell) = args.completions {
        let mut cmd = crate::Cli::command();
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut cmd, "cairn", &mut script);
        std::io::Write::write_all(&mut std::io::stdout().lock(), &script)?;
    }
    if let Some(dir) = args.man {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        clap_mangen::generate_to(crate::Cli::command(), &dir)
            .with_context(|| format!("writing man pages into {}", dir.display()))?;
        if !global.quiet && !global.json {
            output::line(&format!("man pages written to {}", dir.display()))?;
        }
    }
    Ok(exit::OK)
}
