//! Flight SQL metadata: server capabilities (GetSqlInfo), types (GetXdbcTypeInfo), and the
//! lake's catalogs, schemas and tables as the GetCatalogs / GetDbSchemas / GetTables
//! commands describe them.
//!
//! The lake is one catalog (`lake`); its schemas are the lake's folders plus `system`.
//! Readers (`[[users]] schemas = [...]`) only see their schemas. Keys are unknown to the
//! lake, so the key commands answer with their schema and no rows.

use std::sync::{Arc, LazyLock};

use arrow_flight::sql::metadata::{
    GetCatalogsBuilder, GetDbSchemasBuilder, GetTablesBuilder, SqlInfoData, SqlInfoDataBuilder,
    XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::{
    CommandGetDbSchemas, CommandGetTables, Nullable, Searchable, SqlInfo, SqlNullOrdering,
    SqlSupportedCaseSensitivity, SqlSupportedTransaction, XdbcDataType, XdbcDatetimeSubcode,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use tonic::Status;

use super::errors::status;
use crate::engine::{CATALOG, Engine, EngineError};
use crate::lake::Listing;

/// Table types GetTableTypes lists.
pub const TABLE_TYPES: &[&str] = &["TABLE", "VIEW", "SYSTEM TABLE"];

/// What GetSqlInfo answers.
static SQL_INFO: LazyLock<Result<SqlInfoData, String>> = LazyLock::new(|| {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "tidepool");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, "59");
    b.append(SqlInfo::FlightSqlServerReadOnly, false);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(
        SqlInfo::FlightSqlServerTransaction,
        SqlSupportedTransaction::Savepoint as i32,
    );
    b.append(SqlInfo::FlightSqlServerCancel, true);
    b.append(SqlInfo::FlightSqlServerBulkIngestion, false);
    b.append(SqlInfo::FlightSqlServerStatementTimeout, 0i32);
    b.append(SqlInfo::FlightSqlServerTransactionTimeout, 0i32);
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, true);
    b.append(SqlInfo::SqlDdlTable, true);
    b.append(
        SqlInfo::SqlIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityLowercase as i32,
    );
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(
        SqlInfo::SqlQuotedIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityCaseInsensitive as i32,
    );
    b.append(SqlInfo::SqlAllTablesAreSelectable, true);
    b.append(
        SqlInfo::SqlNullOrdering,
        SqlNullOrdering::SqlNullsSortedHigh as i32,
    );
    b.append(SqlInfo::SqlSearchStringEscape, "\\");
    b.append(SqlInfo::SqlSchemaTerm, "schema");
    b.append(SqlInfo::SqlProcedureTerm, "procedure");
    b.append(SqlInfo::SqlCatalogTerm, "catalog");
    b.append(SqlInfo::SqlCatalogAtStart, true);
    b.append(SqlInfo::SqlSupportsColumnAliasing, true);
    b.append(SqlInfo::SqlNullPlusNullIsNull, true);
    b.append(SqlInfo::SqlSupportsTableCorrelationNames, true);
    b.append(SqlInfo::SqlSupportsExpressionsInOrderBy, true);
    b.append(SqlInfo::SqlSupportsOrderByUnrelated, true);
    b.append(SqlInfo::SqlSupportsLikeEscapeClause, true);
    b.append(SqlInfo::SqlSupportsNonNullableColumns, true);
    b.append(SqlInfo::SqlStoredProceduresSupported, true);
    b.append(SqlInfo::SqlTransactionsSupported, true);
    b.append(SqlInfo::SqlMaxColumnNameLength, 63i64);
    b.append(
        SqlInfo::SqlKeywords,
        &[
            "call",
            "exec",
            "execute",
            "procedure",
            "qualify",
            "unnest",
            "explain",
        ][..],
    );
    b.append(
        SqlInfo::SqlStringFunctions,
        &[
            "lower",
            "upper",
            "trim",
            "ltrim",
            "rtrim",
            "substr",
            "substring",
            "length",
            "concat",
            "replace",
            "split_part",
            "starts_with",
            "regexp_replace",
            "lpad",
            "rpad",
        ][..],
    );
    b.append(
        SqlInfo::SqlNumericFunctions,
        &[
            "abs", "ceil", "floor", "round", "trunc", "power", "sqrt", "exp", "ln", "log", "mod",
            "random", "sign",
        ][..],
    );
    b.append(
        SqlInfo::SqlDatetimeFunctions,
        &[
            "now",
            "current_date",
            "current_timestamp",
            "date_trunc",
            "date_part",
            "extract",
            "to_timestamp",
            "to_date",
            "make_date",
        ][..],
    );
    b.build().map_err(|e| e.to_string())
});

/// What GetSqlInfo answers (built from constants; the unit test builds it).
pub fn sql_info() -> Result<&'static SqlInfoData, Status> {
    SQL_INFO
        .as_ref()
        .map_err(|e| Status::internal(format!("cannot build SqlInfo: {e}")))
}

