//! How deep a statement may be. Planning and executing a statement recurse over its
//! expression and set-operation trees, so a deep enough tree overflows a thread's stack
//! and aborts the process. This module owns the stack every runtime thread gets, the
//! depth a statement may reach on it (refused with 54001 beyond), and the rebalancing of
//! long chains of associative operators (`OR`, `AND`, `||`, `UNION ALL`) into trees of
//! logarithmic depth, so the long filters and unions BI tools generate are answered.

/// Stack of every thread of tidepool's runtime (virtual memory: only touched pages cost).
pub const THREAD_STACK_BYTES: usize = 64 << 20;

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, Query, SetExpr, SetOperator, SetQuantifier, Statement, Visit, VisitMut,
    Visitor, VisitorMut,
};

/// Deepest expression or query nesting a statement may have after rebalancing. Every
/// layer of DataFusion and delta-rs recurses over it; this depth fits the stack above
/// with room to spare in a debug build, whose frames are several times larger. (Planning
/// time also grows with the square of the depth: 1,000 terms of `1+1+...` plan in about
/// a second.)
pub const MAX_DEPTH: usize = 1_000;

/// Deepest nesting of parentheses and subqueries the parser follows.
pub const PARSER_DEPTH: usize = 256;

/// Deepest nesting of subqueries inside expressions (scalar, `EXISTS`, `IN`): DataFusion
/// re-validates every inner plan at each level, in time exponential in the depth (16 levels
/// take about a second in a release build).
pub const MAX_SUBQUERY_DEPTH: usize = 16;

/// Most operands one chain of `UNION`/`INTERSECT` may have: DataFusion plans a union in
/// time quadratic in its inputs (3,000 `SELECT`s take seconds).
pub const MAX_SET_OPERANDS: usize = 2_000;

/// A statement deeper or wider than the server plans (54001 at the protocol edge).
#[derive(Debug, thiserror::Error)]
#[error(
    "statement too complex: tidepool plans at most {MAX_DEPTH} nested operators, {PARSER_DEPTH} nested \
     parentheses or subqueries, {MAX_SUBQUERY_DEPTH} nested subqueries inside expressions and \
     {MAX_SET_OPERANDS} UNION operands (split the statement, or put long value lists in a table)"
)]
pub struct TooComplex;

