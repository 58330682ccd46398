//! End to end against a real Kafka-protocol broker process (tansu, installed by
//! `scripts/test.sh` and passed in `TIDEPOOL_TANSU`), with tidepool as a real process that
//! is killed with SIGKILL mid-ingestion, and the broker frozen with SIGSTOP.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::FutureProducer;

use crate::common::{TestServer, wait_for};
use crate::ingest::{order, produce};

/// A tansu broker on a free port; killed when dropped.
pub(crate) struct Tansu {
    child: Child,
    pub brokers: String,
}

impl Tansu {
    pub(crate) fn start() -> Tansu {
        let bin = std::env::var("TIDEPOOL_TANSU").unwrap_or_else(|_| {
            panic!("TIDEPOOL_TANSU is not set: run `bash scripts/test.sh`, which installs the tansu broker")
        });
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--silent",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Tansu {
            child,
            brokers: format!("127.0.0.1:{port}"),
        }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "kill {sig}");
    }

    fn admin(&self) -> AdminClient<DefaultClientContext> {
        ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .create()
            .expect("admin client")
    }

    async fn delete_topic(&self, name: &str) {
        let r = self
            .admin()
            .delete_topics(&[name], &AdminOptions::new())
            .await
            .expect("delete topics");
        for t in r {
            t.expect("topic deleted");
        }
    }

    pub(crate) async fn create_topic(&self, name: &str, partitions: i32) {
        let admin = self.admin();
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        let r = admin
            .create_topics([&topic], &AdminOptions::new())
            .await
            .expect("create topics");
        for t in r {
            t.expect("topic created");
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub(crate) fn write_config(dir: &Path, brokers: &str, extra: &str) -> PathBuf {
    let path = dir.join("tidepool.toml");
    let text = format!(
        "[postgres]\nenabled = false\n[http]\nenabled = false\n[flight]\nenabled = false\n[lake]\nroot = {:?}\n\
         [kafka]\nbrokers = \"{brokers}\"\n\
         [[sources]]\nname = \"orders\"\ntopics = [\"orders\"]\nmax_latency_ms = 200\nmax_rows = 5000\n\
         properties = {{ \"session.timeout.ms\" = \"6000\", \"heartbeat.interval.ms\" = \"1000\" }}\n{extra}",
        dir.join("lake").display().to_string()
    );
    std::fs::write(&path, text).expect("config written");
    path
}

pub(crate) fn tidepool(config: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tidepool"));
    c.arg("--config")
        .arg(config)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

fn commits(log: &Path) -> usize {
    std::fs::read_dir(log)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .count()
        })
        .unwrap_or(0)
}

/// Produces `total` orders to topic `orders` over `partitions` partitions (every 100th
/// malformed JSON, keyed by its number) in `chunks` chunks `pause_ms` apart.
pub(crate) fn produce_orders(
    brokers: &str,
    total: i64,
    partitions: i64,
    chunks: i64,
    pause_ms: u64,
) -> tokio::task::JoinHandle<()> {
    let brokers = brokers.to_string();
    let size = total / chunks;
    tokio::spawn(async move {
        let p = producer(&brokers);
        for chunk in 0..chunks {
            let msgs = (chunk * size..(chunk + 1) * size)
                .map(|i| {
                    let v = if i % 100 == 42 {
                        b"{\"broken\": ".to_vec()
                    } else {
                        order(i)
                    };
                    ((i % partitions) as i32, Some(i.to_string()), Some(v))
                })
                .collect();
            produce(&p, "orders", msgs).await;
            tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        }
    })
}

pub(crate) fn producer(brokers: &str) -> FutureProducer {
    crate::ingest::producer(brokers)
}

/// 100k messages over 3 partitions, 1% malformed, produced while tidepool is killed with
/// SIGKILL three times; afterwards every (partition, offset) is in bronze or its dead
/// letters exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tansu_exactly_once_through_three_sigkills() {
    let broker = Tansu::start();
    broker.create_topic("orders", 3).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), &broker.brokers, "");

    const TOTAL: i64 = 100_000;
    let producing = produce_orders(&broker.brokers, TOTAL, 3, 20, 150);

    // Each round: start, wait until it has committed a few batches, let it run on a little
    // (so the kill lands mid-batch at a different point each time), SIGKILL.
    let log = dir.path().join("lake/bronze/orders/_delta_log");
    for (round, extra_ms) in [0u64, 170, 330].into_iter().enumerate() {
        let before = commits(&log);
        let mut child: Child = tidepool(&config, &["serve"])
            .spawn()
            .expect("tidepool starts");
        let deadline = Instant::now() + Duration::from_secs(60);
        while commits(&log) < before + 2 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(extra_ms)).await;
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        eprintln!(
            "round {round}: killed at {} commits (was {before})",
            commits(&log)
        );
        assert!(
            commits(&log) >= before + 2,
            "round {round}: tidepool did not commit within 60 s"
        );
    }
    producing.await.expect("producer finished");

    // A batch run reads the rest and exits.
    let out = tidepool(&config, &["ingest", "--until-caught-up"])
        .output()
        .expect("ingest runs");
    assert!(
        out.status.success(),
        "ingest --until-caught-up failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let lake = tempfile::TempDir::with_prefix("unused").expect("tempdir");
    let settings = crate::common::settings(&dir.path().join("lake"), "");
    let server = TestServer::start_with(lake, settings).await;
    let c = server.connect().await;
    let row = c
        .query_one(
            "SELECT count(*), count(DISTINCT (_partition, _offset)), max(_offset) FROM (
               SELECT _partition, _offset FROM bronze.orders
               UNION ALL SELECT _partition, _offset FROM bronze.orders__dead_letters) t",
            &[],
        )
        .await
        .expect("query");
    let (n, distinct, max_offset): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    if n != TOTAL || distinct != TOTAL {
        let per = c
            .query(
                "SELECT _partition, count(*), count(DISTINCT _offset), min(_offset), max(_offset) FROM (
                   SELECT _partition, _offset FROM bronze.orders
                   UNION ALL SELECT _partition, _offset FROM bronze.orders__dead_letters) t GROUP BY 1 ORDER BY 1",
                &[],
            )
            .await
            .expect("diagnostics");
        for r in per {
            eprintln!(
                "partition {}: rows {} distinct {} min {} max {}",
                r.get::<_, i32>(0),
                r.get::<_, i64>(1),
                r.get::<_, i64>(2),
                r.get::<_, i64>(3),
                r.get::<_, i64>(4)
            );
        }
        eprintln!("ingest stderr: {}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(n, TOTAL, "every message landed once");
    assert_eq!(distinct, TOTAL, "no duplicates");
    assert_eq!(max_offset, TOTAL / 3, "offsets are dense per partition");
    let dead = c
        .query_one("SELECT count(*) FROM bronze.orders__dead_letters", &[])
        .await
        .expect("dead letters");
    assert_eq!(dead.get::<_, i64>(0), TOTAL / 100);
    let keys = c
        .query_one(
            "SELECT count(*) FROM bronze.orders WHERE _key = order_id::text",
            &[],
        )
        .await
        .expect("keys");
    assert_eq!(keys.get::<_, i64>(0), TOTAL - TOTAL / 100);
}

