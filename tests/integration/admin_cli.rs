//! The CLI's `--server` mode end to end: the real `tidepool` binary drives a running
//! server through the admin API (run, build, status, pause, resume, replay, maintain,
//! reload), with credentials from TIDEPOOL_USER / TIDEPOOL_PASSWORD.

use crate::common::{TestServer, wait_for};
use crate::ingest::{order, produce, producer};

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs the binary with `args` against `server` as `user`.
async fn tidepool(server: &str, user: (&str, &str), args: &[&str]) -> Out {
    let cwd = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tidepool"))
        .args(args)
        .current_dir(cwd.path())
        .env("TIDEPOOL_SERVER", server)
        .env("TIDEPOOL_USER", user.0)
        .env("TIDEPOOL_PASSWORD", user.1)
        .env_remove("TIDEPOOL_CONFIG")
        .output()
        .await
        .expect("tidepool runs");
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cli_drives_a_running_server() {
    let project = tempfile::tempdir().unwrap();
    for d in ["sql/silver", "sql/gold"] {
        std::fs::create_dir_all(project.path().join(d)).unwrap();
    }
    std::fs::write(
        project.path().join("sql/silver/orders.sql"),
        "{{ config(materialized='table') }}\nselect order_id, total from {{ source('kafka', 'orders') }}",
    )
    .unwrap();
    std::fs::write(
        project.path().join("sql/gold/revenue.sql"),
        "{{ config(materialized='table') }}\nselect count(*) as orders, sum(total) as revenue from {{ ref('orders') }}",
    )
    .unwrap();
    std::fs::write(
        project.path().join("sql/gold/broken.sql"),
        "{{ config(materialized='table') }}\nselect nope from {{ ref('orders') }}",
    )
    .unwrap();
    let server = TestServer::start(&format!(
        "[project]\ndir = {:?}\n\
         [[users]]\nname = \"ops\"\npassword = \"ops pw\"\n\
         [[users]]\nname = \"bi\"\npassword = \"bi pw\"\nschemas = [\"gold\"]\n\
         [kafka]\nembedded_partitions = 1\n\
         [[sources]]\nname = \"orders\"\ntopics = [\"shop.orders\"]\nmax_latency_ms = 100\n",
        project.path().display().to_string()
    ))
    .await;
    let url = format!("http://{}", server.flight.expect("flight on"));
    let ops = ("ops", "ops pw");
    let p = producer(&server.brokers);
    produce(
        &p,
        "shop.orders",
        (0..50).map(|i| (0, None, Some(order(i)))).collect(),
    )
    .await;
    let c = crate::common::connect(&format!("{} password='ops pw'", server.conn_str("ops"))).await;
    wait_for(&c, "SELECT count(*) FROM bronze.orders", 60, |n| n == 50).await;

    // run: the same lines as a local run (no terminal: plain lines), recorded on the server.
    let out = tidepool(&url, ops, &["run", "--select", "+gold.revenue"]).await;
    assert!(out.ok, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("running 2 models with 4 threads on http://"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("START table silver.orders (sql/silver/orders.sql)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("1 of 2 OK    table silver.orders, 50 rows"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("2 of 2 OK    table gold.revenue, 1 rows"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("finished 2 models in"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("recorded on the server: success"),
        "{}",
        out.stdout
    );
    let n: i64 = c
        .query_one("SELECT orders FROM gold.revenue", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 50);

    // build of everything: the broken model fails the command.
    let out = tidepool(&url, ops, &["build"]).await;
    assert!(!out.ok);
    assert!(out.stdout.contains("ERROR gold.broken"), "{}", out.stdout);
    assert!(
        out.stdout.contains("recorded on the server: error"),
        "{}",
        out.stdout
    );

    // status: ingestion and the runs just made.
    let out = tidepool(&url, ops, &["status"]).await;
    assert!(out.ok, "{}", out.stderr);
    assert!(out.stdout.contains("serving"), "{}", out.stdout);
    assert!(out.stdout.contains("shop.orders"), "{}", out.stdout);
    assert!(out.stdout.contains("admin:run"), "{}", out.stdout);
    assert!(out.stdout.contains("admin:build"), "{}", out.stdout);

    // pause / resume, seen over Postgres.
    let out = tidepool(&url, ops, &["pause", "orders"]).await;
    assert!(
        out.ok && out.stdout.contains("orders: paused"),
        "{}{}",
        out.stdout,
        out.stderr
    );
    let paused: bool = c
        .query_one("SELECT bool_and(paused) FROM system.ingest", &[])
        .await
        .unwrap()
        .get(0);
    assert!(paused);
    let out = tidepool(&url, ops, &["status"]).await;
    assert!(out.stdout.contains("paused"), "{}", out.stdout);
    let out = tidepool(&url, ops, &["resume", "orders"]).await;
    assert!(
        out.ok && out.stdout.contains("orders: resumed"),
        "{}",
        out.stdout
    );

    // replay everything: 50 removed, 50 read again, still 50 rows.
    let out = tidepool(&url, ops, &["replay", "orders", "--from-offset", "0"]).await;
    assert!(out.ok, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("50 rows and dead letters removed")
            && out.stdout.contains("50 read again"),
        "{}",
        out.stdout
    );
    let n: i64 = c
        .query_one("SELECT count(*) FROM bronze.orders", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 50);

    // maintain and reload.
    let out = tidepool(&url, ops, &["maintain", "bronze.orders", "checkpoint"]).await;
    assert!(
        out.ok && out.stdout.contains("checkpoint of bronze.orders"),
        "{}{}",
        out.stdout,
        out.stderr
    );
    let out = tidepool(&url, ops, &["reload"]).await;
    assert!(
        out.ok && out.stdout.contains("reloaded: 3 models"),
        "{}{}",
        out.stdout,
        out.stderr
    );

    // Refusals reach the user with the status code and the server's words.
    let out = tidepool(&url, ops, &["run", "--select", "gold.revenu"]).await;
    assert!(!out.ok);
    assert!(
        out.stderr.contains("\"gold.revenu\" matches no model")
            && out.stderr.contains("InvalidArgument"),
        "{}",
        out.stderr
    );
    let out = tidepool(&url, ("bi", "bi pw"), &["pause", "orders"]).await;
    assert!(
        !out.ok && out.stderr.contains("PermissionDenied"),
        "{}",
        out.stderr
    );
    let out = tidepool(&url, ("ops", "wrong"), &["status"]).await;
    assert!(
        !out.ok && out.stderr.contains("Unauthenticated"),
        "{}",
        out.stderr
    );
    let out = tidepool(&url, ops, &["replay", "nope", "--from-offset", "0"]).await;
    assert!(!out.ok && out.stderr.contains("NotFound"), "{}", out.stderr);
    let out = tidepool("", ops, &["pause", "orders"]).await;
    assert!(!out.ok && out.stderr.contains("--server"), "{}", out.stderr);
}
