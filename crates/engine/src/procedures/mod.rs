//! Stored procedures: `CREATE PROCEDURE schema.name(p TYPE [DEFAULT v], ...) AS <statements>`,
//! called with `CALL`, T-SQL `EXEC`, or as a table function in `FROM`.
//!
//! A definition is kept in the lake (`_tidepool/procedures/<schema>/<name>.sql`) so every
//! tidepool serving the lake sees it; [`Registry`] caches parsed definitions and re-reads
//! one at most once a second. Parameters in the body are written `:name` (or `$name`) and
//! are bound as typed values: the body is planned once per call with DataFusion's named
//! placeholders replaced by the call's arguments, never by splicing text.

mod bind;
pub mod call_params;
pub mod table_fn;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::ast::Statement;
use parking_lot::Mutex;

pub use bind::{
    bind_call, bind_values, exec_to_call, named_placeholders, qualify_procedure_calls, render,
};

/// One parameter of a procedure.
#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    /// The type as written (`BIGINT`, `DATE`...).
    pub sql_type: String,
    pub data_type: DataType,
    /// The default, already of `data_type`; `None`: the argument is required.
    pub default: Option<ScalarValue>,
    /// The default as written.
    pub default_sql: Option<String>,
}

/// A parsed procedure.
#[derive(Debug)]
pub struct Procedure {
    pub schema: String,
    pub name: String,
    pub params: Vec<Param>,
    /// The body's statements, with `$name` placeholders.
    pub body: Vec<Statement>,
    /// Columns of the last statement's rows, when it returns rows and could be planned.
    pub result: Option<SchemaRef>,
    /// The defining file, when deployed from `views/`.
    pub file: Option<String>,
    /// The user who created it over SQL, whose rights its body runs with; `None` when
    /// the server deployed it (from `views/`) or no users are configured.
    pub owner: Option<String>,
    /// The stored definition.
    pub definition: String,
}

impl Procedure {
    /// `gold.customer_orders(customer_id BIGINT, since DATE DEFAULT '2010-01-01')`.
    pub fn signature(&self) -> String {
        let params: Vec<String> = self
            .params
            .iter()
            .map(|p| match &p.default_sql {
                Some(d) => format!("{} {} DEFAULT {d}", p.name, p.sql_type),
                None => format!("{} {}", p.name, p.sql_type),
            })
            .collect();
        format!("{}.{}({})", self.schema, self.name, params.join(", "))
    }
}

/// The `-- file: <path>` line a definition deployed from a file starts with.
pub const FILE_MARKER: &str = "-- file: ";

/// The `-- owner: <user>` line of a definition created over SQL by a configured user.
pub const OWNER_MARKER: &str = "-- owner: ";

/// The owner named in a definition's leading comment lines, if any.
pub fn owner_of(definition: &str) -> Option<String> {
    definition
        .lines()
        .take_while(|l| l.starts_with("--"))
        .find_map(|l| l.strip_prefix(OWNER_MARKER))
        .map(|o| o.trim().to_string())
}

/// The file named on a definition's first line, if any.
pub fn file_of(definition: &str) -> Option<String> {
    definition
        .lines()
        .next()
        .and_then(|l| l.strip_prefix(FILE_MARKER))
        .map(|f| f.trim().to_string())
}

struct Cached {
    procedure: Arc<Procedure>,
    checked: Instant,
}

/// Parsed procedures by (schema, name), re-checked against the lake at most once per
/// [`Registry::FRESH`].
#[derive(Default)]
pub struct Registry {
    cache: Mutex<HashMap<(String, String), Cached>>,
}

impl Registry {
    /// How long a cached definition is used without looking at the lake again.
    pub const FRESH: Duration = Duration::from_secs(1);

    /// The cached procedure if it was checked within [`Registry::FRESH`].
    pub fn fresh(&self, schema: &str, name: &str) -> Option<Arc<Procedure>> {
        let cache = self.cache.lock();
        cache
            .get(&(schema.to_string(), name.to_string()))
            .filter(|c| c.checked.elapsed() < Self::FRESH)
            .map(|c| c.procedure.clone())
    }

    /// The cached procedure whatever its age (table functions plan synchronously).
    pub fn cached(&self, schema: &str, name: &str) -> Option<Arc<Procedure>> {
        self.cache
            .lock()
            .get(&(schema.to_string(), name.to_string()))
            .map(|c| c.procedure.clone())
    }

