//! `cairn ls`.

use anyhow::Result;
use cairn_engine::commands::ls::LsEntry;

use super::FilterArgs;
use crate::{GlobalArgs, exit, output};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Snapshot: `latest`, an id or a unique prefix
    pub snapshot: String,
    /// Folder or file inside the snapshot (default: everything)
    #[arg(default_value = "/")]
    pub path: std::ffi::OsString,
    /// Show mode, owner, size and time
    #[arg(short, long)]
    pub long: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// The `ls -l` mode string, with the setuid, setgid and sticky bits shown as `ls -l` shows them
/// (`s`/`S` in the owner's and group's execute place, `t`/`T` in the others').
pub fn mode_string(kind: &str, mode: u32) -> String {
    let t = match kind {
        "dir" => 'd',
        "symlink" => 'l',
        "blockdev" => 'b',
        "chardev" => 'c',
        "fifo" => 'p',
        "socket" => 's',
        _ => '-',
    };
    let mut s = String::from(t);
    for (shift, special, set) in [(6, 0o4000, 's'), (3, 0o2000, 's'), (0, 0o1000, 't')] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(match (bits & 1 != 0, mode & special != 0) {
            (true, true) => set,
            (false, true) => set.to_ascii_uppercase(),
            (true, false) => 'x',
            (false, false) => '-',
        });
    }
    s
}

/// One entry as `ls --long` prints it; names are quoted when they hold control characters.
pub fn long_line(e: &LsEntry) -> String {
    let owner = if e.user.is_empty() { e.uid.to_string() } else { e.user.clone() };
    let group = if e.group.is_empty() { e.gid.to_string() } else { e.group.clone() };
    let link = e.link_target.as_ref().map(|t| format!(" -> {}", output::quote(t))).unwrap_or_default();
    format!(
        "{} {owner:>8} {group:>8} {:>12} {} {}{link}",
        mode_string(e.kind, e.mode),
        e.size,
        output::time(e.mtime_ns),
        output::quote(&e.path)
    )
}

pub fn run(global: &GlobalArgs, args: Args) -> Result<u8> {
    let repo = super::open(global)?;
    let mut failure: Option<anyhow::Error> = None;
    let mut each = |e: &LsEntry| -> cairn_engine::Result<()> {
        let printed = if global.json {
            output::json(e)
        } else if args.long {
            output::line(&long_line(e))
        } else {
            output::line(&output::quote(&e.path))
        };
        printed.map_err(|err| {
            failure = Some(err);
            cairn_engine::Error::new(cairn_engine::ErrorKind::Interrupted, "output closed")
        })
    };
    let result = cairn_engine::commands::ls::ls(&repo, &args.snapshot, &args.path, &args.filter.to_filter(), &mut each);
    if let Some(f) = failure {
        return Err(f);
    }
    result?;
    Ok(exit::OK)
}
