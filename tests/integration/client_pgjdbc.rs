//! pgjdbc 42.7 as DBeaver, Metabase, Tableau and DataGrip use it, replayed message by
//! message: startup with its parameters, `SET extra_float_digits`, then
//! `DatabaseMetaData.getSchemas/getTables/getColumns/getPrimaryKeys/getIndexInfo` and the
//! type lookup by oid, each an
//! unnamed extended-protocol statement with varchar parameters (Parse, Bind, Describe,
//! Execute, Sync), and a query run six times, which the driver turns into a named server
//! prepared statement from the fifth run (`prepareThreshold`).

use tidepool_testkit::frontend::{Frontend, Reply, StatementResult, split_results};

use crate::client_npgsql::sample_lake;
use crate::common::TestServer;

pub use tidepool_testkit::clients::pgjdbc as sql;

/// One metadata statement as pgjdbc sends it; results in text.
async fn metadata(f: &mut Frontend, text: &str, args: &[&str]) -> StatementResult {
    let params: Vec<Option<&[u8]>> = args.iter().map(|a| Some(a.as_bytes())).collect();
    f.parse("", &sql::numbered(text), &vec![1043; args.len()])
        .bind("", "", &[], &params, &[])
        .describe_portal("")
        .execute("", 0)
        .sync();
    let replies = f.round_trip(1).await.expect("round trip");
    let mut results = split_results(&replies);
    assert_eq!(results.len(), 1, "{text}: {replies:?}");
    let r = results.remove(0);
    assert!(r.error.is_none(), "{text}: {:?}", r.error);
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgjdbc_metadata_and_prepared_statements() {
    let server = TestServer::start("").await;
    sample_lake(&server.connect().await).await;
    let mut f = Frontend::connect(server.addr, sql::STARTUP)
        .await
        .expect("connects");
    f.query(sql::INITIAL);
    let init = split_results(&f.round_trip(1).await.expect("init"));
    assert!(init.iter().all(|r| r.error.is_none()), "{init:?}");

    let schemas = metadata(&mut f, sql::GET_SCHEMAS, &[]).await;
    let names: Vec<String> = schemas.texts("TABLE_SCHEM").into_iter().flatten().collect();
    assert!(names.contains(&"gold".to_string()), "{names:?}");

    let tables = metadata(&mut f, sql::GET_TABLES, &["gold", "%"]).await;
    let rows: Vec<(String, String)> = tables
        .texts("TABLE_NAME")
        .into_iter()
        .zip(tables.texts("TABLE_TYPE"))
        .map(|(n, t)| (n.unwrap_or_default(), t.unwrap_or_default()))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("fact_orders".to_string(), "TABLE".to_string()),
            ("paid_orders".to_string(), "VIEW".to_string())
        ]
    );

    let cols = metadata(&mut f, sql::GET_COLUMNS, &["gold", "fact_orders", "%"]).await;
    let got: Vec<(String, String, String, String)> = (0..cols.rows.len())
        .map(|i| {
            let v = |c: &str| cols.texts(c)[i].clone().unwrap_or_default();
            (v("attname"), v("atttypid"), v("atttypmod"), v("attnum"))
        })
        .collect();
    let expected = [
        ("order_id", "20", "-1"),
        ("customer", "25", "-1"),
        ("amount", "1700", "786438"),
        ("ordered_at", "1184", "-1"),
        ("order_date", "1082", "-1"),
        ("paid", "16", "-1"),
        ("discount", "701", "-1"),
        ("tags", "1009", "-1"),
    ];
    assert_eq!(got.len(), expected.len(), "{got:?}");
    for (i, (name, oid, typmod)) in expected.iter().enumerate() {
        assert_eq!(
            got[i],
            (
                name.to_string(),
                oid.to_string(),
                typmod.to_string(),
                (i + 1).to_string()
            )
        );
    }

    // Lake tables have no keys or indexes: both answer no rows.
    let pk = metadata(&mut f, sql::GET_PRIMARY_KEYS, &["gold", "fact_orders"]).await;
    assert!(
        pk.rows.is_empty() && pk.column("KEY_SEQ").is_some(),
        "{pk:?}"
    );
    let idx = metadata(&mut f, sql::GET_INDEX_INFO, &["gold", "fact_orders"]).await;
    assert!(
        idx.rows.is_empty() && idx.column("ASC_OR_DESC").is_some(),
        "{idx:?}"
    );

    let max_keys = metadata(&mut f, sql::MAX_INDEX_KEYS, &[]).await;
    assert_eq!(max_keys.texts("setting"), vec![Some("32".to_string())]);
    for exported in [false, true] {
        let keys = metadata(
            &mut f,
            &sql::imported_exported_keys(exported),
            &["gold", "fact_orders"],
        )
        .await;
        assert!(
            keys.rows.is_empty() && keys.column("DEFERRABILITY").is_some(),
            "exported={exported}: {keys:?}"
        );
    }

    let ty = metadata(&mut f, sql::TYPE_BY_OID, &["1700"]).await;
    assert_eq!(ty.texts("typname"), vec![Some("numeric".to_string())]);
    assert_eq!(ty.texts("is_array"), vec![Some("f".to_string())]);
    let arr = metadata(&mut f, sql::TYPE_BY_OID, &["1009"]).await;
    assert_eq!(arr.texts("is_array"), vec![Some("t".to_string())]);

    // Unnamed four times, then the driver prepares S_1 and reuses it.
    let query = "SELECT order_id, amount FROM gold.fact_orders WHERE order_id = $1";
    for run in 1..=6 {
        let id = b"2";
        if run < 5 {
            f.parse("", query, &[20])
                .bind("", "", &[], &[Some(id)], &[]);
            f.describe_portal("");
        } else if run == 5 {
            f.parse("S_1", query, &[20]).describe_statement("S_1").bind(
                "",
                "S_1",
                &[],
                &[Some(id)],
                &[1],
            );
        } else {
            f.bind("", "S_1", &[], &[Some(id)], &[1]);
        }
        f.execute("", 0).sync();
        let replies = f.round_trip(1).await.expect("run");
        let results = split_results(&replies);
        assert!(
            results.len() == 1 && results[0].error.is_none() && results[0].rows.len() == 1,
            "run {run}: {replies:?}"
        );
    }
    f.close_statement("S_1").sync();
    let closed = split_results(&f.round_trip(1).await.expect("close"));
    assert!(closed.iter().all(|r| r.error.is_none()));
}

