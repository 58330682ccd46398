//! One client's session: its settings and the execution of its statements.
//!
//! Statements go one of three ways. Session statements (SET, SHOW, RESET, BEGIN, COMMIT,
//! ROLLBACK, DISCARD) only touch [`SessionSettings`]. Lake DDL and DML (CREATE TABLE AS,
//! CREATE TABLE, INSERT, CREATE VIEW, CREATE EXTERNAL TABLE, CREATE/DROP SCHEMA, DROP)
//! are planned by DataFusion and carried out on the lake. Everything else is a query whose
//! rows stream back batch by batch.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::{ParamValues, TableReference};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::{DdlStatement, LogicalPlan, WriteOp};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::{DataFrame, SessionContext};
use datafusion::sql::parser::{CopyToSource, CopyToStatement, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{
    CopyOption, CopySource, CopyTarget, Expr as SqlExpr, ObjectName, Reset, Set, Statement,
    Value as SqlValue,
};
use futures::StreamExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::cursors::{Cursors, fetch_count};
use super::lanes::{Lane, Slot};
use super::settings::SessionSettings;
use super::stream::GuardedStream;
use super::temp_tables::{self, TempTables};
use super::{CATALOG, Engine, EngineError, SessionView};
use tidepool_lake::{DefinitionKind, WriteMode};

/// How a statement changes the transaction state a client sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxEffect {
    None,
    Begin,
    End,
}

/// Completion tag of a statement that returns no rows (`INSERT 0 5`, `CREATE TABLE`...).
#[derive(Debug, Clone)]
pub struct CommandTag {
    pub tag: String,
    pub rows: Option<u64>,
    pub tx: TxEffect,
}

impl CommandTag {
    pub(super) fn new(tag: &str) -> Self {
        CommandTag {
            tag: tag.to_string(),
            rows: None,
            tx: TxEffect::None,
        }
    }
    /// A tag that begins or ends a transaction block.
    fn ending(tag: &str, tx: TxEffect) -> Self {
        CommandTag {
            tag: tag.to_string(),
            rows: None,
            tx,
        }
    }
    fn with_rows(tag: &str, rows: u64) -> Self {
        CommandTag {
            tag: tag.to_string(),
            rows: Some(rows),
            tx: TxEffect::None,
        }
    }
}

/// What a statement produced.
pub enum Output {
    /// Rows, streamed; `tag` is the completion tag (`SELECT`, `SHOW`...).
    Rows {
        stream: SendableRecordBatchStream,
        tag: &'static str,
    },
    Command(CommandTag),
}

/// What [`Session::execute_split`] returns.
pub enum SplitOutput {
    /// Ran as [`Session::execute`] would.
    One(Output),
    /// Rows as independent partition streams, in no particular order.
    Partitions(Vec<SendableRecordBatchStream>),
}

impl SplitOutput {
    /// One output: partitions are read as one stream, in whatever order they produce.
    pub fn into_output(self) -> Output {
        match self {
            SplitOutput::One(out) => out,
            SplitOutput::Partitions(streams) => {
                let schema = streams
                    .first()
                    .map(|s| s.schema())
                    .unwrap_or_else(|| Arc::new(datafusion::arrow::datatypes::Schema::empty()));
                Output::Rows {
                    stream: Box::pin(RecordBatchStreamAdapter::new(
                        schema,
                        futures::stream::select_all(streams),
                    )),
                    tag: "SELECT",
                }
            }
        }
    }
}

/// Whether a query's partitions are merged into one stream (every protocol but one) or
/// returned apart ([`Session::execute_split`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    Merged,
    Partitioned,
}

/// What a statement will take and return, without running it.
#[derive(Debug, Clone)]
pub struct Described {
    /// Types of `$1..$n`, where DataFusion could infer them.
    pub params: Vec<Option<DataType>>,
    /// Columns of the result; `None` for statements without rows.
    pub schema: Option<SchemaRef>,
}

/// Cancellation and deadline of one statement.
#[derive(Debug, Clone)]
pub struct QueryControl {
    pub cancel: CancellationToken,
    pub deadline: Option<Instant>,
}

impl QueryControl {
    pub fn new(cancel: CancellationToken, timeout: Option<Duration>) -> Self {
        QueryControl {
            cancel,
            deadline: timeout.map(|t| Instant::now() + t),
        }
    }
}

/// One client's session.
pub struct Session {
    pub(super) engine: Arc<Engine>,
    pub(super) ctx: SessionContext,
    user: String,
    /// What the user may touch; also in `ctx`'s config for table functions.
    principal: Arc<super::authz::Principal>,
    settings: SessionSettings,
    /// Temporary tables, once the session creates one.
    temp: Option<TempTables>,
    cursors: Cursors,
}

impl Session {
    pub(super) fn new(engine: Arc<Engine>, user: &str) -> Self {
        let ctx = SessionContext::new_with_state(engine.base().state());
        for name in ["session_user", "current_user", "user"] {
            ctx.register_udf(super::constant_text_udf(name, user.to_string()));
        }
        ctx.register_udtf(
            super::procedures::table_fn::CALL_FUNCTION,
            Arc::new(super::procedures::table_fn::CallFunction {
                engine: Arc::downgrade(&engine),
                user: user.to_string(),
            }),
        );
        let settings = SessionSettings::default();
        let principal = engine.options().access.principal(user);
        ctx.state_ref()
            .write()
            .config_mut()
            .set_extension(principal.clone());
        if let Err(e) = engine.extension().session_functions(
            &ctx,
            SessionView {
                user,
                settings: &settings,
                schema: "public",
                access: &engine.options().access,
            },
        ) {
            tracing::error!("session functions: {e}");
        }
        Session {
            engine,
            ctx,
            user: user.to_string(),
            principal,
            settings,
            temp: None,
            cursors: Cursors::default(),
        }
    }

