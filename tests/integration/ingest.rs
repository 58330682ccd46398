//! Kafka ingestion against librdkafka's in-process mock cluster (the embedded broker or
//! one the test owns), produced to with a real Kafka client, checked over Postgres.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::common::{TestServer, wait_for};

pub fn producer(brokers: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer")
}

/// Produces `(partition, key, value)` messages and waits for every acknowledgement.
pub async fn produce(
    p: &FutureProducer,
    topic: &str,
    msgs: Vec<(i32, Option<String>, Option<Vec<u8>>)>,
) {
    let mut pending = Vec::new();
    for (partition, key, value) in &msgs {
        let mut r: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic).partition(*partition);
        if let Some(k) = key {
            r = r.key(k.as_str());
        }
        if let Some(v) = value {
            r = r.payload(v.as_slice());
        }
        pending.push(p.send(r, Duration::from_secs(30)));
    }
    for r in futures::future::join_all(pending).await {
        r.expect("acknowledged");
    }
}

/// An order event with nested items and statuses.
/// Messages of source `orders` in bronze and its dead letters, and distinct
/// (partition, offset) pairs among them: equal when nothing landed twice.
pub async fn landed(c: &tokio_postgres::Client) -> (i64, i64) {
    let row = c
        .query_one(
            "SELECT count(*), count(DISTINCT (_partition, _offset)) FROM (
               SELECT _partition, _offset FROM bronze.orders
               UNION ALL SELECT _partition, _offset FROM bronze.orders__dead_letters) t",
            &[],
        )
        .await
        .expect("landed messages");
    (row.get(0), row.get(1))
}

pub fn order(i: i64) -> Vec<u8> {
    format!(
        r#"{{"order_id": {i}, "customer_id": {}, "total": {}.5, "status": "OPEN",
            "order_items": [{{"product": "p{}", "category": "food", "price": 2.5, "quantity": {}}}],
            "statuses": [{{"status": "OPEN", "at": "2026-11-23T10:00:00Z"}}]}}"#,
        i % 97,
        i % 50,
        i % 13,
        1 + i % 4
    )
    .into_bytes()
}

