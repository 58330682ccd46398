//! PostgreSQL array literals next to arrays: in `polroles <> '{0}'` Postgres reads the
//! quoted text as an array of the other side's type. DataFusion types the literal as text
//! and cannot compare it with a list, so this analyzer rule, run before type coercion,
//! turns a text literal compared (`=`, `<>`, `IS [NOT] DISTINCT FROM`) with a list column
//! into the list it spells (`{a,"b c",NULL}`), each element cast to the column's element
//! type. The same holds for the array of `x = ANY('{a,b}')` (DataFusion's `array_has`),
//! where the text is often a bound text parameter.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, ExprSchema, Result, ScalarValue};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{BinaryExpr, Expr, ExprSchemable, LogicalPlan, Operator};
use datafusion::optimizer::AnalyzerRule;

/// The analyzer rule.
#[derive(Debug, Default)]
pub struct ArrayLiterals;

impl AnalyzerRule for ArrayLiterals {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|p| {
            let schemas: Vec<Arc<DFSchema>> =
                p.inputs().iter().map(|i| i.schema().clone()).collect();
            // Output names stay as written: parents refer to them.
            let names = NamePreserver::new(&p);
            p.map_expressions(|e| {
                let name = names.save(&e);
                Ok(e.transform_up(|e| match e {
                    Expr::BinaryExpr(b) if comparison(b.op) => literal_as_list(b, &schemas),
                    Expr::ScalarFunction(f) if f.name() == "array_has" => {
                        haystack_as_list(f, &schemas)
                    }
                    other => Ok(Transformed::no(other)),
                })?
                .update_data(|e| name.restore(e)))
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "tidepool_array_literals"
    }
}

fn comparison(op: Operator) -> bool {
    matches!(
        op,
        Operator::Eq | Operator::NotEq | Operator::IsDistinctFrom | Operator::IsNotDistinctFrom
    )
}

/// `x = ANY('{a,b}')` (planned as `array_has('{a,b}', x)`, the text often a bound
/// parameter: pgcli's and ADBC's `relkind = ANY($1)`): the text as a list of `x`'s type.
fn haystack_as_list(
    f: datafusion::logical_expr::expr::ScalarFunction,
    schemas: &[Arc<DFSchema>],
) -> Result<Transformed<Expr>> {
    let needle_type = f.args.get(1).and_then(|needle| {
        schemas
            .iter()
            .find_map(|s| needle.get_type(s.as_ref() as &dyn ExprSchema).ok())
    });
    let text = match f.args.first() {
        Some(Expr::Literal(ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)), _)) => {
            s.clone()
        }
        _ => return Ok(Transformed::no(Expr::ScalarFunction(f))),
    };
    let Some(element) = needle_type.filter(|t| !matches!(t, DataType::Null)) else {
        return Ok(Transformed::no(Expr::ScalarFunction(f)));
    };
    let mut args = f.args;
    args[0] = list(&text, &element)?;
    Ok(Transformed::yes(Expr::ScalarFunction(
        datafusion::logical_expr::expr::ScalarFunction::new_udf(f.func, args),
    )))
}

fn literal_as_list(b: BinaryExpr, schemas: &[Arc<DFSchema>]) -> Result<Transformed<Expr>> {
    let element = |e: &Expr| match e {
        Expr::Column(c) => schemas.iter().find_map(|s| {
            s.field_from_column(c)
                .ok()
                .and_then(|f| match f.data_type() {
                    DataType::List(item) | DataType::LargeList(item) => {
                        Some(item.data_type().clone())
                    }
                    _ => None,
                })
        }),
        _ => None,
    };
    let text = |e: &Expr| match e {
        Expr::Literal(ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)), _) => {
            Some(s.clone())
        }
        _ => None,
    };
    let (left, right) = match (
        element(&b.left),
        text(&b.right),
        text(&b.left),
        element(&b.right),
    ) {
        (Some(t), Some(s), _, _) => (*b.left, list(&s, &t)?),
        (_, _, Some(s), Some(t)) => (list(&s, &t)?, *b.right),
        _ => return Ok(Transformed::no(Expr::BinaryExpr(b))),
    };
    Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
        Box::new(left),
        b.op,
        Box::new(right),
    ))))
}

/// The list literal `{a,b}` spells, elements cast to `element`.
fn list(text: &str, element: &DataType) -> Result<Expr> {
    let values = elements(text)
        .into_iter()
        .map(|v| match v {
            Some(v) => ScalarValue::Utf8(Some(v)).cast_to(element),
            None => ScalarValue::try_from(element),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Expr::Literal(
        ScalarValue::List(ScalarValue::new_list_nullable(&values, element)),
        None,
    ))
}

/// The elements of a one-dimensional array literal (`NULL` unquoted is NULL).
fn elements(text: &str) -> Vec<Option<String>> {
    let inner = text.trim().trim_start_matches('{').trim_end_matches('}');
    if inner.trim().is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut was_quoted, mut escaped) = (false, false, false);
    for c in inner.chars() {
        match c {
            _ if escaped => {
                cur.push(c);
                escaped = false;
            }
            '\\' => escaped = true,
            // Whitespace around a quoted element is not part of it.
            c if !quoted && c.is_whitespace() && (was_quoted || cur.is_empty()) => {}
            '"' => {
                quoted = !quoted;
                was_quoted = true;
            }
            ',' if !quoted => {
                out.push(element(&cur, was_quoted));
                cur.clear();
                was_quoted = false;
            }
            _ => cur.push(c),
        }
    }
    out.push(element(&cur, was_quoted));
    out
}

fn element(raw: &str, quoted: bool) -> Option<String> {
    let v = if quoted { raw } else { raw.trim() };
    (quoted || !v.eq_ignore_ascii_case("null")).then(|| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_text_elements() {
        assert_eq!(elements("{0}"), vec![Some("0".to_string())]);
        assert_eq!(elements("{}"), Vec::<Option<String>>::new());
        assert_eq!(
            elements(r#"{a, "b,c" ,NULL,"NULL",d\"e}"#),
            vec![
                Some("a".into()),
                Some("b,c".into()),
                None,
                Some("NULL".into()),
                Some("d\"e".into())
            ]
        );
    }
}
