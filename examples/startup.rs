//! Benchmark: time from spawning `tidepool serve` to a completed Postgres startup
//! (connection accepted, authenticated, `SELECT 1` answered). Runs it several times.
//!
//! `cargo run --release --example startup -- <tidepool binary> <lake folder> [runs]`

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio_postgres::NoTls;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let bin = args.get(1).ok_or("usage: startup <binary> <lake> [runs]")?;
    let lake = args.get(2).ok_or("usage: startup <binary> <lake> [runs]")?;
    let runs: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(5);
    let port = 54_000 + (std::process::id() % 1000) as u16;
    let conn = format!("host=127.0.0.1 port={port} user=tidepool dbname=lake connect_timeout=1");
    let mut times = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        let mut child = Command::new(bin)
            .args([
                "--lake",
                lake,
                "serve",
                "--pg-listen",
                &format!("127.0.0.1:{port}"),
                "--http-listen",
                "127.0.0.1:0",
                "--flight-listen",
                "127.0.0.1:0",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let ready = loop {
            if let Ok((client, connection)) = tokio_postgres::connect(&conn, NoTls).await {
                tokio::spawn(connection);
                if client.simple_query("SELECT 1").await.is_ok() {
                    break start.elapsed();
                }
            }
            if start.elapsed() > Duration::from_secs(30) {
                child.kill()?;
                return Err("server did not start within 30 s".into());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        times.push(ready.as_secs_f64() * 1000.0);
        child.kill()?;
        child.wait()?;
    }
    times.sort_by(|a, b| a.total_cmp(b));
    println!(
        "start to first answered query: median {:.1} ms over {runs} runs (min {:.1}, max {:.1})",
        times[runs / 2],
        times[0],
        times[runs - 1]
    );
    Ok(())
}
