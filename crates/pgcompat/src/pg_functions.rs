//! Postgres functions that drivers put in their catalog queries and that neither
//! DataFusion nor datafusion-pg-catalog provides: `pg_get_serial_sequence` (no sequences:
//! NULL), `pg_get_triggerdef` (none exist: NULL),
//! `pg_collation_is_visible` / `pg_type_is_visible` (true), `pg_is_other_temp_schema` (false), `obj_description` / `col_description` (NULL),
//! `pg_size_pretty`, `pg_table_size` / `pg_indexes_size` / `pg_database_size` (NULL:
//! not tracked), `pg_advisory_unlock_all` (no advisory locks),
//! `format()` (`%s %I %L`), and `json_build_object`, which SQLAlchemy builds identity and collation details with.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StringBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility, create_udf,
};

/// `name(oid) -> boolean` that always answers `value`.
fn constant_bool(name: &str, value: bool) -> ScalarUDF {
    create_udf(
        name,
        vec![DataType::Int64],
        DataType::Boolean,
        Volatility::Stable,
        Arc::new(move |_args: &[ColumnarValue]| {
            Ok(ColumnarValue::Scalar(ScalarValue::Boolean(Some(value))))
        }),
    )
}

/// Every function of this module.
pub fn udfs() -> Vec<ScalarUDF> {
    vec![
        create_udf(
            "pg_get_serial_sequence",
            vec![DataType::Utf8, DataType::Utf8],
            DataType::Utf8,
            Volatility::Stable,
            Arc::new(|_args: &[ColumnarValue]| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)))),
        ),
        constant_bool("pg_collation_is_visible", true),
        // Objects tidepool has only the built-in ones of, all in pg_catalog, always on
        // the path (psql's \\dc, \\do, \\dF...).
        constant_bool("pg_conversion_is_visible", true),
        constant_bool("pg_operator_is_visible", true),
        constant_bool("pg_opclass_is_visible", true),
        constant_bool("pg_opfamily_is_visible", true),
        constant_bool("pg_statistics_obj_is_visible", true),
        constant_bool("pg_ts_config_is_visible", true),
        constant_bool("pg_ts_dict_is_visible", true),
        constant_bool("pg_ts_parser_is_visible", true),
        constant_bool("pg_ts_template_is_visible", true),
        // No temporary schema is another backend's, and this session's has no oid until
        // it creates a temporary table (PostgreSQL answers 0 then too; ADBC's
        // `adbc_get_objects` filters schemas with it).
        create_udf(
            "pg_my_temp_schema",
            vec![],
            DataType::Int32,
            Volatility::Stable,
            Arc::new(|_args: &[ColumnarValue]| {
                Ok(ColumnarValue::Scalar(ScalarValue::Int32(Some(0))))
            }),
        ),
        // Tablespaces are the two built-in ones, without a directory of their own
        // (psql's \\db).
        create_udf(
            "pg_tablespace_location",
            vec![DataType::Int64],
            DataType::Utf8,
            Volatility::Stable,
            Arc::new(|_args: &[ColumnarValue]| {
                Ok(ColumnarValue::Scalar(ScalarValue::Utf8(
                    Some(String::new()),
                )))
            }),
        ),
        // The one encoding tidepool speaks (psql's \\dO): UTF8 is 6, others -1.
        create_udf(
            "pg_char_to_encoding",
            vec![DataType::Utf8],
            DataType::Int32,
            Volatility::Stable,
            Arc::new(|args: &[ColumnarValue]| {
                let code = |s: &str| {
                    let s = s.to_ascii_uppercase().replace(['-', '_'], "");
                    if s == "UTF8" || s == "UNICODE" { 6 } else { -1 }
                };
                match &args[0] {
                    ColumnarValue::Scalar(v) => {
                        let text = match v.cast_to(&DataType::Utf8)? {
                            ScalarValue::Utf8(t) => t,
                            _ => None,
                        };
                        Ok(ColumnarValue::Scalar(ScalarValue::Int32(
                            text.as_deref().map(code),
                        )))
                    }
                    ColumnarValue::Array(a) => {
                        let a = datafusion::arrow::compute::cast(a, &DataType::Utf8)?;
                        let a = datafusion::arrow::array::AsArray::as_string::<i32>(&a);
                        let out: datafusion::arrow::array::Int32Array =
                            a.iter().map(|v| v.map(code)).collect();
                        Ok(ColumnarValue::Array(Arc::new(out)))
                    }
                }
            }),
        ),
        // Its inverse, with PostgreSQL's name of encoding 6 (`UTF8`; datafusion-pg-catalog
        // answers `UTF-8`, which Npgsql's GetSchema("Databases") passes on to users).
        create_udf(
            "pg_encoding_to_char",
            vec![DataType::Int32],
            DataType::Utf8,
            Volatility::Stable,
            Arc::new(|args: &[ColumnarValue]| {
                let name = |code: i32| if code == 6 { "UTF8" } else { "" };
                match &args[0] {
                    ColumnarValue::Scalar(v) => {
                        let code = match v.cast_to(&DataType::Int32)? {
                            ScalarValue::Int32(c) => c,
                            _ => None,
                        };
                        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(
                            code.map(|c| name(c).to_string()),
                        )))
                    }
                    ColumnarValue::Array(a) => {
                        let a = datafusion::arrow::compute::cast(a, &DataType::Int32)?;
                        let a = datafusion::arrow::array::AsArray::as_primitive::<
                            datafusion::arrow::datatypes::Int32Type,
                        >(&a);
                        let out: datafusion::arrow::array::StringArray =
                            a.iter().map(|v| v.map(name)).collect();
                        Ok(ColumnarValue::Array(Arc::new(out)))
                    }
                }
            }),
        ),
        tidepool_engine::constant_text_udf("getdatabaseencoding", "UTF8".to_string()),
        // Objects are not described by name (psql's \\dx+ lists an extension's
        // members with it; tidepool's extensions have none).
        ScalarUDF::new_from_impl(NullText {
            name: "pg_describe_object",
            signature: Signature::variadic_any(Volatility::Stable),
        }),
        // A tidepool server is never a standby (Npgsql's GetSchema("Databases")).
        create_udf(
            "pg_is_in_recovery",
            vec![],
            DataType::Boolean,
            Volatility::Stable,
            Arc::new(|_args: &[ColumnarValue]| {
                Ok(ColumnarValue::Scalar(ScalarValue::Boolean(Some(false))))
            }),
        ),
        // dbt docs generate: temporary schemas are the session's own (`pg_temp`), never
        // another backend's.
        constant_bool("pg_is_other_temp_schema", false),
        tidepool_engine::constant_text_udf("pg_advisory_unlock_all", String::new()),
        // psql's `+` describe variants.
        create_udf(
            "pg_size_pretty",
            vec![DataType::Int64],
            DataType::Utf8,
            Volatility::Immutable,
            Arc::new(size_pretty),
        ),
        create_udf(
            "pg_type_is_visible",
            vec![DataType::Int64],
            DataType::Boolean,
            Volatility::Stable,
            Arc::new(|_args: &[ColumnarValue]| {
                Ok(ColumnarValue::Scalar(ScalarValue::Boolean(Some(true))))
            }),
        ),
        ScalarUDF::new_from_impl(NullText {
            name: "obj_description",
            signature: Signature::variadic_any(Volatility::Stable),
        }),
        ScalarUDF::new_from_impl(NullText {
            name: "col_description",
            signature: Signature::variadic_any(Volatility::Stable),
        }),
        ScalarUDF::new_from_impl(NullText {
            name: "shobj_description",
            signature: Signature::variadic_any(Volatility::Stable),
        }),
        ScalarUDF::new_from_impl(NullText {
            name: "pg_get_function_sqlbody",
            signature: Signature::variadic_any(Volatility::Stable),
        }),
        // Sizes tidepool does not track per relation or database: NULL (unknown), not 0.
        create_udf(
            "pg_table_size",
            vec![DataType::Int64],
            DataType::Int64,
            Volatility::Stable,
            Arc::new(|_args: &[ColumnarValue]| Ok(ColumnarValue::Scalar(ScalarValue::Int64(None)))),
        ),
        create_udf(
            "pg_indexes_size",
            vec![DataType::Int64],
            DataType::Int64,
            Volatility::Stable,
            Arc::new(|_args: &[ColumnarValue]| Ok(ColumnarValue::Scalar(ScalarValue::Int64(None)))),
        ),
        create_udf(
            "pg_tablespace_size",
            vec![DataType::Int64],
            DataType::Int64,
            Volatility::Stable,
            Arc::new(|_args: &[ColumnarValue]| Ok(ColumnarValue::Scalar(ScalarValue::Int64(None)))),
        ),
        create_udf(
            "pg_database_size",
            vec![DataType::Utf8],
            DataType::Int64,
            Volatility::Stable,
            Arc::new(|_args: &[ColumnarValue]| Ok(ColumnarValue::Scalar(ScalarValue::Int64(None)))),
        ),
        // No triggers exist, so their definitions are NULL (`pg_get_indexdef` is the
        // keys module's).
        ScalarUDF::new_from_impl(NullText {
            name: "pg_get_triggerdef",
            signature: Signature::variadic_any(Volatility::Stable),
        }),
        // In a select list (psql: `SELECT pg_partition_ancestors('16385') UNION ALL
        // VALUES (...)`): the relation itself, its only ancestor.
        create_udf(
            "pg_partition_ancestors",
            vec![DataType::Utf8],
            DataType::Int64,
            Volatility::Stable,
            Arc::new(|args: &[ColumnarValue]| args[0].cast_to(&DataType::Int64, None)),
        ),
        ScalarUDF::new_from_impl(JsonBuildObject {
            signature: Signature::variadic_any(Volatility::Immutable),
        }),
        ScalarUDF::new_from_impl(Format {
            signature: Signature::variadic_any(Volatility::Stable),
        }),
        ScalarUDF::new_from_impl(AclToString {
            signature: Signature::variadic_any(Volatility::Immutable),
        }),
    ]
}

