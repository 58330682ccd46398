//! Arrow Flight SQL (tonic): queries stream Arrow record batches straight from the engine,
//! with no row-by-row conversion. The fast lane out of tidepool for ADBC, pyarrow, the
//! Flight SQL JDBC driver and Rust clients.
//!
//! Same rules as the Postgres listener: loopback by default, a public address only with
//! users, TLS when `[tls]` is configured (or the listener does not start). Errors map to
//! gRPC codes in [`errors`], once.

pub mod auth;
pub mod client;
mod columns;
pub mod errors;
mod ingest;
mod metadata;
mod queries;
mod service;
mod transactions;

pub(crate) use service::FlightSql;
