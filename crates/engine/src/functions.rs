//! Table functions: Synapse OPENROWSET-style ad-hoc reads and lake introspection.
//!
//! - `read_delta(location [, version | timestamp])`: a lake table (`'gold.t'`) or any Delta
//!   folder or URL, optionally at an older version (time travel);
//! - `read_parquet(path)`, `read_csv(path)`, `read_json(path)`: files, folders or globs,
//!   with hive-style partition folders (`year=2024/`) turned into columns;
//! - `table_history('schema.table')`: the Delta commit history, newest first.
//!
//! DataFusion plans table functions synchronously; the storage reads they need run on the
//! multi-threaded runtime through `block_in_place`.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Int64Array, StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::json::JsonFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::Expr;

use super::authz::Touch;
use super::authz::guarded::{Touches, admit};
use tidepool_lake::{Lake, TableVersion};

/// Runs `f` to completion from synchronous planning code.
fn block_on<F: std::future::Future>(f: F) -> Result<F::Output> {
    let handle = tokio::runtime::Handle::try_current()
        .map_err(|_| DataFusionError::Internal("table function called outside a runtime".into()))?;
    if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
        return Err(DataFusionError::Internal(
            "table functions need the multi-threaded runtime".into(),
        ));
    }
    Ok(tokio::task::block_in_place(|| handle.block_on(f)))
}

fn lake_err(e: tidepool_lake::LakeError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

fn literal(e: &Expr) -> Option<&ScalarValue> {
    match e {
        Expr::Literal(v, _) => Some(v),
        Expr::Cast(c) => literal(&c.expr),
        _ => None,
    }
}

fn string_arg(fname: &str, args: &[Expr], i: usize, what: &str) -> Result<String> {
    match args.get(i).and_then(literal) {
        Some(ScalarValue::Utf8(Some(s)))
        | Some(ScalarValue::LargeUtf8(Some(s)))
        | Some(ScalarValue::Utf8View(Some(s))) => Ok(s.clone()),
        _ => Err(DataFusionError::Plan(format!(
            "{fname}: argument {} ({what}) must be a string literal",
            i + 1
        ))),
    }
}

/// Splits `'schema.table'` or `'table'` (in `public`); `None` for paths and URLs.
fn lake_name(location: &str) -> Option<(String, String)> {
    if location.contains('/') || location.contains('\\') || location.contains(':') {
        return None;
    }
    let lower = location.to_ascii_lowercase();
    match lower.split_once('.') {
        Some((s, t)) if !t.contains('.') => Some((s.to_string(), t.to_string())),
        None => Some(("public".to_string(), lower)),
        _ => None,
    }
}

/// `read_delta(location [, version | timestamp])`.
#[derive(Debug)]
pub struct ReadDelta {
    pub lake: Arc<Lake>,
}

impl TableFunctionImpl for ReadDelta {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        let location = string_arg("read_delta", exprs, 0, "table name or location")?;
        let at = match exprs.get(1).map(|e| (e, literal(e))) {
            None => None,
            Some((_, Some(ScalarValue::Int64(Some(v))))) => Some(TableVersion::Version(*v)),
            Some((_, Some(ScalarValue::Int32(Some(v))))) => Some(TableVersion::Version(*v as i64)),
            Some((_, Some(ScalarValue::Utf8(Some(s))))) => Some(TableVersion::Timestamp(s.clone())),
            Some((e, _)) => {
                return Err(DataFusionError::Plan(format!(
                    "read_delta: the second argument must be a version number or a timestamp string, got {e}"
                )));
            }
        };
        if exprs.len() > 2 {
            return Err(DataFusionError::Plan(
                "read_delta takes a location and an optional version or timestamp".into(),
            ));
        }
        let touch = match lake_name(&location) {
            Some((schema, table)) => Touch::Read { schema, table },
            None => Touch::File {
                location: location.clone(),
                write: false,
            },
        };
        admit(args.session(), std::slice::from_ref(&touch))?;
        let lake = self.lake.clone();
        let provider = block_on(async move {
            let table = match (lake_name(&location), &at) {
                (Some((s, t)), Some(at)) => lake.table_at(&s, &t, at).await.map_err(lake_err)?,
                (Some((s, t)), None) => lake.table(&s, &t).await.map_err(lake_err)?,
                (None, at) => Some(
                    lake.open_path(&location, at.as_ref())
                        .await
                        .map_err(lake_err)?,
                ),
            };
            let table = table
                .ok_or_else(|| DataFusionError::Plan(format!("table '{location}' not found")))?;
            super::pushdown::delta_provider(&table)
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))
        })??;
        Ok(Touches::wrap(provider, vec![touch]))
    }
}

/// Which file format a `read_*` function reads.
#[derive(Debug, Clone, Copy)]
pub enum FileKind {
    Parquet,
    Csv,
    Json,
}

/// `read_parquet(path)`, `read_csv(path)`, `read_json(path)`.
#[derive(Debug)]
pub struct ReadFiles {
    pub kind: FileKind,
}

impl ReadFiles {
    fn name(&self) -> &'static str {
        match self.kind {
            FileKind::Parquet => "read_parquet",
            FileKind::Csv => "read_csv",
            FileKind::Json => "read_json",
        }
    }
}

