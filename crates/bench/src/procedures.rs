//! `tidepool-bench procedures`: what a procedure call adds over running its body. A point
//! lookup on a gold table of N rows, run `--calls` times as the body's own `SELECT` and as
//! `CALL`, T-SQL `EXEC` and a table function, in one session of the engine (no network),
//! each result read to the end; medians and 95th percentiles.

use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use tidepool::engine::{Engine, EngineOptions, Output, QueryControl, Session};
use tidepool::lake::Lake;

/// Runs `sql`, reading every row; the rows read.
pub(super) async fn run_sql(session: &mut Session, sql: &str) -> anyhow::Result<usize> {
    let control = QueryControl::new(CancellationToken::new(), None);
    let mut rows = 0;
    for stmt in session.parse(sql)? {
        if let Output::Rows { mut stream, .. } = session.execute(stmt, None, &control).await? {
            while let Some(b) = stream.next().await {
                rows += b?.num_rows();
            }
        }
    }
    Ok(rows)
}

fn summary(times: &mut [Duration]) -> (f64, f64) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (
        ms(times[times.len() / 2]),
        ms(times[(times.len() * 95 / 100).min(times.len() - 1)]),
    )
}

pub async fn run(calls: usize, rows: usize) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let lake = Lake::open(&tidepool::config::LakeConfig {
        root: tmp.path().join("lake").display().to_string(),
        ..Default::default()
    })?;
    let engine = Engine::new(
        lake,
        EngineOptions::default(),
        tidepool::pgcompat::PgCompat::new(Default::default()),
    )?;
    let mut session = engine.session(tidepool::engine::authz::SERVER_USER);
    let t = Instant::now();
    run_sql(
        &mut session,
        &format!(
            "CREATE SCHEMA gold;
             CREATE TABLE gold.fact_orders AS
               SELECT value AS order_id, value % 50000 AS customer_id,
                      CAST(value % 997 AS DOUBLE) * 1.5 AS amount,
                      DATE '2010-01-01' + CAST(value % 4000 AS INT) AS order_date
               FROM generate_series(1, {rows});
             CREATE PROCEDURE gold.order_by_id(order_id BIGINT)
             AS SELECT * FROM gold.fact_orders WHERE order_id = :order_id;"
        ),
    )
    .await?;
    println!(
        "tidepool-bench procedures: point lookup on gold.fact_orders ({rows} rows, built in {:.2} s), {calls} calls each",
        t.elapsed().as_secs_f64()
    );
    let forms = [
        "body (SELECT ... WHERE order_id = k)",
        "CALL gold.order_by_id(k)",
        "EXEC gold.order_by_id @order_id = k",
        "SELECT * FROM gold.order_by_id(k)",
    ];
    let sql = |form: usize, k: usize| match form {
        0 => format!("SELECT * FROM gold.fact_orders WHERE order_id = {k}"),
        1 => format!("CALL gold.order_by_id({k})"),
        2 => format!("EXEC gold.order_by_id @order_id = {k}"),
        _ => format!("SELECT * FROM gold.order_by_id({k})"),
    };
    // Warm up: plans, caches, file metadata.
    for form in 0..forms.len() {
        for k in 0..20 {
            run_sql(&mut session, &sql(form, k + 1)).await?;
        }
    }
    // The forms take turns, so drift of the machine hits them alike.
    let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(calls); forms.len()];
    for c in 0..calls {
        let k = 1 + (c * 7919) % rows.max(1);
        for (i, name) in forms.iter().enumerate() {
            let t = Instant::now();
            let n = run_sql(&mut session, &sql(i, k)).await?;
            times[i].push(t.elapsed());
            if n != 1 {
                anyhow::bail!("{name} returned {n} rows for order {k}");
            }
        }
    }
    let mut base = 0.0;
    for (i, name) in forms.iter().enumerate() {
        let (median, p95) = summary(&mut times[i]);
        if i == 0 {
            base = median;
            println!("  {name:<38} median {median:.3} ms, p95 {p95:.3} ms");
        } else {
            println!(
                "  {name:<38} median {median:.3} ms, p95 {p95:.3} ms ({:+.3} ms over the body)",
                median - base
            );
        }
    }
    Ok(())
}
