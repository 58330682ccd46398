//! `regproc` values as PostgreSQL shows them. The regproc columns of `pg_type`
//! (`typreceive`, `typinput`...) hold function oids, so drivers can join them with
//! `pg_proc.oid` (Npgsql) and compare them with 0 (`typreceive != 0`, ADBC); PostgreSQL
//! prints them as the function's name, and drivers read the name (ADBC's PostgreSQL
//! driver maps `int8recv` to int64: with `2408` every column came back as opaque bytes).
//! The columns are `Int32` marked `pg.oid_alias = regproc` ([`pg_types`]); this analyzer
//! rule, run after type coercion:
//! - casts of a regproc column to text (`typreceive::TEXT != 'array_recv'`) give the name;
//! - a regproc column compared with a quoted name (`typreceive = 'array_recv'`) compares
//!   with that function's oid, as PostgreSQL reads the literal as a regproc;
//! - the statement's result shows regproc columns as names (`-` for 0), as PostgreSQL's
//!   text output does.
//!
//! [`pg_types`]: crate::pg_types

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use datafusion::arrow::array::{Array, AsArray, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Int32Type};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, ExprSchema, Result, ScalarValue};
use datafusion::logical_expr::expr::Cast;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, ExprSchemable, LogicalPlan, LogicalPlanBuilder, Operator,
    ScalarUDF, Volatility, create_udf,
};
use datafusion::optimizer::AnalyzerRule;

/// The metadata key and value marking a regproc column (arrow-pg's oid-alias contract).
pub(crate) const KEY: &str = "pg.oid_alias";
pub(crate) const KIND: &str = "regproc";

/// The function name of an oid.
const NAME_FUNCTION: &str = "pg_regproc_name";

/// Function names by oid and oids by name, from the built-in `pg_proc`.
#[derive(Debug, Default)]
pub(crate) struct Procs {
    pub names: HashMap<i32, String>,
    pub oids: HashMap<String, i32>,
}

/// Built once, with `pg_type` (the only table with regproc columns).
pub(crate) static PROCS: OnceLock<Procs> = OnceLock::new();

/// `pg_regproc_name(oid)`: the function's name, `-` for 0, the number for an unknown oid.
pub(crate) fn name_udf() -> ScalarUDF {
    create_udf(
        NAME_FUNCTION,
        vec![DataType::Int32],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let procs = PROCS.get();
            let name = |oid: i32| match (oid, procs.and_then(|p| p.names.get(&oid))) {
                (0, _) => "-".to_string(),
                (_, Some(n)) => n.clone(),
                (_, None) => oid.to_string(),
            };
            match &args[0] {
                ColumnarValue::Scalar(ScalarValue::Int32(v)) => {
                    Ok(ColumnarValue::Scalar(ScalarValue::Utf8(v.map(name))))
                }
                ColumnarValue::Scalar(other) => {
                    let v = other.cast_to(&DataType::Int32)?;
                    let ScalarValue::Int32(v) = v else {
                        unreachable!("cast to Int32")
                    };
                    Ok(ColumnarValue::Scalar(ScalarValue::Utf8(v.map(name))))
                }
                ColumnarValue::Array(a) => {
                    let a = datafusion::arrow::compute::cast(a, &DataType::Int32)?;
                    let a = a.as_primitive::<Int32Type>();
                    let mut out = StringBuilder::with_capacity(a.len(), 8 * a.len());
                    for i in 0..a.len() {
                        if a.is_null(i) {
                            out.append_null();
                        } else {
                            out.append_value(name(a.value(i)));
                        }
                    }
                    Ok(ColumnarValue::Array(Arc::new(out.finish())))
                }
            }
        }),
    )
}

/// The analyzer rule.
#[derive(Debug, Default)]
pub struct RegprocNames;

impl AnalyzerRule for RegprocNames {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        if PROCS.get().is_none() {
            // No pg_type has been read: no regproc column anywhere.
            return Ok(plan);
        }
        let plan = plan
            .transform_up_with_subqueries(|p| {
                let schemas: Vec<Arc<DFSchema>> =
                    p.inputs().iter().map(|i| i.schema().clone()).collect();
                p.map_expressions(|e| e.transform_up(|e| rewrite(e, &schemas)))
            })?
            .data;
        shown_as_names(plan)
    }

    fn name(&self) -> &str {
        "tidepool_regproc_names"
    }
}

