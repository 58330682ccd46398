//! The query engine: one DataFusion setup shared by every session.
//!
//! [`Engine`] owns the base session state (the `lake` catalog, table functions, JSON and
//! Postgres catalog functions, memory pool, limits); [`Session`] is one client's view of it
//! with its own settings (`search_path`, `TimeZone`...). Statements run through
//! [`Session::execute`], which handles session statements, lake DDL/DML and queries, and
//! returns rows as a stream that honours cancellation and the statement timeout.
//! This crate never depends on a wire-protocol crate (its Cargo.toml shows it): the
//! PostgreSQL emulation plugs in through [`Extension`] (the `tidepool-pgcompat` crate).

mod aggregate_keys;
mod aggregate_windows;
pub mod alter;
mod alter_view;
pub mod authz;
mod bounded_aggregates;
pub mod bytea;
mod catalog;
mod catalog_cache;
mod char_length;
mod checked_arithmetic;
pub mod complexity;
mod constraints;
pub mod copy;
mod correlated;
pub mod ctid;
mod cursors;
mod dependents;
mod dimension_filters;
mod distinct_from;
pub mod distributed;
mod error;
mod executor;
mod exists_values;
mod extension;
mod functions;
mod in_lists;
mod lake_scan;
pub mod lanes;
mod merge_do_nothing;
pub mod names;
pub mod origins;
pub mod parse;
mod pg_parameters;
mod planner_options;
pub mod procedures;
mod pushdown;
mod semi_joins;
mod session;
mod set_config;
mod settings;
mod stream;
mod string_agg;
mod subquery_nulls;
pub mod system;
mod temp_tables;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use datafusion::arrow::array::StringArray;
use datafusion::arrow::datatypes::DataType;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::scalar::ScalarValue;

pub use authz::Access;
pub use catalog::CATALOG;
pub use error::{EngineError, ErrorKind};
pub use extension::{Extension, NoExtension, SessionView};
pub use parse::{SqlParser, question_placeholders};
pub use session::{
    CommandTag, Described, IfExists, IfMissing, Ingest, Output, QueryControl, Session, SplitOutput,
    TxEffect, TxStatus,
};
pub use settings::SessionSettings;
pub use system::{AsyncSystemTable, DeltaSystemTable, SystemTable};
pub use temp_tables::TEMP_SCHEMA;

use tidepool_lake::Lake;

/// Version of this build.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The version string clients see in `version()` and `server_version`.
pub fn server_version() -> String {
    format!("16.6 (tidepool {VERSION})")
}

/// Limits the engine enforces.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub query_timeout: Option<Duration>,
    pub memory_limit: Option<usize>,
    pub target_partitions: Option<usize>,
    pub max_concurrent_queries: usize,
    /// Largest light query, in rows read ([`lanes`]); 0 disables the light lane.
    pub light_query_rows: u64,
    /// Per-user limits (`schemas = [...]` of `[[users]]`).
    pub access: Access,
}

impl Default for EngineOptions {
    /// No timeout or memory limit, a partition per core, 4 statements at once.
    fn default() -> Self {
        EngineOptions {
            query_timeout: None,
            memory_limit: None,
            target_partitions: None,
            max_concurrent_queries: 4,
            light_query_rows: 1_000_000,
            access: Access::default(),
        }
    }
}

/// Shared query engine over one lake.
pub struct Engine {
    lake: Arc<Lake>,
    base: SessionContext,
    parser: SqlParser,
    options: EngineOptions,
    lanes: lanes::Lanes,
    executor: executor::Executor,
    system: Arc<system::SystemSchema>,
    procedures: procedures::Registry,
    catalog_cache: catalog_cache::CatalogCache,
    extension: Arc<dyn Extension>,
    /// Where queries run when they may leave this node ([`distributed`]).
    cluster: OnceLock<Arc<dyn distributed::Cluster>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("lake", &self.lake).finish()
    }
}

/// How many of the largest memory consumers a 53200 error names.
const TOP_MEMORY_CONSUMERS: std::num::NonZeroUsize = std::num::NonZeroUsize::new(5).unwrap();

