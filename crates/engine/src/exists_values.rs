//! `EXISTS (subquery)` as a value: in a select list (`SELECT EXISTS(SELECT 1 FROM
//! pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) FROM pg_class c`, Npgsql's
//! key-info query), a CASE, an ORDER BY. DataFusion 55 decorrelates EXISTS only in
//! filters; anywhere else its physical planner refuses it (0A000 "Physical plan does not
//! support logical expression Exists"). This analyzer rule turns an EXISTS in a select
//! list whose subquery is correlated only through its WHERE (`... WHERE i.indrelid =
//! c.oid AND a.attnum = ANY (i.indkey)`, equalities or not) into a left mark join of the
//! select's input with the subquery's rows on that condition: the mark is the value,
//! true or false, never NULL. Any other EXISTS becomes the scalar subquery `(SELECT
//! count(*) > 0 FROM (subquery))`, which DataFusion decorrelates into an outer join when
//! the correlation is by equalities. `NOT EXISTS` is the negation. EXISTS in a WHERE or
//! HAVING stays DataFusion's semi/anti join.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, JoinType, Result};
use datafusion::functions_aggregate::count::count;
use datafusion::logical_expr::expr::Exists;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, Projection, Subquery, lit};
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
            let p = match p {
                LogicalPlan::Projection(projection) => marked(projection)?,
                other => other,
            };
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

/// `projection` with each EXISTS of its expressions that [`correlation`] accepts answered
/// by a left mark join of its input with the subquery's rows.
fn marked(projection: Projection) -> Result<LogicalPlan> {
    let any = projection.expr.iter().any(|e| {
        e.exists(|x| Ok(matches!(x, Expr::Exists(_))))
            .unwrap_or(false)
    });
    if !any {
        return Ok(LogicalPlan::Projection(projection));
    }
    let names = NamePreserver::new_for_projection();
    let mut input = Arc::unwrap_or_clone(projection.input.clone());
    let mut n = 0usize;
    let mut exprs = Vec::with_capacity(projection.expr.len());
    for e in &projection.expr {
        let saved = names.save(e);
        let rewritten = e.clone().transform_up(|x| match x {
            Expr::Exists(Exists { subquery, negated }) => {
                let Some((condition, rows)) = correlation(&subquery.subquery) else {
                    return Ok(Transformed::no(Expr::Exists(Exists { subquery, negated })));
                };
                // The same table name on both sides would make the condition ambiguous.
                let clash = rows.schema().iter().any(|(q, f)| {
                    input
                        .schema()
                        .has_column(&Column::new(q.cloned(), f.name()))
                });
                if clash {
                    return Ok(Transformed::no(Expr::Exists(Exists { subquery, negated })));
                }
                let left: Vec<Expr> = input
                    .schema()
                    .columns()
                    .into_iter()
                    .map(Expr::Column)
                    .collect();
                let joined = LogicalPlanBuilder::from(input.clone())
                    .join_on(rows, JoinType::LeftMark, [condition])?
                    .build()?;
                let (qualifier, field) = joined
                    .schema()
                    .qualified_field(joined.schema().fields().len() - 1);
                let mark = Expr::Column(Column::new(qualifier.cloned(), field.name()));
                let name = format!("{MARK}_{n}");
                n += 1;
                input = LogicalPlanBuilder::from(joined)
                    .project(left.into_iter().chain([mark.alias(name.as_str())]))?
                    .build()?;
                let value = Expr::Column(Column::from_name(name));
                Ok(Transformed::yes(if negated { !value } else { value }))
            }
            other => Ok(Transformed::no(other)),
        })?;
        exprs.push(saved.restore(rewritten.data));
    }
    if n == 0 {
        return Ok(LogicalPlan::Projection(projection));
    }
    Ok(LogicalPlan::Projection(Projection::try_new(
        exprs,
        Arc::new(input),
    )?))
}

/// The mark columns' names.
const MARK: &str = "tidepool_exists_mark";

/// The subquery's join condition (its WHERE, outer references as plain columns) and the
/// rows it filters, when it is `[Projection ...] Filter(condition) input` with outer
/// references in the condition only and no name the outer query could also mean.
fn correlation(subquery: &LogicalPlan) -> Option<(Expr, LogicalPlan)> {
    let mut plan = subquery;
    while let LogicalPlan::Projection(p) = plan {
        if p.expr.iter().any(Expr::contains_outer) {
            return None;
        }
        plan = p.input.as_ref();
    }
    let LogicalPlan::Filter(filter) = plan else {
        return None;
    };
    if filter.input.contains_outer_reference() || !filter.predicate.contains_outer() {
        return None;
    }
    let condition = filter
        .predicate
        .clone()
        .transform(|e| match e {
            Expr::OuterReferenceColumn(_, column) => Ok(Transformed::yes(Expr::Column(column))),
            other => Ok(Transformed::no(other)),
        })
        .ok()?
        .data;
    Some((condition, filter.input.as_ref().clone()))
}
