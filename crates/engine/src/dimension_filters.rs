//! A dimension's filter carried along the join keys to the tables it can reach. In a
//! star or snowflake join a filter often sits on a small table at the far end
//! (TPC-H q05's `r_name = 'ASIA'`, q07's two nations) while the rows it rules out are
//! joined, row by row, everywhere else first: q05 joined all 150k customers with their
//! orders and those with 6M lineitems before the region dropped four fifths of them.
//! DuckDB and the big warehouses move such filters; DataFusion does not.
//!
//! Within a tree of inner joins the equality keys make classes of columns that are equal
//! in every row of the result (`c_nationkey = s_nationkey = n_nationkey`). A row of one
//! input whose key has no partner among the rows another input can contribute cannot
//! reach the result, so the first input may be cut with a semi join on the second's keys
//! before any join: `customer ⋉ (nation ⋉ region)`. Cut inputs cut others in turn. The
//! rule only cuts with inputs that are filtered (or cut) and small next to what they cut
//! (a tenth of its rows, or at most [`TINY`] rows: one more scan and a small hash table),
//! never the largest input (the one probed: the join drops its rows anyway, and a
//! second probe of every row costs more than it saves), and not an input joined
//! directly with the one it would cut. Sizes are the tables' row counts from the lake's
//! log; an input without one is left alone. Only equality keys of plain columns in joins
//! whose NULL keys never match are used.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, JoinType, NullEquality, Result};
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::{Expr, Join, JoinConstraint, LogicalPlan, LogicalPlanBuilder};
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

use crate::aggregate_keys::{filters, holds_alias};

/// The alias of the key lists the rule adds (and how it recognises its own work).
const KEYS: &str = "__tidepool_dimension";

/// A cutting input of at most this many rows is small whatever it cuts.
const TINY: usize = 1000;

/// A cutting input is small when it has at most this fraction of the rows it cuts.
const RATIO: usize = 10;

/// The optimizer rule.
#[derive(Debug, Default)]
pub struct DimensionFilters;

impl OptimizerRule for DimensionFilters {
    fn name(&self) -> &str {
        "tidepool_dimension_filters"
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        cut_joins(plan)
    }
}

/// `plan` with the inputs of each tree of inner joins in it cut.
fn cut_joins(plan: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
    plan.transform_down(|p| {
        if !is_inner(&p) {
            return Ok(Transformed::no(p));
        }
        // The whole tree of inner joins is handled here, its inputs first (they may
        // hold trees of their own).
        let mut block = Block::default();
        block.collect(&p);
        let mut inputs = Vec::with_capacity(block.inputs.len());
        let mut changed = false;
        for input in &block.inputs {
            let t = cut_joins(input.clone())?;
            changed |= t.transformed;
            inputs.push(t.data);
        }
        block.inputs = inputs;
        let cut = if block.inputs.iter().any(|i| holds_alias(i, KEYS)) {
            None
        } else {
            block.cut()?
        };
        changed |= cut.is_some();
        let inputs = cut.unwrap_or_else(|| block.inputs.clone());
        let plan = if changed {
            rebuild(&p, &mut inputs.into_iter())?
        } else {
            p
        };
        Ok(Transformed::new(plan, changed, TreeNodeRecursion::Jump))
    })
}

fn is_inner(plan: &LogicalPlan) -> bool {
    matches!(plan, LogicalPlan::Join(j)
        if j.join_type == JoinType::Inner && j.null_equality == NullEquality::NullEqualsNothing)
}

/// Whether `plan` outputs its input's columns unchanged (a subset of them).
fn passes_through(plan: &LogicalPlan) -> bool {
    matches!(plan, LogicalPlan::Projection(p)
        if p.expr.iter().all(|e| matches!(e, Expr::Column(_))))
}

/// A tree of inner joins (and projections of their columns) taken apart.
#[derive(Default)]
struct Block {
    /// The inputs of the tree, left to right.
    inputs: Vec<LogicalPlan>,
    /// The equality keys of its joins.
    pairs: Vec<(Column, Column)>,
    /// Pairs of inputs joined directly with each other.
    siblings: HashSet<(usize, usize)>,
}

