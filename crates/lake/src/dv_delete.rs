//! `DELETE ... WHERE` by deletion vector, on tables that have the feature (`ALTER TABLE
//! ... SET ('delta.enableDeletionVectors' = true)`, keyed models): files whose statistics
//! rule the predicate out are skipped; of the others only the columns the predicate names
//! are read, and the rows it holds for are marked deleted in one commit. No data file is
//! rewritten, so the cost follows the predicate's columns of the candidate files, not the
//! table. Tables without the feature, partitioned tables, tables with column mapping and
//! a DELETE without WHERE go through delta-rs (which rewrites files, or drops them whole).

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, new_null_array};
use arrow::datatypes::SchemaRef;
use datafusion::common::DFSchema;
use datafusion::execution::SessionState;
use datafusion::logical_expr::Expr;
#[allow(deprecated)] // range reads from the object store, as in upsert.rs
use datafusion::parquet::arrow::async_reader::ParquetObjectReader;
use datafusion::parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use datafusion::physical_optimizer::pruning::{PruningPredicateBuilder, PruningStatistics};
use deltalake::DeltaTable;
use deltalake::kernel::LogicalFileView;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::protocol::DeltaOperation;
use futures::{StreamExt, TryStreamExt};
use roaring::RoaringTreemap;

use crate::LakeError;

/// Rows per batch read.
const READ_BATCH: usize = 64 * 1024;

/// Deletes the rows of `table` that `predicate` (over its columns, unqualified) holds
/// for and returns how many, with the table after the commit (`None` when none was
/// needed); `None` when the table is not one this handles (nothing written).
pub(crate) async fn delete(
    table: &DeltaTable,
    predicate: &Expr,
    state: &SessionState,
) -> Result<Option<(u64, Option<DeltaTable>)>, LakeError> {
    if !crate::vectors::usable(table)? {
        return Ok(None);
    }
    let snapshot = table.snapshot()?;
    let full: SchemaRef = snapshot.snapshot().arrow_schema();
    // Only the predicate's columns are read: it is planned over them alone.
    let names: BTreeSet<String> = predicate
        .column_refs()
        .into_iter()
        .map(|c| c.name.clone())
        .collect();
    let indices: Vec<usize> = (0..full.fields().len())
        .filter(|&i| names.contains(full.field(i).name()))
        .collect();
    let schema: SchemaRef = Arc::new(full.project(&indices)?);
    let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
    // A predicate typed for another form of the columns (views of strings) is left to
    // delta-rs, which plans it against its own scan.
    let Ok(physical) = state.create_physical_expr(predicate.clone(), &df_schema) else {
        return Ok(None);
    };
    let files = snapshot.log_data().num_containers();
    let candidates = match PruningPredicateBuilder::new()
        .with_file_schema(schema.clone())
        .build(physical.clone())
    {
        Some(p) => p.prune(&snapshot.log_data())?,
        None => vec![true; files],
    };
    let views: Vec<LogicalFileView> = snapshot.log_data().iter().collect();
    let store = table.object_store();
    // Candidate files are read side by side, one task each (decoding is CPU work; the
    // vectors they already have are fetched in the same tasks, not one after another).
    let mut scans = Vec::new();
    for (i, (view, candidate)) in views.iter().zip(candidates).enumerate() {
        if !candidate {
            continue;
        }
        scans.push(FileScan {
            index: i,
            root: table.table_url().to_string(),
            store: store.clone(),
            path: view.object_store_path(),
            size: view.size() as u64,
            deleted: view.deletion_vector_descriptor(),
            schema: schema.clone(),
            predicate: physical.clone(),
        });
    }
    let parallel = std::thread::available_parallelism().map_or(2, |n| n.get());
    let found: Vec<(usize, RoaringTreemap, u64)> = futures::stream::iter(scans)
        .map(|scan| tokio::spawn(scan.run()))
        .buffered(parallel)
        .map(|joined| joined.map_err(|e| LakeError::Commit(format!("deletion scan: {e}")))?)
        .try_filter_map(|found| std::future::ready(Ok(found)))
        .try_collect()
        .await?;
    let rows: u64 = found.iter().map(|(_, _, hits)| hits).sum();
    let marked: Vec<(&LogicalFileView, RoaringTreemap)> = found
        .into_iter()
        .map(|(i, dv, _)| (&views[i], dv))
        .collect();
    if marked.is_empty() {
        return Ok(Some((0, None)));
    }
    let actions = crate::vectors::marked_actions(table, &marked).await?;
    let operation = DeltaOperation::Delete {
        predicate: Some(predicate.to_string()),
    };
    let committed = CommitBuilder::from(crate::txn::commit_properties(CommitProperties::default()))
        .with_actions(actions)
        .build(Some(snapshot), table.log_store(), operation)
        .await?;
    let mut written = DeltaTable::new(table.log_store());
    written.state = Some(committed.snapshot());
    Ok(Some((rows, Some(written))))
}

