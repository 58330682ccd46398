//! `interval * number`, `number * interval` and `interval / number`, as PostgreSQL computes
//! them (`interval_mul`, `interval_div`). DataFusion 55 has no such operators ("Cannot get
//! result type for temporal operation Interval(MonthDayNano) * Int64"), and dbt-postgres'
//! `dateadd` renders `date + ((interval '1 day') * (n))`, so every `dateadd` (and
//! dbt_utils' `date_spine`) failed. An expression planner turns the operator into the
//! function `interval_mul(interval, float8)` before types are coerced.
//!
//! PostgreSQL's rule: months are multiplied and truncated, the fraction of a month becomes
//! days at 30 days a month; days likewise, their fraction becoming time; time is
//! multiplied and rounded to the microsecond.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Float64Array, IntervalMonthDayNanoArray};
use datafusion::arrow::datatypes::{DataType, IntervalMonthDayNano, IntervalUnit};
use datafusion::common::{DFSchema, DataFusionError, Result};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility, cast,
};

/// The expression planner.
#[derive(Debug, Default)]
pub struct IntervalArithmetic;

impl ExprPlanner for IntervalArithmetic {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> Result<PlannerResult<RawBinaryExpr>> {
        use datafusion::sql::sqlparser::ast::BinaryOperator as B;
        if !matches!(expr.op, B::Multiply | B::Divide) {
            return Ok(PlannerResult::Original(expr));
        }
        let (Ok(lt), Ok(rt)) = (expr.left.get_type(schema), expr.right.get_type(schema)) else {
            return Ok(PlannerResult::Original(expr));
        };
        let (interval, factor) = match (&lt, &rt, &expr.op) {
            (DataType::Interval(_), n, _) if n.is_numeric() => (&expr.left, &expr.right),
            (n, DataType::Interval(_), B::Multiply) if n.is_numeric() => (&expr.right, &expr.left),
            _ => return Ok(PlannerResult::Original(expr)),
        };
        let mut factor = cast(factor.clone(), DataType::Float64);
        if expr.op == B::Divide {
            factor = Expr::ScalarFunction(ScalarFunction::new_udf(
                Arc::new(ScalarUDF::from(Reciprocal::new())),
                vec![factor],
            ));
        }
        let interval = cast(
            interval.clone(),
            DataType::Interval(IntervalUnit::MonthDayNano),
        );
        Ok(PlannerResult::Planned(Expr::ScalarFunction(
            ScalarFunction::new_udf(Arc::new(udf()), vec![interval, factor]),
        )))
    }
}

/// `interval_mul(interval, float8)`.
pub fn udf() -> ScalarUDF {
    ScalarUDF::from(IntervalMul::new())
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct IntervalMul {
    signature: Signature,
}

impl IntervalMul {
    fn new() -> Self {
        IntervalMul {
            signature: Signature::exact(
                vec![
                    DataType::Interval(IntervalUnit::MonthDayNano),
                    DataType::Float64,
                ],
                Volatility::Immutable,
            ),
        }
    }
}

/// `interval` times `f`, as PostgreSQL's `interval_mul`; `None` when it does not fit.
fn multiply(i: IntervalMonthDayNano, f: f64) -> Option<IntervalMonthDayNano> {
    const NANOS_PER_DAY: f64 = 86_400e9;
    let months = i.months as f64 * f;
    let whole_months = months.trunc();
    let days = i.days as f64 * f + (months - whole_months) * 30.0;
    let whole_days = days.trunc();
    let nanos = i.nanoseconds as f64 * f + (days - whole_days) * NANOS_PER_DAY;
    // Rounded to the microsecond, as PostgreSQL keeps intervals.
    let nanos = (nanos / 1000.0).round() * 1000.0;
    let fits = |v: f64, lo: f64, hi: f64| v.is_finite() && v >= lo && v <= hi;
    if !fits(whole_months, i32::MIN as f64, i32::MAX as f64)
        || !fits(whole_days, i32::MIN as f64, i32::MAX as f64)
        || !fits(nanos, i64::MIN as f64, i64::MAX as f64)
    {
        return None;
    }
    Some(IntervalMonthDayNano::new(
        whole_months as i32,
        whole_days as i32,
        nanos as i64,
    ))
}

impl ScalarUDFImpl for IntervalMul {
    fn name(&self) -> &str {
        "interval_mul"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Interval(IntervalUnit::MonthDayNano))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let intervals = arrays[0]
            .as_any()
            .downcast_ref::<IntervalMonthDayNanoArray>()
            .ok_or_else(|| DataFusionError::Internal("interval_mul: not an interval".into()))?;
        let factors = arrays[1]
            .as_any()
            .downcast_ref::<Float64Array>()
            .ok_or_else(|| DataFusionError::Internal("interval_mul: not a float8".into()))?;
        let mut out = Vec::with_capacity(n);
        for row in 0..intervals.len() {
            if intervals.is_null(row) || factors.is_null(row) {
                out.push(None);
                continue;
            }
            let v = multiply(intervals.value(row), factors.value(row))
                .ok_or_else(|| DataFusionError::External("interval out of range".into()))?;
            out.push(Some(v));
        }
        let array: ArrayRef = Arc::new(IntervalMonthDayNanoArray::from(out));
        Ok(ColumnarValue::Array(array))
    }
}

/// `1 / f` for `interval / f`; dividing by zero is 22012 as in PostgreSQL.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Reciprocal {
    signature: Signature,
}

impl Reciprocal {
    fn new() -> Self {
        Reciprocal {
            signature: Signature::exact(vec![DataType::Float64], Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for Reciprocal {
    fn name(&self) -> &str {
        "interval_divisor"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let f = arrays[0]
            .as_any()
            .downcast_ref::<Float64Array>()
            .ok_or_else(|| DataFusionError::Internal("interval_divisor: not a float8".into()))?;
        let mut out = Vec::with_capacity(f.len());
        for row in 0..f.len() {
            if f.is_null(row) {
                out.push(None);
            } else if f.value(row) == 0.0 {
                return Err(DataFusionError::External("division by zero".into()));
            } else {
                out.push(Some(1.0 / f.value(row)));
            }
        }
        Ok(ColumnarValue::Array(Arc::new(Float64Array::from(out))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiplies_as_postgresql() {
        let i = |m, d, us: i64| IntervalMonthDayNano::new(m, d, us * 1000);
        // '1 day' * 3 = 3 days; '1 month' * 1.5 = 1 mon 15 days; '1 day' * 1.5 = 1 day 12:00.
        assert_eq!(multiply(i(0, 1, 0), 3.0), Some(i(0, 3, 0)));
        assert_eq!(multiply(i(1, 0, 0), 1.5), Some(i(1, 15, 0)));
        assert_eq!(multiply(i(0, 1, 0), 1.5), Some(i(0, 1, 43_200_000_000)));
        assert_eq!(multiply(i(0, 1, 0), -2.0), Some(i(0, -2, 0)));
        assert_eq!(multiply(i(0, 1, 0), f64::INFINITY), None);
    }
}
