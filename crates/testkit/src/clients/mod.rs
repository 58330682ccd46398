//! The SQL clients send, verbatim from their source, for replays.

pub mod grafana;
pub mod metabase;
pub mod npgsql;
pub mod pgjdbc;
