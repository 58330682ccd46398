//! Keys and constraints of lake tables where clients look for them: `pg_constraint`,
//! `pg_index` (a primary key or unique constraint is reported with the index PostgreSQL
//! would have made for it, named like the constraint, also a `pg_class` row of kind `i`),
//! `pg_get_constraintdef` and `pg_get_indexdef`, and `information_schema`'s
//! `table_constraints`, `key_column_usage`, `referential_constraints`,
//! `constraint_column_usage` and `check_constraints`. So psql's `\d`, JDBC's
//! `getPrimaryKeys` / `getImportedKeys`, DBeaver and Power BI see keys and relationships.
//! What a table declares is read from the lake ([`tidepool_lake::Declared`]).

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use tidepool_engine::system::AsyncSystemTable;
use tidepool_engine::{CATALOG, Engine};
use tidepool_lake::{Constraint, ConstraintKind};

use crate::gathered::Gather;

/// A constraint of a lake table, with what the catalogs say about it.
#[derive(Debug, Clone)]
pub(crate) struct Key {
    pub schema: String,
    pub table: String,
    /// The table's columns in order (attnum = position + 1).
    pub columns: Vec<String>,
    pub constraint: Constraint,
    /// For a foreign key: the referenced table's unique constraint on its columns.
    pub referenced: Option<String>,
}

impl Key {
    /// `pg_constraint.oid`, stable across processes.
    pub fn oid(&self) -> i64 {
        stable_oid(
            &format!("{}.{}", self.schema, self.table),
            &self.constraint.name,
        )
    }

    /// The oid of the index of a primary key or unique constraint.
    pub fn index_oid(&self) -> Option<i64> {
        matches!(
            self.constraint.kind,
            ConstraintKind::PrimaryKey | ConstraintKind::Unique
        )
        .then(|| {
            stable_oid(
                &format!("{}.{}#index", self.schema, self.table),
                &self.constraint.name,
            )
        })
    }

    /// The attnums of `names` in this table (0 for a column it lacks).
    fn attnums(&self, names: &[String]) -> Vec<i16> {
        names
            .iter()
            .map(|n| {
                self.columns
                    .iter()
                    .position(|c| c == n)
                    .map_or(0, |p| p as i16 + 1)
            })
            .collect()
    }

