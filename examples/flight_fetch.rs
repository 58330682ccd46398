//! Benchmark client: streams a query's result over Arrow Flight SQL and reports rows/s and
//! Arrow IPC bytes/s as they arrive (nothing is collected).
//!
//! `cargo run --release --example flight_fetch -- grpc://127.0.0.1:50051 "<query>" [runs]`
//! Bytes are the Arrow IPC message bodies received (the columnar buffers themselves).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use arrow_flight::decode::FlightRecordBatchStream;
use futures::{StreamExt, TryStreamExt};
use tidepool::protocol::flight::client::{ConnectOptions, connect};

/// mimalloc (a Rust client's choice): it saves the page faults of one fresh receive buffer
/// per batch that glibc's allocator takes (client CPU 0.73 s -> 0.58 s per lineitem fetch).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: flight_fetch <grpc://host:port> <query> [runs]";
    let url = args.get(1).ok_or(usage)?;
    let query = args.get(2).ok_or(usage)?;
    let runs: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(1);
    let mut client = connect(&ConnectOptions {
        url: url.clone(),
        user: std::env::var("TIDEPOOL_USER").ok(),
        password: std::env::var("TIDEPOOL_PASSWORD").ok(),
        ca: None,
    })
    .await?;
    for _ in 0..runs {
        let start = Instant::now();
        let info = client.execute(query.clone(), None).await?;
        let rows = Arc::new(AtomicU64::new(0));
        let bytes = Arc::new(AtomicU64::new(0));
        let batches = Arc::new(AtomicU64::new(0));
        // Every endpoint at once, as ADBC does: a query whose partitions stream apart has
        // one endpoint per partition.
        let mut readers = tokio::task::JoinSet::new();
        for endpoint in info.endpoint {
            let Some(ticket) = endpoint.ticket else {
                continue;
            };
            let mut inner = client.inner_mut().clone();
            let (rows, bytes, batches) = (rows.clone(), bytes.clone(), batches.clone());
            readers.spawn(async move {
                let data = inner.do_get(ticket).await?.into_inner();
                let counter = bytes.clone();
                let data = data.inspect_ok(move |d| {
                    counter.fetch_add(d.data_body.len() as u64, Ordering::Relaxed);
                });
                let mut stream = FlightRecordBatchStream::new_from_flight_data(
                    data.map_err(|s| arrow_flight::error::FlightError::Tonic(Box::new(s))),
                );
                while let Some(batch) = stream.next().await {
                    rows.fetch_add(batch?.num_rows() as u64, Ordering::Relaxed);
                    batches.fetch_add(1, Ordering::Relaxed);
                }
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            });
        }
        let endpoints = readers.len();
        while let Some(r) = readers.join_next().await {
            r?.map_err(|e| e.to_string())?;
        }
        let (rows, batches) = (
            rows.load(Ordering::Relaxed),
            batches.load(Ordering::Relaxed),
        );
        let secs = start.elapsed().as_secs_f64();
        let bytes = bytes.load(Ordering::Relaxed);
        println!(
            "{rows} rows in {secs:.2} s: {:.0} rows/s, {:.0} MB/s of Arrow data ({:.0} MB, {batches} batches, {endpoints} endpoints; flight sql, rust client)",
            rows as f64 / secs,
            bytes as f64 / secs / 1e6,
            bytes as f64 / 1e6,
        );
    }
    Ok(())
}
