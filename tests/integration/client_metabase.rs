//! Metabase's PostgreSQL sync, replayed through pgjdbc's protocol path (unnamed
//! prepared statements, varchar and binary int8 parameters): the report time zone, the
//! table-privileges CTE, tables with row estimates, fields with Postgres type names and
//! positions, foreign keys and enum types. Then the privileges as a reader user sees them.

use tidepool_testkit::frontend::{Frontend, StatementResult, split_results};

use crate::client_npgsql::sample_lake;
use crate::client_pgjdbc::sql as pgjdbc;
use crate::common::TestServer;

use tidepool_testkit::clients::metabase as sql;

/// A parameter as pgjdbc binds it: strings as varchar text, longs as binary int8.
enum Param<'a> {
    Text(&'a str),
    Long(i64),
}

async fn run(f: &mut Frontend, text: &str, params: &[Param<'_>]) -> StatementResult {
    let types: Vec<u32> = params
        .iter()
        .map(|p| match p {
            Param::Text(_) => 1043,
            Param::Long(_) => 20,
        })
        .collect();
    let formats: Vec<i16> = params
        .iter()
        .map(|p| match p {
            Param::Text(_) => 0,
            Param::Long(_) => 1,
        })
        .collect();
    let bytes: Vec<Vec<u8>> = params
        .iter()
        .map(|p| match p {
            Param::Text(s) => s.as_bytes().to_vec(),
            Param::Long(n) => n.to_be_bytes().to_vec(),
        })
        .collect();
    let values: Vec<Option<&[u8]>> = bytes.iter().map(|b| Some(b.as_slice())).collect();
    f.parse("", &sql::numbered(text), &types)
        .bind("", "", &formats, &values, &[])
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

/// Rows of `r` as text in the order of `columns`.
fn rows(r: &StatementResult, columns: &[&str]) -> Vec<Vec<String>> {
    let cols: Vec<Vec<Option<String>>> = columns.iter().map(|c| r.texts(c)).collect();
    for (c, v) in columns.iter().zip(&cols) {
        assert_eq!(v.len(), r.rows.len(), "column {c} is in the result");
    }
    (0..r.rows.len())
        .map(|i| {
            cols.iter()
                .map(|c| c[i].clone().unwrap_or_else(|| "NULL".into()))
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metabase_sync_replay() {
    let server = TestServer::start("").await;
    sample_lake(&server.connect().await).await;
    let mut f = Frontend::connect(server.addr, pgjdbc::STARTUP)
        .await
        .expect("connects");
    f.query(pgjdbc::INITIAL);
    let init = split_results(&f.round_trip(1).await.expect("init"));
    assert!(init.iter().all(|r| r.error.is_none()), "{init:?}");

    let tz = run(&mut f, sql::SHOW_TIMEZONE, &[]).await;
    assert_eq!(tz.rows.len(), 1);
    assert_eq!(tz.texts(&tz.columns[0].name), vec![Some("UTC".to_string())]);
    f.query(sql::SET_TIMEZONE);
    let set = split_results(&f.round_trip(1).await.expect("set"));
    assert!(set.iter().all(|r| r.error.is_none()), "{set:?}");

    let privileges = run(&mut f, sql::TABLE_PRIVILEGES, &[]).await;
    let got = rows(
        &privileges,
        &["schema", "table", "select", "update", "insert", "delete"],
    );
    for t in ["fact_orders", "paid_orders"] {
        assert!(
            got.iter()
                .any(|r| r[0] == "gold" && r[1] == t && r[2] == "t" && r[5] == "t"),
            "{t} is selectable by the loopback superuser: {got:?}"
        );
    }

    let tables = run(
        &mut f,
        sql::GET_TABLES,
        &[
            Param::Long(0),
            Param::Text("^pg_"),
            Param::Text("information_schema"),
            Param::Text("gold"),
        ],
    )
    .await;
    assert_eq!(
        rows(&tables, &["schema", "name", "type"]),
        vec![
            vec!["gold", "fact_orders", "TABLE"],
            vec!["gold", "paid_orders", "VIEW"]
        ]
    );

    let fields = run(
        &mut f,
        sql::DESCRIBE_FIELDS,
        &[Param::Text("gold"), Param::Text("gold")],
    )
    .await;
    let got = rows(
        &fields,
        &[
            "table-name",
            "name",
            "database-type",
            "database-position",
            "pk?",
            "database-is-auto-increment",
        ],
    );
    let facts: Vec<(String, String, String)> = got
        .iter()
        .filter(|r| r[0] == "fact_orders")
        .map(|r| (r[1].clone(), r[2].clone(), r[3].clone()))
        .collect();
    let expected = [
        ("order_id", "int8"),
        ("customer", "text"),
        ("amount", "numeric"),
        ("ordered_at", "timestamptz"),
        ("order_date", "date"),
        ("paid", "bool"),
        ("discount", "float8"),
        ("tags", "_text"),
    ];
    assert_eq!(facts.len(), expected.len(), "{got:?}");
    for (i, ((name, ty, pos), (want_name, want_ty))) in facts.iter().zip(expected).enumerate() {
        assert_eq!(
            (name.as_str(), ty.as_str(), pos.as_str()),
            (want_name, want_ty, i.to_string().as_str())
        );
    }
    assert!(
        got.iter().all(|r| r[4] == "f" && r[5] == "f"),
        "no keys or identity columns: {got:?}"
    );
    assert!(
        got.iter()
            .any(|r| r[0] == "paid_orders" && r[1] == "amount"),
        "views are described too: {got:?}"
    );

    let fks = run(&mut f, sql::DESCRIBE_FKS, &[Param::Text("gold")]).await;
    assert!(fks.rows.is_empty(), "no foreign keys in a lake");
    let enums = run(&mut f, sql::ENUM_TYPES, &[]).await;
    assert!(enums.rows.is_empty(), "no enum types");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metabase_privileges_follow_users() {
    let server = TestServer::start(
        "[[users]]\nname = \"admin\"\npassword = \"admin pw\"\n\n\
         [[users]]\nname = \"bi\"\npassword = \"bi pw\"\nschemas = [\"gold\"]\n",
    )
    .await;
    let admin =
        crate::common::connect(&format!("{} password='admin pw'", server.conn_str("admin"))).await;
    sample_lake(&admin).await;
    admin
        .batch_execute("CREATE SCHEMA silver; CREATE TABLE silver.orders AS SELECT 1 AS id")
        .await
        .unwrap();
    let privileges = |client: tokio_postgres::Client| async move {
        let mut rows: Vec<(String, String, bool, bool)> = client
            .query(sql::TABLE_PRIVILEGES, &[])
            .await
            .expect("privileges query")
            .iter()
            .map(|r| {
                (
                    r.get("schema"),
                    r.get("table"),
                    r.get("select"),
                    r.get("insert"),
                )
            })
            .filter(|r: &(String, String, bool, bool)| r.0 != "system")
            .collect();
        rows.sort();
        rows
    };
    let bi = crate::common::connect(&format!("{} password='bi pw'", server.conn_str("bi"))).await;
    assert_eq!(
        privileges(bi).await,
        vec![
            ("gold".into(), "fact_orders".into(), true, false),
            ("gold".into(), "paid_orders".into(), true, false),
        ],
        "a reader of gold sees gold, read-only"
    );
    assert_eq!(
        privileges(admin).await,
        vec![
            ("gold".into(), "fact_orders".into(), true, true),
            ("gold".into(), "paid_orders".into(), true, true),
            ("silver".into(), "orders".into(), true, true),
        ]
    );
}
