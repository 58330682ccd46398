//! Rewrites for SQL that drivers and BI tools send, beyond datafusion-pg-catalog's rules.
//!
//! Correlated scalar subqueries: Postgres runs `(SELECT rngtypid FROM pg_range WHERE
//! rngmultitypid = typ.oid)` per outer row and fails only if it finds more than one row;
//! DataFusion decorrelates such subqueries into joins and needs them aggregated. A
//! correlated subquery that selects one plain expression becomes `first_value(expr)`, and
//! one that ends in `ORDER BY ... LIMIT 1` becomes `first_value(expr ORDER BY ...)`: the
//! same answer whenever Postgres gives one (where Postgres would raise "more than one row
//! returned by a subquery", the first row is used).
//!
//! Conditions of such a subquery that read only outer columns (SQLAlchemy's
//! `WHERE pg_attribute.atthasdef AND ...`) are hoisted into `CASE WHEN cond THEN (subquery)
//! END`, which DataFusion can decorrelate.
//!
//! A scalar subquery over a catalog table that is always empty in tidepool (no sequences,
//! column defaults, triggers, inheritance, enums: `pg_sequence`, `pg_attrdef`, ...) and
//! without aggregates is NULL, and is replaced by NULL before planning; SQLAlchemy's
//! identity-column subquery reads outer columns in its select list, which DataFusion
//! cannot decorrelate.
//!
//! `generate_subscripts(a, 1)` (a set-returning function next to `unnest(a)` in
//! SQLAlchemy's key queries) becomes `unnest(range(1, array_length(a, 1) + 1))`, which
//! DataFusion unnests in step with `unnest(a)`.
//!
//! `'pg_catalog.array_in'::regproc` (pgjdbc) is looked up by datafusion-pg-catalog as
//! `proname = 'pg_catalog.array_in'`; the schema prefix is dropped from such comparisons
//! on `proname` and `typname` so the name matches.
//!
//! Functions in FROM the Postgres way (Grafana's search-path lookup): a scalar
//! function such as `string_to_array(...) s` becomes the one-row derived table
//! `(SELECT string_to_array(...) AS s) AS s`, and `generate_series(...) AS i` names its
//! column `i` as Postgres does.
//!
//! `x IN (SELECT ...)` inside a CASE or a select list (Grafana's search-path check):
//! DataFusion turns IN-subqueries into joins only where they filter rows, so there it
//! becomes `array_has((SELECT array_agg(v) FROM (SELECT ...) AS __in(v)), x)`.
//!
//! `information_schema._pg_expandarray(a)` (pgjdbc's key and index queries) returns the
//! records `(x, n)`: element and position. `(_pg_expandarray(a)).n` becomes
//! `unnest(range(1, cardinality(a) + 1))`, the bare call `unnest(a)`, and a later `(k).x`
//! of its alias just `k`; the unnests of one select list advance together, as Postgres'
//! set-returning functions do. Only in statements that call `_pg_expandarray`.
//!
//! `ARRAY(SELECT e FROM ... WHERE <correlated> ORDER BY o)` (psql `\du`, `\dp`) becomes
//! `(SELECT array_agg(e ORDER BY o) FROM ... WHERE ...)`, which DataFusion decorrelates;
//! an uncorrelated one `(SELECT array_agg(__a.__v) FROM (SELECT ...) AS __a (__v))`. One
//! over an always-empty catalog, or unnesting an always-NULL catalog array
//! (`unnest(tc.reloptions)` in psql `\d+`), is `CAST(NULL AS TEXT[])`.
//!
//! `array_to_string(x.nspacl, sep)` over access-privilege columns, which the bundled
//! catalogs keep as `{...}` text, calls `pg_acl_to_string`; `pg_get_viewdef(oid)` looks
//! the definition up in `pg_views` by the view's `pg_class` oid. `col_description` and
//! `obj_description` are NULL (tidepool stores no comments) without planning their
//! arguments.
//!
//! `LIKE ... ESCAPE 'c'`: DataFusion escapes with a backslash only; SQLAlchemy escapes
//! with `/`. The pattern is translated by `pg_like_escape(pattern, 'c')` at run time (so
//! bound parameters work too) and the ESCAPE clause dropped.

