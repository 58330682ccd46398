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
/// `ORDER BY` (under projections, filters and aliases, which keep the order); `plan`
/// itself otherwise.
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
        // INSERT checks CHECK constraints with a filter over its input.
        LogicalPlan::Filter(f) => ends_in_sort(&f.input),
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