/// `array_to_string(acl, sep)` for the access-privilege columns (`nspacl`, `proacl` ...),
/// which the bundled catalogs keep as `{a=r/b,c=X/b}` text, not arrays; the SQL
/// rewrite sends `array_to_string(<...acl>, sep)` here. Arrays are joined as well.
#[derive(Debug, PartialEq, Eq, Hash)]
struct AclToString {
    signature: Signature,
}

impl ScalarUDFImpl for AclToString {
    fn name(&self) -> &str {
        "pg_acl_to_string"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [acl, sep] = args.args.as_slice() else {
            return Err(DataFusionError::Plan(
                "array_to_string takes an array and a separator".into(),
            ));
        };
        let rows = args.number_rows;
        let acl = acl.to_array(rows)?;
        let sep = sep.to_array(rows)?;
        let mut out = StringBuilder::with_capacity(rows, rows * 16);
        for row in 0..rows {
            let v = ScalarValue::try_from_array(&acl, row)?;
            let sep = ScalarValue::try_from_array(&sep, row)?;
            if v.is_null() || sep.is_null() {
                out.append_null();
                continue;
            }
            let sep = scalar_text(&sep);
            let items: Vec<String> = match &v {
                ScalarValue::List(list) => {
                    let values = list.value(0);
                    (0..values.len())
                        .filter(|i| !values.is_null(*i))
                        .map(|i| ScalarValue::try_from_array(&values, i).map(|x| scalar_text(&x)))
                        .collect::<Result<_>>()?
                }
                other => {
                    let text = scalar_text(other);
                    let inner = text.trim().trim_start_matches('{').trim_end_matches('}');
                    inner
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(|s| s.trim_matches('"').to_string())
                        .collect()
                }
            };
            out.append_value(items.join(&sep));
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// `current_setting(name [, missing_ok])` over a snapshot of one session's settings
/// (registered again whenever the session's settings change).
pub fn current_setting_udf(values: std::collections::HashMap<String, String>) -> ScalarUDF {
    ScalarUDF::new_from_impl(CurrentSetting {
        values,
        signature: Signature::variadic_any(Volatility::Stable),
    })
}

#[derive(Debug, PartialEq, Eq)]
struct CurrentSetting {
    values: std::collections::HashMap<String, String>,
    signature: Signature,
}

impl std::hash::Hash for CurrentSetting {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        "current_setting".hash(state);
        let mut keys: Vec<(&String, &String)> = self.values.iter().collect();
        keys.sort();
        keys.hash(state);
    }
}

impl ScalarUDFImpl for CurrentSetting {
    fn name(&self) -> &str {
        "current_setting"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if args.args.is_empty() || args.args.len() > 2 {
            return Err(DataFusionError::Plan(
                "current_setting takes a setting name and an optional missing_ok".into(),
            ));
        }
        let rows = args.number_rows;
        let arrays = arrays_of(&args.args, rows)?;
        let mut out = StringBuilder::with_capacity(rows, rows * 8);
        for row in 0..rows {
            let name = ScalarValue::try_from_array(&arrays[0], row)?;
            if name.is_null() {
                out.append_null();
                continue;
            }
            let name = scalar_text(&name).to_ascii_lowercase();
            let missing_ok = match arrays.get(1) {
                Some(a) => matches!(
                    ScalarValue::try_from_array(a, row)?,
                    ScalarValue::Boolean(Some(true))
                ),
                None => false,
            };
            match self.values.get(&name) {
                Some(v) => out.append_value(v),
                None if missing_ok => out.append_null(),
                None => {
                    return Err(DataFusionError::Execution(format!(
                        "unrecognized configuration parameter \"{name}\""
                    )));
                }
            }
        }
        let array: ArrayRef = Arc::new(out.finish());
        Ok(
            if args
                .args
                .iter()
                .all(|a| matches!(a, ColumnarValue::Scalar(_)))
            {
                ColumnarValue::Scalar(ScalarValue::try_from_array(&array, 0)?)
            } else {
                ColumnarValue::Array(array)
            },
        )
    }
}

/// The arguments of a call over `rows` rows as arrays of that length (a constant
/// argument repeated): `ColumnarValue::values_to_arrays` makes arrays of one row when
/// every argument is constant, shorter than the batch the call is evaluated for.
pub(crate) fn arrays_of(args: &[ColumnarValue], rows: usize) -> Result<Vec<ArrayRef>> {
    args.iter().map(|a| a.to_array(rows)).collect()
}

/// `pg_size_pretty(bytes)`: `8192 bytes`, `12 kB`, `3 MB` ... as Postgres rounds them.
fn size_pretty(args: &[ColumnarValue]) -> Result<ColumnarValue> {
    let arrays = ColumnarValue::values_to_arrays(args)?;
    let sizes = datafusion::arrow::compute::cast(&arrays[0], &DataType::Int64)?;
    let sizes = datafusion::arrow::array::AsArray::as_primitive::<
        datafusion::arrow::datatypes::Int64Type,
    >(&sizes);
    let mut out = StringBuilder::new();
    for v in sizes.iter() {
        out.append_option(v.map(pretty_bytes));
    }
    let array: ArrayRef = Arc::new(out.finish());
    Ok(
        if args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_))) {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&array, 0)?)
        } else {
            ColumnarValue::Array(array)
        },
    )
}

