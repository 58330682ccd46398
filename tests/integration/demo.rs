//! The retail demo end to end: the repository's own project (tidepool.toml, sql/,
//! views/) served over a temporary lake with the embedded broker, the shop generator
//! producing a bounded number of events into it, ingestion into bronze, the scheduled
//! build of silver and gold with their YAML tests; then checks through the Postgres
//! protocol. Also `tidepool demo` itself, briefly, as a user runs it.

use std::path::Path;
use std::time::Duration;

use tidepool::config::{Config, Overrides};
use tidepool::generate::{self, Mix, Options, SOURCES, Target};
use tokio_util::sync::CancellationToken;

use crate::common::TestServer;

async fn count(c: &tokio_postgres::Client, sql: &str) -> i64 {
    match c.query_one(sql, &[]).await {
        Ok(row) => row.get::<_, i64>(0),
        Err(e) if e.code().map(|s| s.code()) == Some("42P01") => 0,
        Err(e) => panic!("{sql}: {e}"),
    }
}

/// Rows in bronze and the dead letters, over every source.
async fn landed(c: &tokio_postgres::Client) -> (i64, i64) {
    let (mut rows, mut dead) = (0, 0);
    for (source, _) in SOURCES {
        rows += count(c, &format!("SELECT count(*) FROM bronze.{source}")).await;
        dead += count(
            c,
            &format!("SELECT count(*) FROM bronze.{source}__dead_letters"),
        )
        .await;
    }
    (rows, dead)
}

