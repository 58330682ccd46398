//! The admin API on sources and tables, against a real server with the embedded broker
//! and a real Kafka producer: pause and resume seen in `system.ingest`, replay with exact
//! counts (no duplicates, nothing lost, dead letters included), maintenance actions, and
//! reloading the project and `tidepool.toml` (a broken config keeps the old one).

use std::time::Duration;

use tidepool::protocol::admin::pb;
use tidepool::protocol::admin::pb::admin_client::AdminClient;
use tonic::Code;

use crate::common::{TestServer, wait_for};
use crate::ingest::{order, produce, producer};

const SOURCE: &str = r#"
[kafka]
embedded_partitions = 2
[[sources]]
name = "orders"
topics = ["shop.orders"]
max_latency_ms = 100
properties = { "session.timeout.ms" = "6000" }
"#;

/// Messages `from..to`, alternating partitions; every 10th is not JSON (a dead letter).
fn messages(from: i64, to: i64) -> Vec<(i32, Option<String>, Option<Vec<u8>>)> {
    (from..to)
        .map(|i| {
            let value = if i % 10 == 9 {
                b"{broken".to_vec()
            } else {
                order(i)
            };
            ((i % 2) as i32, Some(format!("k{i}")), Some(value))
        })
        .collect()
}

const ALL: &str = "SELECT (SELECT count(*) FROM bronze.orders) + \
                   (SELECT count(*) FROM bronze.orders__dead_letters)";

/// ReplaySource of `orders`, which must succeed.
pub async fn replay_orders(
    admin: &mut AdminClient<tonic::transport::Channel>,
    from: pb::replay_source_request::From,
) -> pb::ReplaySourceResponse {
    admin
        .replay_source(pb::ReplaySourceRequest {
            source: "orders".into(),
            from: Some(from),
        })
        .await
        .expect("replay")
        .into_inner()
}

