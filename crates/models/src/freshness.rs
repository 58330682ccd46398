//! `source freshness`, as dbt: for each source table with a `freshness:` block (its own
//! or its source's) and a `loaded_at_field`, the newest value of that column, its age, and `pass`, `warn` or
//! `error` against the `freshness: {warn_after: {count, period}, error_after: ...,
//! filter: ...}` of the table (or its source; `freshness: null` on a table turns it
//! off). The bronze table of every Kafka source is checked by its `_ingested_at` without
//! configuration (thresholds only when its YAML gives them). Results are written to
//! `target/sources.json` in dbt's shape and appended to `system.source_freshness`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, Float64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use serde_json::{Value, json};

use super::Project;
use crate::ModelsError;
use tidepool_engine::{DeltaSystemTable, Engine};
use tidepool_lake::Lake;

/// dbt's `sources.json` schema.
pub const SCHEMA_VERSION: &str = "https://schemas.getdbt.com/dbt/sources/v3.json";

/// A threshold: `count` `period`s (minute, hour, day).
#[derive(Debug, Clone, PartialEq)]
pub struct Period {
    pub count: u64,
    pub period: String,
}

impl Period {
    pub fn seconds(&self) -> f64 {
        let unit = match self.period.as_str() {
            "minute" => 60.0,
            "hour" => 3600.0,
            _ => 86400.0,
        };
        self.count as f64 * unit
    }

    fn parse(v: Option<&serde_yaml_ng::Value>, what: &str) -> Result<Option<Period>, String> {
        let Some(v) = v.filter(|v| !v.is_null()) else {
            return Ok(None);
        };
        let count = v.get("count").and_then(|c| c.as_u64());
        let period = v.get("period").and_then(|p| p.as_str());
        match (count, period) {
            (Some(count), Some(p @ ("minute" | "hour" | "day"))) => Ok(Some(Period {
                count,
                period: p.to_string(),
            })),
            _ => Err(format!(
                "{what} needs count (a whole number) and period (minute, hour or day)"
            )),
        }
    }

    fn json(p: &Option<Period>) -> Value {
        match p {
            Some(p) => json!({"count": p.count, "period": p.period}),
            None => json!({"count": null, "period": null}),
        }
    }
}

/// One source table to check.
#[derive(Debug, Clone)]
pub struct Check {
    pub source: String,
    pub table: String,
    /// What `source()` renders for it.
    pub relation: String,
    pub loaded_at_field: String,
    pub warn_after: Option<Period>,
    pub error_after: Option<Period>,
    /// A WHERE condition limiting the rows looked at.
    pub filter: Option<String>,
}

/// The checks of `project`: its YAML sources with a `loaded_at_field`, and the bronze
/// tables of the Kafka sources `kafka` (by `_ingested_at`) not declared there.
pub fn checks(project: &Project, kafka: &[String]) -> Result<Vec<Check>, ModelsError> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let mut seen = BTreeSet::new();
    let files = super::datatests::yaml_files(&project.paths.models, &project.paths.dir)?;
    for (path, file) in files {
        for src in file.sources {
            for t in src.tables {
                let (s, n) = (src.name.to_lowercase(), t.name.to_lowercase());
                seen.insert((s.clone(), n.clone()));
                let freshness = match &t.freshness {
                    Some(own) => own.clone(),
                    None => src.freshness.clone(),
                };
                let loaded_at = t
                    .loaded_at_field
                    .clone()
                    .or_else(|| src.loaded_at_field.clone())
                    .or_else(|| is_kafka(&s, &n, kafka).then(|| "_ingested_at".to_string()));
                let freshness = freshness.filter(|f| !f.is_null());
                // As dbt: a table without a freshness block is not checked (a Kafka
                // source's bronze table is, by its age alone).
                if freshness.is_none() && !is_kafka(&s, &n, kafka) {
                    continue;
                }
                let Some(loaded_at) = loaded_at else {
                    if freshness.is_some() {
                        errors.push(format!(
                            "{path}: source {s}.{n} has freshness but no loaded_at_field"
                        ));
                    }
                    continue;
                };
                let what = format!("{path}: source {s}.{n}: freshness");
                let parsed = freshness
                    .as_ref()
                    .map(|f| {
                        Ok::<_, String>((
                            Period::parse(f.get("warn_after"), &format!("{what}.warn_after"))?,
                            Period::parse(f.get("error_after"), &format!("{what}.error_after"))?,
                            f.get("filter").and_then(|v| v.as_str()).map(str::to_string),
                        ))
                    })
                    .transpose();
                let (warn_after, error_after, filter) = match parsed {
                    Ok(p) => p.unwrap_or((None, None, None)),
                    Err(e) => {
                        errors.push(e);
                        continue;
                    }
                };
                let Some(relation) = project.resolver.sources.get(&(s.clone(), n.clone())) else {
                    continue;
                };
                out.push(Check {
                    source: s,
                    table: n,
                    relation: relation.clone(),
                    loaded_at_field: loaded_at,
                    warn_after,
                    error_after,
                    filter,
                });
            }
        }
    }
    for name in kafka {
        let key = ("kafka".to_string(), name.to_lowercase());
        let declared = seen.contains(&key) || seen.contains(&("bronze".into(), key.1.clone()));
        if !declared && let Some(relation) = project.resolver.sources.get(&key) {
            out.push(Check {
                source: key.0.clone(),
                table: key.1.clone(),
                relation: relation.clone(),
                loaded_at_field: "_ingested_at".into(),
                warn_after: None,
                error_after: None,
                filter: None,
            });
        }
    }
    if !errors.is_empty() {
        return Err(ModelsError::Project(errors.join("\n")));
    }
    Ok(out)
}

