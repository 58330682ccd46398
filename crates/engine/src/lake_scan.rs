//! Reading a plain Delta table as DataFusion reads Parquet: the files of the table's
//! snapshot, with the row counts and min/max/null counts the Delta log keeps for each,
//! scanned by DataFusion's own `DataSourceExec` under the session's Parquet settings.
//!
//! delta-rs' provider replays the log through the kernel at every scan, always turns the
//! pushed filter into a Parquet row filter (and DataFusion's physical pushdown adds the
//! same conjuncts again, so each is evaluated twice), adds a file-id column to every
//! batch and drops per-file column statistics when no filter is pushed; on TPC-H's q06 it
//! takes 4x the time of a Parquet scan of the same files. A table is *plain* when no file
//! has a deletion vector, no column mapping is declared and every column is flat: its
//! files are then ordinary Parquet files, read here directly. Any other table keeps
//! delta-rs' scan.
//!
//! Statistics are taken conservatively: exact row counts (no deletion vectors) and null
//! counts; min/max as inexact bounds, only for types whose log values round-trip exactly
//! (integers, floats, dates, booleans, decimals up to 15 digits, and timestamps whose
//! maximum is widened by the millisecond the log may have truncated). Strings and binary
//! keep no bounds here (the log may truncate them); the Parquet footers still prune.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::Session;
use datafusion::common::stats::Precision;
use datafusion::common::{ColumnStatistics, ScalarValue, Statistics};
use datafusion::config::TableParquetOptions;
use datafusion::datasource::listing::{FileRange, PartitionedFile};
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::error::Result;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use deltalake::DeltaTable;
use deltalake::kernel::LogicalFileView;
use deltalake::logstore::{LogStore, LogStoreRef};
use object_store::ObjectMeta;
use object_store::path::Path;
use url::Url;

/// The files of a plain table's snapshot, ready for DataFusion.
#[derive(Debug)]
pub struct PlainFiles {
    /// The table's columns in its own order (the provider's schema).
    schema: SchemaRef,
    /// `schema`'s columns as the scan lays them out: data columns, then partition columns.
    table_schema: TableSchema,
    /// For each column of `schema`, its index in `table_schema`.
    positions: Vec<usize>,
    store: ObjectStoreUrl,
    log_store: LogStoreRef,
    files: Vec<PartitionedFile>,
}

/// The plain files of `table` read with `schema` (delta-rs' provider schema), or `None`
/// when the table is not plain (see the module docs) or its log lacks what is needed.
pub fn plain_files(table: &DeltaTable, schema: &SchemaRef) -> Option<PlainFiles> {
    let snapshot = table.snapshot().ok()?;
    let metadata = snapshot.metadata();
    if metadata
        .configuration()
        .get("delta.columnMapping.mode")
        .is_some_and(|m| m != "none")
    {
        return None;
    }
    if schema.fields().iter().any(|f| f.data_type().is_nested()) {
        return None;
    }
    let partition_columns = metadata.partition_columns().to_vec();
    let (data_fields, partition_fields): (Vec<FieldRef>, Vec<FieldRef>) = schema
        .fields()
        .iter()
        .cloned()
        .partition(|f| !partition_columns.contains(f.name()));
    if partition_fields.len() != partition_columns.len() {
        return None;
    }
    let data_schema = Arc::new(Schema::new(data_fields.clone()));
    let table_schema = TableSchema::builder(data_schema)
        .with_table_partition_cols(partition_fields.clone())
        .build();
    let laid_out = table_schema.table_schema().clone();
    let positions = schema
        .fields()
        .iter()
        .map(|f| laid_out.index_of(f.name()).ok())
        .collect::<Option<Vec<usize>>>()?;

    let root_url = table.log_store().root_url().clone();
    let store = object_store_url(&root_url)?;
    let root = Path::from_url_path(root_url.path()).ok()?;
    let mut files = Vec::new();
    for view in snapshot.log_data().iter() {
        if view.deletion_vector_descriptor().is_some() {
            return None;
        }
        files.push(partitioned_file(
            &view,
            &root,
            &data_fields,
            &partition_fields,
        )?);
    }
    Some(PlainFiles {
        schema: schema.clone(),
        table_schema,
        positions,
        store,
        log_store: table.log_store(),
        files,
    })
}

