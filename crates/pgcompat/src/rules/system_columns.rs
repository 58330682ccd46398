//! PostgreSQL's `tableoid` system column: every relation has it, hidden from `*`, the
//! `pg_class` oid of the table a row comes from. psql's `\dL` and `\dd` join
//! `pg_description` on `d.classoid = x.tableoid`. Lake tables and catalogs have no such
//! column, so `alias.tableoid` (or a bare `tableoid` over a single relation) becomes the
//! relation's oid: PostgreSQL's own for a catalog table ([`crate::oids::catalog_table`]),
//! the `pg_class` lookup `to_regclass` makes for any other. A `tableoid` that names no
//! relation of its query (or of a query around it) stays as written and is refused as an
//! unknown column.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, Ident, ObjectName, Query, Select, SetExpr, Statement, TableFactor, TableWithJoins, Value,
    Visit, VisitMut, Visitor, VisitorMut,
};
use datafusion::sql::sqlparser::parser::ParserError;

use super::catalog_functions::REGCLASS;
use super::{Rule, finish};

const TABLEOID: &str = "tableoid";

pub(crate) struct SystemColumns;

impl Rule for SystemColumns {
    fn name(&self) -> &'static str {
        "system columns"
    }

    fn rewrite(&self, statement: &mut Statement) -> Result<(), ParserError> {
        let mut mentions = Mentions;
        if !Visit::visit(&*statement, &mut mentions).is_break() {
            return Ok(());
        }
        finish(statement.visit(&mut Queries))
    }
}

/// Whether a statement names `tableoid` at all (most do not: nothing more to do).
struct Mentions;

impl Visitor for Mentions {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        match expr {
            Expr::Identifier(i) if i.value.eq_ignore_ascii_case(TABLEOID) => ControlFlow::Break(()),
            Expr::CompoundIdentifier(p)
                if p.last()
                    .is_some_and(|i| i.value.eq_ignore_ascii_case(TABLEOID)) =>
            {
                ControlFlow::Break(())
            }
            _ => ControlFlow::Continue(()),
        }
    }
}

/// A relation of a FROM clause: the name it is referred to by, and its name.
struct Relation {
    alias: String,
    name: ObjectName,
}

fn relations(from: &[TableWithJoins], out: &mut Vec<Relation>) {
    let mut add = |factor: &TableFactor| {
        if let TableFactor::Table {
            name, alias, args, ..
        } = factor
            && args.is_none()
        {
            let alias = match alias {
                Some(a) => a.name.value.clone(),
                None => match name.0.last().and_then(|p| p.as_ident()) {
                    Some(i) => i.value.clone(),
                    None => return,
                },
            };
            out.push(Relation {
                alias,
                name: name.clone(),
            });
        }
    };
    for t in from {
        add(&t.relation);
        for j in &t.joins {
            add(&j.relation);
        }
    }
}

/// Applies `f` to each SELECT of a query body (each arm of a UNION), not to those of
/// nested queries.
fn each_arm(
    body: &mut SetExpr,
    f: &mut dyn FnMut(&mut Select) -> ControlFlow<ParserError>,
) -> ControlFlow<ParserError> {
    match body {
        SetExpr::Select(select) => f(select),
        SetExpr::SetOperation { left, right, .. } => {
            each_arm(left, f)?;
            each_arm(right, f)
        }
        _ => ControlFlow::Continue(()),
    }
}

/// The names the relations of a query body's SELECTs go by.
fn arm_names(body: &SetExpr, out: &mut Vec<String>) {
    match body {
        SetExpr::Select(select) => {
            let mut inner = Vec::new();
            relations(&select.from, &mut inner);
            out.extend(inner.into_iter().map(|r| r.alias));
        }
        SetExpr::SetOperation { left, right, .. } => {
            arm_names(left, out);
            arm_names(right, out);
        }
        _ => {}
    }
}

/// Every query: each of its SELECTs has its `tableoid`s resolved by [`Arm`].
struct Queries;

impl VisitorMut for Queries {
    type Break = ParserError;

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<ParserError> {
        each_arm(&mut query.body, &mut |select| {
            let mut arm = Arm {
                scope: Vec::new(),
                shadows: Vec::new(),
            };
            relations(&select.from, &mut arm.scope);
            select.visit(&mut arm)
        })
    }
}

/// One SELECT's `tableoid`s, also in subqueries that refer to its relations (a nested
/// query's own relations shadow the SELECT's and are resolved when that query is).
struct Arm {
    scope: Vec<Relation>,
    /// The relation names of each nested query being visited.
    shadows: Vec<Vec<String>>,
}

impl Arm {
    fn find(&self, alias: Option<&Ident>) -> Option<&Relation> {
        match alias {
            Some(a) if self.shadows.iter().flatten().any(|s| *s == a.value) => None,
            Some(a) => self.scope.iter().find(|r| r.alias == a.value),
            None if !self.shadows.is_empty() => None,
            None => match self.scope.as_slice() {
                [only] => Some(only),
                _ => None,
            },
        }
    }
}

impl VisitorMut for Arm {
    type Break = ParserError;

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<ParserError> {
        let mut names = Vec::new();
        arm_names(&query.body, &mut names);
        // A nested query with no relations of its own still hides a bare `tableoid`
        // from this SELECT: `shadows` is not empty.
        self.shadows.push(names);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &mut Query) -> ControlFlow<ParserError> {
        self.shadows.pop();
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<ParserError> {
        let alias = match expr {
            Expr::CompoundIdentifier(parts)
                if parts.len() == 2 && parts[1].value.eq_ignore_ascii_case(TABLEOID) =>
            {
                Some(parts[0].clone())
            }
            Expr::Identifier(i) if i.value.eq_ignore_ascii_case(TABLEOID) => None,
            _ => return ControlFlow::Continue(()),
        };
        let Some(relation) = self.find(alias.as_ref()) else {
            return ControlFlow::Continue(());
        };
        match oid_of(&relation.name) {
            Ok(oid) => {
                *expr = oid;
                ControlFlow::Continue(())
            }
            Err(e) => ControlFlow::Break(e),
        }
    }
}

/// The oid of the relation `name`, as an expression.
fn oid_of(name: &ObjectName) -> Result<Expr, ParserError> {
    let parts: Vec<&Ident> = name.0.iter().filter_map(|p| p.as_ident()).collect();
    let catalog = match parts.as_slice() {
        [schema, table] if schema.value.eq_ignore_ascii_case("pg_catalog") => {
            crate::oids::catalog_table(&table.value)
        }
        [table] => crate::oids::catalog_table(&table.value),
        _ => None,
    };
    if let Some(oid) = catalog {
        return Ok(Expr::value(Value::Number(oid.to_string(), false)));
    }
    let text = parts
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(".");
    REGCLASS.fill(&[&Expr::value(Value::SingleQuotedString(text))], &[])
}