fn is_kafka(source: &str, table: &str, kafka: &[String]) -> bool {
    (source == "kafka" || source == "bronze") && kafka.iter().any(|k| k == table)
}

/// What one check found.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// `pass`, `warn`, `error` or `runtime error`.
    pub status: &'static str,
    /// The newest `loaded_at_field`, in seconds since the epoch (`None`: no rows).
    pub max_loaded_at: Option<f64>,
    pub age_seconds: Option<f64>,
    pub error: Option<String>,
    pub snapshotted_at: chrono::DateTime<chrono::Utc>,
    pub seconds: f64,
}

/// Runs check `c`.
pub async fn check(engine: &Arc<Engine>, c: &Check) -> Outcome {
    let started = Instant::now();
    let sql = format!(
        "SELECT date_part('epoch', max(\"{}\")) FROM {}{}",
        c.loaded_at_field.replace('"', "\"\""),
        c.relation,
        c.filter
            .as_ref()
            .map(|f| format!(" WHERE {f}"))
            .unwrap_or_default()
    );
    let session = engine.session("tidepool");
    let result = async {
        let batches = session.dataframe(&sql).await?.collect().await?;
        let value = batches.first().filter(|b| b.num_rows() > 0).and_then(|b| {
            let col =
                arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Float64).ok()?;
            let col = col
                .as_any()
                .downcast_ref::<arrow::array::Float64Array>()?
                .clone();
            (!arrow::array::Array::is_null(&col, 0)).then(|| col.value(0))
        });
        Ok::<_, ModelsError>(value)
    }
    .await;
    let snapshotted_at = chrono::Utc::now();
    let now = snapshotted_at.timestamp_micros() as f64 / 1e6;
    let seconds = started.elapsed().as_secs_f64();
    match result {
        Err(e) => Outcome {
            status: "runtime error",
            max_loaded_at: None,
            age_seconds: None,
            error: Some(e.to_string()),
            snapshotted_at,
            seconds,
        },
        Ok(max) => {
            let age = max.map(|m| (now - m).max(0.0));
            // No rows is as stale as can be.
            let over = |p: &Option<Period>| {
                p.as_ref()
                    .is_some_and(|p| age.is_none_or(|a| a > p.seconds()))
            };
            let status = if over(&c.error_after) {
                "error"
            } else if over(&c.warn_after) {
                "warn"
            } else {
                "pass"
            };
            Outcome {
                status,
                max_loaded_at: max,
                age_seconds: age,
                error: None,
                snapshotted_at,
                seconds,
            }
        }
    }
}

fn timestamp(epoch: f64) -> String {
    chrono::DateTime::from_timestamp_micros((epoch * 1e6) as i64)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .unwrap_or_default()
}

