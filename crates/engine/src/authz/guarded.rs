//! Table functions say what they read. Every table function of the engine returns its
//! table inside [`Touches`], which carries the [`Touch`]es of that call (a lake table, a
//! path, a procedure, or nothing for computed rows); the plan walk reads them from the
//! scan, whatever name or position (LATERAL, nested) the call had. Functions that read
//! files or the lake also [`admit`] the session's principal before any I/O, so a refused
//! path is never opened and an unnamed bucket never contacted. [`Pure`] wraps the
//! functions DataFusion brings (`generate_series`, `range`...), which read nothing.

use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{Constraints, Statistics};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{Expr, LogicalPlan, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;

use super::{Principal, Touch};

/// A table function's table with what producing it touches.
#[derive(Debug)]
pub struct Touches {
    inner: Arc<dyn TableProvider>,
    touches: Vec<Touch>,
}

impl Touches {
    pub fn wrap(inner: Arc<dyn TableProvider>, touches: Vec<Touch>) -> Arc<dyn TableProvider> {
        Arc::new(Touches { inner, touches })
    }

    /// What this call reads.
    pub fn touches(&self) -> &[Touch] {
        &self.touches
    }
}

#[async_trait]
impl TableProvider for Touches {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn constraints(&self) -> Option<&Constraints> {
        self.inner.constraints()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    fn get_table_definition(&self) -> Option<&str> {
        self.inner.get_table_definition()
    }

    fn get_logical_plan(&'_ self) -> Option<Cow<'_, LogicalPlan>> {
        // Never inlined: the scan must stay in the plan to be authorized.
        None
    }

    fn get_column_default(&self, column: &str) -> Option<&Expr> {
        self.inner.get_column_default(column)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.inner.scan(state, projection, filters, limit).await
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }

    fn statistics(&self) -> Option<Statistics> {
        self.inner.statistics()
    }
}

/// The principal of the session a function is planned in; the server's when none is set
/// (views and deployed procedures plan in the engine's own state).
pub fn principal_of(session: &dyn Session) -> Arc<Principal> {
    session
        .config()
        .get_extension::<Principal>()
        .unwrap_or_else(Principal::server)
}

/// Refuses (42501) unless the session's principal may do every touch; call before I/O.
pub fn admit(session: &dyn Session, touches: &[Touch]) -> Result<()> {
    principal_of(session)
        .check_all(touches)
        .map_err(|e| DataFusionError::External(Box::new(e)))
}

/// A table function that reads nothing but its arguments.
#[derive(Debug)]
pub struct Pure(pub Arc<dyn TableFunctionImpl>);

impl TableFunctionImpl for Pure {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        Ok(Touches::wrap(self.0.call_with_args(args)?, Vec::new()))
    }
}
