//! `pg_catalog.pg_settings` as the session sees it: every setting the session knows with
//! its current value (after `SET`), plus the server's fixed limits drivers read from it
//! (pgjdbc's `getImportedKeys`/`getExportedKeys` fail without `max_index_keys`).
//!
//! Postgres defines the view over the function `pg_show_all_settings()`; tidepool does
//! the same: the parser sends `pg_settings` to that table function, which each session
//! registers again whenever its settings change.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray, Int32Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::error::Result;

use tidepool_engine::SessionSettings;

/// The table function behind `pg_settings`.
pub const FUNCTION: &str = "pg_show_all_settings";

/// Server limits reported in `pg_settings` but not settable.
const FIXED: &[(&str, &str, &str)] = &[
    ("block_size", "8192", "integer"),
    ("max_function_args", "100", "integer"),
    ("max_index_keys", "32", "integer"),
    ("segment_size", "131072", "integer"),
];

/// One row of `pg_settings`.
struct Row {
    name: String,
    value: String,
    context: &'static str,
    source: &'static str,
    vartype: &'static str,
}

/// `pg_show_all_settings()` over a snapshot of one session's settings.
#[derive(Debug)]
pub struct ShowAllSettings {
    table: Arc<MemTable>,
}

impl ShowAllSettings {
    pub fn new(settings: &SessionSettings) -> Result<Self> {
        let mut rows: Vec<Row> = settings
            .with_defaults()
            .into_iter()
            .map(|(name, value, default)| Row {
                source: if default.as_deref() == Some(value.as_str()) {
                    "default"
                } else {
                    "session"
                },
                vartype: vartype(&value),
                context: "user",
                name,
                value,
            })
            .collect();
        for (name, value, vartype) in FIXED {
            rows.push(Row {
                name: name.to_string(),
                value: value.to_string(),
                context: "internal",
                source: "default",
                vartype,
            });
        }
        rows.sort_by_key(|r| r.name.to_lowercase());
        let text = |f: &dyn Fn(&Row) -> Option<String>| {
            Arc::new(rows.iter().map(f).collect::<StringArray>()) as ArrayRef
        };
        let none = || text(&|_| None);
        let n = rows.len();
        let columns: Vec<ArrayRef> = vec![
            text(&|r| Some(r.name.clone())),
            text(&|r| Some(r.value.clone())),
            none(),
            none(),
            none(),
            none(),
            text(&|r| Some(r.context.to_string())),
            text(&|r| Some(r.vartype.to_string())),
            text(&|r| Some(r.source.to_string())),
            none(),
            none(),
            none(),
            text(&|r| Some(r.value.clone())),
            text(&|r| Some(r.value.clone())),
            none(),
            Arc::new(Int32Array::from(vec![None; n])),
            Arc::new(BooleanArray::from(vec![Some(false); n])),
        ];
        let text_field = |name: &str| Field::new(name, DataType::Utf8, true);
        let schema = Arc::new(Schema::new(vec![
            text_field("name"),
            text_field("setting"),
            text_field("unit"),
            text_field("category"),
            text_field("short_desc"),
            text_field("extra_desc"),
            text_field("context"),
            text_field("vartype"),
            text_field("source"),
            text_field("min_val"),
            text_field("max_val"),
            text_field("enumvals"),
            text_field("boot_val"),
            text_field("reset_val"),
            text_field("sourcefile"),
            Field::new("sourceline", DataType::Int32, true),
            Field::new("pending_restart", DataType::Boolean, true),
        ]));
        let batch = RecordBatch::try_new(schema.clone(), columns)?;
        Ok(ShowAllSettings {
            table: Arc::new(MemTable::try_new(schema, vec![vec![batch]])?),
        })
    }
}

fn vartype(value: &str) -> &'static str {
    if matches!(value, "on" | "off") {
        "bool"
    } else if value.parse::<i64>().is_ok() {
        "integer"
    } else {
        "string"
    }
}

impl ShowAllSettings {
    /// The rows as a table: what `pg_catalog.pg_settings` is outside a session (its
    /// columns in `pg_attribute`, a three-part name the parser does not redirect).
    pub fn table(&self) -> Arc<dyn TableProvider> {
        self.table.clone()
    }
}

impl TableFunctionImpl for ShowAllSettings {
    fn call_with_args(&self, _args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        Ok(self.table.clone())
    }
}
