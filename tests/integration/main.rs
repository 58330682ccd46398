//! Integration tests: the real server on port 0, real clients (tokio-postgres, psql).
//! One test binary, so the suite links DataFusion and delta-rs once.

mod admin;
mod admin_cli;
mod admin_sources;
mod architecture;
mod bounded_work;
mod client_catalog;
mod client_dbt;
mod client_grafana;
mod client_jdbc;
mod client_metabase;
mod client_node;
mod client_npgsql;
mod client_pgjdbc;
mod client_python;
mod client_tableau;
mod common;
mod copy;
mod demo;
mod flight;
mod full_disk;
mod ingest;
mod kafka_e2e;
mod kafka_nodes;
mod lake_readers;
mod memory_limit;
mod models;
mod never_down;
mod object_store;
mod permissions;
mod pg_fuzz;
mod pg_protocol;
mod procedures;
mod psql;
mod soak;
mod sqlsmith;
