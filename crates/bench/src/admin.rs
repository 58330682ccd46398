//! `tidepool-bench admin`: latency of the admin API's read RPCs on a large project:
//! `ListModels` over a generated project of `--models` models and `IngestStatus` over one
//! source with `--partitions` partitions, against a server started here (embedded broker,
//! Flight port on loopback), `--calls` sequential calls each.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use tidepool::app::App;
use tidepool::config::{Config, Overrides};
use tidepool::protocol::admin::pb;
use tidepool::protocol::admin::pb::admin_client::AdminClient;

fn summary(name: &str, mut times: Vec<f64>) {
    times.sort_by(f64::total_cmp);
    let p = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    println!(
        "{name}: median {:.2} ms, p95 {:.2} ms, max {:.2} ms ({} calls; target < 20 ms)",
        p(0.5),
        p(0.95),
        times.last().copied().unwrap_or(f64::NAN),
        times.len()
    );
}

pub async fn run(models: usize, partitions: i32, calls: usize) -> anyhow::Result<ExitCode> {
    let tmp = tempfile::tempdir()?;
    crate::models::generate_project(tmp.path(), models)?;
    let config = tmp.path().join("tidepool.toml");
    std::fs::write(
        &config,
        format!(
            "[postgres]\nenabled = false\n[http]\nenabled = false\n[flight]\nlisten = \"127.0.0.1:0\"\n\
             [kafka]\nembedded_partitions = {partitions}\n\
             [[sources]]\nname = \"orders\"\ntopics = [\"shop.orders\"]\n"
        ),
    )?;
    let overrides = Overrides {
        lake: Some(tmp.path().join("lake").display().to_string()),
        ..Default::default()
    };
    let settings = Config::load(Some(&config))?.resolve(&overrides)?;
    let app = App::build(&settings).await?;
    let addr = app
        .flight_addr()
        .ok_or_else(|| anyhow::anyhow!("flight listener"))?;
    let token = CancellationToken::new();
    let server = tokio::spawn(app.run(token.clone()));
    let mut admin = AdminClient::connect(format!("http://{addr}")).await?;
    println!("tidepool-bench admin: {models} models, 1 source with {partitions} partitions");

    let listed = admin
        .list_models(pb::ListModelsRequest::default())
        .await?
        .into_inner()
        .models
        .len();
    anyhow::ensure!(listed == models, "ListModels gave {listed} of {models}");
    let mut times = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        admin.list_models(pb::ListModelsRequest::default()).await?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    summary(&format!("ListModels ({models} models)"), times);

    // Wait for the consumer's assignment: one row per partition.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = admin
            .ingest_status(pb::IngestStatusRequest::default())
            .await?
            .into_inner()
            .partitions
            .len();
        if n as i32 >= partitions {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{n} of {partitions} partitions assigned"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut times = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        admin
            .ingest_status(pb::IngestStatusRequest::default())
            .await?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    summary(&format!("IngestStatus ({partitions} partitions)"), times);
    token.cancel();
    let _ = server.await;
    Ok(ExitCode::SUCCESS)
}
