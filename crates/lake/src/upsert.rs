//! Key-pruned upserts: write a small set of new rows into a large Delta table keyed on
//! some columns, at a cost that follows the new rows, not the table.
//!
//! A Delta MERGE joins the whole target with the source and rewrites every file the
//! source's key range overlaps. Here per-file min/max statistics of the first key column
//! rule out most files; only the key columns of the remaining ones are read, to find the
//! rows whose key the new rows carry. On a table with the `deletionVectors` feature those
//! rows are marked deleted with a deletion vector (the file itself is not rewritten);
//! without it, the few files holding them are copied without them ([`crate::rewrite`]).
//! The new rows, sorted by key, go into new files. Deletion vectors or copies, removes,
//! adds and the caller's application transactions land in one Delta commit: readers see
//! the table before or after, never in between.
//!
//! Tables this does not handle (partitioned, column mapping, a source with repeated keys
//! under `merge`) are left to the caller's Delta MERGE: [`upsert`] returns `None` for them
//! before writing anything.

use std::collections::{HashMap, HashSet};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray, new_null_array};
use arrow::compute::{self, SortColumn};
use arrow::datatypes::{DataType, Int64Type, SchemaRef};
use arrow::row::{RowConverter, SortField};
use datafusion::parquet::arrow::arrow_reader::statistics::StatisticsConverter;
#[allow(deprecated)] // range reads from the object store; see below
use datafusion::parquet::arrow::async_reader::ParquetObjectReader;
use datafusion::parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use deltalake::DeltaTable;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, LogicalFileView};
use deltalake::protocol::DeltaOperation;
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use futures::TryStreamExt;
use roaring::RoaringTreemap;

use super::LakeError;

/// What happens to target rows whose key the new rows carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpsertMode {
    /// Each such row is replaced by the new row with its key (the new rows' keys must be
    /// distinct).
    Merge,
    /// Every such row is deleted and all new rows inserted.
    DeleteInsert,
}

/// What an upsert did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UpsertOutcome {
    /// Rows written from the source.
    pub rows: u64,
    /// Target rows replaced or deleted.
    pub replaced: u64,
    /// Files whose keys were read, files that got a deletion vector, files added.
    pub files_scanned: usize,
    pub files_marked: usize,
    /// Files copied without their replaced rows (tables without deletion vectors).
    pub files_rewritten: usize,
    pub files_added: usize,
}

/// The keys of the new rows, in the forms the matching uses.
struct Keys {
    /// Row-format keys of non-NULL rows, for any key types.
    rows: HashSet<Vec<u8>>,
    /// One integer key: the values, and the sorted values for a per-file range test.
    ints: Option<(HashSet<i64>, Vec<i64>)>,
    converter: RowConverter,
    idx: Vec<usize>,
}

impl Keys {
    /// Positions of `batch`'s rows (key columns named as in `schema`) that carry a key.
    fn matches(
        &self,
        schema: &SchemaRef,
        batch: &RecordBatch,
        base: u64,
        (lo, hi): (i64, i64),
        out: &mut Vec<u64>,
    ) -> Result<(), LakeError> {
        let cols: Vec<ArrayRef> = self
            .idx
            .iter()
            .map(|&i| {
                let f = schema.field(i);
                match batch.column_by_name(f.name()) {
                    Some(c) => crate::batches::cast_to(c, f.data_type()),
                    None => Ok(new_null_array(f.data_type(), batch.num_rows())),
                }
            })
            .collect::<Result<_, _>>()?;
        if let Some((set, _)) = &self.ints {
            let c = compute::cast(&cols[0], &DataType::Int64)?;
            let c = c.as_primitive::<Int64Type>();
            for (r, &v) in c.values().iter().enumerate() {
                if v >= lo && v <= hi && c.is_valid(r) && set.contains(&v) {
                    out.push(base + r as u64);
                }
            }
            return Ok(());
        }
        let rows = self.converter.convert_columns(&cols)?;
        for (r, row) in rows.iter().enumerate() {
            if cols.iter().all(|c| c.is_valid(r)) && self.rows.contains(row.data()) {
                out.push(base + r as u64);
            }
        }
        Ok(())
    }
}