/// The broker frozen for 20 s: ingestion waits, then resumes; a new field arriving over
/// the HTTP endpoint widens the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tansu_broker_pause_then_http_ingest_with_a_new_field() {
    let broker = Tansu::start();
    broker.create_topic("orders", 3).await;
    let server = TestServer::start(&format!(
        "[kafka]\nbrokers = \"{}\"\n[[sources]]\nname = \"orders\"\ntopics = [\"orders\"]\nmax_latency_ms = 200\n\
         properties = {{ \"session.timeout.ms\" = \"30000\" }}\n",
        broker.brokers
    ))
    .await;
    let c = server.connect().await;
    let p = producer(&broker.brokers);
    let msgs = (0..1000i64)
        .map(|i| ((i % 3) as i32, None, Some(order(i))))
        .collect();
    produce(&p, "orders", msgs).await;
    wait_for(&c, "SELECT count(*) FROM bronze.orders", 60, |n| n == 1000).await;

    broker.signal("-STOP");
    tokio::time::sleep(Duration::from_secs(20)).await;
    broker.signal("-CONT");

    let http = server.http.expect("http");
    let body: String = (1000..1100i64)
        .map(|i| {
            format!(
                "{{\"order_id\": {i}, \"channel\": \"app\", \"coupon\": {{\"code\": \"X{i}\"}}}}\n"
            )
        })
        .collect();
    let r = reqwest::Client::new()
        .post(format!("http://{http}/v1/ingest/orders?key=order_id"))
        .body(body)
        .send()
        .await
        .expect("http ingest");
    assert_eq!(r.status().as_u16(), 202, "{:?}", r.text().await);
    wait_for(&c, "SELECT count(*) FROM bronze.orders", 60, |n| n == 1100).await;
    let row = c
        .query_one(
            "SELECT count(channel), count(*) FILTER (WHERE coupon['code'] LIKE 'X%'), count(DISTINCT order_id) \
             FROM bronze.orders",
            &[],
        )
        .await
        .expect("query");
    assert_eq!(
        (
            row.get::<_, i64>(0),
            row.get::<_, i64>(1),
            row.get::<_, i64>(2)
        ),
        (100, 100, 1100)
    );
}

