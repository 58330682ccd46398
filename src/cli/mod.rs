//! Command line: one file per subcommand. `main` parses, sets up tracing and calls
//! [`dispatch`].

pub mod allocator;
mod generate;
mod ingest;
mod models;
mod progress;
mod remote;
mod serve;
mod sql;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, Overrides, Settings};

/// tidepool: a lakehouse in one binary.
#[derive(Debug, Parser)]
#[command(name = "tidepool", version, about)]
pub struct Cli {
    /// More log output (-v debug, -vv trace); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(flatten)]
    pub overrides: Overrides,
    #[command(subcommand)]
    pub command: Command,
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
    /// Build the selected models and run each one's tests right after it
    Build(models::RunArgs),
    /// List the selected models in DAG order
    Ls(models::LsArgs),
    /// Write a static HTML page of the project into target/docs/
    Docs(models::DocsArgs),
    /// Print the model graph (Mermaid or Graphviz DOT)
    Lineage(models::LineageArgs),
    /// Render the selected models' SQL into target/compiled/
    Compile(models::CompileArgs),
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
    let result = match cli.command {
        Command::Serve => runtime.block_on(serve::run(&cli.overrides)),
        Command::Sql(args) => runtime.block_on(sql::run(&cli.overrides, args)),
        Command::Ingest(args) => runtime.block_on(ingest::run(&cli.overrides, args)),
        Command::Run(args) => runtime.block_on(models::run(&cli.overrides, args, false)),
        Command::Build(args) => runtime.block_on(models::run(&cli.overrides, args, true)),
        Command::Test(args) => runtime.block_on(models::test(&cli.overrides, args)),
        Command::Docs(args) => runtime.block_on(models::docs(&cli.overrides, args)),
        Command::Lineage(args) => runtime.block_on(models::lineage(&cli.overrides, args)),
        Command::Ls(args) => runtime.block_on(models::ls(&cli.overrides, args)),
        Command::Compile(args) => runtime.block_on(models::compile(&cli.overrides, args)),
        Command::Generate(args) => runtime.block_on(generate::generate(&cli.overrides, args)),
        Command::Demo(args) => runtime.block_on(generate::demo(&cli.overrides, args)),
        Command::Status(args) => runtime.block_on(remote::status(args)),
        Command::Pause(args) => runtime.block_on(remote::switch(args, true)),
        Command::Resume(args) => runtime.block_on(remote::switch(args, false)),
        Command::Replay(args) => runtime.block_on(remote::replay(args)),
        Command::Maintain(args) => runtime.block_on(remote::maintain(&cli.overrides, args)),
        Command::Reload(args) => runtime.block_on(remote::reload(args)),
    };
    // Whatever still runs has had its grace period (a kernel busy with one huge batch
    // cannot be interrupted mid-batch): the process ends instead of waiting for it.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}
