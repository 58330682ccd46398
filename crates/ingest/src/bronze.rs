//! Reads over a source's bronze tables (rows, then dead letters) that the control plane
//! needs for a replay: how many rows a replayed range holds, and where each partition's
//! messages from a point in time start. Bronze's `_topic`, `_partition`, `_offset` and
//! `_timestamp` columns are this crate's to know; the queries run on a private DataFusion
//! context over the Delta tables, not through the SQL engine.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, Int32Array, Int64Array, StringArray};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use datafusion::prelude::SessionContext;
use tidepool_lake::Lake;

use super::replay::{ReplayedPartition, rows_filter};
use super::{BRONZE, IngestError, dead_letter_table};

fn query_error(e: datafusion::error::DataFusionError) -> IngestError {
    IngestError::Query(Box::new(e))
}

/// Runs `sql` (over table `t`) on each bronze table of `source` that exists.
async fn each_table(
    lake: &Arc<Lake>,
    source: &str,
    sql: &str,
) -> Result<Vec<RecordBatch>, IngestError> {
    let mut out = Vec::new();
    for name in [source.to_string(), dead_letter_table(source)] {
        let Some(table) = lake.table(BRONZE, &name).await? else {
            continue;
        };
        let ctx = SessionContext::new();
        let provider = table.table_provider().await.map_err(query_error)?;
        ctx.register_table("t", provider).map_err(query_error)?;
        let batches = ctx
            .sql(sql)
            .await
            .map_err(query_error)?
            .collect()
            .await
            .map_err(query_error)?;
        out.extend(batches);
    }
    Ok(out)
}

/// Rows and dead letters of `source` inside the replayed ranges of `plan`.
pub async fn rows_in(
    lake: &Arc<Lake>,
    source: &str,
    plan: &[ReplayedPartition],
) -> Result<u64, IngestError> {
    if plan.is_empty() {
        return Ok(0);
    }
    let sql = format!("SELECT count(*) FROM t WHERE {}", rows_filter(plan, true));
    let mut total = 0u64;
    for b in each_table(lake, source, &sql).await? {
        if let Some(a) = b.column(0).as_any().downcast_ref::<Int64Array>() {
            total += a.iter().flatten().map(|v| v.max(0) as u64).sum::<u64>();
        }
    }
    Ok(total)
}

/// Per partition, the first offset the lake holds (rows or dead letters) with a Kafka
/// timestamp at or after `since`.
pub async fn offsets_since(
    lake: &Arc<Lake>,
    source: &str,
    since: chrono::DateTime<chrono::Utc>,
) -> Result<BTreeMap<(String, i32), i64>, IngestError> {
    let sql = format!(
        "SELECT \"_topic\", \"_partition\", min(\"_offset\") FROM t \
         WHERE CAST(\"_timestamp\" AS BIGINT) >= {} GROUP BY 1, 2",
        since.timestamp_micros()
    );
    let mut out: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for b in each_table(lake, source, &sql).await? {
        // Strings may come back as views or dictionaries.
        let topics = cast(b.column(0), &DataType::Utf8)?;
        let (Some(t), Some(p), Some(o)) = (
            topics.as_any().downcast_ref::<StringArray>(),
            b.column(1).as_any().downcast_ref::<Int32Array>(),
            b.column(2).as_any().downcast_ref::<Int64Array>(),
        ) else {
            return Err(IngestError::NoTable(format!(
                "{BRONZE}.{source} with Kafka columns (_topic text, _partition int, _offset bigint)"
            )));
        };
        for i in 0..b.num_rows() {
            if t.is_null(i) || p.is_null(i) || o.is_null(i) {
                continue;
            }
            let key = (t.value(i).to_string(), p.value(i));
            let o = o.value(i);
            out.entry(key).and_modify(|v| *v = (*v).min(o)).or_insert(o);
        }
    }
    Ok(out)
}
