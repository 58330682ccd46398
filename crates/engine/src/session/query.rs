//! Queries: a plan's rows as one stream, or one stream per partition for a client that
//! reads them at once; and the catalog-answer cache, which serves a client's repeated
//! catalog queries (the dialect decides which may be cached) without planning them.

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::DataFrame;
use datafusion::sql::parser::Statement as DFStatement;
use futures::StreamExt;
use tidepool_lake::Listing;

use super::Session;
use super::output::{Output, QueryControl, Shape, SplitOutput};
use crate::distributed::Cluster;
use crate::lanes::{Lane, Slot};
use crate::origins::Origin;
use crate::stream::GuardedStream;
use crate::{EngineError, SessionView};

impl Session {
    /// A query, as one stream, or (`Shape::Partitioned`, with several output
    /// partitions) as one stream per partition.
    pub(super) async fn run_query(
        &mut self,
        plan: LogicalPlan,
        control: &QueryControl,
        slot: Slot,
        shape: Shape,
    ) -> Result<SplitOutput, EngineError> {
        use datafusion::physical_plan::ExecutionPlanProperties;
        let origins = self.origins(&plan);
        let cluster = self
            .engine
            .cluster()
            .filter(|_| self.settings.distributed())
            .cloned();
        if let Some(cluster) = &cluster
            && let LogicalPlan::Explain(explain) = &plan
        {
            let note = self.distributed_note(cluster.as_ref(), &explain.plan).await;
            let df = DataFrame::new(self.ctx.state(), plan.clone());
            let stream = df.execute_stream().await?;
            let extra = explain_row(stream.schema(), &note)?;
            let rows = stream.chain(futures::stream::iter([Ok(extra)]));
            let stream: SendableRecordBatchStream =
                Box::pin(RecordBatchStreamAdapter::new(rows_schema(&plan), rows));
            let permit = slot.claim(self.engine.lanes(), Lane::Light).await?;
            return Ok(SplitOutput::One(Output::Rows {
                stream: Box::pin(GuardedStream::new(stream, control, permit)),
                tag: "SELECT",
            }));
        }
        let eligible = match &cluster {
            Some(_) => self.may_leave(&plan)?,
            None => false,
        };
        let df = DataFrame::new(self.ctx.state(), plan);
        let task = Arc::new(df.task_ctx());
        let physical = match cluster.as_ref().filter(|_| eligible) {
            Some(cluster) => {
                let mut state = self.ctx.state();
                cluster.configure(state.config_mut());
                let physical = state.create_physical_plan(df.logical_plan()).await?;
                match cluster.plan(physical.clone(), &state).await? {
                    Some(remote) => remote,
                    None => physical,
                }
            }
            None => df.create_physical_plan().await?,
        };
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
            let stream = self.with_origins(stream, origins).await;
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

    /// Whether `plan` may run on the cluster ([`crate::distributed::local_reason`]; the
    /// optimizer adds no table, so the plan as bound is enough to judge).
    fn may_leave(&self, plan: &LogicalPlan) -> Result<bool, EngineError> {
        match crate::distributed::local_reason(plan) {
            Some(why) => {
                tracing::debug!(reason = %why, "query runs on this node");
                Ok(false)
            }
            None => Ok(true),
        }
    }

    /// What EXPLAIN says of where `plan` runs: the cluster's stages, or why here.
    async fn distributed_note(&self, cluster: &dyn Cluster, plan: &LogicalPlan) -> String {
        let mut state = self.ctx.state();
        cluster.configure(state.config_mut());
        let optimized = match state.optimize(plan) {
            Ok(p) => p,
            Err(e) => return format!("runs on this node: {e}"),
        };
        if let Some(why) = crate::distributed::local_reason(&optimized) {
            return format!("runs on this node: {why}");
        }
        let physical = match state.create_physical_plan(&optimized).await {
            Ok(p) => p,
            Err(e) => return format!("runs on this node: {e}"),
        };
        match cluster.plan(physical.clone(), &state).await {
            Ok(Some(_)) => {}
            Ok(None) => return "runs on this node: the cluster cannot carry its plan".into(),
            Err(e) => return format!("runs on this node: {e}"),
        }
        match cluster.stages(physical, &state) {
            Ok(text) => format!("runs on the cluster at {}\n{text}", cluster.name()),
            Err(e) => format!(
                "runs on the cluster at {} (stages not shown: {e})",
                cluster.name()
            ),
        }
    }

    /// The schema unqualified names resolve in.
    fn default_schema(&self) -> String {
        let state = self.ctx.state_ref();
        let state = state.read();
        state.config().options().catalog.default_schema.clone()
    }

    /// Where `plan`'s result columns come from, if any comes from a lake table.
    pub(super) fn origins(&self, plan: &LogicalPlan) -> Option<Vec<Option<Origin>>> {
        let origins = crate::origins::of(plan, &self.default_schema());
        origins.iter().any(Option::is_some).then_some(origins)
    }

    /// `schema` with its columns' `origins` (table oids and column numbers) as metadata.
    pub(super) async fn annotated(
        &self,
        schema: &Schema,
        origins: &[Option<Origin>],
    ) -> Option<SchemaRef> {
        let tables: BTreeSet<(String, String)> = origins
            .iter()
            .flatten()
            .map(|o| (o.schema.clone(), o.table.clone()))
            .collect();
        let oids = self
            .engine
            .extension()
            .relation_oids(tables.into_iter().collect())
            .await;
        crate::origins::annotate(schema, origins, &oids)
    }

    /// `stream` with its columns' origins in its schema.
    async fn with_origins(
        &self,
        stream: SendableRecordBatchStream,
        origins: Option<Vec<Option<Origin>>>,
    ) -> SendableRecordBatchStream {
        let Some(origins) = origins else {
            return stream;
        };
        let Some(schema) = self.annotated(&stream.schema(), &origins).await else {
            return stream;
        };
        let batches = schema.clone();
        // A batch whose schema the annotated one does not contain (nullability the plan
        // got wrong) goes as it is: the metadata is only for RowDescription.
        let rows = stream.map(move |b| {
            let b = b?;
            Ok(b.clone().with_schema(batches.clone()).unwrap_or(b))
        });
        Box::pin(RecordBatchStreamAdapter::new(schema, rows))
    }

    /// The catalog cache's key for `stmt` in this session, if it may be cached.
    pub(super) fn catalog_key(&self, stmt: &DFStatement) -> Option<String> {
        let schema = self.default_schema();
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

    /// The cached answer to a catalog query (`key` from [`Session::catalog_key`]): from
    /// the cache while the lake listing is the one it was computed against, else planned,
    /// run in a light slot and kept.
    pub(super) async fn catalog_answer(
        &self,
        key: String,
        stmt: DFStatement,
        listing: Arc<Listing>,
    ) -> Result<Output, EngineError> {
        let cache = &self.engine.catalog_cache;
        let ttl = self.engine.lake().refresh_interval();
        let hit = match cache.get(&key, &listing, ttl) {
            Some(hit) => hit,
            None => {
                let _slot = self.engine.lanes().admit(Lane::Light).await?;
                let plan = self.plan(stmt).await?;
                let df = DataFrame::new(self.ctx.state(), plan);
                let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
                let batches = df.collect().await?;
                cache.put(key, listing, schema.clone(), &batches);
                crate::catalog_cache::Hit { schema, batches }
            }
        };
        let stream = futures::stream::iter(hit.batches.into_iter().map(Ok)).boxed();
        Ok(Output::Rows {
            stream: Box::pin(RecordBatchStreamAdapter::new(hit.schema, stream)),
            tag: "SELECT",
        })
    }
}

/// The output schema of an EXPLAIN.
fn rows_schema(plan: &LogicalPlan) -> SchemaRef {
    Arc::new(plan.schema().as_arrow().clone())
}

/// One more EXPLAIN row, `distributed_plan`: where the statement runs.
fn explain_row(
    schema: SchemaRef,
    note: &str,
) -> Result<datafusion::arrow::record_batch::RecordBatch, EngineError> {
    use datafusion::arrow::array::{ArrayRef, StringArray};
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec!["distributed_plan"])),
        Arc::new(StringArray::from(vec![note])),
    ];
    Ok(datafusion::arrow::record_batch::RecordBatch::try_new(
        schema, columns,
    )?)
}
