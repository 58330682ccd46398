//! `tidepool generate` (shop events to any Kafka or a tidepool's HTTP endpoint) and
//! `tidepool demo` (the whole product at once: embedded broker, generator, ingestion,
//! scheduled model builds, procedures and every server).

use std::process::ExitCode;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::config::Overrides;
use crate::generate::{self, Mix, Options, Target};

#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// Events per second
    #[arg(long, default_value_t = 2000)]
    pub rate: u64,
    /// How long to run (0: until Ctrl-C)
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Seed of the simulation: the same seed and --start give the same events
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Event time of the first event, RFC 3339 [default: now]
    #[arg(long)]
    pub start: Option<DateTime<Utc>>,
    /// First order, review, session and click id (to continue an earlier run's ids)
    #[arg(long, default_value_t = 1)]
    pub first_id: u64,
    /// Post to a tidepool's HTTP ingest endpoint instead of Kafka (--brokers, or
    /// [kafka] brokers in tidepool.toml), e.g. http://127.0.0.1:8080
    #[arg(long)]
    pub http: Option<String>,
    /// User for the HTTP endpoint (password from TIDEPOOL_PASSWORD)
    #[arg(long, requires = "http")]
    pub user: Option<String>,
    /// A librdkafka producer property, key=value (repeatable)
    #[arg(long = "producer-property", value_name = "KEY=VALUE")]
    pub producer_properties: Vec<String>,
    /// Share of events sent late (0..1)
    #[arg(long, default_value_t = 0.02)]
    pub late: f64,
    /// Share of events sent twice (0..1)
    #[arg(long, default_value_t = 0.01)]
    pub duplicates: f64,
    /// Share of malformed events (0..1)
    #[arg(long, default_value_t = 0.005)]
    pub malformed: f64,
}

impl GenerateArgs {
    fn options(&self, target: Target) -> anyhow::Result<Options> {
        for (name, v) in [
            ("--late", self.late),
            ("--duplicates", self.duplicates),
            ("--malformed", self.malformed),
        ] {
            anyhow::ensure!((0.0..=0.5).contains(&v), "{name} must be between 0 and 0.5");
        }
        anyhow::ensure!(self.rate > 0, "--rate must be at least 1");
        Ok(Options {
            rate: self.rate,
            events: (self.seconds > 0).then(|| self.rate * self.seconds),
            seed: self.seed,
            start: self.start.unwrap_or_else(Utc::now),
            first_id: self.first_id.max(1),
            mix: Mix {
                late: self.late,
                duplicate: self.duplicates,
                malformed: self.malformed,
            },
            target,
        })
    }
}

fn properties(raw: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    raw.iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| anyhow::anyhow!("--producer-property {p:?}: expected key=value"))
        })
        .collect()
}

/// Cancels `token` on Ctrl-C or SIGTERM.
fn cancel_on_signal(token: &CancellationToken) {
    let token = token.clone();
    tokio::spawn(async move {
        super::serve::wait_for_signal().await;
        tracing::info!("shutdown requested");
        token.cancel();
    });
}

pub async fn generate(overrides: &Overrides, args: GenerateArgs) -> anyhow::Result<ExitCode> {
    let target = if let Some(url) = &args.http {
        let credentials = args.user.clone().map(|u| {
            let password = std::env::var("TIDEPOOL_PASSWORD").unwrap_or_default();
            (u, password)
        });
        Target::Http {
            url: url.clone(),
            credentials,
        }
    } else {
        let brokers = match &overrides.brokers {
            Some(b) => Some(b.clone()),
            None => super::settings(overrides).ok().and_then(|s| s.brokers),
        };
        let brokers = brokers.ok_or_else(|| {
            anyhow::anyhow!(
                "no Kafka to produce to: give --brokers host:9092 or --http http://127.0.0.1:8080 \
                 (or run `tidepool demo`, which generates into its embedded broker)"
            )
        })?;
        Target::Kafka {
            brokers,
            properties: properties(&args.producer_properties)?,
        }
    };
    let options = args.options(target)?;
    tracing::info!(rate = options.rate, events = ?options.events, seed = options.seed, "generating shop events");
    let token = CancellationToken::new();
    cancel_on_signal(&token);
    let stats = generate::run(options, token).await?;
    eprintln!("{stats}");
    Ok(if stats.failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Events per second the built-in generator sends
    #[arg(long, default_value_t = 500)]
    pub rate: u64,
    /// Stop after this many seconds (0: until Ctrl-C)
    #[arg(long, default_value_t = 0)]
    pub seconds: u64,
    /// Seed of the generator
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

pub async fn demo(overrides: &Overrides, args: DemoArgs) -> anyhow::Result<ExitCode> {
    let settings = super::settings(overrides)?;
    anyhow::ensure!(
        settings.sources.iter().any(|s| s.name == "orders"),
        "the demo needs the shop project's sources in tidepool.toml (run it from the repository root)"
    );
    let started = std::time::Instant::now();
    let app = App::build(&settings).await?;
    super::serve::announce(&app, &settings, started);
    // Ids continue after what an earlier run left in the lake.
    let first_id = max_order_id(app.engine()).await + 1;
    let token = CancellationToken::new();
    cancel_on_signal(&token);
    if args.seconds > 0 {
        let t = token.clone();
        let seconds = args.seconds;
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_secs(seconds)).await;
            t.cancel();
        });
    }
    let options = Options {
        rate: args.rate.max(1),
        events: None,
        seed: args.seed.wrapping_add(first_id),
        start: Utc::now(),
        first_id,
        mix: Mix::default(),
        target: Target::Kafka {
            brokers: app.ingest().brokers().to_string(),
            properties: Vec::new(),
        },
    };
    eprintln!(
        "  demo:     {} shop events/s into {} -> bronze -> silver -> gold (rebuilt by [schedule]); try\n            \
         select * from gold.mart_daily_revenue;  call gold.sales_by_category('2020-01-01', '2100-01-01');\n",
        options.rate,
        app.ingest().brokers()
    );
    if let Some(addr) = app.pg_addr() {
        eprintln!("  power bi: Get Data -> PostgreSQL database, server {addr}, database lake\n");
    }
    let generator_token = token.child_token();
    let generator = tokio::spawn(generate::run(options, generator_token));
    app.run(token).await;
    match generator.await {
        Ok(Ok(stats)) => eprintln!("generator: {stats}"),
        Ok(Err(e)) => tracing::error!(error = %e, "generator stopped"),
        Err(e) => tracing::error!(error = %e, "generator task failed"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The largest order id in `bronze.orders`, 0 when there is none yet.
async fn max_order_id(engine: &std::sync::Arc<crate::engine::Engine>) -> u64 {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Int64Type;
    let sql = "SELECT CAST(max(order_id) AS BIGINT) FROM bronze.orders";
    let Ok(batches) = engine.query(sql).await else {
        return 0;
    };
    batches
        .first()
        .filter(|b| b.num_rows() > 0 && b.num_columns() > 0)
        .and_then(|b| {
            b.column(0)
                .as_primitive_opt::<Int64Type>()
                .map(|a| a.value(0))
        })
        .map_or(0, |v| v.max(0) as u64)
}