fn rewrite(e: Expr, schemas: &[Arc<DFSchema>]) -> Result<Transformed<Expr>> {
    match e {
        Expr::Cast(Cast { expr, field })
            if matches!(
                field.data_type(),
                DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
            ) && regproc(&expr, schemas) =>
        {
            let name =
                Expr::ScalarFunction(datafusion::logical_expr::expr::ScalarFunction::new_udf(
                    Arc::new(name_udf()),
                    vec![*expr],
                ));
            Ok(Transformed::yes(match field.data_type() {
                DataType::Utf8 => name,
                other => name.cast_to(other, schemas[0].as_ref())?,
            }))
        }
        Expr::BinaryExpr(b) if matches!(b.op, Operator::Eq | Operator::NotEq) => {
            let oid = |e: &Expr| -> Option<Expr> {
                let text = match e {
                    Expr::Literal(
                        ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)),
                        _,
                    ) => s,
                    Expr::Cast(Cast { expr, .. }) => match expr.as_ref() {
                        Expr::Literal(
                            ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)),
                            _,
                        ) => s,
                        _ => return None,
                    },
                    _ => return None,
                };
                let name = text.strip_prefix("pg_catalog.").unwrap_or(text);
                let oid = if name == "-" {
                    0
                } else {
                    *PROCS.get()?.oids.get(name)?
                };
                Some(Expr::Literal(ScalarValue::Int32(Some(oid)), None))
            };
            let left_regproc = regproc(&b.left, schemas);
            let right_regproc = regproc(&b.right, schemas);
            let (left, right) = match (left_regproc, right_regproc) {
                (true, false) => match oid(&b.right) {
                    Some(o) => (*b.left, o),
                    None => return Ok(Transformed::no(Expr::BinaryExpr(b))),
                },
                (false, true) => match oid(&b.left) {
                    Some(o) => (o, *b.right),
                    None => return Ok(Transformed::no(Expr::BinaryExpr(b))),
                },
                _ => return Ok(Transformed::no(Expr::BinaryExpr(b))),
            };
            Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
                Box::new(strip_text_cast(left)),
                b.op,
                Box::new(strip_text_cast(right)),
            ))))
        }
        other => Ok(Transformed::no(other)),
    }
}

/// Type coercion compared `int = text` as text: the regproc side loses that cast.
fn strip_text_cast(e: Expr) -> Expr {
    match e {
        Expr::Cast(Cast { expr, field })
            if matches!(field.data_type(), DataType::Utf8 | DataType::Utf8View)
                && matches!(expr.as_ref(), Expr::Column(_)) =>
        {
            *expr
        }
        other => other,
    }
}

/// Whether `e` is a regproc column (possibly cast to text by type coercion).
fn regproc(e: &Expr, schemas: &[Arc<DFSchema>]) -> bool {
    let e = match e {
        Expr::Cast(Cast { expr, .. }) if matches!(expr.as_ref(), Expr::Column(_)) => expr.as_ref(),
        other => other,
    };
    let Expr::Column(c) = e else {
        return false;
    };
    schemas.iter().any(|s| {
        s.field_from_column(c)
            .is_ok_and(|f| f.metadata().get(KEY).is_some_and(|k| k == KIND))
    })
}

/// The plan with its regproc result columns shown as names.
fn shown_as_names(plan: LogicalPlan) -> Result<LogicalPlan> {
    // Only a query's result; statements (INSERT ... SELECT, DDL) keep their own shape.
    if matches!(
        plan,
        LogicalPlan::Dml(_) | LogicalPlan::Ddl(_) | LogicalPlan::Explain(_) | LogicalPlan::Copy(_)
    ) {
        return Ok(plan);
    }
    let schema = plan.schema().clone();
    // A regproc column cast to text (`typreceive::regproc::text`) keeps the marking but
    // already holds the name.
    let is_oid = |f: &datafusion::arrow::datatypes::Field| {
        f.metadata().get(KEY).is_some_and(|k| k == KIND) && f.data_type().is_integer()
    };
    let any = schema.fields().iter().any(|f| is_oid(f));
    if !any {
        return Ok(plan);
    }
    let exprs: Vec<Expr> = schema
        .iter()
        .map(|(q, f)| {
            let col = Expr::Column(datafusion::common::Column::new(q.cloned(), f.name()));
            if is_oid(f) {
                Expr::ScalarFunction(datafusion::logical_expr::expr::ScalarFunction::new_udf(
                    Arc::new(name_udf()),
                    vec![col],
                ))
                .alias_qualified(q.cloned(), f.name())
            } else {
                col
            }
        })
        .collect();
    LogicalPlanBuilder::from(plan).project(exprs)?.build()
}
