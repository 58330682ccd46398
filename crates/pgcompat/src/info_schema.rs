//! `information_schema` tables that BI tools read and DataFusion answers differently or
//! not at all. `columns` reports Postgres types (`bigint`, `numeric`, `timestamp with time
//! zone`, `ARRAY`, with `udt_name`, precision and scale) instead of Arrow type names;
//! `table_constraints`, `key_column_usage`, `referential_constraints`,
//! `constraint_column_usage` and `check_constraints` list the lake's keys
//! ([`crate::keys`]). The parser sends queries of these names to
//! `system.<name>` (see [`INFORMATION_SCHEMA_VIEWS`]). `tables` stays DataFusion's (it sees the
//! session's temporary tables), widened to Postgres' columns by [`tables_view`].

use std::sync::{Arc, Weak};

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Int32Builder, RecordBatch, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::error::{DataFusionError, Result};
use pgwire::api::Type;

use tidepool_engine::system::{AsyncSystemTable, INFORMATION_SCHEMA_VIEWS};
use tidepool_engine::{CATALOG, Engine};

/// `information_schema.tables` with Postgres' twelve columns: DataFusion's four plus
/// `is_insertable_into` (base tables outside the catalogs), `is_typed` and NULLs. The
/// parser puts this in place of a plain `information_schema.tables`. Parsed once.
pub fn tables_view() -> Option<Box<datafusion::sql::sqlparser::ast::Query>> {
    const SQL: &str = "SELECT table_catalog, table_schema, table_name, table_type, \
         CAST(NULL AS VARCHAR) AS self_referencing_column_name, \
         CAST(NULL AS VARCHAR) AS reference_generation, \
         CAST(NULL AS VARCHAR) AS user_defined_type_catalog, \
         CAST(NULL AS VARCHAR) AS user_defined_type_schema, \
         CAST(NULL AS VARCHAR) AS user_defined_type_name, \
         CASE WHEN table_type = 'BASE TABLE' \
              AND table_schema NOT IN ('pg_catalog', 'information_schema', 'system') \
              THEN 'YES' ELSE 'NO' END AS is_insertable_into, \
         'NO' AS is_typed, \
         CAST(NULL AS VARCHAR) AS commit_action \
         FROM information_schema.tables";
    static VIEW: std::sync::LazyLock<Option<Box<datafusion::sql::sqlparser::ast::Query>>> =
        std::sync::LazyLock::new(|| view_query(SQL));
    VIEW.clone()
}

/// `information_schema.views` with Postgres' ten columns and only views: DataFusion's
/// `definition` as `view_definition`; lake views are read-only (`check_option` `NONE`,
/// not updatable).
pub fn views_view() -> Option<Box<datafusion::sql::sqlparser::ast::Query>> {
    // DataFusion's `views` lists every table (`definition` NULL for base tables).
    const SQL: &str = "SELECT v.table_catalog, v.table_schema, v.table_name, \
         v.definition AS view_definition, 'NONE' AS check_option, 'NO' AS is_updatable, \
         'NO' AS is_insertable_into, 'NO' AS is_trigger_updatable, \
         'NO' AS is_trigger_deletable, 'NO' AS is_trigger_insertable_into \
         FROM information_schema.views v JOIN information_schema.tables t \
         ON v.table_catalog = t.table_catalog AND v.table_schema = t.table_schema \
         AND v.table_name = t.table_name WHERE t.table_type = 'VIEW'";
    static VIEW: std::sync::LazyLock<Option<Box<datafusion::sql::sqlparser::ast::Query>>> =
        std::sync::LazyLock::new(|| view_query(SQL));
    VIEW.clone()
}

/// `information_schema.character_sets`: the one character set tidepool speaks, as
/// PostgreSQL describes a UTF8 database (tools probe it for the server's encoding).
pub fn character_sets_view() -> Option<Box<datafusion::sql::sqlparser::ast::Query>> {
    const SQL: &str = "SELECT CAST(NULL AS VARCHAR) AS character_set_catalog, \
         CAST(NULL AS VARCHAR) AS character_set_schema, 'UTF8' AS character_set_name, \
         'UCS' AS character_repertoire, 'UTF8' AS form_of_use, \
         'lake' AS default_collate_catalog, 'pg_catalog' AS default_collate_schema, \
         'C' AS default_collate_name";
    static VIEW: std::sync::LazyLock<Option<Box<datafusion::sql::sqlparser::ast::Query>>> =
        std::sync::LazyLock::new(|| view_query(SQL));
    VIEW.clone()
}

