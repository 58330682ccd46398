//! Bulk ingest of Arrow record batches into a table (Flight SQL's `CommandStatementIngest`,
//! ADBC's `adbc_ingest`): the batches become the rows of `tidepool_copy_stdin()`, as a
//! COPY FROM's do, and the write is a statement like any other: `CREATE TABLE ... AS`
//! (the table does not exist), `INSERT INTO ... (cols)` (append) or `CREATE OR REPLACE
//! TABLE ... AS` (replace), each one Delta commit, planned, authorized and constrained as
//! that statement typed by the user would be. A failed or abandoned stream writes nothing.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::common::{DataFusionError, TableReference};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::sql::sqlparser::ast::Ident;

use super::Session;
use super::output::{Output, QueryControl};
use crate::copy::COPY_FUNCTION;
use crate::{CATALOG, EngineError, TEMP_SCHEMA};

/// What an ingest does when the table does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfMissing {
    /// Create it with the stream's columns.
    Create,
    /// Fail (42P01).
    Fail,
}

/// What an ingest does when the table exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfExists {
    /// Fail (42P07).
    Fail,
    /// Add the rows (columns matched by name).
    Append,
    /// Replace the table, columns and rows, with the stream's, in one commit.
    Replace,
}

/// Where and how a stream of record batches is written.
#[derive(Debug, Clone)]
pub struct Ingest {
    /// `None`: the session's default schema (or the temporary one, when `temporary`).
    pub schema: Option<String>,
    pub table: String,
    pub if_missing: IfMissing,
    pub if_exists: IfExists,
    /// A session temporary table (`CREATE TEMP TABLE ... AS`).
    pub temporary: bool,
}

impl Session {
    /// Writes `rows` into the table `target` names; the number of rows written.
    pub async fn ingest(
        &mut self,
        target: &Ingest,
        rows: SendableRecordBatchStream,
        control: &QueryControl,
    ) -> Result<u64, EngineError> {
        let schema = rows.schema();
        let sql = self.ingest_statement(target, &schema)?;
        let incoming = Incoming {
            schema: schema.clone(),
            rows: parking_lot::Mutex::new(Some(rows)),
        };
        let table = StreamingTable::try_new(schema, vec![Arc::new(incoming)])?;
        self.copy_slot.put(Arc::new(table));
        let out = match self.parse(&sql) {
            Ok(mut statements) => match statements.pop() {
                Some(stmt) => self.execute(stmt, None, control).await,
                None => Err(EngineError::Syntax("ingest: no statement".into())),
            },
            Err(e) => Err(e),
        };
        self.copy_slot.clear();
        match out? {
            Output::Command(tag) => Ok(tag.rows.unwrap_or(0)),
            _ => Err(EngineError::from(DataFusionError::Internal(
                "ingest: the write returned rows".into(),
            ))),
        }
    }

    /// The statement that writes the stream.
    fn ingest_statement(&self, target: &Ingest, schema: &SchemaRef) -> Result<String, EngineError> {
        if target.table.is_empty() {
            return Err(EngineError::Syntax("ingest: no table named".into()));
        }
        if schema.fields().is_empty() {
            return Err(EngineError::Syntax(
                "ingest: the stream has no columns".into(),
            ));
        }
        let quoted = |s: &str| Ident::with_quote('"', s).to_string();
        let (name, exists) = if target.temporary {
            if target.schema.as_deref().is_some_and(|s| s != TEMP_SCHEMA) {
                return Err(EngineError::InvalidArgument(format!(
                    "a temporary table lives in the session's schema, not {}",
                    target.schema.as_deref().unwrap_or_default()
                )));
            }
            let exists = self.temp.as_ref().is_some_and(|t| t.exists(&target.table));
            let name = if exists {
                format!("{TEMP_SCHEMA}.{}", quoted(&target.table))
            } else {
                quoted(&target.table)
            };
            (name, exists)
        } else {
            let reference = match &target.schema {
                Some(s) => TableReference::partial(s.as_str(), target.table.as_str()),
                None => TableReference::bare(target.table.as_str()),
            };
            let (schema_name, table) = self.resolve(&reference)?;
            let full = TableReference::full(CATALOG, schema_name.as_str(), table.as_str());
            let exists = self.ctx.table_exist(full)?;
            (
                format!("{}.{}", quoted(&schema_name), quoted(&table)),
                exists,
            )
        };
        let source = format!("SELECT * FROM {COPY_FUNCTION}()");
        let temp = if target.temporary { "TEMPORARY " } else { "" };
        Ok(match (exists, target.if_missing, target.if_exists) {
            (false, IfMissing::Fail, _) => return Err(EngineError::UndefinedTable(name)),
            (false, IfMissing::Create, _) => format!("CREATE {temp}TABLE {name} AS {source}"),
            (true, _, IfExists::Fail) => return Err(EngineError::DuplicateTable(name)),
            (true, _, IfExists::Append) => {
                let columns: Vec<String> =
                    schema.fields().iter().map(|f| quoted(f.name())).collect();
                format!("INSERT INTO {name} ({}) {source}", columns.join(", "))
            }
            (true, _, IfExists::Replace) if target.temporary => {
                return Err(EngineError::NotSupported(
                    "replacing a temporary table by ingest (drop it first)".into(),
                ));
            }
            (true, _, IfExists::Replace) => {
                format!("CREATE OR REPLACE TABLE {name} AS {source}")
            }
        })
    }
}

/// The client's batches, read once by the statement's scan.
struct Incoming {
    schema: SchemaRef,
    rows: parking_lot::Mutex<Option<SendableRecordBatchStream>>,
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ingest stream")
    }
}

impl PartitionStream for Incoming {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        match self.rows.lock().take() {
            Some(rows) => rows,
            None => {
                let error = DataFusionError::Execution("the ingested rows are read once".into());
                Box::pin(RecordBatchStreamAdapter::new(
                    self.schema.clone(),
                    futures::stream::once(async move { Err(error) }),
                ))
            }
        }
    }
}
