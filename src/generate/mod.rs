//! The event generator behind `tidepool generate` and `tidepool demo`: the simulated shop
//! of [`shop`] sent at a steady rate to Kafka (any cluster, or the embedded broker) or to
//! a tidepool's HTTP ingest endpoint.
//!
//! Pacing keeps the rate over the whole run, not per batch: every 10 ms the generator
//! sends what is due by then, so a slow broker round trip is caught up rather than lost.
//! Kafka messages are keyed by entity (order, customer, session...), so one entity's
//! events stay in order on one partition; topics are `shop.<source>`.

pub mod shop;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, error::RDKafkaErrorCode};
use tokio_util::sync::CancellationToken;

pub use shop::{Event, Kind, Mix, SOURCES, Shop};

/// Where events go.
#[derive(Debug, Clone)]
pub enum Target {
    /// Kafka bootstrap servers and extra librdkafka properties.
    Kafka {
        brokers: String,
        properties: Vec<(String, String)>,
    },
    /// A tidepool HTTP endpoint (`http://host:8080`), with optional Basic credentials.
    Http {
        url: String,
        credentials: Option<(String, String)>,
    },
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct Options {
    /// Events per second.
    pub rate: u64,
    /// How many events in all; `None` runs until cancelled.
    pub events: Option<u64>,
    pub seed: u64,
    /// Event time of the first event.
    pub start: DateTime<Utc>,
    /// First order, review, session and click id.
    pub first_id: u64,
    pub mix: Mix,
    pub target: Target,
}

/// What was sent.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub by_source: BTreeMap<&'static str, u64>,
    pub late: u64,
    pub duplicates: u64,
    pub malformed: u64,
    /// Events the target refused (the HTTP endpoint answers 400 to broken JSON).
    pub rejected: u64,
    /// Events whose delivery failed.
    pub failed: u64,
    pub sent: u64,
    pub elapsed: Duration,
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rate = self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9);
        write!(
            f,
            "{} events in {:.1} s ({rate:.0}/s):",
            self.sent,
            self.elapsed.as_secs_f64()
        )?;
        for (s, n) in &self.by_source {
            write!(f, " {s} {n}")?;
        }
        write!(
            f,
            "; late {}, duplicates {}, malformed {} (rejected at the door {}), failed {}",
            self.late, self.duplicates, self.malformed, self.rejected, self.failed
        )
    }
}

/// Why the generator stopped.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("kafka producer: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("http {url}: {message}")]
    Http { url: String, message: String },
}

/// Counts delivery failures reported by librdkafka.
#[derive(Default)]
struct Deliveries {
    failed: Arc<AtomicU64>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(error = %e, "generate: delivery failed");
        }
    }
}

enum Sink {
    Kafka(ThreadedProducer<Deliveries>, Arc<AtomicU64>),
    Http {
        client: reqwest::Client,
        url: String,
        credentials: Option<(String, String)>,
    },
}

impl Sink {
    fn open(target: &Target) -> Result<Sink, GenerateError> {
        match target {
            Target::Kafka {
                brokers,
                properties,
            } => {
                let mut config = ClientConfig::new();
                config
                    .set("bootstrap.servers", brokers)
                    .set("linger.ms", "5")
                    .set("compression.type", "lz4")
                    .set("enable.idempotence", "true")
                    .set("message.timeout.ms", "30000");
                for (k, v) in properties {
                    config.set(k, v);
                }
                let failed = Arc::new(AtomicU64::new(0));
                let producer = config.create_with_context(Deliveries {
                    failed: failed.clone(),
                })?;
                Ok(Sink::Kafka(producer, failed))
            }
            Target::Http { url, credentials } => Ok(Sink::Http {
                client: reqwest::Client::new(),
                url: url.trim_end_matches('/').to_string(),
                credentials: credentials.clone(),
            }),
        }
    }

    async fn send(&self, events: &[Event], stats: &mut Stats) -> Result<(), GenerateError> {
        match self {
            Sink::Kafka(producer, _) => {
                for e in events {
                    let topic = format!("shop.{}", e.source);
                    let mut record = BaseRecord::to(&topic).key(&e.key).payload(&e.payload);
                    loop {
                        match producer.send(record) {
                            Ok(()) => break,
                            Err((err, r))
                                if err.rdkafka_error_code()
                                    == Some(RDKafkaErrorCode::QueueFull) =>
                            {
                                record = r;
                                tokio::time::sleep(Duration::from_millis(2)).await;
                            }
                            Err((err, _)) => return Err(err.into()),
                        }
                    }
                }
                Ok(())
            }
            Sink::Http {
                client,
                url,
                credentials,
            } => {
                let mut by_source: BTreeMap<&str, String> = BTreeMap::new();
                for e in events {
                    if e.kind == Kind::Broken {
                        // The endpoint refuses a body that is not JSON objects (400): sent
                        // alone, so it does not take good events down with it.
                        let status =
                            post(client, url, credentials, e.source, e.payload.clone()).await?;
                        if status == reqwest::StatusCode::BAD_REQUEST {
                            stats.rejected += 1;
                        }
                        continue;
                    }
                    let body = by_source.entry(e.source).or_default();
                    body.push_str(&e.payload);
                    body.push('\n');
                }
                for (source, body) in by_source {
                    let status = post(client, url, credentials, source, body).await?;
                    if !status.is_success() {
                        return Err(GenerateError::Http {
                            url: format!("{url}/v1/ingest/{source}"),
                            message: format!("answered {status}"),
                        });
                    }
                }
                Ok(())
            }
        }
    }

