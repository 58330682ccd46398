//! Grouped aggregates whose state grows with their input (`string_agg`, `array_agg`,
//! `median`, `percentile_cont`) run over input sorted by the group keys, so the memory
//! limit holds.
//!
//! DataFusion plans every grouped aggregate as a hash aggregate in two phases. For
//! aggregates with a fixed-size state that is right, and the hash table spills under
//! memory pressure. For these aggregates it is not: each group holds all of its input,
//! the partial phase emits its whole state as one batch, and merging the spilled runs
//! holds one such batch per run, so `string_agg` over 20M rows with a 256 MiB limit
//! peaked at 2 GiB (issue 21). Sorting is what bounds them: an external sort spills in
//! bounded runs, and an aggregate over input sorted by its keys keeps only the group
//! it is reading and emits each group as soon as the next one starts.
//!
//! With `memory_limit` set, this physical rule runs before `EnsureRequirements` and turns
//! `Final(Partial(input))` (and a `Single` aggregate over unsorted input) into
//! `SinglePartitioned(Sort(keys, Repartition(Hash(keys), input)))`. The later rules
//! see their distribution and ordering satisfied and leave it; `SanityCheckPlan`
//! checks the result.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::Result;
use datafusion::physical_expr::{LexOrdering, PhysicalSortExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::Partitioning;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::{ExecutionPlan, InputOrderMode};

/// Aggregates whose per-group state holds every input value.
const GROWING: &[&str] = &["string_agg", "array_agg", "median", "percentile_cont"];

#[derive(Debug, Default)]
pub struct BoundedAggregates;

impl BoundedAggregates {
    /// The default physical rules, with this one placed before `EnsureRequirements`
    /// when a memory limit is set (without one, the hash aggregate is faster and
    /// nothing needs to spill).
    pub fn with_default_rules(
        memory_limit: bool,
    ) -> Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>> {
        let mut rules = datafusion::physical_optimizer::optimizer::PhysicalOptimizer::new().rules;
        if !memory_limit {
            return rules;
        }
        let at = rules
            .iter()
            .position(|r| r.name() == "EnsureRequirements")
            .unwrap_or(0);
        rules.insert(at, Arc::new(BoundedAggregates));
        rules
    }
}

impl PhysicalOptimizerRule for BoundedAggregates {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let partitions = config.execution.target_partitions.max(1);
        plan.transform_down(|node| {
            Ok(match rewrite(&node, partitions)? {
                Some(new) => Transformed::yes(new),
                None => Transformed::no(node),
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "BoundedAggregates"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The sorted single-phase aggregate replacing `node`, when `node` is a grouped
/// aggregate of a growing function over unsorted input.
fn rewrite(
    node: &Arc<dyn ExecutionPlan>,
    partitions: usize,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let Some(agg) = node.downcast_ref::<AggregateExec>() else {
        return Ok(None);
    };
    // The aggregate that sees the raw input: the partial phase, or a single phase.
    let raw = match agg.mode() {
        AggregateMode::Final | AggregateMode::FinalPartitioned => {
            match agg.input().downcast_ref::<AggregateExec>() {
                Some(p) if *p.mode() == AggregateMode::Partial => p,
                _ => return Ok(None),
            }
        }
        AggregateMode::Single | AggregateMode::SinglePartitioned => agg,
        _ => return Ok(None),
    };
    let group_by = raw.group_expr();
    if group_by.expr().is_empty() || !group_by.is_single() || agg.limit_options().is_some() {
        return Ok(None);
    }
    if !raw
        .aggr_expr()
        .iter()
        .any(|a| GROWING.contains(&a.fun().name()))
    {
        return Ok(None);
    }
    if *raw.input_order_mode() == InputOrderMode::Sorted {
        return Ok(None);
    }
    let input = raw.input().clone();
    let keys: Vec<_> = group_by.expr().iter().map(|(e, _)| e.clone()).collect();
    let mut sort_exprs: Vec<PhysicalSortExpr> = keys
        .iter()
        .map(|e| PhysicalSortExpr::new_default(e.clone()))
        .collect();
    // An ordered aggregate (`string_agg(s, ',' ORDER BY s)`) reads its order after the keys.
    if let Some(ordered) = raw.aggr_expr().iter().find(|a| !a.order_bys().is_empty()) {
        sort_exprs.extend(ordered.order_bys().iter().cloned());
    }
    let Some(ordering) = LexOrdering::new(sort_exprs) else {
        return Ok(None);
    };
    // Rows are spread by key first, so each partition aggregates its own keys and the
    // aggregate's output (a group can be megabytes) needs no repartition above it:
    // DataFusion 55 coalesces repartitioned batches by row count, not bytes.
    let (sorted, mode): (Arc<dyn ExecutionPlan>, _) = if partitions > 1 {
        let spread = Arc::new(RepartitionExec::try_new(
            input.clone(),
            Partitioning::Hash(keys, partitions),
        )?);
        (
            Arc::new(SortExec::new(ordering, spread).with_preserve_partitioning(true)),
            AggregateMode::SinglePartitioned,
        )
    } else {
        (
            Arc::new(SortExec::new(ordering, input.clone())),
            AggregateMode::Single,
        )
    };
    let single = AggregateExec::try_new(
        mode,
        group_by.clone(),
        raw.aggr_expr().to_vec(),
        raw.filter_expr().to_vec(),
        sorted,
        input.schema(),
    )?;
    // Same columns as the aggregate it replaces, or nothing changes.
    if single.schema().fields() != node.schema().fields() {
        return Ok(None);
    }
    Ok(Some(Arc::new(single)))
}