    /// `CREATE UNIQUE INDEX t_pkey ON s.t USING btree (id)`, as `pg_get_indexdef` prints.
    fn index_definition(&self) -> String {
        format!(
            "CREATE UNIQUE INDEX {} ON {}.{} USING btree ({})",
            tidepool_lake::quote_ident(&self.constraint.name),
            tidepool_lake::quote_ident(&self.schema),
            tidepool_lake::quote_ident(&self.table),
            self.constraint
                .columns
                .iter()
                .map(|c| tidepool_lake::quote_ident(c))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }

    /// The columns a CHECK names: those of the table that appear as words in it.
    fn check_columns(&self) -> Vec<String> {
        let ConstraintKind::Check { expr } = &self.constraint.kind else {
            return self.constraint.columns.clone();
        };
        let words: Vec<&str> = expr
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .collect();
        self.columns
            .iter()
            .filter(|c| words.contains(&c.as_str()))
            .cloned()
            .collect()
    }
}

/// A stable oid for a constraint or index `name` of `owner`, in a range apart from the
/// tables' and procedures'.
pub(crate) fn stable_oid(owner: &str, name: &str) -> i64 {
    let mut h: u32 = 2_166_136_261;
    for b in owner.bytes().chain([b'/']).chain(name.bytes()) {
        h = (h ^ b as u32).wrapping_mul(16_777_619);
    }
    1_100_000_000 + (h % 1_000_000_000) as i64
}

/// Every constraint of every lake table (tables that cannot be opened are left out).
pub(crate) async fn lake_keys(engine: &Engine) -> Result<Vec<Key>> {
    let lake = engine.lake();
    let listing = lake
        .listing()
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
    let mut keys = Vec::new();
    let mut unique: HashMap<(String, String), Vec<Constraint>> = HashMap::new();
    for (schema, l) in &listing.schemas {
        for table in &l.tables {
            let Ok(declared) = lake.declared(schema, table).await else {
                continue;
            };
            if declared.constraints.is_empty() {
                continue;
            }
            let columns = match engine.table_schema(schema, table).await {
                Ok(Some(s)) => s.fields().iter().map(|f| f.name().clone()).collect(),
                _ => continue,
            };
            unique.insert(
                (schema.clone(), table.clone()),
                declared
                    .constraints
                    .iter()
                    .filter(|c| {
                        matches!(c.kind, ConstraintKind::PrimaryKey | ConstraintKind::Unique)
                    })
                    .cloned()
                    .collect(),
            );
            for constraint in declared.constraints {
                keys.push(Key {
                    schema: schema.clone(),
                    table: table.clone(),
                    columns: Vec::clone(&columns),
                    constraint,
                    referenced: None,
                });
            }
        }
    }
    for k in &mut keys {
        if let ConstraintKind::ForeignKey {
            ref_schema,
            ref_table,
            ref_columns,
            ..
        } = &k.constraint.kind
        {
            k.referenced = unique
                .get(&(ref_schema.clone(), ref_table.clone()))
                .and_then(|u| u.iter().find(|c| &c.columns == ref_columns))
                .map(|c| c.name.clone());
        }
    }
    Ok(keys)
}

/// The columns of a referenced table, for a foreign key's `confkey`.
fn referenced_attnums(keys: &[Key], schema: &str, table: &str, names: &[String]) -> Vec<i16> {
    match keys.iter().find(|k| k.schema == schema && k.table == table) {
        Some(k) => k.attnums(names),
        None => vec![0; names.len()],
    }
}

/// One row of a catalog table by column name; columns not named get a zero value or
/// empty text (NULL where the column allows it).
pub(crate) type Row = Vec<(&'static str, ScalarValue)>;

pub(crate) fn batch(schema: &SchemaRef, rows: &[Row]) -> Result<RecordBatch> {
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let mut values = Vec::with_capacity(rows.len());
        for row in rows {
            let value = row
                .iter()
                .find(|(n, _)| *n == field.name())
                .map(|(_, v)| v.clone());
            values.push(match value {
                Some(v) if v.data_type() == *field.data_type() => v,
                Some(v) => v.cast_to(field.data_type())?,
                None if field.is_nullable() => ScalarValue::try_from(field.data_type())?,
                None => ScalarValue::new_zero(field.data_type())
                    .or_else(|_| ScalarValue::Utf8(Some(String::new())).cast_to(field.data_type()))
                    .or_else(|_| ScalarValue::try_from(field.data_type()))?,
            });
        }
        columns.push(if values.is_empty() {
            datafusion::arrow::array::new_empty_array(field.data_type())
        } else {
            ScalarValue::iter_to_array(values)?
        });
    }
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

pub(crate) fn text(s: &str) -> ScalarValue {
    ScalarValue::Utf8(Some(s.to_string()))
}

pub(crate) fn int(n: i64) -> ScalarValue {
    ScalarValue::Int64(Some(n))
}

pub(crate) fn flag(b: bool) -> ScalarValue {
    ScalarValue::Boolean(Some(b))
}

fn smallints(values: &[i16]) -> ScalarValue {
    let items: Vec<ScalarValue> = values
        .iter()
        .map(|v| ScalarValue::Int16(Some(*v)))
        .collect();
    ScalarValue::List(ScalarValue::new_list_nullable(&items, &DataType::Int16))
}

fn oids(n: usize) -> ScalarValue {
    let items: Vec<ScalarValue> = (0..n).map(|_| ScalarValue::Int32(Some(0))).collect();
    ScalarValue::List(ScalarValue::new_list_nullable(&items, &DataType::Int32))
}

/// The oids of lake tables and schemas as the bundled `pg_class` / `pg_namespace` have
/// them: `(schema, table) -> (table oid, namespace oid)`.
pub(crate) async fn relation_oids(
    catalog: &Arc<dyn SchemaProvider>,
) -> Result<HashMap<(String, String), (i64, i64)>> {
    let classes =
        crate::gathered::names(catalog, "pg_class", "relname", Some("relnamespace")).await?;
    let namespaces = crate::gathered::names(catalog, "pg_namespace", "nspname", None).await?;
    let mut out = HashMap::new();
    for (oid, (table, ns)) in classes {
        if let Some((schema, _)) = namespaces.get(&ns) {
            out.insert((schema.clone(), table), (oid, ns));
        }
    }
    Ok(out)
}

fn action_code(rule: &str) -> &'static str {
    match rule {
        "CASCADE" => "c",
        "SET NULL" => "n",
        "SET DEFAULT" => "d",
        "RESTRICT" => "r",
        _ => "a",
    }
}

/// `pg_constraint` and `pg_index` with a row per lake constraint (index).
#[derive(Debug)]
pub(crate) struct KeyTable {
    pub inner: Arc<dyn TableProvider>,
    pub catalog: Arc<dyn SchemaProvider>,
    pub engine: Weak<Engine>,
    pub index: bool,
}

#[async_trait]
impl Gather for KeyTable {
    fn inner(&self) -> &Arc<dyn TableProvider> {
        &self.inner
    }

