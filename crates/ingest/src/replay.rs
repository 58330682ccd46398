//! Pausing, resuming and replaying a running source (the admin API's PauseSource,
//! ResumeSource and ReplaySource). A replay from a point in time starts, per partition, at
//! the first offset the lake holds with a Kafka timestamp at or after it.
//!
//! A replay re-reads a source from an offset or a point in time: the source is paused
//! (what its consumer holds is committed first), then one Delta commit per table removes
//! the rows from that offset on and sets each partition's stored offset (`txn`) back to
//! just before it, so bronze and its dead letters move to a fresh version together. The
//! consumer then reads its start offsets from the lake again and consumes from there, so
//! nothing is written twice. A replay that would delete rows the broker no longer has
//! (retention moved past the offset) is refused.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use rdkafka::consumer::{BaseConsumer, Consumer};

use super::sink::app_id;
use super::{BRONZE, Ingest, IngestError, dead_letter_table};

/// Where a replay starts.
#[derive(Debug, Clone)]
pub enum ReplayFrom {
    /// The same offset in every partition.
    Offset(i64),
    /// An offset per partition; partitions not listed are not replayed.
    Offsets(BTreeMap<(String, i32), i64>),
}

/// One partition a replay re-reads.
#[derive(Debug, Clone)]
pub struct ReplayedPartition {
    pub topic: String,
    pub partition: i32,
    /// First offset re-read.
    pub from: i64,
    /// Last offset the lake held before the replay: the replay is done when the source
    /// has committed it again.
    pub through: i64,
}

/// What [`Ingest::replay_reset`] did.
#[derive(Debug, Clone, Default)]
pub struct ReplayReset {
    pub partitions: Vec<ReplayedPartition>,
    /// The bronze version that removed the rows (None: nothing to replay).
    pub version: Option<i64>,
    /// Whether the source was paused before the replay (it is resumed either way).
    pub was_paused: bool,
}

/// How long a source may take to commit what it holds and pause.
const PAUSE_WAIT: Duration = Duration::from_secs(60);