const SOURCE: &str = r#"
[kafka]
embedded_partitions = 3
[[sources]]
name = "orders"
topics = ["shop.orders"]
max_latency_ms = 200
properties = { "session.timeout.ms" = "6000" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_broker_lands_rows_and_dead_letters_exactly_once() {
    let server = TestServer::start(SOURCE).await;
    assert!(!server.brokers.is_empty(), "embedded broker runs");
    let p = producer(&server.brokers);
    let mut msgs = Vec::new();
    for i in 0..3000i64 {
        let value = match i % 100 {
            7 => Some(b"{not json".to_vec()),
            8 => None,
            9 => Some(br#"{"order_id": "not a number"}"#.to_vec()),
            _ => Some(order(i)),
        };
        msgs.push(((i % 3) as i32, Some(format!("k{i}")), value));
    }
    produce(&p, "shop.orders", msgs).await;
    let c = server.connect().await;
    wait_for(&c, "SELECT count(*) FROM bronze.orders", 60, |n| n == 2910).await;
    wait_for(
        &c,
        "SELECT count(*) FROM bronze.orders__dead_letters",
        30,
        |n| n == 90,
    )
    .await;
    // No duplicates, and every offset is in exactly one of the two tables.
    assert_eq!(landed(&c).await, (3000, 3000));
    // Nested columns and metadata are queryable.
    let row = c
        .query_one(
            "SELECT sum(order_items[1]['quantity']), count(DISTINCT _partition), min(_key), \
             count(*) FILTER (WHERE _raw LIKE '{%') FROM bronze.orders",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, i64>(0) > 0);
    assert_eq!(row.get::<_, i64>(1), 3);
    assert_eq!(row.get::<_, String>(2), "k0");
    assert_eq!(row.get::<_, i64>(3), 2910);
    let reasons = c
        .query(
            "SELECT _reason, count(*) FROM bronze.orders__dead_letters GROUP BY _reason ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let reasons: Vec<String> = reasons.iter().map(|r| r.get::<_, String>(0)).collect();
    assert!(
        reasons.iter().any(|r| r.contains("tombstone")),
        "{reasons:?}"
    );
    assert!(reasons.len() >= 3, "{reasons:?}");
    // system.ingest shows committed offsets per partition with no lag left.
    wait_for(
        &c,
        "SELECT count(*) FROM system.ingest WHERE source = 'orders' AND committed_offset = 999 AND lag = 0",
        30,
        |n| n == 3,
    )
    .await;
    let row = c
        .query_one(
            "SELECT sum(messages)::bigint, sum(dead_letters)::bigint FROM system.ingest",
            &[],
        )
        .await
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (2910, 90));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_resumes_from_offsets_in_the_lake_and_schema_widens() {
    let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("events", 2, 1).expect("topic");
    let brokers = cluster.bootstrap_servers();
    let config = format!(
        "[kafka]\nbrokers = \"{brokers}\"\n[[sources]]\nname = \"events\"\nmax_latency_ms = 100\n\
         properties = {{ \"session.timeout.ms\" = \"6000\" }}\n"
    );
    let p = producer(&brokers);
    let first: Vec<_> = (0..1000i64)
        .map(|i| {
            (
                (i % 2) as i32,
                None,
                Some(format!(r#"{{"id": {i}}}"#).into_bytes()),
            )
        })
        .collect();
    produce(&p, "events", first).await;
    let server = TestServer::start(&config).await;
    let c = server.connect().await;
    wait_for(&c, "SELECT count(*) FROM bronze.events", 60, |n| n == 1000).await;
    let lake = server.stop().await;

    // While it is down: more events, some with a new nested field.
    let second: Vec<_> = (1000..1500i64)
        .map(|i| {
            let v = if i % 2 == 0 {
                format!(r#"{{"id": {i}, "device": {{"os": "ios"}}}}"#)
            } else {
                format!(r#"{{"id": {i}}}"#)
            };
            ((i % 2) as i32, None, Some(v.into_bytes()))
        })
        .collect();
    produce(&p, "events", second).await;
    let server = TestServer::start_on(lake, &config).await;
    let c = server.connect().await;
    wait_for(&c, "SELECT count(*) FROM bronze.events", 60, |n| n >= 1500).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let row = c
        .query_one(
            "SELECT count(*), count(DISTINCT id), count(device), count(*) FILTER (WHERE device['os'] = 'ios') \
             FROM bronze.events",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1500, "no duplicates after restart");
    assert_eq!(row.get::<_, i64>(1), 1500);
    assert_eq!(row.get::<_, i64>(2), 250);
    assert_eq!(row.get::<_, i64>(3), 250);
    let dead = c
        .query("SELECT 1 FROM bronze.events__dead_letters", &[])
        .await
        .map(|r| r.len())
        .unwrap_or(0);
    assert_eq!(dead, 0);
    drop(server);
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_ingest_round_trip() {
    let server = TestServer::start(&format!(
        "{SOURCE}\n[http]\nlisten = \"127.0.0.1:0\"\nmax_body = \"64KiB\"\n"
    ))
    .await;
    let http = server.http.expect("http enabled");
    let client = reqwest::Client::new();
    let url = format!("http://{http}/v1/ingest/orders?key=order_id");
    let ndjson = (0..50)
        .map(|i| String::from_utf8(order(i)).unwrap().replace('\n', " "))
        .collect::<Vec<_>>()
        .join("\n");
    let r = client.post(&url).body(ndjson).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let body = r.text().await.unwrap();
    assert!(body.contains("\"accepted\":50"), "{body}");
    let r = client
        .post(&url)
        .body(r#"[{"order_id": 1000}, {"order_id": 1001}]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let r = client
        .post(&url)
        .body(r#"{"order_id": 1002}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let r = client.post(&url).body("{oops").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let r = client
        .post(format!("http://{http}/v1/ingest/nope"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let r = client
        .post(&url)
        .body(vec![b' '; 100 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    let c = server.connect().await;
    wait_for(&c, "SELECT count(*) FROM bronze.orders", 60, |n| n == 53).await;
    let keys = c
        .query_one(
            "SELECT count(*) FROM bronze.orders WHERE _key = order_id::text",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(keys.get::<_, i64>(0), 53);
    let health = client
        .get(format!("http://{http}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    // Lag appears once the consumer reported the partitions' high watermarks.
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = client
            .get(format!("http://{http}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metrics.contains("tidepool_ingest_lag{source=\"orders\"") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        metrics.contains("tidepool_ingest_messages_total{source=\"orders\"} 53"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tidepool_ingest_lag{source=\"orders\""),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn declared_schema_types_columns_and_http_requires_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("orders.schema.json");
    std::fs::write(
        &schema,
        r#"{"type": "object", "required": ["order_id"], "properties": {
            "order_id": {"type": "integer"},
            "placed_at": {"type": "string", "format": "date-time"},
            "items": {"type": "array", "items": {"type": "object", "properties": {
                "sku": {"type": "string"}, "qty": {"type": "integer"}}}}}}"#,
    )
    .unwrap();
    let config = format!(
        "[[users]]\nname = \"writer\"\npassword = \"s3cret\"\n\
         [[sources]]\nname = \"typed\"\nschema = {:?}\nraw = false\nmax_latency_ms = 100\n",
        schema.display().to_string()
    );
    let server = TestServer::start(&config).await;
    let http = server.http.expect("http");
    let client = reqwest::Client::new();
    let url = format!("http://{http}/v1/ingest/typed");
    let body = "{\"order_id\": 1, \"placed_at\": \"2026-11-23T10:00:00Z\", \"items\": [{\"sku\": \"a\", \"qty\": 2}], \"extra\": true}\n\
                {\"order_id\": 2, \"placed_at\": \"2026-11-23T11:30:00Z\"}\n\
                {\"placed_at\": \"2026-11-23T12:00:00Z\"}\n\
                {\"order_id\": \"three\"}\n";
    let r = client.post(&url).body(body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401, "no credentials");
    let r = client
        .post(&url)
        .basic_auth("writer", Some("wrong"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401, "wrong password");
    let r = client
        .post(&url)
        .basic_auth("writer", Some("s3cret"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let conn = format!(
        "host={} port={} user=writer password=s3cret dbname=lake",
        server.addr.ip(),
        server.addr.port()
    );
    let c = crate::common::connect(&conn).await;
    wait_for(
        &c,
        "SELECT count(*) FROM bronze.typed__dead_letters",
        60,
        |n| n == 2,
    )
    .await;
    wait_for(&c, "SELECT count(*) FROM bronze.typed", 60, |n| n == 2).await;
    let row = c
        .query_one(
            "SELECT sum(items[1]['qty'])::bigint, max(placed_at)::text, \
             count(*) FILTER (WHERE extract(hour FROM placed_at) = 11) FROM bronze.typed",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 2);
    assert!(
        row.get::<_, String>(1).starts_with("2026-11-23"),
        "{}",
        row.get::<_, String>(1)
    );
    assert_eq!(row.get::<_, i64>(2), 1);
    let cols = c
        .query(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'bronze' \
             AND table_name = 'typed' ORDER BY ordinal_position",
            &[],
        )
        .await
        .unwrap();
    let cols: Vec<String> = cols.iter().map(|r| r.get(0)).collect();
    assert!(
        !cols.contains(&"_raw".to_string()) && !cols.contains(&"extra".to_string()),
        "{cols:?}"
    );
    assert_eq!(&cols[..3], &["order_id", "placed_at", "items"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn maintenance_compacts_and_vacuums_without_changing_rows() {
    let server = TestServer::start(
        "[[sources]]\nname = \"small\"\nmax_latency_ms = 50\n\
         [maintenance]\ninterval_secs = 0\ncompact_min_files = 3\nvacuum_retention_hours = 0\n",
    )
    .await;
    let p = producer(&server.brokers);
    for round in 0..6i64 {
        let msgs = (0..20i64)
            .map(|i| {
                (
                    0,
                    None,
                    Some(format!(r#"{{"id": {}}}"#, round * 20 + i).into_bytes()),
                )
            })
            .collect();
        produce(&p, "small", msgs).await;
        let c = server.connect().await;
        wait_for(&c, "SELECT count(*) FROM bronze.small", 60, |n| {
            n == (round + 1) * 20
        })
        .await;
    }
    let lake = tidepool::lake::Lake::open(&tidepool::config::LakeConfig {
        root: server.lake.path().display().to_string(),
        ..Default::default()
    })
    .unwrap();
    let settings = crate::common::settings(
        server.lake.path(),
        "[maintenance]\ncompact_min_files = 3\nvacuum_retention_hours = 0\n",
    );
    let report =
        tidepool::ingest::maintenance::maintain(&lake, "bronze", "small", &settings.maintenance)
            .await
            .unwrap();
    assert!(report.files_before >= 6, "{report:?}");
    assert!(
        report.files_compacted >= 6 && report.files_added == 1,
        "{report:?}"
    );
    assert!(report.files_vacuumed >= 6, "{report:?}");
    let c = server.connect().await;
    let row = c
        .query_one("SELECT count(*), count(DISTINCT id) FROM bronze.small", &[])
        .await
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (120, 120));
    // Ingestion goes on after compaction.
    produce(
        &p,
        "small",
        vec![(0, None, Some(br#"{"id": 999}"#.to_vec()))],
    )
    .await;
    wait_for(&c, "SELECT count(*) FROM bronze.small", 60, |n| n == 121).await;
}

/// Two servers in one consumer group on one lake: the second joins mid-stream (the first
/// gives up half the partitions, committing what it consumed first), then the first stops
/// (the second takes everything over from the offsets in the lake). Every message lands
/// exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rebalance_between_two_servers_keeps_exactly_once() {
    let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("clicks", 4, 1).expect("topic");
    let brokers = cluster.bootstrap_servers();
    let config = format!(
        "[kafka]\nbrokers = \"{brokers}\"\n[[sources]]\nname = \"clicks\"\nmax_latency_ms = 100\n\
         properties = {{ \"session.timeout.ms\" = \"6000\", \"heartbeat.interval.ms\" = \"500\" }}\n"
    );
    let lake = tempfile::tempdir().unwrap();
    let lake_path = lake.path().to_path_buf();
    // Two processes of one group need two node names (each is a static member).
    let first = TestServer::start_on(lake, &format!("[node]\nname = \"first\"\n{config}")).await;
    let p = producer(&brokers);
    let total = 40 * 250i64;
    let producing = tokio::spawn(async move {
        for chunk in 0..40i64 {
            let msgs = (chunk * 250..(chunk + 1) * 250)
                .map(|i| {
                    (
                        (i % 4) as i32,
                        None,
                        Some(format!(r#"{{"click": {i}}}"#).into_bytes()),
                    )
                })
                .collect();
            produce(&p, "clicks", msgs).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second = TestServer::start_with(
        tempfile::tempdir().unwrap(),
        crate::common::settings(&lake_path, &format!("[node]\nname = \"second\"\n{config}")),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let _lake = first.stop().await;
    producing.await.unwrap();
    let c = second.connect().await;
    wait_for(&c, "SELECT count(*) FROM bronze.clicks", 90, |n| n >= total).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let row = c
        .query_one("SELECT count(*), count(DISTINCT click), count(DISTINCT (_partition, _offset)) FROM bronze.clicks", &[])
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, i64>(0),
            row.get::<_, i64>(1),
            row.get::<_, i64>(2)
        ),
        (total, total, total)
    );
    drop(second);
    drop(cluster);
}

/// With `[tls]`, the HTTP listener speaks TLS only: a TLS client gets answers, a plaintext
/// request gets no HTTP response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_over_tls_and_never_plaintext() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls::pki_types::ServerName;
    let dir = tempfile::tempdir().unwrap();
    let (cert, tls_toml) = crate::common::self_signed_tls(dir.path());
    let server = TestServer::start(&tls_toml).await;
    let http = server.http.expect("http");

    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let config = tokio_rustls::rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(http).await.unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake");
    tls.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tls.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let plain = reqwest::Client::new()
        .get(format!("http://{http}/health"))
        .timeout(Duration::from_secs(15))
        .send()
        .await;
    assert!(plain.is_err(), "plaintext must not be answered: {plain:?}");
}
