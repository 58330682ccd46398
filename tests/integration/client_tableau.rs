//! Tableau's PostgreSQL connector, replayed. Tableau Desktop reads through psqlODBC in
//! declare/fetch mode and probes the server's capabilities on connect. The statements
//! below follow the shapes published in public threads of other Postgres-compatible
//! servers (crate/crate#10212 and #10213, ildus/clickhouse_fdw#42): the `SELECT INTO
//! TEMPORARY TABLE` and `CREATE LOCAL TEMPORARY TABLE ... ON COMMIT PRESERVE ROWS`
//! probes, `GROUP BY <ordinal>` queries, filter temp tables, and every result read with
//! `BEGIN; declare "SQL_CUR..." cursor with hold for ...; fetch 2048 in "SQL_CUR..."`.
//! They are simple queries, as psqlODBC sends them. The JDBC-based connector (newer
//! Tableau) reads with a fetch size instead: portals executed with a row limit.

use tokio_postgres::SimpleQueryMessage;

use crate::client_npgsql::sample_lake;
use crate::common::{TestServer, connect};

/// Rows of every result in a simple-query batch, as text, plus the command tags.
async fn simple(client: &tokio_postgres::Client, sql: &str) -> (Vec<Vec<String>>, Vec<u64>) {
    let messages = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut rows = Vec::new();
    let mut tags = Vec::new();
    for m in messages {
        match m {
            SimpleQueryMessage::Row(r) => rows.push(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("NULL").to_string())
                    .collect(),
            ),
            SimpleQueryMessage::CommandComplete(n) => tags.push(n),
            _ => {}
        }
    }
    (rows, tags)
}

const SELECT_INTO_PROBE: &str = r##"SELECT *
INTO TEMPORARY TABLE "#Tableau_1_1_Connect_CheckSelectIntoCap"
FROM (SELECT 1 AS COL) AS CHECKTEMP
LIMIT 1"##;

