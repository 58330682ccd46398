//! One client's session: its settings and the execution of its statements.
//!
//! [`kind::Kind`] classifies a statement once, and [`Session::execute`] and
//! [`Session::describe`] both go by it: session statements (SET, SHOW, RESET, BEGIN,
//! COMMIT, ROLLBACK, DISCARD... in [`variables`]), cursors ([`cursor`]), security
//! statements (GRANT, REVOKE, policies, in [`security`]), procedures ([`procedure`]), and
//! everything else, which DataFusion plans and which [`Session::plan`] authorizes on the
//! plan: lake writes ([`lake`]), temporary tables ([`temp`]) and queries, whose rows
//! stream back batch by batch ([`query`]).

mod alter;
mod columns;
mod copy;
mod cursor;
mod describe;
mod dml;
mod ingest;
mod kind;
mod lake;
mod merge;
mod merge_vectors;
mod output;
mod procedure;
mod query;
mod returning;
mod rows;
mod security;
mod temp;
mod tids;
mod transaction;
mod variables;

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{ParamValues, TableReference};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{CopyTarget, Statement};

use crate::cursors::Cursors;
use crate::lanes::Slot;
use crate::settings::SessionSettings;
use crate::temp_tables::{self, TempTables};
use crate::{CATALOG, Engine, EngineError, SessionView};
pub use ingest::{IfExists, IfMissing, Ingest};
use kind::Kind;
pub(crate) use output::Shape;
pub use output::{CommandTag, Described, Output, QueryControl, SplitOutput, TxEffect};
pub(crate) use procedure::load as load_procedure;
pub use transaction::TxStatus;

/// What of a statement's SQL text outlives its plan: a view's query and an external
/// table's statement are stored as written.
#[derive(Debug, Default)]
pub(crate) struct Source {
    /// The statement as written.
    pub sql: String,
    /// `CREATE VIEW`'s query.
    pub view_query: Option<String>,
    /// The statement a MERGE plan was written as (`UPDATE ... FROM`, `INSERT ... ON
    /// CONFLICT`), for its tag.
    pub written_as: merge::WrittenAs,
    /// The constraints and defaults a `CREATE TABLE` declares.
    pub declared: tidepool_lake::Declared,
    /// `DROP ... CASCADE` (DataFusion's plan does not say).
    pub cascade: bool,
}

impl Source {
    pub(super) fn of(stmt: &DFStatement) -> Source {
        let view_query = match stmt {
            DFStatement::Statement(s) => match s.as_ref() {
                Statement::CreateView(v) => Some(v.query.to_string()),
                _ => None,
            },
            _ => None,
        };
        let written_as = match stmt {
            DFStatement::Statement(s) => merge::WrittenAs::of(s),
            _ => merge::WrittenAs::Merge,
        };
        let declared = match stmt {
            DFStatement::Statement(s) => match s.as_ref() {
                Statement::CreateTable(c) => crate::constraints::take(&mut c.clone()),
                _ => Default::default(),
            },
            _ => Default::default(),
        };
        let cascade = matches!(stmt, DFStatement::Statement(s)
            if matches!(s.as_ref(), Statement::Drop { cascade: true, .. }));
        Source {
            sql: stmt.to_string(),
            view_query,
            written_as,
            declared,
            cascade,
        }
    }
}

/// One client's session.
pub struct Session {
    pub(crate) engine: Arc<Engine>,
    pub(crate) ctx: SessionContext,
    user: String,
    /// What the user may touch; also in `ctx`'s config for table functions.
    principal: Arc<crate::authz::Principal>,
    settings: SessionSettings,
    /// Temporary tables, once the session creates one.
    temp: Option<TempTables>,
    cursors: Cursors,
    /// The open transaction block, if any.
    tx: Option<transaction::Transaction>,
    /// The rows of the COPY FROM STDIN in progress (`tidepool_copy_stdin()`).
    copy_slot: crate::copy::CopySlot,
    /// `set_config` calls not yet applied.
    set_config: crate::set_config::Pending,
}

