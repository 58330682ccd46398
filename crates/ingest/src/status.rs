//! What ingestion has done, per source and partition: committed offsets, high
//! watermarks, counts and commit times. Written by the ingest tasks, read by
//! `system.ingest`, `/metrics` and `tidepool ingest`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::{DateTime, Utc};
use parking_lot::{Mutex, RwLock};

use crate::broker_health::{BrokerHealth, BrokerState};

/// One partition of one source.
#[derive(Debug, Clone, Default)]
pub struct PartitionStatus {
    /// Last offset committed to the bronze table.
    pub committed: Option<i64>,
    /// The broker's high watermark (next offset to be written), as last seen.
    pub high_watermark: Option<i64>,
    pub messages: u64,
    pub dead_letters: u64,
    pub last_commit: Option<DateTime<Utc>>,
    /// Commits of the last [`RATE_WINDOW`]: when, and how many messages.
    pub recent: std::collections::VecDeque<(DateTime<Utc>, u64)>,
}

/// The window `rate` is measured over.
pub const RATE_WINDOW: chrono::TimeDelta = chrono::TimeDelta::seconds(10);

impl PartitionStatus {
    /// Messages on the broker not yet committed to the lake.
    pub fn lag(&self) -> Option<i64> {
        let hw = self.high_watermark?;
        Some((hw - self.committed.map_or(0, |c| c + 1)).max(0))
    }

    /// Messages (rows and dead letters) committed per second over the last 10 s.
    pub fn rate(&self, now: DateTime<Utc>) -> f64 {
        let n: u64 = self
            .recent
            .iter()
            .filter(|(t, _)| now - *t <= RATE_WINDOW)
            .map(|(_, n)| n)
            .sum();
        n as f64 / RATE_WINDOW.as_seconds_f64()
    }
}

/// One source.
#[derive(Debug, Default)]
pub struct SourceStatus {
    pub name: String,
    pub running: AtomicBool,
    /// Asked to pause (admin API): the consumer commits what it holds and stops fetching.
    pub paused: AtomicBool,
    /// The consumer has done so: nothing more is written until resumed.
    pub pause_applied: AtomicBool,
    /// Asked to read its start offsets from the lake again (after a replay rewrote them).
    pub reposition: AtomicBool,
    pub messages: AtomicU64,
    pub bytes: AtomicU64,
    pub dead_letters: AtomicU64,
    pub commits: AtomicU64,
    pub partitions: Mutex<BTreeMap<(String, i32), PartitionStatus>>,
    pub last_error: Mutex<Option<String>>,
    /// Whether the brokers answer (from the consumer's statistics).
    pub broker: Mutex<BrokerHealth>,
}

impl SourceStatus {
    pub fn new(name: &str) -> Arc<SourceStatus> {
        Arc::new(SourceStatus {
            name: name.to_string(),
            ..Default::default()
        })
    }

    /// Records a commit of `messages`/`dead` per partition with its last offsets.
    pub fn committed(&self, per_partition: &BTreeMap<(String, i32), (i64, u64, u64)>, bytes: u64) {
        let now = Utc::now();
        let mut parts = self.partitions.lock();
        let (mut total, mut total_dead) = (0, 0);
        for (tp, (offset, msgs, dead)) in per_partition {
            let p = parts.entry(tp.clone()).or_default();
            p.committed = Some(p.committed.map_or(*offset, |c| c.max(*offset)));
            p.messages += msgs;
            p.dead_letters += dead;
            p.last_commit = Some(now);
            p.recent.push_back((now, msgs + dead));
            while p
                .recent
                .front()
                .is_some_and(|(t, _)| now - *t > RATE_WINDOW)
            {
                p.recent.pop_front();
            }
            total += msgs;
            total_dead += dead;
        }
        self.messages.fetch_add(total, Ordering::Relaxed);
        self.dead_letters.fetch_add(total_dead, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.commits.fetch_add(1, Ordering::Relaxed);
    }

    /// Sets what the table holds for a partition (on start or reassignment).
    pub fn stored(&self, topic: &str, partition: i32, offset: Option<i64>) {
        let mut parts = self.partitions.lock();
        let p = parts.entry((topic.to_string(), partition)).or_default();
        if offset.is_some() {
            p.committed = offset;
        }
    }

    pub fn high_watermark(&self, topic: &str, partition: i32, hw: i64) {
        let mut parts = self.partitions.lock();
        parts
            .entry((topic.to_string(), partition))
            .or_default()
            .high_watermark = Some(hw);
    }

    pub fn set_error(&self, e: Option<String>) {
        *self.last_error.lock() = e;
    }
}

/// A Prometheus counter: name, help text, how to read it.
type Counter = (&'static str, &'static str, fn(&SourceStatus) -> u64);

/// One partition of one source as `system.ingest` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionRow {
    pub source: String,
    pub topic: String,
    pub partition: i32,
    /// Last offset committed to bronze.
    pub committed: Option<i64>,
    pub high_watermark: Option<i64>,
    pub lag: Option<i64>,
    pub messages: u64,
    pub dead_letters: u64,
    pub last_commit: Option<DateTime<Utc>>,
    /// Messages per second over the recent commits.
    pub rate: f64,
    pub running: bool,
    pub paused: bool,
    /// The source's last error, on each of its partitions.
    pub last_error: Option<String>,
    /// `up`, `unresponsive`, `down` or `unknown` (see [`BrokerState`]).
    pub broker_state: &'static str,
    /// When a broker of the source last sent anything.
    pub last_broker_contact: Option<DateTime<Utc>>,
}

