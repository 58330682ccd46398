//! `tidepool-bench connect`: what a Power BI refresh costs per connection. Each cycle
//! replays Npgsql 4.0 (bundled with Power BI Desktop) message by message: connect and
//! start up, load types (three statements pipelined, text results, CRLF), then the pooled
//! connection's `DISCARD ALL` pipelined with a small binary-result query, then Terminate.
//! Against a server started here on a temporary lake, or `--addr` of a running one (trust
//! authentication, as on loopback without `[[users]]`).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use tidepool::app::App;
use tidepool::config::{Config, Overrides};
use tidepool_testkit::frontend::{Frontend, Reply, split_results};

use tidepool_testkit::clients::npgsql;

const QUERY: &str = "select \"_\".\"order_id\", \"_\".\"customer\", \"_\".\"amount\", \"_\".\"ordered_at\" from \"gold\".\"fact_orders\" \"_\" limit 1000";

/// Runs `cycles` connect + type-load + DISCARD ALL + query cycles and prints percentiles.
pub async fn run(cycles: usize, addr: Option<SocketAddr>) -> anyhow::Result<ExitCode> {
    let tmp = tempfile::tempdir()?;
    let token = CancellationToken::new();
    let (addr, server) = match addr {
        Some(a) => (a, None),
        None => {
            let text = format!(
                "[postgres]\nlisten = \"127.0.0.1:0\"\n[http]\nenabled = false\n[flight]\nenabled = false\n[lake]\nroot = {:?}\n",
                tmp.path().display().to_string()
            );
            let settings = Config::parse(&text, std::path::Path::new("bench.toml"))?
                .resolve(&Overrides::default())?;
            let app = App::build(&settings).await?;
            let addr = app
                .pg_addr()
                .ok_or_else(|| anyhow::anyhow!("postgres is disabled"))?;
            let handle = tokio::spawn(app.run(token.clone()));
            let mut f = Frontend::connect(addr, npgsql::NPGSQL4_STARTUP).await?;
            f.query(
                "CREATE SCHEMA gold; CREATE TABLE gold.fact_orders AS SELECT value AS order_id, \
                 'c' || (value % 100)::text AS customer, (value % 1000)::decimal(12,2) AS amount, \
                 TIMESTAMPTZ '2026-01-01 00:00:00+00' + CAST(value || ' minutes' AS INTERVAL) AS ordered_at \
                 FROM generate_series(1, 10000)",
            );
            check(&f.round_trip(1).await?, "creating the sample table")?;
            f.terminate().await?;
            (addr, Some(handle))
        }
    };
    // One warm-up cycle: the first connection builds the cached catalog tables.
    cycle(addr).await?;
    let mut times = Vec::with_capacity(cycles);
    let mut type_load = Vec::with_capacity(cycles);
    for _ in 0..cycles {
        let (total, types) = cycle(addr).await?;
        times.push(total);
        type_load.push(types);
    }
    token.cancel();
    if let Some(h) = server {
        let _ = h.await;
    }
    times.sort();
    type_load.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let pct = |v: &[Duration], p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "npgsql 4.0 cycle (connect + type load + DISCARD ALL + query), {cycles} sequential: \
         median {:.2} ms, p95 {:.2} ms, max {:.2} ms; type loading alone median {:.2} ms",
        ms(pct(&times, 0.5)),
        ms(pct(&times, 0.95)),
        ms(pct(&times, 1.0)),
        ms(pct(&type_load, 0.5)),
    );
    Ok(ExitCode::SUCCESS)
}

/// One cycle; returns its total time and the type loading's.
async fn cycle(addr: SocketAddr) -> anyhow::Result<(Duration, Duration)> {
    let start = Instant::now();
    let mut f = Frontend::connect(addr, npgsql::NPGSQL4_STARTUP).await?;
    let types_start = Instant::now();
    for sql in [
        npgsql::NPGSQL4_TYPES,
        npgsql::NPGSQL4_COMPOSITES,
        npgsql::NPGSQL4_ENUMS,
    ] {
        f.extended(&npgsql::crlf(sql), &[], 0);
    }
    f.sync();
    let replies = f.round_trip(1).await?;
    let types = types_start.elapsed();
    check(&replies, "type loading")?;
    f.query("DISCARD ALL");
    f.extended(QUERY, &[], 1).sync();
    let replies = f.round_trip(2).await?;
    check(&replies, "DISCARD ALL + query")?;
    let rows = replies
        .iter()
        .filter(|r| matches!(r, Reply::DataRow(_)))
        .count();
    if rows != 1000 {
        anyhow::bail!("the query returned {rows} rows, not 1000");
    }
    f.terminate().await?;
    Ok((start.elapsed(), types))
}

fn check(replies: &[Reply], what: &str) -> anyhow::Result<()> {
    for r in split_results(replies) {
        if let Some((code, message)) = r.error {
            anyhow::bail!("{what}: {code} {message}");
        }
    }
    Ok(())
}
