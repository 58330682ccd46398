//! Integer `+`, `-` and `*` that fail on overflow, as PostgreSQL's do (22003, "integer out
//! of range"). DataFusion's physical planner builds these operators wrapping (its
//! `BinaryExpr` has a checked mode but no setting turns it on), so `9223372036854775807
//! + 1` answered `-9223372036854775808` and `300::smallint * 300::smallint` answered
//! 24464: silent wrong results. This analyzer rule runs after type coercion and replaces
//! each such operator whose operands are integers by a function computing it with arrow's
//! checked kernels. The function names itself as the operator did (`a + b`), so column
//! names and plans' schemas do not change; constant folding still evaluates it (an
//! overflowing constant fails when the statement runs). Left as DataFusion has them:
//! `sum` over bigint wraps (PostgreSQL's returns numeric); an operator whose operand is an
//! untyped parameter (`$1 + 1`) is typed only after this rule has run.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Datum};
use datafusion::arrow::compute::kernels::numeric;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::error::ArrowError;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::utils::merge_schema;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, ExprSchemable, LogicalPlan, Operator, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;

/// The analyzer rule.
#[derive(Debug, Default)]
pub struct CheckedIntegerArithmetic;

impl AnalyzerRule for CheckedIntegerArithmetic {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(rewrite_plan)
            .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "tidepool_checked_integer_arithmetic"
    }
}

fn rewrite_plan(plan: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
    if !plan.expressions().iter().any(has_arithmetic) {
        return Ok(Transformed::no(plan));
    }
    // The columns the node's expressions can name: its inputs', a scan's own table's.
    let mut schema = merge_schema(&plan.inputs());
    if let LogicalPlan::TableScan(scan) = &plan {
        schema.merge(&DFSchema::try_from_qualified_schema(
            scan.table_name.clone(),
            &scan.source.schema(),
        )?);
    }
    let names = NamePreserver::new(&plan);
    plan.map_expressions(|e| {
        let name = names.save(&e);
        e.transform_up(|e| checked(e, &schema))
            .map(|t| t.update_data(|e| name.restore(e)))
    })
}

fn has_arithmetic(e: &Expr) -> bool {
    e.exists(|e| Ok(matches!(e, Expr::BinaryExpr(b) if Op::of(b.op).is_some())))
        .unwrap_or(false)
}

/// `e` computed with overflow checks when it is an integer `+`, `-` or `*`.
fn checked(e: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let Expr::BinaryExpr(b) = &e else {
        return Ok(Transformed::no(e));
    };
    let Some(op) = Op::of(b.op) else {
        return Ok(Transformed::no(e));
    };
    // Operands whose types cannot be told here (columns of nodes this rule does not know
    // the inputs of) are left to DataFusion.
    let (Ok(l), Ok(r)) = (b.left.get_type(schema), b.right.get_type(schema)) else {
        return Ok(Transformed::no(e));
    };
    if !(l.is_integer() && l == r) {
        return Ok(Transformed::no(e));
    }
    let Expr::BinaryExpr(BinaryExpr { left, right, .. }) = e else {
        unreachable!("matched above")
    };
    Ok(Transformed::yes(Expr::ScalarFunction(
        ScalarFunction::new_udf(Arc::new(op.udf()), vec![*left, *right]),
    )))
}

/// The operators checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Op {
    Plus,
    Minus,
    Multiply,
}

impl Op {
    fn of(op: Operator) -> Option<Op> {
        match op {
            Operator::Plus => Some(Op::Plus),
            Operator::Minus => Some(Op::Minus),
            Operator::Multiply => Some(Op::Multiply),
            _ => None,
        }
    }

    fn operator(self) -> Operator {
        match self {
            Op::Plus => Operator::Plus,
            Op::Minus => Operator::Minus,
            Op::Multiply => Operator::Multiply,
        }
    }

