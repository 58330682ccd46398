//! Writes that keep their `ORDER BY`. delta-rs plans a write's input under its own
//! metrics node, which does not declare that it keeps its input's order, so DataFusion's
//! sort enforcement finds the plan's top-level sort required by nobody and removes it:
//! `CREATE TABLE t AS SELECT ... ORDER BY d` (and a model's `cluster_by`) wrote its rows
//! in scan order, and the files' min/max statistics could not skip anything. A plan that
//! ends in a sort is planned here instead, and handed to delta-rs as a one-partition
//! stream it cannot reorder: the rows reach the Parquet writer sorted, row group after
//! row group.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::datasource::provider_as_source;
use datafusion::execution::{SendableRecordBatchStream, SessionState, TaskContext};
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};

use crate::LakeError;

/// `plan` as a scan of its already planned, sorted output when it ends in an unlimited
/// `ORDER BY` (under projections and aliases, which keep the order); `plan` itself
/// otherwise.
pub async fn keep_order(plan: LogicalPlan, state: &SessionState) -> Result<LogicalPlan, LakeError> {
    if !ends_in_sort(&plan) {
        return Ok(plan);
    }
    let mut physical = state.create_physical_plan(&plan).await?;
    if physical.output_partitioning().partition_count() != 1 {
        let Some(ordering) = physical.output_ordering().cloned() else {
            // Planned without an order after all: nothing to keep.
            return Ok(plan);
        };
        physical = Arc::new(SortPreservingMergeExec::new(ordering, physical));
    }
    let schema = physical.schema();
    let table =
        StreamingTable::try_new(schema.clone(), vec![Arc::new(Planned { schema, physical })])?;
    Ok(LogicalPlanBuilder::scan("ordered", provider_as_source(Arc::new(table)), None)?.build()?)
}

fn ends_in_sort(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Sort(sort) => sort.fetch.is_none(),
        LogicalPlan::Projection(p) => ends_in_sort(&p.input),
        LogicalPlan::SubqueryAlias(a) => ends_in_sort(&a.input),
        _ => false,
    }
}

/// One planned partition, executed when the write pulls it.
#[derive(Debug)]
struct Planned {
    schema: SchemaRef,
    physical: Arc<dyn ExecutionPlan>,
}

impl PartitionStream for Planned {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        match self.physical.execute(0, ctx) {
            Ok(stream) => stream,
            Err(e) => Box::pin(RecordBatchStreamAdapter::new(
                self.schema.clone(),
                futures::stream::once(async move { Err(e) }),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
    use datafusion::parquet::file::statistics::Statistics;
    use datafusion::prelude::SessionContext;

    use crate::writer::{Layout, WriteMode, WriteOptions};

    use super::*;

    /// The (min, max) of column 0 in every row group of every file of `dir`.
    fn row_group_ranges(dir: &std::path::Path) -> Vec<(i64, i64)> {
        let mut ranges = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "parquet") {
                let reader =
                    SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
                for g in reader.metadata().row_groups() {
                    match g.column(0).statistics() {
                        Some(Statistics::Int64(s)) => {
                            ranges.push((*s.min_opt().unwrap(), *s.max_opt().unwrap()))
                        }
                        other => panic!("{other:?}"),
                    }
                }
            }
        }
        ranges.sort();
        ranges
    }

    async fn write(sql: &str) -> Vec<(i64, i64)> {
        let dir = tempfile::tempdir().unwrap();
        let lake = crate::test_lake(dir.path());
        let ctx = SessionContext::new_with_state(
            datafusion::execution::SessionStateBuilder::new()
                .with_default_features()
                .with_query_planner(deltalake::delta_datafusion::planner::DeltaPlanner::new())
                .build(),
        );
        let plan = ctx.sql(sql).await.unwrap().into_unoptimized_plan();
        let options = WriteOptions {
            layout: Layout {
                row_group_rows: Some(1000),
                ..Default::default()
            },
            ..Default::default()
        };
        lake.write_plan_with(
            "s",
            "t",
            plan,
            Arc::new(ctx.state()),
            WriteMode::Create,
            &options,
        )
        .await
        .unwrap();
        row_group_ranges(&dir.path().join("s/t"))
    }

    /// Rows written with `ORDER BY` land sorted: no two row groups' ranges overlap. The
    /// same rows without it overlap (the input is shuffled), so the check can fail.
    #[tokio::test]
    async fn order_by_reaches_the_files() {
        let shuffled = "SELECT (value * 7919) % 20011 AS k, value AS v \
                        FROM generate_series(1, 20011)";
        let sorted = write(&format!("SELECT k, v FROM ({shuffled}) ORDER BY k")).await;
        assert_eq!(sorted.len(), 21, "{sorted:?}");
        assert!(
            sorted.windows(2).all(|w| w[0].1 < w[1].0),
            "overlapping row groups: {sorted:?}"
        );
        let unsorted = write(shuffled).await;
        assert!(
            unsorted.windows(2).any(|w| w[0].1 >= w[1].0),
            "{unsorted:?}"
        );
    }
}
