//! What a SQL dialect plugs into the engine.
//!
//! The engine plans and runs SQL over the lake and knows no client or wire protocol. The
//! PostgreSQL emulation (`pg_catalog`, `information_schema` in Postgres' shape, Postgres
//! functions, the rewrites that make psql's, DBeaver's and the drivers' catalog queries
//! plannable) lives in the `tidepool-pgcompat` crate and reaches the engine only through
//! [`Extension`]: at build time (rules, catalog tables, functions), when text is parsed
//! (its parser and rewrite rules), when a session's settings change (functions that answer
//! from them) and when a statement may be answered from the catalog-answer cache.

use std::sync::Arc;

use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::Statement;

use crate::authz::Access;
use crate::settings::SessionSettings;
use crate::{Engine, EngineError};

/// One session's state an extension may answer from.
#[derive(Debug, Clone, Copy)]
pub struct SessionView<'a> {
    /// The user the session acts as.
    pub user: &'a str,
    /// `SET` values, `search_path`, `TimeZone`...
    pub settings: &'a SessionSettings,
    /// The schema unqualified names resolve to (`current_schema()`).
    pub schema: &'a str,
    /// Every user's rights.
    pub access: &'a Access,
}

/// A SQL dialect's additions to the engine. Every method has a neutral default: an engine
/// built with [`NoExtension`] speaks DataFusion's SQL with the lake catalog.
pub trait Extension: Send + Sync + std::fmt::Debug + 'static {
    /// Adds optimizer rules to the base state before it is built.
    fn configure(&self, state: SessionStateBuilder) -> SessionStateBuilder {
        state
    }

    /// Registers catalog schemas, tables and functions on the base context.
    fn register(&self, _ctx: &SessionContext, _access: &Access) -> Result<(), EngineError> {
        Ok(())
    }

    /// Table functions [`Extension::register`] added that compute rows from their
    /// arguments alone (authorization lets everyone call them); any other table function
    /// the engine does not know is removed.
    fn pure_table_functions(&self) -> &[&str] {
        &[]
    }

    /// Registers what needs the built engine (tables listing lake objects or procedures).
    fn attach(&self, _engine: &Arc<Engine>) -> Result<(), EngineError> {
        Ok(())
    }

    /// Parses one chunk of SQL text in the dialect (no DataFusion-only syntax in it).
    fn parse(&self, sql: &str) -> Result<Vec<Statement>, EngineError> {
        crate::parse::parse_deep(sql)
    }

    /// Rewrites a statement the engine's own parser read (DataFusion syntax, or text the
    /// dialect's parser must not see) with the dialect's statement rules.
    fn rewrite_parsed(&self, statement: Statement) -> Statement {
        statement
    }

    /// Rewrites every statement after parsing, once its size is bounded.
    fn rewrite(&self, _statement: &mut Statement) -> Result<(), EngineError> {
        Ok(())
    }

    /// Registers the session functions that answer from its settings; called when the
    /// session opens and after every change of its settings.
    fn session_functions(
        &self,
        _ctx: &SessionContext,
        _session: SessionView<'_>,
    ) -> Result<(), EngineError> {
        Ok(())
    }

    /// The key under which `statement`'s answer may be cached until the lake's listing
    /// changes: only for statements that read catalogs alone.
    fn cache_key(&self, _statement: &DFStatement, _session: SessionView<'_>) -> Option<String> {
        None
    }

    /// The oids the dialect's catalog gives the lake tables `tables` (schema, name), for
    /// the columns' origins a RowDescription names ([`crate::origins`]); tables it does
    /// not list are left out.
    fn relation_oids(
        &self,
        _tables: Vec<(String, String)>,
    ) -> futures::future::BoxFuture<'_, std::collections::HashMap<(String, String), i64>> {
        Box::pin(async { Default::default() })
    }
}

/// DataFusion's SQL and the lake catalog, nothing more.
#[derive(Debug, Default)]
pub struct NoExtension;

impl Extension for NoExtension {}
