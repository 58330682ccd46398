//! datafusion-pg-catalog's rewrites of client SQL, minus the one that changes answers.
//!
//! Its parser swaps known client catalog queries for ones DataFusion plans (a token-level
//! blacklist), then applies rewrite rules. One rule, `RemoveSubqueryFromProjection`,
//! replaces every correlated scalar subquery in a select list with `NULL` and adds
//! `LIMIT 1` to the others: `SELECT id, (SELECT max(x) FROM t2 WHERE t2.k = t.k) FROM t`
//! silently answered NULL for every row, and so did sqlsmith's
//! `(SELECT nspname FROM pg_namespace WHERE oid = pronamespace)`. DataFusion plans such
//! subqueries as joins (tidepool's `correlated` rule makes non-aggregated ones
//! aggregates first), so tidepool applies every rule but that one. Only a statement the
//! blacklist swapped keeps the crate's whole treatment, which its replacement was
//! written against.

use std::sync::Arc;

use datafusion::sql::sqlparser::ast::Statement;
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use datafusion_pg_catalog::sql::rules::{self, SqlStatementRewriteRule};

/// The crate's parser and its rules without `RemoveSubqueryFromProjection`.
#[derive(Debug)]
pub struct Compat {
    full: PostgresCompatibilityParser,
    rules: Vec<Arc<dyn SqlStatementRewriteRule>>,
}

impl Default for Compat {
    fn default() -> Self {
        Compat::new()
    }
}

impl Compat {
    pub fn new() -> Compat {
        // datafusion-pg-catalog 0.19's list, in its order, without RemoveSubqueryFromProjection,
        // and with tidepool's RegclassSearch before the regclass lookup.
        let rules: Vec<Arc<dyn SqlStatementRewriteRule>> = vec![
            Arc::new(rules::AliasDuplicatedProjectionRewrite),
            Arc::new(rules::ResolveUnqualifiedIdentifier),
            Arc::new(rules::RewriteArrayAnyAllOperation),
            Arc::new(rules::PrependUnqualifiedPgTableName),
            Arc::new(rules::StripCallableQualifier),
            Arc::new(rules::FixArrayLiteral),
            Arc::new(rules::CurrentUserVariableToSessionUserFunctionCall),
            Arc::new(rules::StripCollate),
            Arc::new(rules::RewritePgCatalogOperator),
            Arc::new(crate::regclass_search::RegclassSearch),
            Arc::new(rules::RewriteRegCastToSubquery::new()),
            Arc::new(rules::FixVersionColumnName),
        ];
        Compat {
            full: PostgresCompatibilityParser::new(),
            rules,
        }
    }

    /// Applies the rules to a parsed statement.
    pub fn rewrite(&self, mut s: Statement) -> Statement {
        for rule in &self.rules {
            s = rule.rewrite(s);
        }
        s
    }

    /// Parses Postgres SQL text: bounded (`complexity`) before any rule walks it, and
    /// rewritten without the dropped rule. A statement reading the catalogs that the
    /// crate's blacklist swaps for another keeps the crate's parse.
    pub fn parse(&self, sql: &str) -> Result<Vec<Statement>, tidepool_engine::EngineError> {
        // The crate's parser stops at sqlparser's default depth (50); this one follows
        // nested subqueries to `PARSER_DEPTH` (54001 beyond).
        let mut plain = match tidepool_engine::parse::parse_deep(sql) {
            Ok(p) => p,
            Err(e @ tidepool_engine::EngineError::TooComplex(_)) => return Err(e),
            Err(_) => return Ok(self.full.parse(sql)?),
        };
        for s in &mut plain {
            tidepool_engine::complexity::bound(s)?;
        }
        if plain.iter().any(reads_catalog) {
            // The blacklist swapped something when the crate's parse differs from its
            // rules applied to the plain parse (spans do not take part in comparisons).
            let full = self.full.parse(sql)?;
            let swapped = full.len() != plain.len()
                || full
                    .iter()
                    .zip(&plain)
                    .any(|(f, p)| *f != self.full.rewrite(p.clone()));
            if swapped {
                return Ok(full);
            }
        }
        Ok(plain.into_iter().map(|s| self.rewrite(s)).collect())
    }
}

/// Whether a statement names a `pg_catalog` or `information_schema` relation (or a
/// `pg_*` one, which resolves there).
fn reads_catalog(s: &Statement) -> bool {
    use datafusion::sql::sqlparser::ast::{ObjectName, Visit, Visitor};
    use std::ops::ControlFlow;
    struct Catalog;
    impl Visitor for Catalog {
        type Break = ();
        fn pre_visit_relation(&mut self, name: &ObjectName) -> ControlFlow<()> {
            let parts: Vec<String> = name
                .0
                .iter()
                .filter_map(|p| p.as_ident().map(|i| i.value.to_ascii_lowercase()))
                .collect();
            let catalog = parts
                .iter()
                .any(|p| p == "pg_catalog" || p == "information_schema")
                || parts.last().is_some_and(|p| p.starts_with("pg_"));
            if catalog {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        }
    }
    s.visit(&mut Catalog).is_break()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlated_subqueries_survive_and_catalog_rewrites_apply() {
        let c = Compat::new();
        let s = c
            .parse("SELECT id, (SELECT max(x) FROM t2 WHERE t2.k = t.k) AS m FROM t")
            .unwrap();
        assert!(s[0].to_string().contains("SELECT max(x)"), "{}", s[0]);
        let s = c.parse("SELECT (SELECT id FROM t) AS one").unwrap();
        assert!(!s[0].to_string().contains("LIMIT"), "{}", s[0]);
        // A rule that stays: `version()` is named `version`.
        let s = c.parse("SELECT version()").unwrap();
        assert_eq!(s, c.full.parse("SELECT version()").unwrap());
        // So do those of catalog queries.
        let q = "SELECT c.oid, (SELECT n.nspname FROM pg_catalog.pg_namespace n \
                 WHERE n.oid = c.relnamespace) FROM pg_catalog.pg_class c";
        assert!(
            c.parse(q).unwrap()[0]
                .to_string()
                .contains("SELECT n.nspname")
        );
        // A query the crate's blacklist swaps keeps the crate's parse.
        let q = "select c.oid,pg_catalog.pg_total_relation_size(c.oid) as total_rel_size,\
                 pg_catalog.pg_relation_size(c.oid) as rel_size\n     FROM pg_class c\n     \
                 WHERE c.relnamespace='public'";
        assert!(c.parse(q).unwrap()[0].to_string().contains("WHERE false"));
        assert_eq!(c.parse(q).unwrap(), c.full.parse(q).unwrap());
    }
}