/// pgjdbc's `PreparedStatement.executeBatch()` of INSERTs, as it sends it (seen with the
/// real driver, 42.5.5): Parse with the driver's types + Describe statement + Sync, then
/// Bind/Describe portal/Execute per row and one Sync. A statement without rows must
/// describe as ParameterDescription + NoData (a RowDescription of zero columns made the
/// driver report the batch as [0, 0, 0]) with the driver's own parameter types, and each
/// Execute completes with `INSERT 0 1`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_inserts_describe_as_no_data_and_count_rows() {
    let server = TestServer::start("").await;
    let client = server.connect().await;
    client
        .batch_execute("CREATE SCHEMA gold; CREATE TABLE gold.jb (id BIGINT, name TEXT)")
        .await
        .unwrap();
    let mut f = Frontend::connect(server.addr, sql::STARTUP)
        .await
        .expect("connects");
    // int8 and varchar, as pgjdbc binds a long and a String.
    f.parse("S_1", "INSERT INTO gold.jb VALUES ($1, $2)", &[20, 1043])
        .describe_statement("S_1")
        .sync();
    let replies = f.round_trip(1).await.expect("describe");
    assert_eq!(
        replies,
        vec![
            Reply::ParseComplete,
            Reply::ParameterDescription(vec![20, 1043]),
            Reply::NoData,
            Reply::Ready(b'I'),
        ]
    );
    for id in 0..3i64 {
        let id = id.to_string();
        f.bind("", "S_1", &[], &[Some(id.as_bytes()), Some(b"n")], &[])
            .describe_portal("")
            .execute("", 1);
    }
    f.sync();
    let replies = f.round_trip(1).await.expect("batch");
    let tags: Vec<&Reply> = replies
        .iter()
        .filter(|r| matches!(r, Reply::CommandComplete(_)))
        .collect();
    assert_eq!(
        tags,
        vec![&Reply::CommandComplete("INSERT 0 1".into()); 3],
        "{replies:?}"
    );
    let n = client
        .query_one("SELECT count(*) FROM gold.jb", &[])
        .await
        .unwrap();
    assert_eq!(n.get::<_, i64>(0), 3);
}
