//! Procedures over the Postgres protocol with tokio-postgres: every call form, defaults,
//! named and prepared-statement arguments, the injection case, errors and their SQLSTATEs,
//! bodies of several statements.

use tokio_postgres::error::SqlState;

use crate::common::TestServer;

const SETUP: &str = "
CREATE SCHEMA gold;
CREATE TABLE gold.orders AS SELECT * FROM (VALUES
  (1, 42, DATE '2011-03-01', 10.5, 'o''brien'),
  (2, 42, DATE '2009-01-01', 3.0, 'x'),
  (3, 7, DATE '2012-01-01', 8.0, 'y')) AS t(order_id, customer_id, order_date, amount, note);
CREATE TABLE gold.customers AS SELECT * FROM (VALUES (42, 'Ada'), (7, 'Bob')) AS t(customer_id, name);
CREATE PROCEDURE gold.customer_orders(customer_id BIGINT, since DATE DEFAULT '2010-01-01')
AS SELECT order_id, amount FROM gold.orders
   WHERE customer_id = :customer_id AND order_date >= :since ORDER BY order_id;
";

async fn server() -> (TestServer, tokio_postgres::Client) {
    let server = TestServer::start("").await;
    let client = server.connect().await;
    client.batch_execute(SETUP).await.expect("setup");
    (server, client)
}

async fn ids(client: &tokio_postgres::Client, sql: &str) -> Vec<i64> {
    client
        .query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| r.get::<_, i64>(0))
        .collect()
}

