//! `pg_catalog.pg_attribute` with the type details drivers read: datafusion-pg-catalog
//! lists every column of every table but reports `atttypmod = -1` and text for most
//! arrays. Each row is matched back to its table's Arrow field (through `pg_class` and
//! `pg_namespace`) and gets the type oid the wire protocol sends, `atttypmod` for
//! `numeric(p,s)` (`((p << 16) | s) + 4`, so `format_type` prints `numeric(12,2)` and
//! SQLAlchemy reads precision and scale) and `attndims` for arrays; `atthasdef` is true
//! for a column with a declared default (which `pg_attrdef` holds). Catalog tables carry
//! PostgreSQL's own oids here and in `pg_class` ([`crate::oids::catalog_table`]).

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int16Builder, Int32Builder, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Int32Type, Int64Type, SchemaRef};
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::error::Result;

use crate::gathered::Gather;
use tidepool_engine::Engine;

#[derive(Debug)]
pub struct AttributeTable {
    pub inner: Arc<dyn TableProvider>,
    pub catalog: Arc<dyn SchemaProvider>,
    pub engine: Weak<Engine>,
}

use crate::gathered::collect;

/// Type oid, typmod and array dimensions of a column: `varchar(n)` / `char(n)` (typmod
/// `n + 4`) as declared, else by its Arrow type. The Postgres protocol's RowDescription
/// uses it too, so JDBC and ODBC metadata report precision, scale and length.
pub fn field_details(f: &Field) -> Option<(i32, i32, i16)> {
    match tidepool_lake::CharLength::of_arrow(f) {
        Some(l) => {
            let oid = if l.fixed { 1042 } else { 1043 };
            Some((oid, i32::try_from(l.length).ok()?.saturating_add(4), 0))
        }
        None => type_details(f.data_type()),
    }
}

/// Type oid, typmod and array dimensions of a column of `t`.
fn type_details(t: &DataType) -> Option<(i32, i32, i16)> {
    let pg = arrow_pg::datatypes::into_pg_type(t).ok()?;
    let typmod = match t {
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) if *s >= 0 => {
            ((i32::from(*p) << 16) | i32::from(*s)) + 4
        }
        _ => -1,
    };
    let dims = match t {
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) => 1,
        _ => 0,
    };
    Some((pg.oid() as i32, typmod, dims))
}

/// Array columns of `pg_index` and `pg_constraint` (int2vector, oidvector, int2[], oid[]).
const KEY_ARRAYS: &[(&str, DataType)] = &[
    ("indkey", DataType::Int16),
    ("indoption", DataType::Int16),
    ("indcollation", DataType::Int32),
    ("indclass", DataType::Int32),
    ("conkey", DataType::Int16),
    ("confkey", DataType::Int16),
    ("confdelsetcols", DataType::Int16),
    ("conpfeqop", DataType::Int32),
    ("conppeqop", DataType::Int32),
    ("conffeqop", DataType::Int32),
    ("conexclop", DataType::Int32),
];

/// `pg_index` / `pg_constraint`: no rows, since lake tables have no keys or indexes (the
/// bundled rows describe Postgres' own system catalogs), with their key columns typed as
/// arrays so `unnest(indkey)` and `conkey[1]` plan.
pub fn no_keys(schema: &SchemaRef) -> Arc<dyn TableProvider> {
    use datafusion::arrow::datatypes::{Field, Schema};
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match KEY_ARRAYS.iter().find(|(n, _)| n == f.name()) {
            Some((_, item)) => {
                let field = Field::new(
                    f.name(),
                    DataType::List(Arc::new(Field::new("item", item.clone(), true))),
                    true,
                );
                // int2vector / oidvector: sent in their space-separated text form, which
                // psqlODBC's SQLStatistics parses (`{1}` made it loop for ever).
                if f.name().starts_with("ind") {
                    let kind = match item {
                        DataType::Int16 => "int2vector",
                        _ => "oidvector",
                    };
                    field.with_metadata(
                        [(
                            crate::catalog_arrays::OIDVECTOR_KEY.to_string(),
                            kind.to_string(),
                        )]
                        .into(),
                    )
                } else {
                    field
                }
            }
            None => f.as_ref().clone(),
        })
        .collect();
    Arc::new(datafusion::datasource::empty::EmptyTable::new(Arc::new(
        Schema::new(fields),
    )))
}

