//! `'pg_class'::regclass` finds the catalog table: PostgreSQL searches `pg_catalog`
//! before the search path when it is not named there, so an unqualified name of one of
//! its tables is that table (pgjdbc's `getTables` joins `pg_description` on
//! `d.classoid = 'pg_class'::regclass` for REMARKS). datafusion-pg-catalog's cast rule
//! looks an unqualified name up in the current schema only; this rule, run before it,
//! qualifies the names of catalog tables.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    DataType, Expr, Statement, Value, ValueWithSpan, VisitMut, VisitorMut,
};
use datafusion_pg_catalog::sql::rules::SqlStatementRewriteRule;

#[derive(Debug)]
pub(crate) struct RegclassSearch;

impl SqlStatementRewriteRule for RegclassSearch {
    fn rewrite(&self, mut s: Statement) -> Statement {
        let _ = s.visit(&mut Qualify);
        s
    }
}

struct Qualify;

fn is_regclass(t: &DataType) -> bool {
    let name = t.to_string().to_ascii_lowercase();
    name == "regclass" || name == "pg_catalog.regclass"
}

impl VisitorMut for Qualify {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::Cast {
            expr: operand,
            data_type,
            ..
        } = expr
            && is_regclass(data_type)
            && let Expr::Value(ValueWithSpan {
                value: Value::SingleQuotedString(name),
                ..
            }) = operand.as_mut()
            && crate::oids::catalog_table(name).is_some()
        {
            *name = format!("pg_catalog.{name}");
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn rewritten(sql: &str) -> String {
        let s = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0);
        RegclassSearch.rewrite(s).to_string()
    }

    #[test]
    fn catalog_tables_are_qualified_others_are_not() {
        assert_eq!(
            rewritten(
                "SELECT 'pg_class'::regclass, 'orders'::regclass, 'pg_catalog.pg_proc'::regclass"
            ),
            "SELECT 'pg_catalog.pg_class'::REGCLASS, 'orders'::REGCLASS, 'pg_catalog.pg_proc'::REGCLASS"
        );
    }
}
