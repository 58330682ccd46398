//! Result column names as Postgres chooses them.
//!
//! DataFusion names an unaliased expression after its text (`Int64(1)`, `count(*)`);
//! Postgres calls it after the function (`count`), the cast type (`int4`) or `?column?`.
//! Clients and BI tools show these names, so the outermost SELECT list gets Postgres names,
//! as long as they stay unique (DataFusion needs unique output names).
//!
//! PostgreSQL allows the same name twice (`SELECT 1, 1`, `SELECT id, id FROM t`, JDBC's
//! `getProcedures` selects `NULL` twice); DataFusion refuses a projection with two equal
//! names. A repeated name gets a hidden suffix ([`DUPLICATE_MARK`] and a number) that
//! keeps it unique inside the engine, and each protocol shows [`display`] of the name,
//! the name as written. In `INSERT ... SELECT` the select list's names play no part and
//! get the same suffix.

use std::collections::HashSet;

use datafusion::sql::sqlparser::ast::{
    CastKind, DataType as SqlType, Expr, SelectItem, SetExpr, Statement,
};
use datafusion::sql::sqlparser::ast::{Ident, ObjectNamePart};

/// Separates a repeated result name from the suffix that keeps it unique (a control
/// character no identifier a client writes holds).
pub const DUPLICATE_MARK: char = '\u{1f}';

/// The suffix of a relation name that reads a lake table with its tuple ids, `t#ctid`
/// ([`crate::ctid`]).
pub const TUPLE_IDS_SUFFIX: &str = "#ctid";

/// The table a relation name reads with its tuple ids names (`t#ctid` -> `t`).
pub fn read_with_tuple_ids(name: &str) -> Option<&str> {
    name.strip_suffix(TUPLE_IDS_SUFFIX)
}

/// A result column's name as the client wrote or PostgreSQL chose it.
pub fn display(name: &str) -> &str {
    name.split(DUPLICATE_MARK).next().unwrap_or(name)
}

/// `schema` with [`display`] names, or `None` when no name has a suffix.
pub fn display_schema(
    schema: &datafusion::arrow::datatypes::Schema,
) -> Option<datafusion::arrow::datatypes::SchemaRef> {
    if !schema
        .fields()
        .iter()
        .any(|f| f.name().contains(DUPLICATE_MARK))
    {
        return None;
    }
    let fields: Vec<datafusion::arrow::datatypes::Field> = schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_name(display(f.name())))
        .collect();
    Some(std::sync::Arc::new(
        datafusion::arrow::datatypes::Schema::new_with_metadata(fields, schema.metadata().clone()),
    ))
}

/// Aliases unnamed items of the outermost SELECT with their Postgres names (and those
/// of an INSERT's SELECT and a COPY's query), repeated names with a hidden suffix.
pub fn apply_postgres_names(stmt: &mut Statement) {
    let query = match stmt {
        Statement::Query(query) => query,
        Statement::Insert(insert) => match insert.source.as_mut() {
            Some(query) => query,
            None => return,
        },
        Statement::Copy {
            source: datafusion::sql::sqlparser::ast::CopySource::Query(query),
            ..
        } => query,
        _ => return,
    };
    // Derived tables and CTEs show their names to the query around them: DuckDB reads
    // `SELECT "count" FROM (SELECT count(*) FROM t) AS q`.
    let _ = datafusion::sql::sqlparser::ast::VisitMut::visit(query.as_mut(), &mut InnerQueries);
    name_select(query);
}

/// Names the select lists of derived tables and CTEs.
struct InnerQueries;

impl datafusion::sql::sqlparser::ast::VisitorMut for InnerQueries {
    type Break = ();

    fn pre_visit_table_factor(
        &mut self,
        factor: &mut datafusion::sql::sqlparser::ast::TableFactor,
    ) -> std::ops::ControlFlow<()> {
        if let datafusion::sql::sqlparser::ast::TableFactor::Derived { subquery, .. } = factor {
            name_select(subquery);
        }
        std::ops::ControlFlow::Continue(())
    }

    fn pre_visit_query(
        &mut self,
        query: &mut datafusion::sql::sqlparser::ast::Query,
    ) -> std::ops::ControlFlow<()> {
        if let Some(with) = &mut query.with {
            for cte in &mut with.cte_tables {
                if cte.alias.columns.is_empty() {
                    name_select(&mut cte.query);
                }
            }
        }
        std::ops::ControlFlow::Continue(())
    }
}

/// Gives a query's select list PostgreSQL's names.
fn name_select(query: &mut datafusion::sql::sqlparser::ast::Query) {
    let SetExpr::Select(select) = query.body.as_mut() else {
        return;
    };
    // Names as written first (aliases, columns), in order: the first of a repeated one
    // keeps it; then the names PostgreSQL gives the other items.
    let mut taken: HashSet<String> = HashSet::new();
    let mut proposed: Vec<Option<String>> = Vec::with_capacity(select.projection.len());
    let mut repeated = 0usize;
    for item in select.projection.iter_mut() {
        let written = match item {
            SelectItem::ExprWithAlias { alias, .. } => Some(ident_text(alias)),
            SelectItem::UnnamedExpr(Expr::Identifier(i)) => Some(ident_text(i)),
            // `a.id, b.id` are distinct to DataFusion (qualified): only the same
            // qualified column twice repeats.
            SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) => {
                Some(parts.iter().map(ident_text).collect::<Vec<_>>().join("."))
            }
            SelectItem::UnnamedExpr(e) => {
                proposed.push(Some(name_of(e)));
                continue;
            }
            _ => None,
        };
        proposed.push(None);
        let Some(written) = written else { continue };
        if taken.insert(written.clone()) {
            continue;
        }
        repeated += 1;
        let shown = display_name(item);
        let unique = format!("{shown}{DUPLICATE_MARK}{repeated}");
        taken.insert(unique.clone());
        let expr = match item {
            SelectItem::ExprWithAlias { expr, .. } | SelectItem::UnnamedExpr(expr) => expr.clone(),
            _ => continue,
        };
        *item = SelectItem::ExprWithAlias {
            expr,
            alias: Ident::with_quote('"', unique),
        };
    }
    for (item, name) in select.projection.iter_mut().zip(proposed) {
        let Some(name) = name else { continue };
        let alias = if taken.insert(name.clone()) {
            name
        } else {
            repeated += 1;
            let unique = format!("{name}{DUPLICATE_MARK}{repeated}");
            taken.insert(unique.clone());
            unique
        };
        if let SelectItem::UnnamedExpr(e) = item {
            *item = SelectItem::ExprWithAlias {
                expr: e.clone(),
                alias: Ident::with_quote('"', alias),
            };
        }
    }
}