/// Writes `source` (already in the table's columns) into `table` keyed on `keys`, in one
/// commit carrying `commit`. `None`: the table or source is one this path leaves to a
/// Delta MERGE; nothing was written.
pub async fn upsert(
    table: &DeltaTable,
    source: Vec<RecordBatch>,
    keys: &[String],
    mode: UpsertMode,
    commit: CommitProperties,
    layout: &super::Layout,
) -> Result<Option<UpsertOutcome>, LakeError> {
    let started = std::time::Instant::now();
    let state = table.snapshot()?;
    let metadata = state.metadata();
    if !crate::vectors::as_written(table)? || keys.is_empty() {
        return Ok(None);
    }
    let schema: SchemaRef = state.snapshot().arrow_schema();
    let source = crate::batches::conform(&source, &schema)?;
    let Some(key_idx) = keys
        .iter()
        .map(|k| schema.index_of(k).ok())
        .collect::<Option<Vec<usize>>>()
    else {
        return Ok(None);
    };
    let converter = RowConverter::new(
        key_idx
            .iter()
            .map(|&i| SortField::new(schema.field(i).data_type().clone()))
            .collect(),
    )?;
    let cols: Vec<ArrayRef> = key_idx.iter().map(|&i| source.column(i).clone()).collect();
    let source_rows = converter.convert_columns(&cols)?;
    let mut rows = HashSet::with_capacity(source.num_rows());
    for (r, row) in source_rows.iter().enumerate() {
        // A NULL key never equals anything: such rows are inserted, never matched.
        let valid = cols.iter().all(|c| c.is_valid(r));
        if valid && !rows.insert(row.data().to_vec()) && mode == UpsertMode::Merge {
            return Ok(None);
        }
    }
    let first_type = schema.field(key_idx[0]).data_type().clone();
    let ints = (key_idx.len() == 1 && first_type.is_integer())
        .then(|| -> Result<_, LakeError> {
            let c = compute::cast(&cols[0], &DataType::Int64)?;
            let c = c.as_primitive::<Int64Type>();
            let set: HashSet<i64> = c.iter().flatten().collect();
            let mut sorted: Vec<i64> = set.iter().copied().collect();
            sorted.sort_unstable();
            Ok((set, sorted))
        })
        .transpose()?;
    let keys = Keys {
        rows,
        ints,
        converter,
        idx: key_idx.clone(),
    };

    // Files whose first-key range holds one of the new keys.
    let ranges = file_ranges(state, &schema, key_idx[0])?;
    let first = RowConverter::new(vec![SortField::new(first_type)])?;
    let source_first = first.convert_columns(&[cols[0].clone()])?;
    let mut sorted_first: Vec<&[u8]> = (0..source.num_rows())
        .filter(|&r| cols[0].is_valid(r))
        .map(|r| source_first.row(r).data())
        .collect();
    sorted_first.sort_unstable();
    let in_range = |path: &str| -> Result<bool, LakeError> {
        let Some((min, max)) = ranges.get(path) else {
            return Ok(!sorted_first.is_empty());
        };
        let min = first.convert_columns(std::slice::from_ref(min))?;
        let max = first.convert_columns(std::slice::from_ref(max))?;
        let (min, max) = (min.row(0), max.row(0));
        let p = sorted_first.partition_point(|s| *s < min.data());
        Ok(p < sorted_first.len() && sorted_first[p] <= max.data())
    };

    let store = table.object_store();
    let mut outcome = UpsertOutcome {
        rows: source.num_rows() as u64,
        ..Default::default()
    };
    let views: Vec<LogicalFileView> = state.log_data().iter().collect();
    // Per file with rows to delete: the file and its whole deletion vector.
    let mut marked: Vec<(&LogicalFileView, RoaringTreemap)> = Vec::new();
    for view in &views {
        if !in_range(&view.path())? {
            continue;
        }
        outcome.files_scanned += 1;
        let deleted = match view.deletion_vector_descriptor() {
            Some(d) => Some(
                crate::vectors::read(
                    table.object_store().as_ref(),
                    table.table_url().as_str(),
                    &d,
                )
                .await?,
            ),
            None => None,
        };
        // The new integer keys inside this file's range bound the rows worth a lookup.
        let bounds = match (&keys.ints, ranges.get(view.path().as_ref())) {
            (Some((_, sorted)), Some((min, max))) => match (as_i64(min)?, as_i64(max)?) {
                (Some(min), Some(max)) => {
                    let from = sorted.partition_point(|v| *v < min);
                    let to = sorted.partition_point(|v| *v <= max);
                    if from >= to {
                        continue;
                    }
                    (sorted[from], sorted[to - 1])
                }
                _ => (i64::MIN, i64::MAX),
            },
            _ => (i64::MIN, i64::MAX),
        };
        // Only the key columns of the row groups whose statistics admit those keys are
        // fetched and decoded.
        #[allow(deprecated)] // the object-store reader: range reads, footer first
        let reader = ParquetObjectReader::new(store.clone(), view.object_store_path())
            .with_file_size(view.size() as u64);
        let builder = ParquetRecordBatchStreamBuilder::new(reader).await?;
        let roots: Vec<usize> = key_idx
            .iter()
            .filter_map(|&i| builder.schema().index_of(schema.field(i).name()).ok())
            .collect();
        if roots.len() != key_idx.len() {
            // A key column the file does not have: all its keys are NULL, none match.
            continue;
        }
        let groups = row_groups(&builder, schema.field(key_idx[0]).name(), bounds)?;
        if groups.is_empty() {
            continue;
        }
        // (first row among the groups read, first row in the file, rows) per group.
        let mut segments = Vec::with_capacity(groups.len());
        let mut logical = 0u64;
        for &g in &groups {
            let n = builder.metadata().row_group(g).num_rows() as u64;
            let physical: u64 = (0..g)
                .map(|k| builder.metadata().row_group(k).num_rows() as u64)
                .sum();
            segments.push((logical, physical, n));
            logical += n;
        }
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
        let mut stream = builder
            .with_projection(mask)
            .with_row_groups(groups)
            .with_batch_size(READ_BATCH)
            .build()?;
        let mut hits = Vec::new();
        let mut base = 0u64;
        while let Some(b) = stream.try_next().await? {
            keys.matches(&schema, &b, base, bounds, &mut hits)?;
            base += b.num_rows() as u64;
        }
        // Positions among the groups read -> positions in the file; rows a deletion
        // vector already removed are not matched again.
        let hits: Vec<u64> = hits
            .into_iter()
            .map(|l| {
                let s = segments.partition_point(|(start, _, _)| *start <= l) - 1;
                segments[s].1 + (l - segments[s].0)
            })
            .filter(|p| deleted.as_ref().is_none_or(|d| !d.contains(*p)))
            .collect();
        if hits.is_empty() {
            continue;
        }
        outcome.replaced += hits.len() as u64;
        let mut dv = deleted.unwrap_or_default();
        dv.extend(hits);
        marked.push((view, dv));
    }
    tracing::debug!(elapsed = ?started.elapsed(), "upsert: keys matched");

    let new_writer = || -> Result<RecordBatchWriter, LakeError> {
        let mut writer = RecordBatchWriter::for_table(table)?;
        if let Some(size) = layout.target_file_size().or_else(|| {
            metadata
                .configuration()
                .get("delta.targetFileSize")
                .and_then(|v| super::parse_size(v))
        }) {
            writer = writer.with_target_file_size(size);
        }
        Ok(writer.with_writer_properties(layout.writer_properties()))
    };
    let mut actions: Vec<Action> = Vec::new();
    if !marked.is_empty() {
        if crate::vectors::enabled(table)? {
            actions.extend(crate::vectors::marked_actions(table, &marked).await?);
            outcome.files_marked = marked.len();
        } else {
            // Without deletion vectors the files holding replaced rows are copied without
            // them: every Delta reader reads the result.
            actions.extend(
                crate::rewrite::without_rows(table, &schema, &marked, new_writer()?).await?,
            );
            outcome.files_rewritten = marked.len();
        }
    }

    // The new rows, sorted by key, in new files.
    if source.num_rows() > 0 {
        let mut writer = new_writer()?;
        writer.write(sorted(&source, &key_idx)?).await?;
        let adds = writer.flush().await?;
        outcome.files_added = adds.len();
        actions.extend(adds.into_iter().map(Action::Add));
    }
    tracing::debug!(elapsed = ?started.elapsed(), "upsert: written");
    let predicate = keys_predicate(&schema, &key_idx);
    let operation = DeltaOperation::Merge {
        predicate: None,
        merge_predicate: Some(predicate),
        matched_predicates: Vec::new(),
        not_matched_predicates: Vec::new(),
        not_matched_by_source_predicates: Vec::new(),
    };
    CommitBuilder::from(crate::txn::commit_properties(commit))
        .with_actions(actions)
        .build(Some(state), table.log_store(), operation)
        .await?;
    Ok(Some(outcome))
}

