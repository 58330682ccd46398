//! `tidepool-bench ingest`: the ingestion benchmark. Pre-produces order events (about 300
//! bytes, nested items and statuses) to the embedded broker and measures, in one run:
//! end-to-end ingestion into committed Delta, the decode+write path alone (no broker),
//! memory, and the produce-to-queryable latency at a steady 1,000 msg/s.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;

use tidepool::config::{Config, Overrides, Settings};
use tidepool::ingest::batch::RawBatch;
use tidepool::ingest::broker::EmbeddedBroker;
use tidepool::ingest::decode::JsonDecoder;
use tidepool::ingest::sink::Sink;
use tidepool::ingest::{Assignment, Ingest};
use tidepool::lake::Lake;

/// `tidepool-bench ingest`.
pub async fn run(
    messages: usize,
    latency_seconds: u64,
    dir: Option<std::path::PathBuf>,
    compression: &str,
    properties: &[String],
    max_rows: usize,
) -> anyhow::Result<()> {
    MAX_ROWS.set(max_rows).ok();
    let tmp = tempfile::tempdir()?;
    let dir = dir.unwrap_or_else(|| tmp.path().to_path_buf());
    let props = properties
        .iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
            None => Err(anyhow::anyhow!(
                "--consumer-property wants key=value, not {p:?}"
            )),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    PROPS.set(props).ok();
    bench_ingest(messages, latency_seconds, &dir, compression).await
}

/// One order event of about 300 bytes.
pub fn order_event(i: u64) -> String {
    let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let items = 1 + (h % 3);
    let categories = ["bakery", "dairy", "produce", "frozen", "drinks"];
    let mut order_items = String::new();
    for k in 0..items {
        let p = (h >> (8 * k)) % 500;
        if k > 0 {
            order_items.push(',');
        }
        order_items.push_str(&format!(
            r#"{{"product_id":{p},"category":"{}","price":{}.{:02},"quantity":{}}}"#,
            categories[(p % 5) as usize],
            1 + p % 20,
            p % 100,
            1 + k
        ));
    }
    format!(
        r#"{{"order_id":{i},"customer_id":{},"store_id":{},"created_at":"2026-11-23T10:{:02}:{:02}.000Z","status":"OPEN","order_items":[{order_items}],"statuses":[{{"status":"OPEN","at":"2026-11-23T10:00:00Z"}}],"payment":{{"method":"card","amount":{}.50}}}}"#,
        h % 100_000,
        h % 40,
        (i / 60) % 60,
        i % 60,
        h % 90
    )
}

/// `--max-rows`, for every source the benchmark starts.
static MAX_ROWS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
/// `--consumer-property` values, for every source the benchmark starts.
static PROPS: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();

fn rss_mib() -> f64 {
    rss_of("/proc/self/status")
}