impl Engine {
    /// Builds the engine with a dialect's `extension`. Cheap: nothing is read from the
    /// lake until a statement needs it.
    pub fn new(
        lake: Arc<Lake>,
        options: EngineOptions,
        extension: Arc<dyn Extension>,
    ) -> Result<Arc<Engine>, EngineError> {
        options.access.security.attach(lake.clone());
        for rights in options.access.users.values() {
            for prefix in &rights.files {
                lake.named_stores().name(prefix);
            }
        }
        let mut runtime = RuntimeEnvBuilder::new().with_object_store_registry(Arc::new(
            tidepool_lake::LazyStores::new(
                lake.storage_options().clone(),
                lake.named_stores().clone(),
            ),
        ));
        if let Some(limit) = options.memory_limit {
            // Fair, not greedy: every operator that can spill (sorts, hash aggregates,
            // repartitions) gets its share and spills past it, so one sort cannot take
            // the whole pool and fail the merge of another (issue 21 item 6).
            use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
            runtime = runtime.with_memory_pool(Arc::new(TrackConsumersPool::new(
                FairSpillPool::new(limit),
                TOP_MEMORY_CONSUMERS,
            )));
            // A sort's merge of its spill files reserves memory for every file it opens,
            // greedily: unbounded, one partition's merge took the whole pool and the other
            // partition's failed with 53200. Allow each about 8 MiB a file.
            let partitions = options
                .target_partitions
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            let fan_in = (limit / (partitions.max(1) * (8 << 20))).clamp(4, 64);
            runtime = runtime.with_disk_manager_builder(
                datafusion::execution::disk_manager::DiskManagerBuilder::default()
                    .with_max_spill_merge_fan_in(fan_in),
            );
        }
        let runtime = runtime.build_arc()?;
        let mut config = SessionConfig::new()
            .with_default_catalog_and_schema(CATALOG, "public")
            .with_create_default_catalog_and_schema(false)
            .with_information_schema(true);
        if let Some(n) = options.target_partitions {
            config = config.with_target_partitions(n);
        }
        config.options_mut().sql_parser.enable_ident_normalization = true;
        config.options_mut().execution.time_zone = Some("UTC".to_string());
        config = config.with_option_extension(planner_options::PlannerOptions::default());

        let state_cell: catalog::StateCell = Arc::new(OnceLock::new());
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .with_query_planner(deltalake::delta_datafusion::planner::DeltaPlanner::new())
            .with_optimizer_rule(planner_options::Switched::wrap(
                aggregate_windows::AggregateWindows,
            ))
            .with_optimizer_rule(planner_options::Switched::wrap(
                aggregate_keys::AggregateKeys,
            ))
            .with_optimizer_rule(planner_options::Switched::wrap(semi_joins::SemiJoinsDown))
            .with_optimizer_rule(planner_options::Switched::wrap(
                dimension_filters::DimensionFilters,
            ))
            .with_physical_optimizer_rules(
                bounded_aggregates::BoundedAggregates::with_default_rules(
                    options.memory_limit.is_some(),
                ),
            );
        let mut state = extension.configure(state).build();
        state.table_factories_mut().insert(
            "DELTA".to_string(),
            Arc::new(deltalake::delta_datafusion::DeltaTableFactory {}),
        );
        state.table_factories_mut().insert(
            "DELTATABLE".to_string(),
            Arc::new(deltalake::delta_datafusion::DeltaTableFactory {}),
        );
        state.add_analyzer_rule(Arc::new(subquery_nulls::NullableScalarSubqueries));
        state.add_analyzer_rule(Arc::new(correlated::CorrelatedScalarSubqueries));
        state.add_analyzer_rule(Arc::new(exists_values::ExistsValues));
        state.add_analyzer_rule(Arc::new(in_lists::LongInLists));
        state.add_analyzer_rule(Arc::new(checked_arithmetic::CheckedIntegerArithmetic));
        datafusion_functions_json::register_all(&mut state)?;
        let lake_catalog = Arc::new(catalog::LakeCatalog::new(lake.clone(), state_cell.clone()));
        let system = Arc::new(system::SystemSchema::default());
        {
            use datafusion::catalog::CatalogProvider;
            lake_catalog.register_schema("system", system.clone())?;
        }
        state
            .catalog_list()
            .register_catalog(CATALOG.to_string(), lake_catalog.clone());
        let ctx = SessionContext::new_with_state(state);
        ctx.register_udtf(
            "read_delta",
            Arc::new(functions::ReadDelta { lake: lake.clone() }),
        );
        for (name, kind) in [
            ("read_parquet", functions::FileKind::Parquet),
            ("read_csv", functions::FileKind::Csv),
            ("read_json", functions::FileKind::Json),
        ] {
            ctx.register_udtf(name, Arc::new(functions::ReadFiles { kind }));
        }
        ctx.register_udtf(
            "table_history",
            Arc::new(functions::TableHistory { lake: lake.clone() }),
        );
        extension.register(&ctx, &options.access)?;
        guard_table_functions(&ctx, extension.pure_table_functions());
        ctx.register_udf(version_udf());
        ctx.register_udaf(string_agg::string_agg());
        let _ = state_cell.set(ctx.state());
        let engine =
            Arc::new(Engine {
                lake,
                base: ctx,
                parser: SqlParser::new(extension.clone()),
                lanes: lanes::Lanes::new(options.max_concurrent_queries, options.light_query_rows),
                executor: executor::Executor::new(options.target_partitions.unwrap_or_else(|| {
                    std::thread::available_parallelism().map_or(2, |n| n.get())
                }))
                .map_err(datafusion::error::DataFusionError::IoError)?,
                options,
                system,
                procedures: procedures::Registry::default(),
                catalog_cache: Default::default(),
                extension,
                cluster: OnceLock::new(),
            });
        authz::catalog::register(&engine);
        engine.system.register_gathered(
            "procedures",
            Arc::new(procedures::ProceduresTable {
                engine: Arc::downgrade(&engine),
            }),
        );
        engine.extension.clone().attach(&engine)?;
        Ok(engine)
    }

