//! Catalog subqueries DataFusion cannot decorrelate answer NULL.
//!
//! Client catalog queries carry correlated subqueries DataFusion 55 cannot turn into
//! joins: psql's `\d` asks for a column's collation with `(SELECT c.collname FROM
//! pg_collation c, pg_type t WHERE c.oid = a.attcollation AND t.oid = a.atttypid AND
//! a.attcollation <> t.typcollation)` (a non-equality on outer columns). They would fail
//! in the physical planner. datafusion-pg-catalog used to replace every correlated
//! select-list subquery by NULL, which gave wrong answers wherever DataFusion could have
//! planned it; this rule runs after the optimizer's decorrelation and replaces only the
//! correlated scalar subqueries still left, and only those reading nothing but the catalogs
//! (`pg_catalog`, `information_schema`), by a NULL of their type. Anywhere else such a
//! subquery stays, and the statement is refused with 0A000.
//!
//! DataFusion decorrelates the subqueries of a select list all or none: one it cannot
//! turn into a join leaves the others too (psql's `\d+` asks for the collation above and
//! `col_description(a.attrelid, a.attnum)`, a lookup in `pg_description`). So each one
//! left is tried alone; only those that fail alone become NULL, and the select list is
//! decorrelated again with the rest.

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{Expr, LogicalPlan, Projection};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::scalar_subquery_to_join::ScalarSubqueryToJoin;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

/// The optimizer rule (registered after DataFusion's own).
#[derive(Debug, Default)]
pub struct UndecorrelatedCatalogSubqueries;

impl OptimizerRule for UndecorrelatedCatalogSubqueries {
    fn name(&self) -> &str {
        "tidepool_undecorrelated_catalog_subqueries"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::TopDown)
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        if !plan.expressions().iter().any(has_catalog_subquery) {
            return Ok(Transformed::no(plan));
        }
        let input = match &plan {
            LogicalPlan::Projection(p) => Some(p.input.clone()),
            _ => None,
        };
        let names = NamePreserver::new(&plan);
        let mut kept = false;
        let nulled = plan.map_expressions(|e| {
            let saved = names.save(&e);
            let rewritten = e.transform_up(|e| match e {
                Expr::ScalarSubquery(sq) if undecorrelated(&sq) => {
                    if let Some(input) = &input
                        && decorrelates_alone(&sq, input, config)?
                    {
                        kept = true;
                        return Ok(Transformed::no(Expr::ScalarSubquery(sq)));
                    }
                    let t = sq.subquery.schema().field(0).data_type().clone();
                    Ok(Transformed::yes(Expr::Literal(
                        ScalarValue::try_from(&t)?,
                        None,
                    )))
                }
                other => Ok(Transformed::no(other)),
            })?;
            Ok(rewritten.update_data(|e| saved.restore(e)))
        })?;
        if !kept {
            return Ok(nulled);
        }
        let again = ScalarSubqueryToJoin::new().rewrite(nulled.data, config)?;
        Ok(Transformed::yes(again.data))
    }
}

/// Whether DataFusion turns `sq` into a join when it is the only subquery over `input`.
fn decorrelates_alone(
    sq: &datafusion::logical_expr::Subquery,
    input: &std::sync::Arc<LogicalPlan>,
    config: &dyn OptimizerConfig,
) -> Result<bool> {
    let alone = LogicalPlan::Projection(Projection::try_new(
        vec![Expr::ScalarSubquery(sq.clone()).alias("__alone")],
        input.clone(),
    )?);
    Ok(ScalarSubqueryToJoin::new()
        .rewrite(alone, config)
        .is_ok_and(|t| t.transformed))
}

fn has_catalog_subquery(e: &Expr) -> bool {
    e.exists(|e| Ok(matches!(e, Expr::ScalarSubquery(sq) if undecorrelated(sq))))
        .unwrap_or(false)
}

/// A correlated subquery (uncorrelated ones DataFusion executes as they are) over the
/// catalogs only.
fn undecorrelated(sq: &datafusion::logical_expr::Subquery) -> bool {
    !sq.outer_ref_columns.is_empty() && reads_only_catalogs(&sq.subquery)
}

/// Whether every table a plan scans is a catalog table.
fn reads_only_catalogs(plan: &LogicalPlan) -> bool {
    let mut scans = 0;
    let mut other = false;
    let _ = plan.apply_with_subqueries(|p| {
        if let LogicalPlan::TableScan(scan) = p {
            scans += 1;
            let catalog = match scan.table_name.schema() {
                Some(s) => tidepool_engine::authz::CATALOGS.contains(&s),
                None => scan.table_name.table().starts_with("pg_"),
            };
            if !catalog {
                other = true;
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    scans > 0 && !other
}
