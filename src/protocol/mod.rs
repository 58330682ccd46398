//! Wire protocols: thin adapters that serve the [`crate::engine`] to clients.

pub mod pg;