impl Block {
    /// Takes `plan` apart; returns the input it is when it is one, as an index.
    fn collect(&mut self, plan: &LogicalPlan) -> Option<usize> {
        match plan {
            LogicalPlan::Join(j) if is_inner(plan) => {
                for (l, r) in &j.on {
                    if let (Expr::Column(l), Expr::Column(r)) = (l, r) {
                        self.pairs.push((l.clone(), r.clone()));
                    }
                }
                let left = self.collect(&j.left);
                let right = self.collect(&j.right);
                if let (Some(l), Some(r)) = (left, right) {
                    self.siblings.insert((l, r));
                    self.siblings.insert((r, l));
                }
                None
            }
            p if passes_through(p) => self.collect(p.inputs()[0]),
            _ => {
                self.inputs.push(plan.clone());
                Some(self.inputs.len() - 1)
            }
        }
    }

    /// The inputs with the cuts applied, or `None` when there is nothing to cut.
    fn cut(&self) -> Result<Option<Vec<LogicalPlan>>> {
        let n = self.inputs.len();
        let rows: Vec<Option<usize>> = self.inputs.iter().map(table_rows).collect();
        let largest = (0..n)
            .filter(|&i| rows[i].is_some())
            .max_by_key(|&i| rows[i]);
        let classes = Classes::of(&self.pairs);
        let mut plans = self.inputs.clone();
        // The rows a cut input's plan reads (its own and its cutters'), and the inputs
        // it depends on (never cut one of those with it).
        let mut cost: Vec<Option<usize>> = rows.clone();
        let mut behind: Vec<HashSet<usize>> = (0..n).map(|i| HashSet::from([i])).collect();
        let mut cutting: Vec<bool> = self.inputs.iter().map(filters).collect();
        // Each input is cut at most once per class of keys, by the cheapest input able to.
        let mut done: HashSet<(usize, usize)> = HashSet::new();
        let mut changed = false;
        loop {
            let mut progress = false;
            for t in 0..n {
                let Some(t_rows) = rows[t] else { continue };
                if Some(t) == largest {
                    continue;
                }
                let mut best: Option<(usize, usize, Column, Column)> = None;
                for r in 0..n {
                    let Some(r_cost) = cost[r] else { continue };
                    if r == t
                        || !cutting[r]
                        || behind[r].contains(&t)
                        || self.siblings.contains(&(t, r))
                        || (r_cost > TINY && r_cost.saturating_mul(RATIO) > t_rows)
                        || best.as_ref().is_some_and(|b| cost[b.0] <= Some(r_cost))
                    {
                        continue;
                    }
                    if let Some((class, c, k)) = classes.shared(&plans[t], &plans[r], t, &done) {
                        best = Some((r, class, c, k));
                    }
                }
                let Some((r, class, c, k)) = best else {
                    continue;
                };
                plans[t] = semi_join(plans[t].clone(), plans[r].clone(), c, k)?;
                done.insert((t, class));
                let r_behind = behind[r].clone();
                behind[t].extend(r_behind);
                cost[t] = Some(cost[t].unwrap_or(0).saturating_add(cost[r].unwrap_or(0)));
                cutting[t] = true;
                progress = true;
                changed = true;
            }
            if !progress {
                break;
            }
        }
        Ok(changed.then_some(plans))
    }
}

/// Equality classes of columns.
struct Classes(HashMap<Column, usize>);

impl Classes {
    fn of(pairs: &[(Column, Column)]) -> Self {
        let mut class: HashMap<Column, usize> = HashMap::new();
        let mut next = 0;
        for (a, b) in pairs {
            match (class.get(a).copied(), class.get(b).copied()) {
                (None, None) => {
                    class.insert(a.clone(), next);
                    class.insert(b.clone(), next);
                    next += 1;
                }
                (Some(x), None) => {
                    class.insert(b.clone(), x);
                }
                (None, Some(y)) => {
                    class.insert(a.clone(), y);
                }
                (Some(x), Some(y)) if x != y => {
                    for v in class.values_mut() {
                        if *v == y {
                            *v = x;
                        }
                    }
                }
                _ => {}
            }
        }
        Classes(class)
    }

