//! Producing events to a source's topic, for the HTTP ingest endpoint and the event
//! generator: a shared librdkafka producer (idempotent, acks=all) that answers once the
//! broker acknowledged every message.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::IngestError;
use crate::settings::Source;

/// One event to produce.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    pub key: Option<&'a [u8]>,
    pub value: &'a [u8],
}

/// A producer for every source's topic.
#[derive(Clone)]
pub struct Producer {
    inner: Option<FutureProducer>,
    topics: HashMap<String, String>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("sources", &self.topics.len())
            .finish()
    }
}

impl Producer {
    /// A producer to `brokers` for `sources` (each produces to its first topic).
    pub fn new(brokers: &str, sources: &[Source]) -> Result<Producer, IngestError> {
        let topics = sources
            .iter()
            .map(|s| (s.name.clone(), s.topics[0].clone()))
            .collect();
        if brokers.is_empty() || sources.is_empty() {
            return Ok(Producer {
                inner: None,
                topics,
            });
        }
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", brokers)
            .set("client.id", "tidepool-producer")
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "30000");
        // Security settings apply to the producer too.
        for (k, v) in &sources[0].properties {
            if k.starts_with("security.") || k.starts_with("sasl.") || k.starts_with("ssl.") {
                c.set(k, v);
            }
        }
        let inner: FutureProducer = c
            .create()
            .map_err(|e| IngestError::Kafka(format!("cannot create producer: {e}")))?;
        Ok(Producer {
            inner: Some(inner),
            topics,
        })
    }

    /// The topic a source's events are produced to.
    pub fn topic(&self, source: &str) -> Option<&str> {
        self.topics.get(source).map(String::as_str)
    }

    /// Produces `events` to the source's topic and waits for every acknowledgement.
    /// Returns how many were acknowledged.
    pub async fn send(&self, source: &str, events: &[Event<'_>]) -> Result<usize, IngestError> {
        let topic = self
            .topic(source)
            .ok_or_else(|| IngestError::UnknownSource(source.to_string()))?;
        let producer = self
            .inner
            .as_ref()
            .ok_or_else(|| IngestError::Kafka("no broker to produce to".into()))?;
        let mut pending = Vec::with_capacity(events.len());
        for e in events {
            let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).payload(e.value);
            if let Some(k) = e.key {
                record = record.key(k);
            }
            pending.push(producer.send(record, Duration::from_secs(30)));
        }
        let mut acked = 0;
        let mut first_error = None;
        for r in futures::future::join_all(pending).await {
            match r {
                Ok(_) => acked += 1,
                Err((e, _)) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            None => Ok(acked),
            Some(e) => Err(IngestError::Kafka(format!(
                "{acked} of {} events acknowledged; first failure: {e}",
                events.len()
            ))),
        }
    }
}
