//! Command line: one file per subcommand. `main` parses, sets up tracing and calls
//! [`dispatch`].

pub mod allocator;
mod cluster;
mod generate;
mod ingest;
mod models;
mod progress;
mod remote;
mod serve;
mod sql;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, Overrides, Settings};
use models::Verb;

/// tidepool: a lakehouse in one binary.
#[derive(Debug, Parser)]
#[command(name = "tidepool", version, about)]
pub struct Cli {
    /// More log output (-v debug, -vv trace); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(flatten)]
    pub overrides: OverrideArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// The flags and `TIDEPOOL_*` variables that win over the config file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct OverrideArgs {
    /// Config file [default: ./tidepool.toml when present]
    #[arg(long, global = true, env = "TIDEPOOL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Lake root: a folder or an object store URL
    #[arg(long, global = true, env = "TIDEPOOL_LAKE")]
    pub lake: Option<String>,
    /// Postgres listen address, e.g. 127.0.0.1:5433
    #[arg(long, global = true, env = "TIDEPOOL_PG_LISTEN")]
    pub pg_listen: Option<String>,
    /// HTTP listen address (health, metrics, ingest), e.g. 127.0.0.1:8080
    #[arg(long, global = true, env = "TIDEPOOL_HTTP_LISTEN")]
    pub http_listen: Option<String>,
    /// Arrow Flight SQL listen address, e.g. 127.0.0.1:50051
    #[arg(long, global = true, env = "TIDEPOOL_FLIGHT_LISTEN")]
    pub flight_listen: Option<String>,
    /// Location this node's Flight endpoints name, e.g. grpc://query-1:50051 ([flight] advertise)
    #[arg(long, global = true, env = "TIDEPOOL_FLIGHT_ADVERTISE")]
    pub flight_advertise: Option<String>,
    /// Kafka brokers (host:port,...); without them the embedded dev broker runs
    #[arg(long, global = true, env = "TIDEPOOL_BROKERS")]
    pub brokers: Option<String>,
    /// Per-statement timeout in seconds (0 = none)
    #[arg(long, global = true, env = "TIDEPOOL_QUERY_TIMEOUT")]
    pub query_timeout: Option<u64>,
    /// Query memory limit, e.g. 4GiB
    #[arg(long, global = true, env = "TIDEPOOL_MEMORY_LIMIT")]
    pub memory_limit: Option<String>,
    /// TLS certificate (PEM)
    #[arg(long, global = true, env = "TIDEPOOL_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM)
    #[arg(long, global = true, env = "TIDEPOOL_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// This node's name among the processes sharing the lake [default: the host name]
    #[arg(long, global = true, env = "TIDEPOOL_NODE_NAME")]
    pub node_name: Option<String>,
    /// What this node runs: ingest, serve, schedule, comma-separated [default: all]
    #[arg(long, global = true, env = "TIDEPOOL_ROLES")]
    pub roles: Option<String>,
}

impl From<&OverrideArgs> for Overrides {
    fn from(a: &OverrideArgs) -> Self {
        Overrides {
            config: a.config.clone(),
            lake: a.lake.clone(),
            pg_listen: a.pg_listen.clone(),
            http_listen: a.http_listen.clone(),
            flight_listen: a.flight_listen.clone(),
            flight_advertise: a.flight_advertise.clone(),
            brokers: a.brokers.clone(),
            query_timeout: a.query_timeout,
            memory_limit: a.memory_limit.clone(),
            tls_cert: a.tls_cert.clone(),
            tls_key: a.tls_key.clone(),
            node_name: a.node_name.clone(),
            roles: a.roles.clone(),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the lake over the Postgres wire protocol
    Serve,
    /// Run SQL against the lake without a server and print the result
    Sql(sql::SqlArgs),
    /// Consume the Kafka sources into bronze tables without serving
    Ingest(ingest::IngestArgs),
    /// Build the selected SQL models in DAG order
    Run(models::RunArgs),
    /// Run the data tests of the selected models
    Test(models::TestArgs),
    /// Load the selected seeds (CSV files under seeds/) into lake tables
    Seed(models::RunArgs),
    /// Take the selected snapshots (type-2 history of a query, dbt's `snapshot`)
    Snapshot(models::RunArgs),
    /// Load seeds, take snapshots, build models and run their tests, in DAG order
    Build(models::RunArgs),
    /// List the selected models in DAG order
    Ls(models::LsArgs),
    /// Write a static HTML page of the project into target/docs/
    Docs(models::DocsArgs),
    /// Print the model graph (Mermaid or Graphviz DOT)
    Lineage(models::LineageArgs),
    /// Render the selected models' SQL into target/compiled/
    Compile(models::CompileArgs),
    /// Print the first rows of a model's query (or --inline SQL) without building it
    Show(models::ShowArgs),
    /// Run again what failed or was skipped in the last run, build, seed or snapshot
    Retry(models::RetryArgs),
    /// Sources: `source freshness` checks how new their data is
    Source {
        #[command(subcommand)]
        command: models::SourceCommand,
    },
    /// Send simulated shop events (orders, customers, clicks...) to Kafka or HTTP ingest
    Generate(generate::GenerateArgs),
    /// The retail demo: embedded broker, event generator, ingestion, scheduled models, servers
    Demo(generate::DemoArgs),
    /// Ingestion and the last runs of a running server (--server)
    Status(remote::StatusArgs),
    /// Pause a source on a running server: it commits what it holds and stops reading
    Pause(remote::SourceArgs),
    /// Resume a paused source on a running server
    Resume(remote::SourceArgs),
    /// Re-read a source from an offset or a time into a fresh bronze version (--server)
    Replay(remote::ReplayArgs),
    /// OPTIMIZE, VACUUM or checkpoint a table (on a server with --server, else here)
    Maintain(remote::MaintainArgs),
    /// Make a running server re-read tidepool.toml, sql/ and views/ (--server)
    Reload(remote::ReloadArgs),
    /// Run a Ballista scheduler that servers with [cluster] scheduler send queries to
    Scheduler(cluster::SchedulerArgs),
    /// Run a Ballista executor for a scheduler (reads the lake's files)
    Executor(cluster::ExecutorArgs),
}

/// Starts tracing to stderr.
pub fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => {
            "info,datafusion=warn,deltalake=warn,buoyant_kernel=off,librdkafka=warn,deltalake_core::writer::stats=error"
        }
        1 => "debug,datafusion=info,deltalake=info,buoyant_kernel=warn,hyper=info,h2=info",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    log_panics();
}

/// A panic (ours would be a bug; a dependency's, such as delta-rs aborting an already
/// closed upload after a failed write, is caught where it happens) is one error line in
/// the log with its place and message, not a backtrace on stderr.
fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let thread = std::thread::current().name().unwrap_or("?").to_string();
        tracing::error!(%thread, %location, "panicked: {message}");
    }));
}

