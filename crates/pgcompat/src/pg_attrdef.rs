//! `pg_catalog.pg_attrdef` with the lake tables' column defaults (`DEFAULT expr` in
//! CREATE TABLE, `ALTER COLUMN ... SET DEFAULT`): one row per defaulted column, `adbin`
//! holding the expression as SQL, which `pg_get_expr` gives back. psql's `\d` Default
//! column and drivers' `COLUMN_DEF` read it (with `pg_attribute.atthasdef`).

use std::sync::{Arc, Weak};

use async_trait::async_trait;
use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result};
use tidepool_engine::Engine;

use crate::gathered::{Gather, collect, names};

#[derive(Debug)]
pub struct AttrDefTable {
    pub inner: Arc<dyn TableProvider>,
    pub catalog: Arc<dyn SchemaProvider>,
    pub engine: Weak<Engine>,
}

#[async_trait]
impl Gather for AttrDefTable {
    fn inner(&self) -> &Arc<dyn TableProvider> {
        &self.inner
    }

    async fn batches(&self) -> Result<Vec<RecordBatch>> {
        let mut batches = collect(&self.inner).await?;
        let Some(engine) = self.engine.upgrade() else {
            return Ok(batches);
        };
        let external = |e: tidepool_lake::LakeError| DataFusionError::External(Box::new(e));
        let listing = engine.lake().listing().await.map_err(external)?;
        let classes = names(&self.catalog, "pg_class", "relname", Some("relnamespace")).await?;
        let namespaces = names(&self.catalog, "pg_namespace", "nspname", None).await?;
        // (oid, adrelid, adnum, adbin)
        let mut rows: Vec<(i64, i64, i64, String)> = Vec::new();
        for (rel, (table, ns)) in &classes {
            let Some((schema, _)) = namespaces.get(ns) else {
                continue;
            };
            if !listing.tables(schema).any(|t| t == table) {
                continue;
            }
            let declared = engine
                .lake()
                .declared(schema, table)
                .await
                .map_err(external)?;
            if declared.defaults.is_empty() {
                continue;
            }
            let Ok(Some(fields)) = engine.table_schema(schema, table).await else {
                continue;
            };
            for (column, expr) in declared.defaults {
                if let Ok(i) = fields.index_of(&column) {
                    let oid = crate::oids::procedure(&format!("{schema}.{table}"), &column);
                    rows.push((oid, *rel, i as i64 + 1, expr));
                }
            }
        }
        if rows.is_empty() {
            return Ok(batches);
        }
        let schema = self.inner.schema();
        let mut columns = Vec::with_capacity(schema.fields().len());
        for field in schema.fields() {
            let column: Arc<dyn datafusion::arrow::array::Array> = match field.name().as_str() {
                "oid" => Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                "adrelid" => Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
                "adnum" => Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
                "adbin" => Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| r.3.as_str()),
                )),
                _ => datafusion::arrow::array::new_null_array(field.data_type(), rows.len()),
            };
            columns.push(datafusion::arrow::compute::cast(
                &column,
                field.data_type(),
            )?);
        }
        batches.push(RecordBatch::try_new(schema, columns)?);
        Ok(batches)
    }
}