const CREATE_TEMP_PROBE: &str = r##"CREATE LOCAL TEMPORARY TABLE "#Tableau_1_2_Connect_CheckCreateTempTableCap" (
	"COL" INTEGER
	) ON COMMIT PRESERVE ROWS"##;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tableau_connect_probes_browse_and_cursor_reads() {
    let server = TestServer::start("").await;
    let admin = server.connect().await;
    sample_lake(&admin).await;
    admin
        .batch_execute(
            "CREATE TABLE gold.clicks AS
               SELECT value AS id, CASE WHEN value % 3 = 0 THEN 'web' ELSE 'app' END AS channel,
                      value % 7 AS units
               FROM generate_series(1, 5000)",
        )
        .await
        .unwrap();
    let c = server.connect().await;

    // Connect: capability probes, each created table dropped again.
    let (_, tags) = simple(&c, SELECT_INTO_PROBE).await;
    assert_eq!(tags, vec![1], "SELECT INTO reports its row count");
    let (rows, _) = simple(
        &c,
        r##"SELECT * FROM "#Tableau_1_1_Connect_CheckSelectIntoCap""##,
    )
    .await;
    assert_eq!(rows, vec![vec!["1".to_string()]]);
    simple(&c, CREATE_TEMP_PROBE).await;
    simple(
        &c,
        r##"INSERT INTO "#Tableau_1_2_Connect_CheckCreateTempTableCap" ("COL") VALUES (1)"##,
    )
    .await;
    simple(
        &c,
        r##"DROP TABLE "#Tableau_1_1_Connect_CheckSelectIntoCap""##,
    )
    .await;
    simple(
        &c,
        r##"DROP TABLE "#Tableau_1_2_Connect_CheckCreateTempTableCap""##,
    )
    .await;
    let gone = c
        .simple_query(r##"SELECT * FROM "#Tableau_1_2_Connect_CheckCreateTempTableCap""##)
        .await
        .expect_err("dropped");
    assert_eq!(gone.code().map(|s| s.code()), Some("42P01"), "{gone}");
    // Nothing reached the lake.
    let (rows, _) = simple(
        &admin,
        "SELECT count(*) FROM information_schema.tables WHERE table_name LIKE '#Tableau%'",
    )
    .await;
    assert_eq!(rows, vec![vec!["0".to_string()]]);

    // GROUP BY by ordinal, the second column a dimension; empty GROUP BY as HAVING.
    let (rows, _) = simple(
        &c,
        r##"BEGIN;declare "SQL_CUR0x7fd83880dc00" cursor with hold for SELECT SUM("clicks"."units") AS "sum:units:ok",
  CAST("clicks"."channel" AS TEXT) AS "channel"
FROM "gold"."clicks" "clicks"
GROUP BY 2
ORDER BY 2 ASC NULLS FIRST;fetch 2048 in "SQL_CUR0x7fd83880dc00""##,
    )
    .await;
    let expected: Vec<Vec<String>> = {
        let (app, web): (Vec<i64>, Vec<i64>) = (1..=5000).partition(|v| v % 3 != 0);
        vec![
            vec![
                app.iter().map(|v| v % 7).sum::<i64>().to_string(),
                "app".into(),
            ],
            vec![
                web.iter().map(|v| v % 7).sum::<i64>().to_string(),
                "web".into(),
            ],
        ]
    };
    assert_eq!(rows, expected);
    simple(&c, r##"close "SQL_CUR0x7fd83880dc00";COMMIT"##).await;
    let (rows, _) = simple(
        &c,
        r##"SELECT AVG("clicks"."units") AS "TEMP(Test)(4016644369)(0)" FROM "gold"."clicks" "clicks" HAVING (COUNT(1) > 0)"##,
    )
    .await;
    assert_eq!(rows.len(), 1);

    // A whole table through a cursor, 2048 rows at a time, until a short fetch.
    simple(
        &c,
        r##"BEGIN;declare "SQL_CUR0x1" cursor with hold for SELECT "clicks"."id" AS "id", "clicks"."channel" AS "channel" FROM "gold"."clicks" "clicks" ORDER BY 1"##,
    )
    .await;
    let mut ids = Vec::new();
    loop {
        let (rows, tags) = simple(&c, r##"fetch 2048 in "SQL_CUR0x1""##).await;
        assert_eq!(tags, vec![rows.len() as u64], "FETCH n tag");
        ids.extend(rows.iter().map(|r| r[0].parse::<i64>().unwrap()));
        if rows.len() < 2048 {
            break;
        }
    }
    assert_eq!(ids, (1..=5000).collect::<Vec<i64>>());
    simple(&c, r##"close "SQL_CUR0x1";COMMIT"##).await;
    let closed = c
        .simple_query(r##"fetch 1 in "SQL_CUR0x1""##)
        .await
        .expect_err("closed");
    assert_eq!(closed.code().map(|s| s.code()), Some("34000"), "{closed}");
    let backward = c
        .simple_query(r##"BEGIN;declare c2 cursor for SELECT 1;fetch backward 1 from c2"##)
        .await
        .expect_err("forward only");
    assert_eq!(
        backward.code().map(|s| s.code()),
        Some("55000"),
        "{backward}"
    );
    simple(&c, "ROLLBACK").await;
    let rolled_back = c.simple_query("fetch 1 from c2").await.expect_err("closed");
    assert_eq!(rolled_back.code().map(|s| s.code()), Some("34000"));

    // A filter with many values goes through a temp table joined to the data.
    simple(
        &c,
        r##"CREATE LOCAL TEMPORARY TABLE "#Tableau_5_Filter" (
	"channel" TEXT
	) ON COMMIT PRESERVE ROWS;
INSERT INTO "#Tableau_5_Filter" ("channel") VALUES ('web')"##,
    )
    .await;
    let (rows, _) = simple(
        &c,
        r##"SELECT COUNT(1) AS "cnt" FROM "gold"."clicks" "clicks"
  INNER JOIN "#Tableau_5_Filter" ON ("clicks"."channel" = "#Tableau_5_Filter"."channel")
HAVING (COUNT(1) > 0)"##,
    )
    .await;
    assert_eq!(rows, vec![vec!["1666".to_string()]]);

    // Temp tables are the session's own.
    let other = server.connect().await;
    let err = other
        .simple_query(r##"SELECT * FROM "#Tableau_5_Filter""##)
        .await
        .expect_err("another session");
    assert_eq!(err.code().map(|s| s.code()), Some("42P01"));
    simple(&c, "DISCARD ALL").await;
    assert!(
        c.simple_query(r##"SELECT * FROM "#Tableau_5_Filter""##)
            .await
            .is_err(),
        "DISCARD ALL drops temp tables"
    );
}

/// The JDBC connector reads with a fetch size: a portal executed with a row limit, then
/// resumed, inside a transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tableau_jdbc_fetch_size_reads_in_chunks() {
    let server = TestServer::start("").await;
    let admin = server.connect().await;
    admin
        .batch_execute(
            "CREATE TABLE public.big AS SELECT value AS id FROM generate_series(1, 2500)",
        )
        .await
        .unwrap();
    let mut c = server.connect().await;
    let tx = c.transaction().await.unwrap();
    let stmt = tx
        .prepare(r##"SELECT "big"."id" AS "id" FROM "public"."big" "big" ORDER BY 1"##)
        .await
        .unwrap();
    let portal = tx.bind(&stmt, &[]).await.unwrap();
    let mut ids: Vec<i64> = Vec::new();
    let mut chunks = 0;
    loop {
        let rows = tx.query_portal(&portal, 1000).await.unwrap();
        chunks += 1;
        ids.extend(rows.iter().map(|r| r.get::<_, i64>(0)));
        if rows.len() < 1000 {
            break;
        }
    }
    tx.commit().await.unwrap();
    assert_eq!(ids, (1..=2500).collect::<Vec<i64>>());
    assert_eq!(chunks, 3);
}

/// A reader (Power BI / Tableau service account) may use temp tables like any Postgres
/// user, but SELECT INTO a lake table is a write it may not do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_temp_tables_but_no_select_into_lake() {
    let server = TestServer::start(
        "[[users]]\nname = \"admin\"\npassword = \"admin pw\"\n\n\
         [[users]]\nname = \"bi\"\npassword = \"bi pw\"\nschemas = [\"gold\"]\n",
    )
    .await;
    let admin = connect(&format!("{} password='admin pw'", server.conn_str("admin"))).await;
    sample_lake(&admin).await;
    let bi = connect(&format!("{} password='bi pw'", server.conn_str("bi"))).await;
    simple(&bi, SELECT_INTO_PROBE).await;
    simple(&bi, CREATE_TEMP_PROBE).await;
    simple(
        &bi,
        "SELECT order_id INTO TEMP TABLE mine FROM gold.fact_orders; INSERT INTO mine SELECT order_id FROM gold.fact_orders",
    )
    .await;
    let (rows, _) = simple(&bi, "SELECT count(*) FROM mine").await;
    assert_eq!(rows, vec![vec!["4".to_string()]]);
    simple(&bi, "DROP TABLE mine").await;
    let err = bi
        .simple_query("SELECT * INTO gold.copy FROM gold.fact_orders")
        .await
        .expect_err("SELECT INTO the lake is a write");
    assert_eq!(err.code().map(|s| s.code()), Some("42501"), "{err}");
    let err = bi
        .simple_query("INSERT INTO gold.fact_orders SELECT * FROM gold.fact_orders")
        .await
        .expect_err("still no writes");
    assert_eq!(err.code().map(|s| s.code()), Some("42501"), "{err}");
    admin
        .batch_execute("CREATE SCHEMA silver; CREATE TABLE silver.x AS SELECT 1 AS order_id")
        .await
        .unwrap();
    let err = bi
        .simple_query("SELECT order_id INTO TEMP TABLE t2 FROM silver.x")
        .await
        .expect_err("reads are still checked");
    assert_eq!(err.code().map(|s| s.code()), Some("42501"), "{err}");
}
