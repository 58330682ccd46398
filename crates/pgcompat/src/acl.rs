//! Privileges and policies where psql and drivers look for them: `pg_class.relacl` (one
//! `user=letters/tidepool` item per user holding a privilege on the table, from
//! `[[users]]` readers and GRANTs), `pg_class.relrowsecurity`, `pg_policy` (with
//! `pg_get_expr` giving back a policy's `USING`) and `pg_roles` oids the policies name,
//! read by psql's `\dp` and `\d`. The rules themselves live in the engine's `authz`; this
//! only shows them.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, ListBuilder, RecordBatch, StringBuilder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use tidepool_engine::Engine;

use crate::gathered::Gather;
use crate::keys::{Row, batch, flag, int, text};

/// What `pg_class` shows of a lake table's access: its ACL items and whether row-level
/// security is on.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct TableAccess {
    pub acl: Vec<String>,
    pub row_security: bool,
}

/// [`TableAccess`] by `pg_class` oid, for the tables something is granted on or secured.
pub(crate) async fn class_access(
    engine: &Engine,
    catalog: &Arc<dyn SchemaProvider>,
) -> Result<HashMap<i64, TableAccess>> {
    let access = &engine.options().access;
    let doc = access
        .security
        .refresh()
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
    let readers = access.users.values().any(|u| u.schemas.is_some());
    if !readers && doc.grants.is_empty() && doc.rls.is_empty() {
        return Ok(HashMap::new());
    }
    let mut out = HashMap::new();
    for ((schema, table), (oid, _)) in crate::keys::relation_oids(catalog).await? {
        let t = TableAccess {
            acl: tidepool_engine::authz::catalog::table_acl(access, &doc, &schema, &table),
            row_security: doc.rls_enabled(&schema, &table),
        };
        if t != TableAccess::default() {
            out.insert(oid, t);
        }
    }
    Ok(out)
}

/// Sets `relacl` and `relrowsecurity` of the rows `access` names.
pub(crate) fn patch_class(
    schema: &SchemaRef,
    columns: &mut [ArrayRef],
    access: &HashMap<i64, TableAccess>,
) -> Result<()> {
    let Ok(oid) = schema.index_of("oid") else {
        return Ok(());
    };
    let oids = cast(&columns[oid], &DataType::Int64)?;
    let oids = oids.as_primitive::<Int64Type>();
    let of = |i: usize| {
        oids.is_valid(i)
            .then(|| access.get(&oids.value(i)))
            .flatten()
    };
    if let Ok(k) = schema.index_of("relacl") {
        let old = cast(
            &columns[k],
            &DataType::List(Arc::new(datafusion::arrow::datatypes::Field::new(
                "item",
                DataType::Utf8,
                true,
            ))),
        )?;
        let old = old.as_list::<i32>();
        let mut new = ListBuilder::new(StringBuilder::new());
        for i in 0..oids.len() {
            match of(i) {
                Some(t) if !t.acl.is_empty() => {
                    for item in &t.acl {
                        new.values().append_value(item);
                    }
                    new.append(true);
                }
                _ if old.is_valid(i) => {
                    let items = old.value(i);
                    let items = items.as_string::<i32>();
                    for item in items.iter() {
                        new.values().append_option(item);
                    }
                    new.append(true);
                }
                _ => new.append(false),
            }
        }
        columns[k] = cast(
            &(Arc::new(new.finish()) as ArrayRef),
            schema.field(k).data_type(),
        )?;
    }
    if let Ok(k) = schema.index_of("relrowsecurity") {
        let old = cast(&columns[k], &DataType::Boolean)?;
        let old = old.as_boolean();
        let new: BooleanArray = (0..oids.len())
            .map(|i| match of(i) {
                Some(t) => Some(t.row_security),
                None => old.is_valid(i).then(|| old.value(i)),
            })
            .collect();
        columns[k] = cast(&(Arc::new(new) as ArrayRef), schema.field(k).data_type())?;
    }
    Ok(())
}

/// A role's oid in `pg_roles` and `pg_policy.polroles`: stable across processes and
/// restarts (a hash of the name; 0 stays `public`, as in Postgres).
pub(crate) fn role_oid(name: &str) -> i64 {
    crate::keys::stable_oid("role", name)
}

/// `pg_roles` with each role's own oid (the bundled table gives every role 0).
#[derive(Debug)]
pub(crate) struct RolesTable {
    pub inner: Arc<dyn TableProvider>,
}

