//! Text read by a type's input function, as PostgreSQL does where DataFusion only casts.
//!
//! Quoted literals next to booleans. PostgreSQL reads `'t'` in `indisprimary = 't'` (psqlODBC's
//! `SQLPrimaryKeys`) or `'0'` (a bool parameter psqlODBC inlines) as a boolean, since a
//! quoted literal has no type until its context gives one. DataFusion types it as text
//! and cannot compare text with a boolean (42804 "Cannot infer common argument type").
//! An expression planner (for comparisons, which the SQL planner types as it builds a
//! select list) and an analyzer rule run before type coercion (for `IN (...)` lists and
//! comparisons built later) turn a text literal compared with a boolean (`=`, `<>`,
//! `<`..., `IS [NOT] DISTINCT FROM`, `IN (...)`) into the boolean
//! PostgreSQL's `boolin` reads: `t`, `true`, `y`, `yes`, `on`, `1` and their false
//! counterparts, any case, prefixes of the words, surrounding blanks. Other text is
//! 22P02, as in PostgreSQL.
//!
//! Text cast to `bytea` (`'\x4142'::bytea`, a text value inserted into a `bytea` column)
//! is read by `byteain` ([`tidepool_engine::bytea`]): hex or escape format, a literal at
//! planning, other values as they come. DataFusion's cast would keep the characters.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, DataFusionError, ExprSchema, Result, ScalarValue};
use datafusion::logical_expr::expr::InList;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{BinaryExpr, Expr, ExprSchemable, LogicalPlan, Operator};
use datafusion::optimizer::AnalyzerRule;

/// The analyzer rule.
#[derive(Debug, Default)]
pub struct LiteralInput;

/// The expression planner.
#[derive(Debug, Default)]
pub struct BoolComparisons;

impl ExprPlanner for BoolComparisons {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> Result<PlannerResult<RawBinaryExpr>> {
        use datafusion::sql::sqlparser::ast::BinaryOperator as B;
        let op = match expr.op {
            B::Eq => Operator::Eq,
            B::NotEq => Operator::NotEq,
            B::Lt => Operator::Lt,
            B::LtEq => Operator::LtEq,
            B::Gt => Operator::Gt,
            B::GtEq => Operator::GtEq,
            _ => return Ok(PlannerResult::Original(expr)),
        };
        let schemas = [Arc::new(schema.clone())];
        let (left, right) = match (text(&expr.left), text(&expr.right)) {
            (None, Some(s)) if boolean(&expr.left, &schemas) => (expr.left.clone(), parsed(s)?),
            (Some(s), None) if boolean(&expr.right, &schemas) => (parsed(s)?, expr.right.clone()),
            _ => return Ok(PlannerResult::Original(expr)),
        };
        Ok(PlannerResult::Planned(Expr::BinaryExpr(BinaryExpr::new(
            Box::new(left),
            op,
            Box::new(right),
        ))))
    }
}

impl AnalyzerRule for LiteralInput {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|p| {
            let schemas: Vec<Arc<DFSchema>> =
                p.inputs().iter().map(|i| i.schema().clone()).collect();
            let names = NamePreserver::new(&p);
            p.map_expressions(|e| {
                let name = names.save(&e);
                Ok(e.transform_up(|e| rewrite(e, &schemas))?
                    .update_data(|e| name.restore(e)))
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "tidepool_literal_input"
    }
}

fn rewrite(e: Expr, schemas: &[Arc<DFSchema>]) -> Result<Transformed<Expr>> {
    match e {
        Expr::BinaryExpr(b) if comparison(b.op) => {
            let (left, right) = (*b.left, *b.right);
            let (left, right) = match (text(&left), text(&right)) {
                (None, Some(s)) if boolean(&left, schemas) => (left, parsed(s)?),
                (Some(s), None) if boolean(&right, schemas) => (parsed(s)?, right),
                _ => {
                    return Ok(Transformed::no(Expr::BinaryExpr(BinaryExpr::new(
                        Box::new(left),
                        b.op,
                        Box::new(right),
                    ))));
                }
            };
            Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
                Box::new(left),
                b.op,
                Box::new(right),
            ))))
        }
        Expr::InList(l)
            if boolean(&l.expr, schemas) && l.list.iter().any(|e| text(e).is_some()) =>
        {
            let list = l
                .list
                .into_iter()
                .map(|e| match text(&e) {
                    Some(s) => parsed(s),
                    None => Ok(e),
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(Transformed::yes(Expr::InList(InList::new(
                l.expr, list, l.negated,
            ))))
        }
        Expr::Cast(c) if binary(c.field.data_type()) && textual(&c.expr, schemas) => {
            let read = match text(&c.expr) {
                Some(t) => Expr::Literal(
                    ScalarValue::Binary(Some(
                        tidepool_engine::bytea::decode(t)
                            .ok_or_else(|| tidepool_engine::bytea::invalid(t))?,
                    )),
                    None,
                ),
                None => Arc::new(tidepool_engine::bytea::udf()).call(vec![*c.expr]),
            };
            Ok(Transformed::yes(match c.field.data_type() {
                DataType::Binary => read,
                _ => Expr::Cast(datafusion::logical_expr::Cast {
                    expr: Box::new(read),
                    field: c.field,
                }),
            }))
        }
        other => Ok(Transformed::no(other)),
    }
}

