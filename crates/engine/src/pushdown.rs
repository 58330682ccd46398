//! Lake tables as DataFusion sees them: delta-rs' provider behind a bound on the filters
//! offered to it. delta-rs turns a pushed-down filter into a kernel predicate by
//! recursion (an `IN` list becomes a chain of `OR`s), which overflows a thread's stack
//! for a few thousand values; a filter larger than [`MAX_PUSHDOWN_NODES`] is therefore
//! kept in DataFusion's own filter (a hash set for `IN` lists) and not offered to the scan.
//! File skipping by such filters is lost, which costs little: a list that long rarely
//! prunes files.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::TableType;
use datafusion::error::Result;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use deltalake::DeltaTable;

use crate::lake_scan::PlainFiles;

/// Largest filter (expression nodes, `IN` list values counted) offered to delta-rs.
pub const MAX_PUSHDOWN_NODES: usize = 512;

/// The provider of a Delta table, with bounded filter pushdown and the column defaults
/// the table declares (used by INSERTs that leave a column out).
pub async fn delta_provider(table: &DeltaTable) -> deltalake::DeltaResult<Arc<dyn TableProvider>> {
    let inner = table.table_provider().await?;
    let defaults = defaults_of(table, &inner.schema());
    let plain = crate::lake_scan::plain_files(table, &inner.schema());
    Ok(Arc::new(BoundedPushdown {
        inner,
        defaults,
        plain,
    }))
}

#[derive(Debug)]
struct BoundedPushdown {
    inner: Arc<dyn TableProvider>,
    defaults: HashMap<String, Expr>,
    /// The table's files when it is plain ([`crate::lake_scan`]): scanned by DataFusion.
    plain: Option<PlainFiles>,
}

/// The declared defaults of `table` ([`tidepool_lake::Declared`]) as expressions; one
/// that no longer plans (a dropped function) is left out with a warning.
fn defaults_of(table: &DeltaTable, schema: &SchemaRef) -> HashMap<String, Expr> {
    let declared = tidepool_lake::Declared::of_table(table);
    if declared.defaults.is_empty() {
        return HashMap::new();
    }
    let Ok(df) = datafusion::common::DFSchema::try_from(schema.as_ref().clone()) else {
        return HashMap::new();
    };
    let ctx = datafusion::prelude::SessionContext::new();
    let mut out = HashMap::new();
    for (column, sql) in declared.defaults {
        match ctx.parse_sql_expr(&sql, &df) {
            Ok(e) => {
                out.insert(column, e);
            }
            Err(e) => tracing::warn!(column, sql, "default does not plan: {e}"),
        }
    }
    out
}

/// Nodes of `expr`, stopping once past the bound.
fn size(expr: &Expr) -> usize {
    let mut nodes = 0;
    let _ = expr.apply(|e| {
        nodes += 1;
        if let Expr::InList(list) = e {
            nodes += list.list.len();
        }
        Ok(if nodes > MAX_PUSHDOWN_NODES {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    nodes
}

#[async_trait]
impl TableProvider for BoundedPushdown {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match &self.plain {
            // Filters stay in DataFusion's filter above the scan, which pushes them into
            // the Parquet source for pruning.
            Some(plain) => plain.scan(state, projection, limit),
            None => self.inner.scan(state, projection, filters, limit).await,
        }
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        if self.plain.is_some() {
            return Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()]);
        }
        let small: Vec<&Expr> = filters
            .iter()
            .copied()
            .filter(|f| size(f) <= MAX_PUSHDOWN_NODES)
            .collect();
        let mut answers = self.inner.supports_filters_pushdown(&small)?.into_iter();
        Ok(filters
            .iter()
            .map(|f| {
                if size(f) <= MAX_PUSHDOWN_NODES {
                    answers
                        .next()
                        .unwrap_or(TableProviderFilterPushDown::Unsupported)
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    fn get_column_default(&self, column: &str) -> Option<&Expr> {
        self.defaults.get(column)
    }

    async fn insert_into(
        &self,
        state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.inner.insert_into(state, input, insert_op).await
    }
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::{col, lit};

    use super::*;

    #[test]
    fn long_in_lists_are_large() {
        let short = col("a").in_list((0..10).map(lit).collect(), false);
        let long = col("a").in_list((0..10_000).map(lit).collect(), false);
        assert!(size(&short) <= MAX_PUSHDOWN_NODES);
        assert!(size(&long) > MAX_PUSHDOWN_NODES);
    }
}
