//! Catalog functions answered the way tidepool keeps the catalogs:
//! - `array_to_string(x.nspacl, sep)` over access-privilege columns, which the bundled
//!   catalogs keep as `{...}` text, calls `pg_acl_to_string`;
//! - `pg_get_viewdef(oid)` looks the definition up in `pg_views` by the view's `pg_class`
//!   oid;
//! - `col_description` and `obj_description` are NULL (tidepool stores no comments)
//!   without planning their arguments (Metabase passes `format('%I.%I', ...)::regclass`
//!   of outer columns);
//! - `generate_subscripts(a, 1)` (a set-returning function next to `unnest(a)` in
//!   SQLAlchemy's key queries) becomes `unnest(range(1, array_length(a, 1) + 1))`, which
//!   DataFusion unnests in step with `unnest(a)`;
//! - `'pg_catalog.array_in'::regproc` (pgjdbc) is looked up by datafusion-pg-catalog as
//!   `proname = 'pg_catalog.array_in'`; the schema prefix is dropped from such
//!   comparisons on `proname` and `typname` so the name matches.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, Ident,
    ObjectName, Statement, Value, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::parser::ParserError;

use super::subqueries::aggregate_scalar_subquery;
use super::template::Template;
use super::{Rule, finish, last_name};

pub(super) static VIEWDEF: Template = Template::new(
    "(SELECT __v.definition FROM pg_catalog.pg_views AS __v \
     JOIN pg_catalog.pg_namespace AS __n ON __n.nspname = __v.schemaname \
     JOIN pg_catalog.pg_class AS __c ON __c.relname = __v.viewname \
     AND __c.relnamespace = __n.oid WHERE __c.oid = CAST(__e1 AS BIGINT))",
);
pub(super) static NO_COMMENT: Template = Template::new("CAST(NULL AS TEXT)");
pub(super) static SUBSCRIPTS: Template =
    Template::new("unnest(range(1, CAST(array_length(__e1, __e2) AS BIGINT) + 1))");

pub(crate) struct CatalogFunctions;

impl Rule for CatalogFunctions {
    fn name(&self) -> &'static str {
        "catalog functions"
    }

    fn rewrite(&self, statement: &mut Statement) -> Result<(), ParserError> {
        finish(statement.visit(&mut Functions))
    }
}

struct Functions;

impl VisitorMut for Functions {
    type Break = ParserError;

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<ParserError> {
        let new = match expr {
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Eq,
                right,
            } if is_catalog_name_column(left) => {
                if let Expr::Value(v) = right.as_mut()
                    && let Value::SingleQuotedString(text) = &mut v.value
                    && let Some(bare) = text.strip_prefix("pg_catalog.")
                {
                    *text = bare.to_string();
                }
                return ControlFlow::Continue(());
            }
            Expr::Function(f) if is_acl_to_string(f) => {
                f.name = ObjectName::from(vec![Ident::new("pg_acl_to_string")]);
                return ControlFlow::Continue(());
            }
            Expr::Function(f) => match last_name(&f.name).as_deref() {
                Some("pg_get_viewdef") => match args(f).first() {
                    Some(view) => VIEWDEF.fill(&[view], &[]).and_then(|mut e| {
                        if let Expr::Subquery(q) = &mut e {
                            aggregate_scalar_subquery(q)?;
                        }
                        Ok(e)
                    }),
                    None => return ControlFlow::Continue(()),
                },
                Some("col_description" | "obj_description") => NO_COMMENT.fill(&[], &[]),
                Some("generate_subscripts") => match args(f).as_slice() {
                    [array, dim] => SUBSCRIPTS.fill(&[array, dim], &[]),
                    _ => return ControlFlow::Continue(()),
                },
                _ => return ControlFlow::Continue(()),
            },
            _ => return ControlFlow::Continue(()),
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

/// A call's positional arguments (empty when it has any other kind).
fn args(f: &Function) -> Vec<&Expr> {
    let FunctionArguments::List(list) = &f.args else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for a in &list.args {
        match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => out.push(e),
            _ => return Vec::new(),
        }
    }
    out
}

/// `array_to_string(x.nspacl, sep)` over an access-privilege column (`...acl`), which
/// the bundled catalogs store as text.
fn is_acl_to_string(f: &Function) -> bool {
    last_name(&f.name).as_deref() == Some("array_to_string")
        && args(f).first().is_some_and(|a| {
            let column = match a {
                Expr::CompoundIdentifier(parts) => parts.last(),
                Expr::Identifier(c) => Some(c),
                _ => None,
            };
            column.is_some_and(|c| c.value.to_ascii_lowercase().ends_with("acl"))
        })
}

/// `proname` / `typname`, bare or qualified.
fn is_catalog_name_column(e: &Expr) -> bool {
    let last = match e {
        Expr::Identifier(i) => &i.value,
        Expr::CompoundIdentifier(parts) => match parts.last() {
            Some(i) => &i.value,
            None => return false,
        },
        _ => return false,
    };
    last.eq_ignore_ascii_case("proname") || last.eq_ignore_ascii_case("typname")
}
