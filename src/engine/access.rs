//! Who may touch what. A user configured with `schemas = [...]` is a reader: it may run
//! queries over the tables and views of those schemas and call their procedures, and
//! nothing else (no DDL, no writes, no file-reading table functions); the catalogs
//! (`pg_catalog`, `information_schema`) stay readable for BI tools. Views and procedures
//! run with their definer's reach, as in Synapse: a reader of `gold` can call a `gold`
//! procedure or read a `gold` view that reads `silver`. Like any Postgres user, a reader
//! may create and fill its session's temporary tables.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;

use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, ObjectName, ObjectType, SetExpr, Statement, TableFactor,
    TableObject, Value, Visit, Visitor,
};

use super::EngineError;
use super::procedures::table_fn::CALL_FUNCTION;
use super::temp_tables::{TEMP_SCHEMA, is_temp_name};

/// Schemas every reader may read: the catalogs clients query for metadata.
const CATALOGS: &[&str] = &["pg_catalog", "information_schema"];

/// Per-user limits; users not listed may do everything.
#[derive(Debug, Clone, Default)]
pub struct Access {
    pub readers: BTreeMap<String, BTreeSet<String>>,
}

/// Table functions that compute rows without reading the lake or files; readers may use
/// them (catalog queries of BI tools do).
const ROW_FUNCTIONS: &[&str] = &[
    "generate_series",
    "unnest",
    "range",
    "generate_subscripts",
    super::pg_settings::FUNCTION,
];

/// Privileges a reader holds on what it may read; writes and DDL stay with full users.
const READ_PRIVILEGES: &[&str] = &["SELECT", "USAGE", "EXECUTE", "CONNECT", "TEMPORARY", "TEMP"];

impl Access {
    /// Whether `user` holds `privilege` on an object of `schema` (None: the database, or
    /// an object given by oid), as the `has_*_privilege` functions answer it.
    pub fn holds(&self, user: &str, schema: Option<&str>, privilege: &str) -> bool {
        let Some(allowed) = self.readers.get(user) else {
            return true;
        };
        let privilege = privilege.trim().to_ascii_uppercase();
        let privilege = privilege
            .strip_suffix(" WITH GRANT OPTION")
            .unwrap_or(&privilege);
        if !READ_PRIVILEGES.contains(&privilege) {
            return false;
        }
        match schema {
            Some(s) => allowed.contains(s) || CATALOGS.contains(&s),
            None => true,
        }
    }

    /// Checks `stmt` for `user`, whose unqualified names resolve in `default_schema`.
    pub fn check(
        &self,
        user: &str,
        stmt: &DFStatement,
        default_schema: &str,
    ) -> Result<(), EngineError> {
        let Some(allowed) = self.readers.get(user) else {
            return Ok(());
        };
        let deny = |what: String| {
            Err(EngineError::PermissionDenied(format!(
                "permission denied for {what} (user {user} may read {})",
                allowed.iter().cloned().collect::<Vec<_>>().join(", ")
            )))
        };
        let DFStatement::Statement(s) = stmt else {
            return deny("this statement".into());
        };
        let schema_of = |name: &ObjectName| -> String {
            let parts: Vec<String> = name
                .0
                .iter()
                .filter_map(|p| p.as_ident().map(|i| i.value.to_lowercase()))
                .collect();
            match parts.len() {
                0 | 1 => default_schema.to_string(),
                n => parts[n - 2].clone(),
            }
        };
        // A session's own temporary tables (`pg_temp`) are open to it, as in Postgres.
        let ok = |schema: &str| {
            allowed.contains(schema) || CATALOGS.contains(&schema) || schema == TEMP_SCHEMA
        };
        // `information_schema.routines` / `parameters`, as the parser rewrote them.
        let catalog_view = |name: &ObjectName| {
            let s = name.to_string().to_ascii_lowercase();
            s.strip_prefix("system.")
                .is_some_and(|t| super::info_schema::REDIRECTED.contains(&t))
        };
        match s.as_ref() {
            Statement::Query(q) => {
                // SELECT INTO writes a lake table unless it is temporary.
                if let SetExpr::Select(select) = q.body.as_ref()
                    && let Some(into) = &select.into
                    && !is_temp_name(&into.name)
                {
                    return deny("SELECT INTO".into());
                }
            }
            Statement::Explain { .. } => {}
            Statement::CreateTable(c) if is_temp_name(&c.name) => {}
            Statement::Insert(i) if matches!(&i.table, TableObject::TableName(n) if is_temp_name(n)) =>
                {}
            Statement::Drop {
                object_type: ObjectType::Table,
                names,
                ..
            } if names.iter().all(is_temp_name) => return Ok(()),
            Statement::Call(f) => {
                let schema = schema_of(&f.name);
                if !allowed.contains(&schema) {
                    return deny(format!("procedure {}", f.name));
                }
                return Ok(());
            }
            other => {
                let words: Vec<String> = other
                    .to_string()
                    .split_whitespace()
                    .take(2)
                    .map(str::to_uppercase)
                    .collect();
                return deny(words.join(" "));
            }
        }
        // Every relation and table function the statement names.
        struct Names<'a> {
            denied: Option<String>,
            ctes: std::collections::HashSet<String>,
            ok: &'a dyn Fn(&str) -> bool,
            schema_of: &'a dyn Fn(&ObjectName) -> String,
            catalog_view: &'a dyn Fn(&ObjectName) -> bool,
        }
        impl Visitor for Names<'_> {
            type Break = ();
            fn pre_visit_query(
                &mut self,
                q: &datafusion::sql::sqlparser::ast::Query,
            ) -> ControlFlow<()> {
                if let Some(with) = &q.with {
                    for cte in &with.cte_tables {
                        self.ctes.insert(cte.alias.name.value.to_lowercase());
                    }
                }
                ControlFlow::Continue(())
            }
            fn pre_visit_table_factor(&mut self, t: &TableFactor) -> ControlFlow<()> {
                if let TableFactor::Table { name, args, .. } = t {
                    let bare = match name.0.as_slice() {
                        [part] => part.as_ident().map(|i| i.value.to_lowercase()),
                        _ => None,
                    };
                    match args {
                        None if bare.is_some_and(|b| self.ctes.contains(&b)) => {}
                        Some(_)
                            if name.0.last().and_then(|p| p.as_ident()).is_some_and(|i| {
                                ROW_FUNCTIONS.contains(&i.value.to_lowercase().as_str())
                            }) => {}
                        None => {
                            if !(self.ok)(&(self.schema_of)(name)) && !(self.catalog_view)(name) {
                                self.denied = Some(format!("relation {name}"));
                                return ControlFlow::Break(());
                            }
                        }
                        Some(args) if name.to_string() == CALL_FUNCTION => {
                            if let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v)))) =
                                args.args.first()
                                && let Value::SingleQuotedString(p) = &v.value
                                && let Some((schema, _)) = p.split_once('.')
                                && (self.ok)(schema)
                            {
                                return ControlFlow::Continue(());
                            }
                            self.denied = Some("procedure".into());
                            return ControlFlow::Break(());
                        }
                        Some(_) => {
                            self.denied = Some(format!("function {name}"));
                            return ControlFlow::Break(());
                        }
                    }
                }
                ControlFlow::Continue(())
            }
        }
        let mut names = Names {
            denied: None,
            ctes: Default::default(),
            ok: &ok,
            schema_of: &schema_of,
            catalog_view: &catalog_view,
        };
        let _ = s.visit(&mut names);
        match names.denied {
            Some(what) => deny(what),
            None => Ok(()),
        }
    }
}