async fn paused(c: &tokio_postgres::Client) -> Vec<bool> {
    c.query(
        "SELECT paused FROM system.ingest WHERE source = 'orders' ORDER BY partition",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_pause_resume_and_replay_a_source() {
    let server = TestServer::start(SOURCE).await;
    let flight = server.flight.expect("flight on");
    let mut admin = AdminClient::connect(format!("http://{flight}"))
        .await
        .unwrap();
    let p = producer(&server.brokers);
    let c = server.connect().await;
    produce(&p, "shop.orders", messages(0, 200)).await;
    wait_for(&c, ALL, 60, |n| n == 200).await;
    assert_eq!(paused(&c).await, vec![false, false]);

    // Pause: nothing new lands, system.ingest says so, the lag shows what waits.
    let state = admin
        .pause_source(pb::SourceRequest {
            source: "orders".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(state.paused);
    assert_eq!(paused(&c).await, vec![true, true]);
    produce(&p, "shop.orders", messages(200, 300)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let n: i64 = c.query_one(ALL, &[]).await.unwrap().get(0);
    assert_eq!(n, 200, "a paused source writes nothing");
    let status = admin
        .ingest_status(pb::IngestStatusRequest {
            source: "orders".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(status.partitions.iter().all(|p| p.paused));
    let lag: i64 = status.partitions.iter().map(|p| p.lag).sum();
    assert!(lag <= 100, "lag {lag}");

    // Resume: everything produced meanwhile lands exactly once.
    let state = admin
        .resume_source(pb::SourceRequest {
            source: "orders".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!state.paused);
    wait_for(&c, ALL, 60, |n| n == 300).await;
    assert_eq!(paused(&c).await, vec![false, false]);
    let rate = admin
        .ingest_status(pb::IngestStatusRequest::default())
        .await
        .unwrap()
        .into_inner()
        .partitions
        .iter()
        .map(|p| p.rate)
        .sum::<f64>();
    assert!(rate > 0.0, "messages were committed within the last 10 s");

    // Replay from offset 100 of each partition: 2 x 50 offsets are read again into a
    // fresh version; nothing doubles, nothing is lost.
    type Ts = chrono::DateTime<chrono::Utc>;
    let ingested_at = |rows: Vec<tokio_postgres::Row>| -> Vec<Ts> {
        rows.iter().map(|r| r.get::<_, Ts>(0)).collect()
    };
    let before = ingested_at(
        c.query("SELECT _ingested_at FROM bronze.orders", &[])
            .await
            .unwrap(),
    )
    .into_iter()
    .max()
    .expect("rows");
    let replay = replay_orders(&mut admin, pb::replay_source_request::From::FromOffset(100)).await;
    assert_eq!(replay.removed, 100, "{replay:?}");
    assert_eq!(replay.rows, 100, "{replay:?}");
    assert!(
        replay.version > replay.reset_version && replay.reset_version > 0,
        "{replay:?}"
    );
    assert_eq!(replay.partitions.len(), 2);
    assert_eq!(crate::ingest::landed(&c).await, (300, 300));
    let fresh = ingested_at(
        c.query("SELECT _ingested_at FROM bronze.orders", &[])
            .await
            .unwrap(),
    )
    .into_iter()
    .filter(|t| *t > before)
    .count();
    assert_eq!(
        fresh, 90,
        "the 100 replayed offsets hold 90 rows and 10 dead letters"
    );
    let dead: i64 = c
        .query_one("SELECT count(*) FROM bronze.orders__dead_letters", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(dead, 30);

    // From a time before everything: the whole topic; after everything: nothing.
    let all = replay_orders(
        &mut admin,
        pb::replay_source_request::From::FromTimestamp("2000-01-01T00:00:00Z".into()),
    )
    .await;
    assert_eq!((all.removed, all.rows), (300, 300), "{all:?}");
    let none = replay_orders(
        &mut admin,
        pb::replay_source_request::From::FromTimestamp("2999-01-01 00:00:00".into()),
    )
    .await;
    assert_eq!(
        (none.removed, none.rows, none.version),
        (0, 0, -1),
        "{none:?}"
    );
    let n: i64 = c.query_one(ALL, &[]).await.unwrap().get(0);
    assert_eq!(n, 300);
    // Ingestion goes on after replays.
    produce(&p, "shop.orders", messages(300, 320)).await;
    wait_for(&c, ALL, 60, |n| n == 320).await;

    // Bad input.
    for (req, code) in [
        (
            pb::ReplaySourceRequest {
                source: "nope".into(),
                from: Some(pb::replay_source_request::From::FromOffset(0)),
            },
            Code::NotFound,
        ),
        (
            pb::ReplaySourceRequest {
                source: "orders".into(),
                from: None,
            },
            Code::InvalidArgument,
        ),
        (
            pb::ReplaySourceRequest {
                source: "orders".into(),
                from: Some(pb::replay_source_request::From::FromTimestamp(
                    "soon".into(),
                )),
            },
            Code::InvalidArgument,
        ),
        (
            pb::ReplaySourceRequest {
                source: "orders".into(),
                from: Some(pb::replay_source_request::From::FromOffset(-5)),
            },
            Code::InvalidArgument,
        ),
    ] {
        let err = admin.replay_source(req).await.expect_err("refused");
        assert_eq!(err.code(), code, "{err:?}");
    }
    let err = admin
        .pause_source(pb::SourceRequest {
            source: "nope".into(),
        })
        .await
        .expect_err("unknown source");
    assert_eq!(err.code(), Code::NotFound);

    // Maintenance of the bronze table.
    let optimize = admin
        .maintain(pb::MaintainRequest {
            table: "bronze.orders".into(),
            action: pb::maintain_request::Action::Optimize as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        optimize.summary.starts_with("optimized bronze.orders"),
        "{optimize:?}"
    );
    let checkpoint = admin
        .maintain(pb::MaintainRequest {
            table: "bronze.orders".into(),
            action: pb::maintain_request::Action::Checkpoint as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(checkpoint.summary.contains("checkpoint"), "{checkpoint:?}");
    let log = server.lake.path().join("bronze/orders/_delta_log");
    let checkpoints = std::fs::read_dir(&log)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".checkpoint"))
        .count();
    assert!(checkpoints > 0, "a checkpoint file in {}", log.display());
    let vacuum = admin
        .maintain(pb::MaintainRequest {
            table: "bronze.orders".into(),
            action: pb::maintain_request::Action::Vacuum as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        vacuum.summary.starts_with("vacuumed bronze.orders"),
        "{vacuum:?}"
    );
    let n: i64 = c.query_one(ALL, &[]).await.unwrap().get(0);
    assert_eq!(n, 320, "maintenance keeps every row");
    for (table, action, code) in [
        ("bronze.nope", 1, Code::NotFound),
        ("orders", 1, Code::InvalidArgument),
        ("bronze.orders", 0, Code::InvalidArgument),
    ] {
        let err = admin
            .maintain(pb::MaintainRequest {
                table: table.into(),
                action,
            })
            .await
            .expect_err("refused");
        assert_eq!(err.code(), code, "{table} {action}: {err:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_reload_applies_a_good_config_and_keeps_the_old_one_on_error() {
    let lake = tempfile::tempdir().unwrap();
    let project = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(project.path().join("sql/gold")).unwrap();
    std::fs::write(project.path().join("sql/gold/one.sql"), "select 1 as x").unwrap();
    let config = project.path().join("tidepool.toml");
    let base = format!(
        "[postgres]\nlisten = \"127.0.0.1:0\"\n[flight]\nlisten = \"127.0.0.1:0\"\n\
         [http]\nenabled = false\n[lake]\nroot = {:?}\n",
        lake.path().display().to_string()
    );
    std::fs::write(&config, &base).unwrap();
    let settings = tidepool::config::Config::load(Some(&config))
        .unwrap()
        .resolve(&tidepool::config::Overrides::default())
        .unwrap();
    let server = TestServer::start_with(lake, settings).await;
    let flight = server.flight.expect("flight on");
    let mut admin = AdminClient::connect(format!("http://{flight}"))
        .await
        .unwrap();
    let c = server.connect().await;

    // A broken config is refused with the reason; the server goes on as it was.
    std::fs::write(&config, format!("{base}[schedule]\nevery_secs = 0\n")).unwrap();
    let err = admin
        .reload_project(pb::ReloadProjectRequest {})
        .await
        .expect_err("invalid config");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("schedule.every_secs"), "{err:?}");
    assert!(err.message().contains("kept"), "{err:?}");
    std::fs::write(&config, format!("{base}[postgres\n")).unwrap();
    let err = admin
        .reload_project(pb::ReloadProjectRequest {})
        .await
        .expect_err("not TOML");
    assert_eq!(err.code(), Code::InvalidArgument);
    let health = admin
        .health(pb::HealthRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status, "serving");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let runs: i64 = c
        .query_one("SELECT count(*) FROM system.runs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(runs, 0, "no schedule was started by a refused reload");

    // A broken model is refused too.
    std::fs::write(project.path().join("sql/gold/bad.sql"), "select {{ oops(").unwrap();
    std::fs::write(&config, format!("{base}[schedule]\nevery_secs = 1\n")).unwrap();
    let err = admin
        .reload_project(pb::ReloadProjectRequest {})
        .await
        .expect_err("a model does not render");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("bad.sql"), "{err:?}");
    std::fs::remove_file(project.path().join("sql/gold/bad.sql")).unwrap();

    // A good one: the schedule starts without a restart; a changed listener is reported
    // as needing one; views/ is deployed.
    std::fs::create_dir_all(project.path().join("views/gold")).unwrap();
    std::fs::write(
        project.path().join("views/gold/v.sql"),
        "CREATE OR REPLACE VIEW gold.v AS SELECT 42 AS answer",
    )
    .unwrap();
    std::fs::write(
        &config,
        format!("{base}[schedule]\nevery_secs = 1\ncommand = \"run\"\n")
            .replace("[postgres]\n", "[postgres]\nmax_connections = 7\n"),
    )
    .unwrap();
    let r = admin
        .reload_project(pb::ReloadProjectRequest {})
        .await
        .expect("a good config applies")
        .into_inner();
    assert_eq!(r.models, 1);
    assert_eq!(r.view_files, 1);
    assert!(r.view_errors.is_empty(), "{r:?}");
    assert_eq!(r.applied, vec!["schedule".to_string()]);
    assert_eq!(r.restart_required, vec!["postgres".to_string()]);
    wait_for(
        &c,
        "SELECT count(*) FROM system.runs WHERE command = 'schedule:run'",
        30,
        |n| n >= 1,
    )
    .await;
    let answer: i64 = c
        .query_one("SELECT answer FROM gold.v", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(answer, 42);
}