    /// Who this session acts as.
    pub fn principal(&self) -> Arc<super::authz::Principal> {
        self.principal.clone()
    }

    /// The user this session belongs to.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Result columns of an open SQL cursor.
    pub fn cursor_schema(&self, name: &str) -> Option<SchemaRef> {
        self.cursors.schema(name).ok()
    }

    /// The engine behind this session.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Parses SQL text into statements; result columns get Postgres' names.
    pub fn parse(&self, sql: &str) -> Result<Vec<DFStatement>, EngineError> {
        let mut statements = self.engine.parser().parse(sql)?;
        for s in &mut statements {
            if let DFStatement::Statement(inner) = s {
                super::names::apply_postgres_names(inner);
            }
        }
        Ok(statements)
    }

    /// Sets a setting as a client's startup parameters do.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), EngineError> {
        self.settings.set(name, value.to_string())?;
        self.apply_settings()
    }

    /// The statement timeout in force: the session's `statement_timeout`, else the server's.
    pub fn timeout(&self) -> Option<Duration> {
        self.settings
            .statement_timeout()
            .or(self.engine.options().query_timeout)
    }

    fn apply_settings(&mut self) -> Result<(), EngineError> {
        let path = self.settings.search_path();
        let listing = self.engine.lake().cached_listing();
        let schema = path
            .iter()
            .find(|s| listing.schemas.contains_key(s.as_str()) || *s == "pg_catalog")
            .or(path.first())
            .cloned()
            .unwrap_or_else(|| "public".to_string());
        let tz = self.settings.time_zone();
        self.ctx
            .register_udf(super::constant_text_udf("current_schema", schema.clone()));
        self.engine.extension().session_functions(
            &self.ctx,
            SessionView {
                user: &self.user,
                settings: &self.settings,
                schema: &schema,
                access: &self.engine.options().access,
            },
        )?;
        let state = self.ctx.state_ref();
        let mut state = state.write();
        let options = state.config_mut().options_mut();
        options.catalog.default_schema = schema;
        options.execution.time_zone = Some(tz);
        Ok(())
    }

    /// Describes a statement: parameter types and result columns.
    pub async fn describe(&mut self, stmt: &DFStatement) -> Result<Described, EngineError> {
        if let DFStatement::Statement(s) = stmt
            && let Statement::Declare { stmts } = s.as_ref()
        {
            // DECLARE returns no rows; its parameters are its query's.
            let query = match stmts.as_slice() {
                [d] => d.for_query.clone(),
                _ => None,
            };
            let params = match query {
                Some(q) => {
                    let inner = DFStatement::Statement(Box::new(Statement::Query(q)));
                    Box::pin(self.describe(&inner)).await?.params
                }
                None => Vec::new(),
            };
            return Ok(Described {
                params,
                schema: None,
            });
        }
        if let Some(schema) = self.session_statement_schema(stmt)? {
            return Ok(Described {
                params: Vec::new(),
                schema,
            });
        }
        if let DFStatement::Statement(s) = stmt
            && matches!(
                s.as_ref(),
                Statement::Grant(_)
                    | Statement::Revoke(_)
                    | Statement::CreatePolicy(_)
                    | Statement::DropPolicy(_)
            )
        {
            return Ok(Described {
                params: Vec::new(),
                schema: None,
            });
        }
        let mut stmt = stmt.clone();
        self.prepare_temp(&mut stmt)?;
        if let Some(d) = self.describe_procedure_statement(&stmt).await? {
            return Ok(d);
        }
        let listing = self.engine.lake().listing().await?;
        if let Some(key) = self.catalog_key(&stmt)
            && let Some(hit) =
                self.engine
                    .catalog_cache
                    .get(&key, &listing, self.engine.lake().refresh_interval())
        {
            return Ok(Described {
                params: Vec::new(),
                schema: Some(hit.schema),
            });
        }
        let plan = self.plan(stmt).await?;
        let mut types = plan.get_parameter_types()?;
        infer_from_casts(&plan, &mut types)?;
        let params = ordered_params(types);
        let schema = match &plan {
            LogicalPlan::Ddl(_) | LogicalPlan::Dml(_) | LogicalPlan::Copy(_) => None,
            LogicalPlan::Statement(_) => None,
            p => Some(Arc::new(p.schema().as_arrow().clone())),
        };
        Ok(Described { params, schema })
    }

    /// Plans one query (a model's SELECT) as a DataFrame, without running it.
    pub async fn dataframe(
        &self,
        sql: &str,
    ) -> Result<datafusion::dataframe::DataFrame, EngineError> {
        let mut statements = self.parse(sql)?;
        if statements.len() != 1 {
            return Err(EngineError::NotSupported(format!(
                "{} statements where one query was expected",
                statements.len()
            )));
        }
        let stmt = statements.remove(0);
        self.refresh_listing().await?;
        let plan = self.plan(stmt).await?;
        Ok(datafusion::dataframe::DataFrame::new(
            self.ctx.state(),
            plan,
        ))
    }

    /// The session's DataFusion state, for operations planned outside SQL (Delta MERGE).
    pub fn state(&self) -> datafusion::execution::SessionState {
        self.ctx.state()
    }

    /// Runs one statement.
    pub async fn execute(
        &mut self,
        stmt: DFStatement,
        params: Option<ParamValues>,
        control: &QueryControl,
    ) -> Result<Output, EngineError> {
        self.execute_shaped(stmt, params, control, Shape::Merged)
            .await
            .map(SplitOutput::into_output)
    }

    /// Runs a query like [`Session::execute`], but when its plan ends in several
    /// independent partitions (no ORDER BY, LIMIT or final aggregate merges them), returns
    /// them apart: a client that reads them at once (Flight SQL endpoints) spreads the
    /// encoding over the cores. Only plain queries split; everything else runs as
    /// `execute` runs it.
    pub async fn execute_split(
        &mut self,
        stmt: DFStatement,
        params: Option<ParamValues>,
        control: &QueryControl,
    ) -> Result<SplitOutput, EngineError> {
        let shape = match &stmt {
            DFStatement::Statement(s) if matches!(**s, Statement::Query(_)) => Shape::Partitioned,
            _ => Shape::Merged,
        };
        self.execute_shaped(stmt, params, control, shape).await
    }

    async fn execute_shaped(
        &mut self,
        mut stmt: DFStatement,
        params: Option<ParamValues>,
        control: &QueryControl,
        shape: Shape,
    ) -> Result<SplitOutput, EngineError> {
        if let Some(out) = self.session_statement(&stmt)? {
            return Ok(SplitOutput::One(out));
        }
        if let DFStatement::Statement(s) = &stmt {
            match s.as_ref() {
                Statement::Declare { stmts } => {
                    return self.declare(stmts, params).await.map(SplitOutput::One);
                }
                Statement::Fetch {
                    name, direction, ..
                } => {
                    return self
                        .fetch(&ident_text(name), direction, control)
                        .await
                        .map(SplitOutput::One);
                }
                _ => {}
            }
        }
        self.prepare_temp(&mut stmt)?;
        if let Some(out) = self.security_statement(&stmt).await? {
            return Ok(SplitOutput::One(out));
        }
        // Waiting for a slot counts against the statement's timeout and can be cancelled.
        let work = self.execute_planned(stmt, params, control, shape);
        let cancelled = control.cancel.cancelled();
        let deadline = async {
            match control.deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = work => r,
            _ = cancelled => Err(EngineError::Cancelled),
            _ = deadline => Err(EngineError::Timeout),
        }
    }

    /// `DECLARE name CURSOR FOR query`: starts the query and keeps its stream open.
    async fn declare(
        &mut self,
        stmts: &[datafusion::sql::sqlparser::ast::Declare],
        params: Option<ParamValues>,
    ) -> Result<Output, EngineError> {
        use datafusion::sql::sqlparser::ast::DeclareType;
        let [decl] = stmts else {
            return Err(EngineError::NotSupported("DECLARE of several names".into()));
        };
        let (Some(DeclareType::Cursor), Some(query), [name]) =
            (&decl.declare_type, &decl.for_query, decl.names.as_slice())
        else {
            return Err(EngineError::NotSupported(
                "DECLARE other than DECLARE name CURSOR FOR query".into(),
            ));
        };
        let name = ident_text(name);
        if self.cursors.schema(&name).is_ok() {
            return Err(EngineError::DuplicateCursor(name));
        }
        // The cursor outlives this statement: its query has no deadline of its own (each
        // FETCH has one) and ends when the cursor closes.
        let control = QueryControl::new(CancellationToken::new(), None);
        let inner = DFStatement::Statement(Box::new(Statement::Query(query.clone())));
        match Box::pin(self.execute(inner, params, &control)).await? {
            Output::Rows { stream, .. } => {
                self.cursors
                    .declare(&name, stream, decl.hold.unwrap_or(false))?;
                Ok(Output::Command(CommandTag::new("DECLARE CURSOR")))
            }
            Output::Command(_) => Err(EngineError::NotSupported(
                "a cursor over a statement that returns no rows".into(),
            )),
        }
    }

    /// `FETCH n FROM name`: the cursor's next rows, within this statement's cancel and
    /// deadline.
    async fn fetch(
        &mut self,
        name: &str,
        direction: &datafusion::sql::sqlparser::ast::FetchDirection,
        control: &QueryControl,
    ) -> Result<Output, EngineError> {
        let count = fetch_count(direction)?;
        let work = self.cursors.fetch(name, count);
        let deadline = async {
            match control.deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let (schema, batches) = tokio::select! {
            r = work => r?,
            _ = control.cancel.cancelled() => return Err(EngineError::Cancelled),
            _ = deadline => return Err(EngineError::Timeout),
        };
        let stream = futures::stream::iter(batches.into_iter().map(Ok)).boxed();
        Ok(Output::Rows {
            stream: Box::pin(RecordBatchStreamAdapter::new(schema, stream)),
            tag: "FETCH",
        })
    }

    /// Qualifies temporary tables in `stmt` and lays `pg_temp` over the catalog the first
    /// time the session creates one.
    fn prepare_temp(&mut self, stmt: &mut DFStatement) -> Result<(), EngineError> {
        let DFStatement::Statement(s) = stmt else {
            return Ok(());
        };
        let names = self.temp.as_ref().map(|t| t.names()).unwrap_or_default();
        if temp_tables::rewrite(s, &names)? && self.temp.is_none() {
            let temp = TempTables::default();
            self.ctx = SessionContext::new_with_state(temp.overlay(self.ctx.state()));
            self.temp = Some(temp);
        }
        Ok(())
    }

    /// Creates, fills or drops a temporary table.
    async fn run_temp(&mut self, plan: LogicalPlan) -> Result<Output, EngineError> {
        let Some(temp) = &self.temp else {
            return Err(EngineError::UndefinedSchema(
                temp_tables::TEMP_SCHEMA.to_string(),
            ));
        };
        match plan {
            LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(c)) => {
                let name = c.name.table();
                if temp.exists(name) && !c.or_replace {
                    if c.if_not_exists {
                        return Ok(Output::Command(CommandTag::new("CREATE TABLE")));
                    }
                    return Err(EngineError::DuplicateTable(name.to_string()));
                }
                let is_ctas = !matches!(c.input.as_ref(), LogicalPlan::EmptyRelation(_));
                let mut schema = c.input.schema().as_arrow().clone();
                if is_ctas {
                    // Postgres columns are nullable unless declared NOT NULL.
                    let fields: Vec<_> = schema
                        .fields()
                        .iter()
                        .map(|f| f.as_ref().clone().with_nullable(true))
                        .collect();
                    schema = datafusion::arrow::datatypes::Schema::new(fields);
                }
                let schema = Arc::new(schema);
                let batches = DataFrame::new(self.ctx.state(), (*c.input).clone())
                    .collect()
                    .await?;
                let batches = batches
                    .into_iter()
                    .map(|b| b.with_schema(schema.clone()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(datafusion::error::DataFusionError::from)?;
                let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
                let table = datafusion::datasource::MemTable::try_new(schema, vec![batches])?;
                temp.register(name, Arc::new(table))?;
                Ok(Output::Command(if is_ctas {
                    CommandTag::with_rows("SELECT", rows as u64)
                } else {
                    CommandTag::new("CREATE TABLE")
                }))
            }
            LogicalPlan::Ddl(DdlStatement::DropTable(d)) => {
                if !temp.drop(d.name.table())? && !d.if_exists {
                    return Err(EngineError::UndefinedTable(d.name.to_string()));
                }
                Ok(Output::Command(CommandTag::new("DROP TABLE")))
            }
            plan => {
                let batches = self.ctx.execute_logical_plan(plan).await?.collect().await?;
                Ok(Output::Command(CommandTag::with_rows(
                    "INSERT 0",
                    count_of(&batches),
                )))
            }
        }
    }

    /// The catalog cache's key for `stmt` in this session, if it may be cached.
    fn catalog_key(&self, stmt: &DFStatement) -> Option<String> {
        let schema = self
            .ctx
            .state_ref()
            .read()
            .config()
            .options()
            .catalog
            .default_schema
            .clone();
        self.engine.extension().cache_key(
            stmt,
            SessionView {
                user: &self.user,
                settings: &self.settings,
                schema: &schema,
                access: &self.engine.options().access,
            },
        )
    }

    async fn refresh_listing(&self) -> Result<(), EngineError> {
        self.engine.lake().listing().await?;
        Ok(())
    }

    /// Plans a statement and authorizes the plan for this session's principal.
    pub(super) async fn plan(&self, stmt: DFStatement) -> Result<LogicalPlan, EngineError> {
        let principal = self.principal.clone();
        self.engine.options().access.security.refresh().await?;
        self.plan_as(stmt, principal).await
    }

    /// Plans a statement as `principal` (a procedure's owner runs its body) and refuses
    /// it (42501) unless `principal` may touch everything the plan reads and writes.
    pub(super) async fn plan_as(
        &self,
        stmt: DFStatement,
        principal: Arc<super::authz::Principal>,
    ) -> Result<LogicalPlan, EngineError> {
        let mut state = self.ctx.state();
        state.config_mut().set_extension(principal.clone());
        let stmt = match stmt {
            DFStatement::Statement(inner) => match *inner {
                Statement::Copy {
                    source,
                    to: true,
                    target: CopyTarget::File { filename },
                    options,
                    ..
                } => DFStatement::CopyTo(copy_to(source, filename, &options)?),
                Statement::Copy { .. } => {
                    return Err(EngineError::NotSupported(
                        "COPY FROM and COPY TO STDOUT (copy to a file or object store path)".into(),
                    ));
                }
                other => DFStatement::Statement(Box::new(other)),
            },
            other => other,
        };
        if let DFStatement::Statement(s) = &stmt {
            for (schema, name) in super::procedures::table_fn::called(s) {
                Box::pin(super::procedures::load(&self.engine, &schema, &name)).await?;
            }
        }
        let plan = state.statement_to_plan(stmt).await?;
        let default_schema = state.config().options().catalog.default_schema.clone();
        principal.check_all(&super::authz::plan::touches(&plan, &default_schema)?)?;
        // Policies filter for the session's user, also in bodies run as their owner.
        super::authz::rls::apply(plan, &self.principal, &default_schema, &state)
    }

    async fn execute_planned(
        &mut self,
        stmt: DFStatement,
        params: Option<ParamValues>,
        control: &QueryControl,
        shape: Shape,
    ) -> Result<SplitOutput, EngineError> {
        let listing = self.engine.lake().listing().await?;
        let catalog_key = if params.is_none() {
            self.catalog_key(&stmt)
        } else {
            None
        };
        if let Some(key) = &catalog_key {
            let cache = &self.engine.catalog_cache;
            let ttl = self.engine.lake().refresh_interval();
            let hit = match cache.get(key, &listing, ttl) {
                Some(hit) => hit,
                None => {
                    let _slot = self.engine.lanes().admit(Lane::Light).await?;
                    let plan = self.plan(stmt).await?;
                    let df = DataFrame::new(self.ctx.state(), plan);
                    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
                    let batches = df.collect().await?;
                    cache.put(key.clone(), listing, schema.clone(), &batches);
                    super::catalog_cache::Hit { schema, batches }
                }
            };
            let stream = futures::stream::iter(hit.batches.into_iter().map(Ok)).boxed();
            return Ok(SplitOutput::One(Output::Rows {
                stream: Box::pin(RecordBatchStreamAdapter::new(hit.schema, stream)),
                tag: "SELECT",
            }));
        }
        let view_query = match &stmt {
            DFStatement::Statement(s) => match s.as_ref() {
                Statement::CreateView(v) => Some(v.query.to_string()),
                _ => None,
            },
            _ => None,
        };
        if let Some(out) = self
            .procedure_statement(&stmt, params.as_ref(), control)
            .await?
        {
            return Ok(SplitOutput::One(out));
        }
        let original = stmt.to_string();
        let mut plan = self.plan(stmt).await?;
        if let Some(p) = params {
            plan = plan.with_param_values(p)?;
        }
        self.run_plan_shaped(plan, view_query, original, control, Slot::Unclaimed, shape)
            .await
    }

    /// [`Session::run_plan`], with a query's partitions apart when `shape` asks for it.
    async fn run_plan_shaped(
        &mut self,
        plan: LogicalPlan,
        view_query: Option<String>,
        original: String,
        control: &QueryControl,
        slot: Slot,
        shape: Shape,
    ) -> Result<SplitOutput, EngineError> {
        let plain_query = !temp_tables::targets_temp(&plan)
            && !matches!(
                plan,
                LogicalPlan::Dml(_)
                    | LogicalPlan::Ddl(_)
                    | LogicalPlan::Copy(_)
                    | LogicalPlan::Statement(_)
            );
        if shape == Shape::Partitioned && plain_query {
            return self.run_query(plan, control, slot, shape).await;
        }
        self.run_plan(plan, view_query, original, control, slot)
            .await
            .map(SplitOutput::One)
    }

    /// Runs a planned statement: DDL and DML against the lake, queries as a stream.
    /// Queries take a slot of their lane ([`super::lanes`]) and heavy ones execute on the
    /// [`super::executor::Executor`]; writes and COPY are heavy.
    pub(super) async fn run_plan(
        &mut self,
        plan: LogicalPlan,
        view_query: Option<String>,
        original: String,
        control: &QueryControl,
        slot: Slot,
    ) -> Result<Output, EngineError> {
        if temp_tables::targets_temp(&plan) {
            return self.run_temp(plan).await;
        }
        let lake = self.engine.lake().clone();
        match plan {
            LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(c)) => {
                let (schema, table) = self.resolve(&c.name)?;
                if lake.cached_listing().contains(&schema, &table) && !c.or_replace {
                    if c.if_not_exists {
                        return Ok(Output::Command(CommandTag::new("CREATE TABLE")));
                    }
                    return Err(EngineError::DuplicateTable(format!("{schema}.{table}")));
                }
                let is_ctas = !matches!(c.input.as_ref(), LogicalPlan::EmptyRelation(_));
                let mode = if c.or_replace {
                    WriteMode::Replace
                } else {
                    WriteMode::Create
                };
                let state = Arc::new(self.ctx.state());
                let _permit = slot.claim(self.engine.lanes(), Lane::Heavy).await?;
                let input = (*c.input).clone();
                let out =
                    self.engine
                        .executor()
                        .run(async move {
                            Ok(lake.write_plan(&schema, &table, input, state, mode).await?)
                        })
                        .await?;
                Ok(Output::Command(if is_ctas {
                    CommandTag::with_rows("SELECT", out.rows)
                } else {
                    CommandTag::new("CREATE TABLE")
                }))
            }
            LogicalPlan::Dml(dml) => match dml.op {
                WriteOp::Insert(_) => {
                    let (schema, table) = self.resolve(&dml.table_name)?;
                    let state = Arc::new(self.ctx.state());
                    let _permit = slot.claim(self.engine.lanes(), Lane::Heavy).await?;
                    let input = (*dml.input).clone();
                    let out = self
                        .engine
                        .executor()
                        .run(async move {
                            Ok(lake
                                .write_plan(&schema, &table, input, state, WriteMode::Append)
                                .await?)
                        })
                        .await?;
                    Ok(Output::Command(CommandTag {
                        tag: "INSERT 0".to_string(),
                        rows: Some(out.rows),
                        tx: TxEffect::None,
                    }))
                }
                op => Err(EngineError::NotSupported(format!(
                    "{op} on lake tables (use CREATE OR REPLACE TABLE ... AS, or a model)"
                ))),
            },
            LogicalPlan::Ddl(DdlStatement::CreateView(v)) => {
                let (schema, name) = self.resolve(&v.name)?;
                if lake.table(&schema, &name).await?.is_some() {
                    return Err(EngineError::DuplicateTable(format!("{schema}.{name}")));
                }
                if !v.or_replace
                    && lake
                        .definition(DefinitionKind::View, &schema, &name)
                        .await?
                        .is_some()
                {
                    return Err(EngineError::DuplicateTable(format!("{schema}.{name}")));
                }
                let sql = view_query.ok_or_else(|| {
                    EngineError::NotSupported("this form of CREATE VIEW".to_string())
                })?;
                lake.put_definition(DefinitionKind::View, &schema, &name, &sql)
                    .await?;
                Ok(Output::Command(CommandTag::new("CREATE VIEW")))
            }
            LogicalPlan::Ddl(DdlStatement::CreateExternalTable(cmd)) => {
                let (schema, name) = self.resolve(&cmd.name)?;
                if lake.cached_listing().contains(&schema, &name) {
                    if cmd.if_not_exists {
                        return Ok(Output::Command(CommandTag::new("CREATE EXTERNAL TABLE")));
                    }
                    if !cmd.or_replace {
                        return Err(EngineError::DuplicateTable(format!("{schema}.{name}")));
                    }
                }
                super::catalog::create_external(&self.ctx.state(), &cmd).await?;
                lake.put_definition(DefinitionKind::External, &schema, &name, &original)
                    .await?;
                Ok(Output::Command(CommandTag::new("CREATE EXTERNAL TABLE")))
            }
            LogicalPlan::Ddl(DdlStatement::DropTable(d)) => {
                let (schema, name) = self.resolve(&d.name)?;
                let dropped = lake.drop_table(&schema, &name).await?
                    || lake
                        .drop_definition(DefinitionKind::External, &schema, &name)
                        .await?;
                if !dropped && !d.if_exists {
                    return Err(EngineError::UndefinedTable(format!("{schema}.{name}")));
                }
                Ok(Output::Command(CommandTag::new("DROP TABLE")))
            }
            LogicalPlan::Ddl(DdlStatement::DropView(d)) => {
                let (schema, name) = self.resolve(&d.name)?;
                let dropped = lake
                    .drop_definition(DefinitionKind::View, &schema, &name)
                    .await?;
                if !dropped && !d.if_exists {
                    return Err(EngineError::UndefinedTable(format!("{schema}.{name}")));
                }
                Ok(Output::Command(CommandTag::new("DROP VIEW")))
            }
            LogicalPlan::Ddl(DdlStatement::CreateCatalogSchema(c)) => {
                let name = c.schema_name.rsplit('.').next().unwrap_or(&c.schema_name);
                let exists = lake.cached_listing().schemas.contains_key(name);
                if exists && !c.if_not_exists {
                    return Err(EngineError::DuplicateSchema(name.to_string()));
                }
                lake.create_schema(name).await?;
                Ok(Output::Command(CommandTag::new("CREATE SCHEMA")))
            }
            LogicalPlan::Ddl(DdlStatement::DropCatalogSchema(d)) => {
                let name = d.name.schema_name().to_string();
                if !lake.cached_listing().schemas.contains_key(&name) {
                    if d.if_exists {
                        return Ok(Output::Command(CommandTag::new("DROP SCHEMA")));
                    }
                    return Err(EngineError::UndefinedSchema(name));
                }
                lake.drop_schema(&name).await?;
                Ok(Output::Command(CommandTag::new("DROP SCHEMA")))
            }
            LogicalPlan::Ddl(other) => Err(EngineError::NotSupported(other.name().to_string())),
            LogicalPlan::Copy(_) => {
                let df = DataFrame::new(self.ctx.state(), plan);
                let _permit = slot.claim(self.engine.lanes(), Lane::Heavy).await?;
                let batches = self
                    .engine
                    .executor()
                    .run(async move { Ok(df.collect().await?) })
                    .await?;
                Ok(Output::Command(CommandTag::with_rows(
                    "COPY",
                    count_of(&batches),
                )))
            }
            LogicalPlan::Statement(s) => Err(EngineError::NotSupported(s.name().to_string())),
            plan => self
                .run_query(plan, control, slot, Shape::Merged)
                .await
                .map(SplitOutput::into_output),
        }
    }

    /// A query, as one stream, or (`Shape::Partitioned`, with several output
    /// partitions) as one stream per partition.
    async fn run_query(
        &mut self,
        plan: LogicalPlan,
        control: &QueryControl,
        slot: Slot,
        shape: Shape,
    ) -> Result<SplitOutput, EngineError> {
        use datafusion::physical_plan::ExecutionPlanProperties;
        let df = DataFrame::new(self.ctx.state(), plan);
        let task = Arc::new(df.task_ctx());
        let physical = df.create_physical_plan().await?;
        let lane = self.engine.lanes().lane(physical.as_ref());
        let permit = slot.claim(self.engine.lanes(), lane).await?;
        let guard = |stream| -> SendableRecordBatchStream {
            Box::pin(GuardedStream::new(stream, control, permit.clone()))
        };
        let executor = self.engine.executor();
        let partitions = physical.output_partitioning().partition_count();
        if shape == Shape::Merged || partitions <= 1 {
            let stream = match lane {
                Lane::Light => datafusion::physical_plan::execute_stream(physical, task)?,
                Lane::Heavy => executor.stream(physical, task),
            };
            return Ok(SplitOutput::One(Output::Rows {
                stream: guard(stream),
                tag: "SELECT",
            }));
        }
        let streams = match lane {
            Lane::Light => datafusion::physical_plan::execute_stream_partitioned(physical, task)?,
            Lane::Heavy => (0..partitions)
                .map(|i| executor.stream_partition(physical.clone(), i, task.clone()))
                .collect(),
        };
        Ok(SplitOutput::Partitions(
            streams.into_iter().map(guard).collect(),
        ))
    }

    /// Splits a table reference into lake (schema, table), defaulting the schema from
    /// `search_path`.
    pub(super) fn resolve(&self, name: &TableReference) -> Result<(String, String), EngineError> {
        if let Some(catalog) = name.catalog()
            && catalog != CATALOG
        {
            return Err(EngineError::InvalidArgument(format!(
                "database \"{catalog}\" does not exist; this server has one database, \"{CATALOG}\""
            )));
        }
        let schema = match name.schema() {
            Some(s) => s.to_string(),
            None => self
                .ctx
                .state()
                .config()
                .options()
                .catalog
                .default_schema
                .clone(),
        };
        Ok((schema, name.table().to_string()))
    }

    /// Result columns of a session statement, `Some(None)` when it returns no rows, `None`
    /// when `stmt` is not a session statement.
    #[allow(clippy::option_option)]
    fn session_statement_schema(
        &self,
        stmt: &DFStatement,
    ) -> Result<Option<Option<SchemaRef>>, EngineError> {
        let DFStatement::Statement(stmt) = stmt else {
            return Ok(None);
        };
        match stmt.as_ref() {
            Statement::ShowVariable { variable } => {
                let name = ident_name(variable);
                let column = if name.eq_ignore_ascii_case("all") {
                    "setting".to_string()
                } else {
                    self.settings.get(&name)?.0
                };
                Ok(Some(Some(super::text_batch(&column, vec![])?.schema())))
            }
            Statement::Fetch { name, .. } => {
                Ok(Some(Some(self.cursors.schema(&ident_text(name))?)))
            }
            s if is_session_statement(s) => Ok(Some(None)),
            _ => Ok(None),
        }
    }

    fn session_statement(&mut self, stmt: &DFStatement) -> Result<Option<Output>, EngineError> {
        let DFStatement::Statement(stmt) = stmt else {
            return Ok(None);
        };
        let tag = match stmt.as_ref() {
            Statement::Set(set) => {
                self.apply_set(set)?;
                CommandTag::new("SET")
            }
            Statement::ShowVariable { variable } => {
                let name = ident_name(variable);
                let batch = if name.eq_ignore_ascii_case("all") {
                    let all: Vec<String> = self
                        .settings
                        .all()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    super::text_batch("setting", all)?
                } else {
                    let (display, value) = self.settings.get(&name)?;
                    super::text_batch(&display, vec![value])?
                };
                let schema = batch.schema();
                let stream = futures::stream::iter(vec![Ok(batch)]).boxed();
                return Ok(Some(Output::Rows {
                    stream: Box::pin(RecordBatchStreamAdapter::new(schema, stream)),
                    tag: "SHOW",
                }));
            }
            Statement::Reset(r) => {
                match &r.reset {
                    Reset::ALL => self.settings.reset(None),
                    Reset::ConfigurationParameter(name) => {
                        self.settings.reset(Some(&object_name(name)))
                    }
                }
                self.apply_settings()?;
                CommandTag::new("RESET")
            }
            Statement::StartTransaction { .. } => CommandTag::ending("BEGIN", TxEffect::Begin),
            Statement::Commit { .. } => {
                self.cursors.end_transaction();
                CommandTag::ending("COMMIT", TxEffect::End)
            }
            Statement::Rollback { .. } => {
                self.cursors.end_transaction();
                CommandTag::ending("ROLLBACK", TxEffect::End)
            }
            Statement::Discard { object_type } => {
                use datafusion::sql::sqlparser::ast::DiscardObject;
                match object_type {
                    DiscardObject::ALL => {
                        self.settings.reset(None);
                        self.apply_settings()?;
                        self.cursors.close_all();
                        if let Some(t) = &self.temp {
                            t.clear();
                        }
                        CommandTag::new("DISCARD ALL")
                    }
                    // No cached plans or sequences outlive a statement.
                    DiscardObject::PLANS => CommandTag::new("DISCARD PLANS"),
                    DiscardObject::SEQUENCES => CommandTag::new("DISCARD SEQUENCES"),
                    DiscardObject::TEMP => {
                        if let Some(t) = &self.temp {
                            t.clear();
                        }
                        CommandTag::new("DISCARD TEMP")
                    }
                }
            }
            // Nothing is ever notified: pool resets (Npgsql, pgbouncer) send UNLISTEN and
            // expect it to succeed.
            Statement::Close { cursor } => match cursor {
                datafusion::sql::sqlparser::ast::CloseCursor::All => {
                    self.cursors.close_all();
                    CommandTag::new("CLOSE CURSOR ALL")
                }
                datafusion::sql::sqlparser::ast::CloseCursor::Specific { name } => {
                    self.cursors.close(&ident_text(name))?;
                    CommandTag::new("CLOSE CURSOR")
                }
            },
            Statement::LISTEN { .. } => CommandTag::new("LISTEN"),
            Statement::UNLISTEN { .. } => CommandTag::new("UNLISTEN"),
            Statement::Deallocate { .. } => CommandTag::new("DEALLOCATE"),
            _ => return Ok(None),
        };
        Ok(Some(Output::Command(tag)))
    }

    fn apply_set(&mut self, set: &Set) -> Result<(), EngineError> {
        match set {
            Set::SingleAssignment {
                variable, values, ..
            } => {
                let name = object_name(variable);
                let value = values.iter().map(expr_text).collect::<Vec<_>>().join(", ");
                if name.starts_with("datafusion.") {
                    // Engine settings are the operator's: readers may not change them.
                    if self.engine.options().access.is_reader(&self.user) {
                        return Err(EngineError::PermissionDenied(format!(
                            "permission denied to set parameter \"{name}\""
                        )));
                    }
                    let state = self.ctx.state_ref();
                    let mut state = state.write();
                    state
                        .config_mut()
                        .options_mut()
                        .set(&name, &value)
                        .map_err(EngineError::from)?;
                    return Ok(());
                }
                self.settings.set(&name, value)?;
            }
            Set::MultipleAssignments { assignments } => {
                for a in assignments {
                    self.settings
                        .set(&object_name(&a.name), expr_text(&a.value))?;
                }
            }
            Set::SetTimeZone { value, .. } => {
                self.settings.set("timezone", expr_text(value))?;
            }
            Set::SetNames { charset_name, .. } => {
                self.settings
                    .set("client_encoding", charset_name.value.clone())?;
            }
            // Roles, session authorization and transaction modes are accepted; tidepool
            // sessions have one user and autocommit semantics.
            _ => {}
        }
        self.apply_settings()
    }
}

