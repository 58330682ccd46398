//! A scalar subquery that returns no row is NULL, whatever its column. DataFusion 55 takes
//! the subquery's nullability from its column (apache/datafusion#24513, fixed after 55),
//! so `SELECT (SELECT id FROM t WHERE false)` over a NOT NULL `id` fails with "declared as
//! non-nullable but contains null values" and `(...) IS NULL` folds to false. This analyzer
//! rule projects each such subquery's column through [`as_nullable`], an identity
//! function whose result is nullable, so every later rule and the physical plan see the
//! truth (correlated subqueries are left alone: DataFusion decorrelates them into outer
//! joins, whose columns are nullable). Remove when DataFusion carries the fix.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, Result};
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlan, LogicalPlanBuilder, ReturnFieldArgs, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, Subquery, Volatility,
};
use datafusion::optimizer::AnalyzerRule;

/// The analyzer rule.
#[derive(Debug, Default)]
pub struct NullableScalarSubqueries;

impl AnalyzerRule for NullableScalarSubqueries {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|p| {
            p.map_expressions(|e| {
                e.transform_up(|e| match e {
                    // Correlated ones become outer joins, which DataFusion types right.
                    Expr::ScalarSubquery(sq)
                        if sq.outer_ref_columns.is_empty()
                            && !sq.subquery.schema().field(0).is_nullable() =>
                    {
                        Ok(Transformed::yes(Expr::ScalarSubquery(nullable(sq)?)))
                    }
                    other => Ok(Transformed::no(other)),
                })
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "tidepool_nullable_scalar_subqueries"
    }
}

fn nullable(sq: Subquery) -> Result<Subquery> {
    let (qualifier, field) = sq.subquery.schema().qualified_field(0);
    let column = Expr::Column(Column::new(qualifier.cloned(), field.name()));
    let name = field.name().clone();
    let plan = LogicalPlanBuilder::from(Arc::unwrap_or_clone(sq.subquery))
        .project(vec![as_nullable().call(vec![column]).alias(name)])?
        .build()?;
    Ok(Subquery {
        subquery: Arc::new(plan),
        ..sq
    })
}

/// `as_nullable(x)`: `x`, typed nullable. Volatile, so constant folding keeps it.
pub fn as_nullable() -> ScalarUDF {
    ScalarUDF::new_from_impl(AsNullable {
        signature: Signature::any(1, Volatility::Volatile),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct AsNullable {
    signature: Signature,
}

impl ScalarUDFImpl for AsNullable {
    fn name(&self) -> &str {
        "tidepool_as_nullable"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        Ok(args[0].clone())
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let input = &args.arg_fields[0];
        Ok(Arc::new(Field::new(
            self.name(),
            input.data_type().clone(),
            true,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(args.args[0].clone())
    }
}
