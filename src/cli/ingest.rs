//! `tidepool ingest`: consume the declared sources into bronze without serving. With
//! `--until-caught-up` it reads every partition to the end it had at start, commits and
//! exits (batch jobs, CI); otherwise it runs until SIGINT/SIGTERM.

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::config::Overrides;
use crate::ingest::{Assignment, Ingest};
use crate::lake::Lake;

#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// Only these sources (repeatable); default all
    #[arg(long)]
    pub source: Vec<String>,
    /// Stop once every partition is consumed up to where it ended at start
    #[arg(long)]
    pub until_caught_up: bool,
}

pub async fn run(overrides: &Overrides, args: IngestArgs) -> anyhow::Result<ExitCode> {
    let settings = super::settings(overrides)?;
    if settings.sources.is_empty() {
        anyhow::bail!("no [[sources]] in the configuration: nothing to ingest");
    }
    let lake = Lake::open(&settings.lake)?;
    let ingest = Ingest::new(&settings.ingest(), lake)?;
    if ingest.embedded() {
        tracing::info!(
            bootstrap = ingest.brokers(),
            "embedded broker (no kafka.brokers configured)"
        );
    }
    let started = Instant::now();
    let token = CancellationToken::new();
    let signal = token.clone();
    tokio::spawn(async move {
        super::serve::wait_for_signal().await;
        tracing::info!("stopping: committing the batch in flight");
        signal.cancel();
    });
    // Batch runs read every partition without joining the group; a long-running
    // ingester balances partitions with its group like `serve`.
    let assignment = if args.until_caught_up {
        Assignment::All
    } else {
        Assignment::Group
    };
    let runs = ingest
        .start(&args.source, assignment, args.until_caught_up, token)
        .await?;
    let mut failed = false;
    for run in runs {
        let name = run.name().to_string();
        if let Err(e) = run.wait().await {
            tracing::error!(source = %name, error = %e, "ingestion failed");
            failed = true;
        }
    }
    for s in ingest.status().sources() {
        if !args.source.is_empty() && !args.source.contains(&s.name) {
            continue;
        }
        eprintln!(
            "{}: {} messages, {} dead letters, {} commits in {:.1} s",
            s.name,
            s.messages.load(Ordering::Relaxed),
            s.dead_letters.load(Ordering::Relaxed),
            s.commits.load(Ordering::Relaxed),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
