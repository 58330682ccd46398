//! `EXISTS (subquery)` as a value: in a select list (`SELECT EXISTS(SELECT 1 FROM
//! pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) FROM pg_class c`, Npgsql's
//! key-info query), a CASE, an ORDER BY. DataFusion 55 decorrelates EXISTS only in
//! filters; anywhere else its physical planner refuses it (0A000 "Physical plan does not
//! support logical expression Exists"). This analyzer rule turns such an EXISTS into the
//! scalar subquery `(SELECT count(*) > 0 FROM (subquery))`, which DataFusion decorrelates
//! into an outer join (a correlated one included, with zero rows counted as false), and
//! `NOT EXISTS` into its negation. EXISTS in a WHERE or HAVING stays DataFusion's
//! semi/anti join.

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::functions_aggregate::count::count;
use datafusion::logical_expr::expr::Exists;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, Subquery, lit};
use datafusion::optimizer::AnalyzerRule;

/// The rewritten subquery's count column.
const COUNT: &str = "tidepool_exists_count";

/// The analyzer rule.
#[derive(Debug, Default)]
pub struct ExistsValues;

impl AnalyzerRule for ExistsValues {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|p| {
            if matches!(p, LogicalPlan::Filter(_)) {
                return Ok(Transformed::no(p));
            }
            p.map_expressions(|e| {
                e.transform_up(|e| match e {
                    Expr::Exists(Exists { subquery, negated }) => {
                        let value = Expr::ScalarSubquery(counted(subquery)?);
                        Ok(Transformed::yes(if negated { !value } else { value }))
                    }
                    other => Ok(Transformed::no(other)),
                })
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "tidepool_exists_values"
    }
}

/// `subquery` as `SELECT count(*) > 0 FROM (subquery)`.
fn counted(subquery: Subquery) -> Result<Subquery> {
    let plan = LogicalPlanBuilder::from(Arc::unwrap_or_clone(subquery.subquery))
        .aggregate(Vec::<Expr>::new(), vec![count(lit(1)).alias(COUNT)])?
        .project(vec![
            Expr::Column(datafusion::common::Column::from_name(COUNT))
                .gt(lit(0i64))
                .alias("exists"),
        ])?
        .build()?;
    Ok(Subquery {
        subquery: Arc::new(plan),
        ..subquery
    })
}