fn pretty_bytes(bytes: i64) -> String {
    // Postgres switches unit when the value reaches 10240 of the current one and rounds
    // half up.
    let mut value = bytes as f64;
    if value.abs() < 10240.0 {
        return format!("{bytes} bytes");
    }
    for unit in ["kB", "MB", "GB", "TB"] {
        value /= 1024.0;
        if value.abs() < 10240.0 || unit == "TB" {
            return format!("{} {unit}", value.round() as i64);
        }
    }
    format!("{bytes} bytes")
}

/// A function of any arguments that answers NULL text.
#[derive(Debug, PartialEq, Eq, Hash)]
struct NullText {
    name: &'static str,
    signature: Signature,
}

impl ScalarUDFImpl for NullText {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)))
    }
}

/// `json_build_object(key, value, ...)` as JSON text.
#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonBuildObject {
    signature: Signature,
}

impl ScalarUDFImpl for JsonBuildObject {
    fn name(&self) -> &str {
        "json_build_object"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if !args.args.len().is_multiple_of(2) {
            return Err(DataFusionError::Plan(
                "argument list must have even number of elements".into(),
            ));
        }
        let rows = args.number_rows;
        let arrays = arrays_of(&args.args, rows)?;
        let mut out = StringBuilder::with_capacity(rows, rows * 32);
        for row in 0..rows {
            let mut object = serde_json::Map::new();
            for pair in arrays.chunks(2) {
                let key = ScalarValue::try_from_array(&pair[0], row)?;
                let value = ScalarValue::try_from_array(&pair[1], row)?;
                if key.is_null() {
                    return Err(DataFusionError::Execution(
                        "null value not allowed for object key".into(),
                    ));
                }
                object.insert(scalar_text(&key), json_value(&value));
            }
            out.append_value(serde_json::Value::Object(object).to_string());
        }
        let array: ArrayRef = Arc::new(out.finish());
        Ok(ColumnarValue::Array(array))
    }
}

