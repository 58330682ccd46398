//! Replacement expressions built as AST values: a rule's replacement is a constant SQL
//! skeleton, parsed once, whose placeholders are filled with the statement's own AST
//! nodes (`__e1`, `__e2`... for expressions, `(SELECT __q1)` for queries). No client text
//! is ever formatted into SQL and parsed again; a skeleton that does not parse is an
//! error of the rule (every skeleton is parsed by a unit test), never a skipped rewrite.

use std::ops::ControlFlow;
use std::sync::OnceLock;

use datafusion::sql::sqlparser::ast::{Expr, Query, SelectItem, SetExpr, VisitMut, VisitorMut};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};

/// A replacement expression with placeholders.
pub(crate) struct Template {
    sql: &'static str,
    parsed: OnceLock<Result<Expr, ParserError>>,
}

impl Template {
    pub(crate) const fn new(sql: &'static str) -> Template {
        Template {
            sql,
            parsed: OnceLock::new(),
        }
    }

    /// The skeleton with `__eN` replaced by `exprs[N-1]` and `(SELECT __qN)` by
    /// `queries[N-1]`.
    pub(crate) fn fill(&self, exprs: &[&Expr], queries: &[&Query]) -> Result<Expr, ParserError> {
        let skeleton = self.parsed.get_or_init(|| {
            Parser::new(&PostgreSqlDialect {})
                .try_with_sql(self.sql)
                .and_then(|mut p| p.parse_expr())
        });
        let mut out = skeleton.clone()?;
        let mut fill = Fill {
            exprs,
            queries,
            missing: None,
        };
        let _ = out.visit(&mut fill);
        match fill.missing {
            Some(name) => Err(ParserError::ParserError(format!(
                "placeholder {name} of `{}` has no value",
                self.sql
            ))),
            None => Ok(out),
        }
    }

    #[cfg(test)]
    pub(crate) fn sql(&self) -> &'static str {
        self.sql
    }
}

struct Fill<'a> {
    exprs: &'a [&'a Expr],
    queries: &'a [&'a Query],
    missing: Option<String>,
}

/// `__eN` or `__qN`'s N, when `name` is such a placeholder.
fn slot(name: &str, prefix: &str) -> Option<usize> {
    name.strip_prefix(prefix)?
        .parse::<usize>()
        .ok()?
        .checked_sub(1)
}

impl VisitorMut for Fill<'_> {
    type Break = ();

    // Post-order: a filled-in node is not visited again, so the statement's own
    // identifiers are never taken for placeholders.
    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::Identifier(i) = expr
            && let Some(k) = slot(&i.value, "__e")
        {
            match self.exprs.get(k) {
                Some(e) => *expr = (*e).clone(),
                None => self.missing = Some(i.value.clone()),
            }
        }
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let SetExpr::Select(select) = query.body.as_ref()
            && select.from.is_empty()
            && let [SelectItem::UnnamedExpr(Expr::Identifier(i))] = select.projection.as_slice()
            && let Some(k) = slot(&i.value, "__q")
        {
            match self.queries.get(k) {
                Some(q) => *query = (*q).clone(),
                None => self.missing = Some(i.value.clone()),
            }
        }
        ControlFlow::Continue(())
    }
}
