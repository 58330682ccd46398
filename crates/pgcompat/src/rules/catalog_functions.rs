//! Catalog functions answered the way tidepool keeps the catalogs:
//! - `array_to_string(x.nspacl, sep)` over access-privilege columns, which the bundled
//!   catalogs keep as `{...}` text, calls `pg_acl_to_string`;
//! - `pg_get_viewdef(oid)` looks the definition up in `pg_views` by the view's `pg_class`
//!   oid;
//! - `col_description(oid, attnum)` and `obj_description(oid, 'pg_class' | 'pg_proc' |
//!   ...)` look the comment up in `pg_description` (which holds the lake's comments,
//!   [`crate::pg_description`]) when their arguments are columns, literals or casts of
//!   them; other arguments (Metabase passes `format('%I.%I', ...)::regclass` of outer
//!   columns, which DataFusion cannot plan in a correlated subquery) give NULL;
//! - `to_regclass(name)`, `to_regnamespace`, `to_regtype`, `to_regproc` read the
//!   catalogs for the oid, NULL when there is none (DuckDB's postgres scanner);
//! - `x::regtype::text` gives the type's name (pgcli's function list), `x::regclass::text`
//!   the relation's;
//! - subscripts of `int2vector` / `oidvector` columns (`i.indkey[ia.attnum - 1]`,
//!   psqlODBC's `SQLPrimaryKeys`) count from 0, as in PostgreSQL;
//! - a select-list `generate_series(a, b)` returns rows, as PostgreSQL's set-returning
//!   function does (DataFusion's returns one list);
//! - `generate_subscripts(a, 1)` (a set-returning function next to `unnest(a)` in
//!   SQLAlchemy's key queries) becomes `unnest(range(1, array_length(a, 1) + 1))`, which
//!   DataFusion unnests in step with `unnest(a)`;
//! - `'pg_catalog.array_in'::regproc` (pgjdbc) is looked up by datafusion-pg-catalog as
//!   `proname = 'pg_catalog.array_in'`; the schema prefix is dropped from such
//!   comparisons on `proname` and `typname` so the name matches.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, Ident,
    ObjectName, Query, SelectItem, SetExpr, Statement, Value, VisitMut, VisitorMut,
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
pub(super) static COLUMN_COMMENT: Template = Template::new(
    "(SELECT max(__d.description) FROM pg_catalog.pg_description AS __d \
     WHERE __d.objoid = CAST(__e1 AS INT) AND __d.objsubid = CAST(__e2 AS INT) \
     AND __d.classoid = 1259)",
);
pub(super) static OBJECT_COMMENT: Template = Template::new(
    "(SELECT max(__d.description) FROM pg_catalog.pg_description AS __d \
     WHERE __d.objoid = CAST(__e1 AS INT) AND __d.objsubid = 0 AND __d.classoid = __e2)",
);
/// `to_regclass(name)`: the relation's oid, or NULL when there is none (no error),
/// a qualified name in its schema, an unqualified one among the catalog tables (which
/// have PostgreSQL's oids, below 16384, and come first as in PostgreSQL's search) and
/// in the current schema.
pub(super) static REGCLASS: Template = Template::new(
    "(SELECT min(__c.oid) FROM pg_catalog.pg_class AS __c \
     JOIN pg_catalog.pg_namespace AS __n ON __c.relnamespace = __n.oid \
     WHERE CASE WHEN array_length(parse_ident(CAST(__e1 AS TEXT)), 1) = 2 \
     THEN __n.nspname = parse_ident(CAST(__e1 AS TEXT))[1] \
     AND __c.relname = parse_ident(CAST(__e1 AS TEXT))[2] \
     WHEN array_length(parse_ident(CAST(__e1 AS TEXT)), 1) = 1 \
     THEN (__n.nspname = current_schema() \
     OR (__n.nspname = 'pg_catalog' AND __c.oid < 16384)) \
     AND __c.relname = parse_ident(CAST(__e1 AS TEXT))[1] ELSE false END)",
);
/// `to_regnamespace(name)`.
pub(super) static REGNAMESPACE: Template = Template::new(
    "(SELECT max(__n.oid) FROM pg_catalog.pg_namespace AS __n \
     WHERE __n.nspname = CAST(__e1 AS TEXT))",
);
/// `to_regtype(name)` (a `pg_catalog.` prefix is the same type).
pub(super) static REGTYPE: Template = Template::new(
    "(SELECT max(__t.oid) FROM pg_catalog.pg_type AS __t \
     WHERE __t.typname = regexp_replace(CAST(__e1 AS TEXT), '^pg_catalog\\.', ''))",
);
/// `to_regproc(name)` (`name` or `schema.name`): NULL also when the name is overloaded,
/// as PostgreSQL's.
pub(super) static REGPROC: Template = Template::new(
    "(SELECT CASE WHEN count(*) = 1 THEN max(__p.oid) END FROM pg_catalog.pg_proc AS __p \
     JOIN pg_catalog.pg_namespace AS __n ON __p.pronamespace = __n.oid \
     WHERE CASE WHEN array_length(parse_ident(CAST(__e1 AS TEXT)), 1) = 2 \
     THEN __n.nspname = parse_ident(CAST(__e1 AS TEXT))[1] \
     AND __p.proname = parse_ident(CAST(__e1 AS TEXT))[2] \
     WHEN array_length(parse_ident(CAST(__e1 AS TEXT)), 1) = 1 \
     THEN __p.proname = parse_ident(CAST(__e1 AS TEXT))[1] ELSE false END)",
);
/// `x::regtype::text`: the type's name as PostgreSQL prints a regtype (format_type's,
/// else the catalog's name; NULL for NULL), where the cast alone gave the oid's digits.
pub(super) static TYPE_NAME: Template = Template::new(
    "CASE WHEN __e1 IS NULL THEN NULL \
     WHEN format_type(__e1, NULL) NOT LIKE 'oid(%' THEN format_type(__e1, NULL) \
     ELSE (SELECT max(__t.typname) FROM pg_catalog.pg_type AS __t WHERE __t.oid = __e1) END",
);
/// `x::regclass::text`: the relation's name as PostgreSQL prints a regclass (qualified
/// unless its schema is pg_catalog or the current one; the oid's digits when there is no
/// such relation; NULL for NULL).
pub(super) static CLASS_NAME: Template = Template::new(
    "CASE WHEN __e1 IS NULL THEN NULL ELSE coalesce((SELECT max(CASE \
     WHEN __n.nspname = 'pg_catalog' OR __n.nspname = current_schema() \
     THEN quote_ident(__c.relname) \
     ELSE quote_ident(__n.nspname) || '.' || quote_ident(__c.relname) END) \
     FROM pg_catalog.pg_class AS __c \
     JOIN pg_catalog.pg_namespace AS __n ON __c.relnamespace = __n.oid \
     WHERE __c.oid = __e1), CAST(__e1 AS TEXT)) END",
);
/// The 1-based subscript of a 0-based vector's element `__e1`.
pub(super) static NEXT: Template = Template::new("(__e1) + 1");
/// A select-list `generate_series(...)`, one row per value.
pub(super) static SERIES_ROWS: Template = Template::new("unnest(__e1)");
pub(super) static SUBSCRIPTS: Template =
    Template::new("unnest(range(1, CAST(array_length(__e1, __e2) AS BIGINT) + 1))");

