//! `IS [NOT] DISTINCT FROM` binds tighter than `AND` and `OR`, as in PostgreSQL.
//! sqlparser 0.62 parses its right side as a whole expression, so `a IS NOT DISTINCT
//! FROM b AND c` comes out as `a IS NOT DISTINCT FROM (b AND c)` and fails to plan (or,
//! with boolean columns, means something else). The parsed tree is re-associated here:
//! `(a IS NOT DISTINCT FROM b) AND c`. A parenthesized right side is `Expr::Nested` and
//! stays as written.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{BinaryOperator, Expr, VisitorMut};

/// The visitor that re-associates; run over every parsed statement.
pub struct DistinctFromPrecedence;

impl VisitorMut for DistinctFromPrecedence {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        reassociate(expr);
        ControlFlow::Continue(())
    }
}

fn is_and_or(e: &Expr) -> bool {
    matches!(
        e,
        Expr::BinaryOp {
            op: BinaryOperator::And | BinaryOperator::Or,
            ..
        }
    )
}

fn reassociate(expr: &mut Expr) {
    let (Expr::IsDistinctFrom(_, right) | Expr::IsNotDistinctFrom(_, right)) = expr else {
        return;
    };
    if !is_and_or(right) {
        return;
    }
    let negated = matches!(expr, Expr::IsNotDistinctFrom(..));
    let taken = std::mem::replace(
        expr,
        Expr::value(datafusion::sql::sqlparser::ast::Value::Null),
    );
    let (Expr::IsDistinctFrom(a, b) | Expr::IsNotDistinctFrom(a, b)) = taken else {
        return;
    };
    let Expr::BinaryOp { left, op, right } = *b else {
        return;
    };
    let mut inner = if negated {
        Expr::IsNotDistinctFrom(a, left)
    } else {
        Expr::IsDistinctFrom(a, left)
    };
    reassociate(&mut inner);
    *expr = Expr::BinaryOp {
        left: Box::new(inner),
        op,
        right,
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::ast::VisitMut;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn fixed(sql: &str) -> String {
        let mut s = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap();
        let _ = s[0].visit(&mut DistinctFromPrecedence);
        s[0].to_string()
    }

    #[test]
    fn and_and_or_bind_looser_than_is_distinct_from() {
        assert_eq!(
            fixed("SELECT a IS NOT DISTINCT FROM b AND c IS DISTINCT FROM d AND e"),
            "SELECT a IS NOT DISTINCT FROM b AND c IS DISTINCT FROM d AND e"
        );
        let mut s = Parser::parse_sql(
            &PostgreSqlDialect {},
            "SELECT a IS NOT DISTINCT FROM b AND c OR d",
        )
        .unwrap();
        let _ = s[0].visit(&mut DistinctFromPrecedence);
        let datafusion::sql::sqlparser::ast::Statement::Query(q) = &s[0] else {
            panic!("query")
        };
        let datafusion::sql::sqlparser::ast::SetExpr::Select(sel) = q.body.as_ref() else {
            panic!("select")
        };
        let datafusion::sql::sqlparser::ast::SelectItem::UnnamedExpr(e) = &sel.projection[0] else {
            panic!("expr")
        };
        // ((a IS NOT DISTINCT FROM b) AND c) OR d
        let Expr::BinaryOp { left, op, .. } = e else {
            panic!("{e:?}")
        };
        assert_eq!(*op, BinaryOperator::Or);
        let Expr::BinaryOp { left, op, .. } = left.as_ref() else {
            panic!("{left:?}")
        };
        assert_eq!(*op, BinaryOperator::And);
        assert!(matches!(left.as_ref(), Expr::IsNotDistinctFrom(..)));
        assert_eq!(
            fixed("SELECT a IS DISTINCT FROM (b AND c)"),
            "SELECT a IS DISTINCT FROM (b AND c)"
        );
    }
}