/// Rebalances associative chains in `statement`, then refuses it if still too deep.
pub fn bound(statement: &mut Statement) -> Result<(), TooComplex> {
    let _ = VisitMut::visit(statement, &mut Rebalance);
    let mut depth = Depth::default();
    match Visit::visit(&*statement, &mut depth) {
        ControlFlow::Break(()) => Err(TooComplex),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// Turns left- or right-deep chains of one associative operator into balanced trees.
/// Visiting top-down, the root of a chain is rebuilt before its children are visited, so
/// the visitor itself never descends the original chain.
struct Rebalance;

impl VisitorMut for Rebalance {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::BinaryOp { op, .. } = expr
            && associative(op)
        {
            let op = op.clone();
            let operands = chain_operands(std::mem::replace(expr, Expr::value(placeholder())), &op);
            *expr = balanced(operands, &|left, right| Expr::BinaryOp {
                left: Box::new(left),
                op: op.clone(),
                right: Box::new(right),
            });
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let SetExpr::SetOperation {
            op, set_quantifier, ..
        } = query.body.as_ref()
            && associative_set(op, set_quantifier)
        {
            let (op, quantifier) = (*op, *set_quantifier);
            let body = std::mem::replace(
                query.body.as_mut(),
                SetExpr::Values(datafusion::sql::sqlparser::ast::Values {
                    explicit_row: false,
                    value_keyword: false,
                    rows: Vec::new(),
                }),
            );
            let operands = set_operands(body, &op, &quantifier);
            *query.body = balanced(operands, &|left, right| SetExpr::SetOperation {
                left: Box::new(left),
                op,
                set_quantifier: quantifier,
                right: Box::new(right),
            });
        }
        ControlFlow::Continue(())
    }
}

fn placeholder() -> datafusion::sql::sqlparser::ast::Value {
    datafusion::sql::sqlparser::ast::Value::Null
}

/// Operators whose chains may be regrouped without changing the result or its type.
/// (`+` and `*` are not: decimal precision and float rounding depend on the grouping.)
fn associative(op: &BinaryOperator) -> bool {
    matches!(
        op,
        BinaryOperator::And | BinaryOperator::Or | BinaryOperator::StringConcat
    )
}

fn associative_set(op: &SetOperator, quantifier: &SetQuantifier) -> bool {
    matches!(op, SetOperator::Union | SetOperator::Intersect)
        && matches!(
            quantifier,
            SetQuantifier::All | SetQuantifier::Distinct | SetQuantifier::None
        )
}

/// The operands of a chain of `op`, left to right, without recursion.
fn chain_operands(expr: Expr, op: &BinaryOperator) -> Vec<Expr> {
    let mut out = Vec::new();
    let mut pending = vec![expr];
    while let Some(e) = pending.pop() {
        match e {
            Expr::BinaryOp { left, op: o, right } if &o == op => {
                pending.push(*right);
                pending.push(*left);
            }
            other => out.push(other),
        }
    }
    out
}

/// The operands of a chain of one set operation, left to right, without recursion.
fn set_operands(body: SetExpr, op: &SetOperator, quantifier: &SetQuantifier) -> Vec<SetExpr> {
    let mut out = Vec::new();
    let mut pending = vec![body];
    while let Some(e) = pending.pop() {
        match e {
            SetExpr::SetOperation {
                left,
                op: o,
                set_quantifier,
                right,
            } if &o == op && &set_quantifier == quantifier => {
                pending.push(*right);
                pending.push(*left);
            }
            other => out.push(other),
        }
    }
    out
}

/// Joins `items` (at least one) pairwise, level by level: depth ⌈log2 n⌉, order kept.
fn balanced<T>(items: Vec<T>, join: &dyn Fn(T, T) -> T) -> T {
    let mut level = items;
    while level.len() > 1 {
        let mut next = Vec::with_capacity(level.len().div_ceil(2));
        let mut it = level.into_iter();
        while let Some(left) = it.next() {
            match it.next() {
                Some(right) => next.push(join(left, right)),
                None => next.push(left),
            }
        }
        level = next;
    }
    level.pop().expect("a chain has an operand")
}

/// Tracks expression plus query nesting; breaks past [`MAX_DEPTH`].
#[derive(Default)]
struct Depth {
    now: usize,
    subqueries: usize,
}

fn is_subquery(expr: &Expr) -> bool {
    matches!(
        expr,
        Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. }
    )
}

impl Depth {
    fn enter(&mut self) -> ControlFlow<()> {
        self.now += 1;
        if self.now > MAX_DEPTH {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

impl Visitor for Depth {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if is_subquery(expr) {
            self.subqueries += 1;
            if self.subqueries > MAX_SUBQUERY_DEPTH {
                return ControlFlow::Break(());
            }
        }
        self.enter()
    }

    fn post_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if is_subquery(expr) {
            self.subqueries -= 1;
        }
        self.now -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        // A set operation's operands are not queries; count the tree's own depth.
        let (depth, operands) = set_tree(&query.body);
        if operands > MAX_SET_OPERANDS {
            return ControlFlow::Break(());
        }
        self.now += depth;
        self.enter()
    }

    fn post_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        self.now -= 1 + set_tree(&query.body).0;
        ControlFlow::Continue(())
    }
}

/// Depth and operand count of the set-operation tree at the top of a query body, without
/// recursion.
fn set_tree(body: &SetExpr) -> (usize, usize) {
    let (mut deepest, mut operands) = (0, 0);
    let mut pending = vec![(body, 0usize)];
    while let Some((e, d)) = pending.pop() {
        deepest = deepest.max(d);
        match e {
            SetExpr::SetOperation { left, right, .. } => {
                pending.push((left, d + 1));
                pending.push((right, d + 1));
            }
            _ => operands += 1,
        }
    }
    (deepest, operands)
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    fn parsed(sql: &str) -> Statement {
        Parser::new(&PostgreSqlDialect {})
            .try_with_sql(sql)
            .and_then(|mut p| p.parse_statement())
            .unwrap()
    }

    #[test]
    fn chains_are_rebalanced_in_order() {
        let mut s = parsed("SELECT a OR b OR c OR d OR e FROM t");
        bound(&mut s).unwrap();
        let Statement::Query(q) = &s else { panic!() };
        let SetExpr::Select(select) = q.body.as_ref() else {
            panic!()
        };
        let datafusion::sql::sqlparser::ast::SelectItem::UnnamedExpr(e) = &select.projection[0]
        else {
            panic!()
        };
        let names: Vec<String> = chain_operands(e.clone(), &BinaryOperator::Or)
            .iter()
            .map(|o| o.to_string())
            .collect();
        assert_eq!(names, ["a", "b", "c", "d", "e"]);
        // ((a OR b) OR (c OR d)) OR e, where the parser built (((a OR b) OR c) OR d) OR e
        let Expr::BinaryOp { left, .. } = e else {
            panic!()
        };
        let Expr::BinaryOp { right, .. } = left.as_ref() else {
            panic!()
        };
        assert_eq!(right.to_string(), "c OR d");
        assert!(matches!(right.as_ref(), Expr::BinaryOp { .. }));
    }

    #[test]
    fn long_or_chains_and_unions_pass_deep_arithmetic_does_not() {
        let or = (0..20_000)
            .map(|i| format!("x = {i}"))
            .collect::<Vec<_>>()
            .join(" OR ");
        let mut s = parsed(&format!("SELECT 1 FROM t WHERE {or}"));
        bound(&mut s).unwrap();

        let union = (0..MAX_SET_OPERANDS)
            .map(|i| format!("SELECT {i}"))
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let mut s = parsed(&union);
        bound(&mut s).unwrap();
        let mut s = parsed(&format!("{union} UNION ALL SELECT 0"));
        assert!(bound(&mut s).is_err());

        let plus = vec!["1"; MAX_DEPTH + 1].join(" + ");
        let mut s = parsed(&format!("SELECT {plus}"));
        assert!(bound(&mut s).is_err());
        let plus = vec!["1"; MAX_DEPTH / 2].join(" + ");
        let mut s = parsed(&format!("SELECT {plus}"));
        bound(&mut s).unwrap();
    }

    #[test]
    fn mixed_set_operations_keep_their_grouping() {
        let mut s = parsed("SELECT 1 UNION ALL SELECT 2 UNION SELECT 3 UNION ALL SELECT 4");
        let before = s.to_string();
        bound(&mut s).unwrap();
        // the top chain is UNION ALL of [(1 UNION ALL 2) UNION 3, 4]: nothing to regroup
        assert_eq!(s.to_string(), before);
    }

    #[test]
    fn nested_subqueries_in_expressions_are_bounded() {
        let nest = |n: usize| format!("SELECT {}1{}", "(SELECT ".repeat(n), ")".repeat(n));
        bound(&mut parsed(&nest(MAX_SUBQUERY_DEPTH))).unwrap();
        assert!(bound(&mut parsed(&nest(MAX_SUBQUERY_DEPTH + 1))).is_err());
    }
}
