//! The `regproc` columns of the bundled catalogs (`pg_type` as drivers join it, and
//! `pg_operator`, `pg_am`, `pg_amproc`, `pg_aggregate`, the text-search catalogs psql's
//! `\doS`, `\dA+`, `\dAp`, `\dFp+` read).
//!
//! In Postgres the `regproc` columns (`typinput`, `typreceive`, `oprcode`, ...) are
//! function oids that print as names. Npgsql finds array types by joining
//! `pg_proc.oid = pg_type.typreceive` and checking for `array_recv`; the bundled catalog
//! holds the names as text, which cannot be compared with an oid. These tables keep the
//! bundled rows and turn those columns into the oids of the named `pg_proc` rows (0 for
//! `-`), the same oids `'array_recv'::regproc` resolves to, marked as regproc so they
//! read as names where PostgreSQL shows names ([`crate::regproc`]). Built once per engine.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int32Builder, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Int32Type, Schema};
use datafusion::catalog::{MemTable, TableProvider};
use datafusion::error::Result;

use crate::gathered::collect;

/// Columns of the bundled catalogs whose type is `regproc`, by table.
const REGPROC_COLUMNS: &[(&str, &[&str])] = &[
    (
        "pg_type",
        &[
            "typinput",
            "typoutput",
            "typreceive",
            "typsend",
            "typmodin",
            "typmodout",
            "typanalyze",
            "typsubscript",
        ],
    ),
    ("pg_operator", &["oprcode", "oprrest", "oprjoin"]),
    ("pg_am", &["amhandler"]),
    ("pg_amproc", &["amproc"]),
    (
        "pg_aggregate",
        &[
            "aggfnoid",
            "aggtransfn",
            "aggfinalfn",
            "aggcombinefn",
            "aggserialfn",
            "aggdeserialfn",
            "aggmtransfn",
            "aggminvtransfn",
            "aggmfinalfn",
        ],
    ),
    ("pg_conversion", &["conproc"]),
    ("pg_range", &["rngcanonical", "rngsubdiff"]),
    (
        "pg_ts_parser",
        &[
            "prsstart",
            "prstoken",
            "prsend",
            "prsheadline",
            "prslextype",
        ],
    ),
    ("pg_ts_template", &["tmplinit", "tmpllexize"]),
];

/// The regproc columns of the bundled `table`, if it has any.
pub fn regproc_columns(table: &str) -> Option<&'static [&'static str]> {
    REGPROC_COLUMNS
        .iter()
        .find(|(t, _)| *t == table)
        .map(|(_, c)| *c)
}

/// The bundled `table` with function oids in its regproc columns (text ones: a column
/// the bundle already has as numbers stays as it is), from it and the bundled `pg_proc`.
pub async fn with_proc_oids(
    table: &str,
    provider: &Arc<dyn TableProvider>,
    pg_proc: &Arc<dyn TableProvider>,
) -> Result<Arc<dyn TableProvider>> {
    let source = provider.schema();
    let columns: Vec<&str> = regproc_columns(table)
        .unwrap_or_default()
        .iter()
        .copied()
        .filter(|c| {
            source
                .field_with_name(c)
                .is_ok_and(|f| matches!(f.data_type(), DataType::Utf8 | DataType::Utf8View))
        })
        .collect();
    if columns.is_empty() {
        return Ok(provider.clone());
    }
    let mut oids: HashMap<String, i32> = HashMap::new();
    let mut names: HashMap<i32, String> = HashMap::new();
    for b in collect(pg_proc).await? {
        let (Some(oid), Some(name)) = (b.column_by_name("oid"), b.column_by_name("proname")) else {
            continue;
        };
        let oid = cast(oid, &DataType::Int32)?;
        let name = cast(name, &DataType::Utf8)?;
        let (oid, name) = (oid.as_primitive::<Int32Type>(), name.as_string::<i32>());
        for i in 0..b.num_rows() {
            if oid.is_valid(i) && name.is_valid(i) {
                // Overloaded names keep their lowest oid, as Postgres' regproc input does
                // not (it refuses ambiguity), but no type names an overloaded function.
                oids.entry(name.value(i).to_string())
                    .and_modify(|o| *o = (*o).min(oid.value(i)))
                    .or_insert(oid.value(i));
                names.insert(oid.value(i), name.value(i).to_string());
            }
        }
    }
    let fields: Vec<Field> = source
        .fields()
        .iter()
        .map(|f| {
            if columns.contains(&f.name().as_str()) {
                Field::new(f.name(), DataType::Int32, true).with_metadata(
                    [(
                        crate::regproc::KEY.to_string(),
                        crate::regproc::KIND.to_string(),
                    )]
                    .into(),
                )
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let _ = crate::regproc::PROCS.set(crate::regproc::Procs {
        names,
        oids: oids.clone(),
    });
    let mut batches = Vec::new();
    for b in collect(provider).await? {
        let mut out_columns: Vec<ArrayRef> = Vec::with_capacity(b.num_columns());
        for (f, col) in source.fields().iter().zip(b.columns()) {
            if !columns.contains(&f.name().as_str()) {
                out_columns.push(col.clone());
                continue;
            }
            let text = cast(col, &DataType::Utf8)?;
            let text = text.as_string::<i32>();
            let mut out = Int32Builder::with_capacity(text.len());
            for i in 0..text.len() {
                if text.is_null(i) {
                    out.append_null();
                } else {
                    let name = text.value(i);
                    let name = name.rsplit('.').next().unwrap_or(name);
                    out.append_value(oids.get(name).copied().unwrap_or(0));
                }
            }
            out_columns.push(Arc::new(out.finish()));
        }
        batches.push(RecordBatch::try_new(schema.clone(), out_columns)?);
    }
    Ok(Arc::new(MemTable::try_new(schema, vec![batches])?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    #[tokio::test]
    async fn regproc_columns_become_proc_oids() {
        let ctx = SessionContext::new();
        datafusion_pg_catalog::pg_catalog::setup_pg_catalog(
            &ctx,
            "datafusion",
            datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider,
        )
        .unwrap();
        let schema = ctx
            .catalog("datafusion")
            .unwrap()
            .schema("pg_catalog")
            .unwrap();
        let t = schema.table("pg_type").await.unwrap().unwrap();
        let p = schema.table("pg_proc").await.unwrap().unwrap();
        let table = with_proc_oids("pg_type", &t, &p).await.unwrap();
        ctx.register_table("t", table).unwrap();
        ctx.register_table("p", p).unwrap();
        let rows = ctx
            .sql("SELECT t.typname, p.proname FROM t JOIN p ON p.oid = t.typreceive WHERE t.typname IN ('_int8', 'int8') ORDER BY 1")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let b = &rows[0];
        let names = cast(b.column(1), &DataType::Utf8).unwrap();
        let names = names.as_string::<i32>();
        assert_eq!(names.value(0), "array_recv");
        assert_eq!(names.value(1), "int8recv");
    }
}
