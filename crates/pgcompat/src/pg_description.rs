//! `pg_catalog.pg_description` with the lake's comments (`COMMENT ON`) after the bundled
//! rows of built-in objects: a table's (its Delta description) and its columns' (field
//! metadata), and those of views, external tables and procedures (kept beside their
//! definitions). `obj_description` and `col_description` read it
//! ([`crate::rules::catalog_functions`]), so psql's `\d+`, `\dt+`, `\df+` and drivers'
//! REMARKS show them.

use std::sync::{Arc, Weak};

use async_trait::async_trait;
use datafusion::arrow::array::{Int32Array, RecordBatch, StringArray};
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result};
use tidepool_engine::Engine;
use tidepool_lake::DefinitionKind;

use crate::gathered::{Gather, collect, names};

/// `pg_class`'s oid in `classoid`.
pub(crate) const PG_CLASS: i32 = 1259;
/// `pg_proc`'s oid in `classoid`.
pub(crate) const PG_PROC: i32 = 1255;

#[derive(Debug)]
pub struct DescriptionTable {
    pub inner: Arc<dyn TableProvider>,
    pub catalog: Arc<dyn SchemaProvider>,
    pub engine: Weak<Engine>,
}

/// `(objoid, classoid, objsubid, description)`.
type Row = (i32, i32, i32, String);

#[async_trait]
impl Gather for DescriptionTable {
    fn inner(&self) -> &Arc<dyn TableProvider> {
        &self.inner
    }

    async fn batches(&self) -> Result<Vec<RecordBatch>> {
        let mut batches = collect(&self.inner).await?;
        let Some(engine) = self.engine.upgrade() else {
            return Ok(batches);
        };
        let rows = self.lake_rows(&engine).await?;
        if rows.is_empty() {
            return Ok(batches);
        }
        let schema = self.inner.schema();
        let column =
            |f: fn(&Row) -> i32| Arc::new(Int32Array::from_iter_values(rows.iter().map(f)));
        let text = StringArray::from_iter_values(rows.iter().map(|r| r.3.as_str()));
        let mut columns = Vec::with_capacity(schema.fields().len());
        for field in schema.fields() {
            columns.push(match field.name().as_str() {
                "objoid" => column(|r| r.0) as _,
                "classoid" => column(|r| r.1) as _,
                "objsubid" => column(|r| r.2) as _,
                "description" => Arc::new(text.clone()) as _,
                _ => datafusion::arrow::array::new_null_array(field.data_type(), rows.len()),
            });
        }
        let columns = columns
            .into_iter()
            .zip(schema.fields())
            .map(|(c, f)| datafusion::arrow::compute::cast(&c, f.data_type()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        batches.push(RecordBatch::try_new(schema, columns)?);
        Ok(batches)
    }
}

impl DescriptionTable {
    async fn lake_rows(&self, engine: &Engine) -> Result<Vec<Row>> {
        let lake = engine.lake();
        let external = |e: tidepool_lake::LakeError| DataFusionError::External(Box::new(e));
        let listing = lake.listing().await.map_err(external)?;
        let classes = names(&self.catalog, "pg_class", "relname", Some("relnamespace")).await?;
        let namespaces = names(&self.catalog, "pg_namespace", "nspname", None).await?;
        let mut rows = Vec::new();
        for (oid, (relation, ns)) in &classes {
            let Some((schema, _)) = namespaces.get(ns) else {
                continue;
            };
            let Some(listed) = listing.schemas.get(schema) else {
                continue;
            };
            let Ok(oid) = i32::try_from(*oid) else {
                continue;
            };
            if listed.tables.contains(relation) {
                let (table, columns) = lake.comments(schema, relation).await.map_err(external)?;
                if let Some(t) = table {
                    rows.push((oid, PG_CLASS, 0, t));
                }
                if columns.is_empty() {
                    continue;
                }
                let Ok(Some(fields)) = engine.table_schema(schema, relation).await else {
                    continue;
                };
                for (column, text) in columns {
                    if let Ok(i) = fields.index_of(&column) {
                        rows.push((oid, PG_CLASS, i as i32 + 1, text));
                    }
                }
                continue;
            }
            let kind = if listed.views.contains(relation) {
                DefinitionKind::View
            } else if listed.external.contains(relation) {
                DefinitionKind::External
            } else {
                continue;
            };
            if let Some(text) = lake
                .definition_comment(kind, schema, relation)
                .await
                .map_err(external)?
            {
                rows.push((oid, PG_CLASS, 0, text));
            }
        }
        for (schema, listed) in &listing.schemas {
            for p in &listed.procedures {
                let text = lake
                    .definition_comment(DefinitionKind::Procedure, schema, p)
                    .await
                    .map_err(external)?;
                if let (Some(text), Ok(oid)) =
                    (text, i32::try_from(crate::oids::procedure(schema, p)))
                {
                    rows.push((oid, PG_PROC, 0, text));
                }
            }
        }
        Ok(rows)
    }
}