impl PlainFiles {
    /// The table's row count, when the log has every file's.
    pub fn num_rows(&self) -> Option<usize> {
        self.files.iter().try_fold(0usize, |sum, f| {
            let rows = f.statistics.as_ref()?.num_rows.get_value()?;
            Some(sum + rows)
        })
    }

    /// A `DataSourceExec` reading `projection` of the table (indices into the table's own
    /// schema), spread over the session's target partitions.
    pub fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.scan_in_pieces(state, projection, limit, PIECE_BYTES)
    }

    fn scan_in_pieces(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        limit: Option<usize>,
        piece_bytes: u64,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let indices: Vec<usize> = match projection {
            Some(p) => p.iter().map(|&i| self.positions[i]).collect(),
            None => self.positions.clone(),
        };
        if self.files.is_empty() {
            let projected = match projection {
                Some(p) => Arc::new(self.schema.project(p)?),
                None => self.schema.clone(),
            };
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        let partitions = state.config_options().execution.target_partitions.max(1);
        // The table's statistics count each file once; the pieces carry their file's
        // statistics only for pruning.
        let (_, statistics) = datafusion_datasource::compute_all_files_statistics(
            vec![FileGroup::new(self.files.clone())],
            self.table_schema.table_schema().clone(),
            true,
            false,
        )?;
        let groups = pieces(&self.files, partitions, piece_bytes);
        let options = TableParquetOptions {
            global: state.config_options().execution.parquet.clone(),
            ..Default::default()
        };
        let runtime = state.runtime_env();
        if runtime.object_store(&self.store).is_err() {
            runtime
                .register_object_store(self.store.as_ref(), self.log_store.root_object_store(None));
        }
        let object_store = runtime.object_store(&self.store)?;
        let metadata_cache = runtime.cache_manager.get_file_metadata_cache();
        let source = ParquetSource::new(self.table_schema.clone())
            .with_table_parquet_options(options)
            .with_parquet_file_reader_factory(Arc::new(CachedParquetFileReaderFactory::new(
                object_store,
                metadata_cache,
            )));
        let config = FileScanConfigBuilder::new(self.store.clone(), Arc::new(source))
            .with_file_groups(groups)
            .with_statistics(statistics)
            .with_projection_indices(Some(indices))?
            .with_limit(limit)
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}

/// Bytes of a file one piece of a scan covers (a piece reads the row groups whose middle
/// falls in its range).
const PIECE_BYTES: u64 = 8 << 20;

/// The files cut into pieces of about `piece_bytes`, dealt to `partitions` groups in
/// turn. A table written in order (`CREATE TABLE ... AS ... ORDER BY d`) keeps the rows a
/// range filter on `d` selects in neighbouring row groups of one file: cut into halves,
/// as DataFusion splits files between cores, one core would read them all while the
/// other skips its half. Dealt in small pieces, both cores get some, and a core that is
/// done early takes the other's pieces (DataFusion's file stream work stealing). The
/// groups come out about equal in bytes, so DataFusion's own split by size, when it
/// applies, keeps them.
fn pieces(files: &[PartitionedFile], partitions: usize, piece_bytes: u64) -> Vec<FileGroup> {
    let mut groups = vec![Vec::new(); partitions];
    let mut next = 0;
    for file in files {
        let size = file.object_meta.size;
        let n = size.div_ceil(piece_bytes).max(1);
        for i in 0..n {
            let mut piece = file.clone();
            if n > 1 {
                piece.range = Some(FileRange {
                    start: (size * i / n) as i64,
                    end: (size * (i + 1) / n) as i64,
                });
            }
            groups[next % partitions].push(piece);
            next += 1;
        }
    }
    groups
        .into_iter()
        .filter(|g| !g.is_empty())
        .map(FileGroup::new)
        .collect()
}

/// The object store serving `url` as DataFusion's runtime names it (scheme and authority),
/// the one delta-rs registers for the table's root.
fn object_store_url(url: &Url) -> Option<ObjectStoreUrl> {
    ObjectStoreUrl::parse(format!(
        "{}://{}",
        url.scheme(),
        &url[url::Position::BeforeHost..url::Position::AfterPort]
    ))
    .ok()
}

/// One file of the log as DataFusion's `PartitionedFile`: its location, size, partition
/// values and statistics.
fn partitioned_file(
    view: &LogicalFileView,
    root: &Path,
    data_fields: &[FieldRef],
    partition_fields: &[FieldRef],
) -> Option<PartitionedFile> {
    // The log's path is relative to the root; a whole URL (a shallow clone's file) is left
    // to delta-rs.
    let path = view.path();
    if Url::parse(&path).is_ok_and(|u| u.scheme().len() > 1) {
        return None;
    }
    let location = Path::parse(format!("{}/{path}", root.as_ref())).ok()?;
    let mut file: PartitionedFile = ObjectMeta {
        location,
        size: u64::try_from(view.size()).ok()?,
        last_modified: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
        e_tag: None,
        version: None,
    }
    .into();
    let values = view.partition_values_map();
    file.partition_values = partition_fields
        .iter()
        .map(|f| partition_value(values.get(f.name()).cloned().flatten(), f.data_type()))
        .collect::<Option<Vec<_>>>()?;
    file = file.with_statistics(Arc::new(statistics(view, data_fields)));
    Some(file)
}

/// A partition value of the log (text, `None` or empty for null) as a value of `ty`.
fn partition_value(value: Option<String>, ty: &DataType) -> Option<ScalarValue> {
    match value {
        Some(v) if !v.is_empty() => ScalarValue::try_from_string(v, ty).ok(),
        _ => ScalarValue::try_from(ty).ok(),
    }
}

/// The statistics the log keeps for a file's data columns.
fn statistics(view: &LogicalFileView, data_fields: &[FieldRef]) -> Statistics {
    // The size in memory is left unknown, as DataFusion's own Parquet statistics leave it:
    // the file's compressed size is no estimate of it, and DataFusion's join selection
    // (build side collected when under `hash_join_single_partition_threshold` bytes, else
    // under `..._rows` rows) would take a filtered dimension for larger than it is and
    // repartition the fact side instead (TPC-H q16, q19, q22). Fixed-width columns get
    // their exact width times the rows, as DataFusion gives them.
    let mut out = Statistics::new_unknown(&Schema::new(data_fields.to_vec()));
    let Some(stats) = view
        .stats()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
    else {
        return out;
    };
    let Some(rows) = stats.get("numRecords").and_then(|n| n.as_u64()) else {
        return out;
    };
    out.num_rows = Precision::Exact(rows as usize);
    let empty = serde_json::Map::new();
    let section = |name: &str| {
        stats
            .get(name)
            .and_then(|v| v.as_object())
            .unwrap_or(&empty)
    };
    let (mins, maxs, nulls) = (
        section("minValues"),
        section("maxValues"),
        section("nullCount"),
    );
    for (field, column) in data_fields.iter().zip(out.column_statistics.iter_mut()) {
        *column = column_statistics(
            field,
            mins.get(field.name()),
            maxs.get(field.name()),
            nulls.get(field.name()),
        );
        if let Some(width) = field.data_type().primitive_width() {
            column.byte_size = Precision::Exact(width * rows as usize);
        }
    }
    out
}

fn column_statistics(
    field: &Field,
    min: Option<&serde_json::Value>,
    max: Option<&serde_json::Value>,
    nulls: Option<&serde_json::Value>,
) -> ColumnStatistics {
    let mut c = ColumnStatistics::new_unknown();
    if let Some(n) = nulls.and_then(|n| n.as_u64()) {
        c.null_count = Precision::Exact(n as usize);
    }
    let ty = field.data_type();
    if let Some(v) = min.and_then(|v| bound(v, ty, false)) {
        c.min_value = Precision::Inexact(v);
    }
    if let Some(v) = max.and_then(|v| bound(v, ty, true)) {
        c.max_value = Precision::Inexact(v);
    }
    c
}

/// A min (`upper` false) or max bound of the log as a value of `ty`, for the types whose
/// bounds survive the log's JSON (see the module docs).
fn bound(value: &serde_json::Value, ty: &DataType, upper: bool) -> Option<ScalarValue> {
    let text = match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::Bool(b) => b.to_string(),
        _ => return None,
    };
    match ty {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Float32
        | DataType::Float64
        | DataType::Boolean
        | DataType::Date32
        | DataType::Date64 => ScalarValue::try_from_string(text, ty).ok(),
        DataType::Decimal128(precision, _) if *precision <= 15 => {
            ScalarValue::try_from_string(text, ty).ok()
        }
        DataType::Timestamp(unit, _) => {
            let v = ScalarValue::try_from_string(text, ty).ok()?;
            if !upper {
                return Some(v);
            }
            // The log may keep timestamps to the millisecond: the true maximum can be up to
            // a millisecond later.
            let widen: i64 = match unit {
                TimeUnit::Second => 1,
                TimeUnit::Millisecond => 1,
                TimeUnit::Microsecond => 1_000,
                TimeUnit::Nanosecond => 1_000_000,
            };
            match v {
                ScalarValue::TimestampSecond(Some(x), tz) => {
                    Some(ScalarValue::TimestampSecond(x.checked_add(widen), tz))
                }
                ScalarValue::TimestampMillisecond(Some(x), tz) => {
                    Some(ScalarValue::TimestampMillisecond(x.checked_add(widen), tz))
                }
                ScalarValue::TimestampMicrosecond(Some(x), tz) => {
                    Some(ScalarValue::TimestampMicrosecond(x.checked_add(widen), tz))
                }
                ScalarValue::TimestampNanosecond(Some(x), tz) => {
                    Some(ScalarValue::TimestampNanosecond(x.checked_add(widen), tz))
                }
                _ => None,
            }
            .filter(|v| !v.is_null())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, size: u64) -> PartitionedFile {
        PartitionedFile::new(name.to_string(), size)
    }

    /// Pieces cover each file exactly once, in ranges of at most the piece size, dealt in
    /// turn so that neighbouring ranges go to different groups.
    #[test]
    fn files_are_dealt_in_pieces() {
        let groups = pieces(&[file("a", 100), file("b", 30), file("c", 5)], 2, 25);
        let ranges: Vec<Vec<(String, i64, i64)>> = groups
            .iter()
            .map(|g| {
                g.iter()
                    .map(|f| {
                        let r = f.range.clone().unwrap_or(FileRange {
                            start: 0,
                            end: f.object_meta.size as i64,
                        });
                        (f.object_meta.location.to_string(), r.start, r.end)
                    })
                    .collect()
            })
            .collect();
        let piece = |n: &str, a, b| (n.to_string(), a, b);
        assert_eq!(
            ranges,
            vec![
                vec![
                    piece("a", 0, 25),
                    piece("a", 50, 75),
                    piece("b", 0, 15),
                    piece("c", 0, 5)
                ],
                vec![piece("a", 25, 50), piece("a", 75, 100), piece("b", 15, 30)],
            ]
        );
        assert_eq!(pieces(&[file("a", 10)], 4, 25).len(), 1);
    }

    /// A table of many row groups scanned in pieces far smaller than a row group and
    /// than the file reads every row exactly once.
    #[tokio::test]
    async fn every_row_is_read_once_whatever_the_pieces() {
        use datafusion::arrow::array::{Int64Array, RecordBatch};
        use datafusion::parquet::file::properties::WriterProperties;
        use datafusion::prelude::SessionContext;

        let dir = tempfile::tempdir().unwrap();
        let url = Url::from_directory_path(dir.path()).unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]));
        let mut t = DeltaTable::try_from_url(url).await.unwrap();
        for part in 0..2i64 {
            let values: Vec<i64> = (0..5000).map(|i| part * 5000 + i).collect();
            let batch =
                RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(values))])
                    .unwrap();
            t = t
                .write(vec![batch])
                .with_writer_properties(
                    WriterProperties::builder()
                        .set_max_row_group_row_count(Some(300))
                        .build(),
                )
                .await
                .unwrap();
        }
        let provider_schema = t.table_provider().await.unwrap().schema();
        let plain = plain_files(&t, &provider_schema).expect("plain");
        let ctx = SessionContext::new();
        for piece_bytes in [64, 1000, 1 << 30] {
            let plan = plain
                .scan_in_pieces(&ctx.state(), None, None, piece_bytes)
                .unwrap();
            let batches = datafusion::physical_plan::collect(plan, ctx.task_ctx())
                .await
                .unwrap();
            let mut seen: Vec<i64> = batches
                .iter()
                .flat_map(|b| {
                    b.column(0)
                        .as_any()
                        .downcast_ref::<Int64Array>()
                        .unwrap()
                        .values()
                        .to_vec()
                })
                .collect();
            seen.sort();
            assert_eq!(seen, (0..10_000).collect::<Vec<i64>>(), "{piece_bytes}");
        }
    }

    #[test]
    fn bounds_round_trip_only_where_exact() {
        let int = bound(&serde_json::json!(42), &DataType::Int64, false);
        assert_eq!(int, Some(ScalarValue::Int64(Some(42))));
        let date = bound(&serde_json::json!("1994-01-01"), &DataType::Date32, true);
        assert_eq!(date, Some(ScalarValue::Date32(Some(8766))));
        let dec = bound(
            &serde_json::json!(0.05),
            &DataType::Decimal128(15, 2),
            false,
        );
        assert_eq!(dec, Some(ScalarValue::Decimal128(Some(5), 15, 2)));
        // Wide decimals do not survive a JSON double; strings may be truncated prefixes.
        assert_eq!(
            bound(
                &serde_json::json!(1e30),
                &DataType::Decimal128(38, 0),
                false
            ),
            None
        );
        assert_eq!(
            bound(&serde_json::json!("abc"), &DataType::Utf8, false),
            None
        );
    }

    #[test]
    fn timestamp_maxima_widen_by_the_truncated_millisecond() {
        let ty = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let max = bound(&serde_json::json!("2024-01-01T00:00:00.123Z"), &ty, true);
        let min = bound(&serde_json::json!("2024-01-01T00:00:00.123Z"), &ty, false);
        let (
            Some(ScalarValue::TimestampMicrosecond(Some(hi), _)),
            Some(ScalarValue::TimestampMicrosecond(Some(lo), _)),
        ) = (max, min)
        else {
            panic!("timestamps parse");
        };
        assert_eq!(hi - lo, 1_000);
    }

    #[test]
    fn partition_values_parse_to_the_column_type() {
        assert_eq!(
            partition_value(Some("7".into()), &DataType::Int32),
            Some(ScalarValue::Int32(Some(7)))
        );
        assert_eq!(
            partition_value(None, &DataType::Utf8View),
            Some(ScalarValue::Utf8View(None))
        );
        assert_eq!(
            partition_value(Some(String::new()), &DataType::Date32),
            Some(ScalarValue::Date32(None))
        );
    }
}