/// `target/sources.json`: dbt's shape, one result per check.
pub fn write(
    project: &Project,
    results: &[(Check, Outcome)],
    elapsed: f64,
) -> Result<(), ModelsError> {
    let package = super::manifest::package(project);
    let results: Vec<Value> = results
        .iter()
        .map(|(c, o)| {
            json!({
                "unique_id": format!("source.{package}.{}.{}", c.source, c.table),
                "max_loaded_at": o.max_loaded_at.map(timestamp),
                "snapshotted_at": o.snapshotted_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "max_loaded_at_time_ago_in_s": o.age_seconds,
                "status": o.status,
                "error": o.error,
                "criteria": {
                    "warn_after": Period::json(&c.warn_after),
                    "error_after": Period::json(&c.error_after),
                    "filter": c.filter,
                },
                "adapter_response": {},
                "timing": [],
                "thread_id": "Thread-1",
                "execution_time": o.seconds,
            })
        })
        .collect();
    let doc = json!({
        "metadata": {
            "dbt_schema_version": SCHEMA_VERSION,
            "dbt_version": "1.9.0",
            "generated_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "generator": format!("tidepool {}", env!("CARGO_PKG_VERSION")),
        },
        "results": results,
        "elapsed_time": elapsed,
    });
    let io = |e: std::io::Error| ModelsError::Io {
        path: "target/sources.json".into(),
        source: e,
    };
    std::fs::create_dir_all(&project.paths.target).map_err(io)?;
    std::fs::write(
        project.paths.target.join("sources.json"),
        serde_json::to_string_pretty(&doc).unwrap_or_default(),
    )
    .map_err(io)
}

/// Where the checks are kept, under the lake's root: `system.source_freshness`.
const TABLE: &str = "_tidepool/source_freshness";

fn schema() -> SchemaRef {
    let ts = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("checked_at", ts(), false),
        Field::new("source", DataType::Utf8, false),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("relation", DataType::Utf8, false),
        Field::new("loaded_at_field", DataType::Utf8, false),
        Field::new("max_loaded_at", ts(), true),
        Field::new("age_s", DataType::Float64, true),
        Field::new("status", DataType::Utf8, false),
        Field::new("warn_after_s", DataType::Float64, true),
        Field::new("error_after_s", DataType::Float64, true),
        Field::new("error", DataType::Utf8, true),
    ]))
}

/// Publishes `system.source_freshness` (every check of every `source freshness`) in
/// `engine`.
pub fn register(engine: &Engine) {
    engine.register_system_delta(
        "source_freshness",
        DeltaSystemTable {
            schema: schema(),
            lake: engine.lake().clone(),
            path: TABLE.to_string(),
        },
    );
}

/// Appends `results` to `system.source_freshness`, in one commit.
pub async fn save(lake: &Arc<Lake>, results: &[(Check, Outcome)]) -> Result<(), ModelsError> {
    if results.is_empty() {
        return Ok(());
    }
    let micros = |e: f64| (e * 1e6) as i64;
    let seconds = |p: &Option<Period>| p.as_ref().map(Period::seconds);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(
                results
                    .iter()
                    .map(|(_, o)| o.snapshotted_at.timestamp_micros()),
            )
            .with_timezone("UTC"),
        ),
        Arc::new(StringArray::from_iter_values(
            results.iter().map(|(c, _)| c.source.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            results.iter().map(|(c, _)| c.table.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            results.iter().map(|(c, _)| c.relation.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            results.iter().map(|(c, _)| c.loaded_at_field.as_str()),
        )),
        Arc::new(
            TimestampMicrosecondArray::from_iter(
                results.iter().map(|(_, o)| o.max_loaded_at.map(micros)),
            )
            .with_timezone("UTC"),
        ),
        Arc::new(Float64Array::from_iter(
            results.iter().map(|(_, o)| o.age_seconds),
        )),
        Arc::new(StringArray::from_iter_values(
            results.iter().map(|(_, o)| o.status),
        )),
        Arc::new(Float64Array::from_iter(
            results.iter().map(|(c, _)| seconds(&c.warn_after)),
        )),
        Arc::new(Float64Array::from_iter(
            results.iter().map(|(c, _)| seconds(&c.error_after)),
        )),
        Arc::new(StringArray::from_iter(
            results.iter().map(|(_, o)| o.error.as_deref()),
        )),
    ];
    let batch = RecordBatch::try_new(schema(), columns)?;
    super::records::append(lake, TABLE, batch).await
}
