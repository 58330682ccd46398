//! The PostgreSQL emulation, plugged into the engine as its [`Extension`].
//!
//! Clients (psql, pgjdbc, Npgsql/Power BI, DBeaver, SQLAlchemy...) read Postgres' catalogs
//! and call Postgres' functions before and around every query. This crate answers them:
//! `pg_catalog` (datafusion-pg-catalog's tables, with tidepool's procedures in `pg_proc`,
//! lake columns in `pg_attribute`, function oids in `pg_type`), `information_schema` in
//! Postgres' shape, `pg_settings`, `pg_roles`, the privilege-inquiry and other Postgres
//! functions, the rewrites that make client catalog queries plannable, and which catalog
//! answers the engine may cache. The engine knows none of it; it is the only crate above
//! the engine that depends on pgwire (through arrow-pg's type mapping).

mod acl;
mod array_literals;
mod cache_key;
pub mod catalog_arrays;
mod catalog_subqueries;
mod catalog_views;
mod gathered;
mod info_schema;
mod interval_arithmetic;
mod keys;
mod literal_input;
mod oids;
mod parse_ident;
mod parser;
mod pg_attrdef;
mod pg_attribute;
mod pg_collation;
mod pg_description;
mod pg_functions;
mod pg_proc;
mod pg_roles;
mod pg_settings;
mod pg_types;
mod privileges;
mod regclass_search;
mod regproc;
mod routines;
mod rules;
mod system_views;
mod type_names;

use std::sync::Arc;

use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{Statement, VisitMut};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use tidepool_engine::authz::Access;
use tidepool_engine::{CATALOG, Engine, EngineError, Extension, SessionView};

pub use pg_attribute::field_details as column_type;
pub use pg_roles::{Roles, TRUST_USER};

/// The PostgreSQL dialect: catalogs, functions and rewrites.
#[derive(Debug, Default)]
pub struct PgCompat {
    parser: parser::Compat,
    roles: Roles,
    /// Signature texts of procedures, shared by `pg_proc` and the `pg_get_function_*`
    /// functions.
    signatures: pg_proc::Signatures,
    /// The bundled `pg_catalog` and the lake tables' oids read from its `pg_class`
    /// (an oid, once given, stays), for RowDescription.
    pg_catalog: std::sync::OnceLock<Arc<dyn datafusion::catalog::SchemaProvider>>,
    relation_oids: parking_lot::Mutex<RelationOids>,
}

/// Lake table oids known, and when `pg_class` last lacked a table.
#[derive(Default)]
struct RelationOids {
    known: std::collections::HashMap<(String, String), i64>,
    missed: std::collections::HashMap<(String, String), std::time::Instant>,
}

impl std::fmt::Debug for RelationOids {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} relation oids", self.known.len())
    }
}

impl PgCompat {
    /// The dialect with `roles` in `pg_roles` (configuration order).
    pub fn new(roles: Roles) -> Arc<PgCompat> {
        Arc::new(PgCompat {
            parser: parser::Compat::new(),
            roles,
            signatures: Default::default(),
            pg_catalog: Default::default(),
            relation_oids: Default::default(),
        })
    }
}

impl Extension for PgCompat {
    fn configure(&self, state: SessionStateBuilder) -> SessionStateBuilder {
        // Array and boolean literals must be typed before type coercion looks at them.
        let mut analyzers: Vec<Arc<dyn datafusion::optimizer::AnalyzerRule + Send + Sync>> = vec![
            Arc::new(array_literals::ArrayLiterals),
            Arc::new(literal_input::LiteralInput),
        ];
        analyzers.extend(datafusion::optimizer::Analyzer::new().rules);
        // After type coercion: casts of regproc columns to text are in place.
        analyzers.push(Arc::new(regproc::RegprocNames));
        state
            .with_analyzer_rules(analyzers)
            .with_optimizer_rule(Arc::new(
                catalog_subqueries::UndecorrelatedCatalogSubqueries,
            ))
    }

    fn register(&self, ctx: &SessionContext, _access: &Access) -> Result<(), EngineError> {
        datafusion_pg_catalog::pg_catalog::setup_pg_catalog(ctx, CATALOG, self.roles.clone())
            .map_err(|e| EngineError::from(*e))?;
        // After the crate's setup, which installs its own type planner: ours plans more
        // names and hands the rest to it.
        {
            let state = ctx.state_ref();
            let existing = state.read().clone();
            *state.write() = SessionStateBuilder::new_from_existing(existing)
                .with_type_planner(Arc::new(type_names::TypeNames::default()))
                .build();
            use datafusion::execution::FunctionRegistry;
            state
                .write()
                .register_expr_planner(Arc::new(literal_input::BoolComparisons))?;
            state
                .write()
                .register_expr_planner(Arc::new(interval_arithmetic::IntervalArithmetic))?;
        }
        ctx.register_udf(interval_arithmetic::udf());
        ctx.register_udf(rules::like_escape_udf());
        ctx.register_udf(rules::tidin_udf());
        ctx.register_udf(regproc::name_udf());
        ctx.register_udf(parse_ident::udf());
        ctx.register_udtf(
            "pg_partition_ancestors",
            Arc::new(pg_functions::PartitionAncestors),
        );
        for f in pg_functions::udfs() {
            ctx.register_udf(f);
        }
        ctx.register_udf(acl::pg_get_expr_udf());
        for f in pg_proc::udfs(&self.signatures) {
            ctx.register_udf(f);
        }
        Ok(())
    }