/// Loads and validates the configuration.
/// The lake and an engine over it, as the settings say.
pub fn open(
    settings: &crate::config::Settings,
) -> anyhow::Result<(
    std::sync::Arc<crate::lake::Lake>,
    std::sync::Arc<crate::engine::Engine>,
)> {
    let lake = crate::lake::Lake::open(&settings.lake)?;
    let engine = crate::engine::Engine::new(
        lake.clone(),
        crate::engine::EngineOptions::from(settings),
        settings.dialect(),
    )?;
    Ok((lake, engine))
}

pub fn settings(overrides: &Overrides) -> anyhow::Result<Settings> {
    let config = Config::load(overrides.config.as_deref())?;
    Ok(config.resolve(overrides)?)
}

/// Runs the chosen subcommand.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_stack_size(crate::engine::complexity::THREAD_STACK_BYTES)
        .enable_all()
        .build()?;
    let overrides = Overrides::from(&cli.overrides);
    let result = match cli.command {
        Command::Serve => runtime.block_on(serve::run(&overrides)),
        Command::Sql(args) => runtime.block_on(sql::run(&overrides, args)),
        Command::Ingest(args) => runtime.block_on(ingest::run(&overrides, args)),
        Command::Run(args) => runtime.block_on(models::run(&overrides, args, Verb::Run)),
        Command::Seed(args) => runtime.block_on(models::run(&overrides, args, Verb::Seed)),
        Command::Snapshot(args) => runtime.block_on(models::run(&overrides, args, Verb::Snapshot)),
        Command::Build(args) => runtime.block_on(models::run(&overrides, args, Verb::Build)),
        Command::Test(args) => runtime.block_on(models::test(&overrides, args)),
        Command::Docs(args) => runtime.block_on(models::docs(&overrides, args)),
        Command::Lineage(args) => runtime.block_on(models::lineage(&overrides, args)),
        Command::Ls(args) => runtime.block_on(models::ls(&overrides, args)),
        Command::Compile(args) => runtime.block_on(models::compile(&overrides, args)),
        Command::Show(args) => runtime.block_on(models::show(&overrides, args)),
        Command::Retry(args) => runtime.block_on(models::retry(&overrides, args)),
        Command::Source {
            command: models::SourceCommand::Freshness(args),
        } => runtime.block_on(models::freshness(&overrides, args)),
        Command::Generate(args) => runtime.block_on(generate::generate(&overrides, args)),
        Command::Demo(args) => runtime.block_on(generate::demo(&overrides, args)),
        Command::Status(args) => runtime.block_on(remote::status(args)),
        Command::Pause(args) => runtime.block_on(remote::switch(args, true)),
        Command::Resume(args) => runtime.block_on(remote::switch(args, false)),
        Command::Replay(args) => runtime.block_on(remote::replay(args)),
        Command::Maintain(args) => runtime.block_on(remote::maintain(&overrides, args)),
        Command::Reload(args) => runtime.block_on(remote::reload(args)),
        Command::Scheduler(args) => runtime.block_on(cluster::scheduler(&overrides, args)),
        Command::Executor(args) => runtime.block_on(cluster::executor(&overrides, args)),
    };
    // Whatever still runs has had its grace period (a kernel busy with one huge batch
    // cannot be interrupted mid-batch): the process ends instead of waiting for it.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}
