//! Python Postgres clients end to end (installed into .venv by scripts/test.sh): psycopg 3
//! in text and binary, psycopg2 under SQLAlchemy 2's inspector and pandas.read_sql, and
//! asyncpg with its pool's reset query. The checks live in tests/python/pg_clients.py.

use crate::client_npgsql::sample_lake;
use crate::common::TestServer;

/// Clients the script runs (its names).
const CLIENTS: &[&str] = &["psycopg3", "sqlalchemy", "asyncpg"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_postgres_clients_end_to_end() {
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `bash scripts/test.sh`, which installs psycopg, psycopg2, SQLAlchemy, pandas and asyncpg",
        python.display()
    );
    let server =
        TestServer::start("[[users]]\nname = \"analyst\"\npassword = \"an4lyst pw\"\n").await;
    let client = crate::common::connect(&format!(
        "{} password='an4lyst pw'",
        server.conn_str("analyst")
    ))
    .await;
    sample_lake(&client).await;
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/pg_clients.py");
    let out = tokio::process::Command::new(&python)
        .arg(script)
        .arg(server.addr.ip().to_string())
        .arg(server.addr.port().to_string())
        .arg("analyst")
        .arg("an4lyst pw")
        .args(CLIENTS)
        .output()
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python clients failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for client in CLIENTS {
        assert!(stdout.contains(&format!("{client}: ok")), "{stdout}");
    }
}