/// A function call's arguments as one row of values per output row, and whether every
/// argument was a scalar (then the result is one too).
pub(super) fn row_values(args: &ScalarFunctionArgs) -> Result<(Vec<Vec<ScalarValue>>, bool)> {
    let n = args.number_rows;
    let scalar = args
        .args
        .iter()
        .all(|a| matches!(a, ColumnarValue::Scalar(_)));
    let arrays = args
        .args
        .iter()
        .map(|a| a.to_array(n))
        .collect::<Result<Vec<_>>>()?;
    let rows = (0..n)
        .map(|row| {
            arrays
                .iter()
                .map(|a| ScalarValue::try_from_array(a, row))
                .collect::<Result<Vec<_>>>()
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((rows, scalar))
}

/// A function's result column, as a scalar when every argument was one.
pub(super) fn finish(array: ArrayRef, scalar: bool) -> Result<ColumnarValue> {
    Ok(if scalar {
        ColumnarValue::Scalar(ScalarValue::try_from_array(&array, 0)?)
    } else {
        ColumnarValue::Array(array)
    })
}

pub(super) fn scalar_text(v: &ScalarValue) -> String {
    match v {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::Utf8View(Some(s))
        | ScalarValue::LargeUtf8(Some(s)) => s.clone(),
        other => other.to_string(),
    }
}

fn json_value(v: &ScalarValue) -> serde_json::Value {
    use serde_json::Value;
    if v.is_null() {
        return Value::Null;
    }
    match v {
        ScalarValue::Boolean(Some(b)) => Value::Bool(*b),
        ScalarValue::Int8(Some(n)) => Value::from(*n),
        ScalarValue::Int16(Some(n)) => Value::from(*n),
        ScalarValue::Int32(Some(n)) => Value::from(*n),
        ScalarValue::Int64(Some(n)) => Value::from(*n),
        ScalarValue::UInt8(Some(n)) => Value::from(*n),
        ScalarValue::UInt16(Some(n)) => Value::from(*n),
        ScalarValue::UInt32(Some(n)) => Value::from(*n),
        ScalarValue::UInt64(Some(n)) => Value::from(*n),
        ScalarValue::Float32(Some(f)) => Value::from(*f as f64),
        ScalarValue::Float64(Some(f)) => Value::from(*f),
        other => Value::String(scalar_text(other)),
    }
}

/// `pg_partition_ancestors(oid)`: lake tables are never partitions, so a table's only
/// ancestor is itself (psql's `\d` asks it for the tables whose foreign keys point here).
/// An argument that is not a constant answers no rows.
#[derive(Debug)]
pub struct PartitionAncestors;

impl datafusion::catalog::TableFunctionImpl for PartitionAncestors {
    fn call(
        &self,
        args: &[datafusion::logical_expr::Expr],
    ) -> Result<Arc<dyn datafusion::catalog::TableProvider>> {
        use datafusion::arrow::array::Int64Array;
        use datafusion::arrow::datatypes::{Field, Schema};
        let mut arg = args.first();
        while let Some(datafusion::logical_expr::Expr::Cast(c)) = arg {
            arg = Some(c.expr.as_ref());
        }
        let oid = match arg {
            Some(datafusion::logical_expr::Expr::Literal(v, _)) => match v {
                ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) => s.parse().ok(),
                v => v.cast_to(&DataType::Int64).ok().and_then(|v| match v {
                    ScalarValue::Int64(n) => n,
                    _ => None,
                }),
            },
            _ => None,
        };
        let schema = Arc::new(Schema::new(vec![
            Field::new("relid", DataType::Int64, false),
            Field::new("depth", DataType::Int32, false),
        ]));
        // A correlated argument (psql's trigger query, over an empty pg_trigger) gets no
        // rows: it is only ever asked about triggers, which lake tables do not have.
        let oids: Vec<i64> = oid.into_iter().collect();
        let depth = datafusion::arrow::array::Int32Array::from(vec![1; oids.len()]);
        let batch = datafusion::arrow::array::RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from(oids)), Arc::new(depth)],
        )?;
        Ok(Arc::new(datafusion::catalog::MemTable::try_new(
            schema,
            vec![vec![batch]],
        )?))
    }
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;

    #[test]
    fn sizes_print_like_postgres() {
        assert_eq!(super::pretty_bytes(8192), "8192 bytes");
        assert_eq!(super::pretty_bytes(10240), "10 kB");
        assert_eq!(super::pretty_bytes(5 * 1024 * 1024), "5120 kB");
        assert_eq!(super::pretty_bytes(50 * 1024 * 1024), "50 MB");
    }

    #[tokio::test]
    async fn json_build_object_builds_json_text() {
        let ctx = SessionContext::new();
        for f in super::udfs() {
            ctx.register_udf(f);
        }
        let batches = ctx
            .sql("SELECT json_build_object('always', true, 'start', 1, 'name', 'x', 'none', NULL) AS j")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let v = datafusion::arrow::util::display::array_value_to_string(batches[0].column(0), 0)
            .unwrap();
        assert_eq!(v, r#"{"always":true,"name":"x","none":null,"start":1}"#);
    }

    /// A call whose arguments are all constant, evaluated for a batch of several rows (as
    /// a row-level security policy comparing a column with `current_setting(...)` is, on
    /// the physical plan) answers every row: it read past a one-row array and panicked.
    #[test]
    fn constant_arguments_answer_every_row_of_the_batch() {
        use datafusion::arrow::datatypes::{DataType, Field};
        use datafusion::common::ScalarValue;
        use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs};
        use std::sync::Arc;

        let values = [("app.tenant".to_string(), "b".to_string())].into();
        let f = super::current_setting_udf(values);
        let out = f
            .invoke_with_args(ScalarFunctionArgs {
                args: vec![ColumnarValue::Scalar(ScalarValue::Utf8(Some(
                    "app.tenant".into(),
                )))],
                arg_fields: vec![Arc::new(Field::new("n", DataType::Utf8, true))],
                number_rows: 3,
                return_field: Arc::new(Field::new("r", DataType::Utf8, true)),
                config_options: Default::default(),
            })
            .unwrap();
        assert_eq!(out.to_array(3).unwrap().len(), 3);
    }
}

