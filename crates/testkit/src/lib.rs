//! Test and benchmark helpers, a dev-dependency of the server and a dependency of the
//! benchmark binary only: [`frontend`] replays a driver's protocol messages exactly, and
//! [`clients`] holds the SQL that clients which cannot run here send, copied from their
//! source (Npgsql and Power BI, pgjdbc, Grafana, Metabase).

pub mod clients;
pub mod frontend;
