//! sqllogictest runner: every `tests/slt/*.slt` file runs against a fresh lake, through an
//! engine session (the same code path the wire protocols use). Relative paths in the files
//! resolve inside a per-file scratch folder.

use std::path::PathBuf;
use std::sync::Arc;

use datafusion::arrow::array::Array;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use futures::TryStreamExt;
use sqllogictest::{DBOutput, DefaultColumnType};
use tidepool::engine::{Engine, EngineError, EngineOptions, Output, QueryControl, Session};
use tidepool::lake::Lake;
use tokio_util::sync::CancellationToken;

struct Db {
    session: Session,
}

#[derive(Debug)]
struct SltError(String);

impl std::fmt::Display for SltError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for SltError {}

impl From<EngineError> for SltError {
    fn from(e: EngineError) -> Self {
        SltError(format!("{:?}: {}", e.kind(), e.message()))
    }
}

fn column_type(t: &DataType) -> DefaultColumnType {
    match t {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => DefaultColumnType::Integer,
        DataType::Float16
        | DataType::Float32
        | DataType::Float64
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => DefaultColumnType::FloatingPoint,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => DefaultColumnType::Text,
        _ => DefaultColumnType::Any,
    }
}

#[async_trait::async_trait]
impl sqllogictest::AsyncDB for Db {
    type Error = SltError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SltError> {
        let mut statements = self.session.parse(sql)?;
        let last = statements.pop().ok_or_else(|| SltError("empty".into()))?;
        let control = QueryControl::new(CancellationToken::new(), None);
        for s in statements {
            self.session.execute(s, None, &control).await?;
        }
        match self.session.execute(last, None, &control).await? {
            Output::Command(c) => Ok(DBOutput::StatementComplete(c.rows.unwrap_or(0))),
            Output::CopyIn(_) => Err(SltError("COPY FROM STDIN has no data in slt".into())),
            Output::Rows { stream, .. } | Output::CopyOut { stream, .. } => {
                let schema = stream.schema();
                let batches: Vec<_> = stream
                    .try_collect()
                    .await
                    .map_err(|e| SltError::from(EngineError::from(e)))?;
                let types = schema
                    .fields()
                    .iter()
                    .map(|f| column_type(f.data_type()))
                    .collect();
                let options = FormatOptions::default().with_null("NULL");
                let mut rows = Vec::new();
                for b in &batches {
                    let formatters: Vec<_> = b
                        .columns()
                        .iter()
                        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
                        .collect::<Result<_, _>>()
                        .map_err(|e| SltError(e.to_string()))?;
                    for r in 0..b.num_rows() {
                        rows.push(
                            formatters
                                .iter()
                                .zip(b.columns())
                                .map(|(f, c)| {
                                    if c.is_null(r) {
                                        "NULL".to_string()
                                    } else {
                                        let s = f.value(r).to_string();
                                        if s.is_empty() {
                                            "(empty)".to_string()
                                        } else {
                                            s
                                        }
                                    }
                                })
                                .collect(),
                        );
                    }
                }
                Ok(DBOutput::Rows { types, rows })
            }
        }
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "tidepool"
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/slt exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    let filter = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    let (mut passed, mut failed) = (0, 0);
    for file in files {
        if let Some(f) = &filter
            && !file.to_string_lossy().contains(f.as_str())
        {
            continue;
        }
        let scratch = tempfile::tempdir().expect("tempdir");
        std::env::set_current_dir(scratch.path()).expect("chdir");
        let lake_root = scratch.path().join("lake");
        let result = runtime.block_on(async {
            let lake = Lake::open(&tidepool::config::LakeConfig {
                root: lake_root.display().to_string(),
                ..Default::default()
            })
            .map_err(|e| e.to_string())?;
            let engine: Arc<Engine> = Engine::new(
                lake,
                EngineOptions {
                    target_partitions: Some(2),
                    max_concurrent_queries: 8,
                    ..Default::default()
                },
                tidepool::pgcompat::PgCompat::new(Default::default()),
            )
            .map_err(|e| e.to_string())?;
            let mut runner = sqllogictest::Runner::new(|| {
                let engine = engine.clone();
                async move {
                    Ok::<_, SltError>(Db {
                        session: engine.session("slt"),
                    })
                }
            });
            runner
                .run_file_async(&file)
                .await
                .map_err(|e| e.display(true).to_string())
        });
        match result {
            Ok(()) => {
                passed += 1;
                println!("test {} ... ok", file.display());
            }
            Err(e) => {
                failed += 1;
                println!("test {} ... FAILED\n{e}", file.display());
            }
        }
    }
    println!("\nslt: {passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}