fn xdbc(
    name: &str,
    data_type: XdbcDataType,
    column_size: Option<i32>,
    quoted: bool,
) -> XdbcTypeInfo {
    let subcode = match data_type {
        XdbcDataType::XdbcDate => Some(XdbcDatetimeSubcode::XdbcSubcodeYear), // 1 = ODBC SQL_CODE_DATE
        XdbcDataType::XdbcTimestamp => Some(XdbcDatetimeSubcode::XdbcSubcodeTimestamp),
        _ => None,
    };
    let numeric = matches!(
        data_type,
        XdbcDataType::XdbcBigint
            | XdbcDataType::XdbcInteger
            | XdbcDataType::XdbcSmallint
            | XdbcDataType::XdbcTinyint
            | XdbcDataType::XdbcDouble
            | XdbcDataType::XdbcReal
            | XdbcDataType::XdbcFloat
            | XdbcDataType::XdbcDecimal
            | XdbcDataType::XdbcNumeric
    );
    XdbcTypeInfo {
        type_name: name.to_string(),
        data_type,
        column_size,
        literal_prefix: quoted.then(|| "'".to_string()),
        literal_suffix: quoted.then(|| "'".to_string()),
        create_params: matches!(data_type, XdbcDataType::XdbcDecimal)
            .then(|| vec!["precision".to_string(), "scale".to_string()]),
        nullable: Nullable::NullabilityNullable,
        case_sensitive: matches!(data_type, XdbcDataType::XdbcVarchar),
        searchable: Searchable::Full,
        unsigned_attribute: numeric.then_some(false),
        fixed_prec_scale: false,
        auto_increment: numeric.then_some(false),
        local_type_name: Some(name.to_string()),
        minimum_scale: None,
        maximum_scale: matches!(data_type, XdbcDataType::XdbcDecimal).then_some(38),
        sql_data_type: data_type,
        datetime_subcode: subcode,
        num_prec_radix: numeric.then_some(10),
        interval_precision: None,
    }
}

/// What GetXdbcTypeInfo answers: the SQL types tables can have.
static XDBC_INFO: LazyLock<Result<XdbcTypeInfoData, String>> = LazyLock::new(|| {
    let mut b = XdbcTypeInfoDataBuilder::new();
    for info in [
        xdbc("boolean", XdbcDataType::XdbcBit, Some(1), false),
        xdbc("tinyint", XdbcDataType::XdbcTinyint, Some(3), false),
        xdbc("smallint", XdbcDataType::XdbcSmallint, Some(5), false),
        xdbc("integer", XdbcDataType::XdbcInteger, Some(10), false),
        xdbc("bigint", XdbcDataType::XdbcBigint, Some(19), false),
        xdbc("real", XdbcDataType::XdbcReal, Some(7), false),
        xdbc(
            "double precision",
            XdbcDataType::XdbcDouble,
            Some(15),
            false,
        ),
        xdbc("decimal", XdbcDataType::XdbcDecimal, Some(38), false),
        xdbc("varchar", XdbcDataType::XdbcVarchar, None, true),
        xdbc("bytea", XdbcDataType::XdbcVarbinary, None, true),
        xdbc("date", XdbcDataType::XdbcDate, Some(10), true),
        xdbc("timestamp", XdbcDataType::XdbcTimestamp, Some(26), true),
    ] {
        b.append(info);
    }
    b.build().map_err(|e| e.to_string())
});

/// What GetXdbcTypeInfo answers (built from constants; the unit test builds it).
pub fn xdbc_info() -> Result<&'static XdbcTypeInfoData, Status> {
    XDBC_INFO
        .as_ref()
        .map_err(|e| Status::internal(format!("cannot build XdbcTypeInfo: {e}")))
}

/// The schemas `user` may see, in order: the lake's, then `system`.
fn visible_schemas(listing: &Listing, engine: &Engine, user: &str) -> Vec<String> {
    let mut schemas: Vec<String> = listing.schemas.keys().cloned().collect();
    schemas.push("system".to_string());
    match engine.readable_schemas(user) {
        Some(allowed) => schemas
            .into_iter()
            .filter(|s| allowed.contains(s))
            .collect(),
        None => schemas,
    }
}

/// GetCatalogs: the one catalog.
pub fn catalogs() -> Result<RecordBatch, Status> {
    let mut b = GetCatalogsBuilder::new();
    b.append(CATALOG);
    b.build().map_err(built)
}

/// A metadata batch that could not be built (a bug, not bad input).
fn built(e: arrow_flight::error::FlightError) -> Status {
    Status::internal(format!("cannot build the metadata answer: {e}"))
}

/// GetDbSchemas, filtered as the command asks.
pub async fn db_schemas(
    engine: &Engine,
    user: &str,
    cmd: CommandGetDbSchemas,
) -> Result<RecordBatch, Status> {
    let listing = engine.lake().listing().await.map_err(lake_status)?;
    let mut b: GetDbSchemasBuilder = cmd.into_builder();
    for s in &visible_schemas(&listing, engine, user) {
        b.append(CATALOG, s);
    }
    b.build().map_err(built)
}

