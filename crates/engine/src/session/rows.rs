//! Rows held in memory as a relation: what a statement computed once and then writes
//! (RETURNING's rows, a MERGE's new rows).

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::MemTable;
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};

use crate::EngineError;

/// `rows` as a plan (of `schema`).
pub(super) fn scan_of(
    schema: SchemaRef,
    rows: Vec<RecordBatch>,
) -> Result<LogicalPlan, EngineError> {
    scan_named("returning_rows", schema, rows)
}

/// `rows` as a plan of a relation called `name`.
pub(super) fn scan_named(
    name: &str,
    schema: SchemaRef,
    rows: Vec<RecordBatch>,
) -> Result<LogicalPlan, EngineError> {
    let table = MemTable::try_new(schema, vec![rows])?;
    Ok(LogicalPlanBuilder::scan(
        name,
        datafusion::datasource::provider_as_source(Arc::new(table)),
        None,
    )?
    .build()?)
}