    /// Publishes a table in the `system` schema (`system.<name>`).
    pub fn register_system_table(&self, name: &str, table: Arc<dyn SystemTable>) {
        self.system.register(name, table);
    }

    /// Publishes a table computed when read (it may list the lake or use the engine) as
    /// `system.<name>`.
    pub fn register_gathered_system_table(&self, name: &str, table: Arc<dyn AsyncSystemTable>) {
        self.system.register_gathered(name, table);
    }

    /// Publishes a Delta table of the lake as `system.<name>`.
    pub fn register_system_delta(&self, name: &str, table: system::DeltaSystemTable) {
        self.system.register_delta(name, table);
    }

    /// Opens a session for `user`, with procedures callable in `FROM` as that user.
    pub fn session(self: &Arc<Self>, user: &str) -> Session {
        let session = Session::new(self.clone(), user);
        session.ctx.register_udtf(
            procedures::table_fn::CALL_FUNCTION,
            Arc::new(procedures::table_fn::CallFunction {
                engine: Arc::downgrade(self),
                user: user.to_string(),
            }),
        );
        session
    }

    /// The procedure `schema.name`, from the registry or the lake; `None` when there is
    /// none.
    pub async fn procedure(
        self: &Arc<Self>,
        schema: &str,
        name: &str,
    ) -> Result<Option<Arc<procedures::Procedure>>, EngineError> {
        session::load_procedure(self, schema, name).await
    }

    /// Runs one query as the built-in user and collects its rows: for the server's own
    /// reads (admin API, demo, benchmarks), not for client statements.
    pub async fn query(
        self: &Arc<Self>,
        sql: &str,
    ) -> Result<Vec<datafusion::arrow::record_batch::RecordBatch>, EngineError> {
        use futures::TryStreamExt;
        let mut session = self.session("tidepool");
        let control = QueryControl::new(tokio_util::sync::CancellationToken::new(), None);
        let stmt = session.parse(sql)?.pop().ok_or_else(|| {
            EngineError::Syntax("an empty statement where a query was expected".into())
        })?;
        match session.execute(stmt, None, &control).await? {
            Output::Rows { stream, .. } | Output::CopyOut { stream, .. } => {
                stream.try_collect().await.map_err(EngineError::from_stream)
            }
            Output::Command(_) => Ok(Vec::new()),
            Output::CopyIn(_) => Err(EngineError::NotSupported(
                "COPY FROM STDIN without a client to send the data".into(),
            )),
        }
    }

    /// The schemas `user` may read, when it is a reader limited to some.
    pub fn readable_schemas(&self, user: &str) -> Option<&std::collections::BTreeSet<String>> {
        self.options.access.reader_schemas(user)
    }

    /// Names of the tables in the `system` schema.
    pub fn system_tables(&self) -> Vec<String> {
        use datafusion::catalog::SchemaProvider;
        self.system.table_names()
    }

