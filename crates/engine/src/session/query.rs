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
