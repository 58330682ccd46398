//! Correlated aggregates over the outer query's own rows, computed as windows. TPC-H q17
//! compares each lineitem of some parts with the average quantity of all lineitems of
//! its part: `l_quantity < (SELECT 0.2 * avg(l_quantity) FROM lineitem WHERE l_partkey =
//! p_partkey)`. Decorrelated, that is a semi join with an aggregate over a second read of
//! lineitem, grouped by part. But the outer join already holds every lineitem of each of
//! its parts, so the average is a window over the outer rows, `avg(l_quantity) OVER
//! (PARTITION BY p_partkey)`, and the second read of the largest table goes (the
//! rewrite known as WinMagic).
//!
//! That holds when the outer rows of one key value hold all the inner table's rows of
//! that value, each the same number of times, and the aggregate does not change when
//! every input row is repeated the same number of times (`avg`, `min`, `max`). So the
//! rule asks: the subquery is one aggregate grouped by one column, over one table read
//! whole (cut only by the keys [`crate::aggregate_keys`] added); the outer side reads
//! that table once, unfiltered, through inner joins, filters and column projections,
//! and every join condition and filter there uses no column of that table but the
//! grouped one; the semi join's key is equal to that column through the inner joins.
//! Rows whose key is NULL never match the semi join and are filtered out.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, JoinType, NullEquality, Result, TableReference};
use datafusion::logical_expr::expr::{WindowFunction, WindowFunctionParams};
use datafusion::logical_expr::{
    AggregateUDF, Expr, Join, LogicalPlan, LogicalPlanBuilder, WindowFrame,
    WindowFunctionDefinition,
};
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

use crate::aggregate_keys::{KEYS, holds};

/// The optimizer rule.
#[derive(Debug, Default)]
pub struct AggregateWindows;

impl OptimizerRule for AggregateWindows {
    fn name(&self) -> &str {
        "tidepool_aggregate_windows"
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        plan.transform_up(|p| match p {
            LogicalPlan::Join(join)
                if join.join_type == JoinType::LeftSemi
                    && join.null_equality == NullEquality::NullEqualsNothing
                    && join.on.len() == 1 =>
            {
                match windowed(&join)? {
                    Some(plan) => Ok(Transformed::yes(plan)),
                    None => Ok(Transformed::no(LogicalPlan::Join(join))),
                }
            }
            other => Ok(Transformed::no(other)),
        })
    }
}

/// The subquery side of the semi join, taken apart.
struct Subquery {
    /// The alias its columns carry in the join (`__scalar_sq_1`).
    alias: TableReference,
    /// Each output column's expression over the aggregate's output.
    outputs: Vec<(Column, Expr)>,
    /// The aggregate's group column, as the aggregate sees it.
    group: Column,
    /// Each aggregate's output column, function and arguments.
    aggregates: Vec<(Column, Arc<AggregateUDF>, Vec<Expr>)>,
    /// The table it reads, and the name its columns carry there.
    table: TableReference,
    qualifier: TableReference,
}