impl Ingest {
    /// Pauses (`true`) or resumes a source; returns once the consumer has committed what
    /// it held and stopped fetching (pause) or was told to go on (resume).
    pub async fn set_paused(&self, source: &str, paused: bool) -> Result<(), IngestError> {
        let status = self
            .status
            .get(source)
            .ok_or_else(|| IngestError::UnknownSource(source.to_string()))?;
        status.paused.store(paused, Ordering::Release);
        if !paused || !status.running.load(Ordering::Relaxed) {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + PAUSE_WAIT;
        while !status.pause_applied.load(Ordering::Acquire) {
            if tokio::time::Instant::now() >= deadline {
                return Err(IngestError::Timeout(format!(
                    "source {source} did not pause within {} s (a commit retrying?); it pauses once it can",
                    PAUSE_WAIT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// The partitions of `source` and the offset a replay from `from` starts at in each,
    /// for the partitions the lake holds rows of.
    pub async fn replay_plan(
        &self,
        source: &str,
        from: ReplayFrom,
    ) -> Result<Vec<ReplayedPartition>, IngestError> {
        let src = self
            .sources
            .iter()
            .find(|s| s.name == source)
            .ok_or_else(|| IngestError::UnknownSource(source.to_string()))?
            .clone();
        let brokers = self.brokers.clone();
        // Broker facts, read with a consumer that joins no group.
        let facts = tokio::task::spawn_blocking(move || -> Result<_, IngestError> {
            let consumer: BaseConsumer = super::consumer::client_config(&src, &brokers)
                .create()
                .map_err(|e| IngestError::Kafka(format!("cannot create consumer: {e}")))?;
            let timeout = Duration::from_secs(10);
            let mut out = Vec::new();
            for topic in &src.topics {
                let md = consumer
                    .fetch_metadata(Some(topic), timeout)
                    .map_err(|e| IngestError::Kafka(format!("metadata of {topic}: {e}")))?;
                for t in md.topics() {
                    for p in t.partitions() {
                        let (low, _) = consumer
                            .fetch_watermarks(topic, p.id(), timeout)
                            .map_err(|e| IngestError::Kafka(format!("watermarks: {e}")))?;
                        let start = match &from {
                            ReplayFrom::Offset(o) => *o,
                            ReplayFrom::Offsets(m) => match m.get(&(topic.clone(), p.id())) {
                                Some(o) => *o,
                                None => continue,
                            },
                        };
                        out.push((topic.clone(), p.id(), low, start));
                    }
                }
            }
            Ok(out)
        })
        .await??;
        let ids: Vec<String> = facts
            .iter()
            .map(|(t, p, _, _)| app_id(&self.prefix(source), t, *p))
            .collect();
        let bronze = super::sink::Sink::open(
            self.lake.clone(),
            BRONZE,
            source,
            self.maintenance.checkpoint_interval,
        )
        .await?;
        let stored = bronze.stored_offsets(ids.clone()).await?;
        let mut plan = Vec::new();
        for ((topic, partition, low, start), id) in facts.into_iter().zip(ids) {
            let Some(&through) = stored.get(&id) else {
                continue;
            };
            let start = start.max(0);
            if start > through {
                continue;
            }
            if start < low {
                return Err(IngestError::Refused(format!(
                    "{topic} partition {partition} starts at offset {low} on the broker (retention); \
                     replaying from {start} would delete rows it cannot read again"
                )));
            }
            plan.push(ReplayedPartition {
                topic,
                partition,
                from: start,
                through,
            });
        }
        Ok(plan)
    }

    /// Pauses `source`, removes the rows of `plan` from bronze and its dead letters with
    /// the stored offsets set back (one commit per table), then has the consumer read its
    /// offsets from the lake again and resumes it.
    pub async fn replay_reset(
        &self,
        source: &str,
        plan: Vec<ReplayedPartition>,
    ) -> Result<ReplayReset, IngestError> {
        let status = self
            .status
            .get(source)
            .ok_or_else(|| IngestError::UnknownSource(source.to_string()))?;
        if !status.running.load(Ordering::Relaxed) {
            return Err(IngestError::Refused(format!(
                "source {source} is not consuming (see system.ingest last_error)"
            )));
        }
        let was_paused = status.paused.load(Ordering::Acquire);
        let mut out = ReplayReset {
            partitions: plan,
            version: None,
            was_paused,
        };
        if out.partitions.is_empty() {
            return Ok(out);
        }
        if let Err(e) = self.set_paused(source, true).await {
            status.paused.store(was_paused, Ordering::Release);
            return Err(e);
        }
        let result = self.remove_replayed(source, &out.partitions).await;
        if result.is_ok() {
            // What the lake holds now; commits of the re-read move it up again.
            for p in &out.partitions {
                status.stored(&p.topic, p.partition, Some(p.from - 1));
            }
        }
        // Resume either way: after a failed reset the lake still holds what it held.
        status.reposition.store(true, Ordering::Release);
        status.paused.store(false, Ordering::Release);
        out.version = result?;
        Ok(out)
    }

    async fn remove_replayed(
        &self,
        source: &str,
        plan: &[ReplayedPartition],
    ) -> Result<Option<i64>, IngestError> {
        let prefix = self.prefix(source);
        let predicate = rows_filter(plan, false);
        let txns: Vec<Transaction> = plan
            .iter()
            .map(|p| Transaction::new(app_id(&prefix, &p.topic, p.partition), p.from - 1))
            .collect();
        let mut version = None;
        for name in [source.to_string(), dead_letter_table(source)] {
            let Some(table) = self.lake.table(BRONZE, &name).await? else {
                continue;
            };
            let mut meta = serde_json::Map::new();
            meta.insert("tidepool.replay".into(), serde_json::json!(source));
            let props = CommitProperties::default()
                .with_application_transactions(txns.clone())
                .with_metadata(meta);
            let (table, metrics) = table
                .delete()
                .with_predicate(predicate.clone())
                .with_commit_properties(props)
                .await
                .map_err(IngestError::delta)?;
            tracing::info!(table = %format!("{BRONZE}.{name}"), version = ?table.version(),
                removed = ?metrics.num_deleted_rows, "replay: rows removed, offsets set back");
            if name == source {
                version = table.version().map(|v| v as i64);
            }
        }
        let _ = self.lake.refresh().await;
        Ok(version)
    }
}

/// SQL filter for the rows of `plan` in bronze or its dead letters: from each partition's
/// start offset on, or only up to the offset the lake held before the replay (`bounded`).
pub fn rows_filter(plan: &[ReplayedPartition], bounded: bool) -> String {
    plan.iter()
        .map(|p| {
            let upper = if bounded {
                format!(" AND \"_offset\" <= {}", p.through)
            } else {
                String::new()
            };
            format!(
                "(\"_topic\" = '{}' AND \"_partition\" = {} AND \"_offset\" >= {}{upper})",
                p.topic.replace('\'', "''"),
                p.partition,
                p.from
            )
        })
        .collect::<Vec<_>>()
        .join(" OR ")
}

/// Reads a replay start time: RFC 3339, or `YYYY-MM-DD[ HH:MM[:SS]]` in UTC.
pub fn parse_time(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    use chrono::{NaiveDate, NaiveDateTime, TimeZone, Utc};
    let t = text.trim();
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(t) {
        return Some(d.with_timezone(&Utc));
    }
    for f in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(n) = NaiveDateTime::parse_from_str(t, f) {
            return Some(Utc.from_utc_datetime(&n));
        }
    }
    NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|n| Utc.from_utc_datetime(&n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_times() {
        let want = chrono::DateTime::parse_from_rfc3339("2026-11-24T10:00:00Z").unwrap();
        for t in [
            "2026-11-24T10:00:00Z",
            "2026-11-24T11:00:00+01:00",
            "2026-11-24 10:00:00",
            "2026-11-24 10:00",
        ] {
            assert_eq!(parse_time(t), Some(want.with_timezone(&chrono::Utc)), "{t}");
        }
        assert!(parse_time("2026-11-24").is_some());
        assert!(parse_time("yesterday").is_none());
    }
}