use std::collections::HashSet;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, LimitClause, Query, Select, SelectItem, SetExpr, Statement,
    TableFactor, Value, VisitMut, VisitorMut, visit_expressions,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// `pg_like_escape(pattern, escape)`: a LIKE pattern escaped with `escape` as the same
/// pattern escaped with a backslash.
pub fn like_escape_udf() -> datafusion::logical_expr::ScalarUDF {
    use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
    use datafusion::arrow::compute::cast;
    use datafusion::arrow::datatypes::DataType;
    use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
    use std::sync::Arc;
    create_udf(
        "pg_like_escape",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let patterns = cast(&arrays[0], &DataType::Utf8)?;
            let escapes = cast(&arrays[1], &DataType::Utf8)?;
            let (patterns, escapes) = (patterns.as_string::<i32>(), escapes.as_string::<i32>());
            let mut out = StringBuilder::with_capacity(patterns.len(), 64);
            for i in 0..patterns.len() {
                if patterns.is_null(i) || escapes.is_null(i) {
                    out.append_null();
                    continue;
                }
                out.append_value(translate_like(
                    patterns.value(i),
                    escapes.value(i).chars().next(),
                ));
            }
            let array: ArrayRef = Arc::new(out.finish());
            Ok(
                if args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_))) {
                    ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(
                        &array, 0,
                    )?)
                } else {
                    ColumnarValue::Array(array)
                },
            )
        }),
    )
}

fn translate_like(pattern: &str, escape: Option<char>) -> String {
    let mut out = String::with_capacity(pattern.len() + 4);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if Some(c) == escape {
            match chars.next() {
                Some(x @ ('%' | '_' | '\\')) => {
                    out.push('\\');
                    out.push(x);
                }
                Some(x) => out.push(x),
                None => {}
            }
        } else if c == '\\' {
            out.push_str("\\\\");
        } else {
            out.push(c);
        }
    }
    out
}

/// Applies every rewrite of this module to `statement`.
pub fn rewrite(statement: &mut Statement) {
    if statement.to_string().contains("_pg_expandarray") {
        let _ = statement.visit(&mut ExpandArray);
    }
    let _ = statement.visit(&mut AggregateCorrelatedSubqueries);
}

struct AggregateCorrelatedSubqueries;

struct ExpandArray;

fn expandarray_arg(e: &Expr) -> Option<String> {
    let Expr::Function(f) = e else {
        return None;
    };
    let named = f
        .name
        .0
        .last()
        .and_then(|p| p.as_ident())
        .is_some_and(|i| i.value.eq_ignore_ascii_case("_pg_expandarray"));
    match (&f.args, named) {
        (datafusion::sql::sqlparser::ast::FunctionArguments::List(list), true)
            if list.args.len() == 1 =>
        {
            Some(list.args[0].to_string())
        }
        _ => None,
    }
}

impl VisitorMut for ExpandArray {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let text = match &*expr {
            Expr::CompoundFieldAccess { root, access_chain } => {
                let field = match access_chain.as_slice() {
                    [datafusion::sql::sqlparser::ast::AccessExpr::Dot(Expr::Identifier(i))] => {
                        i.value.to_ascii_lowercase()
                    }
                    _ => return ControlFlow::Continue(()),
                };
                let inner = match root.as_ref() {
                    Expr::Nested(inner) => inner.as_ref(),
                    other => other,
                };
                match (expandarray_arg(inner), field.as_str(), inner) {
                    (Some(a), "n", _) => {
                        format!("unnest(range(1, CAST(cardinality({a}) AS BIGINT) + 1))")
                    }
                    (Some(a), "x", _) => format!("unnest({a})"),
                    (None, "x", Expr::Identifier(_) | Expr::CompoundIdentifier(_)) => {
                        inner.to_string()
                    }
                    _ => return ControlFlow::Continue(()),
                }
            }
            e => match expandarray_arg(e) {
                Some(a) => format!("unnest({a})"),
                None => return ControlFlow::Continue(()),
            },
        };
        if let Ok(new) = Parser::new(&PostgreSqlDialect {})
            .try_with_sql(&text)
            .and_then(|mut p| p.parse_expr())
        {
            *expr = new;
        }
        ControlFlow::Continue(())
    }
}

