//! tidepool: a lakehouse in one binary.
//!
//! Layers, from the bottom: [`lake`] owns object storage and Delta tables, [`engine`] owns
//! the DataFusion session (lake catalog, table functions, session statements),
//! [`pgcompat`] plugs the PostgreSQL dialect into it, [`ingest`] and [`models`] write the
//! lake, [`control`] drives them, and the server crate ([`config`], [`protocol`], [`app`])
//! serves it all over the wire. This crate is the command line ([`cli`], one file per
//! subcommand) and the event generator ([`generate`]).

pub mod cli;
pub mod generate;

/// The control plane: the `tidepool-control` crate.
pub use tidepool_control as control;
/// The SQL engine: the `tidepool-engine` crate.
pub use tidepool_engine as engine;
/// Kafka into bronze: the `tidepool-ingest` crate.
pub use tidepool_ingest as ingest;
/// Storage and the Delta protocol: the `tidepool-lake` crate.
pub use tidepool_lake as lake;
/// SQL models, dbt style: the `tidepool-models` crate.
pub use tidepool_models as models;
/// The PostgreSQL emulation plugged into the engine: the `tidepool-pgcompat` crate.
pub use tidepool_pgcompat as pgcompat;
/// The server: configuration, wire adapters, composition (the `tidepool-server` crate).
pub use tidepool_server::{app, config, protocol};

/// Version string of this build, shown in `version()` and the Postgres `server_version`.
pub const VERSION: &str = tidepool_engine::VERSION;
