//! Which statements the engine's catalog-answer cache may answer.
//!
//! A query that reads only `pg_catalog` relations, has no parameters and calls no volatile
//! function gets a key (user, `search_path` and its text); the engine keeps its answer
//! while the lake listing stays the same (see `tidepool_engine`'s catalog cache).

use std::ops::ControlFlow;

use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{Expr, ObjectName, Statement, Visit, Visitor};

/// Functions whose answer changes between calls.
const VOLATILE: &[&str] = &[
    "now",
    "random",
    "uuid",
    "gen_random_uuid",
    "clock_timestamp",
    "statement_timestamp",
    "transaction_timestamp",
    "timeofday",
    "current_timestamp",
    "current_time",
    "current_date",
    "localtime",
    "localtimestamp",
    "pg_backend_pid",
    "txid_current",
    "pg_postmaster_start_time",
    "pg_conf_load_time",
    "inet_client_addr",
    "inet_client_port",
    // Session-dependent beyond user and search_path.
    "current_setting",
];

/// The cache key of `stmt` for a session, or None when the statement may not be
/// answered from the cache.
pub fn key(stmt: &DFStatement, user: &str, search_path: &str) -> Option<String> {
    let DFStatement::Statement(s) = stmt else {
        return None;
    };
    if !matches!(s.as_ref(), Statement::Query(_)) || !catalog_only(s) {
        return None;
    }
    Some(format!("{user}\u{1}{search_path}\u{1}{s}"))
}

/// Whether every relation `s` reads is in `pg_catalog` and it calls no volatile function.
fn catalog_only(s: &Statement) -> bool {
    struct Check {
        relations: usize,
        ok: bool,
    }
    impl Visitor for Check {
        type Break = ();
        fn pre_visit_relation(&mut self, name: &ObjectName) -> ControlFlow<()> {
            self.relations += 1;
            let parts: Vec<String> = name
                .0
                .iter()
                .filter_map(|p| p.as_ident().map(|i| i.value.to_ascii_lowercase()))
                .collect();
            let catalog = match parts.as_slice() {
                [.., schema, _] => schema == "pg_catalog",
                // Unqualified names: only CTE names and pg_* tables (which the
                // compatibility parser has already qualified) are left; a user table
                // named without its schema is not cached.
                _ => false,
            };
            if !catalog {
                self.ok = false;
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            let volatile = match e {
                Expr::Function(f) => f
                    .name
                    .0
                    .last()
                    .and_then(|p| p.as_ident())
                    .is_some_and(|i| VOLATILE.contains(&i.value.to_ascii_lowercase().as_str())),
                Expr::Value(v) => matches!(
                    v.value,
                    datafusion::sql::sqlparser::ast::Value::Placeholder(_)
                ),
                _ => false,
            };
            if volatile {
                self.ok = false;
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        }
    }
    let mut check = Check {
        relations: 0,
        ok: true,
    };
    let _ = s.visit(&mut check);
    // CTE references are relations too; a query with one would need its names resolved.
    if let Statement::Query(q) = s
        && q.with.is_some()
    {
        return false;
    }
    check.ok && check.relations > 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn key(sql: &str) -> Option<String> {
        let s = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0);
        super::key(&DFStatement::Statement(Box::new(s)), "u", "public")
    }

    #[test]
    fn only_catalog_queries_are_cached() {
        assert!(key("SELECT t.oid FROM pg_catalog.pg_type t JOIN pg_catalog.pg_proc p ON p.oid = t.typreceive").is_some());
        assert!(key("SELECT * FROM gold.orders").is_none());
        assert!(key("SELECT * FROM orders").is_none());
        assert!(key("SELECT now(), oid FROM pg_catalog.pg_type").is_none());
        assert!(key("SELECT oid FROM pg_catalog.pg_type WHERE oid = $1").is_none());
        assert!(key("SELECT 1").is_none());
        assert!(key("SELECT c.relname FROM pg_catalog.pg_class c, gold.orders o").is_none());
    }
}
