//! `tidepool-bench nodes`: Kafka ingestion on several nodes (issue 26). A backlog of order
//! events is produced once to a tansu broker process; then, for each node count asked
//! for, that many `tidepool serve --roles ingest` processes (static members of one fresh
//! consumer group, one fresh lake) consume it, and the bronze table's Delta log is read
//! every 50 ms until it holds every message. Reported per node count: the time from the
//! processes' start to the first commit (start-up and the group join) and to the last, the
//! steady throughput (rows landed between 10% and 90% of the backlog over the time
//! between), commits per node, and the peak RSS of each process. All processes share this machine's cores, so more nodes show the
//! cost of coordination (joins, more and smaller commits, commit conflicts) rather than a
//! speed-up.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::ingest::{order_event, producer_config};

/// What to run.
pub struct NodesBench {
    pub tansu: PathBuf,
    pub tidepool: PathBuf,
    pub messages: usize,
    pub partitions: i32,
    pub nodes: Vec<usize>,
    pub max_rows: usize,
}

pub async fn run(b: NodesBench) -> anyhow::Result<()> {
    let dir = tempfile::TempDir::with_prefix("tidepool-bench-nodes")?;
    if std::env::var_os("TIDEPOOL_BENCH_KEEP").is_some() {
        // The lakes and each node's log (`run-<i>/node-<j>.log`) stay for a look.
        println!("keeping {}", dir.path().display());
    }
    let broker = Tansu::start(&b.tansu)?;
    create_topic(&broker.brokers, b.partitions).await?;
    let produced = produce(&broker.brokers, b.messages).await?;
    println!(
        "{} order events (~350 bytes) produced to tansu ({} partitions) in {produced:.2} s; \
         max_rows {} per commit",
        b.messages, b.partitions, b.max_rows
    );
    println!(
        "{:>5} {:>14} {:>13} {:>18} {:>10} {:>22} {:>16}",
        "nodes",
        "first commit",
        "all landed",
        "msg/s (10%->90%)",
        "commits",
        "commits per node",
        "peak RSS (MiB)"
    );
    for (run, &n) in b.nodes.iter().enumerate() {
        let r = one_run(
            &b,
            &broker.brokers,
            &dir.path().join(format!("run-{run}")),
            n,
        )
        .await?;
        println!(
            "{n:>5} {:>12.2} s {:>11.2} s {:>18.0} {:>10} {:>22} {:>16}",
            r.first_commit,
            r.all_landed,
            0.8 * b.messages as f64 / (r.at90 - r.at10).max(1e-3),
            r.commits,
            r.per_node
                .values()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join("/"),
            r.rss
                .iter()
                .map(|m| format!("{m:.0}"))
                .collect::<Vec<_>>()
                .join("/")
        );
    }
    if std::env::var_os("TIDEPOOL_BENCH_KEEP").is_some() {
        let _ = dir.keep();
    }
    Ok(())
}

struct RunResult {
    first_commit: f64,
    /// When the lake first held 10% and 90% of the backlog.
    at10: f64,
    at90: f64,
    all_landed: f64,
    commits: usize,
    per_node: BTreeMap<String, usize>,
    rss: Vec<f64>,
}

