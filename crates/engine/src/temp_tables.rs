//! Session temporary tables: `CREATE [LOCAL] TEMP TABLE`, `CREATE TEMP TABLE ... AS`,
//! `SELECT ... INTO TEMP TABLE`, then INSERT, SELECT and DROP on them, as in Postgres.
//!
//! They are Arrow tables in memory, private to the session and gone when it ends or on
//! `DISCARD ALL`/`DISCARD TEMP`; nothing reaches the lake. They live in the session's own
//! `pg_temp` schema, laid over the shared `lake` catalog only once a session creates
//! one, so sessions that never do pay nothing. An unqualified name that matches a temp
//! table resolves to it before the search path, as Postgres does. BI tools probe for
//! them on connect (Tableau's `#Tableau_..._Connect_CheckCreateTempTableCap`) and use
//! them for filters with many values.

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, MemorySchemaProvider, SchemaProvider, TableProvider,
};
use datafusion::common::TableReference;
use datafusion::error::Result;
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use datafusion::sql::sqlparser::ast::{
    CopySource, Ident, ObjectName, ObjectNamePart, ObjectType, OnCommit, SetExpr, Statement,
    TableObject, visit_relations_mut,
};

use super::{CATALOG, EngineError};

/// The temporary tables of a session at one moment (see [`TempTables::snapshot`]).
#[derive(Debug, Default, Clone)]
pub struct TempSnapshot(
    Vec<(
        String,
        datafusion::arrow::datatypes::SchemaRef,
        Vec<datafusion::arrow::record_batch::RecordBatch>,
    )>,
);

/// The schema that holds a session's temporary tables.
pub const TEMP_SCHEMA: &str = "pg_temp";

/// One session's temporary tables.
#[derive(Debug, Default)]
pub struct TempTables {
    schema: Arc<MemorySchemaProvider>,
    /// Tables created `ON COMMIT DROP`, dropped when the transaction ends.
    on_commit_drop: parking_lot::Mutex<HashSet<String>>,
}

impl TempTables {
    /// Names of the session's temporary tables, as registered.
    pub fn names(&self) -> HashSet<String> {
        self.schema.table_names().into_iter().collect()
    }

    /// Whether a temporary table of this name exists.
    pub fn exists(&self, name: &str) -> bool {
        self.schema.table_exist(name)
    }

    /// Adds (or replaces) a temporary table.
    pub fn register(&self, name: &str, table: Arc<dyn TableProvider>) -> Result<()> {
        self.schema.register_table(name.to_string(), table)?;
        Ok(())
    }

    /// Drops `name` when the running transaction ends (`ON COMMIT DROP`).
    pub fn drop_at_end(&self, name: &str) {
        self.on_commit_drop.lock().insert(name.to_string());
    }

    /// The transaction ended: drops the tables created `ON COMMIT DROP`.
    pub fn transaction_ended(&self) {
        for name in std::mem::take(&mut *self.on_commit_drop.lock()) {
            let _ = self.schema.deregister_table(&name);
        }
    }

    /// Drops a temporary table; false when there was none.
    pub fn drop(&self, name: &str) -> Result<bool> {
        Ok(self.schema.deregister_table(name)?.is_some())
    }

    /// Every temporary table with its rows as they are now, for a transaction to return
    /// to ([`TempTables::restore`]). Rows are Arrow arrays shared with the live table,
    /// so this copies no data.
    pub async fn snapshot(&self, state: &SessionState) -> Result<TempSnapshot> {
        let mut tables = Vec::new();
        for name in self.schema.table_names() {
            let Some(table) = self.schema.table(&name).await? else {
                continue;
            };
            let plan = table.scan(state, None, &[], None).await?;
            let batches = datafusion::physical_plan::collect(plan, state.task_ctx()).await?;
            tables.push((name, table.schema(), batches));
        }
        Ok(TempSnapshot(tables))
    }

    /// Puts the temporary tables back as `snapshot` saw them: tables created since are
    /// dropped, rows written since are gone.
    pub fn restore(&self, snapshot: &TempSnapshot) -> Result<()> {
        self.clear();
        for (name, schema, batches) in &snapshot.0 {
            let table =
                datafusion::datasource::MemTable::try_new(schema.clone(), vec![batches.clone()])?;
            self.register(name, Arc::new(table))?;
        }
        Ok(())
    }