impl Session {
    pub(crate) fn new(engine: Arc<Engine>, user: &str) -> Self {
        let ctx = SessionContext::new_with_state(engine.base().state());
        for name in ["session_user", "current_user", "user"] {
            ctx.register_udf(crate::constant_text_udf(name, user.to_string()));
        }
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
        let copy_slot = crate::copy::CopySlot::default();
        ctx.register_udtf(crate::copy::COPY_FUNCTION, Arc::new(copy_slot.clone()));
        let set_config = crate::set_config::Pending::default();
        ctx.register_udf(set_config.udf());
        Session {
            engine,
            ctx,
            user: user.to_string(),
            principal,
            settings,
            temp: None,
            cursors: Cursors::default(),
            tx: None,
            copy_slot,
            set_config,
        }
    }

    /// Who this session acts as.
    pub fn principal(&self) -> Arc<crate::authz::Principal> {
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
                crate::names::apply_postgres_names(inner);
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

    /// Applies the assignments `set_config` queued in earlier statements.
    fn apply_set_config(&mut self) -> Result<(), EngineError> {
        let pending = self.set_config.take();
        if pending.is_empty() {
            return Ok(());
        }
        for (name, value) in pending {
            self.settings.set(&name, value)?;
        }
        self.apply_settings()
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
            .register_udf(crate::constant_text_udf("current_schema", schema.clone()));
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
        let rewrites = self.settings.planner_rewrites();
        if let Some(planner) = options
            .extensions
            .get_mut::<crate::planner_options::PlannerOptions>()
        {
            planner.rewrites = rewrites;
        }
        Ok(())
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
        self.engine.lake().listing().await?;
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

    /// Runs a statement in the session's transaction block, if one is open: a failed
    /// block refuses everything but its end (25P02), and an error fails the block.
    async fn execute_shaped(
        &mut self,
        stmt: DFStatement,
        params: Option<ParamValues>,
        control: &QueryControl,
        shape: Shape,
    ) -> Result<SplitOutput, EngineError> {
        self.apply_set_config()?;
        let kind = Kind::of(&stmt);
        if let (Kind::Transaction, DFStatement::Statement(s)) = (kind, &stmt) {
            return self.run_transaction(s).await.map(SplitOutput::One);
        }
        if self.transaction_status() == TxStatus::Failed {
            return Err(EngineError::InFailedTransaction);
        }
        self.next_statement().await;
        let txn = self.current_txn();
        // An INSERT ... VALUES in a block leaves the rows earlier ones buffered alone.
        let defer = txn.is_some() && kind::reads_no_lake_data(&stmt);
        let run = Box::pin(self.execute_statement(kind, stmt, params, control, shape));
        let out = if defer {
            tidepool_lake::txn::scope(txn, tidepool_lake::txn::deferring(run)).await
        } else {
            tidepool_lake::txn::scope(txn, run).await
        };
        match out {
            Ok(out) => Ok(self.watch_rows(out)),
            Err(e) => {
                self.fail_transaction();
                Err(e)
            }
        }
    }

    async fn execute_statement(
        &mut self,
        kind: Kind,
        mut stmt: DFStatement,
        params: Option<ParamValues>,
        control: &QueryControl,
        shape: Shape,
    ) -> Result<SplitOutput, EngineError> {
        if let DFStatement::Statement(s) = &stmt {
            let out = match kind {
                Kind::Variable => Some(self.run_variable(s)?),
                Kind::Declare => Some(self.declare(s, params.clone()).await?),
                Kind::Fetch => Some(self.fetch(s, control).await?),
                Kind::Security
                | Kind::Procedure
                | Kind::Planned
                | Kind::Transaction
                | Kind::Copy => None,
            };
            if let Some(out) = out {
                return Ok(SplitOutput::One(out));
            }
        }
        self.prepare_temp(&mut stmt)?;
        if let (Kind::Security, DFStatement::Statement(s)) = (kind, &stmt) {
            let out = self.run_security(s).await;
            // pg_class.relacl and the policy catalogs answer from the new document.
            self.engine.catalog_cache.clear();
            return out.map(SplitOutput::One);
        }
        debug_assert!(kind.is_bounded());
        // Waiting for a slot counts against the statement's timeout and can be cancelled.
        control
            .bound(self.execute_bounded(kind, stmt, params, control, shape))
            .await
    }

    /// A procedure statement or a planned one, under the statement's cancel and deadline.
    async fn execute_bounded(
        &mut self,
        kind: Kind,
        stmt: DFStatement,
        params: Option<ParamValues>,
        control: &QueryControl,
        shape: Shape,
    ) -> Result<SplitOutput, EngineError> {
        let listing = self.engine.lake().listing().await?;
        if let (Kind::Copy, DFStatement::Statement(s)) = (kind, &stmt) {
            return self.run_copy(s, control).await.map(SplitOutput::One);
        }
        if kind == Kind::Procedure {
            return self
                .run_procedure(&stmt, params.as_ref(), control)
                .await
                .map(SplitOutput::One);
        }
        if params.is_none()
            && let Some(key) = self.catalog_key(&stmt)
        {
            return self
                .catalog_answer(key, stmt, listing)
                .await
                .map(SplitOutput::One);
        }
        let mut stmt = stmt;
        if let (Some(p), DFStatement::Statement(s)) = (&params, &mut stmt) {
            crate::procedures::call_params::inline(s, p);
        }
        if let Some(returning) = returning::take(&mut stmt) {
            return self
                .run_returning(stmt, returning, params, control)
                .await
                .map(SplitOutput::One);
        }
        let source = Source::of(&stmt);
        let mut plan = self.plan(stmt).await?;
        if let Some(p) = params {
            plan = plan.with_param_values(p)?;
        }
        self.run_plan(plan, &source, control, Slot::Unclaimed, shape)
            .await
    }

    /// Plans a statement and authorizes the plan for this session's principal. A
    /// statement that read two or more tables in the middle of another transaction's
    /// multi-table publish is planned again a moment later, so it sees that transaction
    /// whole ([`tidepool_lake::Lake::consistent`]).
    pub(crate) async fn plan(&self, stmt: DFStatement) -> Result<LogicalPlan, EngineError> {
        use tidepool_lake::txn::Verdict;
        let principal = self.principal.clone();
        self.engine.options().access.security.refresh().await?;
        let mut attempt = 0;
        loop {
            // Boxed: planning futures are large, and these wrappers would add to the stack.
            let (plan, reads) = tidepool_lake::txn::recording(Box::pin(
                self.plan_as(stmt.clone(), principal.clone()),
            ))
            .await;
            let plan = plan?;
            attempt += 1;
            if reads.len() < 2
                || attempt > 200
                || self.engine.lake().consistent(&reads).await? == Verdict::Consistent
            {
                return Ok(plan);
            }
            if let Some(txn) = self.current_txn() {
                txn.unpin_unwritten().await;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// Plans a statement as `principal` (a procedure's owner runs its body) and refuses
    /// it (42501) unless `principal` may touch everything the plan reads and writes.
    pub(crate) async fn plan_as(
        &self,
        stmt: DFStatement,
        principal: Arc<crate::authz::Principal>,
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
                } => DFStatement::CopyTo(copy::copy_to(source, filename, &options)?),
                Statement::Copy { .. } => {
                    return Err(EngineError::NotSupported(
                        "COPY FROM and COPY TO STDOUT (copy to a file or object store path)".into(),
                    ));
                }
                Statement::CreateTable(mut c) => {
                    // Kept by the lake (Source::declared); DataFusion refuses some.
                    crate::constraints::take(&mut c);
                    DFStatement::Statement(Box::new(Statement::CreateTable(c)))
                }
                other => DFStatement::Statement(Box::new(other)),
            },
            other => other,
        };
        if let DFStatement::Statement(s) = &stmt {
            for (schema, name) in crate::procedures::table_fn::called(s) {
                Box::pin(procedure::load(&self.engine, &schema, &name)).await?;
            }
        }
        let plan = if let DFStatement::Statement(s) = &stmt
            && let Statement::AlterTable(a) = s.as_ref()
        {
            crate::alter::plan(a, &state)?
        } else if let DFStatement::Statement(s) = &stmt
            && let Statement::AlterSchema(a) = s.as_ref()
        {
            crate::alter::plan_schema(a)?
        } else if let DFStatement::Statement(s) = &stmt
            && let Statement::Comment {
                object_type,
                object_name,
                comment,
                if_exists,
            } = s.as_ref()
        {
            crate::alter::plan_comment(object_type, object_name, comment, *if_exists)?
        } else if let DFStatement::Statement(s) = &stmt
            && let Some(merge) = self.as_merge(s).await?
        {
            state
                .statement_to_plan(DFStatement::Statement(Box::new(merge)))
                .await?
        } else {
            state.statement_to_plan(stmt).await?
        };
        let default_schema = state.config().options().catalog.default_schema.clone();
        principal.check_all(&crate::authz::plan::touches(&plan, &default_schema)?)?;
        // Policies filter for the session's user, also in bodies run as their owner.
        crate::authz::rls::apply(plan, &self.principal, &default_schema, &state)
    }

    /// Runs a planned statement: a temporary table's, a lake write, or a query as a
    /// stream (its partitions apart when `shape` asks for it). Queries take a slot of
    /// their lane ([`crate::lanes`]) and heavy ones execute on the
    /// [`crate::executor::Executor`]; writes and COPY are heavy.
    pub(crate) async fn run_plan(
        &mut self,
        plan: LogicalPlan,
        source: &Source,
        control: &QueryControl,
        slot: Slot,
        shape: Shape,
    ) -> Result<SplitOutput, EngineError> {
        if temp_tables::targets_temp(&plan) {
            return self.run_temp(plan).await.map(SplitOutput::One);
        }
        match plan {
            LogicalPlan::Ddl(_) | LogicalPlan::Dml(_) | LogicalPlan::Copy(_) => self
                .run_write(plan, source, slot)
                .await
                .map(SplitOutput::One),
            ref p if crate::alter::alter_node(p).is_some() => self
                .run_write(plan, source, slot)
                .await
                .map(SplitOutput::One),
            LogicalPlan::Statement(s) => Err(EngineError::NotSupported(s.name().to_string())),
            plan => self.run_query(plan, control, slot, shape).await,
        }
    }

    /// Splits a table reference into lake (schema, table), defaulting the schema from
    /// `search_path`.
    pub(crate) fn resolve(&self, name: &TableReference) -> Result<(String, String), EngineError> {
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
}

#[cfg(test)]
mod tests {
    use datafusion::execution::SendableRecordBatchStream;
    use futures::StreamExt;
    use tokio_util::sync::CancellationToken;

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

    #[tokio::test]
    async fn describe_goes_by_the_same_classification_as_execute() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path());
        let mut session = engine.session("tidepool");
        // A security statement is described as one (it used to be planned, and fail).
        let stmt = session
            .parse("ALTER TABLE public.t ENABLE ROW LEVEL SECURITY")
            .unwrap()
            .remove(0);
        let d = session.describe(&stmt).await.unwrap();
        assert!(d.schema.is_none() && d.params.is_empty());
        // SHOW describes the column it returns.
        let stmt = session.parse("SHOW timezone").unwrap().remove(0);
        let d = session.describe(&stmt).await.unwrap();
        let control = QueryControl::new(CancellationToken::new(), None);
        let Output::Rows { stream, .. } = session.execute(stmt, None, &control).await.unwrap()
        else {
            panic!("SHOW returns rows");
        };
        assert_eq!(d.schema.unwrap(), stream.schema());
        // A DECLARE takes its query's parameters and returns no rows.
        let stmt = session
            .parse("DECLARE c CURSOR FOR SELECT $1::bigint + 1")
            .unwrap()
            .remove(0);
        let d = session.describe(&stmt).await.unwrap();
        assert!(d.schema.is_none());
        assert_eq!(
            d.params,
            vec![Some(datafusion::arrow::datatypes::DataType::Int64)]
        );
    }
}
