//! Benchmark client: new connection (with SCRAM when a password is given) + `SELECT 1`,
//! repeated; prints median and p95 latency.
//!
//! `cargo run --release --example pg_connect -- "<conn string>" [count]`

use std::time::Instant;

use tokio_postgres::NoTls;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let conn = args.get(1).ok_or("usage: pg_connect <conn> [count]")?;
    let n: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(200);
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let (client, connection) = tokio_postgres::connect(conn, NoTls).await?;
        let task = tokio::spawn(connection);
        client.simple_query("SELECT 1").await?;
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        drop(client);
        let _ = task.await;
    }
    times.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{n} connect+SELECT 1: median {:.2} ms, p95 {:.2} ms, min {:.2} ms",
        times[n / 2],
        times[n * 95 / 100],
        times[0]
    );
    Ok(())
}
