//! dbt-core with the dbt-postgres adapter from PyPI (installed into .venv-dbt by
//! scripts/test.sh, pinned) runs the project in tests/dbt/project unchanged against a
//! server with a password user: `debug`, `seed`, `run` twice (view, table and incremental
//! models with the append, merge and delete+insert strategies; the second run takes the
//! incremental paths and renames relations into place), `test`, `snapshot` twice (the
//! second closes a changed row with `UPDATE ... FROM`) and `docs generate` (catalog
//! queries, `pg_is_other_temp_schema`). Results are checked in the lake afterwards.

use std::path::{Path, PathBuf};

use crate::common::TestServer;

const USER: &str = "modeler";
const PASSWORD: &str = "m0deler pw";

struct Dbt {
    bin: PathBuf,
    project: PathBuf,
    port: u16,
}

impl Dbt {
    async fn run(&self, args: &[&str]) -> String {
        let out = tokio::process::Command::new(&self.bin)
            .args(args)
            .arg("--profiles-dir")
            .arg(&self.project)
            .arg("--project-dir")
            .arg(&self.project)
            .env("TIDEPOOL_PG_PORT", self.port.to_string())
            .env("TIDEPOOL_PG_USER", USER)
            .env("TIDEPOOL_PG_PASSWORD", PASSWORD)
            .env("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
            .current_dir(&self.project)
            .output()
            .await
            .expect("dbt runs");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "dbt {args:?} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() != "target" && entry.file_name() != "logs" {
                copy_dir(&entry.path(), &target);
            }
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

async fn one(client: &tokio_postgres::Client, sql: &str) -> String {
    let rows = client.simple_query(sql).await.unwrap();
    rows.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("").to_string()),
            _ => None,
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dbt_postgres_runs_a_project_unchanged() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin = root.join(".venv-dbt/bin/dbt");
    assert!(
        bin.exists(),
        "{} is missing: run `bash scripts/test.sh`, which installs dbt-core and dbt-postgres",
        bin.display()
    );
    let server = TestServer::start(&format!(
        "[[users]]\nname = \"{USER}\"\npassword = \"{PASSWORD}\"\n"
    ))
    .await;
    let work = tempfile::tempdir().unwrap();
    copy_dir(&root.join("tests/dbt/project"), work.path());
    let dbt = Dbt {
        bin,
        project: work.path().to_path_buf(),
        port: server.addr.port(),
    };
    let client =
        crate::common::connect(&format!("{} password='{PASSWORD}'", server.conn_str(USER))).await;

    let debug = dbt.run(&["debug"]).await;
    assert!(debug.contains("All checks passed"), "{debug}");
    dbt.run(&["seed"]).await;
    let first = dbt.run(&["run"]).await;
    assert!(first.contains("PASS=5"), "{first}");

    // New and changed source rows, then the incremental paths.
    client
        .batch_execute(
            "INSERT INTO dbt.orders_raw VALUES (14, 2, 1.5, 'paid', '2026-04-05 09:00:00');
             UPDATE dbt.orders_raw SET status = 'refunded', updated_at = '2026-04-06 00:00:00'
             WHERE order_id = 11",
        )
        .await
        .unwrap();
    let second = dbt.run(&["run"]).await;
    assert!(second.contains("MERGE 5"), "merge strategy ran: {second}");
    assert_eq!(
        one(&client, "SELECT count(*) FROM dbt_analytics.orders_append").await,
        "6",
        "append adds rows newer than the newest (11 again, and 14)"
    );
    assert_eq!(
        one(&client, "SELECT count(*) FROM dbt_analytics.orders_merge").await,
        "5"
    );
    assert_eq!(
        one(
            &client,
            "SELECT status FROM dbt_analytics.orders_merge WHERE order_id = 11"
        )
        .await,
        "refunded"
    );
    assert_eq!(
        one(
            &client,
            "SELECT count(*) || ':' || max(status) FROM dbt_analytics.orders_delete_insert WHERE order_id = 11"
        )
        .await,
        "1:refunded"
    );
    assert_eq!(
        one(
            &client,
            "SELECT total FROM dbt_analytics.customer_totals WHERE customer_id = 2"
        )
        .await,
        "8.75"
    );
    assert_eq!(
        one(
            &client,
            "SELECT count(*) || coalesce(max(table_schema || '.' || table_name), '') FROM information_schema.tables WHERE table_name LIKE '%dbt_tmp%' OR table_name LIKE '%dbt_backup%'"
        )
        .await,
        "0",
        "no relation left behind by the renames"
    );

    let tests = dbt.run(&["test"]).await;
    assert!(tests.contains("PASS=5"), "{tests}");

    dbt.run(&["snapshot"]).await;
    client
        .batch_execute(
            "UPDATE dbt.orders_raw SET status = 'paid', updated_at = '2026-04-07 00:00:00' WHERE order_id = 13",
        )
        .await
        .unwrap();
    dbt.run(&["snapshot"]).await;
    assert_eq!(
        one(
            &client,
            "SELECT string_agg(status || '@' || coalesce(CAST(dbt_valid_to AS VARCHAR), 'open'), ',' ORDER BY dbt_valid_from) \
             FROM snapshots.orders_snapshot WHERE order_id = 13"
        )
        .await,
        "open@2026-04-07T00:00:00,paid@open"
    );

    dbt.run(&["docs", "generate"]).await;
    let catalog: serde_json::Value =
        serde_json::from_slice(&std::fs::read(work.path().join("target/catalog.json")).unwrap())
            .unwrap();
    assert!(catalog["errors"].is_null(), "{}", catalog["errors"]);
    let columns = &catalog["nodes"]["model.tidepool_acceptance.customer_totals"]["columns"];
    for c in ["customer_id", "name", "orders", "total"] {
        assert!(columns.get(c).is_some(), "{c} in {columns}");
    }
}
