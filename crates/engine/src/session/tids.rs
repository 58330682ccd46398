//! `DELETE` and `UPDATE` that name `ctid` (DuckDB's postgres extension deletes with
//! `DELETE FROM t WHERE ctid IN ('(0,1)', ...)`): the statement's target reads as
//! `t#ctid` ([`crate::ctid`]), so its own plan yields the tids of the rows it acts on
//! (and, for an UPDATE, their new versions). The rows are deleted by tid
//! ([`tidepool_lake::Lake::delete_tids`]) and an UPDATE's new versions appended through
//! the INSERT path (constraints checked), in one transaction (the session's block or one
//! of its own). `UPDATE ... FROM` with `t.ctid = ...` runs as a keyed MERGE
//! (`merge_vectors`) that deletes by tid the same way.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::common::{ScalarValue, TableReference};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{DmlStatement, WriteOp};
use datafusion::prelude::DataFrame;
use tidepool_lake::tids::Tid;

use super::Session;
use super::output::CommandTag;
use crate::EngineError;
use crate::ctid;
use crate::lanes::{Lane, Slot};

impl Session {
    /// DELETE or UPDATE of `schema.table` read as `table#ctid`.
    pub(super) async fn dml_by_tids(
        &self,
        dml: DmlStatement,
        schema: String,
        table: String,
        slot: Slot,
    ) -> Result<CommandTag, EngineError> {
        let update = matches!(dml.op, WriteOp::Update);
        let permit = slot.claim(self.engine.lanes(), Lane::Heavy).await?;
        let work = async {
            let input = DataFrame::new(self.ctx.state(), (*dml.input).clone());
            let input = if update {
                input
            } else {
                input.select_columns(&[ctid::COLUMN])?
            };
            let rows = input.collect().await?;
            let at = dml
                .input
                .schema()
                .fields()
                .iter()
                .position(|f| ctid::is_tid(f))
                .filter(|_| update)
                .unwrap_or(0);
            let tids = tids_of(&rows, at)?;
            let deleted = self
                .engine
                .lake()
                .delete_tids(&schema, &table, &tids)
                .await?;
            if !update {
                return Ok::<u64, EngineError>(deleted);
            }
            if deleted != tids.len() as u64 {
                return Err(EngineError::DataFusion(Box::new(
                    datafusion::error::DataFusionError::Execution(format!(
                        "UPDATE by ctid: {} rows read, {deleted} still there to replace",
                        tids.len()
                    )),
                )));
            }
            let new_rows: Vec<RecordBatch> = rows
                .iter()
                .map(|b| without_column(b, at))
                .collect::<Result<_, _>>()?;
            if deleted > 0 {
                let schema_ref = new_rows[0].schema();
                let insert = DmlStatement::new(
                    TableReference::partial(schema.as_str(), table.as_str()),
                    dml.target.clone(),
                    WriteOp::Insert(InsertOp::Append),
                    Arc::new(super::rows::scan_of(schema_ref, new_rows)?),
                );
                self.insert(insert, Slot::Held(permit.clone())).await?;
            }
            Ok(deleted)
        };
        let rows = self.atomically(Box::pin(work)).await?;
        Ok(CommandTag::with_rows(
            if update { "UPDATE" } else { "DELETE" },
            rows,
        ))
    }
}

/// The tids in column `at` of `rows`.
fn tids_of(rows: &[RecordBatch], at: usize) -> Result<Vec<Tid>, EngineError> {
    let mut out = Vec::new();
    for b in rows {
        let column = datafusion::arrow::compute::cast(
            b.column(at),
            &datafusion::arrow::datatypes::DataType::Utf8,
        )
        .map_err(|e| EngineError::DataFusion(Box::new(e.into())))?;
        let text = column.as_string::<i32>();
        for i in 0..text.len() {
            if text.is_valid(i) {
                out.push(parse(text.value(i))?);
            }
        }
    }
    Ok(out)
}

/// A tid's text, or 22P02.
pub(super) fn parse(text: &str) -> Result<Tid, EngineError> {
    Tid::parse(text).ok_or_else(|| {
        EngineError::InvalidText(format!("invalid input syntax for type tid: \"{text}\""))
    })
}

/// The tids of matched MERGE keys (`ctid` values).
pub(super) fn tids_of_keys(keys: &[ScalarValue]) -> Result<Vec<Tid>, EngineError> {
    keys.iter()
        .filter(|k| !k.is_null())
        .map(|k| parse(&k.to_string()))
        .collect()
}

/// `b` without its column `at`.
fn without_column(b: &RecordBatch, at: usize) -> Result<RecordBatch, EngineError> {
    let schema: SchemaRef = Arc::new(Schema::new(
        b.schema()
            .fields()
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != at)
            .map(|(_, f)| f.as_ref().clone())
            .collect::<Vec<_>>(),
    ));
    let columns = b
        .columns()
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != at)
        .map(|(_, c)| c.clone())
        .collect();
    RecordBatch::try_new(schema, columns).map_err(|e| EngineError::DataFusion(Box::new(e.into())))
}
