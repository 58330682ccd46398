//! `tidepool executor`: Ballista's executor with tidepool's functions (the PostgreSQL and
//! JSON functions every server has) and the lake's object stores, so the Parquet scans
//! of lake tables that servers send it read the same files they would.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ballista_core::registry::BallistaFunctionRegistry;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use tidepool_engine::Engine;

use crate::ClusterError;
use crate::scheduler::{HEARTBEAT_SECS, session_config};

/// Where an executor listens and which scheduler it serves.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// The scheduler, `(host, port)`.
    pub scheduler: (String, u16),
    /// The Arrow Flight port other executors and servers fetch results from; port 0
    /// picks a free one (and another for the task gRPC service).
    pub listen: SocketAddr,
    /// The host name others reach this executor by; the listen address when unset.
    pub advertise: Option<String>,
    /// Tasks run at once; 0: one per core.
    pub slots: usize,
    /// Where shuffle files go; a temporary directory when unset.
    pub work_dir: Option<String>,
}

/// Runs an executor until it is interrupted (Ctrl-C) or fails.
pub async fn run(engine: Arc<Engine>, options: ExecutorOptions) -> Result<(), ClusterError> {
    let ip = options.listen.ip();
    let port = free_port(ip, options.listen.port())?;
    let grpc_port = free_port(ip, 0)?;
    let state = engine.base().state();
    let registry = Arc::new(BallistaFunctionRegistry::from(&state));
    let runtime = state.runtime_env().clone();
    let config = session_config(&engine);
    let mut c = ExecutorProcessConfig {
        bind_host: ip.to_string(),
        external_host: options.advertise.clone(),
        port,
        grpc_port,
        scheduler_host: options.scheduler.0.clone(),
        scheduler_port: options.scheduler.1,
        // Waits for a scheduler that is not up yet instead of failing at once.
        scheduler_connect_timeout_seconds: 60,
        work_dir: options.work_dir.clone(),
        executor_heartbeat_interval_seconds: HEARTBEAT_SECS,
        override_function_registry: Some(registry),
        // Ballista's engine, with a cancelled task's work stopped (see task_stop).
        override_execution_engine: Some(Arc::new(crate::task_stop::StoppingEngine::new())),
        override_runtime_producer: Some(Arc::new(move |_| Ok(runtime.clone()))),
        override_config_producer: Some(Arc::new(move || config.clone())),
        print_thread_info: false,
        ..Default::default()
    };
    if options.slots > 0 {
        c.vcores = options.slots;
    }
    tracing::info!(flight = %SocketAddr::new(ip, port), grpc_port,
        scheduler = %format!("{}:{}", options.scheduler.0, options.scheduler.1),
        "Ballista executor starting");
    start_executor_process(Arc::new(c)).await?;
    Ok(())
}

/// `port` when it is not 0, else a port free on `ip` now.
fn free_port(ip: IpAddr, port: u16) -> Result<u16, ClusterError> {
    if port != 0 {
        return Ok(port);
    }
    let listener = std::net::TcpListener::bind((ip, 0)).map_err(|source| ClusterError::Listen {
        addr: format!("{ip}:0"),
        source,
    })?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|source| ClusterError::Listen {
            addr: format!("{ip}:0"),
            source,
        })
}