/// One candidate file to search for the rows the predicate holds for.
struct FileScan {
    /// Its place in the snapshot's file list.
    index: usize,
    /// The table's root URL (deletion vectors may be kept by absolute path).
    root: String,
    store: Arc<dyn object_store::ObjectStore>,
    path: object_store::path::Path,
    size: u64,
    /// Where its current deletion vector (rows already deleted) is kept.
    deleted: Option<deltalake::kernel::DeletionVectorDescriptor>,
    /// The predicate's columns, as the table has them.
    schema: SchemaRef,
    predicate: Arc<dyn datafusion::physical_expr::PhysicalExpr>,
}

impl FileScan {
    /// The file's new deletion vector and how many rows it adds; `None` when no live row
    /// matches.
    async fn run(self) -> Result<Option<(usize, RoaringTreemap, u64)>, LakeError> {
        let schema = &self.schema;
        let deleted = match &self.deleted {
            Some(d) => Some(crate::vectors::read(self.store.as_ref(), &self.root, d).await?),
            None => None,
        };
        #[allow(deprecated)]
        let reader = ParquetObjectReader::new(self.store.clone(), self.path.clone())
            .with_file_size(self.size);
        let builder = ParquetRecordBatchStreamBuilder::new(reader).await?;
        // The predicate's columns as the file has them (a column added later is absent:
        // NULL in every row).
        let in_file: Vec<(usize, usize)> = (0..schema.fields().len())
            .filter_map(|i| {
                builder
                    .schema()
                    .index_of(schema.field(i).name())
                    .ok()
                    .map(|f| (i, f))
            })
            .collect();
        let mask = ProjectionMask::roots(
            builder.parquet_schema(),
            in_file.iter().map(|&(_, f)| f).collect::<Vec<_>>(),
        );
        let mut stream = builder
            .with_projection(mask)
            .with_batch_size(READ_BATCH)
            .build()?;
        let mut hits = RoaringTreemap::new();
        let mut base = 0u64;
        while let Some(b) = stream.try_next().await? {
            let n = b.num_rows();
            let columns: Vec<ArrayRef> = schema
                .fields()
                .iter()
                .enumerate()
                .map(|(i, f)| match in_file.iter().position(|&(s, _)| s == i) {
                    Some(p) => {
                        let c = b.column(p);
                        if c.data_type() == f.data_type() {
                            Ok(c.clone())
                        } else {
                            arrow::compute::cast(c, f.data_type())
                        }
                    }
                    None => Ok(new_null_array(f.data_type(), n)),
                })
                .collect::<Result<_, _>>()?;
            let full = RecordBatch::try_new(schema.clone(), columns)?;
            let result = self.predicate.evaluate(&full)?.into_array(n)?;
            // NULL is not true: only set, valid bits count.
            let holds = result.as_boolean();
            let holds = match holds.nulls() {
                Some(valid) => holds.values() & valid.inner(),
                None => holds.values().clone(),
            };
            let positions = holds
                .set_indices()
                .map(|r| base + r as u64)
                .filter(|p| deleted.as_ref().is_none_or(|d| !d.contains(*p)));
            hits.append(positions)
                .map_err(|e| LakeError::Commit(format!("deletion vector: {e}")))?;
            base += n as u64;
        }
        if hits.is_empty() {
            return Ok(None);
        }
        let added = hits.len();
        let mut dv = deleted.unwrap_or_default();
        dv |= hits;
        Ok(Some((self.index, dv, added)))
    }
}
