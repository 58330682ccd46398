//! What depends on a relation, as PostgreSQL tracks it for DROP: the views whose query
//! reads it, and the views that read those. A view is kept as its SQL, so its references
//! are read from it (an unqualified name is one in `public`, where views resolve them);
//! a view whose SQL does not parse is taken to depend on nothing.

use std::collections::BTreeSet;

use datafusion::sql::parser::DFParser;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use tidepool_lake::{DefinitionKind, Lake};

use crate::EngineError;

/// `(schema, name)`.
pub(crate) type Relation = (String, String);

/// The views that read any of `targets`, directly or through other views, not counting
/// `targets` themselves; in name order.
pub(crate) async fn dependent_views(
    lake: &Lake,
    targets: &BTreeSet<Relation>,
) -> Result<Vec<Relation>, EngineError> {
    let listing = lake.listing().await?;
    let mut views: Vec<(Relation, BTreeSet<Relation>)> = Vec::new();
    for (schema, l) in &listing.schemas {
        for v in &l.views {
            let Some(sql) = lake.definition(DefinitionKind::View, schema, v).await? else {
                continue;
            };
            views.push(((schema.clone(), v.clone()), references(&sql)));
        }
    }
    let mut gone: BTreeSet<Relation> = targets.clone();
    let mut out = BTreeSet::new();
    loop {
        let before = out.len();
        for (view, reads) in &views {
            if !gone.contains(view) && reads.iter().any(|r| gone.contains(r)) {
                out.insert(view.clone());
            }
        }
        gone.extend(out.iter().cloned());
        if out.len() == before {
            break;
        }
    }
    Ok(out.into_iter().collect())
}

/// The relations a view's SQL reads.
fn references(sql: &str) -> BTreeSet<Relation> {
    let Ok(statements) = DFParser::parse_sql_with_dialect(sql, &PostgreSqlDialect {}) else {
        return BTreeSet::new();
    };
    let mut out = BTreeSet::new();
    for s in &statements {
        let Ok((tables, _)) = datafusion::sql::resolve::resolve_table_references(s, true) else {
            continue;
        };
        for t in tables {
            let schema = t.schema().unwrap_or("public").to_string();
            out.insert((schema, t.table().to_string()));
        }
    }
    out
}

/// Makes the stored views that name `from` name `to` (a relation or, with `None` names,
/// a whole schema renamed): PostgreSQL's views follow a rename. The view's SQL is
/// rewritten from its syntax tree; one that does not parse is left as it is.
pub(crate) async fn rebind_views(
    lake: &Lake,
    from: (&str, Option<&str>),
    to: (&str, Option<&str>),
) -> Result<(), EngineError> {
    let listing = lake.listing().await?;
    for (schema, l) in &listing.schemas {
        for v in &l.views {
            let Some(sql) = lake.definition(DefinitionKind::View, schema, v).await? else {
                continue;
            };
            if let Some(new) = renamed(&sql, from, to) {
                // Written back only if no other statement changed or dropped the view
                // since it was read (narrows, does not close, the window: the lake has
                // no compare-and-set for definitions).
                let now = lake.definition(DefinitionKind::View, schema, v).await?;
                if now.as_deref() == Some(sql.as_str()) {
                    lake.put_definition(DefinitionKind::View, schema, v, &new)
                        .await?;
                }
            }
        }
    }
    Ok(())
}

/// `sql` with its references to `from` made references to `to`; `None` when it has none.
fn renamed(sql: &str, from: (&str, Option<&str>), to: (&str, Option<&str>)) -> Option<String> {
    use datafusion::sql::sqlparser::ast::{Ident, ObjectNamePart, visit_relations_mut};
    use datafusion::sql::sqlparser::parser::Parser;
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    let mut changed = false;
    for s in &mut statements {
        let _ = visit_relations_mut(s, |name| {
            let parts: Vec<String> = name
                .0
                .iter()
                .map(|p| {
                    p.as_ident()
                        .map(crate::names::ident_text)
                        .unwrap_or_default()
                })
                .collect();
            let (schema, table) = match parts.as_slice() {
                [t] => ("public", t.as_str()),
                [s, t] | [_, s, t] => (s.as_str(), t.as_str()),
                _ => return std::ops::ControlFlow::<()>::Continue(()),
            };
            let hit = schema == from.0 && from.1.is_none_or(|f| f == table);
            if hit {
                let new_table = to.1.unwrap_or(table);
                let n = name.0.len();
                let ident = |s: &str| ObjectNamePart::Identifier(Ident::new(s));
                if n == 1 && to.0 == "public" {
                    name.0 = vec![ident(new_table)];
                } else {
                    let mut new = vec![ident(to.0), ident(new_table)];
                    if n == 3 {
                        new.insert(0, name.0[0].clone());
                    }
                    name.0 = new;
                }
                changed = true;
            }
            std::ops::ControlFlow::Continue(())
        });
    }
    changed.then(|| {
        statements
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// PostgreSQL's words for a DROP that others depend on.
pub(crate) fn refusal(what: &str, dependents: &[Relation]) -> EngineError {
    let list: Vec<String> = dependents
        .iter()
        .map(|(s, v)| format!("view {s}.{v} depends on {what}"))
        .collect();
    EngineError::DependentObjects(format!(
        "cannot drop {what} because other objects depend on it ({}); use DROP ... CASCADE \
         to drop the dependent objects too",
        list.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::{references, renamed};

    #[test]
    fn renames_follow_into_view_sql() {
        let sql = "SELECT a.x FROM gold.t AS a JOIN gold.u ON true";
        assert_eq!(
            renamed(sql, ("gold", Some("t")), ("gold", Some("t2"))).as_deref(),
            Some("SELECT a.x FROM gold.t2 AS a JOIN gold.u ON true")
        );
        assert_eq!(
            renamed(sql, ("gold", None), ("au", None)).as_deref(),
            Some("SELECT a.x FROM au.t AS a JOIN au.u ON true")
        );
        assert_eq!(renamed(sql, ("silver", None), ("au", None)), None);
        assert_eq!(
            renamed(
                "SELECT * FROM t",
                ("public", Some("t")),
                ("public", Some("w"))
            )
            .as_deref(),
            Some("SELECT * FROM w")
        );
    }

    #[test]
    fn a_views_references_are_qualified_with_public() {
        let r =
            references("SELECT a.x FROM gold.t a JOIN u ON true WHERE a.x IN (SELECT y FROM s.w)");
        let names: Vec<String> = r.into_iter().map(|(s, t)| format!("{s}.{t}")).collect();
        assert_eq!(names, ["gold.t", "public.u", "s.w"]);
    }
}
