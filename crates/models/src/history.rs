//! Run records read back from `system.runs` and `system.run_models` as typed values (the
//! admin API's ListRuns, GetRun and ListModels), so no caller parses them out of text.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    Array, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimeUnit};
use chrono::{DateTime, Utc};
use tidepool_engine::{Engine, EngineError};

use crate::ModelsError;
use crate::records::{NodeRecord, RunSummary};

/// The newest result of one model, with the run it came from.
#[derive(Debug, Clone)]
pub struct LastResult {
    pub run_id: String,
    pub run_finished_at: DateTime<Utc>,
    pub node: NodeRecord,
}

/// The `limit` most recent runs, newest first.
pub async fn recent(engine: &Arc<Engine>, limit: usize) -> Result<Vec<RunSummary>, ModelsError> {
    let batches = engine
        .query(&format!(
            "SELECT * FROM system.runs ORDER BY started_at DESC LIMIT {limit}"
        ))
        .await?;
    summaries(&batches)
}

/// Run `run_id` with its models and tests, if it was recorded.
pub async fn find(
    engine: &Arc<Engine>,
    run_id: &str,
) -> Result<Option<(RunSummary, Vec<NodeRecord>)>, ModelsError> {
    let id = literal(run_id);
    let runs = engine
        .query(&format!("SELECT * FROM system.runs WHERE run_id = {id}"))
        .await?;
    let Some(summary) = summaries(&runs)?.into_iter().next() else {
        return Ok(None);
    };
    let nodes = engine
        .query(&format!(
            "SELECT * FROM system.run_models WHERE run_id = {id}"
        ))
        .await?;
    let nodes = nodes
        .iter()
        .map(node_rows)
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
        .map(|(_, n)| n)
        .collect();
    Ok(Some((summary, nodes)))
}

/// The newest recorded result of each model, by relation.
pub async fn last_model_results(
    engine: &Arc<Engine>,
) -> Result<BTreeMap<String, LastResult>, ModelsError> {
    let batches = engine
        .query(
            "SELECT m.*, r.finished_at AS run_finished_at FROM system.run_models m \
             JOIN system.runs r USING (run_id) WHERE m.kind = 'model' ORDER BY r.started_at",
        )
        .await?;
    let mut out = BTreeMap::new();
    for b in &batches {
        let finished = times(b, "run_finished_at")?;
        for (row, (run_id, node)) in node_rows(b)?.into_iter().enumerate() {
            let last = LastResult {
                run_id,
                run_finished_at: finished[row].unwrap_or_default(),
                node,
            };
            out.insert(last.node.name.clone(), last);
        }
    }
    Ok(out)
}

/// A quoted SQL string literal.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Column `name` of `b`, cast to `A`'s type `to`, as its values.
fn values<A, T>(
    b: &RecordBatch,
    name: &str,
    to: &DataType,
    read: impl Fn(&A) -> Vec<Option<T>>,
) -> Result<Vec<Option<T>>, ModelsError>
where
    A: Array + 'static,
{
    let bad =
        || EngineError::InvalidArgument(format!("the run records' column {name} is unreadable"));
    let c = cast(b.column_by_name(name).ok_or_else(bad)?, to)?;
    let a = c.as_any().downcast_ref::<A>().ok_or_else(bad)?;
    Ok(read(a))
}

fn texts(b: &RecordBatch, name: &str) -> Result<Vec<Option<String>>, ModelsError> {
    values(b, name, &DataType::Utf8, |a: &StringArray| {
        a.iter().map(|v| v.map(str::to_string)).collect()
    })
}

fn ints(b: &RecordBatch, name: &str) -> Result<Vec<Option<i64>>, ModelsError> {
    values(b, name, &DataType::Int64, |a: &Int64Array| {
        a.iter().collect()
    })
}

fn floats(b: &RecordBatch, name: &str) -> Result<Vec<Option<f64>>, ModelsError> {
    values(b, name, &DataType::Float64, |a: &Float64Array| {
        a.iter().collect()
    })
}

fn times(b: &RecordBatch, name: &str) -> Result<Vec<Option<DateTime<Utc>>>, ModelsError> {
    let micros = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    values(b, name, &micros, |a: &TimestampMicrosecondArray| {
        a.iter()
            .map(|v| v.and_then(DateTime::from_timestamp_micros))
            .collect()
    })
}

fn summaries(batches: &[RecordBatch]) -> Result<Vec<RunSummary>, ModelsError> {
    let mut out = Vec::new();
    for b in batches {
        let (ids, commands, selectors, statuses) = (
            texts(b, "run_id")?,
            texts(b, "command")?,
            texts(b, "selector")?,
            texts(b, "status")?,
        );
        let (started, finished) = (times(b, "started_at")?, times(b, "finished_at")?);
        let duration = floats(b, "duration_s")?;
        let (models, tests, errors, skipped) = (
            ints(b, "models")?,
            ints(b, "tests")?,
            ints(b, "errors")?,
            ints(b, "skipped")?,
        );
        for i in 0..b.num_rows() {
            out.push(RunSummary {
                run_id: ids[i].clone().unwrap_or_default(),
                command: commands[i].clone().unwrap_or_default(),
                selector: selectors[i].clone().unwrap_or_default(),
                status: statuses[i].clone().unwrap_or_default(),
                started_at: started[i].unwrap_or_default(),
                finished_at: finished[i].unwrap_or_default(),
                duration_s: duration[i].unwrap_or_default(),
                models: models[i].unwrap_or_default(),
                tests: tests[i].unwrap_or_default(),
                errors: errors[i].unwrap_or_default(),
                skipped: skipped[i].unwrap_or_default(),
            });
        }
    }
    Ok(out)
}

/// The rows of a `system.run_models` batch: run id and node.
fn node_rows(b: &RecordBatch) -> Result<Vec<(String, NodeRecord)>, ModelsError> {
    let (ids, kinds, names, paths, details, statuses, errors) = (
        texts(b, "run_id")?,
        texts(b, "kind")?,
        texts(b, "name")?,
        texts(b, "path")?,
        texts(b, "materialized")?,
        texts(b, "status")?,
        texts(b, "error")?,
    );
    let (rows, files, bytes, failures) = (
        ints(b, "rows_written")?,
        ints(b, "files")?,
        ints(b, "bytes")?,
        ints(b, "failures")?,
    );
    let seconds = floats(b, "duration_s")?;
    let count = |v: Option<i64>| v.map(|n| n.max(0) as u64);
    Ok((0..b.num_rows())
        .map(|i| {
            let node = NodeRecord {
                kind: kinds[i].clone().unwrap_or_default(),
                name: names[i].clone().unwrap_or_default(),
                path: paths[i].clone().unwrap_or_default(),
                detail: details[i].clone().unwrap_or_default(),
                status: statuses[i].clone().unwrap_or_default(),
                rows: count(rows[i]),
                files: count(files[i]),
                bytes: count(bytes[i]),
                failures: count(failures[i]),
                seconds: seconds[i].unwrap_or_default(),
                message: errors[i].clone(),
            };
            (ids[i].clone().unwrap_or_default(), node)
        })
        .collect())
}