    async fn batches(&self) -> Result<Vec<RecordBatch>> {
        let schema = self.inner.schema();
        let Some(engine) = self.engine.upgrade() else {
            return Ok(Vec::new());
        };
        let keys = lake_keys(&engine).await?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let rels = relation_oids(&self.catalog).await?;
        let mut rows: Vec<Row> = Vec::new();
        for k in &keys {
            let Some(&(rel, ns)) = rels.get(&(k.schema.clone(), k.table.clone())) else {
                continue;
            };
            let c = &k.constraint;
            let conkey = k.attnums(&c.columns);
            let conkey = if matches!(c.kind, ConstraintKind::Check { .. }) {
                k.attnums(&k.check_columns())
            } else {
                conkey
            };
            if self.index {
                let Some(index) = k.index_oid() else {
                    continue;
                };
                let n = conkey.len() as i64;
                rows.push(vec![
                    ("indexrelid", int(index)),
                    ("indrelid", int(rel)),
                    ("indnatts", int(n)),
                    ("indnkeyatts", int(n)),
                    ("indisunique", flag(true)),
                    ("indisprimary", flag(c.kind == ConstraintKind::PrimaryKey)),
                    ("indimmediate", flag(true)),
                    ("indisvalid", flag(true)),
                    ("indisready", flag(true)),
                    ("indislive", flag(true)),
                    ("indkey", smallints(&conkey)),
                    ("indoption", smallints(&vec![0; conkey.len()])),
                    ("indcollation", oids(conkey.len())),
                    ("indclass", oids(conkey.len())),
                ]);
                continue;
            }
            let mut row: Row = vec![
                ("oid", int(k.oid())),
                ("conname", text(&c.name)),
                ("connamespace", int(ns)),
                ("contype", text(c.contype())),
                ("condeferrable", flag(false)),
                ("condeferred", flag(false)),
                ("convalidated", flag(true)),
                ("conrelid", int(rel)),
                ("contypid", int(0)),
                ("conindid", int(k.index_oid().unwrap_or(0))),
                ("conparentid", int(0)),
                ("conislocal", flag(true)),
                ("coninhcount", int(0)),
                ("connoinherit", flag(false)),
                ("conkey", smallints(&conkey)),
                ("confupdtype", text(" ")),
                ("confdeltype", text(" ")),
                ("confmatchtype", text(" ")),
                ("confrelid", int(0)),
            ];
            if let ConstraintKind::ForeignKey {
                ref_schema,
                ref_table,
                ref_columns,
                on_delete,
                on_update,
            } = &c.kind
            {
                let target = rels.get(&(ref_schema.clone(), ref_table.clone()));
                row.retain(|(n, _)| !n.starts_with("conf") || *n == "confkey");
                row.extend([
                    ("confrelid", int(target.map_or(0, |t| t.0))),
                    ("confupdtype", text(action_code(on_update))),
                    ("confdeltype", text(action_code(on_delete))),
                    ("confmatchtype", text("s")),
                    (
                        "confkey",
                        smallints(&referenced_attnums(
                            &keys,
                            ref_schema,
                            ref_table,
                            ref_columns,
                        )),
                    ),
                ]);
                if let Some(name) = &k.referenced {
                    let owner = format!("{ref_schema}.{ref_table}#index");
                    row.retain(|(n, _)| *n != "conindid");
                    row.push(("conindid", int(stable_oid(&owner, name))));
                }
            }
            if let ConstraintKind::Check { expr } = &c.kind {
                row.push(("conbin", text(expr)));
            }
            rows.push(row);
        }
        Ok(vec![batch(&schema, &rows)?])
    }
}

/// `pg_class` rows for the indexes of lake keys (`relkind = 'i'`), and the table rows'
/// `relhasindex`, `relchecks` and `relhastriggers` as psql reads them before asking for
/// indexes, checks and foreign keys.
pub(crate) async fn class_rows(
    engine: &Engine,
    catalog: &Arc<dyn SchemaProvider>,
) -> Result<(Vec<Row>, HashMap<i64, (bool, i64, bool)>)> {
    let keys = lake_keys(engine).await?;
    if keys.is_empty() {
        return Ok((Vec::new(), HashMap::new()));
    }
    let rels = relation_oids(catalog).await?;
    let mut rows = Vec::new();
    let mut tables: HashMap<i64, (bool, i64, bool)> = HashMap::new();
    for k in &keys {
        let Some(&(rel, ns)) = rels.get(&(k.schema.clone(), k.table.clone())) else {
            continue;
        };
        let entry = tables.entry(rel).or_default();
        match &k.constraint.kind {
            ConstraintKind::Check { .. } => entry.1 += 1,
            ConstraintKind::ForeignKey {
                ref_schema,
                ref_table,
                ..
            } => {
                entry.2 = true;
                if let Some(&(target, _)) = rels.get(&(ref_schema.clone(), ref_table.clone())) {
                    tables.entry(target).or_default().2 = true;
                }
            }
            ConstraintKind::PrimaryKey | ConstraintKind::Unique => entry.0 = true,
        }
        if let Some(index) = k.index_oid() {
            rows.push(vec![
                ("oid", int(index)),
                ("relname", text(&k.constraint.name)),
                ("relnamespace", int(ns)),
                ("relam", int(403)),
                ("relkind", text("i")),
                ("relpersistence", text("p")),
                ("relnatts", int(k.constraint.columns.len() as i64)),
                ("relispopulated", flag(true)),
                ("relreplident", text("n")),
            ]);
        }
    }
    Ok((rows, tables))
}

/// `pg_class` rows as a batch of `schema`.
pub(crate) fn class_batch(schema: &SchemaRef, rows: &[Row]) -> Result<RecordBatch> {
    batch(schema, rows)
}

/// `pg_get_constraintdef(oid [, pretty])` and `pg_get_indexdef(oid [, column, pretty])`
/// for lake keys (NULL for other oids: there are no other indexes).
#[derive(Debug)]
pub(crate) struct KeyDefinition {
    pub engine: Weak<Engine>,
    pub index: bool,
    signature: Signature,
}

impl PartialEq for KeyDefinition {
    fn eq(&self, other: &Self) -> bool {
        self.index == other.index
    }
}
impl Eq for KeyDefinition {}
impl std::hash::Hash for KeyDefinition {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.index.hash(state);
    }
}

