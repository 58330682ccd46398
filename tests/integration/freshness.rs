//! `tidepool source freshness`: YAML sources with `loaded_at_field` and thresholds
//! (inherited from the source, overridden or turned off per table, with a filter), the
//! bronze table of a Kafka source checked by `_ingested_at` without configuration, the
//! exit status and `target/sources.json`.

use crate::models::{stdout, tidepool};

const SOURCES: &str = "sources:\n  - name: raw\n    schema: bronze\n    loaded_at_field: loaded_at\n    \
freshness:\n      warn_after: {count: 1, period: hour}\n      error_after: {count: 1, period: day}\n    \
tables:\n      - name: fresh\n      - name: stale\n      - name: aging\n      - name: empty\n      \
- name: unwatched\n        freshness: null\n      - name: filtered\n        identifier: mixed\n        \
freshness:\n          warn_after: {count: 1, period: hour}\n          filter: \"kind = 'old'\"\n  \
- name: undeclared_freshness\n    schema: bronze\n    tables:\n      - name: fresh\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_freshness_reports_age_against_thresholds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    std::fs::create_dir_all(p.join("sql/silver")).expect("mkdir");
    std::fs::write(p.join("sql/sources.yml"), SOURCES).expect("write");
    std::fs::write(
        p.join("tidepool.toml"),
        "[postgres]\nenabled = false\n[http]\nenabled = false\n\
         [[sources]]\nname = \"orders\"\ntopics = [\"shop.orders\"]\n",
    )
    .expect("write");
    let out = tidepool(
        p,
        &[
            "sql",
            "CREATE SCHEMA bronze; \
             CREATE TABLE bronze.fresh AS SELECT now() AS loaded_at; \
             CREATE TABLE bronze.aging AS SELECT now() - INTERVAL '2 hours' AS loaded_at; \
             CREATE TABLE bronze.stale AS SELECT now() - INTERVAL '3 days' AS loaded_at; \
             CREATE TABLE bronze.mixed AS SELECT * FROM (VALUES \
               (now() - INTERVAL '3 days', 'old'), (now() - INTERVAL '10 minutes', 'new')) AS t(loaded_at, kind); \
             CREATE TABLE bronze.empty (loaded_at timestamp); \
             CREATE TABLE bronze.unwatched (loaded_at timestamp); \
             CREATE TABLE bronze.orders AS SELECT 1 AS id, now() - INTERVAL '5 minutes' AS _ingested_at",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let out = tidepool(p, &["source", "freshness"]);
    let text = stdout(&out);
    // filtered reads mixed's old rows only: 3 days, over its one threshold (warn).
    for line in [
        "PASS  freshness of raw.fresh (bronze.fresh)",
        "WARN  freshness of raw.aging (bronze.aging)",
        "ERROR STALE freshness of raw.stale (bronze.stale)",
        "ERROR STALE freshness of raw.empty (bronze.empty): no rows (loaded_at)",
        "WARN  freshness of raw.filtered (bronze.mixed)",
        "PASS  freshness of kafka.orders (bronze.orders): newest _ingested_at",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert!(
        !text.contains("unwatched") && !text.contains("undeclared_freshness"),
        "{text}"
    );
    assert!(!out.status.success(), "errors fail the command\n{text}");

    let sources: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(p.join("target/sources.json")).expect("sources.json"),
    )
    .expect("json");
    let aging = sources["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|r| r["unique_id"] == "source.tidepool.raw.aging")
        .expect("aging");
    assert_eq!(aging["status"], "warn");
    assert_eq!(aging["criteria"]["warn_after"]["period"], "hour");
    let age = aging["max_loaded_at_time_ago_in_s"].as_f64().expect("age");
    assert!((7100.0..7400.0).contains(&age), "{age}");

    // Every check is kept in system.source_freshness.
    let out = tidepool(
        p,
        &[
            "sql",
            "SELECT table_name, status, warn_after_s, age_s > 7000 FROM system.source_freshness \
             WHERE source = 'raw' ORDER BY table_name",
            "--format",
            "csv",
        ],
    );
    assert_eq!(
        stdout(&out),
        "table_name,status,warn_after_s,?column?\n\
         aging,warn,3600.0,true\nempty,error,3600.0,\nfiltered,warn,3600.0,true\n\
         fresh,pass,3600.0,false\nstale,error,3600.0,true\n",
        "{out:?}"
    );

    // Only what is selected; a passing run succeeds.
    let out = tidepool(
        p,
        &[
            "source",
            "freshness",
            "-s",
            "source:raw.fresh",
            "source:kafka",
        ],
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("checking the freshness of 2 source tables"),
        "{text}"
    );
}
