//! Queries run on a cluster: the engine plans a statement as always (parsing, names,
//! authorization, row policies, its own rewrites and the physical plan all happen here),
//! and a [`Cluster`] the server plugs in (`[cluster] scheduler`, Apache DataFusion
//! Ballista) runs that physical plan on other processes. Which plans may go is decided here, on the plan:
//! only reads whose every table is a plain lake table ([`crate::lake_scan`]: Parquet files
//! any process with access to the lake can read); anything that reads catalogs, `system`
//! tables, temporary tables, views' or procedures' results computed in this process,
//! files through table functions, or a table with deletion vectors stays on this node.
//! `SET tidepool.distributed = off` keeps a session's queries here.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::source_as_provider;
use datafusion::error::Result;
use datafusion::execution::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::ExecutionPlan;

/// The session setting's name.
pub const SETTING: &str = "tidepool.distributed";

/// Where distributed queries run.
#[async_trait]
pub trait Cluster: Send + Sync + std::fmt::Debug {
    /// The scheduler's address, for EXPLAIN and errors.
    fn name(&self) -> String;

    /// A plan that runs `physical` (planned here) on the cluster and streams its rows
    /// back; `None` when the cluster cannot run it (it then runs here).
    async fn plan(
        &self,
        physical: Arc<dyn ExecutionPlan>,
        state: &SessionState,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>>;

    /// Adjusts the settings a plan bound for the cluster is made under (operators that
    /// cannot cross a stage boundary, such as dynamic filters, turned off).
    fn configure(&self, config: &mut datafusion::prelude::SessionConfig);

    /// The stages the cluster runs `physical` in, as text (EXPLAIN).
    fn stages(&self, physical: Arc<dyn ExecutionPlan>, state: &SessionState) -> Result<String>;
}

/// Why `plan` must run on this node; `None` when it may go to the cluster.
pub fn local_reason(plan: &LogicalPlan) -> Option<String> {
    let mut reason = None;
    let mut scans = 0usize;
    let _ = plan.apply_with_subqueries(|node| {
        match node {
            LogicalPlan::TableScan(scan) => {
                scans += 1;
                let plain = source_as_provider(&scan.source)
                    .ok()
                    .and_then(|p| crate::pushdown::plain_table(p.as_ref()));
                match plain {
                    Some(true) => {}
                    Some(false) => {
                        reason = Some(format!(
                            "{} has deletion vectors or nested columns",
                            scan.table_name
                        ))
                    }
                    None => reason = Some(format!("{} is not a lake table", scan.table_name)),
                }
            }
            LogicalPlan::Extension(e) => {
                reason = Some(format!("{} runs here", e.node.name()));
            }
            LogicalPlan::Dml(_) | LogicalPlan::Ddl(_) | LogicalPlan::Copy(_) => {
                reason = Some("writes run here".into());
            }
            LogicalPlan::Statement(_) | LogicalPlan::DescribeTable(_) => {
                reason = Some("not a query".into());
            }
            _ => {}
        }
        Ok(if reason.is_some() {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    if reason.is_none() && scans == 0 {
        reason = Some("reads no table".into());
    }
    reason
}

/// The Delta table (its location and version) behind a lake table's provider, for a
/// codec that ships the table by reference.
pub fn lake_table(provider: &dyn TableProvider) -> Option<&deltalake::DeltaTable> {
    crate::pushdown::delta_table(provider)
}

/// The provider the engine reads `table` with (the inverse of [`lake_table`]).
pub async fn lake_provider(table: &deltalake::DeltaTable) -> Result<Arc<dyn TableProvider>> {
    Ok(crate::pushdown::delta_provider(table).await?)
}