/// Gives `table` the `deletionVectors` table feature when it lacks it (a commit of its
/// own that changes no data). Returns the table as it is afterwards.
pub async fn enable_deletion_vectors(table: DeltaTable) -> Result<DeltaTable, LakeError> {
    let has = table
        .snapshot()?
        .protocol()
        .reader_features()
        .is_some_and(|f| {
            f.contains(&buoyant_kernel::table_features::TableFeature::DeletionVectors)
        });
    if has {
        return Ok(table);
    }
    Ok(table
        .add_feature()
        .with_feature(deltalake::kernel::TableFeatures::DeletionVectors)
        .with_allow_protocol_versions_increase(true)
        .await?)
}

/// The row groups of a file whose statistics for `key` overlap `lo..=hi` (all of them
/// when there are no statistics).
fn row_groups<T>(
    builder: &ParquetRecordBatchStreamBuilder<T>,
    key: &str,
    (lo, hi): (i64, i64),
) -> Result<Vec<usize>, LakeError> {
    let all: Vec<usize> = (0..builder.metadata().num_row_groups()).collect();
    if (lo, hi) == (i64::MIN, i64::MAX) {
        return Ok(all);
    }
    let converter = StatisticsConverter::try_new(key, builder.schema(), builder.parquet_schema())?;
    let groups = builder.metadata().row_groups();
    let mins = compute::cast(&converter.row_group_mins(groups.iter())?, &DataType::Int64)?;
    let maxes = compute::cast(&converter.row_group_maxes(groups.iter())?, &DataType::Int64)?;
    let (mins, maxes) = (
        mins.as_primitive::<Int64Type>(),
        maxes.as_primitive::<Int64Type>(),
    );
    Ok(all
        .into_iter()
        .filter(|&g| {
            let below = mins.is_valid(g) && mins.value(g) > hi;
            let above = maxes.is_valid(g) && maxes.value(g) < lo;
            !below && !above
        })
        .collect())
}

