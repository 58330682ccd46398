//! Bound parameters of a procedure read as a table: pgjdbc turns `{call gold.p(?)}` into
//! `select * from gold.p($1) as result`. A table function runs while the statement is
//! planned, before parameters exist, so the execution inlines the bound values into the
//! call's arguments as literals (typed by the Bind, never spliced as text), and a plan
//! made without values (Describe of the prepared statement) sees a table with the
//! procedure's columns that cannot be read.

use std::ops::ControlFlow;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session as CatalogSession, TableProvider};
use datafusion::common::{ParamValues, ScalarValue, plan_err};
use datafusion::datasource::TableType;
use datafusion::error::Result;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::sql::sqlparser::ast::{
    self, FunctionArg, FunctionArgExpr, Statement, TableFactor, Value, VisitMut, VisitorMut,
};

/// Replaces `$n` in the arguments of table functions by the bound values.
pub fn inline(stmt: &mut Statement, params: &ParamValues) {
    let _ = stmt.visit(&mut Inline { params });
}

struct Inline<'a> {
    params: &'a ParamValues,
}

impl VisitorMut for Inline<'_> {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table {
            args: Some(args), ..
        } = factor
        {
            for arg in &mut args.args {
                let e = match arg {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e))
                    | FunctionArg::Named {
                        arg: FunctionArgExpr::Expr(e),
                        ..
                    } => e,
                    _ => continue,
                };
                if let ast::Expr::Value(v) = e
                    && let Value::Placeholder(id) = &v.value
                    && let Ok(value) = self.params.get_placeholders_with_values(id)
                    && let Some(literal) = literal(value.value())
                {
                    *e = literal;
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// The highest `$n` in the arguments of table functions (0 for none).
pub fn count(stmt: &Statement) -> usize {
    use datafusion::sql::sqlparser::ast::{Visit, Visitor};
    struct Highest(usize);
    impl Visitor for Highest {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
            if let TableFactor::Table {
                args: Some(args), ..
            } = factor
            {
                for arg in &args.args {
                    if let FunctionArg::Unnamed(FunctionArgExpr::Expr(ast::Expr::Value(v)))
                    | FunctionArg::Named {
                        arg: FunctionArgExpr::Expr(ast::Expr::Value(v)),
                        ..
                    } = arg
                        && let Value::Placeholder(id) = &v.value
                        && let Some(n) = id.strip_prefix('$').and_then(|n| n.parse().ok())
                    {
                        self.0 = self.0.max(n);
                    }
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut highest = Highest(0);
    let _ = stmt.visit(&mut highest);
    highest.0
}

/// A SQL literal of `value`, cast to its type where the literal alone would not carry
/// it (dates, timestamps, decimals).
fn literal(value: &ScalarValue) -> Option<ast::Expr> {
    if value.is_null() {
        return Some(ast::Expr::value(Value::Null));
    }
    let text = value.to_string();
    Some(match value {
        ScalarValue::Boolean(Some(b)) => ast::Expr::value(Value::Boolean(*b)),
        ScalarValue::Int8(_)
        | ScalarValue::Int16(_)
        | ScalarValue::Int32(_)
        | ScalarValue::Int64(_)
        | ScalarValue::UInt8(_)
        | ScalarValue::UInt16(_)
        | ScalarValue::UInt32(_)
        | ScalarValue::UInt64(_)
        | ScalarValue::Float32(_)
        | ScalarValue::Float64(_) => ast::Expr::value(Value::Number(text, false)),
        ScalarValue::Utf8(Some(s))
        | ScalarValue::Utf8View(Some(s))
        | ScalarValue::LargeUtf8(Some(s)) => ast::Expr::value(Value::SingleQuotedString(s.clone())),
        ScalarValue::Date32(_) => cast(text, ast::DataType::Date),
        ScalarValue::Decimal128(..) => {
            cast(text, ast::DataType::Numeric(ast::ExactNumberInfo::None))
        }
        ScalarValue::TimestampMicrosecond(_, None)
        | ScalarValue::TimestampNanosecond(_, None)
        | ScalarValue::TimestampMillisecond(_, None)
        | ScalarValue::TimestampSecond(_, None) => cast(
            text,
            ast::DataType::Timestamp(None, ast::TimezoneInfo::None),
        ),
        _ => return None,
    })
}

fn cast(text: String, data_type: ast::DataType) -> ast::Expr {
    ast::Expr::Cast {
        kind: ast::CastKind::Cast,
        expr: Box::new(ast::Expr::value(Value::SingleQuotedString(text))),
        data_type,
        array: false,
        format: None,
    }
}

/// Whether a call's argument is a parameter not bound yet.
pub(super) fn unbound(e: &Expr) -> bool {
    matches!(e, Expr::Placeholder(_))
}

/// The procedure's result while its parameters are not bound: the columns, no rows to
/// read.
#[derive(Debug)]
pub(super) struct Unbound {
    pub schema: SchemaRef,
}

#[async_trait]
impl TableProvider for Unbound {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn CatalogSession,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan_err!("the procedure's parameters are not bound")
    }
}
