//! Functions in FROM the Postgres way (Grafana's search-path lookup): a scalar function
//! such as `string_to_array(...) s` becomes the one-row derived table
//! `(SELECT string_to_array(...) AS s) AS s`, and `generate_series(...) AS i` names its
//! column `i` as Postgres does. `FROM t CROSS JOIN UNNEST(t.a) AS x` (a lateral
//! reference DataFusion cannot plan; ADBC's `adbc_get_objects` key query) becomes
//! `FROM (SELECT t.*, UNNEST(t.a) AS x FROM t) AS t`: the same rows, `x` a column of `t`.

use std::collections::HashSet;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments, Query, Select,
    SelectItem, SetExpr, Statement, TableAliasColumnDef, TableFactor, VisitMut, VisitorMut,
    visit_expressions,
};
use datafusion::sql::sqlparser::parser::ParserError;

use super::template::Template;
use super::{Rule, finish, last_name};

/// Scalar functions that Postgres lets a FROM clause use as a one-row table.
const SCALAR_IN_FROM: &[&str] = &[
    "string_to_array",
    "regexp_split_to_array",
    "current_schemas",
    "parse_ident",
];

/// Table functions whose single column Postgres names after the alias.
const ALIAS_NAMES_COLUMN: &[&str] = &["generate_series", "unnest"];

/// The one-row table; the call and the column alias are set on the skeleton.
pub(super) static ONE_ROW: Template = Template::new("(SELECT __call() AS __alias)");
/// A table with an unnested column; the qualifier, the array, the column alias and the
/// table are set on the skeleton.
pub(super) static WITH_UNNEST: Template =
    Template::new("(SELECT __q.*, UNNEST(__e1) AS __alias FROM __table)");

pub(crate) struct FunctionsInFrom;

impl Rule for FunctionsInFrom {
    fn name(&self) -> &'static str {
        "functions in FROM"
    }

    fn rewrite(&self, statement: &mut Statement) -> Result<(), ParserError> {
        finish(statement.visit(&mut InFrom))
    }
}

struct InFrom;

impl VisitorMut for InFrom {
    type Break = ParserError;

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<ParserError> {
        if let SetExpr::Select(select) = query.body.as_mut() {
            for t in &mut select.from {
                if let Err(e) = lateral_unnest(t) {
                    return ControlFlow::Break(e);
                }
            }
            name_series_columns(select);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<ParserError> {
        unqualify_catalog_function(factor);
        match scalar_as_table(factor) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => ControlFlow::Break(e),
        }
    }
}

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
    if let Some(h) = &select.having {
        note(h);
    }
    // Join conditions (ADBC's `JOIN pg_attribute attr ON attr.attnum = conkeys`).
    for t in &select.from {
        for j in &t.joins {
            use datafusion::sql::sqlparser::ast::{JoinConstraint, JoinOperator as J};
            let constraint = match &j.join_operator {
                J::Join(c)
                | J::Inner(c)
                | J::Left(c)
                | J::LeftOuter(c)
                | J::Right(c)
                | J::RightOuter(c)
                | J::FullOuter(c) => Some(c),
                _ => None,
            };
            if let Some(JoinConstraint::On(e)) = constraint {
                note(e);
            }
        }
    }
    for t in &mut select.from {
        let factors =
            std::iter::once(&mut t.relation).chain(t.joins.iter_mut().map(|j| &mut j.relation));
        for f in factors {
            let alias = match f {
                TableFactor::Table {
                    name,
                    alias: Some(alias),
                    args: Some(_),
                    ..
                } if last_name(name).is_some_and(|n| ALIAS_NAMES_COLUMN.contains(&n.as_str())) => {
                    alias
                }
                // `CROSS JOIN UNNEST(a) AS x`: one array, one column named `x`.
                TableFactor::UNNEST {
                    alias: Some(alias),
                    array_exprs,
                    with_offset: false,
                    ..
                } if array_exprs.len() == 1 => alias,
                _ => continue,
            };
            if alias.columns.is_empty() {
                let a = alias.name.value.to_ascii_lowercase();
                if bare.contains(&a) && !qualified.contains(&a) {
                    alias.columns = vec![TableAliasColumnDef::from_name(alias.name.value.clone())];
                }
            }
        }
    }
}

