//! Copy-on-write removal of rows: each file with rows to drop is read whole, written again
//! without them, and swapped for its new version in the caller's commit. What keyed
//! upserts do on tables without deletion vectors, so that every Delta reader (the
//! `deletionVectors` reader feature is refused by the `deltalake` package's pyarrow path
//! and by older engines) reads the table. Costs a rewrite of the files that hold replaced
//! rows, which the upsert's key pruning keeps to the few whose key range the new rows hit.

use arrow::array::BooleanArray;
use arrow::compute;
use arrow::datatypes::SchemaRef;
use datafusion::parquet::arrow::ParquetRecordBatchStreamBuilder;
#[allow(deprecated)] // range reads from the object store, as the upsert's key scan
use datafusion::parquet::arrow::async_reader::ParquetObjectReader;
use deltalake::DeltaTable;
use deltalake::kernel::{Action, LogicalFileView};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use futures::TryStreamExt;
use roaring::RoaringTreemap;

use crate::LakeError;

/// Rows read per batch while a file is copied.
const COPY_BATCH: usize = 64 * 1024;

/// The actions that replace each file of `dropped` by a copy without the rows at the
/// positions given (a file left with no rows is only removed); the copies are written
/// with `writer`'s table, layout and `schema` (the table's columns).
pub(crate) async fn without_rows(
    table: &DeltaTable,
    schema: &SchemaRef,
    dropped: &[(&LogicalFileView, RoaringTreemap)],
    mut writer: RecordBatchWriter,
) -> Result<Vec<Action>, LakeError> {
    let mut actions = Vec::with_capacity(dropped.len() * 2);
    if dropped.is_empty() {
        return Ok(actions);
    }
    let store = table.object_store();
    for (view, rows) in dropped {
        actions.push(Action::Remove(view.remove_action(true)));
        #[allow(deprecated)]
        let reader = ParquetObjectReader::new(store.clone(), view.object_store_path())
            .with_file_size(view.size() as u64);
        let mut stream = ParquetRecordBatchStreamBuilder::new(reader)
            .await?
            .with_batch_size(COPY_BATCH)
            .build()?;
        let mut position = 0u64;
        while let Some(batch) = stream.try_next().await? {
            let n = batch.num_rows() as u64;
            let keep: BooleanArray = (position..position + n)
                .map(|p| Some(!rows.contains(p)))
                .collect();
            position += n;
            let kept = compute::filter_record_batch(&batch, &keep)?;
            if kept.num_rows() > 0 {
                writer
                    .write(crate::batches::conform(&[kept], schema)?)
                    .await?;
            }
        }
    }
    let adds = writer.flush().await?;
    actions.extend(adds.into_iter().map(Action::Add));
    Ok(actions)
}
