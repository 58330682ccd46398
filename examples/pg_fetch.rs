//! Benchmark client: streams a query's rows over the Postgres protocol and reports rows/s.
//!
//! `cargo run --release --example pg_fetch -- "<conn string>" "<query>" [--text]`
//! Extended protocol with binary results by default; `--text` uses a simple text query.
//! Rows are counted as they arrive; nothing is collected.

use std::time::Instant;

use futures::{StreamExt, pin_mut};
use tokio_postgres::{NoTls, SimpleQueryMessage};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let conn = args
        .get(1)
        .ok_or("usage: pg_fetch <conn> <query> [--text]")?;
    let query = args
        .get(2)
        .ok_or("usage: pg_fetch <conn> <query> [--text]")?;
    let text = args.iter().any(|a| a == "--text");
    let (client, connection) = tokio_postgres::connect(conn, NoTls).await?;
    tokio::spawn(connection);
    let start = Instant::now();
    let mut rows: u64 = 0;
    if text {
        let stream = client.simple_query_raw(query.as_str()).await?;
        pin_mut!(stream);
        while let Some(m) = stream.next().await {
            if let SimpleQueryMessage::Row(_) = m? {
                rows += 1;
            }
        }
    } else {
        let stmt = client.prepare(query).await?;
        let stream = client.query_raw(&stmt, std::iter::empty::<i32>()).await?;
        pin_mut!(stream);
        while let Some(r) = stream.next().await {
            r?;
            rows += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{} rows in {:.2} s: {:.0} rows/s ({})",
        rows,
        secs,
        rows as f64 / secs,
        if text {
            "simple, text"
        } else {
            "extended, binary"
        }
    );
    Ok(())
}
