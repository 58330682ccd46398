//! Correlated subqueries the way Postgres answers them.
//!
//! Postgres runs `(SELECT rngtypid FROM pg_range WHERE rngmultitypid = typ.oid)` per outer
//! row and fails only if it finds more than one row; DataFusion decorrelates such
//! subqueries into joins and needs them aggregated. A correlated subquery that selects one
//! plain expression becomes `first_value(expr)`, and one that ends in `ORDER BY ... LIMIT
//! 1` becomes `first_value(expr ORDER BY ...)`: the same answer whenever Postgres gives
//! one (where Postgres would raise "more than one row returned by a subquery", the first
//! row is used).
//!
//! Conditions of such a subquery that read only outer columns (SQLAlchemy's
//! `WHERE pg_attribute.atthasdef AND ...`) are hoisted into `CASE WHEN cond THEN
//! (subquery) END`, which DataFusion can decorrelate.
//!
//! A scalar subquery over a catalog table that is always empty in tidepool (no sequences,
//! triggers, inheritance, enums: `pg_sequence`, `pg_trigger`, ...) and
//! without aggregates is NULL; SQLAlchemy's identity-column subquery reads outer columns
//! in its select list, which DataFusion cannot decorrelate.
//!
//! `ARRAY(SELECT e FROM ... WHERE <correlated> ORDER BY o)` (psql `\du`, `\dp`) becomes
//! `(SELECT array_agg(e ORDER BY o) FROM ... WHERE ...)`, which DataFusion decorrelates;
//! an uncorrelated one `(SELECT array_agg(__a.__v) FROM (SELECT ...) AS __a (__v))`. One
//! over an always-empty catalog, or unnesting an always-NULL catalog array
//! (`unnest(tc.reloptions)` in psql `\d+`, `pg_options_to_table(srvoptions)` in `\des+`),
//! is `CAST(NULL AS TEXT[])`.

use std::collections::HashSet;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArgumentClause, FunctionArguments,
    GroupByExpr, LimitClause, OrderByKind, Query, Select, SelectItem, SetExpr, Statement,
    TableFactor, Value, VisitMut, VisitorMut, visit_expressions,
};
use datafusion::sql::sqlparser::parser::ParserError;

use super::template::Template;
use super::{Rule, finish};

pub(super) static FIRST_VALUE: Template = Template::new("first_value(__e1)");
pub(super) static ARRAY_AGG: Template = Template::new("array_agg(__e1)");
pub(super) static NULL_ARRAY: Template = Template::new("CAST(NULL AS TEXT[])");
pub(super) static ARRAY_OF: Template =
    Template::new("(SELECT array_agg(__a.__v) FROM (SELECT __q1) AS __a (__v))");
pub(super) static HOISTED: Template = Template::new("CASE WHEN __e1 THEN (SELECT __q1) END");
/// An aggregating subquery's value where the hoisted condition is false: the aggregate
/// over no rows (`count(*)` is 0, not NULL).
pub(super) static HOISTED_AGGREGATE: Template =
    Template::new("CASE WHEN __e1 THEN (SELECT __q1) ELSE (SELECT __q2) END");

pub(crate) struct CorrelatedSubqueries;

impl Rule for CorrelatedSubqueries {
    fn name(&self) -> &'static str {
        "correlated subqueries"
    }

    fn rewrite(&self, statement: &mut Statement) -> Result<(), ParserError> {
        finish(statement.visit(&mut Subqueries))
    }
}

struct Subqueries;

impl VisitorMut for Subqueries {
    type Break = ParserError;

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<ParserError> {
        match rewrite(expr) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => ControlFlow::Break(e),
        }
    }
}

