//! `pg_catalog.pg_type` as drivers join it.
//!
//! In Postgres the `regproc` columns of `pg_type` (`typinput`, `typreceive`, ...) are
//! function oids that print as names. Npgsql finds array types by joining
//! `pg_proc.oid = pg_type.typreceive` and checking for `array_recv`; the bundled catalog
//! holds the names as text, which cannot be compared with an oid. This table keeps the
//! bundled rows and turns those columns into the oids of the named `pg_proc` rows (0 for
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

/// Columns of `pg_type` whose type is `regproc`.
const REGPROC_COLUMNS: &[&str] = &[
    "typinput",
    "typoutput",
    "typreceive",
    "typsend",
    "typmodin",
    "typmodout",
    "typanalyze",
    "typsubscript",
];

/// `pg_type` with function oids in its regproc columns, from the bundled `pg_type` and
/// `pg_proc`.
pub async fn pg_type(
    pg_type: &Arc<dyn TableProvider>,
    pg_proc: &Arc<dyn TableProvider>,
) -> Result<Arc<dyn TableProvider>> {
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
    let source = pg_type.schema();
    let fields: Vec<Field> = source
        .fields()
        .iter()
        .map(|f| {
            if REGPROC_COLUMNS.contains(&f.name().as_str()) {
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
    for b in collect(pg_type).await? {
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(b.num_columns());
        for (f, col) in source.fields().iter().zip(b.columns()) {
            if !REGPROC_COLUMNS.contains(&f.name().as_str()) {
                columns.push(col.clone());
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
            columns.push(Arc::new(out.finish()));
        }
        batches.push(RecordBatch::try_new(schema.clone(), columns)?);
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
        let table = pg_type(&t, &p).await.unwrap();
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
