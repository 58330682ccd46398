//! Procedures where psql, DBeaver and BI tools look: `pg_catalog.pg_proc` gets a row per
//! procedure (`prokind = 'p'`) next to the built-in functions, and
//! `pg_get_function_arguments(oid)`, `pg_get_function_identity_arguments(oid)`,
//! `pg_get_function_result(oid)`, `pg_get_functiondef(oid)` (the definition as created)
//! and `pg_function_is_visible(oid)` answer for them, so psql's `\df` lists them and
//! `\sf` prints them. `pg_views` lists the lake's views.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, new_null_array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::error::Result;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use parking_lot::RwLock;

use tidepool_engine::Engine;

use crate::gathered::{Gather, Gathered};

/// Texts by procedure oid, for the `pg_get_function*` functions: arguments, result and
/// the stored definition.
pub type Signatures = Arc<RwLock<HashMap<i64, (String, String, String)>>>;

/// The pg_catalog schema with procedures added to `pg_proc`.
#[derive(Debug)]
pub struct PgCatalog {
    pub inner: Arc<dyn SchemaProvider>,
    pub engine: Weak<Engine>,
    pub signatures: Signatures,
    /// Tables with function oids in their regproc columns (`pg_type`, `pg_operator`...),
    /// each built at first use.
    pub regproc_tables: tokio::sync::Mutex<HashMap<String, Arc<dyn TableProvider>>>,
    /// The built-in `pg_proc` rows with their array columns as arrays, built at first use.
    pub builtin_procs: Arc<tokio::sync::OnceCell<Vec<RecordBatch>>>,
}

use crate::gathered::collect;

#[async_trait]
impl SchemaProvider for PgCatalog {
    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if crate::pg_types::regproc_columns(name).is_some() {
            let mut built = self.regproc_tables.lock().await;
            if let Some(table) = built.get(name) {
                return Ok(Some(table.clone()));
            }
            let (Some(table), Some(procs)) = (
                self.inner.table(name).await?,
                self.inner.table("pg_proc").await?,
            ) else {
                return Ok(None);
            };
            let table = crate::pg_types::with_proc_oids(name, &table, &procs).await?;
            built.insert(name.to_string(), table.clone());
            return Ok(Some(table));
        }
        if name == "pg_settings" {
            // The crate's own has a `bool_val` column (Postgres: `boot_val`).
            let settings = tidepool_engine::SessionSettings::default();
            return Ok(Some(
                crate::pg_settings::ShowAllSettings::new(&settings)?.table(),
            ));
        }
        let inner = self.inner.table(name).await?;
        if name == "pg_index" || name == "pg_constraint" {
            return Ok(inner.map(|inner| {
                Arc::new(Gathered(crate::keys::KeyTable {
                    inner: crate::pg_attribute::no_keys(&inner.schema()),
                    catalog: self.inner.clone(),
                    engine: self.engine.clone(),
                    index: name == "pg_index",
                })) as Arc<dyn TableProvider>
            }));
        }
        if name == "pg_policy" {
            return Ok(inner.map(|inner| {
                Arc::new(Gathered(crate::acl::PolicyTable {
                    inner,
                    catalog: self.inner.clone(),
                    engine: self.engine.clone(),
                })) as Arc<dyn TableProvider>
            }));
        }
        if name == "pg_roles" {
            return Ok(inner.map(|inner| {
                Arc::new(Gathered(crate::acl::RolesTable { inner })) as Arc<dyn TableProvider>
            }));
        }
        if name == "pg_class" {
            return Ok(inner.map(|inner| {
                Arc::new(crate::pg_attribute::ClassTable::new(
                    inner,
                    self.inner.clone(),
                    self.engine.clone(),
                )) as Arc<dyn TableProvider>
            }));
        }
        if name == "pg_attribute" {
            return Ok(inner.map(|inner| {
                Arc::new(Gathered(crate::pg_attribute::AttributeTable {
                    inner,
                    catalog: self.inner.clone(),
                    engine: self.engine.clone(),
                })) as Arc<dyn TableProvider>
            }));
        }
        if name == "pg_attrdef" {
            return Ok(inner.map(|inner| {
                Arc::new(Gathered(crate::pg_attrdef::AttrDefTable {
                    inner,
                    catalog: self.inner.clone(),
                    engine: self.engine.clone(),
                })) as Arc<dyn TableProvider>
            }));
        }
        if name == "pg_description" {
            return Ok(inner.map(|inner| {
                Arc::new(Gathered(crate::pg_description::DescriptionTable {
                    inner,
                    catalog: self.inner.clone(),
                    engine: self.engine.clone(),
                })) as Arc<dyn TableProvider>
            }));
        }
        if name == "pg_namespace" {
            return Ok(inner.map(|inner| {
                Arc::new(Gathered(NamespacesTable { inner })) as Arc<dyn TableProvider>
            }));
        }
        if name == "pg_views" {
            return Ok(inner.map(|inner| {
                Arc::new(Gathered(ViewsTable {
                    inner,
                    engine: self.engine.clone(),
                })) as Arc<dyn TableProvider>
            }));
        }
        if name == "pg_collation" {
            return Ok(inner.map(crate::pg_collation::wrap));
        }
        if name != "pg_proc" {
            return Ok(inner.map(|inner| crate::catalog_arrays::ArrayColumns::wrap(name, inner)));
        }
        // Gathered when scanned: catalog enumerations (pg_class) open every table.
        Ok(inner.map(|inner| {
            Arc::new(Gathered(ProcTable {
                inner,
                catalog: self.inner.clone(),
                engine: self.engine.clone(),
                signatures: self.signatures.clone(),
                builtin: self.builtin_procs.clone(),
            })) as Arc<dyn TableProvider>
        }))
    }
}

