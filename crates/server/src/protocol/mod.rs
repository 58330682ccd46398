//! Wire protocols: thin adapters that serve the [`crate::engine`] and [`crate::ingest`] to
//! clients.

pub mod admin;
pub mod flight;
pub mod grpc;
pub mod http;
pub mod pg;
pub mod tls;
pub mod users;