async fn code(client: &tokio_postgres::Client, sql: &str) -> (SqlState, String) {
    let e = client.simple_query(sql).await.expect_err(sql);
    let db = e.as_db_error().expect("a server error");
    (db.code().clone(), db.message().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_form_binds_typed_arguments() {
    let (_server, client) = server().await;
    // Positional with the default, named, T-SQL EXEC, and as a table function.
    assert_eq!(ids(&client, "CALL gold.customer_orders(42)").await, vec![1]);
    assert_eq!(
        ids(
            &client,
            "CALL gold.customer_orders(customer_id => 42, since => '2000-01-01')"
        )
        .await,
        vec![1, 2]
    );
    assert_eq!(
        ids(
            &client,
            "EXEC gold.customer_orders @customer_id = 42, @since = '2000-01-01'"
        )
        .await,
        vec![1, 2]
    );
    assert_eq!(
        ids(&client, "EXECUTE gold.customer_orders 7, '2000-01-01'").await,
        vec![3]
    );
    let rows = client
        .query(
            "SELECT c.name, o.order_id FROM gold.customer_orders(42, since => '2000-01-01') o \
             JOIN gold.orders x USING (order_id) JOIN gold.customers c ON c.customer_id = x.customer_id \
             ORDER BY o.order_id",
            &[],
        )
        .await
        .expect("table function");
    let got: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, vec![("Ada".into(), 1), ("Ada".into(), 2)]);

    // Prepared: $1 takes the parameter's type (BIGINT), $2 a DATE given as text.
    let stmt = client
        .prepare("CALL gold.customer_orders($1)")
        .await
        .expect("prepare");
    assert_eq!(stmt.params(), &[tokio_postgres::types::Type::INT8]);
    assert_eq!(stmt.columns()[0].name(), "order_id");
    let rows = client.query(&stmt, &[&42i64]).await.expect("execute");
    assert_eq!(rows.len(), 1);
    let rows = client.query(&stmt, &[&7i64]).await.expect("execute again");
    assert_eq!(rows[0].get::<_, i64>(0), 3);

    // A string that looks like SQL stays a string: it is not a BIGINT...
    let (state, message) = code(
        &client,
        "CALL gold.customer_orders('42; DROP TABLE gold.orders')",
    )
    .await;
    assert_eq!(state, SqlState::INVALID_TEXT_REPRESENTATION, "{message}");
    assert!(
        message.contains("customer_orders(customer_id BIGINT, since DATE DEFAULT '2010-01-01')"),
        "{message}"
    );
    // ...and as a text parameter it is matched as text, quotes and all.
    client
        .batch_execute(
            "CREATE PROCEDURE gold.by_note(note TEXT) AS SELECT order_id FROM gold.orders WHERE note = :note",
        )
        .await
        .expect("create");
    assert_eq!(ids(&client, "CALL gold.by_note('o''brien')").await, vec![1]);
    assert!(
        ids(&client, "CALL gold.by_note('x'' OR ''1''=''1')")
            .await
            .is_empty()
    );
    let note = client
        .prepare("CALL gold.by_note($1)")
        .await
        .expect("prepare");
    let rows = client
        .query(&note, &[&"'; DROP TABLE gold.orders; --"])
        .await
        .expect("execute");
    assert!(rows.is_empty());
    assert_eq!(
        ids(&client, "SELECT count(*) FROM gold.orders").await,
        vec![3]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_calls_name_the_signature_and_the_connection_stays_usable() {
    let (_server, client) = server().await;
    let cases = [
        (
            "CALL gold.customer_orders(1, '2011-01-01', 3)",
            SqlState::UNDEFINED_FUNCTION,
        ),
        ("CALL gold.customer_orders()", SqlState::UNDEFINED_FUNCTION),
        (
            "CALL gold.customer_orders(nope => 1)",
            SqlState::UNDEFINED_FUNCTION,
        ),
        ("CALL gold.nope(1)", SqlState::UNDEFINED_FUNCTION),
        (
            "CALL gold.customer_orders(42, 'not a date')",
            SqlState::INVALID_TEXT_REPRESENTATION,
        ),
        (
            "CALL gold.customer_orders(customer_id => 1, 2)",
            SqlState::SYNTAX_ERROR,
        ),
        (
            "SELECT * FROM gold.customer_orders(1, 2, 3)",
            SqlState::UNDEFINED_FUNCTION,
        ),
    ];
    for (sql, want) in cases {
        let (state, message) = code(&client, sql).await;
        assert_eq!(state, want, "{sql}: {message}");
        if sql.contains("customer_orders") {
            assert!(
                message.contains("gold.customer_orders(customer_id BIGINT"),
                "{sql}: {message}"
            );
        }
    }
    assert_eq!(ids(&client, "CALL gold.customer_orders(7)").await, vec![3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_of_several_statements_returns_the_last_ones_rows() {
    let (_server, client) = server().await;
    client
        .batch_execute(
            "CREATE TABLE gold.audit AS SELECT CAST(0 AS BIGINT) AS customer_id WHERE false;
             CREATE OR REPLACE PROCEDURE gold.log_and_count(customer_id BIGINT)
             AS INSERT INTO gold.audit VALUES (:customer_id);
                SELECT count(*) AS calls FROM gold.audit WHERE customer_id = :customer_id;",
        )
        .await
        .expect("create");
    assert_eq!(ids(&client, "CALL gold.log_and_count(42)").await, vec![1]);
    assert_eq!(ids(&client, "CALL gold.log_and_count(42)").await, vec![2]);
    assert_eq!(ids(&client, "CALL gold.log_and_count(7)").await, vec![1]);
    // Replaced, then dropped.
    client
        .batch_execute(
            "CREATE OR REPLACE PROCEDURE gold.log_and_count(customer_id BIGINT) AS SELECT CAST(:customer_id AS BIGINT) * 2",
        )
        .await
        .expect("replace");
    assert_eq!(ids(&client, "CALL gold.log_and_count(21)").await, vec![42]);
    client
        .batch_execute("DROP PROCEDURE gold.log_and_count")
        .await
        .expect("drop");
    let (state, _) = code(&client, "CALL gold.log_and_count(1)").await;
    assert_eq!(state, SqlState::UNDEFINED_FUNCTION);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_of_gold_calls_gold_and_touches_nothing_else() {
    let server = TestServer::start(
        "[[users]]\nname = \"admin\"\npassword = \"admin pw\"\n\n[[users]]\nname = \"powerbi\"\npassword = \"reader pw\"\nschemas = [\"gold\"]\n",
    )
    .await;
    let admin =
        crate::common::connect(&format!("{} password='admin pw'", server.conn_str("admin"))).await;
    admin.batch_execute(SETUP).await.expect("setup");
    admin
        .batch_execute(
            "CREATE SCHEMA silver;
             CREATE TABLE silver.raw AS SELECT 1 AS x;
             CREATE VIEW gold.over_silver AS SELECT x FROM silver.raw;
             CREATE PROCEDURE silver.secret() AS SELECT x FROM silver.raw;",
        )
        .await
        .expect("admin setup");
    let reader = crate::common::connect(&format!(
        "{} password='reader pw'",
        server.conn_str("powerbi")
    ))
    .await;
    // Allowed: gold tables, views (even over silver), procedures, catalogs.
    assert_eq!(ids(&reader, "CALL gold.customer_orders(42)").await, vec![1]);
    assert_eq!(
        ids(&reader, "SELECT order_id FROM gold.customer_orders(7) o").await,
        vec![3]
    );
    assert_eq!(
        ids(&reader, "SELECT x FROM gold.over_silver").await,
        vec![1]
    );
    assert_eq!(
        ids(&reader, "SELECT count(*) FROM gold.orders").await,
        vec![3]
    );
    reader
        .simple_query("SELECT table_name FROM information_schema.tables")
        .await
        .expect("catalogs stay readable");
    reader
        .simple_query("SELECT routine_name FROM information_schema.routines")
        .await
        .expect("routines stay readable");
    // Denied, with 42501, and the connection stays usable.
    for sql in [
        "SELECT * FROM silver.raw",
        "CALL silver.secret()",
        "SELECT * FROM silver.secret()",
        "CREATE TABLE gold.mine AS SELECT 1",
        "INSERT INTO gold.orders SELECT * FROM gold.orders",
        "DROP TABLE gold.orders",
        "SELECT * FROM read_parquet('/etc/passwd')",
        "SELECT * FROM gold.orders o JOIN silver.raw r ON true",
        "CREATE PROCEDURE gold.p() AS SELECT 1",
    ] {
        let (state, message) = code(&reader, sql).await;
        assert_eq!(state, SqlState::INSUFFICIENT_PRIVILEGE, "{sql}: {message}");
    }
    assert_eq!(ids(&reader, "CALL gold.customer_orders(7)").await, vec![3]);
    // The admin is not limited.
    assert_eq!(ids(&admin, "SELECT x FROM silver.raw").await, vec![1]);
}
