//! Aggregates computed only for the keys their join can use. A correlated subquery with
//! an aggregate (`l_quantity < (SELECT 0.2 * avg(l_quantity) FROM lineitem WHERE
//! l_partkey = p_partkey)`, TPC-H q02, q17, q20) is decorrelated into an aggregate over
//! the whole inner table grouped by the correlation key, joined with the outer rows: q17
//! averaged all 6M lineitems over 200k parts to use the 204 parts its outer query keeps.
//! When the outer side's key comes from one table under a filter (`part WHERE p_brand =
//! ... AND p_container = ...`), the keys that table keeps are a superset of those the
//! join can match, so the aggregate's input may be cut to them first with a semi join:
//! groups whose key the filtered table lacks would have found no partner anyway. That
//! costs one more read of the filtered table (small: it is filtered) and a hash probe
//! per aggregated row, and saves aggregating every row the filter excludes. Only
//! equality keys that are plain group columns are used, joins whose NULL keys never
//! match, and inner or left semi joins (the ones decorrelation produces).

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, JoinType, NullEquality, Result};
use datafusion::logical_expr::{Expr, Join, JoinConstraint, LogicalPlan, LogicalPlanBuilder, col};
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

/// The alias of the key tables the rule adds (and how it recognises its own work).
pub(crate) const KEYS: &str = "__tidepool_keys";

/// The optimizer rule.
#[derive(Debug, Default)]
pub struct AggregateKeys;

impl OptimizerRule for AggregateKeys {
    fn name(&self) -> &str {
        "tidepool_aggregate_keys"
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        plan.transform_down(|p| match p {
            LogicalPlan::Join(join)
                if matches!(join.join_type, JoinType::Inner | JoinType::LeftSemi)
                    && join.null_equality == NullEquality::NullEqualsNothing =>
            {
                match cut(&join)? {
                    Some(right) => {
                        let mut join = join;
                        join.right = Arc::new(right);
                        Ok(Transformed::yes(LogicalPlan::Join(join)))
                    }
                    None => Ok(Transformed::no(LogicalPlan::Join(join))),
                }
            }
            other => Ok(Transformed::no(other)),
        })
    }
}

/// The join's right input with its aggregate's input cut to the keys of a filtered
/// table of the left input, or `None`.
fn cut(join: &Join) -> Result<Option<LogicalPlan>> {
    for (left, right) in &join.on {
        let (Expr::Column(outer), Expr::Column(inner)) = (left, right) else {
            continue;
        };
        let Some(keys) = filtered_source(&join.left, outer) else {
            continue;
        };
        if let Some(cut) = cut_aggregate(&join.right, inner, &keys, outer)? {
            return Ok(Some(cut));
        }
    }
    Ok(None)
}

/// The smallest part of `plan` that yields `column` through inner joins, semi joins,
/// filters and projections that pass it through, when that part reads one table and
/// filters it; `None` otherwise.
fn filtered_source(plan: &LogicalPlan, column: &Column) -> Option<LogicalPlan> {
    if !plan.schema().has_column(column) {
        return None;
    }
    match plan {
        LogicalPlan::Join(j) if matches!(j.join_type, JoinType::Inner | JoinType::LeftSemi) => {
            if j.left.schema().has_column(column) {
                filtered_source(&j.left, column)
            } else if j.join_type == JoinType::Inner {
                filtered_source(&j.right, column)
            } else {
                None
            }
        }
        LogicalPlan::Projection(p)
            if p.expr
                .iter()
                .any(|e| matches!(e, Expr::Column(c) if c == column)) =>
        {
            if reads_one_table(plan) {
                filters(plan).then(|| plan.clone())
            } else {
                filtered_source(&p.input, column)
            }
        }
        LogicalPlan::Filter(_) | LogicalPlan::TableScan(_) if reads_one_table(plan) => {
            filters(plan).then(|| plan.clone())
        }
        _ => None,
    }
}

/// Whether `plan` is a chain of projections and filters over one table scan.
fn reads_one_table(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::TableScan(_) => true,
        LogicalPlan::Projection(p) => reads_one_table(&p.input),
        LogicalPlan::Filter(f) => reads_one_table(&f.input),
        _ => false,
    }
}