fn as_i64(a: &ArrayRef) -> Result<Option<i64>, LakeError> {
    let a = compute::cast(a, &DataType::Int64)?;
    let a = a.as_primitive::<Int64Type>();
    Ok(a.is_valid(0).then(|| a.value(0)))
}

fn keys_predicate(schema: &SchemaRef, key_idx: &[usize]) -> String {
    key_idx
        .iter()
        .map(|&i| {
            let k = schema.field(i).name();
            format!("t.{k} = s.{k}")
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// Rows per batch when reading a file to rewrite.
const READ_BATCH: usize = 64 * 1024;

/// `batch` sorted by its key columns.
fn sorted(batch: &RecordBatch, key_idx: &[usize]) -> Result<RecordBatch, LakeError> {
    let columns: Vec<SortColumn> = key_idx
        .iter()
        .map(|&i| SortColumn {
            values: batch.column(i).clone(),
            options: None,
        })
        .collect();
    let order = compute::lexsort_to_indices(&columns, None)?;
    Ok(compute::take_record_batch(batch, &order)?)
}

/// Per file path, the min and max of column `key` from the Delta statistics, as
/// one-element arrays of the column's type. Only for types whose statistics are exact
/// (integers and dates); other files are absent and read whole.
fn file_ranges(
    state: &deltalake::table::state::DeltaTableState,
    schema: &SchemaRef,
    key: usize,
) -> Result<HashMap<String, (ArrayRef, ArrayRef)>, LakeError> {
    let field = schema.field(key);
    let exact = field.data_type().is_integer() || field.data_type() == &DataType::Date32;
    let mut out = HashMap::new();
    if !exact {
        return Ok(out);
    }
    let adds = state.add_actions_table(true)?;
    let (Some(paths), Some(min), Some(max)) = (
        adds.column_by_name("path"),
        adds.column_by_name(&format!("min.{}", field.name())),
        adds.column_by_name(&format!("max.{}", field.name())),
    ) else {
        return Ok(out);
    };
    let Some(paths) = paths.as_any().downcast_ref::<StringArray>() else {
        return Ok(out);
    };
    let min = crate::batches::cast_to(min, field.data_type())?;
    let max = crate::batches::cast_to(max, field.data_type())?;
    for i in 0..adds.num_rows() {
        if paths.is_valid(i) && min.is_valid(i) && max.is_valid(i) {
            out.insert(
                paths.value(i).to_string(),
                (min.slice(i, 1), max.slice(i, 1)),
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    fn batch(ids: &[i64], names: &[&str]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(ids.to_vec())),
                Arc::new(StringArray::from(names.to_vec())),
            ],
        )
        .unwrap()
    }

    async fn rows(table: &DeltaTable) -> Vec<(i64, String)> {
        let ctx = datafusion::prelude::SessionContext::new();
        ctx.register_table("t", table.table_provider().await.unwrap())
            .unwrap();
        let batches = ctx
            .sql("select id, name from t order by id, name")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let mut out = Vec::new();
        for b in batches {
            let ids = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
            let names = compute::cast(b.column(1), &DataType::Utf8).unwrap();
            let names = names.as_any().downcast_ref::<StringArray>().unwrap();
            for i in 0..b.num_rows() {
                out.push((ids.value(i), names.value(i).to_string()));
            }
        }
        out
    }

    /// A table of one file per batch: ids with one name each.
    async fn table_of(dir: &std::path::Path, files: &[(&[i64], &str)]) -> DeltaTable {
        let url = url::Url::from_directory_path(dir).unwrap();
        let mut table = DeltaTable::try_from_url(url).await.unwrap();
        for (ids, name) in files {
            let names = vec![*name; ids.len()];
            table = table
                .write(vec![batch(ids, &names)])
                .with_save_mode(deltalake::protocol::SaveMode::Append)
                .await
                .unwrap();
        }
        table
    }

    #[tokio::test]
    async fn without_deletion_vectors_copies_only_files_with_matching_keys() {
        let dir = tempfile::tempdir().unwrap();
        let mut table = table_of(dir.path(), &[(&[0, 1, 2], "a"), (&[10, 11, 12], "x")]).await;
        let out = upsert(
            &table,
            vec![batch(&[11, 12, 30], &["new11", "new12", "new30"])],
            &["id".to_string()],
            UpsertMode::Merge,
            CommitProperties::default(),
            &Default::default(),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!((out.replaced, out.files_scanned), (2, 1), "{out:?}");
        assert_eq!((out.files_marked, out.files_rewritten), (0, 1), "{out:?}");
        table.load().await.unwrap();
        assert!(!crate::vectors::enabled(&table).unwrap());
        let mut got = rows(&table).await;
        got.sort();
        let want: Vec<(i64, String)> = [
            (0, "a"),
            (1, "a"),
            (2, "a"),
            (10, "x"),
            (11, "new11"),
            (12, "new12"),
            (30, "new30"),
        ]
        .into_iter()
        .map(|(i, n)| (i, n.to_string()))
        .collect();
        assert_eq!(got, want);
        // The untouched file stays; the other is replaced by its copy.
        let files = table.snapshot().unwrap().log_data().iter().count();
        assert_eq!(
            files, 3,
            "the first file, the copy of the second, the new rows"
        );
    }

    #[tokio::test]
    async fn replaces_only_files_with_matching_keys() {
        let dir = tempfile::tempdir().unwrap();
        // Three files: ids 0-2, 10-12, 20-22.
        let table = table_of(
            dir.path(),
            &[
                (&[0, 1, 2], "a"),
                (&[10, 11, 12], "x"),
                (&[20, 21, 22], "y"),
            ],
        )
        .await;
        let mut table = enable_deletion_vectors(table).await.unwrap();
        let out = upsert(
            &table,
            vec![batch(&[11, 30], &["new11", "new30"])],
            &["id".to_string()],
            UpsertMode::Merge,
            CommitProperties::default(),
            &Default::default(),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(out.rows, 2);
        assert_eq!(out.replaced, 1);
        assert_eq!(out.files_scanned, 1, "{out:?}");
        assert_eq!(out.files_marked, 1);
        table.load().await.unwrap();
        let got = rows(&table).await;
        assert_eq!(got.len(), 10);
        assert!(got.contains(&(11, "new11".into())));
        assert!(!got.contains(&(11, "x".into())));
        assert!(got.contains(&(30, "new30".into())));
        assert!(got.contains(&(0, "a".into())));

        // Repeated keys: merge leaves them to the caller, delete+insert keeps both.
        let dup = vec![batch(&[1, 1], &["p", "q"])];
        let keys = ["id".to_string()];
        assert!(
            upsert(
                &table,
                dup.clone(),
                &keys,
                UpsertMode::Merge,
                Default::default(),
                &Default::default()
            )
            .await
            .unwrap()
            .is_none()
        );
        upsert(
            &table,
            dup,
            &keys,
            UpsertMode::DeleteInsert,
            Default::default(),
            &Default::default(),
        )
        .await
        .unwrap()
        .unwrap();
        table.load().await.unwrap();
        let got = rows(&table).await;
        assert_eq!(
            got.iter().filter(|(id, _)| *id == 1).collect::<Vec<_>>(),
            vec![&(1, "p".to_string()), &(1, "q".to_string())]
        );
        assert_eq!(got.len(), 11);

        // The same key again: the row marked deleted before is not counted twice, and
        // counts (which Delta statistics could answer) see the live rows only.
        let out = upsert(
            &table,
            vec![batch(&[11], &["newer11"])],
            &keys,
            UpsertMode::Merge,
            Default::default(),
            &Default::default(),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(out.replaced, 1, "{out:?}");
        table.load().await.unwrap();
        let got = rows(&table).await;
        assert_eq!(got.len(), 11);
        assert!(got.contains(&(11, "newer11".into())));
        assert!(!got.contains(&(11, "new11".into())));
        let ctx = datafusion::prelude::SessionContext::new();
        ctx.register_table("t", table.table_provider().await.unwrap())
            .unwrap();
        let n = ctx
            .sql("select count(*) from t")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(
            n[0].column(0)
                .as_primitive::<arrow::datatypes::Int64Type>()
                .value(0),
            11
        );

        // A Delta MERGE (what the models fall back to) over files with deletion vectors.
        let source = ctx.read_batch(batch(&[12, 40], &["m12", "m40"])).unwrap();
        let (table, _) = table
            .merge(source, "t.id = s.id")
            .with_source_alias("s")
            .with_target_alias("t")
            .when_matched_update(|u| u.update("name", "s.name"))
            .unwrap()
            .when_not_matched_insert(|i| i.set("id", "s.id").set("name", "s.name"))
            .unwrap()
            .await
            .unwrap();
        let got = rows(&table).await;
        assert_eq!(got.len(), 12, "{got:?}");
        assert!(got.contains(&(12, "m12".into())));
        assert!(got.contains(&(11, "newer11".into())));
        assert!(!got.contains(&(11, "new11".into())));
        assert!(!got.contains(&(1, "a".into())));
    }
}
