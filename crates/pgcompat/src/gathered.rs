//! Catalog tables whose rows are computed when they are scanned (`pg_proc` with
//! procedures, `pg_attribute` with lake columns, `pg_namespace`, `pg_views`).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::catalog::{MemTable, TableProvider};
use datafusion::error::Result;

/// A catalog table whose rows are gathered when it is scanned.
#[async_trait]
pub(crate) trait Gather: std::fmt::Debug + Send + Sync {
    fn inner(&self) -> &Arc<dyn TableProvider>;
    /// The rows' schema: the inner table's unless the table reshapes it.
    fn schema(&self) -> datafusion::arrow::datatypes::SchemaRef {
        self.inner().schema()
    }
    async fn batches(&self) -> Result<Vec<RecordBatch>>;
}

#[derive(Debug)]
pub(crate) struct Gathered<T: Gather>(pub T);

#[async_trait]
impl<T: Gather + 'static> TableProvider for Gathered<T> {
    fn schema(&self) -> datafusion::arrow::datatypes::SchemaRef {
        self.0.schema()
    }

    fn table_type(&self) -> datafusion::datasource::TableType {
        self.0.inner().table_type()
    }

    async fn scan(
        &self,
        state: &dyn datafusion::catalog::Session,
        projection: Option<&Vec<usize>>,
        filters: &[datafusion::logical_expr::Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        let batches = self.0.batches().await?;
        MemTable::try_new(self.schema(), vec![batches])?
            .scan(state, projection, filters, limit)
            .await
    }
}