impl KeyDefinition {
    pub fn udf(engine: Weak<Engine>, index: bool) -> ScalarUDF {
        ScalarUDF::new_from_impl(KeyDefinition {
            engine,
            index,
            signature: Signature::variadic_any(Volatility::Stable),
        })
    }
}

impl ScalarUDFImpl for KeyDefinition {
    fn name(&self) -> &str {
        if self.index {
            "pg_get_indexdef"
        } else {
            "pg_get_constraintdef"
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = crate::pg_functions::arrays_of(&args.args, rows)?;
        let Some(first) = arrays.first() else {
            return Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)));
        };
        let oids = datafusion::arrow::compute::cast(first, &DataType::Int64)?;
        let oids = datafusion::arrow::array::AsArray::as_primitive::<
            datafusion::arrow::datatypes::Int64Type,
        >(&oids);
        let column = match arrays.get(1) {
            Some(c) if self.index => {
                let c = datafusion::arrow::compute::cast(c, &DataType::Int64)?;
                Some(
                    datafusion::arrow::array::AsArray::as_primitive::<
                        datafusion::arrow::datatypes::Int64Type,
                    >(&c)
                    .clone(),
                )
            }
            _ => None,
        };
        // Scalar functions are synchronous; the lake's keys are read on a helper thread.
        let engine = self.engine.upgrade();
        let keys = match engine {
            Some(engine) => std::thread::scope(|s| {
                s.spawn(|| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| DataFusionError::External(Box::new(e)))?
                        .block_on(lake_keys(&engine))
                })
                .join()
                .unwrap_or_else(|_| Err(DataFusionError::Internal("key lookup".into())))
            })?,
            None => Vec::new(),
        };
        let by_oid: HashMap<i64, &Key> = keys
            .iter()
            .filter_map(|k| {
                if self.index {
                    k.index_oid().map(|o| (o, k))
                } else {
                    Some((k.oid(), k))
                }
            })
            .collect();
        let mut out = datafusion::arrow::array::StringBuilder::with_capacity(rows, rows * 24);
        for i in 0..oids.len() {
            let key = datafusion::arrow::array::Array::is_valid(oids, i)
                .then(|| by_oid.get(&oids.value(i)))
                .flatten();
            match key {
                None => out.append_null(),
                Some(k) if self.index => {
                    let col = column.as_ref().map_or(0, |c| c.value(i));
                    if col > 0 {
                        match k.constraint.columns.get(col as usize - 1) {
                            Some(c) => out.append_value(tidepool_lake::quote_ident(c)),
                            None => out.append_value(""),
                        }
                    } else {
                        out.append_value(k.index_definition());
                    }
                }
                Some(k) => out.append_value(k.constraint.definition()),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// Which `information_schema` view of keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum View {
    TableConstraints,
    KeyColumnUsage,
    ReferentialConstraints,
    ConstraintColumnUsage,
    CheckConstraints,
}

impl View {
    pub const ALL: [(View, &'static str, &'static [&'static str]); 5] = [
        (
            View::TableConstraints,
            "table_constraints",
            &[
                "constraint_catalog",
                "constraint_schema",
                "constraint_name",
                "table_catalog",
                "table_schema",
                "table_name",
                "constraint_type",
                "is_deferrable",
                "initially_deferred",
                "enforced",
                "nulls_distinct",
            ],
        ),
        (
            View::KeyColumnUsage,
            "key_column_usage",
            &[
                "constraint_catalog",
                "constraint_schema",
                "constraint_name",
                "table_catalog",
                "table_schema",
                "table_name",
                "column_name",
                "ordinal_position:int",
                "position_in_unique_constraint:int",
            ],
        ),
        (
            View::ReferentialConstraints,
            "referential_constraints",
            &[
                "constraint_catalog",
                "constraint_schema",
                "constraint_name",
                "unique_constraint_catalog",
                "unique_constraint_schema",
                "unique_constraint_name",
                "match_option",
                "update_rule",
                "delete_rule",
            ],
        ),
        (
            View::ConstraintColumnUsage,
            "constraint_column_usage",
            &[
                "table_catalog",
                "table_schema",
                "table_name",
                "column_name",
                "constraint_catalog",
                "constraint_schema",
                "constraint_name",
            ],
        ),
        (
            View::CheckConstraints,
            "check_constraints",
            &[
                "constraint_catalog",
                "constraint_schema",
                "constraint_name",
                "check_clause",
            ],
        ),
    ];
}

/// An `information_schema` view of the lake's keys.
#[derive(Debug)]
pub(crate) struct KeyView {
    pub engine: Weak<Engine>,
    pub view: View,
    pub schema: SchemaRef,
}

impl KeyView {
    pub fn new(engine: Weak<Engine>, view: View, columns: &[&str]) -> KeyView {
        let fields: Vec<Field> = columns
            .iter()
            .map(|c| match c.strip_suffix(":int") {
                Some(name) => Field::new(name, DataType::Int32, true),
                None => Field::new(*c, DataType::Utf8, true),
            })
            .collect();
        KeyView {
            engine,
            view,
            schema: Arc::new(Schema::new(fields)),
        }
    }

    fn rows(&self, keys: &[Key]) -> Vec<Row> {
        let mut rows = Vec::new();
        for k in keys {
            let c = &k.constraint;
            let owner = || {
                vec![
                    ("constraint_catalog", text(CATALOG)),
                    ("constraint_schema", text(&k.schema)),
                    ("constraint_name", text(&c.name)),
                ]
            };
            let on_table = |mut r: Row| {
                r.extend([
                    ("table_catalog", text(CATALOG)),
                    ("table_schema", text(&k.schema)),
                    ("table_name", text(&k.table)),
                ]);
                r
            };
            match self.view {
                View::TableConstraints => {
                    let mut r = on_table(owner());
                    r.extend([
                        ("constraint_type", text(c.constraint_type())),
                        ("is_deferrable", text("NO")),
                        ("initially_deferred", text("NO")),
                        ("enforced", text("YES")),
                    ]);
                    if matches!(c.kind, ConstraintKind::PrimaryKey | ConstraintKind::Unique) {
                        r.push(("nulls_distinct", text("YES")));
                    }
                    rows.push(r);
                }
                View::KeyColumnUsage => {
                    if matches!(c.kind, ConstraintKind::Check { .. }) {
                        continue;
                    }
                    for (i, column) in c.columns.iter().enumerate() {
                        let mut r = on_table(owner());
                        r.extend([
                            ("column_name", text(column)),
                            ("ordinal_position", int(i as i64 + 1)),
                        ]);
                        if matches!(c.kind, ConstraintKind::ForeignKey { .. }) {
                            r.push(("position_in_unique_constraint", int(i as i64 + 1)));
                        }
                        rows.push(r);
                    }
                }
                View::ReferentialConstraints => {
                    let ConstraintKind::ForeignKey {
                        ref_schema,
                        on_delete,
                        on_update,
                        ..
                    } = &c.kind
                    else {
                        continue;
                    };
                    let mut r = owner();
                    r.extend([
                        ("unique_constraint_catalog", text(CATALOG)),
                        ("unique_constraint_schema", text(ref_schema)),
                        ("match_option", text("NONE")),
                        ("update_rule", text(on_update)),
                        ("delete_rule", text(on_delete)),
                    ]);
                    if let Some(name) = &k.referenced {
                        r.push(("unique_constraint_name", text(name)));
                    }
                    rows.push(r);
                }
                View::ConstraintColumnUsage => {
                    let (schema, table, columns) = match &c.kind {
                        ConstraintKind::ForeignKey {
                            ref_schema,
                            ref_table,
                            ref_columns,
                            ..
                        } => (ref_schema, ref_table, ref_columns.clone()),
                        ConstraintKind::Check { .. } => (&k.schema, &k.table, k.check_columns()),
                        _ => (&k.schema, &k.table, c.columns.clone()),
                    };
                    for column in columns {
                        let mut r = owner();
                        r.extend([
                            ("table_catalog", text(CATALOG)),
                            ("table_schema", text(schema)),
                            ("table_name", text(table)),
                            ("column_name", text(&column)),
                        ]);
                        rows.push(r);
                    }
                }
                View::CheckConstraints => {
                    if let ConstraintKind::Check { expr } = &c.kind {
                        let mut r = owner();
                        r.push(("check_clause", text(&format!("(({expr}))"))));
                        rows.push(r);
                    }
                }
            }
        }
        rows
    }
}

#[async_trait]
impl AsyncSystemTable for KeyView {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    async fn rows(&self, _session: &dyn datafusion::catalog::Session) -> Result<RecordBatch> {
        let Some(engine) = self.engine.upgrade() else {
            return Ok(RecordBatch::new_empty(self.schema.clone()));
        };
        let keys = lake_keys(&engine).await?;
        batch(&self.schema, &self.rows(&keys))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, kind: ConstraintKind, columns: &[&str]) -> Key {
        Key {
            schema: "s".into(),
            table: "t".into(),
            columns: vec!["id".into(), "n".into(), "c".into()],
            constraint: Constraint {
                name: name.into(),
                columns: columns.iter().map(|c| c.to_string()).collect(),
                kind,
            },
            referenced: None,
        }
    }

    #[test]
    fn keys_read_as_postgres_reports_them() {
        let pk = key("t_pkey", ConstraintKind::PrimaryKey, &["id"]);
        assert_eq!(pk.attnums(&pk.constraint.columns), [1]);
        assert_eq!(
            pk.index_definition(),
            "CREATE UNIQUE INDEX t_pkey ON s.t USING btree (id)"
        );
        assert!(pk.index_oid().is_some() && pk.index_oid() != Some(pk.oid()));
        let check = key(
            "t_check",
            ConstraintKind::Check {
                expr: "n >= 0 AND c <> 1".into(),
            },
            &[],
        );
        assert_eq!(check.check_columns(), ["n", "c"]);
        assert_eq!(check.index_oid(), None);
        let view = KeyView::new(Weak::new(), View::KeyColumnUsage, View::ALL[1].2);
        let rows = view.rows(&[pk.clone(), check.clone()]);
        assert_eq!(rows.len(), 1, "a check has no key columns");
        let b = batch(&view.schema, &rows).unwrap();
        assert_eq!(b.num_rows(), 1);
        let tc = KeyView::new(Weak::new(), View::TableConstraints, View::ALL[0].2);
        assert_eq!(tc.rows(&[pk, check]).len(), 2);
    }
}