/// `t CROSS JOIN UNNEST(e) AS x` (first join of `t`) as `(SELECT t.*, UNNEST(e) AS x FROM
/// t) AS t`.
fn lateral_unnest(
    t: &mut datafusion::sql::sqlparser::ast::TableWithJoins,
) -> Result<(), ParserError> {
    use datafusion::sql::sqlparser::ast::{
        Ident, JoinOperator, ObjectName, SelectItemQualifiedWildcardKind, TableAlias,
    };
    let Some(first) = t.joins.first() else {
        return Ok(());
    };
    let (
        JoinOperator::CrossJoin(_),
        TableFactor::UNNEST {
            alias: Some(unnest_alias),
            array_exprs,
            with_offset: false,
            with_ordinality: false,
            ..
        },
    ) = (&first.join_operator, &first.relation)
    else {
        return Ok(());
    };
    let [array] = array_exprs.as_slice() else {
        return Ok(());
    };
    // The table's name as the query refers to it.
    let qualifier: Ident = match &t.relation {
        TableFactor::Table {
            alias: Some(a),
            args: None,
            ..
        } if a.columns.is_empty() => a.name.clone(),
        TableFactor::Table {
            name,
            alias: None,
            args: None,
            ..
        } => match name.0.last().and_then(|p| p.as_ident()) {
            Some(i) => i.clone(),
            None => return Ok(()),
        },
        _ => return Ok(()),
    };
    let column = match unnest_alias.columns.as_slice() {
        [] => unnest_alias.name.clone(),
        [c] => c.name.clone(),
        _ => return Ok(()),
    };
    let Expr::Subquery(mut query) = WITH_UNNEST.fill(&[array], &[])? else {
        return Err(shape("a subquery"));
    };
    let SetExpr::Select(select) = query.body.as_mut() else {
        return Err(shape("a SELECT"));
    };
    match select.projection.as_mut_slice() {
        [
            SelectItem::QualifiedWildcard(SelectItemQualifiedWildcardKind::ObjectName(q), _),
            SelectItem::ExprWithAlias { alias, .. },
        ] => {
            *q = ObjectName::from(vec![qualifier.clone()]);
            *alias = column;
        }
        _ => return Err(shape("a qualified wildcard and an aliased column")),
    }
    let [from] = select.from.as_mut_slice() else {
        return Err(shape("one table"));
    };
    // The skeleton's `__table` goes to `t`, and is replaced right after.
    std::mem::swap(&mut from.relation, &mut t.relation);
    t.relation = TableFactor::Derived {
        lateral: false,
        subquery: query,
        alias: Some(TableAlias {
            explicit: true,
            name: qualifier,
            columns: Vec::new(),
            at: None,
        }),
        sample: None,
    };
    t.joins.remove(0);
    Ok(())
}

/// `f(args) AS a`, `f` a scalar function, as `(SELECT f(args) AS a) AS a`.
/// `pg_catalog.unnest(...)` in FROM (psql's `\dy`): built-in table functions live in
/// pg_catalog, which DataFusion's table-function lookup does not know as a qualifier;
/// `unnest` is the parser's own table factor only when the parser saw it unqualified
/// (datafusion-pg-catalog's rules strip the qualifier after parsing).
fn unqualify_catalog_function(factor: &mut TableFactor) {
    let TableFactor::Table {
        name,
        args: Some(args),
        alias,
        with_ordinality,
        ..
    } = factor
    else {
        return;
    };
    if name.0.len() == 2
        && name.0[0]
            .as_ident()
            .is_some_and(|q| q.value.eq_ignore_ascii_case("pg_catalog"))
    {
        name.0.remove(0);
    }
    if name.0.len() != 1 || last_name(name).as_deref() != Some("unnest") || args.settings.is_some()
    {
        return;
    }
    let array_exprs: Option<Vec<Expr>> = args
        .args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
            _ => None,
        })
        .collect();
    if let Some(array_exprs) = array_exprs {
        *factor = TableFactor::UNNEST {
            alias: alias.take(),
            array_exprs,
            with_offset: false,
            with_offset_alias: None,
            with_ordinality: *with_ordinality,
        };
    }
}

fn scalar_as_table(factor: &mut TableFactor) -> Result<(), ParserError> {
    let TableFactor::Table {
        name,
        alias: Some(alias),
        args: Some(args),
        ..
    } = factor
    else {
        return Ok(());
    };
    if !last_name(name).is_some_and(|n| SCALAR_IN_FROM.contains(&n.as_str()))
        || !alias.columns.is_empty()
    {
        return Ok(());
    }
    let Expr::Subquery(mut query) = ONE_ROW.fill(&[], &[])? else {
        return Err(shape("a subquery"));
    };
    let SetExpr::Select(select) = query.body.as_mut() else {
        return Err(shape("a SELECT"));
    };
    let [
        SelectItem::ExprWithAlias {
            expr,
            alias: column,
        },
    ] = select.projection.as_mut_slice()
    else {
        return Err(shape("one aliased column"));
    };
    let Expr::Function(call) = expr else {
        return Err(shape("a function call"));
    };
    call.name = name.clone();
    call.args = FunctionArguments::List(FunctionArgumentList {
        duplicate_treatment: None,
        args: args.args.clone(),
        clauses: Vec::new(),
    });
    *column = alias.name.clone();
    let mut alias = alias.clone();
    alias.explicit = true;
    *factor = TableFactor::Derived {
        lateral: false,
        subquery: query,
        alias: Some(alias),
        sample: None,
    };
    Ok(())
}

fn shape(what: &str) -> ParserError {
    ParserError::ParserError(format!("the one-row table skeleton is not {what}"))
}
