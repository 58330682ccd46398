//! Answers of catalog queries, kept while the lake listing stays the same.
//!
//! Drivers ask the same `pg_catalog` questions on every connection: Npgsql (Power BI)
//! loads all 600 types with a seven-way join each time it opens one, and a refresh opens
//! many. Planning and running those joins costs tens of milliseconds; their answer depends
//! only on the catalog, which changes when the lake listing does. A query that reads only
//! `pg_catalog` relations, has no parameters and calls no volatile function is answered
//! from here when the same text was answered for the same user and `search_path` under an
//! equal listing no longer ago than the listing's refresh interval (`lake.refresh_ms`), the
//! same staleness the listing itself has.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{Expr, ObjectName, Statement, Visit, Visitor};
use parking_lot::Mutex;

use crate::lake::Listing;

/// Answers larger than this are not kept.
const MAX_ROWS: usize = 20_000;
/// Entries kept at most (distinct statement texts per user and path).
const MAX_ENTRIES: usize = 512;

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

#[derive(Debug)]
struct Entry {
    listing: Arc<Listing>,
    at: Instant,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
}

/// The cache; one per engine.
#[derive(Debug, Default)]
pub struct CatalogCache {
    entries: Mutex<HashMap<String, Entry>>,
}

/// A cached answer.
pub struct Hit {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl CatalogCache {
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

    /// The answer for `key`, if it was stored under a listing equal to `listing` less than
    /// `ttl` ago.
    pub fn get(&self, key: &str, listing: &Arc<Listing>, ttl: Duration) -> Option<Hit> {
        let entries = self.entries.lock();
        let e = entries.get(key)?;
        if e.at.elapsed() > ttl || !(Arc::ptr_eq(&e.listing, listing) || *e.listing == **listing) {
            return None;
        }
        Some(Hit {
            schema: e.schema.clone(),
            batches: e.batches.clone(),
        })
    }

    /// Keeps an answer (unless it is large).
    pub fn put(
        &self,
        key: String,
        listing: Arc<Listing>,
        schema: SchemaRef,
        batches: &[RecordBatch],
    ) {
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        if rows > MAX_ROWS {
            return;
        }
        let mut entries = self.entries.lock();
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&key) {
            entries.clear();
        }
        entries.insert(
            key,
            Entry {
                listing,
                at: Instant::now(),
                schema,
                batches: batches.to_vec(),
            },
        );
    }
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
        CatalogCache::key(&DFStatement::Statement(Box::new(s)), "u", "public")
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
