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
    /// Print a systemd service and timer that run `cairn --profile PROFILE run`
    #[arg(long, value_name = "PROFILE")]
    pub systemd: Option<String>,
    /// When the timer fires (a systemd calendar expression such as daily, hourly, *-*-* 03:00)
    #[arg(long, value_name = "SPEC", default_value = "daily", requires = "systemd")]
    pub on_calendar: String,
    /// Write cairn-PROFILE.service and cairn-PROFILE.timer into this folder instead of printing them
    #[arg(long, value_name = "DIR", requires = "systemd")]
    pub unit_dir: Option<PathBuf>,
}

/// The service and timer for `cairn --profile NAME run`.
pub fn systemd_units(binary: &str, profile: &str, on_calendar: &str) -> (String, String) {
    let service = format!(
        "[Unit]
Description=cairn backup: jobs of profile {profile}
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
# The profile names the repository and the password file or command; nothing secret is here.
ExecStart={binary} --profile {profile} run --quiet
# A system service has no HOME: keep the local cache (it speeds up backups and makes percentage
# check subsets rotate) in /var/cache/cairn unless the profile names another.
CacheDirectory=cairn
Environment=CAIRN_CACHE_DIR=%C/cairn
Nice=10
IOSchedulingClass=idle
"
    );
    let timer = format!(
        "[Unit]
Description=cairn backup: run profile {profile} on schedule

[Timer]
OnCalendar={on_calendar}
RandomizedDelaySec=10min
Persistent=true

[Install]
WantedBy=timers.target
"
    );
    (service, timer)
}

pub fn run(global: &GlobalArgs, args: Args) -> Result<u8> {
    if args.completions.is_none() && args.man.is_none() && args.systemd.is_none() {
        bail!("nothing to generate: give --completions SHELL, --man DIR or --systemd PROFILE");
    }
    if let Some(profile) = &args.systemd {
        if profile.is_empty() || !profile.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
            bail!("--systemd '{profile}': a profile name for a unit holds only letters, digits, '-', '_' and '.'");
        }
        let binary = std::env::current_exe().context("finding the cairn binary")?;
        let (service, timer) = systemd_units(&binary.to_string_lossy(), profile, &args.on_calendar);
        match &args.unit_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
                for (ext, text) in [("service", &service), ("timer", &timer)] {
                    let path = dir.join(format!("cairn-{profile}.{ext}"));
                    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
                }
                if !global.quiet && !global.json {
                    output::line(&format!(
                        "cairn-{profile}.service and cairn-{profile}.timer written to {}",
                        dir.display()
                    ))?;
                }
            }
            None => {
                output::line(&format!("# /etc/systemd/system/cairn-{profile}.service"))?;
                std::io::Write::write_all(&mut std::io::stdout().lock(), service.as_bytes())?;
                output::line(&format!("\n# /etc/systemd/system/cairn-{profile}.timer"))?;
                std::io::Write::write_all(&mut std::io::stdout().lock(), timer.as_bytes())?;
            }
        }
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
