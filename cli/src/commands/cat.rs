//! `cairn cat`: decoded objects as JSON, for debugging. Never prints key material.

use anyhow::{Result, bail};
use cairn_engine::commands::cat;

use crate::{GlobalArgs, exit, output};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to show: config, key, snapshot, index, pack or tree
    pub kind: String,
    /// Id or unique prefix (not for config)
    pub id: Option<String>,
}

pub fn run(global: &GlobalArgs, args: Args) -> Result<u8> {
    let repo = super::open(global)?;
    let id = || -> Result<&str> {
        match args.id.as_deref() {
            Some(i) => Ok(i),
            None => bail!("cat {} needs an id", args.kind),
        }
    };
    match args.kind.as_str() {
        "config" => output::json(repo.config())?,
        "key" => output::json(&cat::key(&repo, id()?)?)?,
        "snapshot" => {
            let (id, s) = cat::snapshot(&repo, id()?)?;
            // restic's `cat snapshot` prints the snapshot itself; `snapshot` keeps cairn's earlier shape.
            let mut v = output::snapshot_json(&id, &s)?;
            v["snapshot"] = serde_json::to_value(&s)?;
            output::json(&v)?
        }
        "index" => {
            let (id, f) = cat::index(&repo, id()?)?;
            output::json(&serde_json::json!({ "id": id, "index": f }))?
        }
        "pack" => output::json(&cat::pack(&repo, id()?)?)?,
        "tree" => {
            let names = cat::tree_names(&repo, id()?)?;
            let v: Vec<_> = names.iter().map(|(n, k)| serde_json::json!({"name": n, "type": k})).collect();
            output::json(&v)?
        }
        other => bail!("unknown object kind '{other}': use config, key, snapshot, index, pack or tree"),
    }
    Ok(exit::OK)
}
