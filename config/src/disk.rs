//! `[edge.disk]`: the edges' disk cache tier, below their memory.

use crate::{ConfigError, ConfigSource};
use serde::Deserialize;
use std::path::PathBuf;

/// The smallest disk tier worth having: a few large objects.
pub const MIN_DISK_BYTES: u64 = 1 << 20;

/// `[edge.disk]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DiskFile {
    /// The directory the edges keep cached objects in, relative to the
    /// config file; each edge uses a folder of its own in it, named by its
    /// address.
    pub path: String,
    /// The most each edge's cached files may occupy, in bytes.
    pub max_bytes: u64,
}

impl DiskFile {
    /// The tier this table describes; `path` resolves the directory
    /// against the config's.
    pub(crate) fn lower(
        self,
        source: &ConfigSource,
        path: impl Fn(&str) -> PathBuf,
    ) -> Result<DiskCache, ConfigError> {
        let file = self;
        if file.path.trim().is_empty() {
            return Err(ConfigError::new(source, "edge.disk.path", "is empty"));
        }
        if file.max_bytes < MIN_DISK_BYTES {
            return Err(ConfigError::new(
                source,
                "edge.disk.max_bytes",
                format!("must be at least {MIN_DISK_BYTES}, got {}", file.max_bytes),
            ));
        }
        Ok(DiskCache {
            path: path(&file.path),
            max_bytes: file.max_bytes,
        })
    }
}

/// An edge's disk tier, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskCache {
    /// The directory holding every edge's folder.
    pub path: PathBuf,
    /// The most each edge's files may occupy, in bytes.
    pub max_bytes: u64,
}
