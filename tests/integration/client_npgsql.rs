//! Npgsql, as Power BI Desktop (bundled Npgsql 4.0) and current .NET apps (Npgsql 8) talk.
//!
//! Replayed message by message with tidepool's wire frontend, because the patterns matter
//! as much as the SQL: Npgsql 4.0 splits its type-loading command into three statements and
//! pipelines them as Parse/Bind/Describe/Execute with one Sync (results as text, CRLF line
//! endings as compiled on Windows); a pooled connection's `DISCARD ALL` goes out as a simple
//! Query in the same write as the next command; ordinary commands ask for every result
//! column in binary. Npgsql 8 sends its type loading as one simple-protocol batch of four
//! statements and resets pooled connections that hold prepared statements with a
//! seven-statement batch. SQL texts are Npgsql's `PostgresDatabaseInfo` (tags v4.0.17 and
//! v8.0.9) and, for browsing, the INFORMATION_SCHEMA queries of Power BI's PostgreSQL
//! connector as published in Postgres server logs.

use std::collections::HashSet;

use tidepool_testkit::frontend::{Frontend, Reply, StatementResult, split_results};

use crate::common::TestServer;

pub use sql::*;
use tidepool_testkit::clients::npgsql as sql;

/// A lake with the column types analysts meet: numeric, timestamptz, date, text, bool,
/// bigint, double, an array.
pub async fn sample_lake(client: &tokio_postgres::Client) {
    client
        .batch_execute(
            "CREATE SCHEMA gold;
             CREATE TABLE gold.fact_orders AS
               SELECT 1::bigint AS order_id, 'c1' AS customer, 12.50::decimal(12,2) AS amount,
                      TIMESTAMPTZ '2026-11-01 10:00:00+00' AS ordered_at, DATE '2026-11-01' AS order_date,
                      true AS paid, 0.5::double AS discount, make_array('a', 'b') AS tags
               UNION ALL
               SELECT 2, 'c2', 7.25, TIMESTAMPTZ '2026-11-02 11:30:00+00', DATE '2026-11-02', false, 0.0, make_array('c');
             CREATE VIEW gold.paid_orders AS SELECT order_id, amount FROM gold.fact_orders WHERE paid",
        )
        .await
        .expect("sample lake");
}

/// Every Ready, no error: the replies of a pipeline that must succeed.
fn expect_ok(replies: &[Reply], what: &str) -> Vec<StatementResult> {
    let results = split_results(replies);
    for r in &results {
        assert!(
            r.error.is_none(),
            "{what}: {:?}\nall replies: {replies:?}",
            r.error
        );
    }
    results
}

/// Npgsql 4.0's type loading on a fresh connection; returns the loaded type OIDs.
pub async fn npgsql4_load_types(f: &mut Frontend) -> HashSet<u32> {
    for sql in [NPGSQL4_TYPES, NPGSQL4_COMPOSITES, NPGSQL4_ENUMS] {
        // AllResultTypesAreUnknown: every result in text.
        f.extended(&crlf(sql), &[], 0);
    }
    f.sync();
    let replies = f.round_trip(1).await.expect("type loading");
    let results = expect_ok(&replies, "Npgsql 4.0 type loading");
    assert_eq!(results.len(), 3, "three statements: {replies:?}");
    let types = &results[0];
    let oids: HashSet<u32> = types
        .texts("oid")
        .into_iter()
        .flatten()
        .filter_map(|o| o.parse().ok())
        .collect();
    oids
}

/// A command the way Npgsql 4.0 sends it (binary results), optionally behind the pooled
/// connection's `DISCARD ALL`.
async fn npgsql4_command(f: &mut Frontend, sql: &str, discard_first: bool) -> StatementResult {
    if discard_first {
        f.query("DISCARD ALL");
    }
    f.extended(&crlf(sql), &[], 1).sync();
    let replies = f
        .round_trip(if discard_first { 2 } else { 1 })
        .await
        .expect("round trip");
    let mut results = expect_ok(&replies, sql);
    if discard_first {
        assert_eq!(
            results.first().and_then(|r| r.tag.as_deref()),
            Some("DISCARD ALL"),
            "{replies:?}"
        );
        results.remove(0);
    }
    assert_eq!(results.len(), 1, "{sql}: {replies:?}");
    results.remove(0)
}

fn binary_text(v: &Option<Vec<u8>>) -> String {
    String::from_utf8(v.clone().expect("not null")).expect("utf-8")
}