/// Scalar functions that Postgres lets a FROM clause use as a one-row table.
const SCALAR_IN_FROM: &[&str] = &[
    "string_to_array",
    "regexp_split_to_array",
    "current_schemas",
    "parse_ident",
];

/// Table functions whose single column Postgres names after the alias.
const ALIAS_NAMES_COLUMN: &[&str] = &["generate_series", "unnest"];

/// `generate_series(...) AS i` whose alias the select uses as a column (`s[i]`), and never
/// as `i.value` (DataFusion's column name), gets the column list `AS i (i)`.
fn name_series_columns(select: &mut Select) {
    let mut bare: HashSet<String> = HashSet::new();
    let mut qualified: HashSet<String> = HashSet::new();
    let mut note = |e: &Expr| {
        let _ = visit_expressions(e, |x| {
            match x {
                Expr::Identifier(i) => {
                    bare.insert(i.value.to_ascii_lowercase());
                }
                Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                    qualified.insert(parts[parts.len() - 2].value.to_ascii_lowercase());
                }
                _ => {}
            }
            ControlFlow::<()>::Continue(())
        });
    };
    for item in &select.projection {
        if let SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } = item {
            note(e);
        }
    }
    if let Some(w) = &select.selection {
        note(w);
    }
    for t in &mut select.from {
        let factors =
            std::iter::once(&mut t.relation).chain(t.joins.iter_mut().map(|j| &mut j.relation));
        for f in factors {
            if let TableFactor::Table {
                name,
                alias: Some(alias),
                args: Some(_),
                ..
            } = f
                && name.0.last().and_then(|p| p.as_ident()).is_some_and(|i| {
                    ALIAS_NAMES_COLUMN.contains(&i.value.to_ascii_lowercase().as_str())
                })
                && alias.columns.is_empty()
            {
                let a = alias.name.value.to_ascii_lowercase();
                if bare.contains(&a) && !qualified.contains(&a) {
                    alias.columns = vec![
                        datafusion::sql::sqlparser::ast::TableAliasColumnDef::from_name(
                            alias.name.value.clone(),
                        ),
                    ];
                }
            }
        }
    }
}