fn rewrite(expr: &mut Expr) -> Result<(), ParserError> {
    match expr {
        Expr::Subquery(query) if over_empty_catalog(query) => {
            *expr = Expr::Value(Value::Null.into());
        }
        Expr::Subquery(query) => {
            if let Some(mut hoisted) = hoist_outer_conditions(query)? {
                if let Expr::Case { conditions, .. } = &mut hoisted
                    && let Some(Expr::Subquery(q)) = conditions.first_mut().map(|w| &mut w.result)
                {
                    aggregate_scalar_subquery(q)?;
                }
                *expr = hoisted;
            } else {
                aggregate_scalar_subquery(query)?;
            }
        }
        Expr::Function(f)
            if f.name.to_string().eq_ignore_ascii_case("array")
                && matches!(&f.args, FunctionArguments::Subquery(_)) =>
        {
            let FunctionArguments::Subquery(q) = &f.args else {
                return Ok(());
            };
            if over_empty_catalog(q) {
                *expr = NULL_ARRAY.fill(&[], &[])?;
                return Ok(());
            }
            let mut aggregated = q.clone();
            *expr = if aggregate_subquery(&mut aggregated, &ARRAY_AGG)? {
                Expr::Subquery(aggregated)
            } else {
                ARRAY_OF.fill(&[], &[q])?
            };
        }
        _ => {}
    }
    Ok(())
}

const AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "array_agg",
    "string_agg",
    "bool_and",
    "bool_or",
    "every",
    "first_value",
    "last_value",
    "json_agg",
    "jsonb_agg",
];

/// A correlated scalar subquery as one aggregating with `first_value`; true when
/// rewritten.
pub(super) fn aggregate_scalar_subquery(query: &mut Query) -> Result<bool, ParserError> {
    aggregate_subquery(query, &FIRST_VALUE)
}

/// Turns a correlated one-column select into one aggregating with `func` (`first_value`
/// for a scalar subquery, `array_agg` for `ARRAY(SELECT ...)`), its ORDER BY moved into
/// the aggregate; true when rewritten.
fn aggregate_subquery(query: &mut Query, func: &Template) -> Result<bool, ParserError> {
    let first_value = std::ptr::eq(func, &FIRST_VALUE);
    let order_limit_one = match &query.limit_clause {
        None => false,
        Some(LimitClause::LimitOffset {
            limit: Some(Expr::Value(v)),
            offset: None,
            limit_by,
        }) if limit_by.is_empty() && matches!(&v.value, Value::Number(n, _) if n == "1") => true,
        Some(_) => return Ok(false),
    };
    if query.with.is_some() || query.fetch.is_some() || (order_limit_one && !first_value) {
        return Ok(false);
    }
    // The ORDER BY that moves into the aggregate.
    let order_by = if order_limit_one || !first_value {
        match &query.order_by {
            Some(o) => match &o.kind {
                OrderByKind::Expressions(exprs) => exprs.clone(),
                OrderByKind::All(_) => return Ok(false),
            },
            None => Vec::new(),
        }
    } else if query.order_by.is_some() {
        return Ok(false);
    } else {
        Vec::new()
    };
    let SetExpr::Select(select) = query.body.as_mut() else {
        return Ok(false);
    };
    if select.projection.len() != 1
        || select.distinct.is_some()
        || select.having.is_some()
        || !matches!(
            &select.group_by,
            GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty()
        )
        || !is_correlated(select)
    {
        return Ok(false);
    }
    let (inner, alias) = match &select.projection[0] {
        SelectItem::UnnamedExpr(e) => (e, None),
        SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.clone())),
        _ => return Ok(false),
    };
    if has_aggregate(inner) {
        return Ok(false);
    }
    let mut wrapped = func.fill(&[inner], &[])?;
    if !order_by.is_empty() {
        let Expr::Function(f) = &mut wrapped else {
            return Err(ParserError::ParserError(
                "an aggregate skeleton is not a function call".into(),
            ));
        };
        let FunctionArguments::List(list) = &mut f.args else {
            return Err(ParserError::ParserError(
                "an aggregate skeleton has no argument list".into(),
            ));
        };
        list.clauses.push(FunctionArgumentClause::OrderBy(order_by));
    }
    select.projection[0] = match alias {
        Some(alias) => SelectItem::ExprWithAlias {
            expr: wrapped,
            alias,
        },
        None => SelectItem::UnnamedExpr(wrapped),
    };
    query.order_by = None;
    if order_limit_one {
        query.limit_clause = None;
    }
    Ok(true)
}