    /// A class not yet in `done` for input `index`, with a column of `t` and a column of
    /// `r` in it.
    fn shared(
        &self,
        t: &LogicalPlan,
        r: &LogicalPlan,
        index: usize,
        done: &HashSet<(usize, usize)>,
    ) -> Option<(usize, Column, Column)> {
        for c in t.schema().columns() {
            let Some(&class) = self.0.get(&c) else {
                continue;
            };
            if done.contains(&(index, class)) {
                continue;
            }
            for k in r.schema().columns() {
                if self.0.get(&k) == Some(&class) {
                    return Some((class, c, k));
                }
            }
        }
        None
    }
}

/// `t` cut to the rows whose `c` is among `r`'s `k` values.
fn semi_join(t: LogicalPlan, r: LogicalPlan, c: Column, k: Column) -> Result<LogicalPlan> {
    let name = k.name().to_string();
    let keys = LogicalPlanBuilder::from(r)
        .project([Expr::Column(k)])?
        .alias(KEYS)?
        .build()?;
    Ok(LogicalPlan::Join(Join::try_new(
        Arc::new(t),
        Arc::new(keys),
        vec![(Expr::Column(c), Expr::Column(Column::new(Some(KEYS), name)))],
        None,
        JoinType::LeftSemi,
        JoinConstraint::On,
        NullEquality::NullEqualsNothing,
        false,
    )?))
}

/// The row count of the one table `plan` reads through projections, filters and
/// aliases, when its provider knows it.
fn table_rows(plan: &LogicalPlan) -> Option<usize> {
    match plan {
        LogicalPlan::TableScan(scan) => {
            let provider = source_as_provider(&scan.source).ok()?;
            provider.statistics()?.num_rows.get_value().copied()
        }
        LogicalPlan::Projection(p) => table_rows(&p.input),
        LogicalPlan::Filter(f) => table_rows(&f.input),
        LogicalPlan::SubqueryAlias(a) => table_rows(&a.input),
        _ => None,
    }
}

