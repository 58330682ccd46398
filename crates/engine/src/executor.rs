//! The execution runtime: heavy statements run on threads of their own.
//!
//! DataFusion operators compute a whole batch in one poll; a costly kernel (a nested
//! loop join matching column LIKE column, say) can hold a worker thread for minutes.
//! Run on the runtime that serves the sockets, two such statements on two cores would
//! stop every timer and every other connection: no timeout fires, `SELECT 1` waits,
//! SIGTERM is not even read. The [`Executor`] is a second tokio runtime; heavy plans are
//! executed there (their spawned partition tasks land there too), and their batches
//! cross to the serving runtime through a small channel. The serving side keeps its
//! threads: timeouts and cancels answer at once, dropping the stream aborts the
//! execution task (at its next yield), and shutdown does not wait for it.

use std::future::Future;
use std::sync::Arc;

use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;
use tokio::runtime::{Handle, Runtime};
use tokio_util::task::AbortOnDropHandle;

use super::EngineError;

/// Batches in flight between an execution task and its reader.
const CHANNEL_BATCHES: usize = 2;

/// A dedicated runtime for statement execution.
pub struct Executor {
    runtime: Option<Runtime>,
    handle: Handle,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor").finish_non_exhaustive()
    }
}

impl Executor {
    /// A runtime of `threads` workers with the deep-plan stack size.
    pub fn new(threads: usize) -> std::io::Result<Executor> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("tidepool-exec")
            .thread_stack_size(super::complexity::THREAD_STACK_BYTES)
            .enable_all()
            .build()?;
        Ok(Executor {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }

    /// Executes all partitions of `plan` (merged) on the executor; the stream can be read
    /// from any runtime and stops the execution when dropped.
    pub fn stream(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        task: Arc<TaskContext>,
    ) -> SendableRecordBatchStream {
        self.forward(plan.schema(), move || {
            datafusion::physical_plan::execute_stream(plan, task)
        })
    }

    /// Executes one partition of `plan` on the executor, as [`Executor::stream`].
    pub fn stream_partition(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        partition: usize,
        task: Arc<TaskContext>,
    ) -> SendableRecordBatchStream {
        self.forward(plan.schema(), move || plan.execute(partition, task))
    }

    fn forward(
        &self,
        schema: datafusion::arrow::datatypes::SchemaRef,
        start: impl FnOnce() -> Result<SendableRecordBatchStream> + Send + 'static,
    ) -> SendableRecordBatchStream {
        let (tx, mut rx) = tokio::sync::mpsc::channel(CHANNEL_BATCHES);
        let task = self.handle.spawn(async move {
            // Started here, so the operators' own tasks are spawned on this runtime.
            let mut stream = match start() {
                Ok(s) => s,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            while let Some(batch) = stream.next().await {
                if tx.send(batch).await.is_err() {
                    return;
                }
            }
        });
        let task = AbortOnDropHandle::new(task);
        let batches = futures::stream::poll_fn(move |cx| {
            let _owner = &task;
            rx.poll_recv(cx)
        });
        Box::pin(RecordBatchStreamAdapter::new(schema, batches))
    }

    /// Runs `work` (a write, a COPY) on the executor; dropping the returned future aborts
    /// it at its next yield.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, EngineError>> + Send + 'static,
    ) -> Result<T, EngineError> {
        // The work runs on another runtime: it takes the statement's transaction along.
        let txn = tidepool_lake::txn::current();
        let task = AbortOnDropHandle::new(self.handle.spawn(tidepool_lake::txn::scope(txn, work)));
        match task.await {
            Ok(r) => r,
            Err(e) if e.is_panic() => Err(DataFusionError::Execution(format!(
                "the statement's execution panicked: {e}"
            ))
            .into()),
            Err(_) => Err(EngineError::Cancelled),
        }
    }
}

impl Drop for Executor {
    /// Leaves running kernels behind instead of waiting for them (dropping a runtime
    /// inside another one would also panic).
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    #[tokio::test]
    async fn streams_run_on_the_executor_and_stop_when_dropped() {
        let executor = Executor::new(1).unwrap();
        let ctx = SessionContext::new();
        let df = ctx
            .sql("SELECT count(*) FROM generate_series(1, 100000)")
            .await
            .unwrap();
        let plan = df.clone().create_physical_plan().await.unwrap();
        let batches: Vec<_> = executor
            .stream(plan, Arc::new(df.task_ctx()))
            .collect()
            .await;
        let batch = batches.into_iter().next().unwrap().unwrap();
        let n = batch
            .column(0)
            .as_any()
            .downcast_ref::<datafusion::arrow::array::Int64Array>()
            .unwrap()
            .value(0);
        assert_eq!(n, 100000);

        // An endless query: dropping its stream ends the execution task.
        let df = ctx
            .sql("SELECT count(*) FROM generate_series(1, 9223372036854775806)")
            .await
            .unwrap();
        let plan = df.clone().create_physical_plan().await.unwrap();
        let mut stream = executor.stream(plan, Arc::new(df.task_ctx()));
        let pending =
            tokio::time::timeout(std::time::Duration::from_millis(200), stream.next()).await;
        assert!(pending.is_err(), "the endless count answered");
        drop(stream);
        let metrics = executor.handle.metrics();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while metrics.num_alive_tasks() > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the execution task outlived its stream"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}
