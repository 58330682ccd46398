//! SQL models end to end: the `tidepool` binary runs the fixture project in
//! tests/fixtures/shop against a real Delta lake, and the results are read back over the
//! Postgres protocol.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::{TestServer, orders, settings, write_delta};

/// Copies the fixture project into a fresh folder; the lake is `<folder>/lake`.
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/shop"),
        dir.path(),
    );
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read fixture") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).expect("copy");
        }
    }
}

pub(crate) fn tidepool(project: &Path, args: &[&str]) -> Output {
    let lake: PathBuf = project.join("lake");
    std::process::Command::new(env!("CARGO_BIN_EXE_tidepool"))
        .arg("--config")
        .arg(project.join("tidepool.toml"))
        .arg("--lake")
        .arg(&lake)
        .args(args)
        .output()
        .expect("tidepool runs")
}

/// Runs a command that must fail; returns its stderr.
fn fails(project: &Path, args: &[&str]) -> String {
    let out = tidepool(project, args);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "tidepool {args:?} succeeded:\n{}",
        stdout(&out)
    );
    err
}

pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

pub(crate) fn ls(project: &Path, select: &[&str]) -> Vec<String> {
    let mut args = vec!["ls"];
    args.extend_from_slice(select);
    let out = tidepool(project, &args);
    assert!(
        out.status.success(),
        "ls failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    lines.sort();
    lines
}

async fn revenue(project: &Path) -> Vec<(String, i64, i64, String, String)> {
    let lake = project.join("lake");
    let server =
        TestServer::start_with(tempfile::tempdir().expect("tempdir"), settings(&lake, "")).await;
    let client = server.connect().await;
    let rows = client
        .query(
            "SELECT customer, orders, revenue_cents, region, built_as FROM gold.customer_revenue ORDER BY customer",
            &[],
        )
        .await
        .expect("query gold");
    rows.iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_builds_views_and_tables_in_dag_order() {
    let dir = project();
    write_delta(&dir.path().join("lake"), "bronze", "orders", orders(10)).await;

    let out = tidepool(dir.path(), &["run", "--vars", r#"{"min_amount": 3}"#]);
    assert!(
        out.status.success(),
        "run failed:\n{}\n{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout(&out).contains("3 ok, 0 errors, 0 skipped"),
        "{}",
        stdout(&out)
    );

    // Orders 3..=10 (amount 1.5 * id > 3), customers c<id % 3>.
    let want = vec![
        (
            "c0".to_string(),
            3,
            2700,
            "eu".to_string(),
            "gold.customer_revenue".to_string(),
        ),
        (
            "c1".to_string(),
            3,
            3150,
            "eu".to_string(),
            "gold.customer_revenue".to_string(),
        ),
        (
            "c2".to_string(),
            2,
            1950,
            "eu".to_string(),
            "gold.customer_revenue".to_string(),
        ),
    ];
    assert_eq!(revenue(dir.path()).await, want);

    // compile writes the rendered SQL with references resolved.
    let out = tidepool(dir.path(), &["compile"]);
    assert!(out.status.success());
    let compiled = std::fs::read_to_string(
        dir.path()
            .join("target/compiled/sql/gold/customer_revenue.sql"),
    )
    .expect("compiled file");
    assert!(compiled.contains("from silver.customers c"), "{compiled}");
    assert!(
        compiled.contains("cast(round(sum(o.amount) * 100) as bigint)"),
        "{compiled}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selectors_pick_what_dbt_would() {
    let dir = project();
    let p = dir.path();
    let all = vec![
        "gold.customer_revenue".to_string(),
        "silver.customers".to_string(),
        "silver.stg_orders".to_string(),
    ];
    assert_eq!(ls(p, &[]), all);
    assert_eq!(ls(p, &["-s", "+customer_revenue"]), all);
    assert_eq!(
        ls(p, &["-s", "1+customers"]),
        vec!["silver.customers", "silver.stg_orders"]
    );
    assert_eq!(
        ls(p, &["-s", "customers+"]),
        vec!["gold.customer_revenue", "silver.customers"]
    );
    assert_eq!(ls(p, &["-s", "stg_orders+1"]), all);
    assert_eq!(ls(p, &["-s", "tag:silver"]), vec!["silver.stg_orders"]);
    assert_eq!(
        ls(p, &["-s", "path:sql/gold"]),
        vec!["gold.customer_revenue"]
    );
    assert_eq!(
        ls(p, &["-s", "config.materialized:view"]),
        vec!["silver.customers", "silver.stg_orders"]
    );
    // Space: union; comma: intersection.
    assert_eq!(
        ls(p, &["-s", "tag:silver tag:gold"]),
        vec!["gold.customer_revenue", "silver.stg_orders"]
    );
    assert_eq!(
        ls(p, &["-s", "+customer_revenue,config.materialized:view"]),
        vec!["silver.customers", "silver.stg_orders"]
    );
    assert_eq!(
        ls(p, &["--exclude", "path:sql/gold"]),
        vec!["silver.customers", "silver.stg_orders"]
    );
    assert_eq!(ls(p, &["-s", "stg_*"]), vec!["silver.stg_orders"]);

    // The same graph as a picture.
    let out = tidepool(p, &["lineage"]);
    let text = stdout(&out);
    assert!(text.starts_with("graph LR\n"), "{text}");
    for edge in [
        "bronze_orders --> silver_stg_orders",
        "silver_stg_orders --> silver_customers",
        "silver_customers --> gold_customer_revenue",
    ] {
        assert!(text.contains(edge), "missing {edge} in\n{text}");
    }
    let out = tidepool(p, &["lineage", "--format", "dot", "-s", "customers"]);
    let text = stdout(&out);
    assert!(text.contains("\"silver.customers\" [shape=box"), "{text}");
    assert!(!text.contains("gold.customer_revenue"), "{text}");

    // Folder defaults from tidepool.toml, as dbt_project.yml; config() wins, except for
    // tags, which add up as in dbt (stg_orders keeps `silver` and gets the folder's).
    let toml = p.join("tidepool.toml");
    let mut cfg = std::fs::read_to_string(&toml).expect("read");
    cfg.push_str("\n[models.silver]\nmaterialized = \"table\"\ntags = [\"from_project\"]\n");
    std::fs::write(&toml, cfg).expect("write");
    assert_eq!(
        ls(p, &["-s", "config.materialized:table"]),
        vec!["gold.customer_revenue", "silver.customers"]
    );
    assert_eq!(
        ls(p, &["-s", "tag:from_project"]),
        vec!["silver.customers", "silver.stg_orders"]
    );
    assert_eq!(ls(p, &["-s", "tag:silver"]), vec!["silver.stg_orders"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_model_writes_nothing_and_skips_its_descendants() {
    let dir = project();
    let p = dir.path();
    write_delta(&p.join("lake"), "bronze", "orders", orders(10)).await;
    let out = tidepool(p, &["run", "--vars", r#"{"min_amount": 3}"#]);
    assert!(out.status.success(), "{}", stdout(&out));
    let before = revenue(p).await;

    // The gold model now fails at run time (unknown column), and a model reads it.
    let gold = p.join("sql/gold/customer_revenue.sql");
    let text = std::fs::read_to_string(&gold).expect("read");
    std::fs::write(&gold, text.replace("c.orders,", "c.no_such_column,")).expect("write");
    std::fs::write(
        p.join("sql/gold/top_customer.sql"),
        "select customer from {{ ref('customer_revenue') }} order by revenue_cents desc limit 1\n",
    )
    .expect("write");
    let out = tidepool(p, &["run", "--vars", r#"{"min_amount": 3}"#]);
    let text = stdout(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("2 ok, 1 errors, 1 skipped"), "{text}");
    assert!(
        text.contains("SKIP  gold.top_customer (upstream gold.customer_revenue failed)"),
        "{text}"
    );
    assert!(text.contains("no_such_column"), "{text}");
    assert!(text.contains("sql/gold/customer_revenue.sql"), "{text}");
    // The previous version is intact and readable.
    assert_eq!(revenue(p).await, before);

    // Fixed, `retry` runs what failed or was skipped, and only that.
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/shop/sql/gold");
    std::fs::copy(fixture.join("customer_revenue.sql"), &gold).expect("restore");
    let out = tidepool(p, &["retry", "--vars", r#"{"min_amount": 3}"#]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("running 2 models")
            && text.contains("OK    table gold.customer_revenue")
            && text.contains("gold.top_customer"),
        "{text}"
    );
    assert_eq!(revenue(p).await, before);
    let out = tidepool(p, &["retry"]);
    assert!(
        stdout(&out).contains("retry: nothing failed or was skipped in the last run"),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cycles_and_unknown_references_are_reported_before_running() {
    let dir = project();
    let p = dir.path();
    std::fs::write(p.join("sql/silver/a.sql"), "select * from {{ ref('b') }}\n").expect("write");
    std::fs::write(p.join("sql/silver/b.sql"), "select * from silver.a\n").expect("write");
    let err = fails(p, &["run"]);
    assert!(
        err.contains("silver.a -> silver.b -> silver.a")
            || err.contains("silver.b -> silver.a -> silver.b"),
        "{err}"
    );
    assert!(!p.join("lake/silver").exists(), "nothing ran");

    std::fs::write(
        p.join("sql/silver/b.sql"),
        "select * from {{ ref('nope') }}\n",
    )
    .expect("write");
    let err = fails(p, &["ls"]);
    assert!(
        err.contains("sql/silver/b.sql: ref('nope'): there is no model named nope"),
        "{err}"
    );
}

/// Order versions: ids `ids`, all at `version`, amounts depending on both.
fn order_versions(
    ids: std::ops::RangeInclusive<i64>,
    version: i64,
) -> arrow::record_batch::RecordBatch {
    use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    let schema = std::sync::Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("customer", DataType::Utf8, true),
        Field::new("amount", DataType::Float64, true),
        Field::new("version", DataType::Int64, false),
    ]));
    let ids: Vec<i64> = ids.collect();
    let cols: Vec<ArrayRef> = vec![
        std::sync::Arc::new(Int64Array::from(ids.clone())),
        std::sync::Arc::new(StringArray::from_iter_values(
            ids.iter().map(|i| format!("c{}", i % 4)),
        )),
        std::sync::Arc::new(Float64Array::from_iter_values(
            ids.iter().map(|i| (*i * 10 + version) as f64),
        )),
        std::sync::Arc::new(Int64Array::from(vec![version; ids.len()])),
    ];
    arrow::record_batch::RecordBatch::try_new(schema, cols).expect("batch")
}

pub(crate) async fn table_rows(lake: &Path, sql: &str) -> Vec<String> {
    let server =
        TestServer::start_with(tempfile::tempdir().expect("tempdir"), settings(lake, "")).await;
    let client = server.connect().await;
    let rows = client.simple_query(sql).await.expect("query");
    crate::common::rows_text(&rows)
}

/// The incremental fixture project with versions 1 of orders 1..=10 in bronze.
pub(crate) async fn incremental_project() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/incremental"),
        dir.path(),
    );
    let lake = dir.path().join("lake");
    write_delta(&lake, "bronze", "order_versions", order_versions(1..=10, 1)).await;
    (dir, lake)
}

/// Runs the incremental project three times: on versions 1 of orders 1..=10; after
/// updates of orders 5..=10 and new orders 11..=15; after new versions of keys whose old
/// rows were already replaced (4..=6) and of a key the previous run wrote (14).
pub(crate) async fn run_with_replaced_keys(p: &Path, lake: &Path) {
    for versions in [
        None,
        Some(vec![(5..=15, 2)]),
        Some(vec![(4..=6, 3), (14..=14, 3)]),
    ] {
        for (ids, version) in versions.into_iter().flatten() {
            write_delta(
                lake,
                "bronze",
                "order_versions",
                order_versions(ids, version),
            )
            .await;
        }
        let out = tidepool(p, &["run"]);
        assert!(
            out.status.success(),
            "{}\n{}",
            stdout(&out),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_models_equal_a_full_refresh() {
    let (dir, lake) = incremental_project().await;
    let p = dir.path();
    run_with_replaced_keys(p, &lake).await;
    let queries = [
        "SELECT order_id, customer, amount, version FROM silver.latest_merge ORDER BY order_id",
        "SELECT order_id, customer, amount, version FROM silver.latest_delete_insert ORDER BY order_id",
        "SELECT id, version, amount FROM silver.all_versions ORDER BY id, version",
        "SELECT id, version, doubled, customer FROM silver.order_stream ORDER BY id, version",
    ];
    let mut incremental = Vec::new();
    for q in queries {
        incremental.push(table_rows(&lake, q).await);
    }
    // 15 orders, the newest version of each; 10 + 11 + 4 versions appended. Amounts are
    // float8, which Postgres prints without a trailing `.0`.
    assert_eq!(incremental[0].len(), 15);
    assert_eq!(incremental[0][4], "5|c1|53|3");
    assert_eq!(incremental[0][6], "7|c3|72|2");
    assert_eq!(incremental[0][13], "14|c2|143|3");
    assert_eq!(incremental[0][0], "1|c1|11|1");
    assert_eq!(incremental[1], incremental[0]);
    assert_eq!(incremental[2].len(), 25);
    assert_eq!(incremental[3].len(), 25, "every bronze row once");
    // The second run wrote only the new rows: a MERGE and an append, not a rebuild.
    let ops = |t: &str| {
        format!("SELECT operation FROM table_history('silver.{t}') ORDER BY version DESC LIMIT 1")
    };
    assert_eq!(table_rows(&lake, &ops("latest_merge")).await, vec!["MERGE"]);
    assert_eq!(
        table_rows(&lake, &ops("latest_delete_insert")).await,
        vec!["MERGE"]
    );
    assert_eq!(table_rows(&lake, &ops("all_versions")).await, vec!["WRITE"]);
    // A streaming run with nothing new commits nothing.
    let version = |t: &str| format!("SELECT max(version) FROM table_history('silver.{t}')");
    let before = table_rows(&lake, &version("order_stream")).await;
    let out = tidepool(p, &["run", "-s", "order_stream"]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("silver.order_stream, 0 rows"),
        "{}",
        stdout(&out)
    );
    assert_eq!(table_rows(&lake, &version("order_stream")).await, before);

    let out = tidepool(p, &["run", "--full-refresh"]);
    assert!(out.status.success(), "{}", stdout(&out));
    for (q, before) in queries.iter().zip(&incremental) {
        assert_eq!(&table_rows(&lake, q).await, before, "{q}");
    }

    // Streaming again after the rebuild reads only what came since.
    write_delta(
        &lake,
        "bronze",
        "order_versions",
        order_versions(16..=17, 3),
    )
    .await;
    let out = tidepool(p, &["run", "-s", "order_stream"]);
    assert!(
        stdout(&out).contains("silver.order_stream, 2 rows"),
        "{}",
        stdout(&out)
    );
    assert_eq!(table_rows(&lake, queries[3]).await.len(), 27);

    // on_schema_change='fail' names the change; the table keeps its version.
    let f = p.join("sql/silver/all_versions.sql");
    let text = std::fs::read_to_string(&f).expect("read");
    std::fs::write(
        &f,
        text.replace(
            "select id, version, amount",
            "select id, version, amount, customer",
        ),
    )
    .expect("write");
    write_delta(&lake, "bronze", "order_versions", order_versions(1..=1, 3)).await;
    let out = tidepool(p, &["run", "-s", "all_versions"]);
    assert!(!out.status.success());
    assert!(
        stdout(&out).contains("on_schema_change='fail'"),
        "{}",
        stdout(&out)
    );
    assert_eq!(table_rows(&lake, queries[2]).await, incremental[2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_tests_run_alone_and_inside_build() {
    let dir = project();
    let p = dir.path();
    write_delta(&p.join("lake"), "bronze", "orders", orders(10)).await;
    let vars = r#"{"min_amount": 3}"#;
    let out = tidepool(p, &["build", "--vars", vars]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    for line in [
        "PASS  not_null_customer_revenue_customer",
        "PASS  unique_customers_customer",
        "PASS  relationships_customer_revenue_customer",
        "PASS  accepted_values_customer_revenue_region",
        "PASS  revenue_is_positive",
        // Orders per customer are 3, 3, 2: two rows outside [1, 2], a warning only.
        "WARN  accepted_values_customer_revenue_orders (sql/gold/schema.yml): 1 failing rows",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    let out = tidepool(p, &["test", "--vars", vars]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("7 passed, 1 warnings, 0 failed"),
        "{}",
        stdout(&out)
    );

    // An error-severity failure: customers appear in several orders.
    std::fs::write(
        p.join("sql/silver/schema.yml"),
        "models:\n  - name: stg_orders\n    columns:\n      - name: customer\n        tests: [unique]\n",
    )
    .expect("write");
    let out = tidepool(p, &["test", "-s", "stg_orders", "--vars", vars]);
    let text = stdout(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("FAIL  unique_stg_orders_customer (sql/silver/schema.yml): 3 failing rows"),
        "{text}"
    );
    assert!(
        text.contains("unique_field"),
        "failing rows are shown:\n{text}"
    );

    // In build, the failed test stops the models downstream of stg_orders.
    let out = tidepool(p, &["build", "--vars", vars]);
    let text = stdout(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains(
            "SKIP  silver.customers (upstream silver.stg_orders failed test unique_stg_orders_customer)"
        ),
        "{text}"
    );
    assert!(
        text.contains("SKIP  gold.customer_revenue (upstream silver.stg_orders failed test"),
        "{text}"
    );
    assert!(
        text.contains("tests failed: unique_stg_orders_customer"),
        "{text}"
    );
}

/// dbt's most common pattern: `stg_orders.customer` relationships `to: ref('customers')`,
/// where `customers` is built from `stg_orders`. In `build` the test waits until
/// `customers` exists (it used to run right after `stg_orders` and fail with "table not
/// found"), and a failing one skips only what is downstream of `stg_orders` and not yet
/// built.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_runs_once_every_model_it_reads_is_built() {
    let dir = project();
    let p = dir.path();
    write_delta(&p.join("lake"), "bronze", "orders", orders(10)).await;
    std::fs::write(
        p.join("sql/silver/schema.yml"),
        "models:\n  - name: stg_orders\n    columns:\n      - name: customer\n        tests:\n          - relationships:\n              to: ref('customers')\n              field: customer\n",
    )
    .expect("write");
    let out = tidepool(p, &["build", "--threads", "4"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    let at = |what: &str| {
        text.find(what)
            .unwrap_or_else(|| panic!("missing {what:?} in\n{text}"))
    };
    // Passing on a fresh lake means customers existed when it ran (a view's OK line can
    // come later: it waits for the view's own tests).
    let test = at("PASS  relationships_stg_orders_customer");
    assert!(
        test < at("OK    table gold.customer_revenue"),
        "customer_revenue waits for the test on stg_orders:\n{text}"
    );

    // Customer c1 left out of customers: the test fails after customers was built;
    // customer_revenue, downstream of stg_orders and not read by the test, is skipped.
    std::fs::write(
        p.join("sql/silver/customers.sql"),
        "select customer, count(*) as orders from silver.stg_orders where customer <> 'c1' group by customer",
    )
    .expect("write");
    let out = tidepool(p, &["build", "--threads", "4"]);
    let text = stdout(&out);
    assert!(!out.status.success(), "{text}");
    for line in [
        "FAIL  relationships_stg_orders_customer",
        "OK    view silver.customers",
        "ERROR silver.stg_orders",
        "SKIP  gold.customer_revenue (upstream silver.stg_orders failed test relationships_stg_orders_customer)",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
}

/// Seeds as in dbt: CSV files under `seeds/` loaded by `tidepool seed` (and first in
/// `build`), typed by inference or `column_types`, read by models with `ref()`, tested
/// from YAML; `run` leaves them alone; a bad value fails the seed and keeps its table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeds_load_csv_files_that_models_ref() {
    let dir = project();
    let p = dir.path();
    let lake = p.join("lake");
    write_delta(&lake, "bronze", "orders", orders(10)).await;
    std::fs::create_dir_all(p.join("seeds/ref_data")).expect("mkdir");
    std::fs::write(
        p.join("seeds/Regions.csv"),
        "Customer;Region;Zip\nc0;eu;01234\nc1;us;98765\nc2;eu;\n",
    )
    .expect("write");
    std::fs::write(
        p.join("seeds/ref_data/tiers.csv"),
        "tier,min_orders,discount,active,since,updated_at,note\n\
         gold,3,0.15,true,2026-01-01,2026-01-01 10:00:00,\n\
         silver,2,0.05,false,2026-02-01,2026-02-01 11:30:00,\"two, or more\"\n",
    )
    .expect("write");
    std::fs::write(
        p.join("seeds/seeds.yml"),
        "seeds:\n  - name: regions\n    config:\n      delimiter: \";\"\n      column_types: {zip: text, region: varchar(2)}\n    columns:\n      - name: customer\n        tests: [unique, not_null]\n",
    )
    .expect("write");
    std::fs::write(
        p.join("sql/gold/customer_tiers.sql"),
        "{{ config(materialized='table') }}\n\
         select c.customer, r.region, r.zip, t.tier, t.discount\n\
         from {{ ref('customers') }} c\n\
         join {{ ref('regions') }} r on r.customer = c.customer\n\
         left join {{ ref('tiers') }} t on c.orders >= t.min_orders and t.active\n",
    )
    .expect("write");

    // `run` builds models only: the seeds are not there yet.
    let out = tidepool(p, &["run", "-s", "customer_tiers"]);
    assert!(!out.status.success(), "{}", stdout(&out));

    let out = tidepool(p, &["seed"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("OK    seed seeds.regions, 3 rows"), "{text}");
    assert!(text.contains("OK    seed ref_data.tiers, 2 rows"), "{text}");
    assert!(
        !text.contains("customer_revenue"),
        "seed loads seeds only:\n{text}"
    );
    let types = table_rows(
        &lake,
        "SELECT table_schema, column_name, data_type FROM information_schema.columns \
         WHERE table_name IN ('regions', 'tiers') ORDER BY table_schema, ordinal_position",
    )
    .await;
    assert_eq!(
        types,
        vec![
            "ref_data|tier|text",
            "ref_data|min_orders|bigint",
            "ref_data|discount|double precision",
            "ref_data|active|boolean",
            "ref_data|since|date",
            "ref_data|updated_at|timestamp without time zone",
            "ref_data|note|text",
            "seeds|customer|text",
            "seeds|region|text",
            "seeds|zip|text",
        ]
    );

    let out = tidepool(p, &["build"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("PASS  unique_regions_customer"), "{text}");
    assert!(
        text.find("OK    seed seeds.regions") < text.find("OK    table gold.customer_tiers"),
        "{text}"
    );
    assert_eq!(
        table_rows(
            &lake,
            "SELECT customer, region, coalesce(zip, '-'), coalesce(tier, '-'), coalesce(discount, 0) \
             FROM gold.customer_tiers ORDER BY customer"
        )
        .await,
        vec!["c0|eu|01234|gold|0.15", "c1|us|98765|gold|0.15", "c2|eu|-|gold|0.15"]
    );
    assert_eq!(
        table_rows(
            &lake,
            "SELECT note FROM ref_data.tiers WHERE tier = 'silver'"
        )
        .await,
        vec!["two, or more"]
    );

    // A value the declared type cannot hold: the seed fails, its table keeps its rows.
    std::fs::write(
        p.join("seeds/seeds.yml"),
        "seeds:\n  - name: regions\n    config:\n      delimiter: \";\"\n      column_types: {zip: bigint}\n",
    )
    .expect("write");
    std::fs::write(
        p.join("seeds/Regions.csv"),
        "customer;region;zip\nc0;eu;A1\n",
    )
    .expect("write");
    let out = tidepool(p, &["seed", "-s", "regions"]);
    let text = stdout(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("ERROR seeds.regions"), "{text}");
    assert!(text.contains("A1"), "the bad value is named:\n{text}");
    assert_eq!(
        table_rows(&lake, "SELECT count(*) FROM seeds.regions").await,
        vec!["3"]
    );
}

/// A project in dbt's layout (`dbt_project.yml`, `models/**` at any depth, folder
/// configs with `+materialized` / `+schema` / `+tags`, `config:` in property files,
/// project vars, a seed, a macro, a
/// singular test, a YAML source) builds unchanged, its schemas named as dbt names them
/// from the target schema `[project] target_schema` maps to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dbt_project_builds_unchanged() {
    let (dir, lake, text) = built_dbt_shop().await;
    let p = dir.path();
    for line in [
        "OK    seed analytics_reference.regions, 2 rows",
        "OK    view analytics.stg_orders",
        "OK    table analytics_marts.customers, 3 rows",
        "OK    table analytics_finance.revenue_by_region, 3 rows",
        "PASS  relationships_stg_orders_customer",
        "PASS  unique_customers_customer",
        "PASS  revenue_is_positive",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert_eq!(
        table_rows(
            &lake,
            "SELECT customer, orders, revenue_cents, coalesce(region, '-'), currency, built_in \
             FROM analytics_marts.customers ORDER BY customer"
        )
        .await,
        vec![
            "c0|3|2700|eu|EUR|analytics",
            "c1|4|3300|us|EUR|analytics",
            "c2|3|2250|-|EUR|analytics"
        ]
    );
    assert_eq!(
        table_rows(
            &lake,
            "SELECT region, revenue_cents FROM analytics_finance.revenue_by_region ORDER BY 1"
        )
        .await,
        vec!["eu|2700", "unknown|2250", "us|3300"]
    );
    // Folder tags select as in dbt; `var()` takes --vars over the project's.
    assert_eq!(
        ls(p, &["-s", "tag:finance"]),
        vec!["analytics_finance.revenue_by_region"]
    );
    // `config:` in a property file configures the model too.
    assert_eq!(
        ls(p, &["-s", "tag:core"]),
        vec!["analytics_marts.customers"]
    );
    let out = tidepool(
        p,
        &["run", "-s", "stg_orders+", "--vars", "{min_amount: 13}"],
    );
    assert!(out.status.success(), "{}", stdout(&out));
    assert_eq!(
        table_rows(&lake, "SELECT count(*) FROM analytics_marts.customers").await,
        vec!["2"]
    );

    // The common override: custom schemas used as they are.
    std::fs::write(
        p.join("macros/generate_schema_name.sql"),
        "{% macro generate_schema_name(custom_schema_name, node) -%}\n\
         {%- if custom_schema_name is none -%}{{ target.schema }}\n\
         {%- else -%}{{ custom_schema_name | trim }}{%- endif -%}\n\
         {%- endmacro %}\n",
    )
    .expect("write");
    let out = tidepool(p, &["build"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    for line in [
        "OK    seed reference.regions",
        "OK    view analytics.stg_orders",
        "OK    table marts.customers",
        "OK    table finance.revenue_by_region",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
}

/// tests/fixtures/dbt_shop copied to a temporary folder, 10 orders in its bronze table,
/// built with `tidepool build`: (folder, lake, build's output).
async fn built_dbt_shop() -> (tempfile::TempDir, std::path::PathBuf, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dbt_shop"),
        dir.path(),
    );
    let lake = dir.path().join("lake");
    write_delta(&lake, "bronze", "orders", orders(10)).await;
    let out = tidepool(dir.path(), &["build"]);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (dir, lake, text)
}

/// The same project's package side: `dbt_packages/shop_utils` (dispatch overridden by the
/// project's `dispatch:` search order, a macro that `return()`s a list read from the lake),
/// tidepool's dbt_utils (surrogate key, star, date_spine, pivot over get_column_values,
/// union_relations, generic tests) and a project generic test in `tests/generic/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dbt_packages_and_dbt_utils_macros_work() {
    let (dir, lake, text) = built_dbt_shop().await;
    let p = dir.path();
    for line in [
        "OK    table analytics_marts.order_facts, 10 rows",
        "OK    table analytics_marts.calendar, 9 rows",
        "OK    table analytics_marts.region_pivot, 2 rows",
        "OK    table analytics_marts.everything, 12 rows",
        "PASS  dbt_utils_unique_combination_of_columns_order_facts",
        "PASS  dbt_utils_expression_is_true_order_facts",
        "PASS  dbt_utils_accepted_range_order_facts_order_id",
        "PASS  is_positive_order_facts_order_id",
        "PASS  unique_order_facts_order_key",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert_eq!(
        table_rows(
            &lake,
            "SELECT order_key = md5('1-c1'), customer, amount_text, no_division IS NULL, \
             numeric_columns FROM analytics_marts.order_facts WHERE order_id = 1"
        )
        .await,
        vec!["t|c1|€1.5|t|order_id,amount"]
    );
    assert_eq!(
        table_rows(
            &lake,
            "SELECT min(date_day), max(date_day), count(*) FROM analytics_marts.calendar"
        )
        .await,
        vec!["2026-01-01|2026-01-09|9"]
    );
    assert_eq!(
        table_rows(
            &lake,
            "SELECT customer, eu, us FROM analytics_marts.region_pivot ORDER BY 1"
        )
        .await,
        vec!["c0|1|0", "c1|0|1"]
    );
    assert_eq!(
        table_rows(
            &lake,
            "SELECT _dbt_source_relation, count(*), count(region), count(amount) \
             FROM analytics_marts.everything GROUP BY 1 ORDER BY 1"
        )
        .await,
        vec![
            "analytics.stg_orders|10|0|10",
            "analytics_reference.regions|2|2|0"
        ]
    );

    // show: a model's query or an inline one, run as it would run, nothing built.
    let out = tidepool(
        p,
        &["show", "-s", "customers", "--limit", "2", "--format", "csv"],
    );
    assert!(out.status.success(), "{}", stdout(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(
        lines[0],
        "customer,orders,revenue_cents,region,currency,built_in"
    );
    assert!(lines[1].ends_with(",EUR,analytics"), "{text}");
    let out = tidepool(
        p,
        &[
            "show",
            "--inline",
            "select count(*) as n, {{ cents('sum(amount)') }} as c from {{ ref('stg_orders') }}",
            "--format",
            "csv",
        ],
    );
    assert_eq!(stdout(&out), "n,c\n10,8250\n", "{:?}", out);
    let out = tidepool(p, &["show", "-s", "path:models/marts"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("show one at a time"),
        "{out:?}"
    );

    // Hooks: on-run-start made the audit table, each mart's post-hook (from the folder)
    // logged its rows from `this`, customers' own pre-hook ran, on-run-end saw `results`,
    // `schemas` and `graph`.
    assert_eq!(
        table_rows(
            &lake,
            "SELECT phase, n, what FROM analytics_audit.runs WHERE phase <> 'post' ORDER BY 1"
        )
        .await,
        vec![
            "end|9|analytics,analytics_finance,analytics_marts,analytics_reference,snapshots",
            "graph|7|models",
            "pre|0|customers"
        ]
    );
    assert_eq!(
        table_rows(
            &lake,
            "SELECT what, n FROM analytics_audit.runs WHERE phase = 'post' ORDER BY 1"
        )
        .await,
        vec![
            "analytics_finance.revenue_by_region|3",
            "analytics_marts.calendar|9",
            "analytics_marts.customers|3",
            "analytics_marts.everything|12",
            "analytics_marts.order_facts|10",
            "analytics_marts.region_pivot|2"
        ]
    );
    // target/manifest.json, in dbt's shape.
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(p.join("target/manifest.json")).expect("manifest.json"),
    )
    .expect("manifest parses");
    assert_eq!(
        manifest["nodes"]["model.dbt_shop.customers"]["depends_on"]["nodes"],
        serde_json::json!(["model.dbt_shop.stg_orders", "seed.dbt_shop.regions"])
    );
    assert_eq!(
        manifest["child_map"]["source.dbt_shop.raw.orders"],
        serde_json::json!(["model.dbt_shop.stg_orders"])
    );

    // A failing package test reports its rows and fails the build.
    let yml = p.join("models/marts/schema.yml");
    let text = std::fs::read_to_string(&yml).expect("read");
    std::fs::write(&yml, text.replace("max_value: 10", "max_value: 5")).expect("write");
    let out = tidepool(p, &["build", "-s", "order_facts"]);
    let text = stdout(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains(
            "FAIL  dbt_utils_accepted_range_order_facts_order_id (models/marts/schema.yml): 5 failing rows"
        ),
        "{text}"
    );

    // A failing pre-hook fails its model; a failing on-run-start skips the run.
    let model = p.join("models/marts/customers.sql");
    let sql = std::fs::read_to_string(&model).expect("read");
    std::fs::write(
        &model,
        sql.replace("_audit.runs values", "_audit.nope values"),
    )
    .expect("write");
    let out = tidepool(p, &["run", "-s", "customers"]);
    let text = stdout(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("hook models/marts/customers.sql pre_hook[0] failed")
            && text.contains("analytics_audit.nope"),
        "{text}"
    );
    let project = p.join("dbt_project.yml");
    let yml = std::fs::read_to_string(&project).expect("read");
    std::fs::write(
        &project,
        yml.replace("create schema if", "create schemaa if"),
    )
    .expect("write");
    let out = tidepool(p, &["run", "-s", "stg_orders"]);
    let text = stdout(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("ERROR on-run-start[0] (dbt_project.yml)")
            && text.contains("SKIP  analytics.stg_orders (on-run-start failed)"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_builds_on_schedule_when_sources_get_new_data() {
    let (dir, lake) = incremental_project().await;
    let p = dir.path();
    let extra = format!(
        "[project]\ndir = {:?}\n[schedule]\non_new_data = true\ncommand = \"run\"\nselect = \"all_versions order_stream\"\n",
        p.display().to_string()
    );
    let server = TestServer::start_with(
        tempfile::tempdir().expect("tempdir"),
        settings(&lake, &extra),
    )
    .await;
    let client = server.connect().await;
    // The first check sees versions it has not built from: a run.
    crate::common::wait_for(
        &client,
        "SELECT count(*) FROM system.runs WHERE command = 'schedule:run' AND status = 'success'",
        60,
        |n| n >= 1,
    )
    .await;
    crate::common::wait_for(
        &client,
        "SELECT count(*) FROM silver.all_versions",
        10,
        |n| n == 10,
    )
    .await;
    // New bronze commits trigger the next run.
    write_delta(&lake, "bronze", "order_versions", order_versions(5..=15, 2)).await;
    crate::common::wait_for(
        &client,
        "SELECT count(*) FROM silver.order_stream",
        60,
        |n| n == 21,
    )
    .await;
    crate::common::wait_for(
        &client,
        "SELECT count(*) FROM silver.all_versions",
        10,
        |n| n == 21,
    )
    .await;
    let runs =
        crate::common::wait_for(&client, "SELECT count(*) FROM system.runs", 5, |n| n >= 2).await;
    // Nothing new: no further runs.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let again =
        crate::common::wait_for(&client, "SELECT count(*) FROM system.runs", 5, |n| n >= 0).await;
    assert_eq!(again, runs, "no run without new data");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yaml_sources_name_lake_tables_and_paths() {
    let dir = project();
    let p = dir.path();
    let lake = p.join("lake");
    write_delta(&lake, "bronze", "orders", orders(10)).await;
    std::fs::write(
        p.join("sql/silver/sources.yml"),
        format!(
            "sources:\n  - name: raw\n    tables:\n      - name: order_files\n        path: {:?}\n        format: delta\n  - name: shop\n    schema: bronze\n    tables:\n      - name: all_orders\n        identifier: orders\n",
            lake.join("bronze/orders").display().to_string()
        ),
    )
    .expect("write");
    std::fs::write(
        p.join("sql/silver/source_counts.sql"),
        "{{ config(materialized='table') }}\nselect 'path' as via, count(*) as n from {{ source('raw', 'order_files') }}\nunion all\nselect 'lake', count(*) from {{ source('shop', 'all_orders') }}\n",
    )
    .expect("write");
    let out = tidepool(p, &["run", "-s", "source_counts"]);
    assert!(
        out.status.success(),
        "{}\n{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        table_rows(
            &lake,
            "SELECT via, n FROM silver.source_counts ORDER BY via"
        )
        .await,
        vec!["lake|10", "path|10"]
    );
    // An unknown source names the known ones.
    std::fs::write(
        p.join("sql/silver/bad.sql"),
        "select * from {{ source('raw', 'nope') }}\n",
    )
    .expect("write");
    let err = fails(p, &["ls"]);
    assert!(
        err.contains("source('raw', 'nope'): no such source (known:")
            && err.contains("raw.order_files"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemeral_models_are_inlined_as_ctes() {
    let dir = project();
    let p = dir.path();
    write_delta(&p.join("lake"), "bronze", "orders", orders(10)).await;
    // big_orders -> big_by_customer (both ephemeral) -> gold.big_spenders, which has a
    // WITH of its own.
    std::fs::write(
        p.join("sql/silver/big_orders.sql"),
        "{{ config(materialized='ephemeral') }}\nselect order_id, customer, amount from {{ ref('stg_orders') }} where amount >= 9\n",
    )
    .expect("write");
    std::fs::write(
        p.join("sql/silver/big_by_customer.sql"),
        "{{ config(materialized='ephemeral') }}\nselect customer, count(*) as n from {{ ref('big_orders') }} group by customer\n",
    )
    .expect("write");
    std::fs::write(
        p.join("sql/gold/big_spenders.sql"),
        "{{ config(materialized='table') }}\nwith ranked as (select customer, n from {{ ref('big_by_customer') }})\nselect customer, n from ranked\n",
    )
    .expect("write");

    // The DAG keeps ephemeral models: +big_spenders names them.
    assert_eq!(
        ls(p, &["-s", "+big_spenders"]),
        vec![
            "gold.big_spenders",
            "silver.big_by_customer",
            "silver.big_orders",
            "silver.stg_orders"
        ]
    );
    let out = tidepool(p, &["run", "-s", "+big_spenders"]);
    assert!(
        out.status.success(),
        "{}\n{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    let compiled = std::fs::read_to_string(p.join("target/compiled/sql/gold/big_spenders.sql"))
        .or_else(|_| {
            assert!(tidepool(p, &["compile"]).status.success());
            std::fs::read_to_string(p.join("target/compiled/sql/gold/big_spenders.sql"))
        })
        .expect("compiled");
    assert!(
        compiled
            .trim_start()
            .starts_with("with __dbt__cte__big_by_customer as ("),
        "{compiled}"
    );
    assert!(compiled.contains("__dbt__cte__big_orders"), "{compiled}");

    // Orders 6..=10 have amount 1.5 * id >= 9: customers c0 (6, 9), c1 (7, 10), c2 (8).
    let lake = p.join("lake");
    assert_eq!(
        table_rows(
            &lake,
            "SELECT customer, n FROM gold.big_spenders ORDER BY customer"
        )
        .await,
        vec!["c0|2", "c1|2", "c2|1"]
    );
    // Nothing was built for the ephemeral models: no table, no view.
    assert_eq!(
        table_rows(
            &lake,
            "SELECT count(*) FROM information_schema.tables WHERE table_name LIKE 'big_%'"
        )
        .await,
        vec!["1"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_folder_deploys_after_the_models_and_again_on_change() {
    let dir = project();
    let p = dir.path();
    let lake = p.join("lake");
    write_delta(&lake, "bronze", "orders", orders(10)).await;
    std::fs::create_dir_all(p.join("views/gold")).expect("mkdir");
    // a_top.sql reads the view b_revenue.sql defines: deployed after it, by retry.
    std::fs::write(
        p.join("views/gold/a_top.sql"),
        "-- The best customer, over a view of another file.\nCREATE OR REPLACE VIEW top_customer AS\nSELECT customer FROM gold.revenue_view ORDER BY revenue_cents DESC LIMIT 1;\n",
    )
    .expect("write");
    std::fs::write(
        p.join("views/gold/b_revenue.sql"),
        "CREATE OR REPLACE VIEW revenue_view AS SELECT customer, revenue_cents FROM gold.customer_revenue;\n\nCREATE OR REPLACE PROCEDURE gold.revenue_of(customer TEXT)\nAS SELECT revenue_cents FROM gold.customer_revenue WHERE customer = :customer;\n",
    )
    .expect("write");
    std::fs::write(
        p.join("views/gold/c_broken.sql"),
        "CREATE VIEW fine AS SELECT 1 AS one;\nCREATE VIEW broken AS SELECT nope FROM gold.customer_revenue;\n",
    )
    .expect("write");

    let out = tidepool(p, &["run"]);
    let text = stdout(&out);
    assert!(
        !out.status.success(),
        "a broken views/ file fails the run:\n{text}"
    );
    assert!(text.contains("3 ok, 0 errors, 0 skipped"), "{text}");
    assert!(text.contains("views: 2 files deployed, 1 failed"), "{text}");
    assert!(
        text.contains("ERROR views/gold/c_broken.sql:2: "),
        "the failure names file and line:\n{text}"
    );
    assert_eq!(
        table_rows(&lake, "SELECT customer FROM gold.top_customer").await,
        vec!["c1"]
    );
    assert_eq!(
        table_rows(&lake, "CALL gold.revenue_of('c1')").await,
        vec!["3300"]
    );
    let listed = table_rows(&lake, "SELECT count(*) FROM information_schema.views WHERE table_name IN ('top_customer', 'revenue_view', 'fine')").await;
    assert_eq!(listed, vec!["3"]);
    assert_eq!(
        table_rows(
            &lake,
            "SELECT signature, returns, file FROM system.procedures WHERE name = 'revenue_of'"
        )
        .await,
        vec!["gold.revenue_of(customer TEXT)|revenue_cents BIGINT|views/gold/b_revenue.sql"]
    );

    // serve deploys the folder at start and again when a file changes.
    std::fs::remove_file(p.join("views/gold/c_broken.sql")).expect("rm");
    let extra = format!("[project]\ndir = {:?}\n", p.display().to_string());
    let server = TestServer::start_with(
        tempfile::tempdir().expect("tempdir"),
        settings(&lake, &extra),
    )
    .await;
    let client = server.connect().await;
    std::fs::write(
        p.join("views/gold/b_revenue.sql"),
        "CREATE OR REPLACE VIEW revenue_view AS SELECT customer, revenue_cents FROM gold.customer_revenue;\n\nCREATE OR REPLACE PROCEDURE gold.revenue_of(customer TEXT)\nAS SELECT revenue_cents * 10 FROM gold.customer_revenue WHERE customer = :customer;\n",
    )
    .expect("rewrite");
    crate::common::wait_for(&client, "CALL gold.revenue_of('c1')", 20, |v| v == 33000).await;
}
