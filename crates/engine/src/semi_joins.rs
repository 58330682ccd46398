//! Semi and anti joins moved down to the table they filter. DataFusion decorrelates
//! `WHERE o.k IN (SELECT ...)` (and `EXISTS`, `NOT IN`, `NOT EXISTS`) into a semi or anti
//! join above the whole FROM clause: in TPC-H's q18 the 57 orders the subquery keeps were
//! checked only after all 1.5M orders had been joined with all 6M lineitems. A semi join
//! whose keys and condition read one input of an inner join filters that input's rows
//! and nothing else, so it can be applied to that input first: `(A ⋈ B) ⋉ S` is
//! `(A ⋉ S) ⋈ B` when the join with `S` reads only `A`'s columns (the same holds for the
//! anti join, null-aware `NOT IN` included: whether a row survives depends on that row and
//! `S` alone). The rule walks down through inner joins and projections that pass the
//! columns through unchanged, and places the join as low as it goes, but above any
//! filter (a filter is cheaper than a hash probe and keeps fewer rows to probe, q04); the smaller
//! input then builds the hash table the rest of the joins probe. It stops above an inner
//! join whose other input is filtered: that join may keep few of the rows (q21 keeps
//! the lineitems of one nation's suppliers), and checking them after it is cheaper.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, JoinType, Result};
use datafusion::logical_expr::{Expr, Join, LogicalPlan};
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

use crate::aggregate_keys::filters;

/// The optimizer rule.
#[derive(Debug, Default)]
pub struct SemiJoinsDown;

impl OptimizerRule for SemiJoinsDown {
    fn name(&self) -> &str {
        "tidepool_semi_joins_down"
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        plan.transform_down(|p| match p {
            LogicalPlan::Join(join)
                if matches!(join.join_type, JoinType::LeftSemi | JoinType::LeftAnti) =>
            {
                let columns = left_columns(&join);
                match place(&join.left, &columns, &join)? {
                    Some(moved) => Ok(Transformed::yes(moved)),
                    None => Ok(Transformed::no(LogicalPlan::Join(join))),
                }
            }
            other => Ok(Transformed::no(other)),
        })
    }
}

/// The columns of the join's left input its keys and condition read.
fn left_columns(join: &Join) -> HashSet<Column> {
    let mut columns = HashSet::new();
    for (l, _) in &join.on {
        columns.extend(l.column_refs().into_iter().cloned());
    }
    if let Some(filter) = &join.filter {
        columns.extend(
            filter
                .column_refs()
                .into_iter()
                .filter(|c| join.left.schema().has_column(c))
                .cloned(),
        );
    }
    columns
}

fn has_all(plan: &LogicalPlan, columns: &HashSet<Column>) -> bool {
    columns.iter().all(|c| plan.schema().has_column(c))
}

/// `plan` (the semi join's left input, or part of it) with the semi join applied below
/// its top node, or `None` when it cannot go lower than above `plan`.
fn place(
    plan: &LogicalPlan,
    columns: &HashSet<Column>,
    join: &Join,
) -> Result<Option<LogicalPlan>> {
    let (index, child) = match plan {
        // Not below a join with a filtered input: that join may drop most of the rows
        // the semi join would otherwise check (TPC-H q21's lineitems of one nation's
        // suppliers), and the semi join is cheaper after it.
        LogicalPlan::Join(inner) if inner.join_type == JoinType::Inner => {
            if has_all(&inner.left, columns) && !filters(&inner.right) {
                (0, inner.left.as_ref())
            } else if has_all(&inner.right, columns) && !filters(&inner.left) {
                (1, inner.right.as_ref())
            } else {
                return Ok(None);
            }
        }
        LogicalPlan::Projection(projection) if passes_through(projection, columns) => {
            (0, projection.input.as_ref())
        }
        _ => return Ok(None),
    };
    if !has_all(child, columns) {
        return Ok(None);
    }
    let below = match place(child, columns, join)? {
        Some(p) => p,
        None => LogicalPlan::Join(Join::try_new(
            Arc::new(child.clone()),
            join.right.clone(),
            join.on.clone(),
            join.filter.clone(),
            join.join_type,
            join.join_constraint,
            join.null_equality,
            join.null_aware,
        )?),
    };
    let mut inputs: Vec<LogicalPlan> = plan.inputs().into_iter().cloned().collect();
    inputs[index] = below;
    Ok(Some(plan.with_new_exprs(plan.expressions(), inputs)?))
}