    fn udf(self) -> ScalarUDF {
        ScalarUDF::new_from_impl(Checked {
            op: self,
            signature: Signature::any(2, Volatility::Immutable),
        })
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Checked {
    op: Op,
    signature: Signature,
}

impl ScalarUDFImpl for Checked {
    fn name(&self) -> &str {
        match self.op {
            Op::Plus => "tidepool_checked_add",
            Op::Minus => "tidepool_checked_sub",
            Op::Multiply => "tidepool_checked_mul",
        }
    }

    fn display_name(&self, args: &[Expr]) -> Result<String> {
        Ok(format!("{} {} {}", args[0], self.op.operator(), args[1]))
    }

    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        Ok(format!(
            "{} {} {}",
            args[0].schema_name(),
            self.op.operator(),
            args[1].schema_name()
        ))
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        Ok(args[0].clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [l, r] = args.args.as_slice() else {
            return Err(DataFusionError::Internal(format!(
                "{} takes two arguments",
                self.name()
            )));
        };
        let scalars = matches!((l, r), (ColumnarValue::Scalar(_), ColumnarValue::Scalar(_)));
        let (l, r) = (datum(l)?, datum(r)?);
        let computed = match self.op {
            Op::Plus => numeric::add(l.as_ref(), r.as_ref()),
            Op::Minus => numeric::sub(l.as_ref(), r.as_ref()),
            Op::Multiply => numeric::mul(l.as_ref(), r.as_ref()),
        };
        let result: ArrayRef = computed.map_err(|e| match e {
            ArrowError::ArithmeticOverflow(_) => DataFusionError::ArrowError(
                Box::new(ArrowError::ArithmeticOverflow(
                    out_of_range(args.return_field.data_type()).to_string(),
                )),
                None,
            ),
            other => other.into(),
        })?;
        if scalars {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                &result, 0,
            )?))
        } else {
            Ok(ColumnarValue::Array(result))
        }
    }
}

fn datum(v: &ColumnarValue) -> Result<Box<dyn Datum>> {
    Ok(match v {
        ColumnarValue::Array(a) => Box::new(a.clone()),
        ColumnarValue::Scalar(s) => Box::new(s.to_scalar()?),
    })
}

/// PostgreSQL's words for a result that does not fit `t`.
pub fn out_of_range(t: &DataType) -> &'static str {
    match t {
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => "smallint out of range",
        DataType::Int32 | DataType::UInt16 => "integer out of range",
        _ => "bigint out of range",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    async fn run(sql: &str) -> Result<Vec<datafusion::arrow::record_batch::RecordBatch>> {
        let ctx = SessionContext::new();
        ctx.add_analyzer_rule(Arc::new(CheckedIntegerArithmetic));
        ctx.sql(sql).await?.collect().await
    }

    #[tokio::test]
    async fn overflow_is_an_error_not_a_wrapped_value() {
        for (sql, words) in [
            ("SELECT 9223372036854775807 + 1", "bigint out of range"),
            (
                "SELECT a * a FROM (VALUES (CAST(300 AS SMALLINT))) AS v(a)",
                "smallint out of range",
            ),
            (
                "SELECT a - CAST(2 AS INT) FROM (VALUES (CAST(-2147483647 AS INT))) AS v(a)",
                "integer out of range",
            ),
        ] {
            let e = run(sql).await.expect_err(sql).to_string();
            assert!(e.contains(words), "{sql}: {e}");
        }
    }

    #[tokio::test]
    async fn results_and_names_are_the_operators() {
        let batches =
            run("SELECT a + 1, a * 2 - a FROM (VALUES (CAST(20 AS INT)), (NULL)) AS v(a)")
                .await
                .unwrap();
        let schema = batches[0].schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["v.a + Int64(1)", "v.a * Int64(2) - v.a"]);
        let shown = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        assert!(shown.contains("| 21 "), "{shown}");
        assert!(shown.contains("| 20 "), "{shown}");
        // NULL operands give NULL, as before.
        assert_eq!(
            batches
                .iter()
                .map(|b| b.column(0).null_count())
                .sum::<usize>(),
            1
        );
    }
}
