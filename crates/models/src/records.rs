//! Run records: every `run`, `build` and `test` appends one row to the Delta table
//! `_tidepool/runs` and one per model or test to `_tidepool/run_models` in the lake, read
//! as `system.runs` and `system.run_models` by any tidepool process serving that lake; and
//! writes `target/run_results.json` in dbt's shape.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, Utc};
use deltalake::protocol::SaveMode;

use super::datatests::Severity;
use super::run::{Event, ModelResult, RunOptions, Status, TestResult};
use super::{Materialized, Project};
use tidepool_engine::{DeltaSystemTable, Engine};
use tidepool_lake::Lake;
use tokio_util::sync::CancellationToken;

use crate::ModelsError;

const RUNS: &str = "_tidepool/runs";
const RUN_MODELS: &str = "_tidepool/run_models";

/// One node of a run: a model or a test.
#[derive(Debug, Clone)]
pub struct NodeRecord {
    /// `model` or `test`.
    pub kind: String,
    /// `schema.name` of a model, the test's name.
    pub name: String,
    pub path: String,
    /// Materialization, or the test's severity.
    pub detail: String,
    /// `success`, `error`, `skipped` (models); `pass`, `fail`, `warn`, `error` (tests).
    pub status: String,
    pub rows: Option<u64>,
    pub files: Option<u64>,
    pub bytes: Option<u64>,
    /// Failing rows of a test.
    pub failures: Option<u64>,
    pub seconds: f64,
    pub message: Option<String>,
}

/// One `run`, `build` or `test`.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub run_id: String,
    pub command: String,
    pub selector: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub nodes: Vec<NodeRecord>,
}

/// One row of `system.runs`: a run without its nodes.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    pub run_id: String,
    pub command: String,
    pub selector: String,
    /// `success` or `error`.
    pub status: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub duration_s: f64,
    pub models: i64,
    pub tests: i64,
    /// Models in error and tests that failed or errored.
    pub errors: i64,
    pub skipped: i64,
}

impl RunRecord {
    /// What `system.runs` records of this run.
    pub fn summary(&self) -> RunSummary {
        let count =
            |p: &dyn Fn(&NodeRecord) -> bool| self.nodes.iter().filter(|n| p(n)).count() as i64;
        RunSummary {
            run_id: self.run_id.clone(),
            command: self.command.clone(),
            selector: self.selector.clone(),
            status: self.status().to_string(),
            started_at: self.started_at,
            finished_at: self.finished_at,
            duration_s: (self.finished_at - self.started_at)
                .num_microseconds()
                .unwrap_or(0) as f64
                / 1e6,
            models: count(&|n| n.kind == "model"),
            tests: count(&|n| n.kind == "test"),
            errors: count(&|n| matches!(n.status.as_str(), "error" | "fail")),
            skipped: count(&|n| n.status == "skipped"),
        }
    }

    /// `success` when nothing failed or was skipped.
    pub fn status(&self) -> &'static str {
        if self
            .nodes
            .iter()
            .any(|n| matches!(n.status.as_str(), "error" | "fail" | "skipped"))
        {
            "error"
        } else {
            "success"
        }
    }
}

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

pub fn runs_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("command", DataType::Utf8, false),
        Field::new("selector", DataType::Utf8, true),
        Field::new("status", DataType::Utf8, false),
        Field::new("started_at", ts(), false),
        Field::new("finished_at", ts(), false),
        Field::new("duration_s", DataType::Float64, false),
        Field::new("models", DataType::Int64, false),
        Field::new("tests", DataType::Int64, false),
        Field::new("errors", DataType::Int64, false),
        Field::new("skipped", DataType::Int64, false),
    ]))
}

pub fn run_models_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("path", DataType::Utf8, false),
        Field::new("materialized", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("rows_written", DataType::Int64, true),
        Field::new("files", DataType::Int64, true),
        Field::new("bytes", DataType::Int64, true),
        Field::new("failures", DataType::Int64, true),
        Field::new("duration_s", DataType::Float64, false),
        Field::new("error", DataType::Utf8, true),
        Field::new("finished_at", ts(), false),
    ]))
}

/// Publishes `system.runs` and `system.run_models` in `engine`.
pub fn register(engine: &Engine) {
    for (name, schema, path) in [
        ("runs", runs_schema(), RUNS),
        ("run_models", run_models_schema(), RUN_MODELS),
    ] {
        engine.register_system_delta(
            name,
            DeltaSystemTable {
                schema,
                lake: engine.lake().clone(),
                path: path.to_string(),
            },
        );
    }
}