pub(crate) fn rss_of(status: &str) -> f64 {
    std::fs::read_to_string(status)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn settings(
    lake: &std::path::Path,
    brokers: &str,
    topic: &str,
    latency_ms: u64,
) -> anyhow::Result<Settings> {
    let text = format!(
        "[postgres]\nenabled = false\n[http]\nenabled = false\n[lake]\nroot = {:?}\n\
         [kafka]\nbrokers = \"{brokers}\"\n[maintenance]\ninterval_secs = 0\n\
         [[sources]]\nname = \"orders\"\ntopics = [\"{topic}\"]\nmax_latency_ms = {latency_ms}\nmax_rows = {}\n\
         [sources.properties]\n{}",
        lake.display().to_string(),
        MAX_ROWS.get().copied().unwrap_or(100_000),
        PROPS
            .get()
            .map(|p| p
                .iter()
                .map(|(k, v)| format!("{k:?} = {v:?}\n"))
                .collect::<String>())
            .unwrap_or_default()
    );
    Ok(Config::parse(&text, std::path::Path::new("bench.toml"))?.resolve(&Overrides::default())?)
}

/// Starts ingesting `topic` into a lake at `lake` (max latency 1 s).
async fn start_source(
    lake: &std::path::Path,
    brokers: &str,
    topic: &str,
) -> anyhow::Result<(
    Ingest,
    Vec<tidepool::ingest::SourceRun>,
    Arc<tidepool::ingest::SourceStatus>,
    CancellationToken,
)> {
    let settings = settings(lake, brokers, topic, 1000)?;
    let ingest = Ingest::new(&settings.ingest(), Lake::open(&settings.lake)?)?;
    let cancel = CancellationToken::new();
    let runs = ingest
        .start(&[], Assignment::All, false, cancel.clone())
        .await?;
    let status = ingest
        .status()
        .get("orders")
        .ok_or_else(|| anyhow::anyhow!("no status"))?;
    Ok((ingest, runs, status, cancel))
}

pub(crate) fn producer_config(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("message.timeout.ms", "60000");
    c
}

async fn bench_ingest(
    messages: usize,
    latency_seconds: u64,
    dir: &std::path::Path,
    compression: &str,
) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("tidepool-bench ingest: {messages} order events, {cores} cores");
    let avg = (0..1000u64).map(|i| order_event(i).len()).sum::<usize>() as f64 / 1000.0;
    println!("  average event size: {avg:.0} bytes");

    // The backlog waits in a broker process of its own, so this process's memory is
    // ingestion's alone. The embedded broker keeps at most 5 MiB or 100k messages per
    // partition: spread the backlog so all of it is still there when ingestion starts.
    let partitions = (messages * 400 / (4 << 20)).max(3) as i32;
    let broker = BrokerChild::spawn(messages, partitions, compression).await?;
    println!(
        "  pre-produced to an embedded broker ({partitions} partitions, compression {compression}) in {:.2} s; broker process RSS {:.0} MiB",
        broker.produce_secs,
        broker.rss_mib()
    );

    // 1. End to end into committed Delta, first: this process has allocated nothing yet.
    let rss_before = rss_mib();
    let started = Instant::now();
    let (ingest, runs, status, cancel) =
        start_source(&dir.join("end_to_end"), &broker.bootstrap, "bench.orders").await?;
    let (mut peak, mut broker_peak) = (rss_before, 0f64);
    let mut samples = 0u64;
    let done_at = loop {
        peak = peak.max(rss_mib());
        if samples.is_multiple_of(10) {
            broker_peak = broker_peak.max(broker.rss_mib());
        }
        samples += 1;
        let done =
            status.messages.load(Ordering::Relaxed) + status.dead_letters.load(Ordering::Relaxed);
        if done as usize >= messages {
            break started.elapsed();
        }
        if started.elapsed() > Duration::from_secs(600) {
            anyhow::bail!("ingestion did not finish in 600 s ({done} of {messages})");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    cancel.cancel();
    for r in runs {
        r.wait().await?;
    }
    let secs = done_at.as_secs_f64();
    println!(
        "  end to end (into committed Delta, max_rows {}): {:.0} msg/s ({secs:.2} s, {} commits)",
        MAX_ROWS.get().copied().unwrap_or(100_000),
        messages as f64 / secs,
        status.commits.load(Ordering::Relaxed)
    );
    println!(
        "  RSS of the ingesting process: {rss_before:.0} MiB before, peak {peak:.0} MiB while ingesting the backlog (broker process: peak {broker_peak:.0} MiB)"
    );
    drop(ingest);

    // 2. The floor: what reading the backlog costs with no decoding or writing.
    let floor_settings = settings(&dir.join("floor"), &broker.bootstrap, "bench.orders", 1000)?;
    let source = floor_settings.sources[0].clone();
    let bootstrap = broker.bootstrap.clone();
    let secs = tokio::task::spawn_blocking(move || {
        consume_only(&source, &bootstrap, partitions, messages)
    })
    .await??;
    println!(
        "  consume only (librdkafka poll + copy into a batch, no decode/write): {:.0} msg/s ({secs:.2} s)",
        messages as f64 / secs
    );

    drop(broker);

    // 3. Decode + write alone: batches as the consumer builds them, no broker.
    decode_write(messages, dir).await?;

    // 4. Latency at a steady 1,000 msg/s with max latency 1 s.
    if latency_seconds > 0 {
        latency(dir, latency_seconds).await?;
    }
    Ok(())
}

async fn decode_write(messages: usize, dir: &std::path::Path) -> anyhow::Result<()> {
    let events: Vec<String> = (0..messages as u64).map(order_event).collect();
    let lake = Lake::open(&tidepool::config::LakeConfig {
        root: dir.join("decode_write").display().to_string(),
        ..Default::default()
    })?;
    let mut sink = Sink::open(lake.clone(), "bronze", "orders", 10).await?;
    let mut decoder = JsonDecoder::new(
        Arc::new(arrow::datatypes::Schema::empty()),
        false,
        true,
        1 << 20,
    );
    let started = Instant::now();
    let mut offset = 0i64;
    let (mut decoding, mut committing) = (Duration::ZERO, Duration::ZERO);
    for chunk in events.chunks(100_000) {
        let mut batch = RawBatch::default();
        for e in chunk {
            batch.push(
                "orders",
                0,
                offset,
                Some(0),
                None,
                Some(e.as_bytes()),
                vec![],
            );
            offset += 1;
        }
        batch.freeze();
        let idx: Vec<usize> = (0..batch.len()).collect();
        let now = chrono::Utc::now().timestamp_micros();
        let t = Instant::now();
        let decoded = decoder.decode(&batch, &idx, now);
        decoding += t.elapsed();
        let t = Instant::now();
        let mut offsets = std::collections::BTreeMap::new();
        offsets.insert("bench:orders:0".to_string(), offset - 1);
        sink.commit(
            &decoder.table_schema(),
            decoded.rows,
            &offsets,
            serde_json::Map::new(),
        )
        .await?;
        committing += t.elapsed();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "  decode+write (no broker, 1 partition, 100k-row commits): {:.0} msg/s ({secs:.2} s: decode {:.2} s, parquet+commit {:.2} s)",
        messages as f64 / secs,
        decoding.as_secs_f64(),
        committing.as_secs_f64()
    );
    Ok(())
}

/// Reads every message of `bench.orders` as the ingest consumer does, and nothing more.
fn consume_only(
    source: &tidepool::config::Source,
    brokers: &str,
    partitions: i32,
    messages: usize,
) -> anyhow::Result<f64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer =
        tidepool::ingest::consumer::client_config(source, brokers).create()?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset("bench.orders", p, rdkafka::Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let started = Instant::now();
    let mut batch = RawBatch::default();
    let mut seen = 0usize;
    while seen < messages {
        if started.elapsed() > Duration::from_secs(300) {
            anyhow::bail!("consumed only {seen} of {messages} in 300 s");
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                use rdkafka::Message;
                batch.push(
                    m.topic(),
                    m.partition(),
                    m.offset(),
                    m.timestamp().to_millis(),
                    m.key(),
                    m.payload(),
                    vec![],
                );
                seen += 1;
                if batch.len() == 100_000 {
                    batch = RawBatch::default();
                }
            }
            Some(Err(e)) => anyhow::bail!("consume failed: {e}"),
            None => {}
        }
    }
    Ok(started.elapsed().as_secs_f64())
}

/// The broker process of the benchmark.
struct BrokerChild {
    child: tokio::process::Child,
    bootstrap: String,
    produce_secs: f64,
}

impl BrokerChild {
    async fn spawn(messages: usize, partitions: i32, compression: &str) -> anyhow::Result<Self> {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .args(["broker", "--messages", &messages.to_string()])
            .args(["--partitions", &partitions.to_string()])
            .args(["--compression", compression])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let out = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let mut lines = tokio::io::BufReader::new(out).lines();
        while let Some(line) = lines.next_line().await? {
            let mut words = line.split_whitespace();
            if words.next() == Some("ready") {
                let bootstrap = words.next().unwrap_or_default().to_string();
                let produce_secs = words.next().and_then(|w| w.parse().ok()).unwrap_or(0.0);
                return Ok(BrokerChild {
                    child,
                    bootstrap,
                    produce_secs,
                });
            }
        }
        anyhow::bail!("the benchmark broker process stopped before it was ready")
    }

    fn rss_mib(&self) -> f64 {
        self.child
            .id()
            .map_or(0.0, |pid| rss_of(&format!("/proc/{pid}/status")))
    }
}

/// Starts an embedded broker, pre-produces the backlog, says `ready <bootstrap> <secs>` on
/// stdout and runs until stdin closes (the benchmark ended or died).
pub async fn broker_process(
    messages: usize,
    partitions: i32,
    compression: &str,
) -> anyhow::Result<()> {
    let broker = EmbeddedBroker::start(&["bench.orders".to_string()], partitions)?;
    let p: FutureProducer = producer_config(broker.bootstrap())
        .set("compression.type", compression)
        .create()?;
    let started = Instant::now();
    let mut sent = 0usize;
    while sent < messages {
        let n = (messages - sent).min(200_000);
        let chunk: Vec<(String, String)> = (sent..sent + n)
            .map(|i| (i.to_string(), order_event(i as u64)))
            .collect();
        let mut pending = Vec::with_capacity(n);
        for (key, e) in &chunk {
            pending.push(
                p.send(
                    FutureRecord::to("bench.orders")
                        .key(key.as_str())
                        .payload(e.as_str()),
                    Duration::from_secs(60),
                ),
            );
        }
        for r in futures::future::join_all(pending.drain(..)).await {
            r.map_err(|(e, _)| anyhow::anyhow!("produce failed: {e}"))?;
        }
        sent += n;
    }
    drop(p);
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "ready {} {:.2}",
            broker.bootstrap(),
            started.elapsed().as_secs_f64()
        )?;
        out.flush()?;
    }
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    })
    .await?;
    Ok(())
}