    /// The Arrow schema of a table or view of the lake (or `system`), if it exists.
    pub async fn table_schema(
        &self,
        schema: &str,
        name: &str,
    ) -> Result<Option<datafusion::arrow::datatypes::SchemaRef>, EngineError> {
        let Some(catalog) = self.base.catalog(CATALOG) else {
            return Ok(None);
        };
        let Some(provider) = catalog.schema(schema) else {
            return Ok(None);
        };
        Ok(provider.table(name).await?.map(|t| t.schema()))
    }

    /// The lake this engine serves.
    pub fn lake(&self) -> &Arc<Lake> {
        &self.lake
    }

    /// Parses SQL text into statements.
    /// Parsed procedures.
    pub fn procedures(&self) -> &procedures::Registry {
        &self.procedures
    }

    pub fn parser(&self) -> &SqlParser {
        &self.parser
    }

    /// The base context every session starts from.
    pub fn base(&self) -> &SessionContext {
        &self.base
    }

    /// The dialect plugged in.
    pub fn extension(&self) -> &Arc<dyn Extension> {
        &self.extension
    }

    /// The limits and rights this engine enforces.
    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    pub(crate) fn lanes(&self) -> &lanes::Lanes {
        &self.lanes
    }

    pub(crate) fn executor(&self) -> &executor::Executor {
        &self.executor
    }

    /// Sends queries that may leave this node to `cluster` (once, at start).
    pub fn set_cluster(&self, cluster: Arc<dyn distributed::Cluster>) {
        let _ = self.cluster.set(cluster);
    }

    /// The cluster queries may run on, when one is configured.
    pub fn cluster(&self) -> Option<&Arc<dyn distributed::Cluster>> {
        self.cluster.get()
    }

    /// Stops admitting new statements (used on shutdown).
    pub fn close(&self) {
        self.lanes.close();
    }
}

/// Table functions of ours: they report what they read themselves.
const OWN_TABLE_FUNCTIONS: &[&str] = &[
    "read_delta",
    "read_parquet",
    "read_csv",
    "read_json",
    "table_history",
];

/// Table functions from DataFusion that compute rows from their arguments alone.
const PURE_TABLE_FUNCTIONS: &[&str] = &["generate_series", "range"];

/// Marks the pure table functions (DataFusion's and the extension's `pure`) as reading
/// nothing and removes any other function we do not know, so that no table function
/// reaches a plan without saying what it reads.
fn guard_table_functions(ctx: &SessionContext, pure: &[&str]) {
    let registered: Vec<(String, Arc<dyn datafusion::catalog::TableFunctionImpl>)> = ctx
        .state()
        .table_functions()
        .iter()
        .map(|(name, f)| (name.clone(), f.function().clone()))
        .collect();
    for (name, f) in registered {
        if OWN_TABLE_FUNCTIONS.contains(&name.as_str()) {
            continue;
        }
        if PURE_TABLE_FUNCTIONS.contains(&name.as_str()) || pure.contains(&name.as_str()) {
            ctx.register_udtf(&name, Arc::new(authz::guarded::Pure(f)));
        } else {
            tracing::debug!(function = %name, "table function not known to authorization: removed");
            ctx.deregister_udtf(&name);
        }
    }
}

fn version_udf() -> datafusion::logical_expr::ScalarUDF {
    constant_text_udf(
        "version",
        format!(
            "PostgreSQL {} on x86_64-pc-linux-gnu, compiled by rustc, 64-bit",
            server_version()
        ),
    )
}

/// A zero-argument function returning fixed text (`version()`, `current_schema()`...).
pub fn constant_text_udf(name: &str, text: String) -> datafusion::logical_expr::ScalarUDF {
    create_udf(
        name,
        vec![],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |_args: &[ColumnarValue]| {
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(text.clone()))))
        }),
    )
}

/// A one-column text result, used by SHOW.
pub(crate) fn text_batch(
    column: &str,
    values: Vec<String>,
) -> Result<datafusion::arrow::record_batch::RecordBatch, EngineError> {
    use datafusion::arrow::datatypes::{Field, Schema};
    let schema = Arc::new(Schema::new(vec![Field::new(column, DataType::Utf8, true)]));
    Ok(datafusion::arrow::record_batch::RecordBatch::try_new(
        schema,
        vec![Arc::new(StringArray::from(values))],
    )
    .map_err(datafusion::error::DataFusionError::from)?)
}