/// Whether `plan` filters its rows (a filter, or filters pushed into the scan).
pub(crate) fn filters(plan: &LogicalPlan) -> bool {
    let mut found = false;
    let _ = plan.apply(|p| {
        found |= match p {
            LogicalPlan::Filter(_) => true,
            LogicalPlan::TableScan(s) => !s.filters.is_empty(),
            _ => false,
        };
        Ok(if found {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    found
}

/// `plan` (aliases and projections over an aggregate) with the aggregate's input cut to
/// the rows whose group column behind `column` is one of `keys`' `key` values; `None`
/// when `column` is not a plain group column or the aggregate was cut already.
fn cut_aggregate(
    plan: &LogicalPlan,
    column: &Column,
    keys: &LogicalPlan,
    key: &Column,
) -> Result<Option<LogicalPlan>> {
    let Ok(index) = plan.schema().index_of_column(column) else {
        return Ok(None);
    };
    let (input, below) = match plan {
        LogicalPlan::SubqueryAlias(a) => {
            let (q, f) = a.input.schema().qualified_field(index);
            (a.input.as_ref(), Column::new(q.cloned(), f.name()))
        }
        LogicalPlan::Projection(p) => match &p.expr[index] {
            Expr::Column(c) => (p.input.as_ref(), c.clone()),
            _ => return Ok(None),
        },
        LogicalPlan::Aggregate(agg) => {
            if index >= agg.group_expr.len() || holds_alias(&agg.input, KEYS) {
                return Ok(None);
            }
            let Expr::Column(group) = &agg.group_expr[index] else {
                return Ok(None);
            };
            let keys = LogicalPlanBuilder::from(keys.clone())
                .project([col(key.clone())])?
                .alias(KEYS)?
                .build()?;
            let input = LogicalPlan::Join(Join::try_new(
                agg.input.clone(),
                Arc::new(keys),
                vec![(
                    Expr::Column(group.clone()),
                    Expr::Column(Column::new(Some(KEYS), key.name())),
                )],
                None,
                JoinType::LeftSemi,
                JoinConstraint::On,
                NullEquality::NullEqualsNothing,
                false,
            )?);
            return Ok(Some(plan.with_new_exprs(plan.expressions(), vec![input])?));
        }
        _ => return Ok(None),
    };
    Ok(match cut_aggregate(input, &below, keys, key)? {
        Some(input) => Some(plan.with_new_exprs(plan.expressions(), vec![input])?),
        None => None,
    })
}

/// Whether `plan` holds a subquery aliased `alias` (how the rules recognise their own work).
pub(crate) fn holds_alias(plan: &LogicalPlan, alias: &str) -> bool {
    holds(
        plan,
        |p| matches!(p, LogicalPlan::SubqueryAlias(a) if a.alias.table() == alias),
    )
}

/// Whether any node of `plan` is one `wanted` accepts.
pub(crate) fn holds(plan: &LogicalPlan, wanted: impl Fn(&LogicalPlan) -> bool) -> bool {
    let mut found = false;
    let _ = plan.apply(|p| {
        found |= wanted(p);
        Ok(if found {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    found
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::prelude::SessionContext;

    use super::*;

    async fn context(with_rule: bool) -> SessionContext {
        let ctx = SessionContext::new();
        if with_rule {
            ctx.add_optimizer_rule(Arc::new(AggregateKeys));
        }
        for sql in [
            "CREATE TABLE p (pk INT, brand TEXT) AS VALUES \
             (1, 'a'), (2, 'b'), (3, 'a'), (4, NULL), (NULL, 'a')",
            "CREATE TABLE l (pk INT, q INT, price INT) AS VALUES \
             (1, 1, 10), (1, 9, 20), (2, 3, 30), (3, 4, 40), (3, 40, 50), (4, 5, 60), \
             (NULL, 1, 70), (5, 1, 80)",
        ] {
            ctx.sql(sql).await.unwrap().collect().await.unwrap();
        }
        ctx
    }

    const QUERIES: [&str; 4] = [
        // q17's shape.
        "SELECT sum(price) FROM l, p WHERE p.pk = l.pk AND p.brand = 'a' \
         AND l.q < (SELECT 0.5 * avg(q) FROM l AS i WHERE i.pk = p.pk)",
        "SELECT p.pk, l.q FROM l JOIN p ON p.pk = l.pk WHERE p.brand = 'a' \
         AND l.q >= (SELECT max(q) FROM l AS i WHERE i.pk = p.pk) ORDER BY 1, 2",
        "SELECT p.pk, m FROM p JOIN (SELECT pk, max(q) AS m FROM l GROUP BY pk) AS a \
         ON a.pk = p.pk WHERE p.brand <> 'b' ORDER BY 1",
        // No filter on the outer table: nothing to cut by.
        "SELECT count(*) FROM l, p WHERE p.pk = l.pk \
         AND l.q < (SELECT avg(q) FROM l AS i WHERE i.pk = p.pk)",
    ];

    /// With the rule the aggregate of q17's shape reads only the filtered table's keys,
    /// and every query answers as without it.
    #[tokio::test]
    async fn aggregates_read_only_the_keys_their_join_uses() {
        let (with, without) = (context(true).await, context(false).await);
        for q in QUERIES {
            let a = with.sql(q).await.unwrap().collect().await.unwrap();
            let b = without.sql(q).await.unwrap().collect().await.unwrap();
            let a = pretty_format_batches(&a).unwrap().to_string();
            assert_eq!(a, pretty_format_batches(&b).unwrap().to_string(), "{q}");
        }
        let plan = |q: &'static str| {
            let with = with.clone();
            async move {
                with.sql(q)
                    .await
                    .unwrap()
                    .into_optimized_plan()
                    .unwrap()
                    .display_indent()
                    .to_string()
            }
        };
        let cut = plan(QUERIES[0]).await;
        let aggregate = cut.find("Aggregate: groupBy=[[i.pk]]").expect(&cut);
        assert!(cut[aggregate..].contains(KEYS), "{cut}");
        let plain = plan(QUERIES[3]).await;
        assert!(!plain.contains(KEYS), "{plain}");
    }
}
