//! Bounded work: statements that stop when their client stops wanting them, heavy
//! statements that do not hold up light ones, and a shutdown that keeps its grace period
//! while kernels are still busy. Against the real `tidepool serve` process.

use std::time::{Duration, Instant};

use crate::common::{ServeProcess, first};

/// A statement whose nested loop join compiles a LIKE pattern per row pair: minutes of
/// CPU inside single polls of one operator, which no cancel can interrupt mid-batch.
const STUCK: &str = "SELECT count(*) \
     FROM (SELECT md5(CAST(v AS VARCHAR)) AS s FROM generate_series(1, 3000) g(v)) a \
     JOIN (SELECT '%' || substr(md5(CAST(v AS VARCHAR)), 1, 2) || '%' || \
                  substr(md5(CAST(v AS VARCHAR)), 3, 2) || '%' AS p \
           FROM generate_series(1, 8000) g(v)) b \
     ON a.s LIKE b.p";
/// A statement that would count for ever, yielding between batches.
const ENDLESS: &str = "SELECT count(*) FROM generate_series(1, 9223372036854775806)";

/// Seconds of server CPU over `window`, once `settle` has passed.
async fn cpu_over(server: &ServeProcess, settle: Duration, window: Duration) -> f64 {
    tokio::time::sleep(settle).await;
    let before = server.cpu_seconds();
    tokio::time::sleep(window).await;
    server.cpu_seconds() - before
}

/// With every heavy slot and every execution thread busy in kernels that cannot be
/// interrupted, light statements and catalog queries still answer, a timed-out statement
/// waiting for a slot gets 57014, and SIGTERM ends the process within its grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heavy_statements_hold_up_neither_light_ones_nor_shutdown() {
    let mut server = ServeProcess::start(
        "[engine]\nmax_concurrent_queries = 2\ntarget_partitions = 2\n\
         [server]\nshutdown_grace_secs = 1\n",
    )
    .await;
    let conn = server.conn_str("tidepool", "");
    let mut heavy = Vec::new();
    for _ in 0..6 {
        let c = crate::common::connect(&conn).await;
        heavy.push(tokio::spawn(async move {
            let r = c.simple_query(STUCK).await.map(|_| ());
            (c, r)
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        heavy.iter().all(|h| !h.is_finished()),
        "the stuck statements finished: the test does not load the server"
    );

    let c = crate::common::connect(&conn).await;
    let bound = Duration::from_secs(10);
    for sql in [
        "SELECT 1",
        "SELECT count(*) > 0 FROM pg_catalog.pg_type",
        "SELECT count(*) >= 0 FROM information_schema.tables",
    ] {
        let started = Instant::now();
        let answered = tokio::time::timeout(bound, first(&c, sql))
            .await
            .unwrap_or_else(|_| panic!("{sql} waited behind the heavy statements"));
        assert!(answered.is_ok(), "{sql}: {answered:?}");
        eprintln!(
            "{sql}: {:?} while six heavy statements run",
            started.elapsed()
        );
    }
    c.batch_execute("SET statement_timeout = 300")
        .await
        .unwrap();
    let err = tokio::time::timeout(bound, c.simple_query(STUCK))
        .await
        .expect("a statement waiting for a slot times out")
        .expect_err("the heavy lane is full");
    assert_eq!(err.code().map(|c| c.code()), Some("57014"), "{err}");

    let took = server
        .terminate(Duration::from_secs(20))
        .await
        .expect("the server exits within its grace period and a few seconds more");
    eprintln!("exited {took:?} after SIGTERM with stuck kernels running");
    drop(heavy);
}

/// A client that vanishes mid-statement takes its statement with it: the slot is free for
/// the next client and the server stops computing; a statement that timed out stops too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_client_or_a_timeout_stops_the_work() {
    let server = ServeProcess::start(
        "[engine]\nmax_concurrent_queries = 1\ntarget_partitions = 2\nlight_query_rows = 0\n",
    )
    .await;
    let conn = server.conn_str("tidepool", "");

    // psql runs the endless statement and is killed: its socket closes.
    let mut psql = tokio::process::Command::new("psql")
        .arg(&conn)
        .args(["-X", "-c", ENDLESS])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("psql runs");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        psql.try_wait().unwrap().is_none(),
        "the endless statement ended"
    );
    psql.kill().await.unwrap();

    // The one slot is free again: a heavy statement of another client runs.
    let c = crate::common::connect(&conn).await;
    let answered = tokio::time::timeout(
        Duration::from_secs(20),
        first(&c, "SELECT count(*) FROM generate_series(1, 10)"),
    )
    .await
    .expect("the vanished client's statement still holds the only slot");
    assert_eq!(answered.unwrap(), "10");
    let cpu = cpu_over(&server, Duration::from_secs(1), Duration::from_secs(3)).await;
    assert!(
        cpu < 1.0,
        "{cpu:.2} s of CPU in 3 s after the client vanished"
    );

    // A timed-out statement stops computing.
    c.batch_execute("SET statement_timeout = 500")
        .await
        .unwrap();
    let err = c.simple_query(ENDLESS).await.expect_err("times out");
    assert_eq!(err.code().map(|c| c.code()), Some("57014"), "{err}");
    let cpu = cpu_over(&server, Duration::from_secs(1), Duration::from_secs(3)).await;
    assert!(cpu < 1.0, "{cpu:.2} s of CPU in 3 s after the timeout");
    server.stop_clean("vanished client").await;
}
