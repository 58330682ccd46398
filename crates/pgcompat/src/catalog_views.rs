//! Catalog relations answered elsewhere than where the client names them.
//!
//! `information_schema.routines`, `columns`, `table_constraints` ... are answered by
//! `system.<name>` tables this crate registers (procedures added to DataFusion's routines,
//! Postgres column types, empty key tables; see `info_schema`), a plain
//! `information_schema.tables` by a view with Postgres' twelve columns, `pg_tables` by a
//! view of the base tables only (datafusion-pg-catalog lists views there too, so dbt's
//! relation cache took a view for a table and dropped it with DROP TABLE), and
//! `pg_settings` by the session's `pg_show_all_settings()`, as in Postgres, and the system
//! views of [`crate::system_views`] by their queries.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Ident, ObjectName, TableAlias, TableFactor, TableFunctionArgs, VisitorMut,
};

/// `pg_catalog.pg_tables` as PostgreSQL has it: base tables (and external tables), not
/// views, with its column names. Parsed once.
fn pg_tables_view() -> Option<Box<datafusion::sql::sqlparser::ast::Query>> {
    const SQL: &str = "SELECT t.schemaname, t.tablename, t.tableowner, t.tablespace, \
         t.hasindex AS hasindexes, t.hasrules, t.hastriggers, t.rowsecurity \
         FROM pg_catalog.pg_tables AS t \
         LEFT JOIN pg_catalog.pg_views AS v \
         ON v.schemaname = t.schemaname AND v.viewname = t.tablename \
         WHERE v.viewname IS NULL";
    static VIEW: std::sync::LazyLock<Option<Box<datafusion::sql::sqlparser::ast::Query>>> =
        std::sync::LazyLock::new(|| crate::info_schema::view_query(SQL));
    VIEW.clone()
}

/// The rewrite rule: relations to where they are answered.
pub struct CatalogViews;

impl VisitorMut for CatalogViews {
    type Break = ();

    /// `information_schema.routines`, `columns`, `table_constraints` ... are answered by
    /// `system.<name>` (procedures added to DataFusion's routines, Postgres column types,
    /// empty key tables; see `info_schema`).
    fn pre_visit_relation(
        &mut self,
        relation: &mut datafusion::sql::sqlparser::ast::ObjectName,
    ) -> ControlFlow<()> {
        let parts: Vec<String> = relation
            .0
            .iter()
            .filter_map(|p| p.as_ident().map(|i| i.value.to_ascii_lowercase()))
            .collect();
        let catalog_view = match parts.as_slice() {
            [.., schema, table] => {
                (schema == "information_schema"
                    && (tidepool_engine::system::INFORMATION_SCHEMA_VIEWS
                        .contains(&table.as_str())
                        || table == "table_privileges"))
                    || (schema == "pg_catalog" && table == "pg_policies")
            }
            [table] => table == "pg_policies",
            _ => false,
        };
        if catalog_view && let Some(table) = parts.last() {
            *relation = datafusion::sql::sqlparser::ast::ObjectName::from(vec![
                Ident::new("system"),
                Ident::new(table.as_str()),
            ]);
        }
        ControlFlow::Continue(())
    }

    /// A plain `information_schema.tables` becomes [`crate::info_schema::tables_view`]
    /// (`views` [`crate::info_schema::views_view`])
    /// (after its children are visited, so the view's own reference stays as it is).
    fn post_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        let TableFactor::Table {
            name,
            args: None,
            alias,
            with_hints,
            version: None,
            partitions,
            ..
        } = factor
        else {
            return ControlFlow::Continue(());
        };
        let parts: Vec<String> = name
            .0
            .iter()
            .filter_map(|p| p.as_ident().map(|i| i.value.to_ascii_lowercase()))
            .collect();
        let plain = parts.len() == name.0.len() && with_hints.is_empty() && partitions.is_empty();
        // `schema.table`, `lake.schema.table`, or (pg_catalog only) `table`.
        let names = |schema: &str, table: &str| {
            plain
                && match parts.as_slice() {
                    [t] => schema == "pg_catalog" && t == table,
                    [s, t] => s == schema && t == table,
                    [c, s, t] => c == tidepool_engine::CATALOG && s == schema && t == table,
                    _ => false,
                }
        };
        let tables = names("information_schema", "tables");
        let views = names("information_schema", "views");
        let pg_tables = names("pg_catalog", "pg_tables");
        let view = if tables {
            crate::info_schema::tables_view().map(|v| (v, "tables"))
        } else if views {
            crate::info_schema::views_view().map(|v| (v, "views"))
        } else if names("information_schema", "character_sets") {
            crate::info_schema::character_sets_view().map(|v| (v, "character_sets"))
        } else if pg_tables {
            pg_tables_view().map(|v| (v, "pg_tables"))
        } else if let Some(last) = parts.last()
            && crate::system_views::is_view(last)
            && names("pg_catalog", last)
        {
            crate::system_views::query(last)
        } else {
            None
        };
        if let Some((view, default_alias)) = view {
            let alias = alias.take().unwrap_or(TableAlias {
                explicit: true,
                name: Ident::new(default_alias),
                columns: Vec::new(),
                at: None,
            });
            *factor = TableFactor::Derived {
                lateral: false,
                subquery: view,
                alias: Some(alias),
                sample: None,
            };
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        // `pg_settings` is the session's `pg_show_all_settings()`, as in Postgres.
        if let TableFactor::Table {
            name,
            args: args @ None,
            alias,
            ..
        } = factor
        {
            let parts: Vec<String> = name
                .0
                .iter()
                .filter_map(|p| p.as_ident().map(|i| i.value.to_ascii_lowercase()))
                .collect();
            if matches!(parts.as_slice(), [t] | [_, t] if t == "pg_settings")
                && parts.len() == name.0.len()
                && (parts.len() == 1 || parts[0] == "pg_catalog")
            {
                *name = ObjectName::from(vec![Ident::new(crate::pg_settings::FUNCTION)]);
                *args = Some(TableFunctionArgs {
                    args: Vec::new(),
                    settings: None,
                });
                if alias.is_none() {
                    *alias = Some(TableAlias {
                        explicit: true,
                        name: Ident::new("pg_settings"),
                        columns: Vec::new(),
                        at: None,
                    });
                }
            }
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_pg_tables_view_parses() {
        assert!(super::pg_tables_view().is_some());
    }
}