fn rewrite_function_in_from(factor: &mut TableFactor) {
    let TableFactor::Table {
        name,
        alias: Some(alias),
        args: Some(args),
        ..
    } = factor
    else {
        return;
    };
    let Some(fname) = name
        .0
        .last()
        .and_then(|p| p.as_ident())
        .map(|i| i.value.to_ascii_lowercase())
    else {
        return;
    };
    if !SCALAR_IN_FROM.contains(&fname.as_str()) || !alias.columns.is_empty() {
        return;
    }
    let call = format!(
        "{name}({})",
        args.args
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let text = format!(
        "SELECT * FROM (SELECT {call} AS {a}) AS {a}",
        a = alias.name
    );
    if let Ok(mut statements) = Parser::parse_sql(&PostgreSqlDialect {}, &text)
        && let Some(Statement::Query(q)) = statements.pop()
        && let SetExpr::Select(select) = *q.body
        && let Some(from) = select.from.into_iter().next()
    {
        *factor = from.relation;
    }
}

impl VisitorMut for AggregateCorrelatedSubqueries {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let SetExpr::Select(select) = query.body.as_mut() {
            name_series_columns(select);
            for item in &mut select.projection {
                if let SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } = item
                {
                    in_subqueries_as_arrays(e);
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        rewrite_function_in_from(factor);
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        match expr {
            Expr::Case { .. } => in_subqueries_as_arrays(expr),
            Expr::Subquery(query) if over_empty_catalog(query) => {
                *expr = Expr::Value(Value::Null.into());
            }
            Expr::Subquery(query) => {
                if let Some(hoisted) = hoist_outer_conditions(query) {
                    *expr = hoisted;
                    if let Expr::Case { conditions, .. } = expr
                        && let Some(Expr::Subquery(q)) =
                            conditions.first_mut().map(|w| &mut w.result)
                    {
                        aggregate_scalar_subquery(q);
                    }
                } else {
                    aggregate_scalar_subquery(query);
                }
            }
            Expr::Like {
                pattern,
                escape_char,
                ..
            }
            | Expr::ILike {
                pattern,
                escape_char,
                ..
            } => {
                if let Some(Value::SingleQuotedString(c)) = escape_char.as_ref().map(|v| &v.value)
                    && c != "\\"
                    && let Ok(call) = Parser::new(&PostgreSqlDialect {})
                        .try_with_sql(&format!(
                            "pg_like_escape({pattern}, '{}')",
                            c.replace('\'', "''")
                        ))
                        .and_then(|mut p| p.parse_expr())
                {
                    **pattern = call;
                    *escape_char = None;
                }
            }
            Expr::BinaryOp {
                left,
                op: datafusion::sql::sqlparser::ast::BinaryOperator::Eq,
                right,
            } if is_catalog_name_column(left) => {
                if let Expr::Value(v) = right.as_mut()
                    && let Value::SingleQuotedString(text) = &mut v.value
                    && let Some(bare) = text.strip_prefix("pg_catalog.")
                {
                    *text = bare.to_string();
                }
            }
            Expr::Function(f)
                if matches!(
                    &f.args,
                    datafusion::sql::sqlparser::ast::FunctionArguments::Subquery(_)
                ) && f.name.to_string().eq_ignore_ascii_case("array") =>
            {
                if let datafusion::sql::sqlparser::ast::FunctionArguments::Subquery(q) = &f.args
                    && over_empty_catalog(q)
                    && let Ok(e) = Parser::new(&PostgreSqlDialect {})
                        .try_with_sql("CAST(NULL AS TEXT[])")
                        .and_then(|mut p| p.parse_expr())
                {
                    *expr = e;
                } else if let datafusion::sql::sqlparser::ast::FunctionArguments::Subquery(q) =
                    &f.args
                    && let mut q = q.clone()
                    && aggregate_subquery(&mut q, "array_agg")
                {
                    *expr = Expr::Subquery(q);
                } else if let datafusion::sql::sqlparser::ast::FunctionArguments::Subquery(q) =
                    &f.args
                    && let Ok(e) = Parser::new(&PostgreSqlDialect {})
                        .try_with_sql(&format!(
                            "(SELECT array_agg(__a.__v) FROM ({q}) AS __a (__v))"
                        ))
                        .and_then(|mut p| p.parse_expr())
                {
                    *expr = e;
                }
            }
            Expr::Function(f)
                if f.name
                    .0
                    .last()
                    .and_then(|p| p.as_ident())
                    .is_some_and(|i| i.value.eq_ignore_ascii_case("pg_get_viewdef")) =>
            {
                // The definition pg_views keeps, looked up by the view's pg_class oid.
                if let datafusion::sql::sqlparser::ast::FunctionArguments::List(list) = &f.args
                    && let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(view))) =
                        list.args.first()
                    && let Ok(Expr::Subquery(mut q)) = Parser::new(&PostgreSqlDialect {})
                        .try_with_sql(&format!(
                            "(SELECT __v.definition FROM pg_catalog.pg_views AS __v \
                             JOIN pg_catalog.pg_namespace AS __n ON __n.nspname = __v.schemaname \
                             JOIN pg_catalog.pg_class AS __c ON __c.relname = __v.viewname \
                             AND __c.relnamespace = __n.oid WHERE __c.oid = CAST({view} AS BIGINT))"
                        ))
                        .and_then(|mut p| p.parse_expr())
                {
                    aggregate_scalar_subquery(&mut q);
                    *expr = Expr::Subquery(q);
                }
            }
            Expr::Function(f)
                if f.name.0.last().and_then(|p| p.as_ident()).is_some_and(|i| {
                    i.value.eq_ignore_ascii_case("col_description")
                        || i.value.eq_ignore_ascii_case("obj_description")
                }) =>
            {
                // No comments are stored: NULL, without planning the arguments (Metabase
                // passes `format('%I.%I', ...)::regclass` of outer columns).
                if let Ok(e) = Parser::new(&PostgreSqlDialect {})
                    .try_with_sql("CAST(NULL AS TEXT)")
                    .and_then(|mut p| p.parse_expr())
                {
                    *expr = e;
                }
            }
            Expr::Function(f) if is_acl_to_string(f) => {
                f.name = datafusion::sql::sqlparser::ast::ObjectName::from(vec![
                    datafusion::sql::sqlparser::ast::Ident::new("pg_acl_to_string"),
                ]);
            }
            Expr::Function(f)
                if f.name
                    .0
                    .last()
                    .and_then(|p| p.as_ident())
                    .is_some_and(|i| i.value.eq_ignore_ascii_case("generate_subscripts")) =>
            {
                if let datafusion::sql::sqlparser::ast::FunctionArguments::List(list) = &f.args
                    && let [array, dim] = list.args.as_slice()
                    && let Ok(e) = Parser::new(&PostgreSqlDialect {})
                        .try_with_sql(&format!(
                            "unnest(range(1, CAST(array_length({array}, {dim}) AS BIGINT) + 1))"
                        ))
                        .and_then(|mut p| p.parse_expr())
                {
                    *expr = e;
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// `array_to_string(x.nspacl, sep)` over an access-privilege column (`...acl`), which
/// the bundled catalogs store as text.
fn is_acl_to_string(f: &datafusion::sql::sqlparser::ast::Function) -> bool {
    use datafusion::sql::sqlparser::ast::FunctionArguments;
    f.name
        .0
        .last()
        .and_then(|p| p.as_ident())
        .is_some_and(|i| i.value.eq_ignore_ascii_case("array_to_string"))
        && matches!(&f.args, FunctionArguments::List(list) if matches!(
            list.args.first(),
            Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(
                Expr::CompoundIdentifier(parts)
            ))) if parts.last().is_some_and(|c| c.value.to_ascii_lowercase().ends_with("acl"))
        ) || matches!(
            list.args.first(),
            Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Identifier(c))))
                if c.value.to_ascii_lowercase().ends_with("acl")
        ))
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

fn aggregate_scalar_subquery(query: &mut Query) {
    aggregate_subquery(query, "first_value");
}

/// Turns a correlated one-column select into one aggregating with `func` (`first_value`
/// for a scalar subquery, `array_agg` for `ARRAY(SELECT ...)`), its ORDER BY moved into
/// the aggregate; true when rewritten.
fn aggregate_subquery(query: &mut Query, func: &str) -> bool {
    let order_limit_one = match &query.limit_clause {
        None => false,
        Some(LimitClause::LimitOffset {
            limit: Some(Expr::Value(v)),
            offset: None,
            limit_by,
        }) if limit_by.is_empty() && matches!(&v.value, Value::Number(n, _) if n == "1") => true,
        Some(_) => return false,
    };
    if query.with.is_some() || query.fetch.is_some() || (order_limit_one && func != "first_value") {
        return false;
    }
    let order_by = if order_limit_one {
        match &query.order_by {
            Some(o) => Some(o.to_string()),
            None => Some(String::new()),
        }
    } else if func != "first_value" {
        query.order_by.as_ref().map(|o| o.to_string())
    } else if query.order_by.is_some() {
        return false;
    } else {
        None
    };
    let SetExpr::Select(select) = query.body.as_mut() else {
        return false;
    };
    if select.projection.len() != 1
        || select.distinct.is_some()
        || select.having.is_some()
        || !matches!(
            &select.group_by,
            datafusion::sql::sqlparser::ast::GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty()
        )
        || !is_correlated(select)
    {
        return false;
    }
    let (inner, alias) = match &select.projection[0] {
        SelectItem::UnnamedExpr(e) => (e.clone(), None),
        SelectItem::ExprWithAlias { expr, alias } => (expr.clone(), Some(alias.clone())),
        _ => return false,
    };
    if has_aggregate(&inner) {
        return false;
    }
    let text = match order_by.as_deref() {
        Some(o) if !o.is_empty() => format!("{func}({inner} {o})"),
        _ => format!("{func}({inner})"),
    };
    let Ok(wrapped) = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&text)
        .and_then(|mut p| p.parse_expr())
    else {
        return false;
    };
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
    true
}

