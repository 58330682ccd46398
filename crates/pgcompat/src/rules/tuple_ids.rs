//! PostgreSQL's `ctid` system column. A relation whose `ctid` a statement names
//! (`SELECT ctid, * FROM t`, `DELETE FROM t WHERE ctid IN ('(0,1)', ...)`,
//! `UPDATE t SET ... FROM s WHERE t.ctid = s.id::tid`) is read as `t#ctid`, the table
//! with its tuple ids ([`tidepool_engine::ctid`]), under its old name as alias; a `*`
//! over it leaves `ctid` out, as PostgreSQL's does. Runs after [`super::tid_ranges`], so
//! DuckDB's whole-table `ctid BETWEEN` scans, which need no tuple ids, stay plain scans.
//! A `ctid` that names no relation of its SELECT stays as written and is refused as an
//! unknown column. `x::tid` reads its text as PostgreSQL's `tidin` does ([`TIDIN`]).

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    DataType, ExcludeSelectItem, Expr, FromTable, Function, FunctionArg, FunctionArgExpr,
    FunctionArgumentList, FunctionArguments, Ident, ObjectName, ObjectNamePart, Query, Select,
    SelectItem, SelectItemQualifiedWildcardKind, SetExpr, Statement, TableAlias, TableFactor,
    TableWithJoins, Value, Visit, VisitMut, Visitor, VisitorMut,
};
use datafusion::sql::sqlparser::parser::ParserError;
use tidepool_engine::ctid::{COLUMN, RELATION_SUFFIX};

use super::{Rule, finish};

pub(crate) struct TupleIds;

impl Rule for TupleIds {
    fn name(&self) -> &'static str {
        "tuple ids"
    }

    fn rewrite(&self, statement: &mut Statement) -> Result<(), ParserError> {
        finish(statement.visit(&mut TidCasts))?;
        if !Visit::visit(&*statement, &mut Mentions::default()).is_break() {
            return Ok(());
        }
        match statement {
            Statement::Delete(d) => {
                let tables = match &mut d.from {
                    FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
                };
                if let [target] = tables.as_mut_slice() {
                    let named = named(d.selection.iter());
                    rename_target(&mut target.relation, &named);
                }
            }
            Statement::Update(u) => {
                let exprs = u
                    .selection
                    .iter()
                    .chain(u.assignments.iter().map(|a| &a.value));
                let named = named(exprs);
                rename_target(&mut u.table.relation, &named);
            }
            _ => {}
        }
        finish(statement.visit(&mut Queries))
    }
}

/// The function `x::tid` becomes: the tid's canonical text (tids are text in the engine,
/// so the cast alone would compare `'(0, 1)'` and `(0,1)` as different).
pub(crate) const TIDIN: &str = "tidin";

/// `x::tid` and `CAST(x AS tid)` as `tidin(x)`.
struct TidCasts;

impl VisitorMut for TidCasts {
    type Break = ParserError;

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<ParserError> {
        if let Expr::Cast {
            expr: inner,
            data_type: DataType::Custom(name, args),
            ..
        } = expr
            && args.is_empty()
            && super::last_name(name).as_deref() == Some("tid")
        {
            let arg = std::mem::replace(inner.as_mut(), Expr::value(Value::Null));
            *expr = Expr::Function(Function {
                name: ObjectName::from(vec![Ident::new(TIDIN)]),
                uses_odbc_syntax: false,
                parameters: FunctionArguments::None,
                args: FunctionArguments::List(FunctionArgumentList {
                    duplicate_treatment: None,
                    args: vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(arg))],
                    clauses: Vec::new(),
                }),
                filter: None,
                null_treatment: None,
                over: None,
                within_group: Vec::new(),
            });
        }
        ControlFlow::Continue(())
    }
}

/// `tidin(text)`: the tid's text as PostgreSQL prints it, or 22P02.
pub fn tidin_udf() -> datafusion::logical_expr::ScalarUDF {
    use datafusion::arrow::array::{Array, AsArray, StringBuilder};
    use datafusion::arrow::compute::cast;
    use datafusion::arrow::datatypes::DataType as ArrowType;
    use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
    use std::sync::Arc;
    create_udf(
        TIDIN,
        vec![ArrowType::Utf8],
        ArrowType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let text = cast(&arrays[0], &ArrowType::Utf8)?;
            let text = text.as_string::<i32>();
            let mut out = StringBuilder::with_capacity(text.len(), text.len() * 8);
            for i in 0..text.len() {
                if text.is_null(i) {
                    out.append_null();
                    continue;
                }
                match tidepool_lake::tids::Tid::parse(text.value(i)) {
                    Some(tid) => out.append_value(tid.to_string()),
                    None => {
                        return Err(datafusion::error::DataFusionError::External(Box::new(
                            tidepool_engine::EngineError::InvalidText(format!(
                                "invalid input syntax for type tid: \"{}\"",
                                text.value(i)
                            )),
                        )));
                    }
                }
            }
            let out: datafusion::arrow::array::ArrayRef = Arc::new(out.finish());
            Ok(ColumnarValue::Array(out))
        }),
    )
}

