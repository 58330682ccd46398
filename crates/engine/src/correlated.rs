//! Correlated scalar subqueries that are not aggregates, as Postgres runs them.
//!
//! DataFusion 55 decorrelates a correlated scalar subquery only when it is an aggregate:
//! `(SELECT nspname FROM pg_namespace WHERE oid = pronamespace)` (sqlsmith's and many
//! drivers' catalog queries) fails to plan, and with `LIMIT 1` it passes the checks and
//! then fails in the physical planner. This analyzer rule makes such a subquery the
//! aggregate it means: its one column through [`single_value`] (the value of the only
//! row, NULL for none, 21000 for more than one, as Postgres), or through `first_value`
//! (in the subquery's ORDER BY) under `LIMIT 1`. DataFusion then decorrelates it into an
//! outer join. Subqueries whose column itself uses the outer query are left alone.

use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Result, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::logical_plan::{FetchType, SkipType};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Expr, LogicalPlan, LogicalPlanBuilder, Signature,
    SortExpr, Subquery, Volatility,
};
use datafusion::optimizer::AnalyzerRule;

/// The message Postgres gives (mapped to 21000 in [`super::error`]).
pub const MORE_THAN_ONE_ROW: &str = "more than one row returned by a subquery used as an \
     expression (Scalar subquery returned more than one row)";

/// The rewritten subquery's column.
const VALUE: &str = "tidepool_subquery_value";

/// The analyzer rule.
#[derive(Debug, Default)]
pub struct CorrelatedScalarSubqueries;

impl AnalyzerRule for CorrelatedScalarSubqueries {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|p| {
            p.map_expressions(|e| {
                e.transform_up(|e| match e {
                    Expr::ScalarSubquery(sq) if !sq.outer_ref_columns.is_empty() => {
                        match aggregated(&sq)? {
                            Some(plan) => Ok(Transformed::yes(Expr::ScalarSubquery(Subquery {
                                subquery: Arc::new(plan),
                                ..sq
                            }))),
                            None => Ok(Transformed::no(Expr::ScalarSubquery(sq))),
                        }
                    }
                    other => Ok(Transformed::no(other)),
                })
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "tidepool_correlated_scalar_subqueries"
    }
}

/// Whether `limit` is `LIMIT 1` (no OFFSET).
fn limit_one(limit: &datafusion::logical_expr::Limit) -> Result<bool> {
    Ok(
        matches!(limit.get_fetch_type()?, FetchType::Literal(Some(1)))
            && matches!(limit.get_skip_type()?, SkipType::Literal(0)),
    )
}

/// The subquery's plan as an aggregate, when it is a projection of one column over rows
/// that are not aggregated yet (under an optional `ORDER BY ... LIMIT 1`).
fn aggregated(sq: &Subquery) -> Result<Option<LogicalPlan>> {
    // `LIMIT 1` and its ORDER BY sit above the projection.
    let mut plan = sq.subquery.as_ref();
    let mut first: Option<Vec<SortExpr>> = None;
    if let LogicalPlan::Limit(limit) = plan {
        if !limit_one(limit)? {
            return Ok(None);
        }
        plan = limit.input.as_ref();
        first = Some(Vec::new());
        if let LogicalPlan::Sort(sort) = plan {
            plan = sort.input.as_ref();
            first = Some(sort.expr.clone());
        }
    }
    let LogicalPlan::Projection(projection) = plan else {
        return Ok(None);
    };
    let [column] = projection.expr.as_slice() else {
        return Ok(None);
    };
    let uses_outer = column.exists(|e| Ok(matches!(e, Expr::OuterReferenceColumn(..))))?;
    if uses_outer || column.exists(|e| Ok(matches!(e, Expr::AggregateFunction(_))))? {
        return Ok(None);
    }
    let input = match projection.input.as_ref() {
        LogicalPlan::Aggregate(_) | LogicalPlan::Distinct(_) => return Ok(None),
        LogicalPlan::Limit(limit) if first.is_none() => {
            if !limit_one(limit)? {
                return Ok(None);
            }
            match limit.input.as_ref() {
                LogicalPlan::Sort(sort) if sort.fetch.is_none() || sort.fetch == Some(1) => {
                    first = Some(sort.expr.clone());
                    sort.input.as_ref().clone()
                }
                LogicalPlan::Sort(_) => return Ok(None),
                other => {
                    first = Some(Vec::new());
                    other.clone()
                }
            }
        }
        other => other.clone(),
    };
    // An ORDER BY above the projection names its output: order by what it computes.
    let output = sq.subquery.schema().field(0).name().clone();
    let value = column.clone().unalias();
    if let Some(order) = first.as_mut() {
        for s in order.iter_mut() {
            if let Expr::Column(c) = &s.expr
                && c.name == output
                && !input.schema().has_column(c)
            {
                s.expr = value.clone();
            }
        }
    }
    let aggregate = match first {
        Some(order) => datafusion::functions_aggregate::first_last::first_value(value, order),
        None => single_value().call(vec![value]),
    };
    // A name of its own: decorrelation joins it next to the subquery's input columns.
    let plan = LogicalPlanBuilder::from(input)
        .aggregate(Vec::<Expr>::new(), vec![aggregate.alias(VALUE)])?
        .build()?;
    Ok(Some(plan))
}

/// `single_value(x)`: `x` of the only row, NULL without rows, an error for more rows.
pub fn single_value() -> AggregateUDF {
    AggregateUDF::new_from_impl(SingleValue {
        signature: Signature::any(1, Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct SingleValue {
    signature: Signature,
}

impl AggregateUDFImpl for SingleValue {
    fn name(&self) -> &str {
        "tidepool_single_value"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        Ok(args[0].clone())
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(Single {
            value: ScalarValue::try_from(args.return_field.data_type())?,
            rows: 0,
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new(
                "value",
                args.return_field.data_type().clone(),
                true,
            )),
            Arc::new(Field::new("rows", DataType::UInt64, false)),
        ])
    }
}

#[derive(Debug)]
struct Single {
    value: ScalarValue,
    rows: u64,
}

impl Single {
    fn add(&mut self, rows: u64, value: impl FnOnce() -> Result<ScalarValue>) -> Result<()> {
        if rows == 0 {
            return Ok(());
        }
        self.rows += rows;
        if self.rows > 1 {
            return Err(DataFusionError::Execution(MORE_THAN_ONE_ROW.to_string()));
        }
        self.value = value()?;
        Ok(())
    }
}

impl Accumulator for Single {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let column = &values[0];
        self.add(column.len() as u64, || {
            ScalarValue::try_from_array(column, 0)
        })
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let (values, rows) = (&states[0], &states[1]);
        let rows = rows
            .as_any()
            .downcast_ref::<datafusion::arrow::array::UInt64Array>()
            .ok_or_else(|| DataFusionError::Internal("single_value state".into()))?;
        for i in 0..rows.len() {
            self.add(rows.value(i), || ScalarValue::try_from_array(values, i))?;
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![
            self.value.clone(),
            ScalarValue::UInt64(Some(self.rows)),
        ])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(self.value.clone())
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.value.size() - std::mem::size_of_val(&self.value)
    }
}