fn opt(v: Option<u64>) -> Option<i64> {
    v.map(|n| n as i64)
}

/// What a recorded run is called in `system.runs`: `run`, `build`, `schedule:run`...
/// and the selector it was given.
#[derive(Debug, Clone)]
pub struct Label {
    pub command: String,
    pub selector: String,
}

/// Runs like [`run`](super::run::run) and returns the results with the run's record (not saved yet: the
/// caller saves it where it keeps runs).
pub async fn run_to_record(
    project: Arc<Project>,
    engine: Arc<Engine>,
    selected: &BTreeSet<usize>,
    options: &RunOptions,
    label: Label,
    cancel: CancellationToken,
    mut progress: impl FnMut(&Event),
) -> (Vec<ModelResult>, RunRecord) {
    let started_at = chrono::Utc::now();
    let mut tested = Vec::new();
    let results = super::run::run(
        project.clone(),
        engine.clone(),
        selected,
        options,
        cancel,
        |e| {
            if let Event::Tested(t) = e {
                tested.push(t.clone());
            }
            progress(e);
        },
    )
    .await;
    let nodes = nodes(engine.lake(), &project, &results, &tested).await;
    let record = RunRecord {
        run_id: run_id(started_at),
        command: label.command,
        selector: label.selector,
        started_at,
        finished_at: chrono::Utc::now(),
        nodes,
    };
    (results, record)
}

