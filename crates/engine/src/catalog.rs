//! The DataFusion catalog `lake` over the lake's folders.
//!
//! Schemas are the lake's schema folders plus virtual ones registered by the engine
//! (`pg_catalog`, `system`). A table is resolved when a query names it: the Delta table is
//! brought to its newest version at that moment, so each statement reads one consistent
//! version and tables written by other processes appear without a restart. Views and
//! external tables are planned from the definitions stored in the lake.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use datafusion::catalog::view::ViewTable;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SessionState;
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use datafusion::sql::parser::{DFParser, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{Ident, ObjectName};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use parking_lot::RwLock;

use tidepool_lake::{DefinitionKind, Lake};

tokio::task_local! {
    /// How many views deep the current planning is.
    static VIEW_DEPTH: u32;
}

const MAX_VIEW_DEPTH: u32 = 32;

/// Name of the catalog (the Postgres database name).
pub const CATALOG: &str = "lake";

/// Shared handle to the engine's base session state, used to plan stored views.
pub type StateCell = Arc<OnceLock<SessionState>>;

/// The `lake` catalog.
#[derive(Debug)]
pub struct LakeCatalog {
    lake: Arc<Lake>,
    state: StateCell,
    virtual_schemas: RwLock<HashMap<String, Arc<dyn SchemaProvider>>>,
}

impl LakeCatalog {
    pub fn new(lake: Arc<Lake>, state: StateCell) -> Self {
        LakeCatalog {
            lake,
            state,
            virtual_schemas: RwLock::new(HashMap::new()),
        }
    }
}

impl CatalogProvider for LakeCatalog {
    fn schema_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.lake.cached_listing().schemas.keys().cloned().collect();
        if !names.iter().any(|n| n == "public") {
            names.push("public".to_string());
        }
        names.extend(self.virtual_schemas.read().keys().cloned());
        names.sort();
        names.dedup();
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if let Some(s) = self.virtual_schemas.read().get(name) {
            return Some(s.clone());
        }
        if !tidepool_lake::valid_name(name) {
            return None;
        }
        Some(Arc::new(LakeSchema {
            lake: self.lake.clone(),
            state: self.state.clone(),
            schema: name.to_string(),
        }))
    }

    fn register_schema(
        &self,
        name: &str,
        schema: Arc<dyn SchemaProvider>,
    ) -> Result<Option<Arc<dyn SchemaProvider>>> {
        Ok(self
            .virtual_schemas
            .write()
            .insert(name.to_string(), schema))
    }
}

/// One schema folder of the lake.
#[derive(Debug)]
pub struct LakeSchema {
    lake: Arc<Lake>,
    state: StateCell,
    schema: String,
}