/// Every source of this process.
#[derive(Debug, Default)]
pub struct IngestStatus {
    sources: RwLock<BTreeMap<String, Arc<SourceStatus>>>,
}

impl IngestStatus {
    pub fn add(&self, s: Arc<SourceStatus>) {
        self.sources.write().insert(s.name.clone(), s);
    }

    pub fn get(&self, name: &str) -> Option<Arc<SourceStatus>> {
        self.sources.read().get(name).cloned()
    }

    pub fn sources(&self) -> Vec<Arc<SourceStatus>> {
        self.sources.read().values().cloned().collect()
    }

    pub fn schema() -> SchemaRef {
        let ts = DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into()));
        Arc::new(Schema::new(vec![
            Field::new("source", DataType::Utf8, false),
            Field::new("topic", DataType::Utf8, false),
            Field::new("partition", DataType::Int32, false),
            Field::new("committed_offset", DataType::Int64, true),
            Field::new("high_watermark", DataType::Int64, true),
            Field::new("lag", DataType::Int64, true),
            Field::new("messages", DataType::UInt64, false),
            Field::new("dead_letters", DataType::UInt64, false),
            Field::new("last_commit", ts.clone(), true),
            Field::new("rate", DataType::Float64, false),
            Field::new("running", DataType::Boolean, false),
            Field::new("paused", DataType::Boolean, false),
            Field::new("last_error", DataType::Utf8, true),
            Field::new("broker_state", DataType::Utf8, false),
            Field::new("last_broker_contact", ts.clone(), true),
        ]))
    }

    /// One row per partition of every source, as `system.ingest` shows them.
    pub fn rows(&self) -> Vec<PartitionRow> {
        let now = Utc::now();
        let mut out = Vec::new();
        for s in self.sources() {
            let error = s.last_error.lock().clone();
            let broker = s.broker.lock().clone();
            for ((topic, partition), st) in s.partitions.lock().iter() {
                out.push(PartitionRow {
                    source: s.name.clone(),
                    topic: topic.clone(),
                    partition: *partition,
                    committed: st.committed,
                    high_watermark: st.high_watermark,
                    lag: st.lag(),
                    messages: st.messages,
                    dead_letters: st.dead_letters,
                    last_commit: st.last_commit,
                    rate: st.rate(now),
                    running: s.running.load(Ordering::Relaxed),
                    paused: s.paused.load(Ordering::Relaxed),
                    last_error: error.clone(),
                    broker_state: broker.state.as_str(),
                    last_broker_contact: broker.last_contact,
                });
            }
        }
        out
    }

    /// The rows of `system.ingest`.
    pub fn batch(&self) -> Result<RecordBatch, arrow::error::ArrowError> {
        let rows = self.rows();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| &r.source),
            )),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.topic))),
            Arc::new(Int32Array::from_iter_values(
                rows.iter().map(|r| r.partition),
            )),
            Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.committed))),
            Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.high_watermark))),
            Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.lag))),
            Arc::new(UInt64Array::from_iter_values(
                rows.iter().map(|r| r.messages),
            )),
            Arc::new(UInt64Array::from_iter_values(
                rows.iter().map(|r| r.dead_letters),
            )),
            Arc::new(
                TimestampMicrosecondArray::from_iter(
                    rows.iter()
                        .map(|r| r.last_commit.map(|t| t.timestamp_micros())),
                )
                .with_timezone("UTC"),
            ),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.rate))),
            Arc::new(BooleanArray::from_iter(
                rows.iter().map(|r| Some(r.running)),
            )),
            Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.paused)))),
            Arc::new(StringArray::from_iter(
                rows.iter().map(|r| r.last_error.as_deref()),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.broker_state),
            )),
            Arc::new(
                TimestampMicrosecondArray::from_iter(
                    rows.iter()
                        .map(|r| r.last_broker_contact.map(|t| t.timestamp_micros())),
                )
                .with_timezone("UTC"),
            ),
        ];
        RecordBatch::try_new(Self::schema(), columns)
    }

    /// Prometheus text exposition of the counters.
    pub fn prometheus(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let sources = self.sources();
        let counters: [Counter; 4] = [
            (
                "tidepool_ingest_messages_total",
                "Messages committed to bronze tables",
                |s| s.messages.load(Ordering::Relaxed),
            ),
            (
                "tidepool_ingest_bytes_total",
                "Message bytes consumed and committed",
                |s| s.bytes.load(Ordering::Relaxed),
            ),
            (
                "tidepool_ingest_commits_total",
                "Delta commits of bronze tables",
                |s| s.commits.load(Ordering::Relaxed),
            ),
            (
                "tidepool_ingest_dead_letters_total",
                "Messages sent to dead-letter tables",
                |s| s.dead_letters.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, get) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for s in &sources {
                let _ = writeln!(out, "{name}{{source=\"{}\"}} {}", s.name, get(s));
            }
        }
        let _ = writeln!(
            out,
            "# HELP tidepool_ingest_lag Messages on the broker not yet in the lake\n# TYPE tidepool_ingest_lag gauge"
        );
        for s in &sources {
            for ((t, p), st) in s.partitions.lock().iter() {
                if let Some(lag) = st.lag() {
                    let _ = writeln!(
                        out,
                        "tidepool_ingest_lag{{source=\"{}\",topic=\"{}\",partition=\"{p}\"}} {lag}",
                        s.name,
                        t.replace('"', "")
                    );
                }
            }
        }
        let _ = writeln!(
            out,
            "# HELP tidepool_ingest_broker_up Whether the source's Kafka brokers answer (0: unresponsive or down)\n# TYPE tidepool_ingest_broker_up gauge"
        );
        let now = Utc::now();
        let mut contacts = Vec::new();
        for s in &sources {
            let b = s.broker.lock().clone();
            let up = match b.state {
                BrokerState::Up => 1,
                BrokerState::Unresponsive | BrokerState::Down => 0,
                BrokerState::Unknown => continue,
            };
            let _ = writeln!(
                out,
                "tidepool_ingest_broker_up{{source=\"{}\"}} {up}",
                s.name
            );
            if let Some(t) = b.last_contact {
                contacts.push((s.name.clone(), (now - t).as_seconds_f64().max(0.0)));
            }
        }
        let _ = writeln!(
            out,
            "# HELP tidepool_ingest_broker_silent_seconds Seconds since a Kafka broker of the source last sent anything\n# TYPE tidepool_ingest_broker_silent_seconds gauge"
        );
        for (name, secs) in contacts {
            let _ = writeln!(
                out,
                "tidepool_ingest_broker_silent_seconds{{source=\"{name}\"}} {secs:.1}"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_health_reaches_system_ingest_and_metrics() {
        let status = IngestStatus::default();
        let s = SourceStatus::new("orders");
        s.stored("orders", 0, Some(9));
        status.add(s.clone());
        let quiet = status.prometheus();
        assert!(!quiet.contains("tidepool_ingest_broker_up{"), "{quiet}");
        let contact = Utc::now() - chrono::TimeDelta::seconds(7);
        *s.broker.lock() = BrokerHealth {
            state: BrokerState::Unresponsive,
            last_contact: Some(contact),
            broker: Some("b:9092".into()),
        };
        let text = status.prometheus();
        assert!(
            text.contains("tidepool_ingest_broker_up{source=\"orders\"} 0"),
            "{text}"
        );
        let silent: f64 = text
            .lines()
            .find_map(|l| {
                l.strip_prefix("tidepool_ingest_broker_silent_seconds{source=\"orders\"} ")
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or_default();
        assert!((7.0..9.0).contains(&silent), "{text}");
        let batch = status.batch().expect("batch");
        let state = batch.column_by_name("broker_state").and_then(|c| {
            c.as_any()
                .downcast_ref::<StringArray>()
                .map(|a| a.value(0).to_string())
        });
        assert_eq!(state.as_deref(), Some("unresponsive"));
        let at = batch.column_by_name("last_broker_contact").and_then(|c| {
            c.as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .map(|a| a.value(0))
        });
        assert_eq!(at, Some(contact.timestamp_micros()));
    }
}