/// `pg_class` with the columns the bundled one lacks (`reloptions`: NULL, as for a table
/// without storage options; `relacl`: the privileges in force,
/// [`crate::acl::class_access`]), which SQLAlchemy's index query and psql's `\dp`
/// read, and with the indexes of lake keys ([`crate::keys::class_rows`]).
#[derive(Debug)]
pub struct ClassTable {
    pub inner: Arc<dyn TableProvider>,
    schema: SchemaRef,
    catalog: Arc<dyn SchemaProvider>,
    engine: Weak<Engine>,
}

impl ClassTable {
    pub fn new(
        inner: Arc<dyn TableProvider>,
        catalog: Arc<dyn SchemaProvider>,
        engine: Weak<Engine>,
    ) -> ClassTable {
        use datafusion::arrow::datatypes::{Field, Schema};
        let mut fields: Vec<Field> = inner
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        for name in ["reloptions", "relacl"] {
            if inner.schema().index_of(name).is_err() {
                fields.push(Field::new(
                    name,
                    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                    true,
                ));
            }
        }
        ClassTable {
            inner,
            schema: Arc::new(Schema::new(fields)),
            catalog,
            engine,
        }
    }
}

#[async_trait]
impl TableProvider for ClassTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> datafusion::datasource::TableType {
        self.inner.table_type()
    }

    async fn scan(
        &self,
        state: &dyn datafusion::catalog::Session,
        projection: Option<&Vec<usize>>,
        filters: &[datafusion::logical_expr::Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        let engine = self.engine.upgrade();
        let (indexes, tables) = match &engine {
            Some(engine) => crate::keys::class_rows(engine, &self.catalog).await?,
            None => Default::default(),
        };
        let access = match &engine {
            Some(engine) => crate::acl::class_access(engine, &self.catalog).await?,
            None => Default::default(),
        };
        let mut batches = Vec::new();
        let rows = collect(&self.inner).await?;
        let renumbering = crate::oids::catalog_renumbering(&crate::gathered::names_in(
            &rows,
            "relname",
            Some("relnamespace"),
        )?);
        for b in rows {
            let mut columns = b.columns().to_vec();
            if let Ok(k) = self.schema.index_of("oid") {
                columns[k] = crate::oids::renumber(&columns[k], &renumbering)?;
            }
            for f in self.schema.fields().iter().skip(columns.len()) {
                columns.push(datafusion::arrow::array::new_null_array(
                    f.data_type(),
                    b.num_rows(),
                ));
            }
            if !tables.is_empty() {
                flag_keyed_tables(&self.schema, &mut columns, &tables)?;
            }
            if !access.is_empty() {
                crate::acl::patch_class(&self.schema, &mut columns, &access)?;
            }
            batches.push(RecordBatch::try_new(self.schema.clone(), columns)?);
        }
        if !indexes.is_empty() {
            batches.push(crate::keys::class_batch(&self.schema, &indexes)?);
        }
        datafusion::catalog::MemTable::try_new(self.schema.clone(), vec![batches])?
            .scan(state, projection, filters, limit)
            .await
    }
}

#[async_trait]
impl Gather for AttributeTable {
    fn inner(&self) -> &Arc<dyn TableProvider> {
        &self.inner
    }

