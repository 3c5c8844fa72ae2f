//! `cairn find`.

use anyhow::{Result, bail};
use cairn_engine::commands::find::{FindOptions, FindTarget, Found, find};

use super::FilterArgs;
use super::backup::parse_time;
use crate::output::{self, Sink};
use crate::{GlobalArgs, exit};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Patterns to look for (`*.sql`, `/etc/**/passwd`, ...), or object ids with --blob / --tree
    #[arg(value_name = "PATTERN")]
    pub patterns: Vec<String>,
    /// Search only this snapshot (repeatable; default: all)
    #[arg(short, long = "snapshot", value_name = "ID")]
    pub snapshots: Vec<String>,
    /// Only entries modified at or after this time (`2026-11-22 04:00:00` or RFC 3339)
    #[arg(short = 'O', long, value_name = "TIME")]
    pub oldest: Option<String>,
    /// Only entries modified at or before this time
    #[arg(short = 'N', long, value_name = "TIME")]
    pub newest: Option<String>,
    /// The arguments are data blob ids (or prefixes): list the files using them
    #[arg(long, conflicts_with = "tree")]
    pub blob: bool,
    /// The arguments are tree ids (or prefixes): list the folders stored as them
    #[arg(long)]
    pub tree: bool,
    /// Show mode, owner, size and time
    #[arg(short, long)]
    pub long: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// Prints JSON values as one array, element by element, as they arrive.
struct JsonArray {
    started: bool,
}

impl JsonArray {
    fn push<T: serde::Serialize>(&mut self, v: &T) -> Result<()> {
        let sep = if self.started { "," } else { "[" };
        self.started = true;
        output::line(&format!("{sep}{}", serde_json::to_string(v)?))
    }

    fn close(self) -> Result<()> {
        output::line(if self.started { "]" } else { "[]" })
    }
}

fn print_text(found: &Found, long: bool) -> Result<()> {
    match found {
        Found::Matches(m) => {
            output::line(&format!(
                "Found matching entries in snapshot {} from {}",
                m.snapshot.short(),
                output::time(m.time_ns)
            ))?;
            for e in &m.matches {
                if long {
                    output::line(&super::ls::long_line(e))?;
                } else {
                    output::line(&output::quote(&e.path))?;
                }
            }
            output::line("")
        }
        Found::Object(u) => {
            output::line(&format!("Found {} {}", u.object_type, u.id))?;
            let what = if u.object_type == "tree" { "folder" } else { "file" };
            output::line(&format!(" ... in {what} {}", output::quote(&u.path)))?;
            output::line(&format!("     (tree {})", u.parent_tree))?;
            output::line(&format!(" ... in snapshot {} ({})", u.snapshot.short(), output::time(u.time_ns)))
        }
    }
}

pub fn run(global: &GlobalArgs, args: Args) -> Result<u8> {
    if args.patterns.is_empty() {
        bail!("give at least one pattern (or object id with --blob / --tree)");
    }
    let target = if args.blob {
        FindTarget::Blobs(args.patterns.clone())
    } else if args.tree {
        FindTarget::Trees(args.patterns.clone())
    } else {
        FindTarget::Patterns(args.patterns.clone())
    };
    let opts = FindOptions {
        snapshots: args.snapshots.clone(),
        filter: args.filter.to_filter(),
        oldest_ns: args.oldest.as_deref().map(parse_time).transpose()?,
        newest_ns: args.newest.as_deref().map(parse_time).transpose()?,
    };
    let repo = super::open(global)?;
    let mut sink = Sink::default();
    let mut array = JsonArray { started: false };
    let mut each = |f: &Found| {
        let printed = if global.json {
            match f {
                Found::Matches(m) => array.push(&serde_json::json!({
                    "matches": m.matches.iter().map(super::ls::node_json).collect::<Vec<_>>(),
                    "hits": m.hits,
                    "snapshot": m.snapshot,
                    "time_ns": m.time_ns,
                })),
                Found::Object(u) => array.push(u),
            }
        } else {
            print_text(f, args.long)
        };
        sink.put(printed)
    };
    let result = find(&repo, &target, &opts, &mut each);
    let damaged = sink.finish(result)?;
    if global.json {
        array.close()?;
    }
    for d in &damaged {
        eprintln!("warning: {d}");
    }
    Ok(exit::OK)
}
