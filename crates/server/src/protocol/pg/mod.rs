//! Postgres wire protocol (pgwire): startup and authentication, simple and extended query,
//! cancel, TLS. Only adapts the engine: parsing, planning and execution live in
//! [`crate::engine`], and SQLSTATEs are chosen once, in [`errors`].

mod admission;
mod ahead;
mod auth;
mod client_gone;
mod conn;
mod copy_in;
mod copy_out;
mod copy_rows;
pub mod errors;
mod handler;
mod json_columns;
mod server;
mod shared;
mod text_rows;
mod tid_columns;

pub use server::{PgServer, PgServerError};
