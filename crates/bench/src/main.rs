//! `tidepool-bench`: tidepool's benchmarks, a binary of their own so the server never
//! compiles them. Each subcommand measures one issue's speed target side by side with
//! its peer where one runs here (see BENCHMARKS.md); build with `--release`.

mod admin;
mod authz;
mod connect;
mod demo;
mod ingest;
mod models;
mod nodes;
mod procedures;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Benchmarks of tidepool against its peers (build with --release).
#[derive(Debug, clap::Parser)]
#[command(name = "tidepool-bench", version, about)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchWhat,
}

#[derive(Debug, clap::Subcommand)]
pub enum BenchWhat {
    /// Kafka to Delta: end to end, decode+write alone, RSS, latency
    Ingest {
        /// Messages to pre-produce and ingest
        #[arg(long, default_value_t = 1_000_000)]
        messages: usize,
        /// Seconds of the steady 1,000 msg/s latency run (0 skips it)
        #[arg(long, default_value_t = 20)]
        latency_seconds: u64,
        /// Folder for the benchmark lakes [default: a temporary folder]
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
        /// Producer compression of the pre-produced backlog (none, lz4, zstd, ...)
        #[arg(long, default_value = "none")]
        compression: String,
        /// Rows per commit of the ingest source (`max_rows`)
        #[arg(long, default_value_t = 100_000)]
        max_rows: usize,
        /// librdkafka consumer property for the ingest source, `key=value` (repeatable)
        #[arg(long = "consumer-property")]
        properties: Vec<String>,
    },
    /// Planning overhead of models: `ls` and `compile` on a generated project
    Models {
        /// Models in the generated project
        #[arg(long, default_value_t = 1000)]
        models: usize,
        /// Runs of each command (the median is reported)
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Bronze rows for the incremental cost run (0 skips it)
        #[arg(long, default_value_t = 5_000_000)]
        rows: usize,
        /// New bronze rows before the incremental runs (a fifth update existing keys)
        #[arg(long, default_value_t = 50_000)]
        new_rows: usize,
        /// Bronze rows of the incremental run: `orders` (order events as ingested from
        /// Kafka, ~300-byte JSON), `narrow` (four columns), or `both`
        #[arg(long, value_enum, default_value = "both")]
        shape: models::Shapes,
        /// Keyed models mark replaced rows in deletion vectors
        /// (`tblproperties={'delta.enableDeletionVectors': true}`) instead of copying the
        /// files that hold them
        #[arg(long)]
        deletion_vectors: bool,
    },
    /// Procedure call overhead: CALL of a point lookup against running its body directly
    Procedures {
        /// Calls of each form (the median is reported)
        #[arg(long, default_value_t = 1000)]
        calls: usize,
        /// Rows of the gold table
        #[arg(long, default_value_t = 1_000_000)]
        rows: usize,
    },
    /// Authorization cost: the plan walk and decision against whole statements (a point
    /// lookup and TPC-H q1) run by a reader
    Authz {
        /// Statements run (the median is reported; q1 runs a twentieth as often)
        #[arg(long, default_value_t = 400)]
        runs: usize,
        /// Rows of the point-lookup table
        #[arg(long, default_value_t = 1_000_000)]
        rows: usize,
        /// Rows of the generated lineitem for q1
        #[arg(long, default_value_t = 6_000_000)]
        lineitem_rows: usize,
    },
    /// Admin API read latency: ListModels on a large project, IngestStatus on many partitions
    Admin {
        #[arg(long, default_value_t = 1000)]
        models: usize,
        #[arg(long, default_value_t = 100)]
        partitions: i32,
        #[arg(long, default_value_t = 50)]
        calls: usize,
    },
    /// The retail demo: time to queryable gold marts, how far they trail the generator
    /// (run from the repository root)
    Demo {
        /// Events per second
        #[arg(long, default_value_t = 2000)]
        rate: u64,
        /// How long the generator runs
        #[arg(long, default_value_t = 120)]
        seconds: u64,
    },
    /// Power BI connection cost: Npgsql 4.0's connect + type load + DISCARD ALL + query
    Connect {
        /// Sequential cycles (median, p95 and max are reported)
        #[arg(long, default_value_t = 200)]
        cycles: usize,
        /// A running server's Postgres address [default: a server started on a temporary lake]
        #[arg(long)]
        addr: Option<std::net::SocketAddr>,
    },
    /// Kafka ingestion on 1, 2, 3 `tidepool serve --roles ingest` processes sharing a
    /// consumer group and a lake, against a tansu broker process (issue 26)
    Nodes {
        /// The tansu broker binary [default: $TIDEPOOL_TANSU]
        #[arg(long, env = "TIDEPOOL_TANSU")]
        tansu: PathBuf,
        /// The tidepool binary [default: `tidepool` next to this one]
        #[arg(long)]
        tidepool: Option<PathBuf>,
        /// Messages produced once and ingested by each node count
        #[arg(long, default_value_t = 300_000)]
        messages: usize,
        /// Partitions of the topic
        #[arg(long, default_value_t = 6)]
        partitions: i32,
        /// Node counts to run, comma-separated
        #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
        nodes: Vec<usize>,
        /// Rows per commit of the source (`max_rows`)
        #[arg(long, default_value_t = 100_000)]
        max_rows: usize,
    },
    /// The benchmark's broker process: an embedded broker holding the pre-produced backlog
    #[command(hide = true)]
    Broker {
        #[arg(long)]
        messages: usize,
        #[arg(long)]
        partitions: i32,
        #[arg(long)]
        compression: String,
    },
}

pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    match args.what {
        BenchWhat::Ingest {
            messages,
            latency_seconds,
            dir,
            compression,
            properties,
            max_rows,
        } => {
            ingest::run(
                messages,
                latency_seconds,
                dir,
                &compression,
                &properties,
                max_rows,
            )
            .await?;
        }
        BenchWhat::Models {
            models,
            runs,
            rows,
            new_rows,
            shape: shapes,
            deletion_vectors,
        } => {
            models::planning(models, runs)?;
            if rows > 0 {
                for shape in shapes.shapes() {
                    models::incremental(rows, new_rows, shape, deletion_vectors).await?;
                }
            }
        }
        BenchWhat::Admin {
            models,
            partitions,
            calls,
        } => {
            return admin::run(models, partitions, calls).await;
        }
        BenchWhat::Demo { rate, seconds } => {
            return demo::run(rate, seconds).await;
        }
        BenchWhat::Connect { cycles, addr } => {
            return connect::run(cycles, addr).await;
        }
        BenchWhat::Procedures { calls, rows } => {
            procedures::run(calls, rows).await?;
        }
        BenchWhat::Authz {
            runs,
            rows,
            lineitem_rows,
        } => {
            authz::run(runs, rows, lineitem_rows).await?;
        }
        BenchWhat::Nodes {
            tansu,
            tidepool,
            messages,
            partitions,
            nodes,
            max_rows,
        } => {
            let tidepool = match tidepool {
                Some(t) => t,
                None => std::env::current_exe()?.with_file_name("tidepool"),
            };
            nodes::run(nodes::NodesBench {
                tansu,
                tidepool,
                messages,
                partitions,
                nodes,
                max_rows,
            })
            .await?;
        }
        BenchWhat::Broker {
            messages,
            partitions,
            compression,
        } => ingest::broker_process(messages, partitions, &compression).await?,
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    tidepool::cli::allocator::return_freed_memory();
    let args = BenchArgs::parse();
    tidepool::cli::init_tracing(0);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .thread_stack_size(tidepool::engine::complexity::THREAD_STACK_BYTES)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(args));
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