    /// The cached procedure if its definition is still `definition`, marking it checked.
    pub fn same(&self, schema: &str, name: &str, definition: &str) -> Option<Arc<Procedure>> {
        let mut cache = self.cache.lock();
        let c = cache.get_mut(&(schema.to_string(), name.to_string()))?;
        if c.procedure.definition != definition {
            return None;
        }
        c.checked = Instant::now();
        Some(c.procedure.clone())
    }

    pub fn insert(&self, procedure: Arc<Procedure>) {
        self.cache.lock().insert(
            (procedure.schema.clone(), procedure.name.clone()),
            Cached {
                procedure,
                checked: Instant::now(),
            },
        );
    }

    pub fn remove(&self, schema: &str, name: &str) {
        self.cache
            .lock()
            .remove(&(schema.to_string(), name.to_string()));
    }
}

/// `system.procedures`: every procedure of the lake with its signature, result columns,
/// defining file and definition.
#[derive(Debug)]
pub struct ProceduresTable {
    pub engine: std::sync::Weak<super::Engine>,
}

impl ProceduresTable {
    fn columns() -> SchemaRef {
        use datafusion::arrow::datatypes::{Field, Schema};
        Arc::new(Schema::new(vec![
            Field::new("schema", DataType::Utf8, false),
            Field::new("name", DataType::Utf8, false),
            Field::new("signature", DataType::Utf8, false),
            Field::new("parameters", DataType::Utf8, false),
            Field::new("returns", DataType::Utf8, true),
            Field::new("statements", DataType::Int64, false),
            Field::new("file", DataType::Utf8, true),
            Field::new("definition", DataType::Utf8, false),
            Field::new("error", DataType::Utf8, true),
        ]))
    }
}

#[async_trait::async_trait]
impl super::system::AsyncSystemTable for ProceduresTable {
    fn schema(&self) -> SchemaRef {
        Self::columns()
    }

    async fn rows(
        &self,
        _session: &dyn datafusion::catalog::Session,
    ) -> datafusion::error::Result<datafusion::arrow::record_batch::RecordBatch> {
        use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray};
        let mut rows: Vec<[Option<String>; 9]> = Vec::new();
        if let Some(engine) = self.engine.upgrade() {
            let listing = engine
                .lake()
                .listing()
                .await
                .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
            for (schema, l) in &listing.schemas {
                for name in &l.procedures {
                    let row = match Box::pin(engine.procedure(schema, name)).await {
                        Ok(Some(p)) => [
                            Some(p.schema.clone()),
                            Some(p.name.clone()),
                            Some(p.signature()),
                            Some(
                                p.params
                                    .iter()
                                    .map(|q| format!("{} {}", q.name, q.sql_type))
                                    .collect::<Vec<_>>()
                                    .join(", "),
                            ),
                            p.result.as_ref().map(|s| {
                                s.fields()
                                    .iter()
                                    .map(|f| format!("{} {}", f.name(), sql_type(f.data_type())))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            }),
                            Some(p.body.len().to_string()),
                            p.file.clone(),
                            Some(p.definition.clone()),
                            None,
                        ],
                        Ok(None) => continue,
                        Err(e) => [
                            Some(schema.clone()),
                            Some(name.clone()),
                            Some(format!("{schema}.{name}")),
                            Some(String::new()),
                            None,
                            Some("0".into()),
                            None,
                            Some(String::new()),
                            Some(e.message()),
                        ],
                    };
                    rows.push(row);
                }
            }
        }
        let text = |k: usize| -> ArrayRef {
            Arc::new(StringArray::from(
                rows.iter().map(|r| r[k].clone()).collect::<Vec<_>>(),
            ))
        };
        let statements: ArrayRef = Arc::new(Int64Array::from(
            rows.iter()
                .map(|r| r[5].as_deref().and_then(|s| s.parse().ok()).unwrap_or(0))
                .collect::<Vec<i64>>(),
        ));
        Ok(datafusion::arrow::record_batch::RecordBatch::try_new(
            Self::columns(),
            vec![
                text(0),
                text(1),
                text(2),
                text(3),
                text(4),
                statements,
                text(6),
                text(7),
                text(8),
            ],
        )?)
    }
}

/// A column type as SQL names it.
pub fn sql_type(t: &DataType) -> String {
    match t {
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 | DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INTEGER".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::Float32 => "REAL".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => "TEXT".into(),
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        DataType::Timestamp(_, None) => "TIMESTAMP".into(),
        DataType::Timestamp(_, Some(_)) => "TIMESTAMPTZ".into(),
        DataType::Decimal128(p, s) => format!("NUMERIC({p},{s})"),
        other => other.to_string(),
    }
}
