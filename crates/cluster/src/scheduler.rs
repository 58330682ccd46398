//! `tidepool scheduler`: Ballista's scheduler, with tidepool's functions so it can decode
//! the plans servers send, and quick failure detection: executors beat every
//! [`HEARTBEAT_SECS`] s and one silent for [`EXECUTOR_TIMEOUT_SECS`] s is taken for dead
//! (its tasks run again elsewhere), instead of Ballista's 60 s / 180 s defaults, so a
//! query survives a lost executor within a statement timeout.

use std::net::SocketAddr;
use std::sync::Arc;

use ballista_core::extension::SessionConfigExt;
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::{create_scheduler, start_grpc_service_with_listener};
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::SessionConfig;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use tidepool_engine::Engine;

use crate::ClusterError;

/// How often executors report to the scheduler.
pub const HEARTBEAT_SECS: u64 = 2;
/// An executor silent this long is dead.
pub const EXECUTOR_TIMEOUT_SECS: u64 = 10;

/// The session configuration of tidepool's engine, with Ballista's settings added.
pub fn session_config(engine: &Engine) -> SessionConfig {
    engine
        .base()
        .state()
        .config()
        .clone()
        .upgrade_for_ballista()
}

/// Binds `listen` (port 0: a free port) and returns the address and the server future.
pub async fn start(
    engine: Arc<Engine>,
    listen: SocketAddr,
) -> Result<
    (
        SocketAddr,
        impl std::future::Future<Output = Result<(), ClusterError>>,
    ),
    ClusterError,
> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| ClusterError::Listen {
            addr: listen.to_string(),
            source,
        })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ClusterError::Listen {
            addr: listen.to_string(),
            source,
        })?;
    let base = engine.base().state();
    let config_base = session_config(&engine);
    let mut config = SchedulerConfig::default()
        .with_hostname(bound.ip().to_string())
        .with_port(bound.port());
    config.bind_host = bound.ip().to_string();
    config.executor_timeout_seconds = EXECUTOR_TIMEOUT_SECS;
    config.expire_dead_executor_interval_seconds = HEARTBEAT_SECS;
    config.no_executors_grace_period_seconds = EXECUTOR_TIMEOUT_SECS;
    config.override_config_producer = Some(Arc::new(move || config_base.clone()));
    config.override_session_builder = Some(Arc::new(move |c: SessionConfig| {
        Ok(SessionStateBuilder::new_from_existing(base.clone())
            .with_config(c)
            .build())
    }));
    let config = Arc::new(config);
    let cluster = BallistaCluster::new_from_config(&config).await?;
    let scheduler = create_scheduler::<LogicalPlanNode, PhysicalPlanNode>(cluster, config).await?;
    tracing::info!(listen = %bound, "Ballista scheduler listening");
    let serve = async move {
        start_grpc_service_with_listener(listener, scheduler).await?;
        Ok(())
    };
    Ok((bound, serve))
}
