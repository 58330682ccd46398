//! Catalog tables whose rows are computed when they are scanned (`pg_proc` with
//! procedures, `pg_attribute` with lake columns, `pg_namespace`, `pg_views`), and the
//! name lookup by oid they share.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
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

/// Every row of a catalog table.
pub(crate) async fn collect(t: &Arc<dyn TableProvider>) -> Result<Vec<RecordBatch>> {
    datafusion::prelude::SessionContext::new()
        .read_table(t.clone())?
        .collect()
        .await
}

/// `oid -> text column` of a catalog table.
pub(crate) async fn names(
    catalog: &Arc<dyn datafusion::catalog::SchemaProvider>,
    table: &str,
    column: &str,
    extra: Option<&str>,
) -> Result<HashMap<i64, (String, i64)>> {
    let Some(t) = catalog.table(table).await? else {
        return Ok(HashMap::new());
    };
    let batches = datafusion::prelude::SessionContext::new()
        .read_table(t)?
        .collect()
        .await?;
    names_in(&batches, column, extra)
}

/// `oid -> text column` of a catalog table's rows.
pub(crate) fn names_in(
    batches: &[RecordBatch],
    column: &str,
    extra: Option<&str>,
) -> Result<HashMap<i64, (String, i64)>> {
    let mut out = HashMap::new();
    for b in batches {
        let (Some(oid), Some(name)) = (b.column_by_name("oid"), b.column_by_name(column)) else {
            continue;
        };
        let oid = cast(oid, &DataType::Int64)?;
        let name = cast(name, &DataType::Utf8)?;
        let extra = match extra.and_then(|e| b.column_by_name(e)) {
            Some(e) => Some(cast(e, &DataType::Int64)?),
            None => None,
        };
        let (oid, name) = (oid.as_primitive::<Int64Type>(), name.as_string::<i32>());
        for i in 0..b.num_rows() {
            if oid.is_valid(i) && name.is_valid(i) {
                let x = extra
                    .as_ref()
                    .map(|e| e.as_primitive::<Int64Type>().value(i))
                    .unwrap_or(0);
                out.insert(oid.value(i), (name.value(i).to_string(), x));
            }
        }
    }
    Ok(out)
}