/// Whether an expression is `ctid` or `x.ctid`; the qualifier if any.
fn ctid_of(expr: &Expr) -> Option<Option<String>> {
    match expr {
        Expr::Identifier(i) if i.value.eq_ignore_ascii_case(COLUMN) => Some(None),
        Expr::CompoundIdentifier(p)
            if p.len() >= 2
                && p.last()
                    .is_some_and(|i| i.value.eq_ignore_ascii_case(COLUMN)) =>
        {
            Some(Some(p[p.len() - 2].value.clone()))
        }
        _ => None,
    }
}

/// The `ctid`s an expression names outside nested queries: their qualifiers (`None`
/// for a bare `ctid`).
#[derive(Default)]
struct Mentions {
    depth: usize,
    /// Stop at the first mention (any depth): only asks whether there is one.
    qualifiers: Option<Vec<Option<String>>>,
}

impl Visitor for Mentions {
    type Break = ();

    fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
        self.depth += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if let Some(q) = ctid_of(expr) {
            match &mut self.qualifiers {
                None => return ControlFlow::Break(()),
                Some(found) if self.depth == 0 => found.push(q),
                Some(_) => {}
            }
        }
        ControlFlow::Continue(())
    }
}

/// The qualifiers of the `ctid`s `exprs` name (not those of nested queries).
fn named<'a>(exprs: impl Iterator<Item = &'a Expr>) -> Vec<Option<String>> {
    let mut m = Mentions {
        depth: 0,
        qualifiers: Some(Vec::new()),
    };
    for e in exprs {
        let _ = Visit::visit(e, &mut m);
    }
    m.qualifiers.unwrap_or_default()
}

/// The name a FROM item goes by: its alias, else its table name's last part.
fn goes_by(factor: &TableFactor) -> Option<String> {
    let TableFactor::Table {
        name, alias, args, ..
    } = factor
    else {
        return None;
    };
    if args.is_some() {
        return None;
    }
    match alias {
        Some(a) => Some(a.name.value.clone()),
        None => name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .map(|i| i.value.clone()),
    }
}

/// Reads the table `factor` names as `t#ctid`, aliased by the name it went by.
fn read_with_tids(factor: &mut TableFactor) {
    let TableFactor::Table { name, alias, .. } = factor else {
        return;
    };
    let Some(ObjectNamePart::Identifier(last)) = name.0.last_mut() else {
        return;
    };
    if last.value.ends_with(RELATION_SUFFIX) {
        return;
    }
    if alias.is_none() {
        *alias = Some(TableAlias {
            explicit: true,
            name: last.clone(),
            columns: Vec::new(),
            at: None,
        });
    }
    *last = Ident::with_quote('"', format!("{}{RELATION_SUFFIX}", last.value));
}

/// A DELETE or UPDATE target whose `ctid` (bare or by its name) `named` holds.
fn rename_target(factor: &mut TableFactor, named: &[Option<String>]) {
    let Some(by) = goes_by(factor) else {
        return;
    };
    if named.iter().any(|q| q.as_ref().is_none_or(|q| *q == by)) {
        let had_alias = matches!(factor, TableFactor::Table { alias: Some(_), .. });
        read_with_tids(factor);
        // DataFusion's DELETE takes no alias; a bare `ctid` needs none.
        if !had_alias
            && named.iter().all(Option::is_none)
            && let TableFactor::Table { alias, .. } = factor
        {
            *alias = None;
        }
    }
}

/// Every SELECT of every query.
struct Queries;

impl VisitorMut for Queries {
    type Break = ParserError;

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<ParserError> {
        each_arm(&mut query.body, &mut |select| arm(select));
        ControlFlow::Continue(())
    }
}

fn each_arm(body: &mut SetExpr, f: &mut dyn FnMut(&mut Select)) {
    match body {
        SetExpr::Select(select) => f(select),
        SetExpr::SetOperation { left, right, .. } => {
            each_arm(left, f);
            each_arm(right, f);
        }
        _ => {}
    }
}

