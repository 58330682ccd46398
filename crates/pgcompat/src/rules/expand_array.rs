//! `information_schema._pg_expandarray(a)` (pgjdbc's key and index queries) returns the
//! records `(x, n)`: element and position. `(_pg_expandarray(a)).n` becomes
//! `unnest(range(1, cardinality(a) + 1))`, the bare call `unnest(a)`, and a later `(k).x`
//! of its alias just `k`; the unnests of one select list advance together, as Postgres'
//! set-returning functions do. Only in statements that call `_pg_expandarray`.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    AccessExpr, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Statement, Visit, VisitMut,
    Visitor, VisitorMut,
};
use datafusion::sql::sqlparser::parser::ParserError;

use super::template::Template;
use super::{Rule, finish, last_name};

pub(super) static POSITIONS: Template =
    Template::new("unnest(range(1, CAST(cardinality(__e1) AS BIGINT) + 1))");
pub(super) static ELEMENTS: Template = Template::new("unnest(__e1)");

pub(crate) struct ExpandArray;

impl Rule for ExpandArray {
    fn name(&self) -> &'static str {
        "_pg_expandarray"
    }

    fn rewrite(&self, statement: &mut Statement) -> Result<(), ParserError> {
        if !calls_expandarray(statement) {
            return Ok(());
        }
        finish(statement.visit(&mut Expand))
    }
}

/// The argument of a one-argument `_pg_expandarray(a)` call.
fn expandarray_arg(e: &Expr) -> Option<&Expr> {
    let Expr::Function(f) = e else {
        return None;
    };
    if last_name(&f.name).as_deref() != Some("_pg_expandarray") {
        return None;
    }
    match &f.args {
        FunctionArguments::List(list) => match list.args.as_slice() {
            [FunctionArg::Unnamed(FunctionArgExpr::Expr(a))] => Some(a),
            _ => None,
        },
        _ => None,
    }
}

fn calls_expandarray(statement: &Statement) -> bool {
    struct Calls;
    impl Visitor for Calls {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            if expandarray_arg(e).is_some() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        }
    }
    statement.visit(&mut Calls).is_break()
}

struct Expand;

impl VisitorMut for Expand {
    type Break = ParserError;

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<ParserError> {
        let new = match &*expr {
            Expr::CompoundFieldAccess { root, access_chain } => {
                let field = match access_chain.as_slice() {
                    [AccessExpr::Dot(Expr::Identifier(i))] => i.value.to_ascii_lowercase(),
                    _ => return ControlFlow::Continue(()),
                };
                let inner = match root.as_ref() {
                    Expr::Nested(inner) => inner.as_ref(),
                    other => other,
                };
                match (expandarray_arg(inner), field.as_str(), inner) {
                    (Some(a), "n", _) => POSITIONS.fill(&[a], &[]),
                    (Some(a), "x", _) => ELEMENTS.fill(&[a], &[]),
                    (None, "x", Expr::Identifier(_) | Expr::CompoundIdentifier(_)) => {
                        Ok(inner.clone())
                    }
                    _ => return ControlFlow::Continue(()),
                }
            }
            e => match expandarray_arg(e) {
                Some(a) => ELEMENTS.fill(&[a], &[]),
                None => return ControlFlow::Continue(()),
            },
        };
        match new {
            Ok(new) => {
                *expr = new;
                ControlFlow::Continue(())
            }
            Err(e) => ControlFlow::Break(e),
        }
    }
}