pub(crate) struct CatalogFunctions;

impl Rule for CatalogFunctions {
    fn name(&self) -> &'static str {
        "catalog functions"
    }

    fn rewrite(&self, statement: &mut Statement) -> Result<(), ParserError> {
        if let Statement::Query(query) = statement {
            shown_names(query)?;
        }
        finish(statement.visit(&mut Functions))
    }
}

/// A statement's result columns `x::regclass` / `x::regtype` show the name, as
/// PostgreSQL's output of those types does (elsewhere the cast stays the oid, which
/// comparisons and joins need). The column keeps PostgreSQL's name for it, `x`'s, unless
/// the query is ordered (then the type's).
fn shown_names(query: &mut Query) -> Result<(), ParserError> {
    // DataFusion finds `ORDER BY c.oid` ambiguous next to an output column `oid`: with an
    // ORDER BY the column is named after the type.
    let ordered = query.order_by.is_some();
    let SetExpr::Select(select) = query.body.as_mut() else {
        return Ok(());
    };
    for item in &mut select.projection {
        let SelectItem::UnnamedExpr(e) = item else {
            continue;
        };
        // Columns only: `format('%I.%I', ...)::regclass` (Metabase) reads a name.
        let Some((operand @ (Expr::Identifier(_) | Expr::CompoundIdentifier(_)), alias)) =
            oid_alias_operand(e)
        else {
            continue;
        };
        let (template, type_name) = match alias {
            OidAlias::Regtype => (&TYPE_NAME, "regtype"),
            OidAlias::Regclass => (&CLASS_NAME, "regclass"),
        };
        let name = match operand {
            _ if ordered => Ident::new(type_name),
            Expr::Identifier(i) => i.clone(),
            Expr::CompoundIdentifier(parts) => match parts.last() {
                Some(i) => i.clone(),
                None => Ident::new(type_name),
            },
            _ => Ident::new(type_name),
        };
        let shown = template.fill(&[operand], &[])?;
        *item = SelectItem::ExprWithAlias {
            expr: shown,
            alias: name,
        };
    }
    Ok(())
}