/// `pg_proc`: the built-in rows and one per procedure.
#[derive(Debug)]
struct ProcTable {
    inner: Arc<dyn TableProvider>,
    catalog: Arc<dyn SchemaProvider>,
    engine: Weak<Engine>,
    signatures: Signatures,
    builtin: Arc<tokio::sync::OnceCell<Vec<RecordBatch>>>,
}

impl ProcTable {
    fn schema(&self) -> datafusion::arrow::datatypes::SchemaRef {
        crate::catalog_arrays::schema("pg_proc", &self.inner.schema())
    }

    async fn batches(&self) -> Result<Vec<RecordBatch>> {
        let inner = self.inner.clone();
        let schema = ProcTable::schema(self);
        let mut batches = self
            .builtin
            .get_or_try_init(|| async {
                collect(&inner)
                    .await?
                    .iter()
                    .map(|b| crate::catalog_arrays::convert("pg_proc", b, &schema))
                    .collect::<Result<Vec<_>>>()
            })
            .await?
            .clone();
        let Some(engine) = self.engine.upgrade() else {
            return Ok(batches);
        };
        // Namespace oids as pg_namespace has them.
        let mut namespaces: HashMap<String, i64> = HashMap::new();
        if let Some(ns) = self.catalog.table("pg_namespace").await? {
            for b in collect(&ns).await? {
                let (Some(o), Some(n)) = (b.column_by_name("oid"), b.column_by_name("nspname"))
                else {
                    continue;
                };
                let o = cast(o, &DataType::Int64)?;
                let n = cast(n, &DataType::Utf8)?;
                let (o, n) = (
                    o.as_primitive::<datafusion::arrow::datatypes::Int64Type>(),
                    n.as_string::<i32>(),
                );
                for i in 0..b.num_rows() {
                    if o.is_valid(i) && n.is_valid(i) {
                        namespaces.insert(n.value(i).to_string(), o.value(i));
                    }
                }
            }
        }
        let listing = engine
            .lake()
            .listing()
            .await
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        let mut rows: Vec<HashMap<&'static str, ScalarValue>> = Vec::new();
        for (s, l) in &listing.schemas {
            for n in &l.procedures {
                let Ok(Some(p)) = Box::pin(engine.procedure(s, n)).await else {
                    continue;
                };
                let id = crate::oids::procedure(s, n);
                let args = p
                    .params
                    .iter()
                    .map(|q| match &q.default_sql {
                        Some(d) => format!("{} {} DEFAULT {d}", q.name, q.sql_type.to_lowercase()),
                        None => format!("{} {}", q.name, q.sql_type.to_lowercase()),
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                let result = match &p.result {
                    Some(r) => format!(
                        "TABLE({})",
                        r.fields()
                            .iter()
                            .map(|f| format!(
                                "{} {}",
                                f.name(),
                                tidepool_engine::procedures::sql_type(f.data_type()).to_lowercase()
                            ))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    None => String::new(),
                };
                self.signatures
                    .write()
                    .insert(id, (args, result, p.definition.clone()));
                let text = |v: &str| ScalarValue::Utf8(Some(v.to_string()));
                let int = |v: i64| ScalarValue::Int64(Some(v));
                let mut row = HashMap::new();
                row.insert("oid", int(id));
                row.insert("proname", text(n));
                row.insert("pronamespace", int(namespaces.get(s).copied().unwrap_or(0)));
                row.insert("prokind", text("p"));
                row.insert("prolang", int(14));
                row.insert("pronargs", int(p.params.len() as i64));
                let oid_of = |t: &DataType| {
                    arrow_pg::datatypes::into_pg_type(t)
                        .map(|t| t.oid() as i32)
                        .unwrap_or(25)
                };
                let types: Vec<i32> = p.params.iter().map(|q| oid_of(&q.data_type)).collect();
                row.insert("proargtypes", crate::catalog_arrays::oid_list(&types));
                let mut names: Vec<ScalarValue> = p
                    .params
                    .iter()
                    .map(|q| ScalarValue::Utf8(Some(q.name.clone())))
                    .collect();
                // A procedure returning rows is PostgreSQL's `RETURNS TABLE (...)`: its
                // result columns follow the parameters in proallargtypes, proargmodes
                // ('t') and proargnames, which is where pgjdbc's getProcedureColumns,
                // psql's \df and DBeaver read them. With only IN parameters PostgreSQL
                // leaves the first two NULL.
                if let Some(result) = &p.result {
                    let mut all = types.clone();
                    let mut modes: Vec<ScalarValue> =
                        vec![ScalarValue::Utf8(Some("i".into())); types.len()];
                    for f in result.fields() {
                        all.push(oid_of(f.data_type()));
                        modes.push(ScalarValue::Utf8(Some("t".into())));
                        names.push(ScalarValue::Utf8(Some(f.name().clone())));
                    }
                    row.insert("proallargtypes", crate::catalog_arrays::oid_list(&all));
                    row.insert(
                        "proargmodes",
                        ScalarValue::List(ScalarValue::new_list_nullable(&modes, &DataType::Utf8)),
                    );
                }
                row.insert(
                    "proargnames",
                    ScalarValue::List(ScalarValue::new_list_nullable(&names, &DataType::Utf8)),
                );
                row.insert(
                    "pronargdefaults",
                    int(p.params.iter().filter(|q| q.default.is_some()).count() as i64),
                );
                row.insert("proretset", ScalarValue::Boolean(Some(p.result.is_some())));
                // PostgreSQL gives a procedure `void`; one that returns rows is read as a
                // set of records. pgjdbc's getProcedureColumns joins pg_type on it (0
                // matched nothing: no columns).
                row.insert(
                    "prorettype",
                    int(if p.result.is_some() { 2249 } else { 2278 }),
                );
                row.insert("provolatile", text("v"));
                row.insert("prosrc", text(&p.definition));
                rows.push(row);
            }
        }
        if !rows.is_empty() {
            batches.push(rows_to_batch(&schema, &rows)?);
        }
        Ok(batches)
    }
}

/// Oid of `information_schema` in the Postgres catalog datafusion-pg-catalog's built-in
/// `pg_proc` rows were exported from (its functions' `pronamespace`).
const INFORMATION_SCHEMA_OID: i64 = 13283;

/// `pg_namespace` with `information_schema`, which the built-in `pg_proc` rows name and
/// datafusion-pg-catalog leaves out.
#[derive(Debug)]
struct NamespacesTable {
    inner: Arc<dyn TableProvider>,
}

impl NamespacesTable {
    async fn batches(&self) -> Result<Vec<RecordBatch>> {
        let mut batches = collect(&self.inner).await?;
        let listed = batches.iter().any(|b| {
            b.column_by_name("nspname")
                .and_then(|c| cast(c, &DataType::Utf8).ok())
                .is_some_and(|c| {
                    c.as_string::<i32>()
                        .iter()
                        .any(|n| n == Some("information_schema"))
                })
        });
        if !listed {
            let mut row = HashMap::new();
            row.insert("oid", ScalarValue::Int64(Some(INFORMATION_SCHEMA_OID)));
            row.insert(
                "nspname",
                ScalarValue::Utf8(Some("information_schema".to_string())),
            );
            row.insert("nspowner", ScalarValue::Int64(Some(10)));
            batches.push(rows_to_batch(&self.inner.schema(), &[row])?);
        }
        Ok(batches)
    }
}

#[async_trait]
impl Gather for NamespacesTable {
    fn inner(&self) -> &Arc<dyn TableProvider> {
        &self.inner
    }
    async fn batches(&self) -> Result<Vec<RecordBatch>> {
        NamespacesTable::batches(self).await
    }
}

/// `pg_views`: the views of the lake with their definitions.
#[derive(Debug)]
struct ViewsTable {
    inner: Arc<dyn TableProvider>,
    engine: Weak<Engine>,
}

impl ViewsTable {
    async fn batches(&self) -> Result<Vec<RecordBatch>> {
        let schema = self.inner.schema();
        let mut rows: Vec<HashMap<&'static str, ScalarValue>> = Vec::new();
        if let Some(engine) = self.engine.upgrade() {
            let lake = engine.lake();
            let external = |e: tidepool_lake::LakeError| {
                datafusion::error::DataFusionError::External(Box::new(e))
            };
            let listing = lake.listing().await.map_err(external)?;
            for (s, l) in &listing.schemas {
                for v in &l.views {
                    let definition = lake
                        .definition(tidepool_lake::DefinitionKind::View, s, v)
                        .await
                        .map_err(external)?
                        .unwrap_or_default();
                    let text = |x: &str| ScalarValue::Utf8(Some(x.to_string()));
                    let mut row = HashMap::new();
                    row.insert("schemaname", text(s));
                    row.insert("viewname", text(v));
                    row.insert("viewowner", text("tidepool"));
                    row.insert("definition", text(&definition));
                    rows.push(row);
                }
            }
        }
        Ok(vec![rows_to_batch(&schema, &rows)?])
    }
}

#[async_trait]
impl Gather for ProcTable {
    fn inner(&self) -> &Arc<dyn TableProvider> {
        &self.inner
    }
    fn schema(&self) -> datafusion::arrow::datatypes::SchemaRef {
        ProcTable::schema(self)
    }
    async fn batches(&self) -> Result<Vec<RecordBatch>> {
        ProcTable::batches(self).await
    }
}

#[async_trait]
impl Gather for ViewsTable {
    fn inner(&self) -> &Arc<dyn TableProvider> {
        &self.inner
    }
    async fn batches(&self) -> Result<Vec<RecordBatch>> {
        ViewsTable::batches(self).await
    }
}

/// The `pg_get_function_*` and `pg_function_is_visible` functions over `signatures`
/// (NULL for built-in functions, which have no entry).
pub fn udfs(signatures: &Signatures) -> Vec<ScalarUDF> {
    let text = |name: &str, pick: fn(&(String, String, String)) -> String| {
        let s = signatures.clone();
        create_udf(
            name,
            vec![DataType::Int64],
            DataType::Utf8,
            Volatility::Stable,
            Arc::new(move |args: &[ColumnarValue]| {
                let arrays = ColumnarValue::values_to_arrays(args)?;
                let oids = arrays[0].as_primitive::<datafusion::arrow::datatypes::Int64Type>();
                let map = s.read();
                let out: datafusion::arrow::array::StringArray = (0..oids.len())
                    .map(|i| {
                        oids.is_valid(i)
                            .then(|| map.get(&oids.value(i)).map(pick))
                            .flatten()
                    })
                    .collect();
                Ok(ColumnarValue::Array(Arc::new(out)))
            }),
        )
    };
    vec![
        text("pg_get_function_arguments", |s| s.0.clone()),
        text("pg_get_function_identity_arguments", |s| s.0.clone()),
        text("pg_get_function_result", |s| s.1.clone()),
        // psql's \sf: the procedure as it was created.
        text("pg_get_functiondef", |s| s.2.clone()),
        create_udf(
            "pg_function_is_visible",
            vec![DataType::Int64],
            DataType::Boolean,
            Volatility::Stable,
            Arc::new(|args: &[ColumnarValue]| {
                let arrays = ColumnarValue::values_to_arrays(args)?;
                let out = datafusion::arrow::array::BooleanArray::from(vec![true; arrays[0].len()]);
                Ok(ColumnarValue::Array(Arc::new(out)))
            }),
        ),
    ]
}

/// A batch of `schema` from rows given as column name -> value; columns a row does not
/// name are NULL, or the type's default where the column is not nullable.
pub fn rows_to_batch(
    schema: &datafusion::arrow::datatypes::SchemaRef,
    rows: &[HashMap<&'static str, ScalarValue>],
) -> Result<RecordBatch> {
    let mut columns: Vec<ArrayRef> = Vec::new();
    for f in schema.fields() {
        let values: Vec<ScalarValue> = rows
            .iter()
            .map(|r| match r.get(f.name().as_str()) {
                Some(v) => v.cast_to(f.data_type()).unwrap_or_else(|_| {
                    ScalarValue::try_from(f.data_type()).unwrap_or(ScalarValue::Null)
                }),
                None if f.is_nullable() => {
                    ScalarValue::try_from(f.data_type()).unwrap_or(ScalarValue::Null)
                }
                None => ScalarValue::new_default(f.data_type()).unwrap_or(ScalarValue::Null),
            })
            .collect();
        let array = ScalarValue::iter_to_array(values)
            .unwrap_or_else(|_| new_null_array(f.data_type(), rows.len()));
        let array = if array.data_type() == f.data_type() {
            array
        } else {
            cast(&array, f.data_type())?
        };
        columns.push(array);
    }
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}