fn lake_status(e: crate::lake::LakeError) -> Status {
    status(&EngineError::from(e))
}

/// GetTables, filtered as the command asks, with Arrow schemas when asked for. The
/// patterns are applied here, before any table is opened for its schema (the builder
/// would filter again, after the fact).
pub async fn tables(
    engine: &Engine,
    user: &str,
    cmd: CommandGetTables,
) -> Result<RecordBatch, Status> {
    let include_schema = cmd.include_schema;
    let schema_pattern = cmd.db_schema_filter_pattern.clone();
    let table_pattern = cmd.table_name_filter_pattern.clone();
    let types: Vec<String> = cmd.table_types.iter().map(|t| t.to_uppercase()).collect();
    let catalog_ok = cmd.catalog.as_deref().is_none_or(|c| c == CATALOG);
    let mut b: GetTablesBuilder = cmd.into_builder();
    if !catalog_ok {
        return b.build().map_err(built);
    }
    let listing = engine.lake().listing().await.map_err(lake_status)?;
    let mut found: Vec<(String, String, &str)> = Vec::new();
    for schema in visible_schemas(&listing, engine, user) {
        if !schema_pattern.as_deref().is_none_or(|p| like(&schema, p)) {
            continue;
        }
        let mut names: Vec<(String, &str)> = Vec::new();
        if schema == "system" {
            names.extend(
                engine
                    .system_tables()
                    .into_iter()
                    .map(|t| (t, "SYSTEM TABLE")),
            );
        } else if let Some(s) = listing.schemas.get(&schema) {
            names.extend(s.tables.iter().map(|t| (t.clone(), "TABLE")));
            names.extend(s.external.iter().map(|t| (t.clone(), "TABLE")));
            names.extend(s.views.iter().map(|t| (t.clone(), "VIEW")));
        }
        names.sort();
        found.extend(
            names
                .into_iter()
                .filter(|(name, kind)| {
                    table_pattern.as_deref().is_none_or(|p| like(name, p))
                        && (types.is_empty() || types.iter().any(|t| t == kind))
                })
                .map(|(name, kind)| (schema.clone(), name, kind)),
        );
    }
    let empty: SchemaRef = Arc::new(Schema::empty());
    for (schema, name, kind) in found {
        let table_schema = if include_schema {
            match engine.table_schema(&schema, &name).await {
                Ok(Some(s)) => super::columns::client_schema(&s).unwrap_or(s),
                Ok(None) => continue,
                Err(e) => {
                    tracing::debug!(%schema, %name, error = %e, "flight: table schema unavailable");
                    empty.clone()
                }
            }
        } else {
            empty.clone()
        };
        b.append(CATALOG, &schema, &name, kind, &table_schema)
            .map_err(built)?;
    }
    b.build().map_err(built)
}

/// SQL LIKE with `%` and `_` (no escapes), as Flight SQL filter patterns use.
pub fn like(text: &str, pattern: &str) -> bool {
    fn go(t: &[char], p: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('%', rest)) => (0..=t.len()).any(|i| go(&t[i..], rest)),
            Some(('_', rest)) => !t.is_empty() && go(&t[1..], rest),
            Some((c, rest)) => t.first() == Some(c) && go(&t[1..], rest),
        }
    }
    let t: Vec<char> = text.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    go(&t, &p)
}

/// The columns of GetPrimaryKeys.
pub fn primary_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
}

/// The columns of GetExportedKeys, GetImportedKeys and GetCrossReference.
pub fn foreign_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("pk_catalog_name", DataType::Utf8, true),
        Field::new("pk_db_schema_name", DataType::Utf8, true),
        Field::new("pk_table_name", DataType::Utf8, false),
        Field::new("pk_column_name", DataType::Utf8, false),
        Field::new("fk_catalog_name", DataType::Utf8, true),
        Field::new("fk_db_schema_name", DataType::Utf8, true),
        Field::new("fk_table_name", DataType::Utf8, false),
        Field::new("fk_column_name", DataType::Utf8, false),
        Field::new("key_sequence", DataType::Int32, false),
        Field::new("fk_key_name", DataType::Utf8, true),
        Field::new("pk_key_name", DataType::Utf8, true),
        Field::new("update_rule", DataType::UInt8, false),
        Field::new("delete_rule", DataType::UInt8, false),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns() {
        assert!(like("orders", "ord%"));
        assert!(like("orders", "%"));
        assert!(like("orders", "o_ders"));
        assert!(!like("orders", "o_ders_"));
        assert!(!like("orders", "x%"));
        assert!(like("", "%"));
    }

    #[test]
    fn static_metadata_builds() {
        let info = sql_info()
            .unwrap()
            .record_batch(vec![SqlInfo::FlightSqlServerName as u32])
            .unwrap();
        assert_eq!(info.num_rows(), 1);
        let types = xdbc_info().unwrap().record_batch(None).unwrap();
        assert_eq!(types.num_rows(), 12);
    }
}