/// The semi join as a window over its left input, or `None` when the rule does not hold.
fn windowed(join: &Join) -> Result<Option<LogicalPlan>> {
    let Some(filter) = join.filter.clone() else {
        return Ok(None);
    };
    let (Expr::Column(outer_key), Expr::Column(inner_key)) = (&join.on[0].0, &join.on[0].1) else {
        return Ok(None);
    };
    let Some(sub) = subquery(&join.right) else {
        return Ok(None);
    };
    // The join's right key must be the group column itself.
    let Some((_, Expr::Column(group))) = sub.outputs.iter().find(|(c, _)| c == inner_key) else {
        return Ok(None);
    };
    if group != &sub.group {
        return Ok(None);
    }
    let mut outer = Outer::default();
    if !outer.walk(&join.left, &sub.table, &sub.group.name) || outer.found.len() != 1 {
        return Ok(None);
    }
    let here = outer.found[0].clone();
    let own_key = Column::new(Some(here.clone()), &sub.group.name);
    if !outer.equal(&own_key, outer_key) {
        return Ok(None);
    }
    // The aggregates' arguments, read from the outer copy of the table.
    let schema = join.left.schema();
    let mut windows = Vec::with_capacity(sub.aggregates.len());
    for (_, func, args) in &sub.aggregates {
        let mut args_here = Vec::with_capacity(args.len());
        for arg in args {
            let moved = arg.clone().transform(|e| match e {
                Expr::Column(c) if c.relation.as_ref() == Some(&sub.qualifier) => Ok(
                    Transformed::yes(Expr::Column(Column::new(Some(here.clone()), c.name))),
                ),
                other => Ok(Transformed::no(other)),
            })?;
            let mut known = true;
            moved.data.apply(|e| {
                if let Expr::Column(c) = e {
                    known &= c.relation.as_ref() == Some(&here) && schema.has_column(c);
                }
                Ok(TreeNodeRecursion::Continue)
            })?;
            if !known {
                return Ok(None);
            }
            args_here.push(moved.data);
        }
        windows.push(Expr::from(WindowFunction {
            fun: WindowFunctionDefinition::AggregateUDF(func.clone()),
            params: WindowFunctionParams {
                args: args_here,
                partition_by: vec![Expr::Column(outer_key.clone())],
                order_by: vec![],
                window_frame: WindowFrame::new(None),
                filter: None,
                null_treatment: None,
                distinct: false,
            },
        }));
    }
    let count = windows.len();
    let window = LogicalPlanBuilder::from(join.left.as_ref().clone())
        .window(windows)?
        .build()?;
    let columns = window.schema().columns();
    let window_columns = &columns[columns.len() - count..];
    // Each subquery column as an expression over the window's output.
    let mut outputs = Vec::with_capacity(sub.outputs.len());
    for (column, expr) in &sub.outputs {
        let mut known = true;
        let over = expr.clone().transform(|e| match e {
            Expr::Column(c) if c == sub.group => {
                Ok(Transformed::yes(Expr::Column(outer_key.clone())))
            }
            Expr::Column(c) => match sub.aggregates.iter().position(|(a, _, _)| a == &c) {
                Some(i) => Ok(Transformed::yes(Expr::Column(window_columns[i].clone()))),
                None => {
                    known = false;
                    Ok(Transformed::no(Expr::Column(c)))
                }
            },
            other => Ok(Transformed::no(other)),
        })?;
        if !known {
            return Ok(None);
        }
        outputs.push((column.clone(), over.data));
    }
    let mut known = true;
    let filter = filter
        .transform(|e| match e {
            Expr::Column(c) if c.relation.as_ref() == Some(&sub.alias) => {
                match outputs.iter().find(|(o, _)| o == &c) {
                    Some((_, expr)) => Ok(Transformed::yes(expr.clone())),
                    None => {
                        known = false;
                        Ok(Transformed::no(Expr::Column(c)))
                    }
                }
            }
            other => Ok(Transformed::no(other)),
        })?
        .data;
    if !known {
        return Ok(None);
    }
    let keep = Expr::Column(outer_key.clone()).is_not_null().and(filter);
    let back: Vec<Expr> = join
        .left
        .schema()
        .columns()
        .into_iter()
        .map(Expr::Column)
        .collect();
    Ok(Some(
        LogicalPlanBuilder::from(window)
            .filter(keep)?
            .project(back)?
            .build()?,
    ))
}

/// The semi join's right input as an aggregate over one table, or `None`.
fn subquery(plan: &LogicalPlan) -> Option<Subquery> {
    let LogicalPlan::SubqueryAlias(alias) = plan else {
        return None;
    };
    let (aggregate, exprs): (_, Vec<Expr>) = match alias.input.as_ref() {
        LogicalPlan::Projection(p) => match p.input.as_ref() {
            LogicalPlan::Aggregate(a) => (a, p.expr.iter().map(|e| e.clone().unalias()).collect()),
            _ => return None,
        },
        LogicalPlan::Aggregate(a) => (
            a,
            a.schema.columns().into_iter().map(Expr::Column).collect(),
        ),
        _ => return None,
    };
    let [Expr::Column(group)] = aggregate.group_expr.as_slice() else {
        return None;
    };
    let (table, qualifier) = whole_table(&aggregate.input, group)?;
    if group.relation.as_ref() != Some(&qualifier) {
        return None;
    }
    let out = aggregate.schema.columns();
    let mut aggregates = Vec::with_capacity(aggregate.aggr_expr.len());
    for (i, expr) in aggregate.aggr_expr.iter().enumerate() {
        let Expr::AggregateFunction(f) = expr.clone().unalias() else {
            return None;
        };
        let p = &f.params;
        let repeat_blind = matches!(f.func.name(), "avg" | "min" | "max");
        if !repeat_blind || p.distinct || p.filter.is_some() || !p.order_by.is_empty() {
            return None;
        }
        if p.null_treatment.is_some() || p.args.iter().any(|a| !reads_only(a, &qualifier)) {
            return None;
        }
        aggregates.push((out[1 + i].clone(), f.func.clone(), p.args.clone()));
    }
    let outputs = alias.schema.columns().into_iter().zip(exprs).collect();
    Some(Subquery {
        alias: alias.alias.clone(),
        outputs,
        group: group.clone(),
        aggregates,
        table,
        qualifier,
    })
}