/// Per-partition ingest state (`system.ingest`) and per-source counts, for a failure
/// message: which consumer stalled, at which offset, with which error.
async fn ingest_state(c: &tokio_postgres::Client) -> String {
    let mut out = String::new();
    for (source, _) in SOURCES {
        let rows = count(c, &format!("SELECT count(*) FROM bronze.{source}")).await;
        out.push_str(&format!("{source}={rows} "));
    }
    let sql = "SELECT source || '/' || topic || '/' || partition || ' committed=' || \
               coalesce(CAST(committed_offset AS VARCHAR), '-') || ' hw=' || \
               coalesce(CAST(high_watermark AS VARCHAR), '-') || ' running=' || \
               CAST(running AS VARCHAR) || ' paused=' || CAST(paused AS VARCHAR) || \
               ' error=' || coalesce(last_error, '') FROM system.ingest \
               ORDER BY source, topic, partition";
    match c.query(sql, &[]).await {
        Ok(rows) => {
            for r in rows {
                out.push_str(&format!("\n  {}", r.get::<_, String>(0)));
            }
        }
        Err(e) => out.push_str(&format!("\n  system.ingest: {e}")),
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_project_from_events_to_marts() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lake = tempfile::tempdir().expect("tempdir");
    let config = repo.join("tidepool.toml");
    let overrides = Overrides {
        config: Some(config.clone()),
        lake: Some(lake.path().display().to_string()),
        ..loopback()
    };
    let settings = Config::load(Some(&config))
        .expect("tidepool.toml loads")
        .resolve(&overrides)
        .expect("tidepool.toml is valid");
    let server = TestServer::start_with(lake, settings).await;
    let c = server.connect().await;
    generate_and_check(&c, &server.brokers, 20_000).await;

    // The same events through the HTTP ingest endpoint (`tidepool generate --http`):
    // broken JSON is refused at the door, everything else lands.
    let (rows, dead) = landed(&c).await;
    let http = server.http.expect("http enabled");
    let options = Options {
        rate: 4000,
        events: Some(4_000),
        seed: 12,
        start: chrono::Utc::now(),
        first_id: 1_000_000,
        mix: Mix::default(),
        target: Target::Http {
            url: format!("http://{http}"),
            credentials: None,
        },
    };
    let stats = generate::run(options, CancellationToken::new())
        .await
        .expect("generator posts");
    assert_eq!(stats.failed, 0);
    let expected = rows + dead + stats.sent as i64 - stats.rejected as i64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (r, d) = landed(&c).await;
        if r + d == expected {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!(
                "http: {r} + {d} of {expected} ({stats}); ingest: {}",
                ingest_state(&c).await
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// docker-compose.yml's settings (tidepool.docker.toml: S3 lake on MinIO, an external
/// Kafka, users) without containers: the same file with the host names and passwords
/// swapped for a moto S3 server and a tansu broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_settings_on_s3_and_a_real_broker() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let moto = crate::object_store::start_moto("lake").await;
    let tansu = crate::kafka_e2e::Tansu::start();
    for (source, _) in SOURCES {
        tansu.create_topic(&format!("shop.{source}"), 3).await;
    }
    let mut text = std::fs::read_to_string(repo.join("tidepool.docker.toml")).expect("reads");
    for (from, to) in [
        ("http://minio:9000", moto.endpoint.as_str()),
        ("kafka:9092", tansu.brokers.as_str()),
        (
            "password_env = \"TIDEPOOL_ANALYST_PASSWORD\"",
            "password = \"a\"",
        ),
        (
            "password_env = \"TIDEPOOL_POWERBI_PASSWORD\"",
            "password = \"p\"",
        ),
    ] {
        assert!(text.contains(from), "tidepool.docker.toml has {from}");
        text = text.replace(from, to);
    }
    let settings = Config::parse(&text, &repo.join("tidepool.docker.toml"))
        .expect("tidepool.docker.toml parses")
        .resolve(&loopback())
        .expect("tidepool.docker.toml is valid");
    // Same sources as the embedded demo.
    let local = Config::load(Some(&repo.join("tidepool.toml")))
        .unwrap()
        .resolve(&loopback())
        .unwrap();
    let names = |s: &tidepool::config::Settings| -> Vec<String> {
        s.sources
            .iter()
            .map(|x| format!("{}:{:?}", x.name, x.topics))
            .collect()
    };
    assert_eq!(names(&settings), names(&local));
    let server = TestServer::start_with(tempfile::tempdir().unwrap(), settings).await;
    let c = crate::common::connect(&format!("{} password=a", server.conn_str("analyst"))).await;
    generate_and_check(&c, &tansu.brokers, 6_000).await;
    // The powerbi reader sees gold and nothing else.
    let bi = crate::common::connect(&format!("{} password=p", server.conn_str("powerbi"))).await;
    assert!(count(&bi, "SELECT count(*) FROM gold.fact_orders").await > 0);
    let denied = bi
        .query_one("SELECT count(*) FROM silver.orders", &[])
        .await
        .expect_err("reader");
    assert_eq!(denied.code().map(|s| s.code()), Some("42501"));
}

fn loopback() -> Overrides {
    Overrides {
        pg_listen: Some("127.0.0.1:0".into()),
        http_listen: Some("127.0.0.1:0".into()),
        flight_listen: Some("127.0.0.1:0".into()),
        ..Default::default()
    }
}

/// Generates `events` shop events into `brokers`, waits until all landed and a scheduled
/// build ran after that, then checks the medallion through `c`.
async fn generate_and_check(c: &tokio_postgres::Client, brokers: &str, events: u64) {
    let options = Options {
        rate: 4000,
        events: Some(events),
        seed: 11,
        start: chrono::Utc::now() - chrono::Duration::hours(2),
        first_id: 1,
        mix: Mix::default(),
        target: Target::Kafka {
            brokers: brokers.to_string(),
            properties: Vec::new(),
        },
    };
    let stats = generate::run(options, CancellationToken::new())
        .await
        .expect("generator runs");
    assert_eq!(stats.sent, events);
    assert_eq!(stats.failed, 0);
    assert!(
        stats.late > 0 && stats.duplicates > 0 && stats.malformed > 0,
        "{stats}"
    );

    // Everything lands exactly once: rows plus dead letters is what was sent.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (rows, dead) = landed(c).await;
        if rows + dead == stats.sent as i64 {
            assert_eq!(
                dead, stats.malformed as i64,
                "malformed events are the dead letters"
            );
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!(
                "ingestion: {rows} rows + {dead} dead letters of {} sent; ingest: {}",
                stats.sent,
                ingest_state(c).await
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // A scheduled build that started after the last bronze commit (Delta commit time, not
    // when this test noticed: a build may already have started on the last commit),
    // models and tests green.
    let mut caught_up = chrono::DateTime::<chrono::Utc>::MIN_UTC;
    for (source, _) in SOURCES {
        for table in [source.to_string(), format!("{source}__dead_letters")] {
            let sql = format!("SELECT max(timestamp) FROM system.table_history('bronze.{table}')");
            if let Ok(row) = c.query_one(&sql, &[]).await
                && let Ok(Some(t)) = row.try_get::<_, Option<chrono::DateTime<chrono::Utc>>>(0)
            {
                caught_up = caught_up.max(t);
            }
        }
    }
    assert!(
        caught_up > chrono::DateTime::<chrono::Utc>::MIN_UTC,
        "no bronze commits seen"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    let run = loop {
        let rows = c
            .query(
                "SELECT status, models, tests, errors, started_at FROM system.runs \
                 WHERE command = 'schedule:build' AND finished_at IS NOT NULL \
                 ORDER BY started_at DESC LIMIT 1",
                &[],
            )
            .await
            .expect("system.runs");
        if let Some(r) = rows.first() {
            let started: chrono::DateTime<chrono::Utc> = r.get(4);
            if started >= caught_up {
                break (
                    r.get::<_, String>(0),
                    r.get::<_, i64>(1),
                    r.get::<_, i64>(2),
                    r.get::<_, i64>(3),
                );
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no scheduled build after ingestion caught up"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(run.0, "success", "scheduled build: {run:?}");
    assert!(run.1 >= 18 && run.2 >= 20 && run.3 == 0, "{run:?}");

    for mart in [
        "dim_customer",
        "dim_product",
        "dim_date",
        "fact_orders",
        "fact_order_items",
        "mart_user_activity",
        "mart_product_rating",
        "mart_user_loyalty_points",
        "mart_average_check",
        "mart_daily_revenue",
        "mart_funnel",
    ] {
        let n = count(c, &format!("SELECT count(*) FROM gold.{mart}")).await;
        assert!(n > 0, "gold.{mart} is empty");
    }
    // One row per order, however many times its events came.
    let orders = count(c, "SELECT count(DISTINCT order_id) FROM bronze.orders").await;
    assert!(orders > 100, "{orders}");
    assert_eq!(
        count(c, "SELECT count(updated_at) FROM silver.orders").await,
        orders
    );
    assert_eq!(
        count(c, "SELECT count(*) FROM gold.fact_orders").await,
        orders
    );
    // Late events never overwrite a newer state.
    let stale = count(
        c,
        "SELECT count(*) FROM silver.orders s \
         JOIN (SELECT order_id, max(updated_at) AS m FROM bronze.orders GROUP BY order_id) b \
         USING (order_id) WHERE s.updated_at <> b.m",
    )
    .await;
    assert_eq!(stale, 0, "orders whose latest state lost to a late event");
    // Order totals are the sum of their lines, and what the order service reported.
    let mismatched = count(
        c,
        "SELECT count(*) FROM gold.fact_orders f \
         JOIN (SELECT order_id, sum(amount) AS s FROM gold.fact_order_items GROUP BY order_id) i \
         USING (order_id) WHERE f.order_total <> i.s OR f.order_total <> f.reported_cost",
    )
    .await;
    assert_eq!(mismatched, 0);

    // Procedures answer (views/ retries them once the gold tables they read exist).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for call in [
        "CALL gold.customer_orders(1)",
        "CALL gold.sales_by_category('2000-01-01', '2000-01-02')",
    ] {
        while let Err(e) = c.query(call, &[]).await {
            assert!(tokio::time::Instant::now() < deadline, "{call}: {e}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    let customer: i64 = c
        .query_one(
            "SELECT customer_id FROM gold.fact_orders ORDER BY order_id LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let mine = c
        .query(&format!("CALL gold.customer_orders({customer})"), &[])
        .await
        .expect("customer_orders");
    assert!(!mine.is_empty());
    let by_category = c
        .query(
            "CALL gold.sales_by_category('2000-01-01', '2100-01-01')",
            &[],
        )
        .await
        .expect("sales_by_category");
    assert!(!by_category.is_empty());
}

/// `tidepool demo` as a user runs it: starts, generates, serves, stops on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_command_runs_and_stops() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lake = tempfile::tempdir().expect("tempdir");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tidepool"))
        .current_dir(repo)
        .args(["--lake", &lake.path().display().to_string()])
        .args(["--pg-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
        .args(["--flight-listen", "127.0.0.1:0"])
        .args(["demo", "--rate", "300", "--seconds", "8"])
        .output()
        .await
        .expect("demo runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // What matters comes first: CI output keeps a message's head and tail only.
    let telling: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("panicked") || l.contains("ERROR") || l.starts_with("error:"))
        .collect();
    let tail: Vec<&str> = stderr.lines().rev().take(25).collect();
    assert!(
        out.status.success(),
        "demo exited with {:?}\nerrors and panics:\n{}\nlast lines (newest first):\n{}",
        out.status,
        telling.join("\n"),
        tail.join("\n")
    );
    assert!(stderr.contains("connect:  psql"), "{stderr}");
    assert!(stderr.contains("generator: "), "{stderr}");
    // Some source reached bronze. Which ones depends on how soon each consumer joins its
    // group: under the full suite's load one source (orders) was once still joining when
    // the demo stopped.
    let bronze = std::fs::read_dir(lake.path().join("bronze"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert!(bronze > 0, "no bronze table written\n{stderr}");
}
