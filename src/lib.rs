//! tidepool: a lakehouse in one binary.
//!
//! Layers, from the bottom: [`lake`] owns object storage and Delta tables, [`engine`] owns
//! the DataFusion session (lake catalog, table functions, session statements), and
//! [`protocol`] holds thin adapters that serve the engine over the wire. [`app`] wires the
//! parts together for `tidepool serve`; [`cli`] holds one file per subcommand.

pub mod app;
pub mod cli;
pub mod config;
/// The control plane: the `tidepool-control` crate.
pub use tidepool_control as control;
/// The SQL engine: the `tidepool-engine` crate.
pub use tidepool_engine as engine;
/// The PostgreSQL emulation plugged into it: the `tidepool-pgcompat` crate.
pub use tidepool_pgcompat as pgcompat;
pub mod generate;
/// Kafka into bronze: the `tidepool-ingest` crate.
pub use tidepool_ingest as ingest;
/// Storage and the Delta protocol: the `tidepool-lake` crate.
pub use tidepool_lake as lake;
/// SQL models, dbt style: the `tidepool-models` crate.
pub use tidepool_models as models;
pub mod protocol;

/// Version string of this build, shown in `version()` and the Postgres `server_version`.
pub const VERSION: &str = tidepool_engine::VERSION;
