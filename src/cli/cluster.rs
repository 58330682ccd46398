//! `tidepool scheduler` and `tidepool executor`: the processes of a Ballista cluster that
//! servers with `[cluster] scheduler` send queries to. Both read the configuration for
//! the lake (executors read its files) and the functions every server has.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use crate::config::Overrides;
use crate::engine::{Engine, EngineOptions};
use crate::lake::Lake;

#[derive(clap::Args, Debug)]
pub struct SchedulerArgs {
    /// Address of the scheduler's gRPC service (port 0: a free port, printed on stdout)
    #[arg(long, default_value = "127.0.0.1:50050")]
    pub listen: SocketAddr,
    /// Allow a listen address other than loopback (Ballista has no authentication)
    #[arg(long)]
    pub public: bool,
}

#[derive(clap::Args, Debug)]
pub struct ExecutorArgs {
    /// The scheduler, df://host:port
    #[arg(
        long,
        env = "TIDEPOOL_SCHEDULER",
        default_value = "df://127.0.0.1:50050"
    )]
    pub scheduler: String,
    /// Address of the executor's Arrow Flight service (port 0: free ports)
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Host name the scheduler and other executors reach this one by [default: the listen address]
    #[arg(long)]
    pub advertise: Option<String>,
    /// Tasks run at once [default: one per core]
    #[arg(long, default_value_t = 0)]
    pub slots: usize,
    /// Folder for shuffle files [default: a temporary folder]
    #[arg(long)]
    pub work_dir: Option<String>,
    /// Allow a listen address other than loopback (Ballista has no authentication)
    #[arg(long)]
    pub public: bool,
}

/// The engine a cluster process decodes and runs plans with.
fn engine(overrides: &Overrides) -> anyhow::Result<Arc<Engine>> {
    let settings = super::settings(overrides)?;
    let lake = Lake::open(&settings.lake)?;
    Ok(Engine::new(
        lake,
        EngineOptions::from(&settings),
        settings.dialect(),
    )?)
}

/// Refuses a public address unless asked for: whoever reaches a scheduler or executor
/// can run plans that read anything the executors can.
fn check_public(listen: SocketAddr, public: bool) -> anyhow::Result<()> {
    if listen.ip().is_loopback() {
        return Ok(());
    }
    if !public {
        anyhow::bail!(
            "{listen} is not a loopback address: Ballista's scheduler and executors have no \
             authentication, so anyone who reaches them can run plans that read what the \
             executors can read; pass --public to listen there anyway (on a private network)"
        );
    }
    tracing::warn!(%listen, "listening beyond loopback without authentication (--public)");
    Ok(())
}

pub async fn scheduler(overrides: &Overrides, args: SchedulerArgs) -> anyhow::Result<ExitCode> {
    check_public(args.listen, args.public)?;
    let engine = engine(overrides)?;
    let (bound, serve) = tidepool_cluster::scheduler::start(engine, args.listen).await?;
    println!("df://{bound}");
    tokio::select! {
        r = serve => r?,
        () = super::serve::wait_for_signal() => tracing::info!("shutdown requested"),
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn executor(overrides: &Overrides, args: ExecutorArgs) -> anyhow::Result<ExitCode> {
    check_public(args.listen, args.public)?;
    let engine = engine(overrides)?;
    let options = tidepool_cluster::executor::ExecutorOptions {
        scheduler: tidepool_cluster::parse_scheduler(&args.scheduler)?,
        listen: args.listen,
        advertise: args.advertise,
        slots: args.slots,
        work_dir: args.work_dir,
    };
    tokio::select! {
        r = tidepool_cluster::executor::run(engine, options) => r?,
        () = super::serve::wait_for_signal() => tracing::info!("shutdown requested"),
    }
    Ok(ExitCode::SUCCESS)
}