/// Whether `projection` outputs each of `columns` as the same column of its input.
fn passes_through(
    projection: &datafusion::logical_expr::Projection,
    columns: &HashSet<Column>,
) -> bool {
    columns.iter().all(|c| {
        projection
            .expr
            .iter()
            .any(|e| matches!(e, Expr::Column(x) if x == c))
    })
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::prelude::SessionContext;

    use super::*;

    async fn context(with_rule: bool) -> SessionContext {
        let ctx = SessionContext::new();
        if with_rule {
            ctx.add_optimizer_rule(Arc::new(SemiJoinsDown));
        }
        for sql in [
            "CREATE TABLE c (ck INT, name TEXT) AS VALUES (1, 'a'), (2, 'b'), (3, NULL)",
            "CREATE TABLE o (ok INT, ck INT, price INT) AS VALUES \
             (10, 1, 5), (11, 1, 7), (12, 2, 9), (13, 3, 1), (14, NULL, 2), (NULL, 2, 3)",
            "CREATE TABLE l (ok INT, q INT) AS VALUES \
             (10, 1), (10, 50), (11, 2), (12, 60), (13, 5), (14, 70), (NULL, 80)",
        ] {
            ctx.sql(sql).await.unwrap().collect().await.unwrap();
        }
        ctx
    }

    /// The optimized plan of `sql`, indented.
    async fn optimized(ctx: &SessionContext, sql: &str) -> String {
        let plan = ctx.sql(sql).await.unwrap().into_optimized_plan().unwrap();
        plan.display_indent().to_string()
    }

    const QUERIES: [&str; 7] = [
        // q18's shape: IN on the orders side of a three-way join.
        "SELECT c.name, o.ok, sum(l.q) FROM c, o, l WHERE o.ok IN \
         (SELECT ok FROM l GROUP BY ok HAVING sum(q) > 40) AND c.ck = o.ck AND o.ok = l.ok \
         GROUP BY c.name, o.ok ORDER BY 2",
        "SELECT o.ok, l.q FROM o JOIN l ON o.ok = l.ok WHERE o.ok NOT IN \
         (SELECT ok FROM l WHERE q > 55) ORDER BY 1, 2",
        "SELECT o.ok, l.q FROM o JOIN l ON o.ok = l.ok WHERE o.ok NOT IN \
         (SELECT ok FROM l WHERE q > 55 AND ok IS NOT NULL) ORDER BY 1, 2",
        "SELECT c.name, o.ok FROM c JOIN o ON c.ck = o.ck WHERE EXISTS \
         (SELECT 1 FROM l WHERE l.ok = o.ok AND l.q > c.ck) ORDER BY 1, 2",
        "SELECT c.name, o.price FROM c JOIN o ON c.ck = o.ck WHERE NOT EXISTS \
         (SELECT 1 FROM l WHERE l.ok = o.ok AND l.q < 3) ORDER BY 1, 2",
        // The customers' side is filtered: the semi join stays above the join.
        "SELECT o.ok FROM c JOIN o ON c.ck = o.ck WHERE c.name = 'a' AND o.ok IN \
         (SELECT ok FROM l WHERE q > 1) ORDER BY 1",
        // The semi join stays above the orders' own filter.
        "SELECT o.ok FROM c JOIN o ON c.ck = o.ck WHERE o.price > 4 AND o.ok IN \
         (SELECT ok FROM l WHERE q > 1) ORDER BY 1",
    ];

    /// With the rule the semi join sits on the orders side, below the inner joins, and
    /// every query answers as without it (NOT IN with a NULL in the subquery included).
    #[tokio::test]
    async fn semi_joins_filter_their_table_first_and_answer_the_same() {
        let (with, without) = (context(true).await, context(false).await);
        for q in QUERIES {
            let a = with.sql(q).await.unwrap().collect().await.unwrap();
            let b = without.sql(q).await.unwrap().collect().await.unwrap();
            let a = pretty_format_batches(&a).unwrap().to_string();
            assert_eq!(a, pretty_format_batches(&b).unwrap().to_string(), "{q}");
        }
        let plan = optimized(&with, QUERIES[0]).await;
        let semi = plan.find("LeftSemi Join").expect(&plan);
        let inner = plan.find("Inner Join").expect(&plan);
        assert!(
            semi > inner,
            "the semi join is still above the joins:\n{plan}"
        );
        let plan = optimized(&with, QUERIES[5]).await;
        let semi = plan.find("LeftSemi Join").expect(&plan);
        let inner = plan.find("Inner Join").expect(&plan);
        assert!(
            semi < inner,
            "the semi join went below a join with a filtered input:\n{plan}"
        );
        let plan = optimized(&with, QUERIES[6]).await;
        let semi = plan.find("LeftSemi Join").expect(&plan);
        let inner = plan.find("Inner Join").expect(&plan);
        let filter = plan.find("Filter: o.price").expect(&plan);
        assert!(
            inner < semi && semi < filter,
            "the semi join belongs between the join and the filter:\n{plan}"
        );
    }
}