fn external(e: impl std::error::Error + Send + Sync + 'static) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

#[async_trait]
impl SchemaProvider for LakeSchema {
    fn table_names(&self) -> Vec<String> {
        self.lake.cached_listing().names(&self.schema)
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if let Some(base) = crate::ctid::base_name(name) {
            return match self
                .lake
                .table(&self.schema, base)
                .await
                .map_err(external)?
            {
                Some(t) => Ok(Some(
                    crate::ctid::provider(self.lake.clone(), &self.schema, base, &t).await?,
                )),
                // Views, external and catalog tables have no tuple ids.
                None => Err(DataFusionError::SchemaError(
                    Box::new(datafusion::common::SchemaError::FieldNotFound {
                        field: Box::new(datafusion::common::Column::new_unqualified(
                            crate::ctid::COLUMN,
                        )),
                        valid_fields: Vec::new(),
                    }),
                    Box::new(None),
                )),
            };
        }
        if let Some(t) = self
            .lake
            .table(&self.schema, name)
            .await
            .map_err(external)?
        {
            return Ok(Some(super::pushdown::delta_provider(&t).await?));
        }
        if let Some(sql) = self
            .lake
            .definition(DefinitionKind::View, &self.schema, name)
            .await
            .map_err(external)?
        {
            return match self.plan_view(name, &sql).await {
                Ok(view) => Ok(Some(view)),
                // A view that no longer plans (recursive, or reading what is gone) is still
                // a relation: catalogs list it (one broken view must not break
                // `information_schema.tables` for every client) and reading it fails with
                // the reason. A view read by another view passes the error up.
                Err(e) if VIEW_DEPTH.try_with(|d| *d).unwrap_or(0) == 0 => {
                    Ok(Some(Arc::new(BrokenView {
                        reason: e.to_string(),
                        schema: Arc::new(datafusion::arrow::datatypes::Schema::empty()),
                    })))
                }
                Err(e) => Err(e),
            };
        }
        if let Some(sql) = self
            .lake
            .definition(DefinitionKind::External, &self.schema, name)
            .await
            .map_err(external)?
        {
            return self.plan_external(&sql).await.map(Some);
        }
        Ok(None)
    }

    fn table_exist(&self, name: &str) -> bool {
        self.lake.cached_listing().contains(&self.schema, name)
    }
}

impl LakeSchema {
    fn base_state(&self) -> Result<SessionState> {
        self.state
            .get()
            .cloned()
            .ok_or_else(|| DataFusionError::Internal("engine state not initialised".into()))
    }

    async fn plan_view(&self, name: &str, sql: &str) -> Result<Arc<dyn TableProvider>> {
        let depth = VIEW_DEPTH.try_with(|d| *d).unwrap_or(0);
        if depth >= MAX_VIEW_DEPTH {
            return Err(DataFusionError::Plan(format!(
                "view {}.{name} is recursive or nested more than {MAX_VIEW_DEPTH} deep",
                self.schema
            )));
        }
        let state = self.base_state()?;
        let plan = VIEW_DEPTH
            .scope(depth + 1, state.create_logical_plan(sql))
            .await?;
        Ok(Arc::new(LakeView {
            inner: ViewTable::new(plan, Some(sql.to_string())),
        }))
    }

    async fn plan_external(&self, ddl: &str) -> Result<Arc<dyn TableProvider>> {
        let state = self.base_state()?;
        // Plan the stored DDL under a name that resolves to nothing, so planning does not
        // look the table up again (which would come back here).
        let mut statements = DFParser::parse_sql_with_dialect(ddl, &PostgreSqlDialect {})?;
        let Some(DFStatement::CreateExternalTable(mut create)) = statements.pop_front() else {
            return Err(DataFusionError::Internal(format!(
                "stored external table definition is not CREATE EXTERNAL TABLE: {ddl}"
            )));
        };
        create.name = ObjectName::from(vec![Ident::new("__tidepool_external")]);
        create.if_not_exists = true;
        let plan = state
            .statement_to_plan(DFStatement::CreateExternalTable(create))
            .await?;
        let LogicalPlan::Ddl(DdlStatement::CreateExternalTable(cmd)) = plan else {
            return Err(DataFusionError::Internal(format!(
                "stored external table definition is not CREATE EXTERNAL TABLE: {ddl}"
            )));
        };
        create_external(&state, &cmd).await
    }
}

/// A stored view. Unlike DataFusion's `ViewTable` it is never inlined into the plan that
/// reads it: the reader's plan holds one scan of the view, authorized as the view (its
/// definer's reads were checked when it was created), and the view's own plan is run
/// inside that scan with filters, projection and limit pushed into it.
#[derive(Debug)]
pub struct LakeView {
    inner: ViewTable,
}

#[async_trait]
impl TableProvider for LakeView {
    fn schema(&self) -> datafusion::arrow::datatypes::SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> datafusion::datasource::TableType {
        self.inner.table_type()
    }

    fn get_table_definition(&self) -> Option<&str> {
        self.inner.get_table_definition()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&datafusion::logical_expr::Expr],
    ) -> Result<Vec<datafusion::logical_expr::TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }

    async fn scan(
        &self,
        state: &dyn datafusion::catalog::Session,
        projection: Option<&Vec<usize>>,
        filters: &[datafusion::logical_expr::Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        // Row-level security applies inside the view, for the reader scanning it.
        let principal = crate::authz::guarded::principal_of(state);
        if principal.filtered_by_policies()
            && !principal.security().rls.is_empty()
            && let Some(session) = state.as_any().downcast_ref::<SessionState>()
        {
            let plan = crate::authz::rls::apply(
                self.inner.logical_plan().clone(),
                &principal,
                "public",
                session,
            )
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
            let view = ViewTable::new(plan, self.inner.definition().cloned());
            return view.scan(state, projection, filters, limit).await;
        }
        self.inner.scan(state, projection, filters, limit).await
    }
}

/// A stored view that does not plan: no columns, and every read fails with why.
#[derive(Debug)]
struct BrokenView {
    reason: String,
    schema: datafusion::arrow::datatypes::SchemaRef,
}

#[async_trait]
impl TableProvider for BrokenView {
    fn schema(&self) -> datafusion::arrow::datatypes::SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> datafusion::datasource::TableType {
        datafusion::datasource::TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn datafusion::catalog::Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[datafusion::logical_expr::Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        Err(DataFusionError::Plan(self.reason.clone()))
    }
}

/// Builds the provider of a `CREATE EXTERNAL TABLE` command with the registered factories.
pub async fn create_external(
    state: &SessionState,
    cmd: &datafusion::logical_expr::CreateExternalTable,
) -> Result<Arc<dyn TableProvider>> {
    let key = cmd.file_type.to_ascii_uppercase();
    let factory = state.table_factories().get(key.as_str()).ok_or_else(|| {
        DataFusionError::Plan(format!(
            "unsupported format {}: use DELTA, PARQUET, CSV or JSON",
            cmd.file_type
        ))
    })?;
    factory.create(state, cmd).await
}
