//! Drivers that read the catalogs before the data, run for real (installed by
//! scripts/test.sh): DuckDB's postgres extension (ATTACH, scans, postgres_query, writes
//! through the attached database), the ADBC PostgreSQL driver (typed results, parameters,
//! get_objects, table schema, ingest) and psqlODBC with and without UseDeclareFetch
//! (catalog calls included). The checks live in tests/python/catalog_clients.py.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duckdb_adbc_and_odbc_read_the_catalogs_and_the_data() {
    crate::common::run_python_as_user("catalog_clients.py", &["duckdb", "adbc", "odbc"]).await;
}