#[async_trait]
impl Gather for RolesTable {
    fn inner(&self) -> &Arc<dyn TableProvider> {
        &self.inner
    }

    async fn batches(&self) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        for b in crate::gathered::collect(&self.inner).await? {
            let schema = b.schema();
            let (Ok(oid), Ok(name)) = (schema.index_of("oid"), schema.index_of("rolname")) else {
                out.push(b);
                continue;
            };
            let names = cast(b.column(name), &DataType::Utf8)?;
            let oids: Int64Array = names
                .as_string::<i32>()
                .iter()
                .map(|n| n.map(role_oid))
                .collect();
            let mut columns = b.columns().to_vec();
            columns[oid] = cast(&(Arc::new(oids) as ArrayRef), schema.field(oid).data_type())?;
            out.push(RecordBatch::try_new(schema, columns)?);
        }
        Ok(out)
    }
}

/// `pg_policy`: a row per row-level security policy (`polqual` is the `USING` text, which
/// `pg_get_expr` gives back; `polroles` `{0}` is `public`).
#[derive(Debug)]
pub(crate) struct PolicyTable {
    pub inner: Arc<dyn TableProvider>,
    pub catalog: Arc<dyn SchemaProvider>,
    pub engine: Weak<Engine>,
}

#[async_trait]
impl Gather for PolicyTable {
    fn inner(&self) -> &Arc<dyn TableProvider> {
        &self.inner
    }

    /// `polroles` is an `oid[]` (the bundled table has text).
    fn schema(&self) -> SchemaRef {
        let inner = self.inner.schema();
        let fields: Vec<Field> = inner
            .fields()
            .iter()
            .map(|f| match f.name().as_str() {
                "polroles" => Field::new(
                    "polroles",
                    DataType::List(Arc::new(Field::new("item", DataType::Int32, true))),
                    false,
                ),
                _ => f.as_ref().clone(),
            })
            .collect();
        Arc::new(Schema::new(fields))
    }

    async fn batches(&self) -> Result<Vec<RecordBatch>> {
        let Some(engine) = self.engine.upgrade() else {
            return Ok(Vec::new());
        };
        let doc = engine
            .options()
            .access
            .security
            .refresh()
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        if doc.policies.is_empty() {
            return Ok(Vec::new());
        }
        let rels = crate::keys::relation_oids(&self.catalog).await?;
        let mut rows: Vec<Row> = Vec::new();
        for p in &doc.policies {
            let Some(&(rel, _)) = rels.get(&(p.schema.clone(), p.table.clone())) else {
                continue;
            };
            let roles: Vec<ScalarValue> = p
                .roles
                .iter()
                .map(|r| match r.as_str() {
                    "public" => ScalarValue::Int32(Some(0)),
                    r => ScalarValue::Int32(Some(role_oid(r) as i32)),
                })
                .collect();
            rows.push(vec![
                (
                    "oid",
                    int(crate::keys::stable_oid(
                        &format!("{}.{}", p.schema, p.table),
                        &p.name,
                    )),
                ),
                ("polname", text(&p.name)),
                ("polrelid", int(rel)),
                (
                    "polcmd",
                    text(if p.command == "SELECT" { "r" } else { "*" }),
                ),
                ("polpermissive", flag(true)),
                (
                    "polroles",
                    ScalarValue::List(ScalarValue::new_list_nullable(&roles, &DataType::Int32)),
                ),
                ("polqual", text(&p.using)),
            ]);
        }
        Ok(vec![batch(&self.schema(), &rows)?])
    }
}

/// `pg_get_expr(node, relation [, pretty])`: tidepool's catalogs keep expressions as SQL
/// text (policies' `USING`), so the text is its own rendering.
pub(crate) fn pg_get_expr_udf() -> ScalarUDF {
    ScalarUDF::new_from_impl(GetExpr {
        signature: Signature::variadic_any(Volatility::Stable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct GetExpr {
    signature: Signature,
}

impl ScalarUDFImpl for GetExpr {
    fn name(&self) -> &str {
        "pg_get_expr"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        match args.args.first() {
            Some(ColumnarValue::Array(a)) => Ok(ColumnarValue::Array(cast(a, &DataType::Utf8)?)),
            Some(ColumnarValue::Scalar(s)) => {
                Ok(ColumnarValue::Scalar(s.cast_to(&DataType::Utf8)?))
            }
            None => Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None))),
        }
    }
}