fn binary(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView
    )
}

/// Whether `e` is text (a literal, or text in one of the plan's inputs).
fn textual(e: &Expr, schemas: &[Arc<DFSchema>]) -> bool {
    let is_text =
        |t: &DataType| matches!(t, DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8);
    if text(e).is_some() {
        return true;
    }
    schemas.iter().any(|s| {
        e.get_type(s.as_ref() as &dyn ExprSchema)
            .is_ok_and(|t| is_text(&t))
    })
}

fn comparison(op: Operator) -> bool {
    matches!(
        op,
        Operator::Eq
            | Operator::NotEq
            | Operator::Lt
            | Operator::LtEq
            | Operator::Gt
            | Operator::GtEq
            | Operator::IsDistinctFrom
            | Operator::IsNotDistinctFrom
    )
}

/// The text of a string literal.
fn text(e: &Expr) -> Option<&str> {
    match e {
        Expr::Literal(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::Utf8View(Some(s))
            | ScalarValue::LargeUtf8(Some(s)),
            _,
        ) => Some(s),
        _ => None,
    }
}

/// Whether `e` is boolean in one of the plan's inputs.
fn boolean(e: &Expr, schemas: &[Arc<DFSchema>]) -> bool {
    if let Expr::Literal(..) = e {
        return false;
    }
    schemas.iter().any(|s| match e {
        Expr::Column(c) => s
            .field_from_column(c)
            .is_ok_and(|f| f.data_type() == &DataType::Boolean),
        other => other
            .get_type(s.as_ref() as &dyn ExprSchema)
            .is_ok_and(|t| t == DataType::Boolean),
    })
}

/// The boolean literal `text` spells, or 22P02.
fn parsed(text: &str) -> Result<Expr> {
    match boolin(text) {
        Some(b) => Ok(Expr::Literal(ScalarValue::Boolean(Some(b)), None)),
        None => Err(DataFusionError::External(Box::new(
            tidepool_engine::EngineError::InvalidText(format!(
                "invalid input syntax for type boolean: \"{text}\""
            )),
        ))),
    }
}

/// PostgreSQL's `boolin`.
pub(crate) fn boolin(text: &str) -> Option<bool> {
    let t = text.trim().to_ascii_lowercase();
    if t.is_empty() {
        return None;
    }
    let prefix_of = |word: &str| word.starts_with(t.as_str());
    match t.as_str() {
        "1" => Some(true),
        "0" => Some(false),
        // `o` alone is ambiguous (on / off).
        "on" => Some(true),
        _ if t.len() >= 2 && prefix_of("off") => Some(false),
        _ if prefix_of("true") || prefix_of("yes") => Some(true),
        _ if prefix_of("false") || prefix_of("no") => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::boolin;

    #[test]
    fn reads_as_postgres_does() {
        for t in ["t", "TRUE", " yes ", "y", "on", "1", "tru"] {
            assert_eq!(boolin(t), Some(true), "{t}");
        }
        for f in ["f", "false", "n", "no", "off", "of", "0"] {
            assert_eq!(boolin(f), Some(false), "{f}");
        }
        for bad in ["", "o", "2", "maybe", "truex"] {
            assert_eq!(boolin(bad), None, "{bad}");
        }
    }
}