/// The query of a catalog view's SQL (`None` if it does not parse: a unit test parses each).
pub(crate) fn view_query(sql: &str) -> Option<Box<datafusion::sql::sqlparser::ast::Query>> {
    use datafusion::sql::sqlparser::ast::Statement;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    match Parser::parse_sql(&PostgreSqlDialect {}, sql).map(|mut s| s.pop()) {
        Ok(Some(Statement::Query(q))) => Some(q),
        _ => None,
    }
}

/// Registers the tables of this module in `system`.
pub fn register(engine: &Arc<Engine>) {
    engine.register_gathered_system_table(
        "columns",
        Arc::new(Columns {
            engine: Arc::downgrade(engine),
        }),
    );
    for (view, name, columns) in crate::keys::View::ALL {
        engine.register_gathered_system_table(
            name,
            Arc::new(crate::keys::KeyView::new(
                Arc::downgrade(engine),
                view,
                columns,
            )),
        );
    }
}

/// How a column's type reads in `information_schema.columns`.
#[derive(Debug, Default, PartialEq)]
pub struct ColumnType {
    pub data_type: String,
    pub udt_name: String,
    pub numeric_precision: Option<i32>,
    pub numeric_precision_radix: Option<i32>,
    pub numeric_scale: Option<i32>,
    pub datetime_precision: Option<i32>,
    /// The `n` of `varchar(n)` / `char(n)`.
    pub character_maximum_length: Option<i32>,
}

/// [`column_type`] of a table's column, with its declared `varchar(n)` / `char(n)`.
pub fn field_type(f: &Field) -> ColumnType {
    match tidepool_lake::CharLength::of_arrow(f) {
        Some(l) => ColumnType {
            data_type: if l.fixed {
                "character"
            } else {
                "character varying"
            }
            .to_string(),
            udt_name: if l.fixed { "bpchar" } else { "varchar" }.to_string(),
            character_maximum_length: i32::try_from(l.length).ok(),
            ..Default::default()
        },
        None => column_type(f.data_type()),
    }
}

/// The Postgres description of an Arrow type, as the wire protocol sends it.
pub fn column_type(t: &DataType) -> ColumnType {
    let pg = arrow_pg::datatypes::into_pg_type(t).unwrap_or(Type::TEXT);
    let data_type = match pg {
        Type::BOOL => "boolean",
        Type::INT2 => "smallint",
        Type::INT4 => "integer",
        Type::INT8 => "bigint",
        Type::FLOAT4 => "real",
        Type::FLOAT8 => "double precision",
        Type::NUMERIC => "numeric",
        Type::TEXT => "text",
        Type::VARCHAR => "character varying",
        Type::BPCHAR => "character",
        Type::CHAR => "\"char\"",
        Type::BYTEA => "bytea",
        Type::DATE => "date",
        Type::TIME => "time without time zone",
        Type::TIMETZ => "time with time zone",
        Type::TIMESTAMP => "timestamp without time zone",
        Type::TIMESTAMPTZ => "timestamp with time zone",
        Type::INTERVAL => "interval",
        Type::JSON => "json",
        Type::JSONB => "jsonb",
        Type::UUID => "uuid",
        Type::OID => "oid",
        ref other if other.name().starts_with('_') => "ARRAY",
        _ => "USER-DEFINED",
    }
    .to_string();
    let mut out = ColumnType {
        data_type,
        udt_name: pg.name().to_string(),
        ..Default::default()
    };
    let binary = |bits: i32| (Some(bits), Some(2), Some(0));
    let (p, r, s) = match (&pg, t) {
        (&Type::INT2, _) => binary(16),
        (&Type::INT4, _) => binary(32),
        (&Type::INT8, _) => binary(64),
        (&Type::FLOAT4, _) => (Some(24), Some(2), None),
        (&Type::FLOAT8, _) => (Some(53), Some(2), None),
        (&Type::NUMERIC, DataType::Decimal128(p, s) | DataType::Decimal256(p, s)) => {
            (Some(*p as i32), Some(10), Some(*s as i32))
        }
        (&Type::NUMERIC, _) => (None, Some(10), None),
        _ => (None, None, None),
    };
    out.numeric_precision = p;
    out.numeric_precision_radix = r;
    out.numeric_scale = s;
    out.datetime_precision = match t {
        DataType::Date32 | DataType::Date64 => Some(0),
        DataType::Timestamp(unit, _) | DataType::Time64(unit) | DataType::Time32(unit) => {
            Some(match unit {
                TimeUnit::Second => 0,
                TimeUnit::Millisecond => 3,
                TimeUnit::Microsecond | TimeUnit::Nanosecond => 6,
            })
        }
        _ => None,
    };
    out
}