struct Functions;

impl VisitorMut for Functions {
    type Break = ParserError;

    /// A select-list `col_description(...)` / `obj_description(...)` / `to_regclass(...)`
    /// is named after the function, as PostgreSQL names it (their rewritten forms all
    /// print alike).
    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<ParserError> {
        let SetExpr::Select(select) = query.body.as_mut() else {
            return ControlFlow::Continue(());
        };
        // `generate_series(a, b)` in a select list is a set-returning function: one row
        // per value (psqlODBC's `SQLForeignKeys`), where DataFusion's returns a list.
        for item in &mut select.projection {
            let (SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. }) = item
            else {
                continue;
            };
            if let Expr::Function(f) = e
                && last_name(&f.name).as_deref() == Some("generate_series")
            {
                match SERIES_ROWS.fill(&[e], &[]) {
                    Ok(rows) => *e = rows,
                    Err(err) => return ControlFlow::Break(err),
                }
            }
        }
        let mut taken: Vec<String> = Vec::new();
        for item in &mut select.projection {
            let SelectItem::UnnamedExpr(Expr::Function(f)) = item else {
                continue;
            };
            let Some(name) = last_name(&f.name)
                .filter(|n| n.ends_with("_description") || n.starts_with("to_reg"))
            else {
                continue;
            };
            let mut alias = name.clone();
            let mut n = 1;
            while taken.contains(&alias) {
                alias = format!("{name}{}{n}", tidepool_engine::names::DUPLICATE_MARK);
                n += 1;
            }
            taken.push(alias.clone());
            *item = SelectItem::ExprWithAlias {
                expr: Expr::Function(f.clone()),
                alias: Ident::new(alias),
            };
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<ParserError> {
        let new = match expr {
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Eq,
                right,
            } if is_catalog_name_column(left) => {
                let Expr::Value(v) = right.as_mut() else {
                    return ControlFlow::Continue(());
                };
                let Value::SingleQuotedString(text) = &mut v.value else {
                    return ControlFlow::Continue(());
                };
                if let Some(bare) = text.strip_prefix("pg_catalog.") {
                    *text = bare.to_string();
                    return ControlFlow::Continue(());
                }
                // `'gold.p'::regproc` (psql's `\sf gold.p`): the name in its schema.
                let Some((schema, name)) = text
                    .split_once('.')
                    .map(|(s, n)| (s.to_string(), n.to_string()))
                else {
                    return ControlFlow::Continue(());
                };
                let Some(namespace) = namespace_column(left) else {
                    return ControlFlow::Continue(());
                };
                *text = name;
                let schema = Expr::Value(Value::SingleQuotedString(schema).into());
                let compared = expr.clone();
                IN_NAMESPACE.fill(&[&compared, &namespace, &schema], &[])
            }
            Expr::CompoundFieldAccess { root, access_chain } => {
                use datafusion::sql::sqlparser::ast::{AccessExpr, Subscript};
                // `indkey[i]` (root `indkey`) or `x.indkey[i]` (root `x`, `.indkey`).
                let (named, index) = match access_chain.as_mut_slice() {
                    [AccessExpr::Subscript(Subscript::Index { index })] => {
                        (zero_based(root), index)
                    }
                    [
                        ..,
                        AccessExpr::Dot(name),
                        AccessExpr::Subscript(Subscript::Index { index }),
                    ] => (zero_based(name), index),
                    _ => return ControlFlow::Continue(()),
                };
                if named {
                    match NEXT.fill(&[index], &[]) {
                        Ok(next) => *index = next,
                        Err(e) => return ControlFlow::Break(e),
                    }
                }
                return ControlFlow::Continue(());
            }
            Expr::Cast {
                expr: inner,
                data_type,
                ..
            } if is_text(data_type) && oid_alias_operand(inner).is_some() => {
                let Some((oid, alias)) = oid_alias_operand(inner) else {
                    return ControlFlow::Continue(());
                };
                // A regclass of something other than a column is read from a name.
                if matches!(alias, OidAlias::Regclass)
                    && !matches!(oid, Expr::Identifier(_) | Expr::CompoundIdentifier(_))
                {
                    return ControlFlow::Continue(());
                }
                let template = match alias {
                    OidAlias::Regtype => &TYPE_NAME,
                    OidAlias::Regclass => &CLASS_NAME,
                };
                match template.fill(&[oid], &[]) {
                    Ok(name) => {
                        *expr = name;
                        return ControlFlow::Continue(());
                    }
                    Err(e) => return ControlFlow::Break(e),
                }
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
                Some("col_description") => match args(f).as_slice() {
                    [oid, attnum] if plain(oid) && plain(attnum) => {
                        COLUMN_COMMENT.fill(&[oid, attnum], &[])
                    }
                    _ => NO_COMMENT.fill(&[], &[]),
                },
                Some("obj_description") => match args(f).as_slice() {
                    [oid, catalog] if plain(oid) => match class_oid(catalog) {
                        Some(class) => OBJECT_COMMENT.fill(&[oid, &class], &[]),
                        None => NO_COMMENT.fill(&[], &[]),
                    },
                    _ => NO_COMMENT.fill(&[], &[]),
                },
                Some(name @ ("to_regclass" | "to_regnamespace" | "to_regtype" | "to_regproc")) => {
                    match args(f).as_slice() {
                        [arg] => match name {
                            "to_regclass" => REGCLASS.fill(&[arg], &[]),
                            "to_regnamespace" => REGNAMESPACE.fill(&[arg], &[]),
                            "to_regtype" => REGTYPE.fill(&[arg], &[]),
                            _ => REGPROC.fill(&[arg], &[]),
                        },
                        _ => return ControlFlow::Continue(()),
                    }
                }
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

/// Whether a cast target is text (`::text`, `::varchar`).
fn is_text(t: &datafusion::sql::sqlparser::ast::DataType) -> bool {
    use datafusion::sql::sqlparser::ast::DataType as T;
    matches!(
        t,
        T::Text | T::Varchar(_) | T::CharacterVarying(_) | T::String(_)
    )
}

/// `x` of `x::regtype` (not of a quoted name, which the catalog rules resolve).
/// The oid-alias types whose text is a name.
enum OidAlias {
    Regtype,
    Regclass,
}

/// `x::regtype` or `x::regclass` of a non-literal `x`: `x` and which.
fn oid_alias_operand(e: &Expr) -> Option<(&Expr, OidAlias)> {
    use datafusion::sql::sqlparser::ast::DataType as T;
    let Expr::Cast {
        expr, data_type, ..
    } = e
    else {
        return None;
    };
    if matches!(expr.as_ref(), Expr::Value(_)) {
        return None;
    }
    let name = match data_type {
        T::Regclass => return Some((expr.as_ref(), OidAlias::Regclass)),
        T::Custom(name, args) if args.is_empty() => name.0.last().and_then(|p| p.as_ident())?,
        _ => return None,
    };
    if name.value.eq_ignore_ascii_case("regtype") {
        Some((expr.as_ref(), OidAlias::Regtype))
    } else if name.value.eq_ignore_ascii_case("regclass") {
        Some((expr.as_ref(), OidAlias::Regclass))
    } else {
        None
    }
}

/// Catalog columns of PostgreSQL's `int2vector` and `oidvector` types, whose subscripts
/// start at 0 (tidepool keeps them as arrays, which start at 1).
const ZERO_BASED: &[&str] = &[
    "indkey",
    "indclass",
    "indcollation",
    "indoption",
    "proargtypes",
    "tgattr",
    "partattrs",
    "partclass",
    "partcollation",
];

/// Whether `e` names a zero-based vector column (`indkey`, `i.indkey`).
fn zero_based(e: &Expr) -> bool {
    let name = match e {
        Expr::Identifier(i) => &i.value,
        Expr::CompoundIdentifier(parts) => match parts.last() {
            Some(i) => &i.value,
            None => return false,
        },
        _ => return false,
    };
    ZERO_BASED.contains(&name.to_ascii_lowercase().as_str())
}

/// A column, a literal, a subquery (`'s.t'::regclass` becomes one that reads the name),
/// or a cast of one: what a correlated comment lookup can plan.
fn plain(e: &Expr) -> bool {
    match e {
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) | Expr::Value(_) | Expr::Subquery(_) => {
            true
        }
        Expr::Cast { expr, .. } | Expr::Nested(expr) => plain(expr),
        _ => false,
    }
}

/// The oid of the catalog `obj_description`'s second argument names (`'pg_class'`).
fn class_oid(e: &Expr) -> Option<Expr> {
    let name = match e {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => s.clone(),
            _ => return None,
        },
        Expr::Cast { expr, .. } | Expr::Nested(expr) => return class_oid(expr),
        _ => return None,
    };
    let oid = match name.trim_start_matches("pg_catalog.") {
        "pg_class" => crate::pg_description::PG_CLASS,
        "pg_proc" => crate::pg_description::PG_PROC,
        _ => return None,
    };
    Some(Expr::value(Value::Number(oid.to_string(), false)))
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
/// `proname` / `typname`'s schema column (`pronamespace` / `typnamespace`), qualified
/// as it is.
fn namespace_column(e: &Expr) -> Option<Expr> {
    let with = |name: &Ident| {
        let column = if name.value.eq_ignore_ascii_case("proname") {
            "pronamespace"
        } else {
            "typnamespace"
        };
        Ident::new(column)
    };
    match e {
        Expr::Identifier(i) => Some(Expr::Identifier(with(i))),
        Expr::CompoundIdentifier(parts) => {
            let mut parts = parts.clone();
            let last = parts.last_mut()?;
            *last = with(last);
            Some(Expr::CompoundIdentifier(parts))
        }
        _ => None,
    }
}

/// A name comparison narrowed to one schema.
pub(super) static IN_NAMESPACE: Template = Template::new(
    "(__e1 AND __e2 = (SELECT max(__n.oid) FROM pg_catalog.pg_namespace AS __n \
     WHERE __n.nspname = __e3))",
);

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