/// One SELECT: the relations whose `ctid` it names read with their tids.
fn arm(select: &mut Select) {
    let mut m = Mentions {
        depth: 0,
        qualifiers: Some(Vec::new()),
    };
    // The SELECT's own expressions; FROM's subqueries are queries of their own.
    let from = std::mem::take(&mut select.from);
    let _ = Visit::visit(&*select, &mut m);
    select.from = from;
    let named = m.qualifiers.unwrap_or_default();
    if named.is_empty() {
        return;
    }
    let factors: Vec<&mut TableFactor> = factors(&mut select.from);
    let single = factors.len() == 1;
    let mut renamed: Vec<String> = Vec::new();
    for factor in factors {
        let Some(by) = goes_by(factor) else {
            continue;
        };
        let wanted = named.iter().any(|q| match q {
            Some(q) => *q == by,
            None => single,
        });
        if wanted {
            read_with_tids(factor);
            renamed.push(by);
        }
    }
    if renamed.is_empty() {
        return;
    }
    for item in &mut select.projection {
        // datafusion-pg-catalog names a column selected next to `*` `__alias_<name>` so
        // the two cannot collide; `*` leaves `ctid` out, so it keeps its name.
        if let SelectItem::ExprWithAlias { expr, alias } = item
            && alias.value == format!("__alias_{COLUMN}")
            && ctid_of(expr).is_some()
        {
            *item = SelectItem::UnnamedExpr(expr.clone());
        }
    }
    for item in &mut select.projection {
        let options = match item {
            SelectItem::Wildcard(o) => o,
            SelectItem::QualifiedWildcard(SelectItemQualifiedWildcardKind::ObjectName(q), o)
                if q.0
                    .last()
                    .and_then(|p| p.as_ident())
                    .is_some_and(|i| renamed.contains(&i.value)) =>
            {
                o
            }
            _ => continue,
        };
        let ctid = ObjectName::from(vec![Ident::new(COLUMN)]);
        options.opt_exclude = Some(match options.opt_exclude.take() {
            None => ExcludeSelectItem::Single(ctid),
            Some(ExcludeSelectItem::Single(one)) => ExcludeSelectItem::Multiple(vec![one, ctid]),
            Some(ExcludeSelectItem::Multiple(mut many)) => {
                many.push(ctid);
                ExcludeSelectItem::Multiple(many)
            }
        });
    }
}

fn factors(from: &mut [TableWithJoins]) -> Vec<&mut TableFactor> {
    let mut out = Vec::new();
    for t in from {
        out.push(&mut t.relation);
        for j in &mut t.joins {
            out.push(&mut j.relation);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    fn rewritten(sql: &str) -> String {
        let mut s = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0);
        TupleIds.rewrite(&mut s).unwrap();
        s.to_string()
    }

    #[test]
    fn relations_whose_ctid_is_named_read_their_tids() {
        assert_eq!(
            rewritten("SELECT ctid, * FROM s.t"),
            r#"SELECT ctid, * EXCLUDE ctid FROM s."t#ctid" AS t"#
        );
        assert_eq!(
            rewritten("SELECT x.ctid, y.a FROM s.t AS x JOIN u AS y ON x.a = y.a"),
            r#"SELECT x.ctid, y.a FROM s."t#ctid" AS x JOIN u AS y ON x.a = y.a"#
        );
        // A bare ctid over two relations names neither.
        assert_eq!(rewritten("SELECT ctid FROM t, u"), "SELECT ctid FROM t, u");
        // Only the SELECT that names it.
        assert_eq!(
            rewritten("SELECT a FROM t WHERE a IN (SELECT a FROM u WHERE ctid = '(0,1)')"),
            r#"SELECT a FROM t WHERE a IN (SELECT a FROM "u#ctid" AS u WHERE ctid = '(0,1)')"#
        );
        assert_eq!(rewritten("SELECT a FROM t"), "SELECT a FROM t");
    }

    #[test]
    fn delete_and_update_targets_read_their_tids() {
        assert_eq!(
            rewritten("DELETE FROM s.t WHERE ctid IN ('(0,1)', '(0,2)')"),
            r#"DELETE FROM s."t#ctid" WHERE ctid IN ('(0,1)', '(0,2)')"#
        );
        assert_eq!(
            rewritten(
                r#"UPDATE "s"."t" SET "b" = "u"."b" FROM "u" WHERE "t".ctid=__page_id_string::TID"#
            ),
            r#"UPDATE "s"."t#ctid" AS "t" SET "b" = "u"."b" FROM "u" WHERE "t".ctid = tidin(__page_id_string)"#
        );
        assert_eq!(
            rewritten("DELETE FROM s.t WHERE a = 1"),
            "DELETE FROM s.t WHERE a = 1"
        );
    }
}