/// `information_schema.columns` over the lake's tables, views and external tables and
/// `system`.
#[derive(Debug)]
struct Columns {
    engine: Weak<Engine>,
}

/// PostgreSQL 15's columns of `information_schema.columns`, in its order (integer or text).
const COLUMNS: &[(&str, bool)] = &[
    ("table_catalog", false),
    ("table_schema", false),
    ("table_name", false),
    ("column_name", false),
    ("ordinal_position", true),
    ("column_default", false),
    ("is_nullable", false),
    ("data_type", false),
    ("character_maximum_length", true),
    ("character_octet_length", true),
    ("numeric_precision", true),
    ("numeric_precision_radix", true),
    ("numeric_scale", true),
    ("datetime_precision", true),
    ("interval_type", false),
    ("interval_precision", true),
    ("character_set_catalog", false),
    ("character_set_schema", false),
    ("character_set_name", false),
    ("collation_catalog", false),
    ("collation_schema", false),
    ("collation_name", false),
    ("domain_catalog", false),
    ("domain_schema", false),
    ("domain_name", false),
    ("udt_catalog", false),
    ("udt_schema", false),
    ("udt_name", false),
    ("scope_catalog", false),
    ("scope_schema", false),
    ("scope_name", false),
    ("maximum_cardinality", true),
    ("dtd_identifier", false),
    ("is_self_referencing", false),
    ("is_identity", false),
    ("identity_generation", false),
    ("identity_start", false),
    ("identity_increment", false),
    ("identity_maximum", false),
    ("identity_minimum", false),
    ("identity_cycle", false),
    ("is_generated", false),
    ("generation_expression", false),
    ("is_updatable", false),
];

/// The position of a column of [`COLUMNS`].
fn column_index(name: &str) -> usize {
    COLUMNS
        .iter()
        .position(|(n, _)| *n == name)
        .unwrap_or_else(|| unreachable!("{name} is a column of information_schema.columns"))
}