/// Rewrites the IN-subqueries of `e` (not those inside nested subqueries) as `array_has`.
fn in_subqueries_as_arrays(e: &mut Expr) {
    let _ = datafusion::sql::sqlparser::ast::visit_expressions_mut(e, |x| {
        if let Expr::InSubquery {
            expr,
            subquery,
            negated,
        } = x
        {
            let text = format!(
                "{}array_has((SELECT array_agg(__in.__v) FROM ({subquery}) AS __in (__v)), {expr})",
                if *negated { "NOT " } else { "" }
            );
            if let Ok(new) = Parser::new(&PostgreSqlDialect {})
                .try_with_sql(&text)
                .and_then(|mut p| p.parse_expr())
            {
                *x = new;
            }
        }
        ControlFlow::<()>::Continue(())
    });
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

/// Catalog tables that hold no rows in tidepool.
const EMPTY_CATALOGS: &[&str] = &[
    "pg_sequence",
    "pg_attrdef",
    "pg_trigger",
    "pg_inherits",
    "pg_enum",
    "pg_statistic_ext",
    "pg_partitioned_table",
    "pg_policy",
    // Postgres' own role memberships (pg_monitor ...): none between tidepool's roles.
    "pg_auth_members",
];

/// Array columns of catalog tables that are NULL on every row in tidepool (options and
/// access privileges), so `unnest(c.reloptions)` yields no rows.
const NULL_CATALOG_COLUMNS: &[&str] = &[
    "reloptions",
    "relacl",
    "nspacl",
    "proacl",
    "datacl",
    "attacl",
    "typacl",
    "attoptions",
    "proconfig",
    "rolconfig",
];

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
            name.0
                .last()
                .and_then(|p| p.as_ident())
                .is_some_and(|i| i.value.eq_ignore_ascii_case("unnest"))
                && matches!(args.args.as_slice(), [FunctionArg::Unnamed(FunctionArgExpr::Expr(
                    Expr::CompoundIdentifier(parts),
                ))] if parts.last().is_some_and(|c| NULL_CATALOG_COLUMNS
                    .contains(&c.value.to_ascii_lowercase().as_str())))
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
            op: datafusion::sql::sqlparser::ast::BinaryOperator::And,
            right,
        } => {
            conjuncts(left, out);
            conjuncts(right, out);
        }
        Expr::Nested(inner)
            if matches!(
                inner.as_ref(),
                Expr::BinaryOp {
                    op: datafusion::sql::sqlparser::ast::BinaryOperator::And,
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

/// `(SELECT x FROM t WHERE outer.flag AND t.k = outer.k)` as
/// `CASE WHEN outer.flag THEN (SELECT x FROM t WHERE t.k = outer.k) END`.
fn hoist_outer_conditions(query: &Query) -> Option<Expr> {
    if query.with.is_some() {
        return None;
    }
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    let local = local_names(select)?;
    let mut parts = Vec::new();
    conjuncts(select.selection.as_ref()?, &mut parts);
    let (outer, rest): (Vec<Expr>, Vec<Expr>) =
        parts.into_iter().partition(|c| outer_only(c, &local));
    if outer.is_empty() {
        return None;
    }
    let mut inner = query.clone();
    if let SetExpr::Select(sel) = inner.body.as_mut() {
        sel.selection = rest.into_iter().reduce(|a, b| Expr::BinaryOp {
            left: Box::new(a),
            op: datafusion::sql::sqlparser::ast::BinaryOperator::And,
            right: Box::new(b),
        });
    }
    let cond = outer
        .iter()
        .map(|c| format!("({c})"))
        .collect::<Vec<_>>()
        .join(" AND ");
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&format!("CASE WHEN {cond} THEN ({inner}) END"))
        .and_then(|mut p| p.parse_expr())
        .ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> String {
        let mut s = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0);
        rewrite(&mut s);
        s.to_string()
    }

    #[test]
    fn correlated_subqueries_are_aggregated() {
        assert_eq!(
            rewritten(
                "SELECT CASE WHEN t.typtype = 'm' THEN (SELECT rngtypid FROM pg_range WHERE rngmultitypid = t.oid) END FROM pg_type AS t"
            ),
            "SELECT CASE WHEN t.typtype = 'm' THEN (SELECT first_value(rngtypid) FROM pg_range WHERE rngmultitypid = t.oid) END FROM pg_type AS t"
        );
        assert_eq!(
            rewritten(
                "SELECT (SELECT d.description FROM pg_description d WHERE d.objoid = c.oid ORDER BY d.objsubid LIMIT 1) AS x FROM pg_class c"
            ),
            "SELECT (SELECT first_value(d.description ORDER BY d.objsubid) FROM pg_description d WHERE d.objoid = c.oid) AS x FROM pg_class c"
        );
    }

    #[test]
    fn conditions_on_outer_columns_are_hoisted() {
        assert_eq!(
            rewritten(
                "SELECT CASE WHEN a.atthasdef THEN (SELECT d.description FROM pg_description d WHERE a.atthasdef AND d.objoid = a.attrelid) END FROM pg_attribute a"
            ),
            "SELECT CASE WHEN a.atthasdef THEN CASE WHEN (a.atthasdef) THEN (SELECT first_value(d.description) FROM pg_description d WHERE d.objoid = a.attrelid) END END FROM pg_attribute a"
        );
    }

    #[test]
    fn subqueries_over_empty_catalogs_are_null() {
        assert_eq!(
            rewritten(
                "SELECT (SELECT json_build_object('a', a.x) FROM pg_catalog.pg_sequence WHERE seqrelid = a.y) FROM pg_attribute a"
            ),
            "SELECT NULL FROM pg_attribute a"
        );
        let counted = "SELECT (SELECT count(*) FROM pg_sequence) FROM pg_attribute AS a";
        assert_eq!(rewritten(counted), counted);
    }

    #[test]
    fn generate_subscripts_becomes_unnest_of_a_range() {
        assert_eq!(
            rewritten(
                "SELECT unnest(i.indkey) AS attnum, generate_subscripts(i.indkey, 1) AS ord FROM pg_index i"
            ),
            "SELECT unnest(i.indkey) AS attnum, unnest(range(1, CAST(array_length(i.indkey, 1) AS BIGINT) + 1)) AS ord FROM pg_index i"
        );
    }

    #[test]
    fn qualified_function_names_match_proname() {
        assert_eq!(
            rewritten("SELECT oid FROM pg_catalog.pg_proc WHERE proname = 'pg_catalog.array_in'"),
            "SELECT oid FROM pg_catalog.pg_proc WHERE proname = 'array_in'"
        );
    }

    #[test]
    fn functions_in_from_become_tables() {
        assert_eq!(
            rewritten("SELECT s[i] FROM generate_series(1, 2) AS i, string_to_array('a,b', ',') s"),
            "SELECT s[i] FROM generate_series(1, 2) AS i (i), (SELECT string_to_array('a,b', ',') AS s) AS s"
        );
    }

    #[test]
    fn in_subqueries_outside_filters_become_array_has() {
        assert_eq!(
            rewritten(
                "SELECT CASE WHEN a IN (SELECT b FROM t) THEN 1 END, a IN (SELECT b FROM t) FROM u WHERE a IN (SELECT b FROM t)"
            ),
            "SELECT CASE WHEN array_has((SELECT array_agg(__in.__v) FROM (SELECT b FROM t) AS __in (__v)), a) THEN 1 END, array_has((SELECT array_agg(__in.__v) FROM (SELECT b FROM t) AS __in (__v)), a) FROM u WHERE a IN (SELECT b FROM t)"
        );
    }

    #[test]
    fn series_aliases_used_as_values_keep_datafusion_names() {
        let same = "SELECT count(*) FROM generate_series(1, 20) a WHERE a.value % 7 = 0";
        assert_eq!(rewritten(same), same);
    }

    #[test]
    fn expandarray_becomes_unnests() {
        assert_eq!(
            rewritten(
                "SELECT (information_schema._pg_expandarray(i.indkey)).n AS k, information_schema._pg_expandarray(i.indkey) AS keys FROM t WHERE r.a = (r.keys).x"
            ),
            "SELECT unnest(range(1, CAST(cardinality(i.indkey) AS BIGINT) + 1)) AS k, unnest(i.indkey) AS keys FROM t WHERE r.a = r.keys"
        );
    }

    #[test]
    fn array_subqueries_become_array_agg() {
        assert_eq!(
            rewritten("SELECT ARRAY(SELECT a FROM t ORDER BY a) AS x"),
            "SELECT (SELECT array_agg(__a.__v) FROM (SELECT a FROM t ORDER BY a) AS __a (__v)) AS x"
        );
    }

    #[test]
    fn correlated_array_subqueries_aggregate_in_place() {
        assert_eq!(
            rewritten(
                "SELECT ARRAY(SELECT attname FROM pg_attribute a WHERE a.attrelid = c.oid ORDER BY attnum) FROM pg_class c"
            ),
            "SELECT (SELECT array_agg(attname ORDER BY attnum) FROM pg_attribute a WHERE a.attrelid = c.oid) FROM pg_class c"
        );
    }

    #[test]
    fn unnest_of_always_null_catalog_arrays_is_null() {
        assert_eq!(
            rewritten(
                "SELECT array_to_string(c.reloptions || array(select 'toast.' || x from pg_catalog.unnest(tc.reloptions) x), ', ') FROM pg_class c"
            ),
            "SELECT array_to_string(c.reloptions || CAST(NULL AS TEXT[]), ', ') FROM pg_class c"
        );
        assert_eq!(
            rewritten("SELECT pg_catalog.array_to_string(n.nspacl, E'\\n') FROM pg_namespace n"),
            "SELECT pg_acl_to_string(n.nspacl, E'\\n') FROM pg_namespace n"
        );
    }

    #[test]
    fn like_patterns_translate() {
        assert_eq!(translate_like("pg/_%", Some('/')), "pg\\_%");
        assert_eq!(translate_like("a//b\\c", Some('/')), "a/b\\\\c");
        // An empty ESCAPE turns escaping off.
        assert_eq!(translate_like("a_b", None), "a_b");
    }

    #[test]
    fn like_escape_characters_become_backslashes() {
        assert_eq!(
            rewritten("SELECT 1 FROM n WHERE n.nspname NOT LIKE 'pg/_' || '%' ESCAPE '/'"),
            "SELECT 1 FROM n WHERE n.nspname NOT LIKE pg_like_escape('pg/_' || '%', '/')"
        );
        let same = "SELECT 1 FROM n WHERE a LIKE 'x\\_%' ESCAPE '\\'";
        assert_eq!(rewritten(same), same);
    }

    #[test]
    fn other_subqueries_are_left_alone() {
        for sql in [
            "SELECT (SELECT max(a) FROM t WHERE t.b = u.b) FROM u",
            "SELECT (SELECT a FROM t WHERE t.b = 1) FROM u",
            "SELECT (SELECT a FROM t WHERE t.b = u.b LIMIT 2) FROM u",
            "SELECT (SELECT count(*) + 1 FROM t WHERE t.b = u.b) FROM u",
        ] {
            let mut expected = Parser::parse_sql(&PostgreSqlDialect {}, sql)
                .unwrap()
                .remove(0)
                .to_string();
            expected = expected.replace("  ", " ");
            assert_eq!(rewritten(sql), expected, "{sql}");
        }
    }
}
