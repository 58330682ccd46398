//! The server's side of a distributed query: [`Remote`] is the engine's
//! [`Cluster`](tidepool_engine::distributed::Cluster). It takes the physical plan the engine
//! made, checks that Ballista's codec can carry every node of it (else the query runs
//! on this node, as before), and returns a [`ClusterExec`] whose one partition submits
//! the plan to the scheduler and streams the rows of the finished job back
//! ([`crate::job`]: the job is cancelled when the statement ends first).

use std::fmt::Write;
use std::sync::Arc;

use async_trait::async_trait;
use ballista_core::serde::BallistaPhysicalExtensionCodec;
use ballista_scheduler::planner::{DefaultDistributedPlanner, DistributedPlanner};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, SessionState, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties, displayable,
};
use datafusion::prelude::SessionConfig;
use datafusion_proto::physical_plan::{AsExecutionPlan, PhysicalExtensionCodec};
use datafusion_proto::protobuf::PhysicalPlanNode;
use futures::TryStreamExt;
use prost::Message;
use tidepool_engine::distributed::Cluster;

use crate::{ClusterError, parse_scheduler};

/// A Ballista scheduler queries are sent to.
#[derive(Debug)]
pub struct Remote {
    /// As configured (`df://host:port`).
    name: String,
    /// Where the scheduler's gRPC service is (`http://host:port`).
    url: String,
    codec: Arc<dyn PhysicalExtensionCodec>,
}

impl Remote {
    /// A client of the scheduler at `address` (`df://host:port`). Connects on first use.
    pub fn new(address: &str) -> Result<Remote, ClusterError> {
        let (host, port) = parse_scheduler(address)?;
        Ok(Remote {
            name: format!("df://{host}:{port}"),
            url: format!("http://{host}:{port}"),
            codec: Arc::new(BallistaPhysicalExtensionCodec::default()),
        })
    }
}

#[async_trait]
impl Cluster for Remote {
    fn name(&self) -> String {
        self.name.clone()
    }

    async fn plan(
        &self,
        physical: Arc<dyn ExecutionPlan>,
        _state: &SessionState,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        // A node Ballista's codec cannot carry (one of tidepool's own operators) keeps the
        // query here: better slower than failing. The encoding is what is sent.
        let node = match PhysicalPlanNode::try_from_physical_plan(
            physical.clone(),
            self.codec.as_ref(),
        ) {
            Ok(node) => node,
            Err(e) => {
                tracing::debug!(error = %e, "plan cannot be sent to the cluster; runs on this node");
                return Ok(None);
            }
        };
        Ok(Some(Arc::new(ClusterExec::new(
            self.name.clone(),
            self.url.clone(),
            physical,
            Arc::new(node.encode_to_vec()),
        ))))
    }

    /// What Ballista's own clients plan under (`ballista_restricted_configuration`),
    /// except its preference for sort-merge joins: dynamic filters (filled at run time by
    /// a join's build side, read by a scan that may run in another stage) off, no
    /// round-robin repartitions, no view types (Arrow IPC frames of view arrays outgrow
    /// Flight's messages), uncorrelated scalar subqueries as joins (their physical form
    /// cannot be split into stages).
    fn configure(&self, config: &mut SessionConfig) {
        let options = config.options_mut();
        for key in [
            "datafusion.optimizer.enable_dynamic_filter_pushdown",
            "datafusion.optimizer.enable_round_robin_repartition",
            "datafusion.execution.parquet.schema_force_view_types",
            "datafusion.optimizer.enable_physical_uncorrelated_scalar_subquery",
        ] {
            if let Err(e) = options.set(key, "false") {
                tracing::warn!(key, error = %e, "cannot set an option for the cluster");
            }
        }
    }

    fn stages(&self, physical: Arc<dyn ExecutionPlan>, state: &SessionState) -> Result<String> {
        let mut planner = DefaultDistributedPlanner::new();
        let job = ballista_core::JobId::new("explain");
        let stages = planner
            .plan_query_stages(&job, physical, state.config().options())
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let mut out = String::new();
        for stage in stages {
            let plan: &dyn ExecutionPlan = stage.as_ref();
            let _ = write!(
                out,
                "Stage {} ({} task{}):\n{}",
                stage.stage_id(),
                stage.input_partition_count(),
                if stage.input_partition_count() == 1 {
                    ""
                } else {
                    "s"
                },
                displayable(plan).indent(false)
            );
        }
        Ok(out)
    }
}

/// A physical plan run as one Ballista job; one output partition, the job's rows.
#[derive(Debug)]
pub struct ClusterExec {
    name: String,
    url: String,
    plan: Arc<dyn ExecutionPlan>,
    /// `plan` encoded with Ballista's codec.
    encoded: Arc<Vec<u8>>,
    properties: Arc<PlanProperties>,
}

impl ClusterExec {
    fn new(
        name: String,
        url: String,
        plan: Arc<dyn ExecutionPlan>,
        encoded: Arc<Vec<u8>>,
    ) -> ClusterExec {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(plan.schema()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        ClusterExec {
            name,
            url,
            plan,
            encoded,
            properties,
        }
    }

    /// The plan the cluster runs.
    pub fn plan(&self) -> &Arc<dyn ExecutionPlan> {
        &self.plan
    }
}

impl DisplayAs for ClusterExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match t {
            DisplayFormatType::Default | DisplayFormatType::Verbose => {
                writeln!(f, "ClusterExec: scheduler={}", self.name)?;
                write!(f, "{}", displayable(self.plan.as_ref()).indent(false))
            }
            DisplayFormatType::TreeRender => writeln!(f, "scheduler={}", self.name),
        }
    }
}

impl ExecutionPlan for ClusterExec {
    fn name(&self) -> &str {
        "ClusterExec"
    }

    fn schema(&self) -> SchemaRef {
        self.plan.schema()
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "ClusterExec has one partition, not {partition}"
            )));
        }
        let (url, plan) = (self.url.clone(), self.encoded.as_ref().clone());
        let session_id = context.session_id();
        let session_config = context.session_config().clone();
        let name = self.name.clone();
        let job = async move { crate::job::run(url, plan, session_id, &session_config).await };
        // An external system failed: SQLSTATE 58030 at the Postgres edge.
        let rows = futures::stream::once(job).try_flatten().map_err(move |e| {
            DataFusionError::IoError(std::io::Error::other(format!(
                "the query failed on the cluster at {name}: {e}"
            )))
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema(), rows)))
    }
}
