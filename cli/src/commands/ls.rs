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

/// Go's `os.FileMode` bits for a Unix mode, which restic's JSON writes as `mode`.
fn go_file_mode(kind: &str, mode: u32) -> u64 {
    let mut m = u64::from(mode & 0o777);
    m |= match kind {
        "dir" => 1 << 31,
        "symlink" => 1 << 27,
        "blockdev" => 1 << 26,
        "chardev" => (1 << 26) | (1 << 21),
        "fifo" => 1 << 25,
        "socket" => 1 << 24,
        _ => 0,
    };
    for (bit, go) in [(0o4000, 1u64 << 23), (0o2000, 1 << 22), (0o1000, 1 << 20)] {
        if mode & bit != 0 {
            m |= go;
        }
    }
    m
}

/// An entry as restic's `ls --json` and `find --json` write a node: `name`, `type`, `path`, `uid`,
/// `gid`, `size`, `mode` (Go's file mode bits), `permissions`, `mtime` (RFC 3339), `user`, `group`,
/// `struct_type: "node"`; cairn's own fields follow (`unix_mode`, `mtime_ns`, `link_target`).
pub fn node_json(e: &LsEntry) -> serde_json::Value {
    let name = e.path.rsplit('/').find(|p| !p.is_empty()).unwrap_or("/");
    let mut v = serde_json::json!({
        "name": name,
        "type": e.kind,
        "path": e.path,
        "uid": e.uid,
        "gid": e.gid,
        "user": e.user,
        "group": e.group,
        "mode": go_file_mode(e.kind, e.mode),
        "permissions": mode_string(e.kind, e.mode),
        "mtime": output::rfc3339(e.mtime_ns, None),
        "struct_type": "node",
        "unix_mode": e.mode,
        "mtime_ns": e.mtime_ns,
    });
    if e.kind == "file" {
        v["size"] = e.size.into();
    }
    if let Some(t) = &e.link_target {
        v["link_target"] = t.as_str().into();
    }
    v
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
    let filter = args.filter.to_filter();
    // As restic: the snapshot first, then its entries, one JSON object per line.
    let spec = if global.json {
        let (id, snapshot) = cairn_engine::commands::snapshots::find_snapshot(&repo, &args.snapshot, &filter)?;
        let mut v = output::snapshot_json(&id, &snapshot)?;
        v["struct_type"] = "snapshot".into();
        output::json(&v)?;
        id.to_hex()
    } else {
        args.snapshot.clone()
    };
    let mut failure: Option<anyhow::Error> = None;
    let mut each = |e: &LsEntry| -> cairn_engine::Result<()> {
        let printed = if global.json {
            output::json(&node_json(e))
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
    let result = cairn_engine::commands::ls::ls(&repo, &spec, &args.path, &filter, &mut each);
    if let Some(f) = failure {
        return Err(f);
    }
    result?;
    Ok(exit::OK)
}
