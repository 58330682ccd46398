//! dbt snapshots through the `tidepool snapshot` and `build` commands: a `{% snapshot %}`
//! block with the timestamp strategy and invalidated hard deletes, a YAML snapshot
//! (dbt 1.9's form) with the check strategy, a composite key, renamed columns and deleted
//! rows as new records, and a model that reads a snapshot. Each snapshot run is one Delta
//! commit; a run without changes writes no rows.

use std::path::Path;

use crate::models::{stdout, table_rows, tidepool};

const PROJECT: &str = "name: snap\nconfig-version: 2\nsnapshots:\n  snap:\n    +tags: [history]\n";

const BLOCK: &str = "{% snapshot customers_snap %}\n\
{{ config(target_schema='history', unique_key='id', strategy='timestamp', updated_at='updated_at', hard_deletes='invalidate') }}\n\
select id, name, tier, updated_at from {{ source('raw', 'customers') }}\n\
{% endsnapshot %}\n";

const YAML: &str = "snapshots:\n  - name: tier_history\n    relation: source('raw', 'customers')\n    config:\n      \
schema: hist\n      unique_key: [id, name]\n      strategy: check\n      check_cols: [tier]\n      \
hard_deletes: new_record\n      snapshot_meta_column_names: {dbt_valid_to: valid_until}\n";

const SOURCES: &str =
    "sources:\n  - name: raw\n    schema: bronze\n    tables:\n      - name: customers\n";

fn sql(p: &Path, text: &str) {
    let out = tidepool(p, &["sql", text]);
    assert!(
        out.status.success(),
        "{text}: {}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn snapshot(p: &Path) -> String {
    let out = tidepool(p, &["snapshot"]);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// Commits in a table's Delta log.
fn commits(lake: &Path, schema: &str, table: &str) -> usize {
    std::fs::read_dir(lake.join(schema).join(table).join("_delta_log"))
        .expect("delta log")
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_keep_history_as_dbt_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    let lake = p.join("lake");
    for (file, text) in [
        ("dbt_project.yml", PROJECT),
        ("snapshots/customers.sql", BLOCK),
        ("snapshots/tiers.yml", YAML),
        ("models/sources.yml", SOURCES),
        (
            "models/current_customers.sql",
            "select id, name from {{ ref('customers_snap') }} where dbt_valid_to is null",
        ),
        (
            "tidepool.toml",
            "[project]\ntarget_schema = \"analytics\"\n[postgres]\nenabled = false\n[http]\nenabled = false\n",
        ),
    ] {
        let path = p.join(file);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }
    sql(
        p,
        "CREATE SCHEMA bronze; CREATE TABLE bronze.customers (id bigint, name text, tier text, updated_at timestamp); \
         INSERT INTO bronze.customers VALUES (1, 'ann', 'gold', '2026-01-01'), (2, 'bob', 'silver', '2026-01-01'), \
         (3, 'cy', 'bronze', '2026-01-01')",
    );
    let text = snapshot(p);
    assert!(
        text.contains("OK    snapshot history.customers_snap, 3 rows")
            && text.contains("OK    snapshot analytics_hist.tier_history, 3 rows")
            && !text.contains("current_customers"),
        "{text}"
    );
    // The project's snapshots: config applies to both forms.
    assert_eq!(
        crate::models::ls(p, &["-s", "tag:history"]),
        vec!["analytics_hist.tier_history", "history.customers_snap"]
    );

    // ann moves up a tier, cy leaves, dee arrives.
    sql(
        p,
        "UPDATE bronze.customers SET tier = 'platinum', updated_at = '2026-01-02' WHERE id = 1; \
         DELETE FROM bronze.customers WHERE id = 3; \
         INSERT INTO bronze.customers VALUES (4, 'dee', 'gold', '2026-01-02')",
    );
    let before = commits(&lake, "history", "customers_snap");
    snapshot(p);
    assert_eq!(commits(&lake, "history", "customers_snap"), before + 1);
    let history = "SELECT id, tier, dbt_valid_from, dbt_valid_to IS NULL, \
                   dbt_updated_at = dbt_valid_from, length(dbt_scd_id) \
                   FROM history.customers_snap ORDER BY id, dbt_valid_from";
    let expected = vec![
        "1|gold|2026-01-01 00:00:00|f|t|32",
        "1|platinum|2026-01-02 00:00:00|t|t|32",
        "2|silver|2026-01-01 00:00:00|t|t|32",
        "3|bronze|2026-01-01 00:00:00|f|t|32",
        "4|gold|2026-01-02 00:00:00|t|t|32",
    ];
    assert_eq!(table_rows(&lake, history).await, expected);
    assert_eq!(
        table_rows(
            &lake,
            "SELECT dbt_valid_to FROM history.customers_snap WHERE id = 1 AND tier = 'gold'"
        )
        .await,
        vec!["2026-01-02 00:00:00"]
    );
    let tiers = "SELECT id, tier, valid_until IS NULL, dbt_is_deleted \
                 FROM analytics_hist.tier_history ORDER BY id, dbt_valid_from, dbt_is_deleted";
    let expected_tiers = vec![
        "1|gold|f|False",
        "1|platinum|t|False",
        "2|silver|t|False",
        "3|bronze|f|False",
        "3|bronze|t|True",
        "4|gold|t|False",
    ];
    assert_eq!(table_rows(&lake, tiers).await, expected_tiers);

    // Nothing changed: nothing written, the deleted record is not repeated.
    let text = snapshot(p);
    assert!(
        text.contains("OK    snapshot history.customers_snap, 0 rows"),
        "{text}"
    );
    assert_eq!(table_rows(&lake, history).await, expected);
    assert_eq!(table_rows(&lake, tiers).await, expected_tiers);

    // cy comes back: the deleted record closes and a new version opens.
    sql(
        p,
        "INSERT INTO bronze.customers VALUES (3, 'cy', 'bronze', '2026-01-03')",
    );
    let out = tidepool(p, &["build"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert_eq!(
        table_rows(
            &lake,
            "SELECT id, tier, valid_until IS NULL, dbt_is_deleted FROM analytics_hist.tier_history \
             WHERE id = 3 ORDER BY dbt_valid_from, dbt_is_deleted"
        )
        .await,
        vec!["3|bronze|f|False", "3|bronze|f|True", "3|bronze|t|False"]
    );
    // build took the snapshot before the model that reads it.
    assert_eq!(
        table_rows(
            &lake,
            "SELECT id, name FROM analytics.current_customers ORDER BY id"
        )
        .await,
        vec!["1|ann", "2|bob", "3|cy", "4|dee"]
    );

    // A snapshot without its strategy's settings is reported when the project loads.
    std::fs::write(
        p.join("snapshots/customers.sql"),
        BLOCK.replace(", updated_at='updated_at'", ""),
    )
    .expect("write");
    let out = tidepool(p, &["snapshot"]);
    let text = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("snapshots/customers.sql: snapshot strategy 'timestamp' needs updated_at"),
        "{text}"
    );
}
