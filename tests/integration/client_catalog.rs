//! Drivers that read the catalogs before the data, run for real (installed by
//! scripts/test.sh): DuckDB's postgres extension (ATTACH, scans, postgres_query, writes
//! through the attached database), the ADBC PostgreSQL driver (typed results, parameters,
//! get_objects, table schema, ingest) and psqlODBC with and without UseDeclareFetch
//! (catalog calls included), and pgcli's executor and completer (Debian's pgcli, run
//! with the system python3). The checks live in tests/python/catalog_clients.py and
//! tests/python/pgcli_completion.py.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duckdb_adbc_and_odbc_read_the_catalogs_and_the_data() {
    crate::common::run_python_as_user("catalog_clients.py", &["duckdb", "adbc", "odbc"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgcli_lists_and_completes_the_lake() {
    assert!(
        std::path::Path::new("/usr/lib/python3/dist-packages/pgcli").exists(),
        "pgcli is missing: run `bash scripts/test.sh`, which installs Debian's pgcli"
    );
    crate::common::run_python_as_user_with(
        Some("/usr/bin/python3"),
        "pgcli_completion.py",
        &["pgcli"],
    )
    .await;
}
