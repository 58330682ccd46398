//! The open-lakehouse promise: every table tidepool writes is read, with equal rows, by
//! the `deltalake` Python package, `polars.read_delta` and DuckDB's delta extension,
//! straight from the lake's folders (tests/python/lake_readers.py). The incremental
//! fixture project is run three times first, so keyed models have replaced rows.

use crate::common::{TestServer, settings};
use crate::models::incremental_project;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_engines_read_every_table_tidepool_writes() {
    let (dir, lake) = incremental_project().await;
    crate::models::run_with_replaced_keys(dir.path(), &lake).await;
    let extra = "[[users]]\nname = \"loader\"\npassword = \"l0ader pw\"\n";
    let server = TestServer::start_with(
        tempfile::tempdir().expect("tempdir"),
        settings(&lake, extra),
    )
    .await;
    let flight = server.flight.expect("flight listens");
    let args = [
        server.addr.ip().to_string(),
        server.addr.port().to_string(),
        "loader".to_string(),
        "l0ader pw".to_string(),
        lake.display().to_string(),
        format!("grpc://{flight}"),
    ];
    crate::common::run_python(
        "lake_readers.py",
        &args,
        &[
            "deltalake",
            "polars.read_delta",
            "duckdb delta",
            "polars connectorx",
        ],
    )
    .await;
}
