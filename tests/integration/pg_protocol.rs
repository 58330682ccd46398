//! The Postgres wire protocol against a real server, with tokio-postgres.

use crate::common::{TestServer, connect, orders, write_delta};
use tokio_postgres::SimpleQueryMessage;
use tokio_postgres::error::SqlState;

fn rows_of(msgs: &[SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_written_by_delta_rs_are_queryable_without_restart() {
    let server = TestServer::start("").await;
    let client = server.connect().await;
    let err = client
        .simple_query("SELECT * FROM bronze.orders")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::UNDEFINED_TABLE));

    write_delta(server.lake.path(), "bronze", "orders", orders(10)).await;
    let rows = client
        .query("SELECT count(*), sum(amount) FROM bronze.orders", &[])
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, i64>(0), 10);
    assert_eq!(rows[0].get::<_, f64>(1), 82.5);

    // A second commit by the other writer is seen by the next statement.
    write_delta(server.lake.path(), "bronze", "orders", orders(5)).await;
    let rows = client
        .query("SELECT count(*) FROM bronze.orders", &[])
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, i64>(0), 15);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_protocol_multi_statement_and_empty_queries() {
    let server = TestServer::start("").await;
    let client = server.connect().await;
    let msgs = client
        .simple_query("CREATE SCHEMA s; CREATE TABLE s.t AS SELECT 1 AS a UNION ALL SELECT 2; SELECT a FROM s.t ORDER BY a; SELECT 'x' AS b")
        .await
        .unwrap();
    let completes: Vec<u64> = msgs
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        })
        .collect();
    assert_eq!(completes, vec![0, 2, 2, 1]);
    assert_eq!(
        rows_of(&msgs),
        vec![
            vec![Some("1".to_string())],
            vec![Some("2".to_string())],
            vec![Some("x".to_string())]
        ]
    );
    // Text format of common types, as Postgres prints them.
    let msgs = client
        .simple_query(
            "SELECT CAST(12.3 AS DECIMAL(10,2)) AS d, CAST(-0.05 AS DECIMAL(5,2)) AS neg, \
             CAST('2024-02-29' AS DATE) AS dt, 'x y' AS s, CAST(NULL AS BIGINT) AS n, -5 AS i",
        )
        .await
        .unwrap();
    assert_eq!(
        rows_of(&msgs),
        vec![vec![
            Some("12.30".to_string()),
            Some("-0.05".to_string()),
            Some("2024-02-29".to_string()),
            Some("x y".to_string()),
            None,
            Some("-5".to_string())
        ]]
    );
    // Empty and comment-only queries answer EmptyQueryResponse.
    let msgs = client.simple_query("").await.unwrap();
    assert!(rows_of(&msgs).is_empty());
    let msgs = client.simple_query("-- just a comment").await.unwrap();
    assert!(rows_of(&msgs).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_protocol_parameters_and_binary_types() {
    let server = TestServer::start("").await;
    let client = server.connect().await;
    write_delta(server.lake.path(), "gold", "orders", orders(20)).await;

    let stmt = client
        .prepare("SELECT id, customer, amount FROM gold.orders WHERE id = $1")
        .await
        .unwrap();
    assert_eq!(stmt.params(), &[tokio_postgres::types::Type::INT8]);
    for id in [3i64, 7, 11] {
        let rows = client.query(&stmt, &[&id]).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].get::<_, i64>(0), id);
        assert_eq!(rows[0].get::<_, String>(1), format!("c{}", id % 3));
        assert_eq!(rows[0].get::<_, f64>(2), id as f64 * 1.5);
    }

    // Binary results (tokio-postgres always asks for binary) for the usual types.
    let row = client
        .query_one(
            "SELECT CAST(42 AS INT) AS i4, CAST(7 AS SMALLINT) AS i2, CAST(1.25 AS REAL) AS f4, \
             true AS b, 'hé' AS t, CAST('2024-02-29' AS DATE) AS d, \
             CAST('2024-02-29 12:34:56' AS TIMESTAMP) AS ts, \
             CAST(12.34 AS DECIMAL(10,2)) AS n, [1, 2, 3] AS arr, \
             CAST('2024-02-29T12:00:00Z' AS TIMESTAMPTZ) AS tz",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>("i4"), 42);
    assert_eq!(row.get::<_, i16>("i2"), 7);
    assert_eq!(row.get::<_, f32>("f4"), 1.25);
    assert!(row.get::<_, bool>("b"));
    assert_eq!(row.get::<_, String>("t"), "hé");
    assert_eq!(
        row.get::<_, chrono::NaiveDate>("d"),
        chrono::NaiveDate::from_ymd_opt(2024, 2, 29).unwrap()
    );
    assert_eq!(
        row.get::<_, chrono::NaiveDateTime>("ts").to_string(),
        "2024-02-29 12:34:56"
    );
    assert_eq!(
        row.get::<_, rust_decimal::Decimal>("n").to_string(),
        "12.34"
    );
    assert_eq!(row.get::<_, Vec<i64>>("arr"), vec![1, 2, 3]);
    assert_eq!(
        row.get::<_, chrono::DateTime<chrono::Utc>>("tz")
            .to_rfc3339(),
        "2024-02-29T12:00:00+00:00"
    );

    // Parameters of several types.
    let row = client
        .query_one(
            "SELECT $1::TEXT || '!' AS t, $2::DOUBLE PRECISION * 2 AS f, $3::BOOLEAN AS b",
            &[&"hi", &2.5f64, &false],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "hi!");
    assert_eq!(row.get::<_, f64>(1), 5.0);
    assert!(!row.get::<_, bool>(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_sqlstate_and_the_connection_stays_usable() {
    let server = TestServer::start("").await;
    let client = server.connect().await;
    write_delta(server.lake.path(), "gold", "orders", orders(3)).await;
    let cases: &[(&str, SqlState)] = &[
        ("SELECT * FROM gold.nope", SqlState::UNDEFINED_TABLE),
        ("SELECT nope FROM gold.orders", SqlState::UNDEFINED_COLUMN),
        ("SELEC 1", SqlState::SYNTAX_ERROR),
        ("SELECT no_such_function(1)", SqlState::UNDEFINED_FUNCTION),
        ("SELECT 1 / 0", SqlState::DIVISION_BY_ZERO),
        (
            "SELECT CAST('abc' AS INT)",
            SqlState::INVALID_TEXT_REPRESENTATION,
        ),
        (
            "CREATE TABLE gold.orders AS SELECT 1",
            SqlState::DUPLICATE_TABLE,
        ),
        ("SHOW no_such_setting", SqlState::UNDEFINED_OBJECT),
        ("CREATE SCHEMA gold", SqlState::DUPLICATE_SCHEMA),
        ("DROP SCHEMA nope", SqlState::INVALID_SCHEMA_NAME),
        (
            "ALTER TABLE gold.orders DROP COLUMN no_such_column",
            SqlState::UNDEFINED_COLUMN,
        ),
    ];
    for (sql, code) in cases {
        let err = client.simple_query(sql).await.unwrap_err();
        assert_eq!(err.code(), Some(code), "{sql}: {err:?}");
        // Extended protocol too.
        let err = client.query(*sql, &[]).await.unwrap_err();
        assert_eq!(err.code(), Some(code), "{sql} (extended): {err:?}");
        let ok = client.query_one("SELECT 1::BIGINT", &[]).await.unwrap();
        assert_eq!(ok.get::<_, i64>(0), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_statements() {
    let server = TestServer::start("").await;
    let client = server.connect().await;
    write_delta(server.lake.path(), "gold", "orders", orders(4)).await;
    client
        .batch_execute("SET search_path TO gold, public")
        .await
        .unwrap();
    let row = client
        .query_one("SELECT count(*) FROM orders", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 4);
    let row = client.query_one("SHOW search_path", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "gold, public");
    client
        .batch_execute("BEGIN; SELECT 1; COMMIT; ROLLBACK; DISCARD ALL")
        .await
        .unwrap();
    let row = client.query_one("SHOW search_path", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "public");
    let row = client.query_one("SELECT version()", &[]).await.unwrap();
    assert!(
        row.get::<_, String>(0)
            .starts_with("PostgreSQL 16.6 (tidepool")
    );
    let row = client
        .query_one("SELECT current_database(), current_schema()", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "lake");
    client
        .batch_execute("RESET ALL; SET application_name = 'x'")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_timeout_and_cancel() {
    let server = TestServer::start("").await;
    let client = server.connect().await;
    let slow = "SELECT count(*) FROM generate_series(1, 2000000000) a";
    client
        .batch_execute("SET statement_timeout = 300")
        .await
        .unwrap();
    let err = client.simple_query(slow).await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err:?}");
    client
        .batch_execute("SET statement_timeout = 0")
        .await
        .unwrap();

    let token = client.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        token.cancel_query(tokio_postgres::NoTls).await
    });
    let err = client.simple_query(slow).await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err:?}");
    canceller.await.unwrap().unwrap();
    let ok = client.query_one("SELECT 2::BIGINT", &[]).await.unwrap();
    assert_eq!(ok.get::<_, i64>(0), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_results_stream() {
    let server = TestServer::start("").await;
    let client = server.connect().await;
    let rows = client
        .query(
            "SELECT value, value * 2 AS twice FROM generate_series(1, 300000)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 300000);
    let sum: i64 = rows.iter().map(|r| r.get::<_, i64>(1)).sum();
    assert_eq!(sum, 300000 * 300001);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_authentication() {
    // SAFETY: set before the server reads it; each test binary runs this test once.
    unsafe { std::env::set_var("TIDEPOOL_TEST_PW", "s3cret pass") };
    let server =
        TestServer::start("[[users]]\nname = \"analyst\"\npassword_env = \"TIDEPOOL_TEST_PW\"\n")
            .await;
    let good = format!("{} password='s3cret pass'", server.conn_str("analyst"));
    let client = connect(&good).await;
    let row = client.query_one("SELECT 1::BIGINT", &[]).await.unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);

    for bad in [
        format!("{} password=wrong", server.conn_str("analyst")),
        format!("{} password='s3cret pass'", server.conn_str("nobody")),
    ] {
        let err = tokio_postgres::connect(&bad, tokio_postgres::NoTls)
            .await
            .err()
            .expect("bad credentials are refused");
        assert_eq!(err.code(), Some(&SqlState::INVALID_PASSWORD), "{err:?}");
    }
    // No password at all.
    let err = tokio_postgres::connect(&server.conn_str("analyst"), tokio_postgres::NoTls)
        .await
        .err()
        .expect("a missing password is refused");
    assert!(
        err.code().is_none() || err.code() == Some(&SqlState::INVALID_PASSWORD),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_and_external_tables_survive_a_restart() {
    let server = TestServer::start("").await;
    let client = server.connect().await;
    write_delta(server.lake.path(), "silver", "orders", orders(6)).await;
    let files = tempfile::tempdir().unwrap();
    let parquet = files.path().join("orders.parquet");
    client
        .batch_execute(&format!(
            "CREATE VIEW silver.big AS SELECT id FROM silver.orders WHERE amount > 5; \
             COPY (SELECT * FROM silver.orders) TO '{}' (FORMAT parquet); \
             CREATE EXTERNAL TABLE silver.ext STORED AS PARQUET LOCATION '{}'",
            parquet.display(),
            parquet.display()
        ))
        .await
        .unwrap();
    drop(client);
    let lake = server.stop().await;

    let server = TestServer::start_on(lake, "").await;
    let client = server.connect().await;
    let row = client
        .query_one("SELECT count(*) FROM silver.big", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 3);
    let row = client
        .query_one("SELECT count(*) FROM silver.ext", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 6);
    client
        .batch_execute("DROP VIEW silver.big; DROP TABLE silver.ext")
        .await
        .unwrap();
    let err = client
        .simple_query("SELECT * FROM silver.big")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::UNDEFINED_TABLE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_limit_turns_runaway_queries_into_errors() {
    let server = TestServer::start("[engine]\nmemory_limit = \"2MiB\"\n").await;
    let client = server.connect().await;
    // A join whose build side cannot spill: over the limit it must fail cleanly.
    let err = client
        .simple_query(
            "SELECT count(*) FROM generate_series(1, 2000000) a JOIN generate_series(1, 2000000) b ON a.value = b.value",
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::OUT_OF_MEMORY), "{err:?}");
    let ok = client.query_one("SELECT 3::BIGINT", &[]).await.unwrap();
    assert_eq!(ok.get::<_, i64>(0), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_lets_running_statements_finish() {
    let server = TestServer::start("").await;
    let client = server.connect().await;
    let addr = server.addr;
    let running = tokio::spawn(async move {
        client
            .query_one(
                "SELECT count(*) FROM generate_series(1, 20000000) a WHERE a.value % 7 = 0",
                &[],
            )
            .await
            .map(|r| r.get::<_, i64>(0))
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let stopped = tokio::spawn(server.stop());
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    // No new connections once shutdown began.
    let refused = tokio_postgres::connect(
        &format!(
            "host={} port={} user=tidepool dbname=lake",
            addr.ip(),
            addr.port()
        ),
        tokio_postgres::NoTls,
    )
    .await;
    assert!(
        refused.is_err(),
        "new connections are refused during shutdown"
    );
    assert_eq!(running.await.unwrap().unwrap(), 20000000 / 7);
    stopped.await.unwrap();
}

/// DELETE and UPDATE over the wire: command tags with row counts in both protocols,
/// prepared with parameters (Describe answers NoData), one Delta version each, and a
/// refused statement writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_and_update_report_rows_and_commit_once() {
    let server = TestServer::start("").await;
    let client = server.connect().await;
    write_delta(server.lake.path(), "gold", "orders", orders(20)).await;
    let history = "SELECT count(*) FROM table_history('gold.orders')";
    let versions = client
        .query_one(history, &[])
        .await
        .unwrap()
        .get::<_, i64>(0);

    // A prepared INSERT reports its rows (pgjdbc's executeBatch counts come from this).
    let insert = client
        .prepare("INSERT INTO gold.orders VALUES ($1, $2, $3)")
        .await
        .unwrap();
    for id in [21i64, 22] {
        let n = client
            .execute(&insert, &[&id, &"c9", &1.0f64])
            .await
            .unwrap();
        assert_eq!(n, 1, "INSERT of one row reports 1");
    }
    assert_eq!(
        client
            .execute("DELETE FROM gold.orders WHERE id > 20", &[])
            .await
            .unwrap(),
        2
    );
    // Simple protocol: the tag carries the count.
    let n = client
        .execute(
            "UPDATE gold.orders SET amount = amount * 2 WHERE id < 5",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(n, 4);
    // Extended protocol with a parameter.
    let stmt = client
        .prepare("DELETE FROM gold.orders WHERE id >= $1")
        .await
        .unwrap();
    assert!(stmt.columns().is_empty(), "a DELETE describes as NoData");
    assert_eq!(client.execute(&stmt, &[&15i64]).await.unwrap(), 6);
    assert_eq!(client.execute(&stmt, &[&15i64]).await.unwrap(), 0);
    let row = client
        .query_one(
            "SELECT count(*), sum(amount) FROM gold.orders WHERE id < 5",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 4);
    // orders(n) has amount = id * 1.5; doubled: 3 * (1+2+3+4) = 30.
    assert_eq!(row.get::<_, f64>(1), 30.0);
    let total = client
        .query_one("SELECT count(*) FROM gold.orders", &[])
        .await
        .unwrap();
    assert_eq!(total.get::<_, i64>(0), 14);

    // A refused statement (correlated subquery) writes nothing: no new version.
    let before = client
        .query_one(history, &[])
        .await
        .unwrap()
        .get::<_, i64>(0);
    let err = client
        .execute(
            "DELETE FROM gold.orders WHERE EXISTS \
             (SELECT 1 FROM gold.orders o WHERE o.id = orders.id + 1)",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&SqlState::FEATURE_NOT_SUPPORTED),
        "{err:?}"
    );
    let after = client
        .query_one(history, &[])
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(before, after);
    // Five writes (two INSERTs, three DELETE/UPDATE), five versions; the zero-row DELETE
    // commits nothing or one version.
    assert!(
        after >= versions + 5 && after <= versions + 6,
        "{versions} -> {after}"
    );

    // MERGE over the extended protocol: NoData on describe, the count in the tag, one
    // version; a target row matched twice is 21000 and adds no version.
    let merge = client
        .prepare(
            "MERGE INTO gold.orders t USING (SELECT id, amount FROM gold.orders WHERE id < $1) s \
             ON t.id = s.id WHEN MATCHED THEN UPDATE SET amount = s.amount + 1",
        )
        .await
        .unwrap();
    assert!(merge.columns().is_empty(), "a MERGE describes as NoData");
    assert_eq!(client.execute(&merge, &[&3i64]).await.unwrap(), 2);
    let merged = client
        .query_one(history, &[])
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(merged, after + 1);
    let err = client
        .execute(
            "MERGE INTO gold.orders t USING (SELECT 1 AS id UNION ALL SELECT 1) s ON t.id = s.id \
             WHEN MATCHED THEN UPDATE SET amount = 0",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&SqlState::CARDINALITY_VIOLATION),
        "{err:?}"
    );
    assert_eq!(
        client
            .query_one(history, &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        merged
    );
}