/// A frozen broker (SIGSTOP: the TCP connection stays open, so librdkafka thinks it is up
/// for a minute) is reported in `system.ingest` within seconds, logged once, and cleared
/// when it answers again; nothing is lost across the freeze.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_broker_shows_in_system_ingest_and_the_log_once() {
    let broker = Tansu::start();
    broker.create_topic("orders", 3).await;
    let server = crate::common::ServeProcess::start(&format!(
        "[kafka]\nbrokers = \"{}\"\n[[sources]]\nname = \"orders\"\ntopics = [\"orders\"]\nmax_latency_ms = 200\n\
         properties = {{ \"session.timeout.ms\" = \"30000\" }}\n",
        broker.brokers
    ))
    .await;
    let c = crate::common::connect(&server.conn_str("tidepool", "")).await;
    let p = producer(&broker.brokers);
    let batch = |from: i64, to: i64| {
        (from..to)
            .map(|i| ((i % 3) as i32, None, Some(order(i))))
            .collect()
    };
    produce(&p, "orders", batch(0, 300)).await;
    wait_for(&c, "SELECT count(*) FROM bronze.orders", 60, |n| n == 300).await;
    let states = "SELECT string_agg(DISTINCT broker_state, ',') FROM system.ingest";
    let deadline = Instant::now() + Duration::from_secs(20);
    while crate::common::first(&c, states)
        .await
        .expect("system.ingest")
        != "up"
    {
        assert!(Instant::now() < deadline, "the broker never showed as up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    broker.signal("-STOP");
    let stopped = Instant::now();
    let stopped_at = chrono::Utc::now();
    let seen = loop {
        let state = crate::common::first(&c, states)
            .await
            .expect("system.ingest");
        if state == "unresponsive" {
            break stopped.elapsed();
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(15),
            "the frozen broker was not reported within 15 s: broker_state {state}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!("frozen broker reported after {:.1} s", seen.as_secs_f64());
    let contact: chrono::DateTime<chrono::Utc> = c
        .query_one("SELECT max(last_broker_contact) FROM system.ingest", &[])
        .await
        .expect("last_broker_contact")
        .get::<_, Option<_>>(0)
        .expect("a last contact");
    assert!(
        contact <= stopped_at && stopped_at - contact < chrono::TimeDelta::seconds(5),
        "last contact {contact} should be just before the freeze at {stopped_at}"
    );
    tokio::time::sleep(Duration::from_secs(20).saturating_sub(stopped.elapsed())).await;
    broker.signal("-CONT");
    let resumed = Instant::now();
    while crate::common::first(&c, states)
        .await
        .expect("system.ingest")
        != "up"
    {
        assert!(
            resumed.elapsed() < Duration::from_secs(30),
            "the broker was not reported up again"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    produce(&p, "orders", batch(300, 400)).await;
    wait_for(&c, "SELECT count(*) FROM bronze.orders", 60, |n| n == 400).await;
    assert_eq!(
        crate::common::first(&c, "SELECT count(DISTINCT order_id) FROM bronze.orders")
            .await
            .expect("count"),
        "400"
    );
    drop(c);
    let log = server.stop_clean("frozen broker").await;
    let lines = |what: &str| log.lines().filter(|l| l.contains(what)).count();
    assert_eq!(lines("Kafka broker not answering"), 1, "{log}");
    assert_eq!(lines("Kafka brokers answering again"), 1, "{log}");
}

/// SIGTERM while the broker is frozen: the batch in flight is committed and the process
/// exits in bounded time instead of waiting forever to leave its consumer group.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_with_the_broker_frozen_exits() {
    let broker = Tansu::start();
    broker.create_topic("orders", 3).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), &broker.brokers, "");
    let p = producer(&broker.brokers);
    let msgs = (0..3000i64)
        .map(|i| ((i % 3) as i32, None, Some(order(i))))
        .collect();
    produce(&p, "orders", msgs).await;
    let mut child = tidepool(&config, &["serve"])
        .spawn()
        .expect("tidepool starts");
    let log = dir.path().join("lake/bronze/orders/_delta_log");
    let deadline = Instant::now() + Duration::from_secs(60);
    while commits(&log) < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(commits(&log) >= 2, "tidepool did not commit");
    broker.signal("-STOP");
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok);
    let stopped = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if stopped.elapsed() > Duration::from_secs(45) {
            let _ = child.kill();
            panic!("tidepool did not exit within 45 s of SIGTERM with the broker frozen");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status:?}");
    broker.signal("-CONT");
}

/// The admin API's pause, resume and replay against the real broker process: nothing
/// lands while paused, everything after resume, and a replay re-reads exactly what it
/// removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tansu_pause_resume_and_replay_through_the_admin_api() {
    use crate::admin_sources::replay_orders;
    use tidepool::protocol::admin::pb;
    let broker = Tansu::start();
    broker.create_topic("orders", 2).await;
    let server = TestServer::start(&format!(
        "[kafka]\nbrokers = \"{}\"\n[[sources]]\nname = \"orders\"\ntopics = [\"orders\"]\nmax_latency_ms = 200\n\
         properties = {{ \"session.timeout.ms\" = \"30000\" }}\n",
        broker.brokers
    ))
    .await;
    let c = server.connect().await;
    let p = producer(&broker.brokers);
    let batch = |from: i64, to: i64| {
        (from..to)
            .map(|i| ((i % 2) as i32, None, Some(order(i))))
            .collect::<Vec<_>>()
    };
    produce(&p, "orders", batch(0, 400)).await;
    wait_for(&c, "SELECT count(*) FROM bronze.orders", 60, |n| n == 400).await;
    let mut admin = pb::admin_client::AdminClient::connect(format!(
        "http://{}",
        server.admin.expect("admin API")
    ))
    .await
    .unwrap();
    let source = || pb::SourceRequest {
        source: "orders".into(),
    };
    admin.pause_source(source()).await.unwrap();
    produce(&p, "orders", batch(400, 500)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let n: i64 = c
        .query_one("SELECT count(*) FROM bronze.orders", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 400, "nothing lands while paused");
    admin.resume_source(source()).await.unwrap();
    wait_for(&c, "SELECT count(*) FROM bronze.orders", 60, |n| n == 500).await;
    let replay = replay_orders(&mut admin, pb::replay_source_request::From::FromOffset(100)).await;
    assert_eq!((replay.removed, replay.rows), (300, 300), "{replay:?}");
    let row = c
        .query_one(
            "SELECT count(*), count(DISTINCT (_partition, _offset)) FROM bronze.orders",
            &[],
        )
        .await
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (500, 500));
    let all = replay_orders(
        &mut admin,
        pb::replay_source_request::From::FromTimestamp("2000-01-01 00:00:00".into()),
    )
    .await;
    assert_eq!((all.removed, all.rows), (500, 500), "{all:?}");
    produce(&p, "orders", batch(500, 510)).await;
    wait_for(&c, "SELECT count(*) FROM bronze.orders", 60, |n| n == 510).await;
}