/// `(SELECT x FROM t WHERE outer.flag AND t.k = outer.k)` as
/// `CASE WHEN (outer.flag) THEN (SELECT x FROM t WHERE t.k = outer.k) END`.
fn hoist_outer_conditions(query: &Query) -> Result<Option<Expr>, ParserError> {
    if query.with.is_some() {
        return Ok(None);
    }
    let SetExpr::Select(select) = query.body.as_ref() else {
        return Ok(None);
    };
    let (Some(local), Some(selection)) = (local_names(select), select.selection.as_ref()) else {
        return Ok(None);
    };
    let mut parts = Vec::new();
    conjuncts(selection, &mut parts);
    let (outer, rest): (Vec<Expr>, Vec<Expr>) =
        parts.into_iter().partition(|c| outer_only(c, &local));
    let and = |a, b| Expr::BinaryOp {
        left: Box::new(a),
        op: BinaryOperator::And,
        right: Box::new(b),
    };
    let Some(cond) = outer
        .into_iter()
        .map(|c| Expr::Nested(Box::new(c)))
        .reduce(and)
    else {
        return Ok(None);
    };
    let mut inner = query.clone();
    if let SetExpr::Select(sel) = inner.body.as_mut() {
        sel.selection = rest.into_iter().reduce(and);
    }
    let aggregates = select.projection.iter().any(|item| match item {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => has_aggregate(e),
        _ => false,
    });
    if aggregates {
        let mut none = inner.clone();
        if let SetExpr::Select(sel) = none.body.as_mut() {
            sel.selection = Some(Expr::Value(Value::Boolean(false).into()));
        }
        return HOISTED_AGGREGATE.fill(&[&cond], &[&inner, &none]).map(Some);
    }
    HOISTED.fill(&[&cond], &[&inner]).map(Some)
}

/// Catalog tables that hold no rows in tidepool.
const EMPTY_CATALOGS: &[&str] = &[
    "pg_sequence",
    "pg_trigger",
    "pg_inherits",
    "pg_enum",
    "pg_statistic_ext",
    "pg_partitioned_table",
    // Postgres' own role memberships (pg_monitor ...): none between tidepool's roles.
    "pg_auth_members",
];

/// Array columns of catalog tables that are NULL on every row in tidepool (options and
/// access privileges but tables', which `pg_class.relacl` holds), so
/// `unnest(c.reloptions)` yields no rows.
const NULL_CATALOG_COLUMNS: &[&str] = &[
    "reloptions",
    "nspacl",
    "proacl",
    "datacl",
    "attacl",
    "typacl",
    "attoptions",
    "proconfig",
    "rolconfig",
    "evttags",
    // Foreign servers, wrappers, tables and user mappings: tidepool has none.
    "srvoptions",
    "fdwoptions",
    "ftoptions",
    "umoptions",
    "attfdwoptions",
];

/// Whether `e` names one of [`NULL_CATALOG_COLUMNS`] (qualified or not).
fn null_catalog_column(e: &Expr) -> bool {
    let column = match e {
        Expr::CompoundIdentifier(parts) => parts.last(),
        Expr::Identifier(c) => Some(c),
        _ => None,
    };
    column.is_some_and(|c| NULL_CATALOG_COLUMNS.contains(&c.value.to_ascii_lowercase().as_str()))
}