/// `plan` (the tree [`Block::collect`] took apart) with its inputs replaced, in order.
fn rebuild(
    plan: &LogicalPlan,
    inputs: &mut impl Iterator<Item = LogicalPlan>,
) -> Result<LogicalPlan> {
    let children: Vec<LogicalPlan> = match plan {
        LogicalPlan::Join(j) if is_inner(plan) => {
            vec![rebuild(&j.left, inputs)?, rebuild(&j.right, inputs)?]
        }
        p if passes_through(p) => vec![rebuild(p.inputs()[0], inputs)?],
        _ => {
            return inputs
                .next()
                .ok_or_else(|| datafusion::error::DataFusionError::Internal("join inputs".into()));
        }
    };
    plan.with_new_exprs(plan.expressions(), children)
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;
    use datafusion::arrow::datatypes::SchemaRef;
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::catalog::{Session, TableProvider};
    use datafusion::common::Statistics;
    use datafusion::common::stats::Precision;
    use datafusion::datasource::{MemTable, TableType};
    use datafusion::physical_plan::ExecutionPlan;
    use datafusion::prelude::SessionContext;

    use super::*;

    /// A memory table that knows its row count, as lake tables do.
    #[derive(Debug)]
    struct Counted(Arc<dyn TableProvider>, usize);

    #[async_trait]
    impl TableProvider for Counted {
        fn schema(&self) -> SchemaRef {
            self.0.schema()
        }
        fn table_type(&self) -> TableType {
            TableType::Base
        }
        async fn scan(
            &self,
            state: &dyn Session,
            projection: Option<&Vec<usize>>,
            filters: &[Expr],
            limit: Option<usize>,
        ) -> Result<Arc<dyn ExecutionPlan>> {
            self.0.scan(state, projection, filters, limit).await
        }
        fn statistics(&self) -> Option<Statistics> {
            Some(Statistics::new_unknown(&self.schema()).with_num_rows(Precision::Exact(self.1)))
        }
    }

    /// A snowflake: region -> nation -> customer -> orders -> lineitem, and supplier.
    async fn context(with_rule: bool) -> SessionContext {
        let ctx = SessionContext::new();
        if with_rule {
            ctx.add_optimizer_rule(Arc::new(DimensionFilters));
        }
        let tables = [
            ("region", "SELECT * FROM (VALUES (0, 'EU'), (1, 'ASIA')) t(rk, rname)".to_string()),
            (
                "nation",
                "SELECT n AS nk, n % 2 AS rk, 'n' || n AS nname FROM generate_series(0, 9) s(n)"
                    .to_string(),
            ),
            (
                "customer",
                "SELECT n AS ck, CASE WHEN n % 7 = 0 THEN NULL ELSE n % 10 END AS nk \
                 FROM generate_series(0, 4999) s(n)"
                    .to_string(),
            ),
            (
                "supplier",
                "SELECT n AS sk, n / 10 AS nk FROM generate_series(0, 99) s(n)".to_string(),
            ),
            (
                "orders",
                "SELECT n AS ok, n % 5000 AS ck FROM generate_series(0, 19999) s(n)".to_string(),
            ),
            (
                "lineitem",
                "SELECT n % 20000 AS ok, n % 100 AS sk, n AS price FROM generate_series(0, 79999) s(n)"
                    .to_string(),
            ),
        ];
        for (name, sql) in tables {
            let batches = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
            let rows = batches.iter().map(|b| b.num_rows()).sum();
            let schema = batches[0].schema();
            let mem = MemTable::try_new(schema, vec![batches]).unwrap();
            ctx.register_table(name, Arc::new(Counted(Arc::new(mem), rows)))
                .unwrap();
        }
        ctx
    }

    const QUERIES: [&str; 3] = [
        // q05's shape: the region's filter reaches the customers through the nations.
        "SELECT nation.nname, sum(price) FROM customer, orders, lineitem, supplier, nation, region \
         WHERE customer.ck = orders.ck AND lineitem.ok = orders.ok AND lineitem.sk = supplier.sk \
         AND customer.nk = supplier.nk AND supplier.nk = nation.nk AND nation.rk = region.rk \
         AND region.rname = 'ASIA' GROUP BY 1 ORDER BY 1",
        // q07's shape: two copies of one dimension, each filtered.
        "SELECT n1.nname, n2.nname, count(*) FROM supplier, lineitem, orders, customer, \
         nation n1, nation n2 WHERE supplier.sk = lineitem.sk AND orders.ok = lineitem.ok \
         AND customer.ck = orders.ck AND supplier.nk = n1.nk AND customer.nk = n2.nk \
         AND ((n1.nname = 'n1' AND n2.nname = 'n2') OR (n1.nname = 'n2' AND n2.nname = 'n1')) \
         GROUP BY 1, 2 ORDER BY 1, 2",
        // No filter anywhere: nothing to carry.
        "SELECT count(*) FROM customer, orders, nation WHERE customer.ck = orders.ck \
         AND customer.nk = nation.nk",
    ];

    /// The filters reach the customers (and suppliers), never the lineitems, and every
    /// query answers as without the rule (customers with NULL nations included).
    #[tokio::test]
    async fn dimension_filters_reach_the_tables_they_cut_and_answer_the_same() {
        let (with, without) = (context(true).await, context(false).await);
        for q in QUERIES {
            let a = with.sql(q).await.unwrap().collect().await.unwrap();
            let b = without.sql(q).await.unwrap().collect().await.unwrap();
            let a = pretty_format_batches(&a).unwrap().to_string();
            assert_eq!(a, pretty_format_batches(&b).unwrap().to_string(), "{q}");
            assert!(a.lines().count() > 4, "{q}: {a}");
        }
        let plan = |q: &'static str| {
            let with = &with;
            async move {
                let p = with.sql(q).await.unwrap().into_optimized_plan().unwrap();
                p.display_indent().to_string()
            }
        };
        let q05 = plan(QUERIES[0]).await;
        // customer ⋉ (nation ⋉ region), supplier likewise; the lineitems uncut.
        let cut = |table: &str, text: &str| {
            text.lines()
                .any(|l| l.contains("LeftSemi Join") && l.contains(&format!("{table}.nk")))
        };
        assert!(cut("customer", &q05), "{q05}");
        assert!(cut("supplier", &q05), "{q05}");
        assert!(q05.contains("LeftSemi Join: nation.rk"), "{q05}");
        assert!(!q05.contains("LeftSemi Join: lineitem"), "{q05}");
        let q07 = plan(QUERIES[1]).await;
        assert!(cut("customer", &q07), "{q07}");
        assert!(cut("supplier", &q07), "{q07}");
        let plain = plan(QUERIES[2]).await;
        assert!(!plain.contains("LeftSemi"), "{plain}");
    }
}
