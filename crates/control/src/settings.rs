//! What the control plane reads from the configuration, and how it reads it again: the
//! server composes [`ControlSettings`] from `tidepool.toml` and gives a [`Reloader`] that
//! validates the file again for `ReloadProject`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use tidepool_ingest::Maintenance;

/// A validated `[schedule]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub every: Option<Duration>,
    pub cron: Option<String>,
    pub on_new_data: bool,
    /// True for `build`, false for `run`.
    pub with_tests: bool,
    pub select: Vec<String>,
    pub exclude: Vec<String>,
    pub threads: usize,
}

/// The settings a reload may change while the server runs, and what `Health` reports.
#[derive(Debug, Clone)]
pub struct ControlSettings {
    /// The lake root as configured (reported by `Health`).
    pub lake: String,
    /// The SQL project's folder (models, macros, tests, views).
    pub project_dir: PathBuf,
    /// The lake schema of a dbt project's target schema (`[project] target_schema`).
    pub target_schema: String,
    /// `[models.<schema>]` config defaults by folder.
    pub model_defaults: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
    pub schedule: Option<Schedule>,
    pub maintenance: Maintenance,
    /// This node's name: the holder of the `[schedule]` lease when it runs the builds.
    pub node: String,
    /// How long a lease lasts unrenewed (`[node] lease_secs`): after a holder dies,
    /// another node takes its duties within this (and a third of it).
    pub lease: std::time::Duration,
}

/// A configuration read again for a reload.
#[derive(Debug, Clone)]
pub struct Reloaded {
    pub settings: ControlSettings,
    /// Settings that changed in the file but only take effect at the next start.
    pub restart_required: Vec<String>,
}

/// Reads the configuration again (the server's `tidepool.toml` and flags).
pub trait Reloader: Send + Sync {
    /// The configuration as it is now; an error when it does not validate.
    fn reload(&self) -> Result<Reloaded, Box<dyn std::error::Error + Send + Sync>>;
}

/// A configuration that never changes (tests, a server started without a file).
pub struct Fixed(pub ControlSettings);

impl Reloader for Fixed {
    fn reload(&self) -> Result<Reloaded, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Reloaded {
            settings: self.0.clone(),
            restart_required: Vec::new(),
        })
    }
}