fn binary_i32(v: &Option<Vec<u8>>) -> i32 {
    let b = v.clone().expect("not null");
    i32::from_be_bytes(b[..4].try_into().expect("4 bytes"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npgsql4_power_bi_connect_browse_and_preview() {
    let server = TestServer::start("").await;
    sample_lake(&server.connect().await).await;

    // First connection of the pool: type loading.
    let mut f = Frontend::connect(server.addr, NPGSQL4_STARTUP)
        .await
        .expect("connects");
    let version = f
        .parameters
        .iter()
        .find(|(k, _)| k == "server_version")
        .map(|(_, v)| v.clone())
        .expect("server_version parameter");
    assert!(
        version
            .split('.')
            .next()
            .and_then(|m| m.parse::<u32>().ok())
            >= Some(10),
        "Npgsql parses server_version: {version}"
    );
    let types = npgsql4_load_types(&mut f).await;
    for (oid, name) in [
        (16, "bool"),
        (20, "int8"),
        (23, "int4"),
        (25, "text"),
        (701, "float8"),
        (1043, "varchar"),
        (1082, "date"),
        (1114, "timestamp"),
        (1184, "timestamptz"),
        (1700, "numeric"),
        (1009, "_text"),
        (1016, "_int8"),
    ] {
        assert!(types.contains(&oid), "type loading returns {name} ({oid})");
    }

    // Navigator: the lake's tables, in binary.
    let tables = npgsql4_command(&mut f, POWERBI_TABLES, true).await;
    for c in &tables.columns {
        assert!(
            types.contains(&c.type_oid),
            "column {} has type {} that type loading did not return",
            c.name,
            c.type_oid
        );
        assert_eq!(c.format, 1, "binary as asked");
    }
    let names: Vec<(String, String, String)> = tables
        .rows
        .iter()
        .map(|r| (binary_text(&r[0]), binary_text(&r[1]), binary_text(&r[2])))
        .collect();
    assert!(
        names.contains(&("gold".into(), "fact_orders".into(), "BASE TABLE".into())),
        "{names:?}"
    );
    assert!(
        names.contains(&("gold".into(), "paid_orders".into(), "VIEW".into())),
        "{names:?}"
    );

    // Columns with their Postgres type names.
    let cols = npgsql4_command(&mut f, &powerbi_columns("gold", "fact_orders"), true).await;
    let got: Vec<(String, i32, String)> = cols
        .rows
        .iter()
        .map(|r| (binary_text(&r[0]), binary_i32(&r[1]), binary_text(&r[3])))
        .collect();
    let expected = [
        ("order_id", "bigint"),
        ("customer", "text"),
        ("amount", "numeric"),
        ("ordered_at", "timestamp with time zone"),
        ("order_date", "date"),
        ("paid", "boolean"),
        ("discount", "double precision"),
        ("tags", "ARRAY"),
    ];
    assert_eq!(got.len(), expected.len(), "{got:?}");
    for (i, ((name, ty), row)) in expected.iter().zip(&got).enumerate() {
        assert_eq!(
            (name.to_string(), i as i32 + 1, ty.to_string()),
            row.clone(),
            "{got:?}"
        );
    }

    // Keys and relationships: none in a lake, and the queries answer.
    let keys = npgsql4_command(&mut f, &powerbi_keys("gold", "fact_orders"), true).await;
    assert!(keys.rows.is_empty());
    let fks = npgsql4_command(&mut f, &powerbi_foreign_keys("gold", "fact_orders"), true).await;
    assert!(fks.rows.is_empty());

    // Preview, binary: every column type is one Npgsql loaded.
    let preview = npgsql4_command(
        &mut f,
        "select \"$Table\".\"order_id\", \"$Table\".\"customer\", \"$Table\".\"amount\", \"$Table\".\"ordered_at\", \"$Table\".\"order_date\", \"$Table\".\"paid\", \"$Table\".\"discount\", \"$Table\".\"tags\" from \"gold\".\"fact_orders\" \"$Table\" limit 1000",
        true,
    )
    .await;
    assert_eq!(preview.rows.len(), 2);
    let oids: Vec<u32> = preview.columns.iter().map(|c| c.type_oid).collect();
    assert_eq!(oids, vec![20, 25, 1700, 1184, 1082, 16, 701, 1009]);
    for o in &oids {
        assert!(types.contains(o));
    }
    f.terminate().await.expect("terminate");

    // The next physical connection of a refresh: types again, then a query.
    let mut f = Frontend::connect(server.addr, NPGSQL4_STARTUP)
        .await
        .expect("connects");
    npgsql4_load_types(&mut f).await;
    let view = npgsql4_command(
        &mut f,
        "select \"_\".\"order_id\", \"_\".\"amount\" from \"gold\".\"paid_orders\" \"_\"",
        true,
    )
    .await;
    assert_eq!(view.rows.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npgsql8_type_loading_batch_and_pool_reset() {
    let server = TestServer::start("").await;
    sample_lake(&server.connect().await).await;
    let mut f = Frontend::connect(
        server.addr,
        &[
            ("user", "tidepool"),
            ("client_encoding", "UTF8"),
            ("database", "lake"),
            ("application_name", "Npgsql 8"),
        ],
    )
    .await
    .expect("connects");
    f.query(&crlf(NPGSQL8_TYPES_BATCH));
    let replies = f.round_trip(1).await.expect("batch");
    let results = expect_ok(&replies, "Npgsql 8 type loading");
    assert_eq!(results.len(), 4, "{replies:?}");
    let version = results[0].texts("version");
    assert!(
        version[0]
            .as_deref()
            .unwrap_or("")
            .starts_with("PostgreSQL "),
        "Npgsql parses the long version: {version:?}"
    );
    let types: HashSet<u32> = results[1]
        .texts("oid")
        .into_iter()
        .flatten()
        .filter_map(|o| o.parse().ok())
        .collect();
    for oid in [16, 20, 25, 701, 1082, 1184, 1700, 1009] {
        assert!(types.contains(&oid), "{oid}");
    }
    let typtypes: HashSet<String> = results[1].texts("typtype").into_iter().flatten().collect();
    assert!(
        typtypes.contains("b") && typtypes.contains("a"),
        "{typtypes:?}"
    );

    // A prepared statement, then the reset batch, then a query again.
    f.parse(
        "_p1",
        "SELECT order_id, amount FROM gold.fact_orders WHERE order_id = $1",
        &[20],
    )
    .describe_statement("_p1")
    .sync();
    expect_ok(&f.round_trip(1).await.expect("prepare"), "prepare");
    f.bind("", "_p1", &[1], &[Some(&2i64.to_be_bytes())], &[1])
        .execute("", 0)
        .sync();
    let res = expect_ok(&f.round_trip(1).await.expect("execute"), "execute");
    assert_eq!(res[0].rows.len(), 1);

    f.query(NPGSQL8_RESET);
    let replies = f.round_trip(1).await.expect("reset");
    let results = expect_ok(&replies, "Npgsql 8 reset");
    let tags: Vec<String> = results.iter().filter_map(|r| r.tag.clone()).collect();
    assert_eq!(
        tags,
        vec![
            "SET",
            "RESET",
            "CLOSE CURSOR ALL",
            "UNLISTEN",
            "SELECT 1",
            "DISCARD SEQUENCES",
            "DISCARD TEMP"
        ],
        "{replies:?}"
    );
    f.query("SELECT count(*) FROM gold.fact_orders");
    let res = expect_ok(&f.round_trip(1).await.expect("query"), "query");
    assert_eq!(res[0].texts("count"), vec![Some("2".to_string())]);
}

/// `DbConnection.GetSchema(collection, restrictions)` as Npgsql 4.0 answers it (Power BI's
/// and SSIS's path to databases, users, indexes and keys), then `GetColumnSchema()` with
/// key info for a query's columns, found by the table oid and column number RowDescription
/// carries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npgsql4_get_schema_collections_and_column_schema() {
    let server = TestServer::start("").await;
    let client = server.connect().await;
    sample_lake(&client).await;
    client
        .batch_execute(
            "CREATE TABLE gold.dim_customer (customer TEXT PRIMARY KEY, name TEXT NOT NULL);
             CREATE TABLE gold.keyed (id BIGINT PRIMARY KEY, customer TEXT REFERENCES gold.dim_customer (customer), amount NUMERIC(12,2));
             INSERT INTO gold.dim_customer VALUES ('c1', 'one');
             INSERT INTO gold.keyed VALUES (1, 'c1', 2.50)",
        )
        .await
        .expect("keyed tables");
    let mut f = Frontend::connect(server.addr, NPGSQL4_STARTUP)
        .await
        .expect("connects");
    npgsql4_load_types(&mut f).await;
    let mut got = std::collections::HashMap::new();
    for (collection, query, params) in sql::npgsql4_get_schema("lake", "gold", "keyed") {
        let params: Vec<Option<&[u8]>> = params.iter().map(|p| Some(p.as_bytes())).collect();
        f.extended(&crlf(&query), &params, 0).sync();
        let replies = f.round_trip(1).await.expect("round trip");
        let mut results = expect_ok(&replies, collection);
        assert_eq!(results.len(), 1, "{collection}: {replies:?}");
        got.insert(collection, results.remove(0));
    }
    let first = |c: &str, col: &str| -> Vec<String> {
        got[c]
            .texts(col)
            .into_iter()
            .map(|v| v.unwrap_or_default())
            .collect()
    };
    assert_eq!(first("Databases", "database_name"), vec!["lake"]);
    assert_eq!(first("Databases", "encoding"), vec!["UTF8"]);
    assert_eq!(first("Schemata", "schema_name"), vec!["gold"]);
    let tables = first("Tables", "table_name");
    assert!(
        tables.contains(&"keyed".to_string()) && !tables.contains(&"paid_orders".to_string()),
        "{tables:?}"
    );
    assert_eq!(
        first("Columns", "column_name"),
        vec!["id", "customer", "amount"]
    );
    assert_eq!(
        first("Columns", "data_type"),
        vec!["int8", "text", "numeric"]
    );
    assert_eq!(first("Columns", "is_nullable"), vec!["NO", "YES", "YES"]);
    assert_eq!(first("Columns", "numeric_precision")[2], "12");
    assert_eq!(first("Views", "table_name"), vec!["paid_orders"]);
    assert!(!first("Users", "user_name").is_empty());
    let indexes = first("Indexes", "index_name");
    assert_eq!(indexes.len(), 1, "the primary key's index: {indexes:?}");
    assert_eq!(first("IndexColumns", "column_name"), vec!["id"]);
    assert_eq!(first("ForeignKeys", "CONSTRAINT_TYPE"), vec!["FOREIGN KEY"]);
    let mut kinds = first("ConstraintColumns", "constraint_type");
    kinds.sort();
    assert_eq!(kinds, vec!["FOREIGN KEY", "PRIMARY KEY"]);

    // GetColumnSchema(): the query's RowDescription names table and column, then Npgsql
    // asks for each column's facts on a second connection.
    f.extended(
        "SELECT k.id, k.amount AS total, 1 AS one FROM gold.keyed k",
        &[],
        1,
    )
    .sync();
    let replies = f.round_trip(1).await.expect("query");
    let result = expect_ok(&replies, "keyed query").remove(0);
    let origins: Vec<(u32, i16)> = result
        .columns
        .iter()
        .filter(|c| c.table_oid != 0)
        .map(|c| (c.table_oid, c.attnum))
        .collect();
    assert_eq!(origins.len(), 2, "{:?}", result.columns);
    let mut g = Frontend::connect(server.addr, NPGSQL4_STARTUP)
        .await
        .expect("connects");
    g.extended(&crlf(&sql::npgsql_column_schema(&origins)), &[], 0)
        .sync();
    let replies = g.round_trip(1).await.expect("column schema");
    let schema = expect_ok(&replies, "GetColumnSchema").remove(0);
    let col = |name: &str| -> Vec<String> {
        schema
            .texts(name)
            .into_iter()
            .map(|v| v.unwrap_or_default())
            .collect()
    };
    assert_eq!(col("attname"), vec!["id", "amount"]);
    assert_eq!(col("relname"), vec!["keyed", "keyed"]);
    assert_eq!(col("isprimarykey"), vec!["t", "f"]);
    assert_eq!(col("isunique"), vec!["t", "f"]);
    assert_eq!(col("attnotnull"), vec!["t", "f"]);
    // numeric(12,2): typmod (12 << 16 | 2) + 4.
    assert_eq!(col("typmod")[1], ((12 << 16 | 2) + 4).to_string());
    g.query(sql::NPGSQL_CHARACTER_SETS);
    let replies = g.round_trip(1).await.expect("character sets");
    let sets = expect_ok(&replies, "character sets").remove(0);
    assert_eq!(sets.texts("character_set_name"), vec![Some("UTF8".into())]);
}
