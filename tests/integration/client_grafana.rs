//! Grafana's PostgreSQL data source (pgx), replayed: the health check `-- ping` as a simple
//! query, then the query editor's version, schema, table and column lookups as unnamed
//! extended-protocol statements.

use tidepool_testkit::frontend::{Frontend, Reply, StatementResult, split_results};

use crate::client_npgsql::sample_lake;
use crate::common::TestServer;

use tidepool_testkit::clients::grafana as sql;

async fn extended(f: &mut Frontend, text: &str) -> StatementResult {
    f.extended(text, &[], 0).sync();
    let replies = f.round_trip(1).await.expect("round trip");
    let mut results = split_results(&replies);
    assert_eq!(results.len(), 1, "{text}: {replies:?}");
    let r = results.remove(0);
    assert!(r.error.is_none(), "{text}: {:?}", r.error);
    r
}

fn column(r: &StatementResult, name: &str) -> Vec<String> {
    r.texts(name).into_iter().flatten().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_health_check_and_query_editor() {
    let server = TestServer::start("").await;
    let client = server.connect().await;
    sample_lake(&client).await;
    client
        .batch_execute("CREATE TABLE public.events AS SELECT 1 AS id, 'x' AS kind")
        .await
        .unwrap();
    let mut f = Frontend::connect(server.addr, &[("user", "tidepool"), ("database", "lake")])
        .await
        .expect("connects");

    f.query(sql::PING);
    let replies = f.round_trip(1).await.expect("ping");
    assert!(
        matches!(replies.as_slice(), [Reply::EmptyQuery, Reply::Ready(b'I')]),
        "a comment-only query is an empty query: {replies:?}"
    );

    let version = extended(&mut f, sql::VERSION).await;
    assert_eq!(column(&version, "version"), vec!["1600".to_string()]);
    let ts = extended(&mut f, sql::TIMESCALEDB).await;
    assert!(ts.rows.is_empty());

    let schemas = column(&extended(&mut f, sql::SCHEMAS).await, "name");
    assert!(schemas.contains(&"gold".to_string()), "{schemas:?}");
    assert!(!schemas.contains(&"pg_catalog".to_string()), "{schemas:?}");

    let gold = column(&extended(&mut f, &sql::tables_in("gold")).await, "table");
    assert_eq!(
        gold,
        vec!["fact_orders".to_string(), "paid_orders".to_string()]
    );

    let all = column(&extended(&mut f, &sql::tables()).await, "table");
    assert_eq!(
        all.first().map(String::as_str),
        Some("events"),
        "search-path tables first: {all:?}"
    );
    assert!(all.contains(&"gold.fact_orders".to_string()), "{all:?}");

    let cols = extended(&mut f, &sql::columns("gold.fact_orders")).await;
    let got: Vec<(String, String)> = column(&cols, "column")
        .into_iter()
        .zip(column(&cols, "type"))
        .collect();
    assert!(
        got.contains(&("amount".to_string(), "numeric".to_string()))
            && got.contains(&(
                "ordered_at".to_string(),
                "timestamp with time zone".to_string()
            )),
        "{got:?}"
    );
    let unqualified = extended(&mut f, &sql::columns("events")).await;
    assert_eq!(
        column(&unqualified, "column"),
        vec!["id".to_string(), "kind".to_string()]
    );
}