/// The name a written item shows: its alias, or its column's name.
fn display_name(item: &SelectItem) -> String {
    match item {
        SelectItem::ExprWithAlias { alias, .. } => ident_text(alias),
        SelectItem::UnnamedExpr(Expr::Identifier(i)) => ident_text(i),
        SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) => {
            parts.last().map(ident_text).unwrap_or_default()
        }
        _ => "?column?".into(),
    }
}

fn name_of(e: &Expr) -> String {
    match e {
        Expr::Identifier(i) => i.value.clone(),
        Expr::CompoundIdentifier(parts) => parts
            .last()
            .map(|p| p.value.clone())
            .unwrap_or_else(|| "?column?".into()),
        Expr::Function(f) => match f.name.0.last() {
            Some(ObjectNamePart::Identifier(i)) => i.value.to_lowercase(),
            _ => "?column?".into(),
        },
        Expr::Nested(inner) => name_of(inner),
        Expr::Cast {
            kind: CastKind::Cast | CastKind::DoubleColon,
            expr,
            data_type,
            ..
        } => match name_of(expr).as_str() {
            "?column?" => type_name(data_type),
            named => named.to_string(),
        },
        Expr::Case { .. } => "case".into(),
        Expr::Exists { .. } => "exists".into(),
        Expr::Array(_) => "array".into(),
        _ => "?column?".into(),
    }
}

fn type_name(t: &SqlType) -> String {
    // `pg_catalog.name` and `"char"` are named `name` and `char`.
    let s = t.to_string().to_lowercase().replace('"', "");
    let s = s.strip_prefix("pg_catalog.").unwrap_or(&s).to_string();
    let base = s.split('(').next().unwrap_or(&s).trim();
    match base {
        "int" | "integer" | "int4" => "int4",
        "bigint" | "int8" => "int8",
        "smallint" | "int2" => "int2",
        "real" | "float4" => "float4",
        "double precision" | "float8" | "double" | "float" => "float8",
        "boolean" | "bool" => "bool",
        "decimal" | "numeric" => "numeric",
        "character varying" | "varchar" => "varchar",
        "timestamp with time zone" | "timestamptz" => "timestamptz",
        other => return other.to_string(),
    }
    .to_string()
}

/// A table or procedure name as written, as a reference: unquoted parts fold to lower case.
pub(crate) fn reference(
    name: &datafusion::sql::sqlparser::ast::ObjectName,
) -> datafusion::common::TableReference {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| {
            p.as_ident()
                .map(|i| match i.quote_style {
                    Some(_) => i.value.clone(),
                    None => i.value.to_lowercase(),
                })
                .unwrap_or_default()
        })
        .collect();
    match parts.as_slice() {
        [s, t] => datafusion::common::TableReference::partial(s.as_str(), t.as_str()),
        [c, s, t] => datafusion::common::TableReference::full(c.as_str(), s.as_str(), t.as_str()),
        _ => datafusion::common::TableReference::bare(parts.last().cloned().unwrap_or_default()),
    }
}

/// An identifier as Postgres reads it: unquoted names fold to lower case.
pub(crate) fn ident_text(ident: &datafusion::sql::sqlparser::ast::Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn named(sql: &str) -> String {
        let mut s = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0);
        apply_postgres_names(&mut s);
        s.to_string()
    }

    #[test]
    fn postgres_names() {
        assert_eq!(named("SELECT 1"), "SELECT 1 AS \"?column?\"");
        assert_eq!(
            named("SELECT count(*), a, t.b, 1::int FROM t"),
            "SELECT count(*) AS \"count\", a, t.b, 1::INT AS \"int4\" FROM t"
        );
        // A repeated name gets the hidden suffix, shown without it.
        assert_eq!(
            named("SELECT 1, 2"),
            "SELECT 1 AS \"?column?\", 2 AS \"?column?\u{1f}1\""
        );
        assert_eq!(
            named("SELECT max(a) AS max, max(b) FROM t"),
            "SELECT max(a) AS max, max(b) AS \"max\u{1f}1\" FROM t"
        );
        assert_eq!(
            named("SELECT id, id FROM t"),
            "SELECT id, id AS \"id\u{1f}1\" FROM t"
        );
        assert_eq!(display("max\u{1f}1"), "max");
        // Derived tables name their columns as PostgreSQL does.
        assert_eq!(
            named("SELECT count FROM (SELECT count(*) FROM t) AS q"),
            "SELECT count FROM (SELECT count(*) AS \"count\" FROM t) AS q"
        );
    }
}