    /// Drops every temporary table (`DISCARD TEMP`).
    pub fn clear(&self) {
        for name in self.schema.table_names() {
            let _ = self.schema.deregister_table(&name);
        }
    }

    /// `state` with this session's `pg_temp` laid over the lake catalog.
    pub fn overlay(&self, state: SessionState) -> SessionState {
        let list = Arc::new(OverlayList {
            inner: state.catalog_list().clone(),
            temp: self.schema.clone(),
        });
        SessionStateBuilder::new_from_existing(state)
            .with_catalog_list(list)
            .build()
    }
}

/// Whether a name written in SQL is a schema-qualified `pg_temp` name.
pub fn is_temp_name(name: &ObjectName) -> bool {
    let parts = &name.0;
    parts.len() >= 2
        && parts[parts.len() - 2]
            .as_ident()
            .is_some_and(|i| i.value.eq_ignore_ascii_case(TEMP_SCHEMA))
}

/// Whether a planned statement writes or drops a temporary table.
pub fn targets_temp(plan: &LogicalPlan) -> bool {
    let is_temp = |r: &TableReference| r.schema() == Some(TEMP_SCHEMA);
    match plan {
        LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(c)) => is_temp(&c.name),
        LogicalPlan::Ddl(DdlStatement::DropTable(d)) => is_temp(&d.name),
        LogicalPlan::Dml(d) => is_temp(&d.table_name),
        _ => false,
    }
}

/// The name (as registered) of the temporary table `stmt` creates `ON COMMIT DROP`.
pub fn dropped_on_commit(stmt: &Statement) -> Option<String> {
    match stmt {
        Statement::CreateTable(c) if c.temporary && c.on_commit == Some(OnCommit::Drop) => {
            c.name.0.last().and_then(|p| p.as_ident()).map(normalized)
        }
        _ => None,
    }
}

/// Rewrites `stmt` for temporary tables: `CREATE TEMP TABLE t` and `SELECT ... INTO TEMP
/// t` name `pg_temp.t`, and unqualified references to an existing temporary table in
/// `temps` are qualified with `pg_temp`. Returns whether the statement creates one.
pub fn rewrite(stmt: &mut Statement, temps: &HashSet<String>) -> Result<bool, EngineError> {
    let mut creates = false;
    match stmt {
        Statement::CreateTable(c) if c.temporary => {
            c.name = temp_name(&c.name)?;
            c.temporary = false;
            c.global = None;
            c.on_commit = None;
            creates = true;
        }
        Statement::Query(q) => {
            if let SetExpr::Select(select) = q.body.as_mut()
                && let Some(into) = select.into.as_mut()
                && into.temporary
            {
                into.name = temp_name(&into.name)?;
                into.temporary = false;
                creates = true;
            }
        }
        Statement::Drop {
            object_type: ObjectType::Table,
            names,
            ..
        } => {
            for name in names {
                qualify(name, temps);
            }
        }
        Statement::Insert(insert) => {
            if let TableObject::TableName(name) = &mut insert.table {
                qualify(name, temps);
            }
        }
        Statement::Copy {
            source: CopySource::Table { table_name, .. },
            ..
        } => qualify(table_name, temps),
        _ => {}
    }
    if !temps.is_empty() {
        let _ = visit_relations_mut(stmt, |name| {
            qualify(name, temps);
            ControlFlow::<()>::Continue(())
        });
    }
    Ok(creates)
}

