//! `x IN (SELECT ...)` inside a CASE or a select list (Grafana's search-path check):
//! DataFusion turns IN-subqueries into joins only where they filter rows, so there it
//! becomes `array_has((SELECT array_agg(v) FROM (SELECT ...) AS __in(v)), x)`.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, Query, SelectItem, SetExpr, Statement, UnaryOperator, VisitMut, VisitorMut,
    visit_expressions_mut,
};
use datafusion::sql::sqlparser::parser::ParserError;

use super::template::Template;
use super::{Rule, finish};

pub(super) static ARRAY_HAS: Template =
    Template::new("array_has((SELECT array_agg(__in.__v) FROM (SELECT __q1) AS __in (__v)), __e1)");

pub(crate) struct InSubqueriesAsArrays;

impl Rule for InSubqueriesAsArrays {
    fn name(&self) -> &'static str {
        "IN-subqueries outside filters"
    }

    fn rewrite(&self, statement: &mut Statement) -> Result<(), ParserError> {
        finish(statement.visit(&mut OutsideFilters))
    }
}

struct OutsideFilters;

impl VisitorMut for OutsideFilters {
    type Break = ParserError;

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<ParserError> {
        if let SetExpr::Select(select) = query.body.as_mut() {
            for item in &mut select.projection {
                if let SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } = item
                {
                    as_arrays(e)?;
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<ParserError> {
        if matches!(expr, Expr::Case { .. }) {
            as_arrays(expr)?;
        }
        ControlFlow::Continue(())
    }
}

/// Rewrites the IN-subqueries of `e` (not those inside nested subqueries) as `array_has`.
fn as_arrays(e: &mut Expr) -> ControlFlow<ParserError> {
    visit_expressions_mut(e, |x| {
        if let Expr::InSubquery {
            expr,
            subquery,
            negated,
        } = x
        {
            let has = match ARRAY_HAS.fill(&[expr], &[subquery]) {
                Ok(has) => has,
                Err(e) => return ControlFlow::Break(e),
            };
            *x = if *negated {
                Expr::UnaryOp {
                    op: UnaryOperator::Not,
                    expr: Box::new(has),
                }
            } else {
                has
            };
        }
        ControlFlow::Continue(())
    })
}
