//! `init`: create a repository.

use serde::Serialize;

use crate::backend::Location;
use crate::error::Result;
use crate::repository::{InitOptions, OpenOptions, Repository};

/// What `init` created.
#[derive(Debug, Clone, Serialize)]
pub struct InitReport {
    pub location: String,
    pub repository_id: String,
    pub key_id: String,
}

/// Creates a repository at `location` protected by `password`.
pub fn init(
    location: &Location,
    password: &[u8],
    init: &InitOptions,
    open: &OpenOptions,
) -> Result<(Repository, InitReport)> {
    let repo = Repository::init(location, password, init, open)?;
    let report = InitReport {
        location: location.to_string(),
        repository_id: cairn_format::id::to_hex(&repo.config().repository_id),
        key_id: repo.key_id().to_hex(),
    };
    Ok((repo, report))
}