/// The table `plan` reads whole (a scan without filters or limit, maybe aliased, under
/// column projections and the key cuts of [`crate::aggregate_keys`] on `group`), with
/// the name its columns carry.
fn whole_table(plan: &LogicalPlan, group: &Column) -> Option<(TableReference, TableReference)> {
    match plan {
        LogicalPlan::TableScan(s) if s.filters.is_empty() && s.fetch.is_none() => {
            Some((s.table_name.clone(), s.table_name.clone()))
        }
        LogicalPlan::SubqueryAlias(a) => match a.input.as_ref() {
            LogicalPlan::TableScan(s) if s.filters.is_empty() && s.fetch.is_none() => {
                Some((s.table_name.clone(), a.alias.clone()))
            }
            _ => None,
        },
        LogicalPlan::Projection(p) if p.expr.iter().all(|e| matches!(e, Expr::Column(_))) => {
            whole_table(&p.input, group)
        }
        LogicalPlan::Join(j)
            if j.join_type == JoinType::LeftSemi
                && j.filter.is_none()
                && matches!(j.right.as_ref(), LogicalPlan::SubqueryAlias(a) if a.alias.table() == KEYS)
                && j.on
                    .iter()
                    .all(|(l, _)| matches!(l, Expr::Column(c) if c == group)) =>
        {
            whole_table(&j.left, group)
        }
        _ => None,
    }
}

