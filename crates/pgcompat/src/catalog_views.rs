//! Catalog relations answered elsewhere than where the client names them.
//!
//! `information_schema.routines`, `columns`, `table_constraints` ... are answered by
//! `system.<name>` tables this crate registers (procedures added to DataFusion's routines,
//! Postgres column types, empty key tables; see `info_schema`), a plain
//! `information_schema.tables` by a view with Postgres' twelve columns, and `pg_settings`
//! by the session's `pg_show_all_settings()`, as in Postgres.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Ident, ObjectName, TableAlias, TableFactor, TableFunctionArgs, VisitorMut,
};

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
        let tables = parts.len() == name.0.len()
            && with_hints.is_empty()
            && partitions.is_empty()
            && match parts.as_slice() {
                [schema, table] => schema == "information_schema" && table == "tables",
                [catalog, schema, table] => {
                    catalog == tidepool_engine::CATALOG
                        && schema == "information_schema"
                        && table == "tables"
                }
                _ => false,
            };
        if tables && let Some(view) = crate::info_schema::tables_view() {
            let alias = alias.take().unwrap_or(TableAlias {
                explicit: true,
                name: Ident::new("tables"),
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
