//! `tidepool-bench demo`: how soon the retail demo's gold marts are queryable, and how far
//! they trail the event generator while it runs.
//!
//! Runs what `tidepool demo` runs, in this process, from the project in the current
//! folder (the repository root) over a temporary lake: the embedded broker, the generator
//! at `--rate` for `--seconds`, ingestion, the `[schedule]` builds and the servers on free
//! ports. Every 250 ms it asks `gold.fact_orders` for its newest order update; the
//! generator stamps events with the wall clock it sends them at, so `now - max(updated_at)`
//! is how far the gold tables are behind the events being produced.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use chrono::Utc;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::TimestampMicrosecondType;
use tokio_util::sync::CancellationToken;

use tidepool::app::App;
use tidepool::config::Overrides;
use tidepool::engine::Engine;
use tidepool::generate::{self, Mix, Options, Target};

/// The newest `updated_at` in gold.fact_orders, if the table exists and has rows.
async fn newest_order(engine: &std::sync::Arc<Engine>) -> Option<chrono::DateTime<Utc>> {
    let batches = engine
        .query("SELECT max(updated_at) FROM gold.fact_orders")
        .await
        .ok()?;
    let col = batches.first()?.column(0).clone();
    let ts = col.as_primitive_opt::<TimestampMicrosecondType>()?;
    if ts.is_empty() || ts.is_null(0) {
        return None;
    }
    chrono::DateTime::from_timestamp_micros(ts.value(0))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub async fn run(rate: u64, seconds: u64) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let tmp = tempfile::tempdir()?;
    let overrides = Overrides {
        lake: Some(tmp.path().display().to_string()),
        pg_listen: Some("127.0.0.1:0".into()),
        http_listen: Some("127.0.0.1:0".into()),
        flight_listen: Some("127.0.0.1:0".into()),
        ..Default::default()
    };
    let settings = tidepool::cli::settings(&overrides)?;
    anyhow::ensure!(
        settings.sources.iter().any(|s| s.name == "orders") && settings.schedule.is_some(),
        "run from the repository root: the demo project's tidepool.toml (sources and [schedule]) is needed"
    );
    let app = App::build(&settings).await?;
    let engine = app.engine().clone();
    let brokers = app.ingest().brokers().to_string();
    let token = CancellationToken::new();
    let server = tokio::spawn(app.run(token.clone()));
    let options = Options {
        rate,
        events: Some(rate * seconds),
        seed: 42,
        start: Utc::now(),
        first_id: 1,
        mix: Mix::default(),
        target: Target::Kafka {
            brokers,
            properties: Vec::new(),
        },
    };
    let generator = tokio::spawn(generate::run(options, token.child_token()));
    let mut queryable: Option<Duration> = None;
    let mut lags: Vec<f64> = Vec::new();
    while !generator.is_finished() {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if let Some(newest) = newest_order(&engine).await {
            queryable.get_or_insert_with(|| started.elapsed());
            let lag = (Utc::now() - newest).num_milliseconds() as f64 / 1000.0;
            lags.push(lag);
        }
    }
    let stats = generator.await??;
    token.cancel();
    let _ = server.await;
    // The first samples include the wait for the first build; the steady state is after.
    let steady: Vec<f64> = {
        let skip = lags.len() / 4;
        let mut v = lags[skip..].to_vec();
        v.sort_by(f64::total_cmp);
        v
    };
    println!("generator: {stats}");
    match queryable {
        Some(q) => println!(
            "gold marts queryable {:.1} s after start (target < 60 s)",
            q.as_secs_f64()
        ),
        None => println!("gold marts never became queryable in {seconds} s"),
    }
    println!(
        "gold.fact_orders behind the generator at {rate} events/s, last 3/4 of the run ({} samples): median {:.1} s, p95 {:.1} s, max {:.1} s (target <= 15 s)",
        steady.len(),
        percentile(&steady, 0.5),
        percentile(&steady, 0.95),
        steady.last().copied().unwrap_or(f64::NAN),
    );
    Ok(ExitCode::SUCCESS)
}