/// Whether every column `expr` uses carries `qualifier`.
fn reads_only(expr: &Expr, qualifier: &TableReference) -> bool {
    let mut only = true;
    let _ = expr.apply(|e| {
        if let Expr::Column(c) = e {
            only &= c.relation.as_ref() == Some(qualifier);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    only
}

/// What the walk over the semi join's left input learns.
#[derive(Default)]
struct Outer {
    /// The names the reads of the table carry (the rule needs exactly one).
    found: Vec<TableReference>,
    /// Column equalities every row satisfies (inner join keys).
    equal: Vec<(Column, Column)>,
}

impl Outer {
    /// Walks `plan` through inner joins, filters and column projections, recording reads
    /// of `table` and join equalities; `false` when a join condition or filter uses a
    /// column of `table` other than `key`, or `table` is read somewhere the walk cannot
    /// follow.
    fn walk(&mut self, plan: &LogicalPlan, table: &TableReference, key: &str) -> bool {
        match plan {
            LogicalPlan::TableScan(s) if &s.table_name == table => {
                self.found.push(s.table_name.clone());
                s.filters.is_empty() && s.fetch.is_none()
            }
            LogicalPlan::SubqueryAlias(a) if matches!(a.input.as_ref(), LogicalPlan::TableScan(s) if &s.table_name == table) =>
            {
                let LogicalPlan::TableScan(s) = a.input.as_ref() else {
                    return false;
                };
                self.found.push(a.alias.clone());
                s.filters.is_empty() && s.fetch.is_none()
            }
            LogicalPlan::Projection(p) if p.expr.iter().all(|e| matches!(e, Expr::Column(_))) => {
                self.walk(&p.input, table, key)
            }
            LogicalPlan::Filter(f) => {
                self.walk(&f.input, table, key)
                    && !f.predicate.contains_outer()
                    && self.uses_only_key(&f.predicate, key)
            }
            LogicalPlan::Join(j)
                if j.join_type == JoinType::Inner
                    && j.null_equality == NullEquality::NullEqualsNothing =>
            {
                if !(self.walk(&j.left, table, key) && self.walk(&j.right, table, key)) {
                    return false;
                }
                for (l, r) in &j.on {
                    if !(self.uses_only_key(l, key) && self.uses_only_key(r, key)) {
                        return false;
                    }
                    if let (Expr::Column(l), Expr::Column(r)) = (l, r) {
                        self.equal.push((l.clone(), r.clone()));
                    }
                }
                j.filter.as_ref().is_none_or(|f| self.uses_only_key(f, key))
            }
            other => !reads(other, table),
        }
    }

    /// Whether `expr` uses no column of the table's reads found so far but `key` (and no
    /// subquery).
    fn uses_only_key(&self, expr: &Expr, key: &str) -> bool {
        let mut ok = true;
        let _ = expr.apply(|e| {
            match e {
                Expr::Column(c) => {
                    ok &= c.name == key
                        || !c.relation.as_ref().is_some_and(|r| self.found.contains(r))
                }
                Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_) => ok = false,
                _ => {}
            }
            Ok(TreeNodeRecursion::Continue)
        });
        ok
    }

    /// Whether every row has `a = b`, through the inner joins' equalities.
    fn equal(&self, a: &Column, b: &Column) -> bool {
        let mut seen: HashSet<&Column> = HashSet::from([a]);
        let mut frontier = vec![a];
        while let Some(c) = frontier.pop() {
            if c == b {
                return true;
            }
            for (l, r) in &self.equal {
                for (from, to) in [(l, r), (r, l)] {
                    if from == c && seen.insert(to) {
                        frontier.push(to);
                    }
                }
            }
        }
        false
    }
}

/// Whether `plan` reads `table` anywhere.
fn reads(plan: &LogicalPlan, table: &TableReference) -> bool {
    holds(
        plan,
        |p| matches!(p, LogicalPlan::TableScan(s) if &s.table_name == table),
    )
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::prelude::SessionContext;

    use super::*;
    use crate::aggregate_keys::AggregateKeys;
    use crate::planner_options::Switched;

    async fn context(with_rules: bool) -> SessionContext {
        let config = datafusion::prelude::SessionConfig::new()
            .with_option_extension(crate::planner_options::PlannerOptions::default());
        let ctx = SessionContext::new_with_config(config);
        if with_rules {
            ctx.add_optimizer_rule(Switched::wrap(AggregateWindows));
            ctx.add_optimizer_rule(Switched::wrap(AggregateKeys));
        }
        for sql in [
            // Part 1 twice (each of its lineitems joins twice), a NULL key on both sides.
            "CREATE TABLE p (pk INT, brand TEXT) AS VALUES \
             (1, 'a'), (1, 'a'), (2, 'b'), (3, 'a'), (4, NULL), (NULL, 'a')",
            "CREATE TABLE l (pk INT, q INT, price INT) AS VALUES \
             (1, 1, 10), (1, 9, 20), (1, 2, 25), (1, 5, 22), (2, 3, 30), (3, 4, 40), (3, 40, 50), \
             (4, 5, 60), (NULL, 1, 70), (NULL, 9, 75), (5, 1, 80), (5, 7, 90)",
            "CREATE TABLE o (price INT, tag TEXT) AS VALUES (10, 'x'), (20, 'y'), (50, 'x')",
        ] {
            ctx.sql(sql).await.unwrap().collect().await.unwrap();
        }
        ctx
    }

    /// (query, whether the rule may turn it into a window).
    const QUERIES: [(&str, bool); 9] = [
        // q17's shape.
        (
            "SELECT sum(price) FROM l, p WHERE p.pk = l.pk AND p.brand = 'a' \
             AND l.q < (SELECT 0.5 * avg(q) FROM l AS i WHERE i.pk = p.pk)",
            true,
        ),
        (
            "SELECT p.pk, l.q FROM l JOIN p ON p.pk = l.pk WHERE p.brand = 'a' \
             AND l.q >= (SELECT max(q) FROM l AS i WHERE i.pk = p.pk) ORDER BY 1, 2",
            true,
        ),
        // No join: the key is the table's own column, NULL keys never match.
        (
            "SELECT pk, q FROM l WHERE q > (SELECT min(q) FROM l AS i WHERE i.pk = l.pk) \
             ORDER BY 1, 2",
            true,
        ),
        // sum counts the repeated rows: left alone.
        (
            "SELECT p.pk, l.q FROM l JOIN p ON p.pk = l.pk \
             WHERE l.q * 3 < (SELECT sum(q) FROM l AS i WHERE i.pk = p.pk) ORDER BY 1, 2",
            false,
        ),
        // The outer rows are filtered on another column of the table: left alone.
        (
            "SELECT p.pk, l.q FROM l JOIN p ON p.pk = l.pk WHERE l.price > 20 \
             AND l.q < (SELECT avg(q) FROM l AS i WHERE i.pk = p.pk) ORDER BY 1, 2",
            false,
        ),
        // The subquery is filtered: left alone.
        (
            "SELECT p.pk, l.q FROM l JOIN p ON p.pk = l.pk \
             WHERE l.q <= (SELECT avg(q) FROM l AS i WHERE i.pk = p.pk AND i.price > 20) \
             ORDER BY 1, 2",
            false,
        ),
        // Joined on another column of the table (repeats differ per row): left alone.
        (
            "SELECT p.pk, l.q, o.tag FROM l JOIN p ON p.pk = l.pk JOIN o ON o.price = l.price \
             WHERE l.q <= (SELECT avg(q) FROM l AS i WHERE i.pk = p.pk) ORDER BY 1, 2, 3",
            false,
        ),
        // Correlated on a column that is not the join key: left alone.
        (
            "SELECT p.pk, l.q FROM l JOIN p ON p.pk = l.pk \
             WHERE l.q <= (SELECT avg(q) FROM l AS i WHERE i.price = l.q * 10) ORDER BY 1, 2",
            false,
        ),
        // Another table joined on the key class, filtered on its own columns.
        (
            "SELECT p.pk, l.q FROM l JOIN p ON p.pk = l.pk JOIN p AS p2 ON p2.pk = p.pk \
             WHERE p2.brand IS NOT NULL AND l.q > (SELECT avg(q) FROM l AS i WHERE i.pk = l.pk) \
             ORDER BY 1, 2",
            true,
        ),
    ];

    /// `tidepool.planner_rewrites = off` (the session's option extension) leaves the plan
    /// as DataFusion makes it.
    #[tokio::test]
    async fn the_session_switch_turns_the_rewrite_off() {
        let ctx = context(true).await;
        let q = QUERIES[0].0;
        let plan = ctx.sql(q).await.unwrap().into_optimized_plan().unwrap();
        assert!(plan.display_indent().to_string().contains("WindowAggr"));
        ctx.sql("SET tidepool_planner.rewrites = false")
            .await
            .unwrap();
        let plan = ctx.sql(q).await.unwrap().into_optimized_plan().unwrap();
        assert!(!plan.display_indent().to_string().contains("WindowAggr"));
    }

    /// The rewritten queries read the table once and every query answers as without the
    /// rules, repeated keys and NULL keys included.
    #[tokio::test]
    async fn correlated_aggregates_become_windows_and_answer_the_same() {
        let (with, without) = (context(true).await, context(false).await);
        for (q, windowed) in QUERIES {
            let a = with.sql(q).await.unwrap().collect().await.unwrap();
            let b = without.sql(q).await.unwrap().collect().await.unwrap();
            let a = pretty_format_batches(&a).unwrap().to_string();
            assert_eq!(a, pretty_format_batches(&b).unwrap().to_string(), "{q}");
            assert!(a.lines().count() > 4, "{q}: {a}");
            let plan = with.sql(q).await.unwrap().into_optimized_plan().unwrap();
            let plan = plan.display_indent().to_string();
            let reads = plan.matches("TableScan: l ").count();
            if windowed {
                assert!(plan.contains("WindowAggr"), "{q}\n{plan}");
                assert_eq!(reads, 1, "{q}\n{plan}");
            } else {
                assert!(!plan.contains("WindowAggr"), "{q}\n{plan}");
                assert_eq!(reads, 2, "{q}\n{plan}");
            }
        }
    }
}
