//! `tidepool serve`: run the servers until SIGINT or SIGTERM.

use std::process::ExitCode;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::config::{Overrides, Settings};

pub async fn run(overrides: &Overrides) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let settings = super::settings(overrides)?;
    let app = App::build(&settings).await?;
    announce(&app, &settings, started);
    let token = CancellationToken::new();
    let signal_token = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        signal_token.cancel();
    });
    app.run(token).await;
    Ok(ExitCode::SUCCESS)
}

/// Logs where everything listens and prints how to connect.
pub(crate) fn announce(app: &App, settings: &Settings, started: Instant) {
    let r = settings.roles;
    let roles: Vec<&str> = [
        ("ingest", r.ingest),
        ("serve", r.serve),
        ("schedule", r.schedule),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect();
    tracing::info!(node = %settings.node, roles = %roles.join(","), "node");
    if let Some(addr) = app.pg_addr() {
        let user = settings
            .users
            .first()
            .map(|u| u.name.as_str())
            .unwrap_or("tidepool");
        let ssl = if app.tls_enabled() {
            " sslmode=require"
        } else {
            ""
        };
        tracing::info!(
            lake = %settings.lake.root,
            postgres = %addr,
            tls = app.tls_enabled(),
            auth = if app.requires_password() { "scram-sha-256" } else { "trust (loopback only)" },
            startup_ms = started.elapsed().as_millis() as u64,
            "tidepool is ready"
        );
        eprintln!(
            "\n  connect:  psql \"host={} port={} user={user} dbname=lake{ssl}\"\n",
            addr.ip(),
            addr.port()
        );
    }
    if let Some(addr) = app.flight_addr() {
        let scheme = if app.tls_enabled() {
            "grpc+tls"
        } else {
            "grpc"
        };
        tracing::info!(flight = %format!("{scheme}://{addr}"), "Arrow Flight SQL (ADBC, JDBC, pyarrow)");
        eprintln!("  flight:   adbc_driver_flightsql.dbapi.connect(\"{scheme}://{addr}\")\n");
    }
    if let Some(addr) = app.admin_addr() {
        let scheme = if app.tls_enabled() { "https" } else { "http" };
        tracing::info!(admin = %format!("{scheme}://{addr}"), "admin API (gRPC): tidepool status|run|pause|resume|replay|maintain|reload --server");
    }
    if let Some(addr) = app.http_addr() {
        tracing::info!(http = %addr, "health: /health, metrics: /metrics, ingest: POST /v1/ingest/<source>");
    }
    let ingest = app.ingest();
    if ingest.embedded() {
        tracing::info!(
            bootstrap = ingest.brokers(),
            "embedded Kafka broker (no kafka.brokers configured); produce to it with any Kafka client"
        );
    }
    for s in ingest.sources() {
        tracing::info!(source = %s.name, topics = ?s.topics, table = %format!("bronze.{}", s.name), "source");
    }
}

pub(crate) async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
