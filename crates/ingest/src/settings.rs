//! The ingest layer's settings, validated (the TOML form and its checks are in the
//! server's `config`, which composes every layer's settings).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// What [`crate::Ingest`] runs.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// This process's node name: `group.instance.id` of its consumers (`<node>.<source>`)
    /// and `tidepool.node` in the metadata of its commits.
    pub node: String,
    /// How long the bronze maintenance lease lasts unrenewed ([`crate::maintenance::run`]).
    pub lease: Duration,
    /// Broker list; `None` means the embedded dev broker.
    pub brokers: Option<String>,
    /// Partitions of topics the embedded broker creates.
    pub embedded_partitions: i32,
    pub sources: Vec<Source>,
    pub maintenance: Maintenance,
}

/// Where a source starts when its bronze table holds no offsets for a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StartOffset {
    #[default]
    Earliest,
    Latest,
}

/// A validated source.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub topics: Vec<String>,
    pub start: StartOffset,
    pub schema: Option<PathBuf>,
    pub raw: bool,
    pub max_rows: usize,
    pub max_bytes: usize,
    pub max_latency: Duration,
    pub max_message_bytes: usize,
    pub group_id: String,
    /// `kafka.properties` overlaid with the source's own.
    pub properties: BTreeMap<String, String>,
}

/// Validated maintenance settings.
#[derive(Debug, Clone)]
pub struct Maintenance {
    pub compact_min_files: usize,
    pub interval: Option<Duration>,
    pub target_file_size: u64,
    pub vacuum_retention: Duration,
    pub checkpoint_interval: u64,
}
