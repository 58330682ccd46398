//! tidepool's server: [`config`] reads `tidepool.toml` into the settings of every layer,
//! [`protocol`] holds the thin adapters that serve the engine over the wire (Postgres,
//! Flight SQL, the admin gRPC API, HTTP), and [`app`] composes lake, engine, ingestion and
//! the control plane behind them for `tidepool serve`. The command line is the root
//! `tidepool` crate's; nothing here parses arguments.

pub mod app;
pub mod config;
pub mod protocol;

use tidepool_control as control;
use tidepool_engine as engine;
use tidepool_ingest as ingest;
use tidepool_lake as lake;
use tidepool_models as models;
use tidepool_pgcompat as pgcompat;

/// Version string of this build, shown in `version()` and the Postgres `server_version`.
pub const VERSION: &str = tidepool_engine::VERSION;