/// Postgres' `format(fmt, args...)`: `%s` (NULL prints empty), `%I` (quoted identifier
/// when needed), `%L` (quoted literal, NULL unquoted), `%%`, and `%n$s` positions.
/// Metabase builds `format('%I.%I', schema, table)::regclass` with it.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Format {
    signature: Signature,
}

impl ScalarUDFImpl for Format {
    fn name(&self) -> &str {
        "format"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if args.args.is_empty() {
            return Err(DataFusionError::Plan(
                "format takes a format string and arguments".into(),
            ));
        }
        let (rows, scalar) = row_values(&args)?;
        let mut out = StringBuilder::with_capacity(rows.len(), rows.len() * 16);
        for values in rows {
            if values[0].is_null() {
                out.append_null();
                continue;
            }
            let text = |v: &ScalarValue| (!v.is_null()).then(|| scalar_text(v));
            let rest: Vec<Option<String>> = values[1..].iter().map(text).collect();
            out.append_value(format_pg(&scalar_text(&values[0]), &rest)?);
        }
        finish(Arc::new(out.finish()), scalar)
    }
}

/// Formats `fmt` the way Postgres' `format()` does.
pub fn format_pg(fmt: &str, args: &[Option<String>]) -> Result<String> {
    let mut out = String::with_capacity(fmt.len() + 16);
    let mut chars = fmt.chars().peekable();
    let mut next = 0usize;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut digits = String::new();
        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            digits.push(*d);
            chars.next();
        }
        let index = if !digits.is_empty() && chars.peek() == Some(&'$') {
            chars.next();
            digits
                .parse::<usize>()
                .ok()
                .filter(|n| *n >= 1)
                .map(|n| n - 1)
                .ok_or_else(|| DataFusionError::Execution("format: bad argument position".into()))?
        } else if digits.is_empty() {
            let i = next;
            next += 1;
            i
        } else {
            return Err(DataFusionError::Execution(
                "format: field widths are not supported".into(),
            ));
        };
        let kind = chars.next().ok_or_else(|| {
            DataFusionError::Execution("format: unterminated format() type specifier".into())
        })?;
        if kind == '%' && digits.is_empty() {
            out.push('%');
            next -= 1;
            continue;
        }
        let arg = args.get(index).ok_or_else(|| {
            DataFusionError::Execution("format: too few arguments for format()".into())
        })?;
        match (kind, arg) {
            ('s', Some(v)) => out.push_str(v),
            ('s', None) => {}
            ('I', Some(v)) => out.push_str(&tidepool_lake::quote_ident(v)),
            ('I', None) => {
                return Err(DataFusionError::Execution(
                    "null values cannot be formatted as an SQL identifier".into(),
                ));
            }
            ('L', Some(v)) => {
                out.push('\'');
                out.push_str(&v.replace('\'', "''"));
                out.push('\'');
            }
            ('L', None) => out.push_str("NULL"),
            (other, _) => {
                return Err(DataFusionError::Execution(format!(
                    "unrecognized format() type specifier \"{other}\""
                )));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod format_tests {
    use super::format_pg;

    fn f(fmt: &str, args: &[Option<&str>]) -> String {
        let args: Vec<Option<String>> = args.iter().map(|a| a.map(String::from)).collect();
        format_pg(fmt, &args).unwrap()
    }

    #[test]
    fn format_follows_postgres() {
        assert_eq!(
            f("%I.%I", &[Some("gold"), Some("Fact Orders")]),
            "gold.\"Fact Orders\""
        );
        assert_eq!(f("%s|%s", &[Some("a"), None]), "a|");
        assert_eq!(f("%L, %L", &[Some("it's"), None]), "'it''s', NULL");
        assert_eq!(f("%2$s %1$s 100%%", &[Some("a"), Some("b")]), "b a 100%");
        assert!(format_pg("%s %s", &[Some("a".into())]).is_err());
        assert!(format_pg("%I", &[None]).is_err());
    }
}
