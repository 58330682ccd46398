//! The lake's own settings (`[lake]` in tidepool.toml); the server's config composes them.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Where the lake lives.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LakeConfig {
    /// A local folder or an object_store URL (`s3://`, `az://`, `gs://`, `file://`).
    pub root: String,
    /// Passed to object_store / delta-rs (credentials, region, endpoint...).
    pub storage_options: BTreeMap<String, String>,
    /// How often the table listing of a remote lake is refreshed; a local lake is
    /// listed before every statement.
    pub refresh_ms: u64,
    /// A table this process writes is compacted in the background once it has this many
    /// files smaller than `auto_compact_file_size`; 0 turns auto-compaction off.
    pub auto_compact_min_files: usize,
    /// Files smaller than this are compacted, into files of about this size ("8MiB").
    pub auto_compact_file_size: String,
}

impl Default for LakeConfig {
    fn default() -> Self {
        LakeConfig {
            root: "./lake".to_string(),
            storage_options: BTreeMap::new(),
            refresh_ms: 1000,
            auto_compact_min_files: 50,
            auto_compact_file_size: "8MiB".to_string(),
        }
    }
}
