//! sqlsmith, the random query generator (the Debian package), against the real
//! `tidepool serve` process: it learns types, tables, columns, operators and functions
//! from the catalogs (`information_schema.tables`, `pg_attribute`, `pg_operator`,
//! `pg_proc` with `unnest(proargtypes)`) the way it does against PostgreSQL, with no
//! shim, then sends a bounded number of random statements, each in `BEGIN` ... `ROLLBACK`
//! under `statement_timeout = 1s`. Most are refused (its grammar is PostgreSQL's); none
//! may crash the server, hang it or raise an internal error (XX000).

use std::time::Duration;

use crate::common::{ServeProcess, connect, first};

const QUERIES: u32 = 5_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlsmith_runs_without_crash_hang_or_internal_error() {
    let mut server = ServeProcess::start("").await;
    let conn = server.conn_str("tidepool", "");
    let c = connect(&conn).await;
    c.batch_execute(
        "CREATE SCHEMA s; \
         CREATE TABLE s.t AS SELECT v AS id, CAST(v AS VARCHAR) AS name, \
             CAST(v AS DOUBLE) / 7 AS ratio, CAST(v AS DECIMAL(12, 2)) AS price, \
             v % 3 = 0 AS flag, CAST('2026-01-01' AS DATE) AS day, \
             CAST('2026-01-01 10:00:00' AS TIMESTAMP) AS at, make_array(v, v + 1) AS pair \
             FROM generate_series(1, 500) g(v); \
         CREATE TABLE s.u AS SELECT v % 50 AS id, md5(CAST(v AS VARCHAR)) AS label \
             FROM generate_series(1, 200) g(v); \
         CREATE VIEW s.w AS SELECT t.id, t.name, u.label FROM s.t JOIN s.u ON t.id = u.id",
    )
    .await
    .expect("the tables sqlsmith draws from");

    let run = tokio::process::Command::new("sqlsmith")
        .arg(format!("--target={conn}"))
        .arg(format!("--max-queries={QUERIES}"))
        .args(["--seed=20261204", "--verbose"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(1200), run)
        .await
        .expect("sqlsmith finishes: no statement hangs the server")
        .expect("sqlsmith is installed (the test script installs it)");
    let report = String::from_utf8_lossy(&out.stderr).into_owned();
    let tail: String = report
        .lines()
        .filter(|l| !l.contains("bad/ok"))
        .rev()
        .take(40)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    assert!(out.status.success(), "sqlsmith failed:\n{tail}");
    let sent = report
        .lines()
        .filter_map(|l| l.strip_prefix("queries: "))
        .filter_map(|n| n.trim().parse::<u32>().ok())
        .max();
    assert_eq!(sent, Some(QUERIES), "sqlsmith's report:\n{tail}");

    assert!(server.alive(), "the server died under sqlsmith:\n{tail}");
    let answer = tokio::time::timeout(Duration::from_secs(10), first(&c, "SELECT 1"))
        .await
        .expect("the server answers after sqlsmith");
    assert_eq!(answer.unwrap(), "1");

    let log = server.stop_clean("sqlsmith").await;
    let internal: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("internal error"))
        .take(20)
        .collect();
    assert!(
        internal.is_empty(),
        "sqlsmith's statements raised internal errors (XX000):\n{}",
        internal.join("\n")
    );
}