impl TableFunctionImpl for ReadFiles {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        if exprs.len() != 1 {
            return Err(DataFusionError::Plan(format!(
                "{} takes one argument: a file, folder or glob",
                self.name()
            )));
        }
        let path = string_arg(self.name(), exprs, 0, "path")?;
        let session = args.session();
        let touch = Touch::File {
            location: path.clone(),
            write: false,
        };
        admit(session, std::slice::from_ref(&touch))?;
        let kind = self.kind;
        let provider = block_on(listing_table(session, &path, kind))??;
        Ok(Touches::wrap(provider, vec![touch]))
    }
}

/// A listing table over files, folders or globs, with hive partitions inferred.
pub async fn listing_table(
    session: &dyn Session,
    path: &str,
    kind: FileKind,
) -> Result<Arc<dyn TableProvider>> {
    let location = if path.contains("://") || path.starts_with('/') {
        path.to_string()
    } else {
        let cwd = std::env::current_dir().map_err(|e| DataFusionError::External(Box::new(e)))?;
        cwd.join(path).display().to_string()
    };
    let url = ListingTableUrl::parse(&location)?;
    let (format, ext): (Arc<dyn FileFormat>, &str) = match kind {
        FileKind::Parquet => (Arc::new(ParquetFormat::default()), ".parquet"),
        FileKind::Csv => (Arc::new(CsvFormat::default().with_has_header(true)), ".csv"),
        FileKind::Json => (Arc::new(JsonFormat::default()), ".json"),
    };
    let is_dir = location.ends_with('/')
        || std::path::Path::new(&location).is_dir()
        || location.contains('*');
    let ext = if is_dir && !location.contains('*') {
        ext
    } else {
        ""
    };
    let mut options = ListingOptions::new(format).with_file_extension(ext);
    let partitions = options.infer_partitions(session, &url).await?;
    if !partitions.is_empty() {
        options = options.with_table_partition_cols(
            partitions
                .into_iter()
                .map(|p| (p, DataType::Utf8))
                .collect(),
        );
    }
    let schema = options.infer_schema(session, &url).await?;
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(schema);
    Ok(Arc::new(ListingTable::try_new(config)?))
}

/// `table_history('schema.table')`.
#[derive(Debug)]
pub struct TableHistory {
    pub lake: Arc<Lake>,
}

impl TableFunctionImpl for TableHistory {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let name = string_arg("table_history", args.exprs(), 0, "table name")?;
        let (schema, table) = lake_name(&name).ok_or_else(|| {
            DataFusionError::Plan(format!(
                "table_history: {name:?} is not a schema.table name"
            ))
        })?;
        let touch = Touch::Read {
            schema: schema.clone(),
            table: table.clone(),
        };
        admit(args.session(), std::slice::from_ref(&touch))?;
        let lake = self.lake.clone();
        let (latest, history) =
            block_on(async move { lake.history(&schema, &table).await })?.map_err(lake_err)?;
        let n = history.len();
        let versions: Int64Array = (0..n).map(|i| Some(latest - i as i64)).collect();
        let ts: TimestampMillisecondArray = history
            .iter()
            .map(|c| c.timestamp)
            .collect::<TimestampMillisecondArray>()
            .with_timezone("UTC");
        let ops: StringArray = history.iter().map(|c| c.operation.clone()).collect();
        let params: StringArray = history
            .iter()
            .map(|c| {
                c.operation_parameters
                    .as_ref()
                    .map(|p| serde_json::to_string(p).unwrap_or_default())
            })
            .collect();
        let metrics: StringArray = history
            .iter()
            .map(|c| c.info.get("operationMetrics").map(|m| m.to_string()))
            .collect();
        let blind: BooleanArray = history.iter().map(|c| c.is_blind_append).collect();
        let engine: StringArray = history.iter().map(|c| c.engine_info.clone()).collect();
        // What the writer added to the commit (ingest: `tidepool.node`, `tidepool.source`,
        // message counts), as a JSON object; NULL when nothing was.
        let metadata: StringArray = history
            .iter()
            .map(|c| {
                let extra: serde_json::Map<String, serde_json::Value> = c
                    .info
                    .iter()
                    .filter(|(k, _)| !matches!(k.as_str(), "operationMetrics" | "clientVersion"))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                (!extra.is_empty()).then(|| serde_json::Value::Object(extra).to_string())
            })
            .collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("version", DataType::Int64, false),
            Field::new(
                "timestamp",
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                true,
            ),
            Field::new("operation", DataType::Utf8, true),
            Field::new("operation_parameters", DataType::Utf8, true),
            Field::new("operation_metrics", DataType::Utf8, true),
            Field::new("is_blind_append", DataType::Boolean, true),
            Field::new("engine_info", DataType::Utf8, true),
            Field::new("metadata", DataType::Utf8, true),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(versions),
            Arc::new(ts),
            Arc::new(ops),
            Arc::new(params),
            Arc::new(metrics),
            Arc::new(blind),
            Arc::new(engine),
            Arc::new(metadata),
        ];
        let batch = RecordBatch::try_new(schema.clone(), columns)?;
        Ok(Touches::wrap(
            Arc::new(MemTable::try_new(schema, vec![vec![batch]])?),
            vec![touch],
        ))
    }
}