/// The identifier as DataFusion registers it: unquoted names fold to lower case.
fn normalized(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

fn temp_name(name: &ObjectName) -> Result<ObjectName, EngineError> {
    match name.0.as_slice() {
        [table] => Ok(ObjectName(vec![
            ObjectNamePart::Identifier(Ident::new(TEMP_SCHEMA)),
            table.clone(),
        ])),
        _ if is_temp_name(name) && name.0.len() == 2 => Ok(name.clone()),
        _ => Err(EngineError::InvalidArgument(format!(
            "cannot create temporary relation in non-temporary schema ({name})"
        ))),
    }
}

fn qualify(name: &mut ObjectName, temps: &HashSet<String>) {
    if let [ObjectNamePart::Identifier(table)] = name.0.as_slice()
        && temps.contains(&normalized(table))
    {
        let table = table.clone();
        name.0 = vec![
            ObjectNamePart::Identifier(Ident::new(TEMP_SCHEMA)),
            ObjectNamePart::Identifier(table),
        ];
    }
}

/// The engine's catalogs, with the lake catalog's `pg_temp` answered by the session.
#[derive(Debug)]
struct OverlayList {
    inner: Arc<dyn CatalogProviderList>,
    temp: Arc<MemorySchemaProvider>,
}

impl CatalogProviderList for OverlayList {
    fn register_catalog(
        &self,
        name: String,
        catalog: Arc<dyn CatalogProvider>,
    ) -> Option<Arc<dyn CatalogProvider>> {
        self.inner.register_catalog(name, catalog)
    }

    fn catalog_names(&self) -> Vec<String> {
        self.inner.catalog_names()
    }

    fn catalog(&self, name: &str) -> Option<Arc<dyn CatalogProvider>> {
        let inner = self.inner.catalog(name)?;
        if name != CATALOG {
            return Some(inner);
        }
        Some(Arc::new(OverlayCatalog {
            inner,
            temp: self.temp.clone(),
        }))
    }
}

#[derive(Debug)]
struct OverlayCatalog {
    inner: Arc<dyn CatalogProvider>,
    temp: Arc<MemorySchemaProvider>,
}

impl CatalogProvider for OverlayCatalog {
    fn schema_names(&self) -> Vec<String> {
        let mut names = self.inner.schema_names();
        names.push(TEMP_SCHEMA.to_string());
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if name == TEMP_SCHEMA {
            return Some(self.temp.clone());
        }
        self.inner.schema(name)
    }

    fn register_schema(
        &self,
        name: &str,
        schema: Arc<dyn SchemaProvider>,
    ) -> Result<Option<Arc<dyn SchemaProvider>>> {
        self.inner.register_schema(name, schema)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn rewritten(sql: &str, temps: &[&str]) -> (String, bool) {
        let mut stmt = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0);
        let temps = temps.iter().map(|s| s.to_string()).collect();
        let creates = rewrite(&mut stmt, &temps).unwrap();
        (stmt.to_string(), creates)
    }

    #[test]
    fn create_and_select_into_name_pg_temp() {
        let (sql, creates) = rewritten(
            r##"CREATE LOCAL TEMPORARY TABLE "#Tableau_1_Connect" ("COL" INTEGER) ON COMMIT PRESERVE ROWS"##,
            &[],
        );
        assert!(creates);
        assert_eq!(
            sql,
            r##"CREATE TABLE pg_temp."#Tableau_1_Connect" ("COL" INTEGER)"##
        );
        let (sql, creates) = rewritten(
            "SELECT * INTO TEMPORARY TABLE t FROM (SELECT 1 AS col) AS checktemp",
            &[],
        );
        assert!(creates);
        assert!(sql.contains("INTO TABLE pg_temp.t"), "{sql}");
        let (_, creates) = rewritten("SELECT * INTO t FROM x", &[]);
        assert!(!creates);
    }

    #[test]
    fn references_to_temp_tables_are_qualified() {
        let (sql, _) = rewritten("SELECT * FROM t JOIN u ON t.a = u.a", &["t"]);
        assert_eq!(sql, "SELECT * FROM pg_temp.t JOIN u ON t.a = u.a");
        let (sql, _) = rewritten("INSERT INTO T VALUES (1)", &["t"]);
        assert_eq!(sql, "INSERT INTO pg_temp.T VALUES (1)");
        let (sql, _) = rewritten(r#"DROP TABLE "T", t"#, &["t"]);
        assert_eq!(sql, r#"DROP TABLE "T", pg_temp.t"#);
        let (sql, _) = rewritten("SELECT * FROM gold.t", &["t"]);
        assert_eq!(sql, "SELECT * FROM gold.t");
    }

    #[test]
    fn temp_table_in_a_lake_schema_is_refused() {
        let mut stmt = Parser::parse_sql(&PostgreSqlDialect {}, "CREATE TEMP TABLE gold.t (a INT)")
            .unwrap()
            .remove(0);
        assert!(rewrite(&mut stmt, &HashSet::new()).is_err());
    }
}