    async fn batches(&self) -> Result<Vec<RecordBatch>> {
        let batches = collect(&self.inner).await?;
        let Some(engine) = self.engine.upgrade() else {
            return Ok(batches);
        };
        let classes =
            crate::gathered::names(&self.catalog, "pg_class", "relname", Some("relnamespace"))
                .await?;
        let namespaces =
            crate::gathered::names(&self.catalog, "pg_namespace", "nspname", None).await?;
        let renumbering = crate::oids::catalog_renumbering(&classes);
        let mut fields: HashMap<i64, Option<SchemaRef>> = HashMap::new();
        // Columns with a declared default, by relation (atthasdef).
        let mut defaulted: HashMap<i64, Vec<String>> = HashMap::new();
        let mut out = Vec::with_capacity(batches.len());
        for b in batches {
            let schema = b.schema();
            let (Some(relid), Some(attnum), Some(typid), Some(typmod), Some(ndims)) = (
                schema.index_of("attrelid").ok(),
                schema.index_of("attnum").ok(),
                schema.index_of("atttypid").ok(),
                schema.index_of("atttypmod").ok(),
                schema.index_of("attndims").ok(),
            ) else {
                out.push(b);
                continue;
            };
            let relids = cast(b.column(relid), &DataType::Int64)?;
            let relids = relids.as_primitive::<Int64Type>();
            let nums = cast(b.column(attnum), &DataType::Int32)?;
            let nums = nums.as_primitive::<Int32Type>();
            let attname = schema.index_of("attname").ok();
            let mut names = datafusion::arrow::array::StringBuilder::new();
            let old_names = match attname {
                Some(k) => Some(cast(b.column(k), &DataType::Utf8)?),
                None => None,
            };
            let old_typ = cast(b.column(typid), &DataType::Int32)?;
            let old_typ = old_typ.as_primitive::<Int32Type>();
            let mut typ = Int32Builder::with_capacity(b.num_rows());
            let mut modifier = Int32Builder::with_capacity(b.num_rows());
            let mut dims = Int16Builder::with_capacity(b.num_rows());
            let mut hasdef = datafusion::arrow::array::BooleanBuilder::with_capacity(b.num_rows());
            for i in 0..b.num_rows() {
                let rel = relids.value(i);
                if let std::collections::hash_map::Entry::Vacant(slot) = fields.entry(rel) {
                    let resolved = match classes.get(&rel) {
                        Some((table, ns)) => match namespaces.get(ns) {
                            Some((schema, _)) => {
                                if let Ok(d) = engine.lake().declared(schema, table).await
                                    && !d.defaults.is_empty()
                                {
                                    defaulted.insert(
                                        rel,
                                        d.defaults.into_iter().map(|(c, _)| c).collect(),
                                    );
                                }
                                engine.table_schema(schema, table).await.ok().flatten()
                            }
                            None => None,
                        },
                        None => None,
                    };
                    slot.insert(resolved);
                }
                let field = fields
                    .get(&rel)
                    .and_then(|s| s.as_ref())
                    .and_then(|s| s.fields().get((nums.value(i) - 1).max(0) as usize).cloned());
                // The name of the column as the table has it (the bundled rows can differ).
                if let Some(old) = &old_names {
                    let old = old.as_string::<i32>();
                    match &field {
                        Some(f) if nums.value(i) > 0 => names.append_value(f.name()),
                        _ => names.append_option(old.is_valid(i).then(|| old.value(i))),
                    }
                }
                hasdef.append_value(field.as_ref().is_some_and(|f| {
                    nums.value(i) > 0
                        && defaulted
                            .get(&rel)
                            .is_some_and(|d| d.iter().any(|c| c == f.name()))
                }));
                let details = field.and_then(|f| field_details(&f));
                match details {
                    Some((t, m, d)) => {
                        typ.append_value(t);
                        modifier.append_value(m);
                        dims.append_value(d);
                    }
                    None => {
                        typ.append_option(old_typ.is_valid(i).then(|| old_typ.value(i)));
                        modifier.append_value(-1);
                        dims.append_value(0);
                    }
                }
            }
            let mut columns: Vec<ArrayRef> = b.columns().to_vec();
            columns[relid] = crate::oids::renumber(&columns[relid], &renumbering)?;
            if let Some(k) = attname {
                columns[k] = cast(
                    &(Arc::new(names.finish()) as ArrayRef),
                    schema.field(k).data_type(),
                )?;
            }
            columns[typid] = cast(
                &(Arc::new(typ.finish()) as ArrayRef),
                schema.field(typid).data_type(),
            )?;
            columns[typmod] = cast(
                &(Arc::new(modifier.finish()) as ArrayRef),
                schema.field(typmod).data_type(),
            )?;
            columns[ndims] = cast(
                &(Arc::new(dims.finish()) as ArrayRef),
                schema.field(ndims).data_type(),
            )?;
            if let Ok(k) = schema.index_of("atthasdef") {
                columns[k] = cast(
                    &(Arc::new(hasdef.finish()) as ArrayRef),
                    schema.field(k).data_type(),
                )?;
            }
            out.push(RecordBatch::try_new(schema.clone(), columns)?);
        }
        if let Some(first) = out.first() {
            let schema = first.schema();
            let rows = index_rows(&engine).await?;
            if !rows.is_empty() {
                out.push(crate::keys::batch(&schema, &rows)?);
            }
        }
        Ok(out)
    }
}