/// Postgres `COPY (query) TO 'path' (FORMAT parquet, HEADER)` as DataFusion's COPY TO.
fn copy_to(
    source: CopySource,
    target: String,
    options: &[CopyOption],
) -> Result<CopyToStatement, EngineError> {
    let source = match source {
        CopySource::Query(q) => CopyToSource::Query(q),
        CopySource::Table {
            table_name,
            columns,
        } => {
            if !columns.is_empty() {
                return Err(EngineError::NotSupported(
                    "COPY with a column list (use COPY (SELECT cols FROM t) TO ...)".into(),
                ));
            }
            CopyToSource::Relation(table_name)
        }
    };
    let mut format = None;
    let mut header = true;
    let mut df_options = Vec::new();
    for o in options {
        match o {
            CopyOption::Format(f) => format = Some(f.value.to_ascii_lowercase()),
            CopyOption::Header(h) => header = *h,
            CopyOption::Delimiter(c) => df_options.push((
                "format.delimiter".to_string(),
                SqlValue::SingleQuotedString(c.to_string()),
            )),
            other => {
                return Err(EngineError::NotSupported(format!("COPY option {other}")));
            }
        }
    }
    let format = format.unwrap_or_else(|| {
        let lower = target.to_ascii_lowercase();
        if lower.ends_with(".csv") {
            "csv".into()
        } else if lower.ends_with(".json") || lower.ends_with(".ndjson") {
            "json".into()
        } else {
            "parquet".into()
        }
    });
    if !matches!(format.as_str(), "parquet" | "csv" | "json") {
        return Err(EngineError::NotSupported(format!(
            "COPY format {format} (use parquet, csv or json)"
        )));
    }
    if format == "csv" {
        df_options.push((
            "format.has_header".to_string(),
            SqlValue::SingleQuotedString(header.to_string()),
        ));
    }
    Ok(CopyToStatement {
        source,
        target,
        partitioned_by: Vec::new(),
        stored_as: Some(format),
        options: df_options,
    })
}