#[async_trait]
impl AsyncSystemTable for Columns {
    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            COLUMNS
                .iter()
                .map(|(n, int)| {
                    Field::new(
                        *n,
                        if *int {
                            DataType::Int32
                        } else {
                            DataType::Utf8
                        },
                        true,
                    )
                })
                .collect::<Vec<_>>(),
        ))
    }

    async fn rows(&self, session: &dyn datafusion::catalog::Session) -> Result<RecordBatch> {
        let schema = self.schema();
        let Some(engine) = self.engine.upgrade() else {
            return Ok(RecordBatch::new_empty(schema));
        };
        let listing = engine
            .lake()
            .listing()
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let mut relations: Vec<(String, String, bool)> = Vec::new();
        for (s, l) in &listing.schemas {
            for t in l.tables.iter().chain(&l.external) {
                relations.push((s.clone(), t.clone(), true));
            }
            for v in &l.views {
                relations.push((s.clone(), v.clone(), false));
            }
        }
        for t in engine.system_tables() {
            relations.push(("system".into(), t, false));
        }
        // Declared column defaults of lake tables, as SQL (column_default).
        let mut defaults: std::collections::HashMap<(String, String, String), String> =
            Default::default();
        for (s, l) in &listing.schemas {
            for t in &l.tables {
                if let Ok(d) = engine.lake().declared(s, t).await {
                    for (c, e) in d.defaults {
                        defaults.insert((s.clone(), t.clone(), c), e);
                    }
                }
            }
        }
        let mut text: Vec<StringBuilder> =
            (0..COLUMNS.len()).map(|_| StringBuilder::new()).collect();
        let mut ints: Vec<Int32Builder> = (0..COLUMNS.len()).map(|_| Int32Builder::new()).collect();
        let mut schemas = Vec::with_capacity(relations.len());
        for (s, t, updatable) in relations {
            if s == "system" && INFORMATION_SCHEMA_VIEWS.contains(&t.as_str()) {
                continue;
            }
            match engine.table_schema(&s, &t).await {
                Ok(Some(schema)) => schemas.push((s, t, updatable, schema)),
                // A table that cannot be opened (being written, broken) is left out
                // rather than failing the whole listing.
                Ok(None) | Err(_) => continue,
            }
        }
        // The session's temporary tables, as PostgreSQL lists them (dbt reads the
        // columns of its temporary relations here, by name alone).
        for (t, schema) in tidepool_engine::system::temp_tables(session).await {
            schemas.push((tidepool_engine::TEMP_SCHEMA.to_string(), t, true, schema));
        }
        for (s, t, updatable, fields) in schemas {
            for (i, f) in fields.fields().iter().enumerate() {
                let ty = field_type(f);
                let position = (i + 1).to_string();
                let mut texts: Vec<Option<&str>> = vec![None; COLUMNS.len()];
                let mut numbers: Vec<Option<i32>> = vec![None; COLUMNS.len()];
                for (name, value) in [
                    ("table_catalog", Some(CATALOG)),
                    ("table_schema", Some(s.as_str())),
                    ("table_name", Some(t.as_str())),
                    ("column_name", Some(f.name().as_str())),
                    (
                        "column_default",
                        defaults
                            .get(&(s.clone(), t.clone(), f.name().clone()))
                            .map(String::as_str),
                    ),
                    (
                        "is_nullable",
                        Some(if f.is_nullable() { "YES" } else { "NO" }),
                    ),
                    ("data_type", Some(ty.data_type.as_str())),
                    ("udt_catalog", Some(CATALOG)),
                    ("udt_schema", Some("pg_catalog")),
                    ("udt_name", Some(ty.udt_name.as_str())),
                    ("dtd_identifier", Some(position.as_str())),
                    ("is_self_referencing", Some("NO")),
                    ("is_identity", Some("NO")),
                    ("identity_cycle", Some("NO")),
                    ("is_generated", Some("NEVER")),
                    ("is_updatable", Some(if updatable { "YES" } else { "NO" })),
                ] {
                    texts[column_index(name)] = value;
                }
                for (name, value) in [
                    ("ordinal_position", Some(i as i32 + 1)),
                    ("character_maximum_length", ty.character_maximum_length),
                    (
                        "character_octet_length",
                        ty.character_maximum_length.map(|n| n.saturating_mul(4)),
                    ),
                    ("numeric_precision", ty.numeric_precision),
                    ("numeric_precision_radix", ty.numeric_precision_radix),
                    ("numeric_scale", ty.numeric_scale),
                    ("datetime_precision", ty.datetime_precision),
                ] {
                    numbers[column_index(name)] = value;
                }
                for (c, (_, int)) in COLUMNS.iter().enumerate() {
                    if *int {
                        ints[c].append_option(numbers[c]);
                    } else {
                        text[c].append_option(texts[c]);
                    }
                }
            }
        }
        let columns: Vec<ArrayRef> = COLUMNS
            .iter()
            .enumerate()
            .map(|(c, (_, int))| -> ArrayRef {
                if *int {
                    Arc::new(ints[c].finish())
                } else {
                    Arc::new(text[c].finish())
                }
            })
            .collect();
        Ok(RecordBatch::try_new(schema, columns)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tables_view_parses() {
        assert!(tables_view().is_some());
        assert!(views_view().is_some());
        assert!(character_sets_view().is_some());
    }

    #[test]
    fn postgres_names_for_arrow_types() {
        let ty = column_type(&DataType::Decimal128(12, 2));
        assert_eq!(
            (
                ty.data_type.as_str(),
                ty.udt_name.as_str(),
                ty.numeric_precision,
                ty.numeric_scale
            ),
            ("numeric", "numeric", Some(12), Some(2))
        );
        let tz = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        assert_eq!(column_type(&tz).data_type, "timestamp with time zone");
        assert_eq!(column_type(&tz).datetime_precision, Some(6));
        assert_eq!(column_type(&DataType::Utf8View).data_type, "text");
        assert_eq!(column_type(&DataType::Int64).udt_name, "int8");
        let list = DataType::List(Arc::new(Field::new("element", DataType::Utf8, true)));
        assert_eq!(
            (
                column_type(&list).data_type.as_str(),
                column_type(&list).udt_name.as_str()
            ),
            ("ARRAY", "_text")
        );
    }
}