    fn pure_table_functions(&self) -> &[&str] {
        &["pg_get_keywords", "pg_partition_ancestors"]
    }

    fn attach(&self, engine: &Arc<Engine>) -> Result<(), EngineError> {
        if let Some(lake) = engine.base().catalog(CATALOG)
            && let Some(inner) = lake.schema("pg_catalog")
        {
            let _ = self.pg_catalog.set(inner.clone());
            lake.register_schema(
                "pg_catalog",
                Arc::new(pg_proc::PgCatalog {
                    inner,
                    engine: Arc::downgrade(engine),
                    signatures: self.signatures.clone(),
                    regproc_tables: Default::default(),
                    builtin_procs: Default::default(),
                }),
            )?;
        }
        for (name, kind) in [
            ("routines", routines::Kind::Routines),
            ("parameters", routines::Kind::Parameters),
        ] {
            engine.register_gathered_system_table(
                name,
                Arc::new(routines::InformationTable {
                    engine: Arc::downgrade(engine),
                    kind,
                }),
            );
        }
        info_schema::register(engine);
        for index in [false, true] {
            engine
                .base()
                .register_udf(keys::KeyDefinition::udf(Arc::downgrade(engine), index));
        }
        Ok(())
    }

    fn parse(&self, sql: &str) -> Result<Vec<Statement>, EngineError> {
        if sql.contains("current_setting('search_path')") {
            // datafusion-pg-catalog swaps Grafana's search-path subquery for `''` (from
            // before `current_setting` existed), which makes every table look off the
            // path; tidepool answers `current_setting`, so only the rules apply.
            return Ok(datafusion::sql::sqlparser::parser::Parser::parse_sql(
                &PostgreSqlDialect {},
                sql,
            )?
            .into_iter()
            .map(|s| self.parser.rewrite(s))
            .collect());
        }
        self.parser.parse(sql)
    }

    fn relation_oids(
        &self,
        tables: Vec<(String, String)>,
    ) -> futures::future::BoxFuture<'_, std::collections::HashMap<(String, String), i64>> {
        Box::pin(async move {
            // `pg_class` is read for a table not known yet (just created), but for one
            // it lacked (a temporary table, which it never lists) at most every 2 s.
            let read = {
                let oids = self.relation_oids.lock();
                tables.iter().any(|t| {
                    !oids.known.contains_key(t)
                        && oids
                            .missed
                            .get(t)
                            .is_none_or(|at| at.elapsed() > std::time::Duration::from_secs(2))
                })
            };
            if read && let Some(catalog) = self.pg_catalog.get() {
                let all = keys::relation_oids(catalog).await.unwrap_or_default();
                let mut oids = self.relation_oids.lock();
                for (table, (oid, _)) in all {
                    oids.known.insert(table, oid);
                }
                let now = std::time::Instant::now();
                if oids.missed.len() > 10_000 {
                    oids.missed.clear();
                }
                for t in &tables {
                    if !oids.known.contains_key(t) {
                        oids.missed.insert(t.clone(), now);
                    }
                }
            }
            let oids = self.relation_oids.lock();
            tables
                .into_iter()
                .filter_map(|t| oids.known.get(&t).map(|oid| (t, *oid)))
                .collect()
        })
    }

    fn rewrite_parsed(&self, statement: Statement) -> Statement {
        self.parser.rewrite(statement)
    }

    fn rewrite(&self, statement: &mut Statement) -> Result<(), EngineError> {
        let _ = statement.visit(&mut catalog_views::CatalogViews);
        rules::rewrite(statement)
    }

    fn session_functions(
        &self,
        ctx: &SessionContext,
        session: SessionView<'_>,
    ) -> Result<(), EngineError> {
        ctx.register_udf(pg_functions::current_setting_udf(
            session
                .settings
                .all()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
                .collect(),
        ));
        for f in privileges::udfs(session.access, session.user, session.schema) {
            ctx.register_udf(f);
        }
        // Last: the only step that can fail leaves the functions above registered.
        ctx.register_udtf(
            pg_settings::FUNCTION,
            Arc::new(tidepool_engine::authz::guarded::Pure(Arc::new(
                pg_settings::ShowAllSettings::new(session.settings)?,
            ))),
        );
        Ok(())
    }

    fn cache_key(&self, statement: &DFStatement, session: SessionView<'_>) -> Option<String> {
        cache_key::key(
            statement,
            session.user,
            &session.settings.search_path().join(","),
        )
    }
}