/// The columns of the indexes of primary keys and unique constraints, as PostgreSQL lists
/// an index's columns (`attrelid` the index, `attnum` the position in the key):
/// psqlODBC's `SQLPrimaryKeys` joins them to find the key's columns.
async fn index_rows(engine: &Engine) -> Result<Vec<crate::keys::Row>> {
    use crate::keys::{flag, int, text};
    let mut rows = Vec::new();
    for k in crate::keys::lake_keys(engine).await? {
        let Some(index) = k.index_oid() else {
            continue;
        };
        let table = engine
            .table_schema(&k.schema, &k.table)
            .await
            .ok()
            .flatten();
        for (i, column) in k.constraint.columns.iter().enumerate() {
            let details = table
                .as_ref()
                .and_then(|t| t.field_with_name(column).ok().cloned())
                .and_then(|f| field_details(&f));
            let (typid, typmod, _) = details.unwrap_or((25, -1, 0));
            rows.push(vec![
                ("attrelid", int(index)),
                ("attname", text(column)),
                ("atttypid", int(typid as i64)),
                ("attnum", int(i as i64 + 1)),
                ("atttypmod", int(typmod as i64)),
                ("attlen", int(-1)),
                ("attnotnull", flag(true)),
                ("attisdropped", flag(false)),
                ("attislocal", flag(true)),
            ]);
        }
    }
    Ok(rows)
}

/// Sets `relhasindex`, `relchecks` and `relhastriggers` of the rows of keyed tables
/// (`oid -> (has an index, checks, has or is the target of a foreign key)`).
fn flag_keyed_tables(
    schema: &SchemaRef,
    columns: &mut [ArrayRef],
    tables: &HashMap<i64, (bool, i64, bool)>,
) -> Result<()> {
    use datafusion::arrow::array::BooleanArray;
    let Ok(oid) = schema.index_of("oid") else {
        return Ok(());
    };
    let oids = cast(&columns[oid], &DataType::Int64)?;
    let oids = oids.as_primitive::<Int64Type>();
    let keyed = |i: usize| {
        oids.is_valid(i)
            .then(|| tables.get(&oids.value(i)))
            .flatten()
    };
    for (name, pick) in [("relhasindex", 0usize), ("relhastriggers", 2)] {
        let Ok(k) = schema.index_of(name) else {
            continue;
        };
        let old = cast(&columns[k], &DataType::Boolean)?;
        let old = old.as_boolean();
        let new: BooleanArray = (0..oids.len())
            .map(|i| match keyed(i) {
                Some(t) => Some(if pick == 0 { t.0 } else { t.2 }),
                None => old.is_valid(i).then(|| old.value(i)),
            })
            .collect();
        columns[k] = cast(&(Arc::new(new) as ArrayRef), schema.field(k).data_type())?;
    }
    if let Ok(k) = schema.index_of("relchecks") {
        let old = cast(&columns[k], &DataType::Int64)?;
        let old = old.as_primitive::<Int64Type>();
        let new: datafusion::arrow::array::Int64Array = (0..oids.len())
            .map(|i| match keyed(i) {
                Some(t) => Some(t.1),
                None => old.is_valid(i).then(|| old.value(i)),
            })
            .collect();
        columns[k] = cast(&(Arc::new(new) as ArrayRef), schema.field(k).data_type())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::Field;

    #[test]
    fn numeric_typmod_and_array_dims() {
        assert_eq!(
            type_details(&DataType::Decimal128(12, 2)),
            Some((1700, (12 << 16 | 2) + 4, 0))
        );
        assert_eq!(type_details(&DataType::Int64), Some((20, -1, 0)));
        let list = DataType::List(Arc::new(Field::new("element", DataType::Int64, true)));
        assert_eq!(type_details(&list), Some((1016, -1, 1)));
    }
}
