//! Cancelled tasks stop working on the executors.
//!
//! A cancelled Ballista job has its running tasks cancelled on the executors, and Ballista
//! 55's executor aborts the task's future; but its shuffle writer runs a task's plan in a
//! coordinator it starts with `tokio::spawn` (`ShuffleWriterExec::execute`), which the
//! abort does not reach: the executor kept computing a cancelled statement's rows to the
//! end (seen: two executors at full CPU for tens of seconds after a statement timeout).
//! [`StoppingEngine`] is the executor's execution engine: Ballista's own, with every
//! operator under the writer wrapped in a [`StopExec`] whose streams fail at their next
//! batch once the task's future has been dropped unfinished. The writer then ends, and
//! with it every operator below it. (Upstream: the coordinator should end when every
//! receiver of its results is gone.) [`Pool`] keeps the executor's connections to other executors for shuffle
//! reads, as Ballista's default engine does (its pool is private to its crate).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use ballista_core::JobId;
use ballista_core::client::BallistaClient;
use ballista_core::client_pool::{BallistaClientPool, PooledClient};
use ballista_core::extension::BallistaConfigGrpcEndpoint;
use ballista_core::serde::protobuf::{
    RuntimeStatsReport, ShuffleWritePartition, TaskColumnStats, WindowStateReport,
};
use ballista_core::utils::GrpcClientConfig;
use ballista_executor::execution_engine::{
    DefaultExecutionEngine, ExecutionEngine, QueryStageExecutor,
};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::execution_plan::replace_children_if_necessary;
use datafusion::physical_plan::metrics::MetricsSet;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use datafusion::prelude::SessionConfig;
use futures::StreamExt;
use parking_lot::Mutex;

/// Ballista's execution engine, with each task's work stopped when the task is dropped.
pub(crate) struct StoppingEngine {
    inner: DefaultExecutionEngine,
}

impl StoppingEngine {
    pub(crate) fn new() -> StoppingEngine {
        StoppingEngine {
            inner: DefaultExecutionEngine::with_client_pool(Arc::new(Pool::default())),
        }
    }
}

impl ExecutionEngine for StoppingEngine {
    fn create_query_stage_exec(
        &self,
        job_id: JobId,
        stage_id: usize,
        task_id: usize,
        global_output_partition_ids: Vec<usize>,
        plan: Arc<dyn ExecutionPlan>,
        work_dir: &str,
        config: &SessionConfig,
    ) -> Result<Arc<dyn QueryStageExecutor>> {
        let stop = Arc::new(AtomicBool::new(false));
        // Every operator under the writer (the stage's root) hands its batches on through
        // a StopExec: a blocking operator (an aggregate over a join) polls its input for
        // every batch, so the work stops within a batch wherever it is.
        let inputs = plan
            .children()
            .into_iter()
            .map(|input| {
                Arc::clone(input)
                    .transform_up(|node| {
                        let wrapped: Arc<dyn ExecutionPlan> = Arc::new(StopExec {
                            input: node,
                            stop: stop.clone(),
                        });
                        Ok(Transformed::yes(wrapped))
                    })
                    .map(|t| t.data)
            })
            .collect::<Result<Vec<_>>>()?;
        let plan = replace_children_if_necessary(plan, inputs)?;
        let inner = self.inner.create_query_stage_exec(
            job_id,
            stage_id,
            task_id,
            global_output_partition_ids,
            plan,
            work_dir,
            config,
        )?;
        Ok(Arc::new(StoppingStage { inner, stop }))
    }
}

/// A task's stage executor whose work stops when its run is dropped unfinished.
#[derive(Debug)]
struct StoppingStage {
    inner: Arc<dyn QueryStageExecutor>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Display for StoppingStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.inner, f)
    }
}

/// Sets the flag when dropped before [`Armed::disarm`].
struct Armed(Option<Arc<AtomicBool>>);

impl Armed {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        if let Some(stop) = self.0.take() {
            stop.store(true, Ordering::Relaxed);
        }
    }
}

#[async_trait]
impl QueryStageExecutor for StoppingStage {
    async fn execute_query_stage(
        &self,
        task_id: usize,
        context: Arc<TaskContext>,
    ) -> Result<Vec<ShuffleWritePartition>> {
        let armed = Armed(Some(self.stop.clone()));
        let done = self.inner.execute_query_stage(task_id, context).await;
        armed.disarm();
        done
    }

    fn collect_plan_metrics(&self) -> Vec<MetricsSet> {
        self.inner.collect_plan_metrics()
    }

    fn collect_runtime_stats_reports(&self) -> Vec<RuntimeStatsReport> {
        self.inner.collect_runtime_stats_reports()
    }

    fn collect_window_state_reports(&self) -> Result<Vec<WindowStateReport>> {
        self.inner.collect_window_state_reports()
    }

    fn collect_column_stats(&self) -> Vec<TaskColumnStats> {
        self.inner.collect_column_stats()
    }
}

/// Passes its input's batches on until its task is stopped, then fails.
#[derive(Debug)]
pub(crate) struct StopExec {
    input: Arc<dyn ExecutionPlan>,
    stop: Arc<AtomicBool>,
}

impl DisplayAs for StopExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "StopExec")
    }
}

impl ExecutionPlan for StopExec {
    fn name(&self) -> &str {
        "StopExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let [input] = <[_; 1]>::try_from(children).map_err(|c| {
            DataFusionError::Internal(format!("StopExec has one input, not {}", c.len()))
        })?;
        Ok(Arc::new(StopExec {
            input,
            stop: self.stop.clone(),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let rows = self.input.execute(partition, context)?;
        let stop = self.stop.clone();
        let schema = rows.schema();
        let rows = rows.map(move |batch| {
            if stop.load(Ordering::Relaxed) {
                Err(DataFusionError::Execution(
                    "the task was cancelled (its job was cancelled)".into(),
                ))
            } else {
                batch
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, rows)))
    }
}

/// Idle connections to other executors, by `host:port`, reused by shuffle reads.
#[derive(Default)]
struct Pool {
    idle: Arc<Mutex<Idle>>,
}

/// Idle clients by executor `(host, port)`.
type Idle = HashMap<(String, u16), Vec<BallistaClient>>;

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let idle: usize = self.idle.lock().values().map(Vec::len).sum();
        f.debug_struct("Pool").field("idle", &idle).finish()
    }
}

/// Idle connections kept per executor.
const IDLE_PER_EXECUTOR: usize = 16;

#[async_trait]
impl BallistaClientPool for Pool {
    async fn acquire(
        &self,
        host: &str,
        port: u16,
        config: &GrpcClientConfig,
        customize_endpoint: Option<Arc<BallistaConfigGrpcEndpoint>>,
    ) -> ballista_core::error::Result<PooledClient> {
        let key = (host.to_string(), port);
        let reused = self.idle.lock().get_mut(&key).and_then(Vec::pop);
        let client = match reused {
            Some(c) => c,
            None => {
                BallistaClient::try_new(
                    host,
                    port,
                    config.max_message_size,
                    config.use_tls,
                    customize_endpoint,
                    config.io_retries_times,
                    config.io_retry_wait_time_ms,
                    config.initial_connection_window_size,
                    config.initial_stream_window_size,
                )
                .await?
            }
        };
        let idle = Arc::clone(&self.idle);
        Ok(PooledClient::new(
            client,
            Box::new(move |c| {
                let mut idle = idle.lock();
                let slot = idle.entry(key).or_default();
                if slot.len() < IDLE_PER_EXECUTOR {
                    slot.push(c);
                }
            }),
        ))
    }

    async fn evict_idle(&self) {}
}