async fn one_run(b: &NodesBench, brokers: &str, dir: &Path, n: usize) -> anyhow::Result<RunResult> {
    // A run of its own: lake, config and consumer group (named after its folder).
    std::fs::create_dir_all(dir)?;
    let lake = dir.join("lake");
    let config = dir.join("nodes.toml");
    let group = dir
        .file_name()
        .map_or_else(|| format!("nodes-{n}"), |f| f.to_string_lossy().to_string());
    std::fs::write(
        &config,
        format!(
            "[postgres]\nenabled = false\n[flight]\nenabled = false\n[http]\nlisten = \"127.0.0.1:0\"\n\
             [lake]\nroot = {:?}\n[kafka]\nbrokers = \"{brokers}\"\n[maintenance]\ninterval_secs = 0\n\
             [[sources]]\nname = \"orders\"\ntopics = [\"orders\"]\ngroup_id = \"bench-{group}\"\n\
             max_rows = {}\nmax_latency_ms = 1000\n\
             properties = {{ \"session.timeout.ms\" = \"6000\", \"heartbeat.interval.ms\" = \"1000\" }}\n",
            lake.display().to_string(),
            b.max_rows
        ),
    )?;
    let log = lake.join("bronze/orders/_delta_log");
    let started = Instant::now();
    let mut children = Vec::new();
    for i in 0..n {
        let child = Command::new(&b.tidepool)
            .arg("--config")
            .arg(&config)
            .args([
                "--node-name",
                &format!("node-{i}"),
                "--roles",
                "ingest",
                "serve",
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join(format!("node-{i}.log")))?)
            .spawn()?;
        children.push(Killed(child));
    }
    let mut first_commit = None;
    let (mut at10, mut at90) = (None, None);
    let mut peak = vec![0.0f64; n];
    let deadline = started + Duration::from_secs(600);
    let all_landed = loop {
        for (p, c) in peak.iter_mut().zip(&children) {
            *p = p.max(crate::ingest::rss_of(&format!("/proc/{}/status", c.0.id())));
        }
        let log_now = read_log(&log);
        if first_commit.is_none() && log_now.commits > 0 {
            first_commit = Some(started.elapsed().as_secs_f64());
        }
        let now = started.elapsed().as_secs_f64();
        if at10.is_none() && log_now.rows * 10 >= b.messages as u64 {
            at10 = Some(now);
        }
        if at90.is_none() && log_now.rows * 10 >= 9 * b.messages as u64 {
            at90 = Some(now);
        }
        if log_now.rows >= b.messages as u64 {
            break started.elapsed().as_secs_f64();
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{n} nodes: {} of {} rows after 600 s",
            log_now.rows,
            b.messages
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let log_end = read_log(&log);
    anyhow::ensure!(
        log_end.rows == b.messages as u64,
        "{n} nodes: {} rows for {} messages",
        log_end.rows,
        b.messages
    );
    drop(children);
    Ok(RunResult {
        first_commit: first_commit.unwrap_or(all_landed),
        at10: at10.unwrap_or(all_landed),
        at90: at90.unwrap_or(all_landed),
        all_landed,
        commits: log_end.commits,
        per_node: log_end.per_node,
        rss: peak,
    })
}

/// What a bronze table's JSON commits say: rows added (`dataChange` adds only, so an
/// OPTIMIZE does not count twice), commits that added rows, and those per `tidepool.node`.
#[derive(Default)]
struct LogNow {
    rows: u64,
    commits: usize,
    per_node: BTreeMap<String, usize>,
}

fn read_log(log: &Path) -> LogNow {
    let mut now = LogNow::default();
    let Ok(entries) = std::fs::read_dir(log) else {
        return now;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.ends_with(".json") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        let (mut rows, mut node) = (0u64, None);
        for line in text.lines() {
            let Ok(action) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if let Some(info) = action.get("commitInfo") {
                node = info
                    .get("tidepool.node")
                    .and_then(|v| v.as_str())
                    .map(str::to_string);
            }
            let add = action
                .get("add")
                .filter(|a| a["dataChange"].as_bool() == Some(true));
            if let Some(stats) = add
                .and_then(|a| a.get("stats"))
                .and_then(|s| s.as_str())
                .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
            {
                rows += stats
                    .get("numRecords")
                    .and_then(|n| n.as_u64())
                    .unwrap_or(0);
            }
        }
        if rows > 0 {
            now.rows += rows;
            now.commits += 1;
            *now.per_node
                .entry(node.unwrap_or_else(|| "?".into()))
                .or_default() += 1;
        }
    }
    now
}

/// A child process killed (SIGKILL) and reaped when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A tansu broker process on a free port.
struct Tansu {
    _child: Killed,
    brokers: String,
}

impl Tansu {
    fn start(bin: &Path) -> anyhow::Result<Tansu> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(bin)
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &url, "--silent"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let child = Killed(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            anyhow::ensure!(Instant::now() < deadline, "tansu did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Tansu {
            _child: child,
            brokers: format!("127.0.0.1:{port}"),
        })
    }
}

async fn create_topic(brokers: &str, partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let topic = NewTopic::new("orders", partitions, TopicReplication::Fixed(1));
    for r in admin.create_topics([&topic], &AdminOptions::new()).await? {
        r.map_err(|(t, e)| anyhow::anyhow!("topic {t}: {e}"))?;
    }
    Ok(())
}

/// Produces `messages` order events keyed by order id; returns the seconds it took.
async fn produce(brokers: &str, messages: usize) -> anyhow::Result<f64> {
    let p: FutureProducer = producer_config(brokers).create()?;
    let started = Instant::now();
    let mut sent = 0usize;
    while sent < messages {
        let n = (messages - sent).min(100_000);
        let chunk: Vec<(String, String)> = (sent..sent + n)
            .map(|i| (i.to_string(), order_event(i as u64)))
            .collect();
        let pending: Vec<_> = chunk
            .iter()
            .map(|(key, e)| {
                p.send(
                    FutureRecord::to("orders")
                        .key(key.as_str())
                        .payload(e.as_str()),
                    Duration::from_secs(60),
                )
            })
            .collect();
        for r in futures::future::join_all(pending).await {
            r.map_err(|(e, _)| anyhow::anyhow!("produce failed: {e}"))?;
        }
        sent += n;
    }
    Ok(started.elapsed().as_secs_f64())
}