/// Appends the record to the lake's run tables.
pub async fn save(lake: &Arc<Lake>, r: &RunRecord) -> Result<(), ModelsError> {
    let sum = r.summary();
    let runs: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![sum.run_id])),
        Arc::new(StringArray::from(vec![sum.command])),
        Arc::new(StringArray::from(vec![
            Some(sum.selector).filter(|s| !s.is_empty()),
        ])),
        Arc::new(StringArray::from(vec![sum.status])),
        Arc::new(
            TimestampMicrosecondArray::from(vec![sum.started_at.timestamp_micros()])
                .with_timezone("UTC"),
        ),
        Arc::new(
            TimestampMicrosecondArray::from(vec![sum.finished_at.timestamp_micros()])
                .with_timezone("UTC"),
        ),
        Arc::new(Float64Array::from(vec![sum.duration_s])),
        Arc::new(Int64Array::from(vec![sum.models])),
        Arc::new(Int64Array::from(vec![sum.tests])),
        Arc::new(Int64Array::from(vec![sum.errors])),
        Arc::new(Int64Array::from(vec![sum.skipped])),
    ];
    let n = &r.nodes;
    let nodes: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![r.run_id.clone(); n.len()])),
        Arc::new(StringArray::from_iter_values(
            n.iter().map(|x| x.kind.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            n.iter().map(|x| x.name.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            n.iter().map(|x| x.path.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            n.iter().map(|x| x.detail.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            n.iter().map(|x| x.status.as_str()),
        )),
        Arc::new(Int64Array::from_iter(n.iter().map(|x| opt(x.rows)))),
        Arc::new(Int64Array::from_iter(n.iter().map(|x| opt(x.files)))),
        Arc::new(Int64Array::from_iter(n.iter().map(|x| opt(x.bytes)))),
        Arc::new(Int64Array::from_iter(n.iter().map(|x| opt(x.failures)))),
        Arc::new(Float64Array::from_iter_values(n.iter().map(|x| x.seconds))),
        Arc::new(StringArray::from_iter(
            n.iter().map(|x| x.message.as_deref()),
        )),
        Arc::new(
            TimestampMicrosecondArray::from(vec![r.finished_at.timestamp_micros(); n.len()])
                .with_timezone("UTC"),
        ),
    ];
    append(lake, RUNS, RecordBatch::try_new(runs_schema(), runs)?).await?;
    if !n.is_empty() {
        append(
            lake,
            RUN_MODELS,
            RecordBatch::try_new(run_models_schema(), nodes)?,
        )
        .await?;
    }
    Ok(())
}

pub(crate) async fn append(
    lake: &Arc<Lake>,
    path: &str,
    batch: RecordBatch,
) -> Result<(), ModelsError> {
    let url = lake
        .root()
        .join(&format!("{path}/"))
        .map_err(|e| tidepool_lake::LakeError::InvalidRoot(e.to_string()))?;
    if let Ok(dir) = url.to_file_path() {
        std::fs::create_dir_all(&dir).map_err(|e| ModelsError::Io {
            path: dir.display().to_string(),
            source: e,
        })?;
    }
    let table = deltalake::DeltaTable::try_from_url_with_storage_options(
        url,
        lake.storage_options().clone(),
    )
    .await?;
    table
        .write(vec![batch])
        .with_save_mode(SaveMode::Append)
        .await?;
    Ok(())
}

/// `target/run_results.json`, in the shape of dbt's run results (v6).
pub fn run_results_json(r: &RunRecord) -> serde_json::Value {
    let results: Vec<serde_json::Value> = r
        .nodes
        .iter()
        .map(|n| {
            let unique_id = format!("{}.tidepool.{}", n.kind, n.name);
            serde_json::json!({
                "unique_id": unique_id,
                "status": n.status,
                "thread_id": "Thread-1",
                "execution_time": n.seconds,
                "timing": [],
                "message": n.message,
                "failures": n.failures,
                "adapter_response": {"rows_affected": n.rows, "files": n.files, "bytes": n.bytes},
                "relation_name": if n.kind == "model" { Some(n.name.clone()) } else { None },
                "compiled": true,
                "compiled_path": n.path,
            })
        })
        .collect();
    serde_json::json!({
        "metadata": {
            "dbt_schema_version": "https://schemas.getdbt.com/dbt/run-results/v6.json",
            "generated_at": r.finished_at.to_rfc3339(),
            "invocation_id": r.run_id,
            "generator": format!("tidepool {}", env!("CARGO_PKG_VERSION")),
        },
        "results": results,
        "elapsed_time": (r.finished_at - r.started_at).num_microseconds().unwrap_or(0) as f64 / 1e6,
        "args": {"which": r.command, "select": r.selector},
    })
}

/// Files and bytes the newest commit of `schema.name` added.
pub async fn last_commit_files(lake: &Arc<Lake>, schema: &str, name: &str) -> Option<(u64, u64)> {
    let t = lake.table(schema, name).await.ok()??;
    let v = t.version()? as i64;
    let bytes = lake.log_entry(schema, name, v).await.ok()??;
    let (mut files, mut size) = (0u64, 0u64);
    for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let Ok(a) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        // A file re-added with a deletion vector is not a file written.
        if let Some(add) = a
            .get("add")
            .filter(|add| add.get("deletionVector").is_none_or(|d| d.is_null()))
        {
            files += 1;
            size += add.get("size").and_then(|s| s.as_u64()).unwrap_or(0);
        }
    }
    Some((files, size))
}

/// The record of a test result.
pub fn test_node(project: &Project, r: &TestResult) -> NodeRecord {
    let t = &project.tests[r.test];
    let status = match (&r.error, r.failures, t.severity) {
        (Some(_), _, _) => "error",
        (None, 0, _) => "pass",
        (None, _, Severity::Warn) => "warn",
        (None, _, Severity::Error) => "fail",
    };
    NodeRecord {
        kind: "test".into(),
        name: t.name.clone(),
        path: t.path.clone(),
        detail: match t.severity {
            Severity::Warn => "warn".into(),
            Severity::Error => "error".into(),
        },
        status: status.into(),
        rows: None,
        files: None,
        bytes: None,
        failures: Some(r.failures),
        seconds: r.duration.as_secs_f64(),
        message: r.error.as_ref().map(|e| e.to_string()),
    }
}

/// Records of a run's models (files and bytes from each built table's newest commit) and
/// tests.
/// A run's id: its start time and the process id.
pub fn run_id(started: DateTime<Utc>) -> String {
    format!(
        "{}-{}",
        started.format("%Y%m%dT%H%M%S%.3fZ"),
        std::process::id()
    )
}

pub async fn nodes(
    lake: &Arc<Lake>,
    project: &Project,
    results: &[ModelResult],
    tested: &[TestResult],
) -> Vec<NodeRecord> {
    let mut nodes = Vec::new();
    for r in results {
        let m = &project.models[r.index];
        let (status, message) = match &r.status {
            Status::Success => ("success", None),
            Status::Error(e) => ("error", Some(e.to_string())),
            Status::Skipped(why) => ("skipped", Some(why.clone())),
        };
        let stats = if r.status.is_success() && m.config.materialized != Materialized::View {
            last_commit_files(lake, &m.schema, &m.name).await
        } else {
            None
        };
        nodes.push(NodeRecord {
            kind: "model".into(),
            name: m.relation.clone(),
            path: m.file.path.clone(),
            detail: m.config.materialized.as_str().into(),
            status: status.into(),
            rows: r.rows,
            files: stats.map(|s| s.0),
            bytes: stats.map(|s| s.1),
            failures: None,
            seconds: r.duration.as_secs_f64(),
            message,
        });
    }
    nodes.extend(tested.iter().map(|t| test_node(project, t)));
    nodes
}