async fn latency(dir: &std::path::Path, seconds: u64) -> anyhow::Result<()> {
    let broker = EmbeddedBroker::start(&["bench.latency".to_string()], 1)?;
    let (ingest, runs, status, cancel) =
        start_source(&dir.join("latency"), broker.bootstrap(), "bench.latency").await?;
    let p = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("linger.ms", "0")
        .create::<FutureProducer>()?;
    let total = (seconds * 1000) as usize;
    let sent: Arc<parking_lot::Mutex<Vec<Option<Instant>>>> =
        Arc::new(parking_lot::Mutex::new(vec![None; total]));
    let watcher_sent = sent.clone();
    let watcher_status = status.clone();
    let watcher = tokio::spawn(async move {
        let mut seen: Vec<Option<Duration>> = vec![None; total];
        let mut next = 0usize;
        let deadline = Instant::now() + Duration::from_secs(seconds + 30);
        while next < total && Instant::now() < deadline {
            let committed = watcher_status
                .partitions
                .lock()
                .get(&("bench.latency".to_string(), 0))
                .and_then(|p| p.committed);
            if let Some(c) = committed {
                let now = Instant::now();
                let sent = watcher_sent.lock();
                while next < total && (next as i64) <= c {
                    seen[next] = sent[next].map(|t| now.duration_since(t));
                    next += 1;
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        seen
    });
    let started = Instant::now();
    for i in 0..total {
        let due = started + Duration::from_millis(i as u64);
        tokio::time::sleep_until(due.into()).await;
        let e = order_event(i as u64);
        sent.lock()[i] = Some(Instant::now());
        let d = p
            .send(
                FutureRecord::<str, str>::to("bench.latency").payload(e.as_str()),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| anyhow::anyhow!("produce failed: {e}"))?;
        if d.offset != i as i64 {
            anyhow::bail!("unexpected offset {} for message {i}", d.offset);
        }
    }
    let seen = watcher.await?;
    cancel.cancel();
    for r in runs {
        r.wait().await?;
    }
    let mut lat: Vec<f64> = seen
        .iter()
        .flatten()
        .map(|d| d.as_secs_f64() * 1000.0)
        .collect();
    if lat.len() < total {
        anyhow::bail!("only {} of {total} messages became queryable", lat.len());
    }
    lat.sort_by(f64::total_cmp);
    let pct = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    println!(
        "  latency produce -> committed in bronze at 1,000 msg/s, max_latency 1 s ({seconds} s, {total} msgs): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        pct(0.50),
        pct(0.99),
        lat[lat.len() - 1]
    );
    drop(p);
    drop(ingest);
    drop(broker);
    Ok(())
}