    fn finish(&self, stats: &mut Stats) {
        if let Sink::Kafka(producer, failed) = self {
            if let Err(e) = producer.flush(Duration::from_secs(30)) {
                tracing::warn!(error = %e, "generate: not every event was acknowledged");
            }
            stats.failed += failed.load(Ordering::Relaxed);
        }
    }
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    credentials: &Option<(String, String)>,
    source: &str,
    body: String,
) -> Result<reqwest::StatusCode, GenerateError> {
    let key = SOURCES
        .iter()
        .find(|s| s.0 == source)
        .map(|s| s.1)
        .unwrap_or("id");
    let endpoint = format!("{url}/v1/ingest/{source}?key={key}");
    let mut request = client.post(&endpoint).body(body);
    if let Some((user, password)) = credentials {
        request = request.basic_auth(user, Some(password));
    }
    let response = request.send().await.map_err(|e| GenerateError::Http {
        url: endpoint.clone(),
        message: e.to_string(),
    })?;
    Ok(response.status())
}

/// Sends events at `options.rate` until `options.events` are out or `cancel` fires.
pub async fn run(options: Options, cancel: CancellationToken) -> Result<Stats, GenerateError> {
    let rate = options.rate.max(1);
    let tick = chrono::Duration::nanoseconds((1_000_000_000 / rate) as i64);
    let mut shop = Shop::new(options.seed, options.start, tick, options.mix);
    shop.continue_ids(options.first_id);
    let sink = Sink::open(&options.target)?;
    let mut stats = Stats::default();
    let started = tokio::time::Instant::now();
    let mut interval = tokio::time::interval(Duration::from_millis(10));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut batch = Vec::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = interval.tick() => {}
        }
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        let due = options.events.map_or(due, |n| due.min(n));
        batch.clear();
        while stats.sent < due {
            let e = shop.next_event();
            *stats.by_source.entry(e.source).or_default() += 1;
            match e.kind {
                Kind::Late => stats.late += 1,
                Kind::Duplicate => stats.duplicates += 1,
                Kind::Broken | Kind::WrongType => stats.malformed += 1,
                Kind::Normal => {}
            }
            stats.sent += 1;
            batch.push(e);
        }
        sink.send(&batch, &mut stats).await?;
        if options.events.is_some_and(|n| stats.sent >= n) {
            break;
        }
    }
    sink.finish(&mut stats);
    stats.elapsed = started.elapsed();
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::batch::RawBatch;
    use crate::ingest::decode::JsonDecoder;

    /// Every well-formed event decodes against its source's bronze schema in
    /// `sql/bronze/`, and every malformed one is a dead letter.
    #[test]
    fn generated_events_fit_the_bronze_schemas() {
        let start = DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut shop = Shop::new(5, start, chrono::Duration::milliseconds(1), Mix::default());
        let events: Vec<Event> = (0..30_000).map(|_| shop.next_event()).collect();
        for (source, _) in SOURCES {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(format!("sql/bronze/{source}.schema.json"));
            let data = crate::ingest::schema::load_declared(&path).unwrap();
            let mut decoder = JsonDecoder::new(data, true, true, 1 << 20);
            let mut batch = RawBatch::default();
            let mut kinds = Vec::new();
            for (i, e) in events.iter().filter(|e| e.source == *source).enumerate() {
                let topic = format!("shop.{source}");
                let (key, value) = (e.key.as_bytes(), e.payload.as_bytes());
                batch.push(&topic, 0, i as i64, Some(0), Some(key), Some(value), vec![]);
                kinds.push(e.kind);
            }
            let all: Vec<usize> = (0..batch.len()).collect();
            let decoded = decoder.decode(&batch, &all, 0);
            let dead: std::collections::BTreeSet<usize> =
                decoded.dead.iter().map(|d| d.index).collect();
            for (i, kind) in kinds.iter().enumerate() {
                let malformed = matches!(kind, Kind::Broken | Kind::WrongType);
                assert_eq!(
                    dead.contains(&i),
                    malformed,
                    "{source} event {i} ({kind:?}): {:?}",
                    decoded.dead.iter().find(|d| d.index == i)
                );
            }
            assert!(
                decoded.row_count() > 50,
                "{source}: {}",
                decoded.row_count()
            );
            assert!(
                !dead.is_empty() || *source == "products",
                "{source}: no dead letters"
            );
        }
    }
}