/// A non-aggregating select whose FROM inner-joins an always-empty catalog table, or
/// unnests an always-NULL catalog array.
fn over_empty_catalog(query: &Query) -> bool {
    use datafusion::sql::sqlparser::ast::{JoinOperator, SetExpr};
    let SetExpr::Select(select) = query.body.as_ref() else {
        return false;
    };
    let [from] = select.from.as_slice() else {
        return false;
    };
    let empty = |f: &TableFactor| match f {
        TableFactor::Table {
            name,
            args: Some(args),
            ..
        } => {
            name.0.last().and_then(|p| p.as_ident()).is_some_and(|i| {
                i.value.eq_ignore_ascii_case("unnest")
                    || i.value.eq_ignore_ascii_case("pg_options_to_table")
            }) && matches!(args.args.as_slice(), [FunctionArg::Unnamed(FunctionArgExpr::Expr(e))]
                if null_catalog_column(e))
        }
        TableFactor::UNNEST { array_exprs, .. } => {
            matches!(array_exprs.as_slice(), [e] if null_catalog_column(e))
        }
        TableFactor::Table { name, .. } => {
            let parts: Vec<String> = name
                .0
                .iter()
                .filter_map(|p| p.as_ident().map(|i| i.value.to_ascii_lowercase()))
                .collect();
            match parts.as_slice() {
                [t] => EMPTY_CATALOGS.contains(&t.as_str()),
                [s, t] => s == "pg_catalog" && EMPTY_CATALOGS.contains(&t.as_str()),
                _ => false,
            }
        }
        _ => false,
    };
    let inner_joins_only = from.joins.iter().all(|j| {
        matches!(
            j.join_operator,
            JoinOperator::Join(_) | JoinOperator::Inner(_) | JoinOperator::CrossJoin(_)
        )
    });
    let any_empty = empty(&from.relation) || from.joins.iter().any(|j| empty(&j.relation));
    let aggregates = select.projection.iter().any(|item| match item {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => has_aggregate(e),
        _ => true,
    });
    inner_joins_only && any_empty && !aggregates && select.having.is_none()
}

/// Names and aliases the select's FROM defines, or None when it has relations this
/// module does not look into.
fn local_names(select: &Select) -> Option<HashSet<String>> {
    let mut local: HashSet<String> = HashSet::new();
    for t in &select.from {
        let factors = std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation));
        for f in factors {
            match f {
                TableFactor::Table { name, alias, .. } => {
                    if let Some(last) = name.0.last().and_then(|p| p.as_ident()) {
                        local.insert(last.value.to_ascii_lowercase());
                    }
                    if let Some(a) = alias {
                        local.insert(a.name.value.to_ascii_lowercase());
                    }
                }
                TableFactor::Derived { alias: Some(a), .. }
                | TableFactor::TableFunction { alias: Some(a), .. }
                | TableFactor::Function { alias: Some(a), .. } => {
                    local.insert(a.name.value.to_ascii_lowercase());
                }
                _ => return None,
            }
        }
    }
    Some(local)
}

fn conjuncts(e: &Expr, out: &mut Vec<Expr>) {
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            conjuncts(left, out);
            conjuncts(right, out);
        }
        Expr::Nested(inner)
            if matches!(
                inner.as_ref(),
                Expr::BinaryOp {
                    op: BinaryOperator::And,
                    ..
                }
            ) =>
        {
            conjuncts(inner, out)
        }
        other => out.push(other.clone()),
    }
}

/// Whether `e` reads outer columns only (qualified by names the subquery does not define).
fn outer_only(e: &Expr, local: &HashSet<String>) -> bool {
    let mut outer = false;
    let inner = visit_expressions(e, |x| match x {
        Expr::Identifier(_) | Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => {
            ControlFlow::Break(())
        }
        Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
            if local.contains(&parts[parts.len() - 2].value.to_ascii_lowercase()) {
                ControlFlow::Break(())
            } else {
                outer = true;
                ControlFlow::Continue(())
            }
        }
        _ => ControlFlow::Continue(()),
    })
    .is_break();
    outer && !inner
}

fn has_aggregate(expr: &Expr) -> bool {
    let found = visit_expressions(expr, |e| match e {
        Expr::Function(f)
            if f.over.is_none()
                && f.name.0.last().and_then(|p| p.as_ident()).is_some_and(|i| {
                    AGGREGATES.contains(&i.value.to_ascii_lowercase().as_str())
                }) =>
        {
            ControlFlow::Break(())
        }
        _ => ControlFlow::Continue(()),
    });
    found.is_break()
}

/// Whether the select refers to a qualifier its own FROM does not define.
fn is_correlated(select: &Select) -> bool {
    let Some(local) = local_names(select) else {
        return false;
    };
    let Some(selection) = &select.selection else {
        return false;
    };
    visit_expressions(selection, |e| match e {
        Expr::CompoundIdentifier(parts)
            if parts.len() >= 2
                && !local.contains(&parts[parts.len() - 2].value.to_ascii_lowercase()) =>
        {
            ControlFlow::Break(())
        }
        _ => ControlFlow::Continue(()),
    })
    .is_break()
}