/// A topic deleted and created again, holding fewer messages than the lake's offset: the
/// lake's offset is the truth, so the node resumes there (a broker whose end lags what it
/// served is not re-read from the beginning) and ingests the new topic's messages past it,
/// once, without hanging. tansu answers a fetch beyond its end by waiting (Apache Kafka
/// answers OFFSET_OUT_OF_RANGE; `LoopState::first_message` covers that path).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_topic_behind_the_lake_resumes_at_the_lake_offset() {
    let broker = Tansu::start();
    broker.create_topic("orders", 1).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), &broker.brokers, "");
    let p = producer(&broker.brokers);
    let batch = |r: std::ops::Range<i64>| r.map(|i| (0, None, Some(order(i)))).collect();
    produce(&p, "orders", batch(0..60)).await;
    let out = tidepool(&config, &["ingest", "--until-caught-up"])
        .output()
        .expect("ingest runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    broker.delete_topic("orders").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    broker.create_topic("orders", 1).await;
    produce(&p, "orders", batch(1000..1020)).await;

    let log_path = dir.path().join("serve.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut child = tidepool(&config, &["serve"])
        .stderr(log)
        .spawn()
        .expect("tidepool starts");
    let logged = |what: &str| {
        std::fs::read_to_string(&log_path)
            .unwrap_or_default()
            .contains(what)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !logged("resuming at the lake's offset") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        logged("resuming at the lake's offset"),
        "{}",
        std::fs::read_to_string(&log_path).unwrap_or_default()
    );
    // Offsets 20..69 of the new topic: 60..69 are past what the lake holds.
    produce(&p, "orders", batch(1020..1070)).await;

    let settings = crate::common::settings(&dir.path().join("lake"), "");
    let unused = tempfile::TempDir::with_prefix("unused").expect("tempdir");
    let server = TestServer::start_with(unused, settings).await;
    let c = server.connect().await;
    wait_for(&c, "SELECT count(*) FROM bronze.orders", 60, |n| n == 70).await;
    let _ = child.kill();
    let _ = child.wait();
    let row = c
        .query_one(
            "SELECT count(DISTINCT _offset), min(order_id) FILTER (WHERE order_id >= 1000), \
             max(order_id) FROM bronze.orders",
            &[],
        )
        .await
        .expect("query");
    assert_eq!(
        (
            row.get::<_, i64>(0),
            row.get::<_, Option<i64>>(1),
            row.get::<_, Option<i64>>(2)
        ),
        (70, Some(1060), Some(1069)),
        "the new topic's offsets 60..69 landed, each once"
    );
}
