//! One Ballista job, from submission to rows, with its life tied to the statement's.
//!
//! Ballista's own client (`execute_physical_plan`) keeps the job id to itself, so a
//! statement cancelled or timed out while its job runs left the job running on the
//! executors. Here the plan (encoded once, by [`crate::remote::Remote::plan`]) is submitted
//! with `ExecuteQueryPush`, the scheduler's status updates are read as they come, and a
//! [`Submitted`] guard cancels the job (`CancelJob`) when it is dropped before the job
//! ended: the statement's stream dropped by a cancel, a statement timeout or a client that
//! went away. A finished job's partitions are streamed from the executors that hold them.

use ballista_core::client::BallistaClient;
use ballista_core::config::BallistaConfig;
use ballista_core::serde::protobuf::execute_query_params::Query;
use ballista_core::serde::protobuf::job_status::Status;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use ballista_core::serde::protobuf::{
    CancelJobParams, ExecuteQueryParams, KeyValuePair, PartitionLocation, SuccessfulJob,
};
use ballista_core::utils::{GrpcClientConfig, create_grpc_client_endpoint};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::{DataFusionError, Result};
use datafusion::prelude::SessionConfig;
use futures::{Stream, StreamExt, TryStreamExt};

type Scheduler = SchedulerGrpcClient<tonic::transport::Channel>;

/// A job the scheduler accepted and that has not ended yet: dropping this cancels it.
struct Submitted {
    scheduler: Scheduler,
    job_id: Option<String>,
    ended: bool,
}

impl Drop for Submitted {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let Some(job_id) = self.job_id.take() else {
            return;
        };
        let mut scheduler = self.scheduler.clone();
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        handle.spawn(async move {
            match scheduler
                .cancel_job(CancelJobParams {
                    job_id: job_id.clone(),
                })
                .await
            {
                Ok(_) => {
                    tracing::info!(job = %job_id, "cluster job cancelled: its statement ended")
                }
                Err(e) => tracing::warn!(job = %job_id, error = %e, "cluster job not cancelled"),
            }
        });
    }
}

/// Runs the encoded physical plan `plan` as one job of the scheduler at `url`
/// (`http://host:port`) under `session_config`'s settings; the rows of its output
/// partitions, in order, once the job succeeded.
pub(crate) async fn run(
    url: String,
    plan: Vec<u8>,
    session_id: String,
    session_config: &SessionConfig,
) -> Result<impl Stream<Item = Result<RecordBatch>> + Send + use<>> {
    let config = BallistaConfig::default();
    let grpc = GrpcClientConfig::from(&config);
    let max_message_size = config.grpc_client_max_message_size();
    let channel = create_grpc_client_endpoint(url, Some(&grpc))
        .map_err(external)?
        .connect()
        .await
        .map_err(external)?;
    let scheduler = SchedulerGrpcClient::new(channel)
        .max_encoding_message_size(max_message_size)
        .max_decoding_message_size(max_message_size);
    let settings = session_config
        .options()
        .entries()
        .into_iter()
        .map(|e| KeyValuePair {
            key: e.key,
            value: e.value,
        })
        .collect();
    let mut request = tonic::Request::new(ExecuteQueryParams {
        query: Some(Query::PhysicalPlan(plan)),
        settings,
        session_id,
        operation_id: uuid::Uuid::new_v4().to_string(),
    });
    ballista_core::version::insert_version_header(request.metadata_mut());
    let mut job = Submitted {
        scheduler,
        job_id: None,
        ended: false,
    };
    let mut statuses = job
        .scheduler
        .execute_query_push(request)
        .await
        .map_err(external)?
        .into_inner();
    let done = loop {
        let Some(update) = statuses.next().await else {
            return Err(DataFusionError::Execution(
                "the scheduler closed the job's status stream before the job ended".into(),
            ));
        };
        let Some(status) = update.map_err(external)?.status else {
            continue;
        };
        if job.job_id.is_none() && !status.job_id.is_empty() {
            job.job_id = Some(status.job_id.clone());
        }
        match status.status {
            Some(Status::Successful(done)) => break done,
            Some(Status::Failed(failed)) => {
                job.ended = true;
                return Err(DataFusionError::Execution(format!(
                    "Job {} failed: {}",
                    status.job_id, failed.error
                )));
            }
            Some(Status::Queued(_)) | Some(Status::Running(_)) | None => {}
        }
    };
    job.ended = true;
    let SuccessfulJob {
        partition_location, ..
    } = done;
    let use_tls = grpc.use_tls;
    let (retries, retry_wait) = (grpc.io_retries_times, grpc.io_retry_wait_time_ms);
    Ok(futures::stream::iter(partition_location)
        .map(move |location| {
            futures::stream::once(fetch(
                location,
                max_message_size,
                use_tls,
                retries,
                retry_wait,
            ))
            .try_flatten()
        })
        .flatten())
}

/// The rows of one output partition of a finished job, from the executor holding it.
async fn fetch(
    location: PartitionLocation,
    max_message_size: usize,
    use_tls: bool,
    retries: u8,
    retry_wait_ms: u64,
) -> Result<datafusion::execution::SendableRecordBatchStream> {
    let layout = location.layout();
    let (Some(executor), Some(partition)) = (location.executor_meta, location.partition_id) else {
        return Err(DataFusionError::Internal(
            "the scheduler named a partition without its executor or id".into(),
        ));
    };
    let port = u16::try_from(executor.port).map_err(external)?;
    let mut client = BallistaClient::try_new(
        &executor.host,
        port,
        max_message_size,
        use_tls,
        None,
        retries,
        retry_wait_ms,
        0,
        0,
    )
    .await
    .map_err(external)?;
    client
        .fetch_partition(
            &executor.id,
            &partition.into(),
            location.file_id,
            layout,
            true,
        )
        .await
        .map_err(external)
}

fn external(e: impl std::error::Error + Send + Sync + 'static) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}
