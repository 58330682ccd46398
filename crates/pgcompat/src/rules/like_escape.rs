//! `LIKE ... ESCAPE 'c'`: DataFusion escapes with a backslash only; SQLAlchemy escapes
//! with `/`. The pattern is translated by `pg_like_escape(pattern, 'c')` at run time (so
//! bound parameters work too) and the ESCAPE clause dropped.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{Expr, Statement, Value, VisitMut, VisitorMut};
use datafusion::sql::sqlparser::parser::ParserError;

use super::template::Template;
use super::{Rule, finish};

pub(super) static LIKE_ESCAPE: Template = Template::new("pg_like_escape(__e1, __e2)");

pub(crate) struct LikeEscape;

impl Rule for LikeEscape {
    fn name(&self) -> &'static str {
        "LIKE ESCAPE"
    }

    fn rewrite(&self, statement: &mut Statement) -> Result<(), ParserError> {
        finish(statement.visit(&mut Escapes))
    }
}

struct Escapes;

impl VisitorMut for Escapes {
    type Break = ParserError;

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<ParserError> {
        if let Expr::Like {
            pattern,
            escape_char,
            ..
        }
        | Expr::ILike {
            pattern,
            escape_char,
            ..
        } = expr
            && let Some(Value::SingleQuotedString(c)) = escape_char.as_ref().map(|v| &v.value)
            && c != "\\"
        {
            let escape = Expr::Value(Value::SingleQuotedString(c.clone()).into());
            match LIKE_ESCAPE.fill(&[pattern, &escape], &[]) {
                Ok(call) => {
                    **pattern = call;
                    *escape_char = None;
                }
                Err(e) => return ControlFlow::Break(e),
            }
        }
        ControlFlow::Continue(())
    }
}

/// `pg_like_escape(pattern, escape)`: a LIKE pattern escaped with `escape` as the same
/// pattern escaped with a backslash.
pub fn like_escape_udf() -> datafusion::logical_expr::ScalarUDF {
    use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
    use datafusion::arrow::compute::cast;
    use datafusion::arrow::datatypes::DataType;
    use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
    use std::sync::Arc;
    create_udf(
        "pg_like_escape",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let patterns = cast(&arrays[0], &DataType::Utf8)?;
            let escapes = cast(&arrays[1], &DataType::Utf8)?;
            let (patterns, escapes) = (patterns.as_string::<i32>(), escapes.as_string::<i32>());
            let mut out = StringBuilder::with_capacity(patterns.len(), 64);
            for i in 0..patterns.len() {
                if patterns.is_null(i) || escapes.is_null(i) {
                    out.append_null();
                    continue;
                }
                out.append_value(translate_like(
                    patterns.value(i),
                    escapes.value(i).chars().next(),
                ));
            }
            let array: ArrayRef = Arc::new(out.finish());
            Ok(
                if args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_))) {
                    ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(
                        &array, 0,
                    )?)
                } else {
                    ColumnarValue::Array(array)
                },
            )
        }),
    )
}

pub(super) fn translate_like(pattern: &str, escape: Option<char>) -> String {
    let mut out = String::with_capacity(pattern.len() + 4);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if Some(c) == escape {
            match chars.next() {
                Some(x @ ('%' | '_' | '\\')) => {
                    out.push('\\');
                    out.push(x);
                }
                Some(x) => out.push(x),
                None => {}
            }
        } else if c == '\\' {
            out.push_str("\\\\");
        } else {
            out.push(c);
        }
    }
    out
}
