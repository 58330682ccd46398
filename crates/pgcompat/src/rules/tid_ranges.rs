//! Tuple-id ranges that cover every row. PostgreSQL's `ctid` system column addresses heap
//! tuples; lake tables have none. DuckDB's postgres extension reads every table through
//! `COPY (SELECT ... WHERE ctid BETWEEN '(0,0)'::tid AND '(p,0)'::tid) TO STDOUT`, cut
//! into page ranges by `pg_class.relpages`. tidepool reports one page per table, so a
//! scan arrives as the single range from page 0 to the highest page there can be
//! (4294967295): a condition every row meets, replaced by `TRUE`, so the scan needs no
//! tuple ids. Any other use of `ctid` reads them ([`super::tuple_ids`]).

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{DataType, Expr, Statement, Value, VisitMut, VisitorMut};
use datafusion::sql::sqlparser::parser::ParserError;

use super::{Rule, finish};

/// The highest block number a tid can hold.
const LAST_BLOCK: u64 = u32::MAX as u64;

pub(crate) struct TidRanges;

impl Rule for TidRanges {
    fn name(&self) -> &'static str {
        "tid ranges"
    }

    fn rewrite(&self, statement: &mut Statement) -> Result<(), ParserError> {
        finish(statement.visit(&mut Ranges))
    }
}

struct Ranges;

impl VisitorMut for Ranges {
    type Break = ParserError;

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<ParserError> {
        if let Expr::Between {
            expr: column,
            negated: false,
            low,
            high,
        } = expr
            && is_ctid(column)
            && tid(low) == Some((0, 0))
            && tid(high).is_some_and(|(block, _)| block == LAST_BLOCK)
        {
            *expr = Expr::value(Value::Boolean(true));
        }
        ControlFlow::Continue(())
    }
}

/// `ctid` or `t.ctid`.
fn is_ctid(e: &Expr) -> bool {
    match e {
        Expr::Identifier(i) => i.value.eq_ignore_ascii_case("ctid"),
        Expr::CompoundIdentifier(parts) => parts
            .last()
            .is_some_and(|i| i.value.eq_ignore_ascii_case("ctid")),
        _ => false,
    }
}

/// The (block, offset) of a `'(b,o)'::tid` literal.
fn tid(e: &Expr) -> Option<(u64, u64)> {
    let Expr::Cast {
        expr, data_type, ..
    } = e
    else {
        return None;
    };
    let DataType::Custom(name, args) = data_type else {
        return None;
    };
    if !args.is_empty() || !name.to_string().eq_ignore_ascii_case("tid") {
        return None;
    }
    let Expr::Value(v) = expr.as_ref() else {
        return None;
    };
    let Value::SingleQuotedString(text) = &v.value else {
        return None;
    };
    let inner = text.trim().strip_prefix('(')?.strip_suffix(')')?;
    let (block, offset) = inner.split_once(',')?;
    Some((block.trim().parse().ok()?, offset.trim().parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn rewritten(sql: &str) -> String {
        let mut s = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0);
        TidRanges.rewrite(&mut s).unwrap();
        s.to_string()
    }

    #[test]
    fn the_whole_range_is_true_and_a_part_stays() {
        assert_eq!(
            rewritten("SELECT a FROM t WHERE ctid BETWEEN '(0,0)'::tid AND '(4294967295,0)'::tid"),
            "SELECT a FROM t WHERE true"
        );
        let part = "SELECT a FROM t WHERE ctid BETWEEN '(0,0)'::tid AND '(1000,0)'::tid";
        assert_eq!(rewritten(part), part);
    }
}
