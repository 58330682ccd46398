//! Python Postgres clients end to end (installed into .venv by scripts/test.sh): psycopg 3
//! in text and binary, psycopg2 under SQLAlchemy 2's inspector and pandas.read_sql, and
//! asyncpg with its pool's reset query. The checks live in tests/python/pg_clients.py.

use crate::client_npgsql::sample_lake;
use crate::common::TestServer;

/// Clients the script runs (its names).
const CLIENTS: &[&str] = &["psycopg3", "sqlalchemy", "asyncpg"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_postgres_clients_end_to_end() {
    let server =
        TestServer::start("[[users]]\nname = \"analyst\"\npassword = \"an4lyst pw\"\n").await;
    let client = crate::common::connect(&format!(
        "{} password='an4lyst pw'",
        server.conn_str("analyst")
    ))
    .await;
    sample_lake(&client).await;
    let mut args = vec![
        server.addr.ip().to_string(),
        server.addr.port().to_string(),
        "analyst".to_string(),
        "an4lyst pw".to_string(),
    ];
    args.extend(CLIENTS.iter().map(|c| c.to_string()));
    crate::common::run_python("pg_clients.py", &args, CLIENTS).await;
}