fn is_session_statement(s: &Statement) -> bool {
    matches!(
        s,
        Statement::Set(_)
            | Statement::Reset(_)
            | Statement::StartTransaction { .. }
            | Statement::Commit { .. }
            | Statement::Rollback { .. }
            | Statement::Discard { .. }
            | Statement::Deallocate { .. }
            | Statement::Close { .. }
            | Statement::LISTEN { .. }
            | Statement::UNLISTEN { .. }
    )
}

/// The row count DataFusion's DML and COPY plans return as their one value.
fn count_of(batches: &[datafusion::arrow::record_batch::RecordBatch]) -> u64 {
    batches
        .first()
        .filter(|b| b.num_rows() > 0)
        .and_then(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<datafusion::arrow::array::UInt64Array>()
                .map(|a| a.value(0))
        })
        .unwrap_or(0)
}

/// An identifier as Postgres reads it: unquoted names fold to lower case.
fn ident_text(ident: &datafusion::sql::sqlparser::ast::Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

fn ident_name(parts: &[datafusion::sql::sqlparser::ast::Ident]) -> String {
    parts
        .iter()
        .map(|i| i.value.clone())
        .collect::<Vec<_>>()
        .join(".")
}

fn object_name(name: &ObjectName) -> String {
    name.0
        .iter()
        .map(|p| match p.as_ident() {
            Some(i) => i.value.clone(),
            None => p.to_string(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// The text of a SET value: string literals without quotes, identifiers as written.
fn expr_text(e: &SqlExpr) -> String {
    match e {
        SqlExpr::Value(v) => match &v.value {
            SqlValue::SingleQuotedString(s) | SqlValue::DoubleQuotedString(s) => s.clone(),
            other => other.to_string(),
        },
        SqlExpr::Identifier(i) => i.value.clone(),
        other => other.to_string(),
    }
}

/// Postgres gives `$1::float8` the type of the cast; DataFusion leaves it unknown.
fn infer_from_casts(
    plan: &LogicalPlan,
    types: &mut HashMap<String, Option<DataType>>,
) -> Result<(), EngineError> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::Expr;
    plan.apply_with_subqueries(|node| {
        node.apply_expressions(|e| {
            e.apply(|e| {
                let (inner, to) = match e {
                    Expr::Cast(c) => (c.expr.as_ref(), c.field.data_type()),
                    Expr::TryCast(c) => (c.expr.as_ref(), c.field.data_type()),
                    _ => return Ok(TreeNodeRecursion::Continue),
                };
                if let Expr::Placeholder(p) = inner
                    && let Some(slot @ None) = types.get_mut(&p.id)
                {
                    *slot = Some(to.clone());
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })?;
    Ok(())
}

fn ordered_params(types: HashMap<String, Option<DataType>>) -> Vec<Option<DataType>> {
    let mut indexed: Vec<(usize, Option<DataType>)> = types
        .into_iter()
        .filter_map(|(k, v)| {
            k.trim_start_matches('$')
                .parse::<usize>()
                .ok()
                .map(|i| (i, v))
        })
        .collect();
    indexed.sort_by_key(|(i, _)| *i);
    let n = indexed.last().map(|(i, _)| *i).unwrap_or(0);
    let mut out = vec![None; n];
    for (i, t) in indexed {
        if i >= 1 {
            out[i - 1] = t;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;
    use crate::{EngineOptions, NoExtension};

    fn engine(dir: &std::path::Path) -> Arc<Engine> {
        let lake = tidepool_lake::Lake::open(&tidepool_lake::LakeConfig {
            root: dir.display().to_string(),
            ..Default::default()
        })
        .unwrap();
        let options = EngineOptions {
            target_partitions: Some(4),
            ..Default::default()
        };
        Engine::new(lake, options, Arc::new(NoExtension)).unwrap()
    }

    async fn rows(stream: SendableRecordBatchStream) -> usize {
        stream
            .map(|b| b.unwrap().num_rows())
            .fold(0, |a, n| async move { a + n })
            .await
    }

    const QUERY: &str = "SELECT value FROM generate_series(1, 200000) WHERE value % 2 = 0";

    #[tokio::test]
    async fn a_split_query_returns_its_partitions_as_a_value_and_execute_merges_them() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path());
        let mut session = engine.session("tidepool");
        let control = QueryControl::new(CancellationToken::new(), None);
        let stmt = session.parse(QUERY).unwrap().remove(0);
        let SplitOutput::Partitions(parts) = session
            .execute_split(stmt.clone(), None, &control)
            .await
            .unwrap()
        else {
            panic!("a filtered scan over 4 target partitions stays split");
        };
        assert!(parts.len() > 1, "{} partitions", parts.len());
        let mut total = 0;
        for p in parts {
            total += rows(p).await;
        }
        assert_eq!(total, 100_000);
        let Output::Rows { stream, .. } = session.execute(stmt, None, &control).await.unwrap()
        else {
            panic!("a query returns rows");
        };
        assert_eq!(rows(stream).await, 100_000);
    }

    #[tokio::test]
    async fn statements_other_than_queries_do_not_split() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path());
        let mut session = engine.session("tidepool");
        let control = QueryControl::new(CancellationToken::new(), None);
        let stmt = session.parse("SET search_path = gold").unwrap().remove(0);
        let out = session.execute_split(stmt, None, &control).await.unwrap();
        assert!(matches!(out, SplitOutput::One(Output::Command(_))));
        // An ordered query merges in the plan: one stream.
        let stmt = session
            .parse(&format!("{QUERY} ORDER BY value"))
            .unwrap()
            .remove(0);
        let out = session.execute_split(stmt, None, &control).await.unwrap();
        assert!(matches!(out, SplitOutput::One(Output::Rows { .. })));
    }
}
