//! The writer side of a source: takes raw batches from the consumer thread, decodes them,
//! commits dead letters and then bronze rows with their offsets, and answers the
//! consumer's questions ("where do these partitions resume?", "is everything I sent
//! committed?"). Failed commits are retried with backoff and never skipped: rows reach
//! the lake or the offsets do not move.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::IngestError;
use super::batch::{RawBatch, RawMessage};
use super::decode::{DeadLetter, JsonDecoder, dead_letter_batch};
use super::sink::{Sink, app_id};
use super::status::SourceStatus;

/// A topic and partition.
pub type TopicPartition = (String, i32);

/// Requests from the consumer thread.
pub enum Command {
    Batch(RawBatch),
    /// Answered once everything sent before it is committed.
    Barrier(oneshot::Sender<()>),
    /// The last committed offset of each partition, read from the table now.
    Offsets {
        partitions: Vec<TopicPartition>,
        reply: oneshot::Sender<Result<HashMap<TopicPartition, i64>, IngestError>>,
    },
}

/// Offsets committed to the lake that the consumer may report to its group.
pub type GroupOffsets = Arc<Mutex<HashMap<TopicPartition, i64>>>;

/// The writer of one source.
pub struct Pipeline {
    source: String,
    prefix: String,
    bronze: Sink,
    dead: Sink,
    decoder: Option<JsonDecoder>,
    committed: HashMap<TopicPartition, i64>,
    dead_committed: HashMap<TopicPartition, i64>,
    status: Arc<SourceStatus>,
    group_offsets: GroupOffsets,
    cancel: CancellationToken,
}

impl Pipeline {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        source: &str,
        prefix: String,
        bronze: Sink,
        dead: Sink,
        decoder: JsonDecoder,
        status: Arc<SourceStatus>,
        group_offsets: GroupOffsets,
        cancel: CancellationToken,
    ) -> Pipeline {
        Pipeline {
            source: source.to_string(),
            prefix,
            bronze,
            dead,
            decoder: Some(decoder),
            committed: HashMap::new(),
            dead_committed: HashMap::new(),
            status,
            group_offsets,
            cancel,
        }
    }

    /// Serves commands until every sender is gone.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        while let Some(cmd) = rx.recv().await {
            match cmd {
                Command::Batch(batch) => self.handle_batch(Arc::new(batch)).await,
                Command::Barrier(reply) => {
                    let _ = reply.send(());
                }
                Command::Offsets { partitions, reply } => {
                    let _ = reply.send(self.offsets(partitions).await);
                }
            }
        }
    }

    async fn offsets(
        &mut self,
        partitions: Vec<TopicPartition>,
    ) -> Result<HashMap<TopicPartition, i64>, IngestError> {
        self.bronze.reload().await?;
        self.dead.reload().await?;
        let ids: Vec<String> = partitions
            .iter()
            .map(|(t, p)| app_id(&self.prefix, t, *p))
            .collect();
        let stored = self.bronze.stored_offsets(ids.clone()).await?;
        let dead = self.dead.stored_offsets(ids.clone()).await?;
        let mut out = HashMap::new();
        for (tp, id) in partitions.into_iter().zip(ids) {
            if let Some(v) = dead.get(&id) {
                self.dead_committed.insert(tp.clone(), *v);
            }
            match stored.get(&id) {
                Some(v) => {
                    self.committed.insert(tp.clone(), *v);
                    out.insert(tp, *v);
                }
                None => {
                    self.committed.remove(&tp);
                }
            }
        }
        Ok(out)
    }

    async fn handle_batch(&mut self, batch: Arc<RawBatch>) {
        let mut attempt: u32 = 0;
        loop {
            match self.commit_batch(batch.clone()).await {
                Ok(()) => {
                    if attempt > 0 {
                        tracing::info!(source = %self.source, "commit succeeded after retry");
                    }
                    self.status.set_error(None);
                    return;
                }
                Err(e) => {
                    attempt += 1;
                    self.status.set_error(Some(e.to_string()));
                    if self.cancel.is_cancelled() && attempt >= 3 {
                        tracing::error!(source = %self.source, error = %e,
                            "giving up on the batch in flight at shutdown; it is consumed again on the next start");
                        return;
                    }
                    let wait = Duration::from_millis(200u64 << attempt.min(7))
                        .min(Duration::from_secs(30));
                    tracing::warn!(source = %self.source, error = %e, attempt, retry_in_ms = wait.as_millis() as u64,
                        "commit failed; retrying");
                    tokio::time::sleep(wait).await;
                    // Re-read what the tables hold: a conflict means another writer moved on.
                    let parts: Vec<TopicPartition> = batch
                        .last_offsets(&(0..batch.len()).collect::<Vec<_>>())
                        .into_keys()
                        .map(|(t, p)| (t.to_string(), p))
                        .collect();
                    if let Err(e) = self.offsets(parts).await {
                        tracing::warn!(source = %self.source, error = %e, "cannot read offsets");
                    }
                }
            }
        }
    }

    async fn commit_batch(&mut self, batch: Arc<RawBatch>) -> Result<(), IngestError> {
        let new_in_bronze = not_yet_in(&batch, &self.committed);
        let live: Vec<usize> = (0..batch.len())
            .filter(|&i| new_in_bronze(&batch.messages[i]))
            .collect();
        if live.is_empty() {
            return Ok(());
        }
        let now = chrono::Utc::now().timestamp_micros();
        let mut decoder = self
            .decoder
            .take()
            .ok_or_else(|| IngestError::Internal("decoder lost".into()))?;
        let job_batch = batch.clone();
        let job_live = live.clone();
        let (decoder, decoded) = tokio::task::spawn_blocking(move || {
            let decoded = decoder.decode(&job_batch, &job_live, now);
            (decoder, decoded)
        })
        .await
        .map_err(|e| IngestError::Internal(format!("decoder task failed: {e}")))?;
        let schema = decoder.table_schema();
        self.decoder = Some(decoder);
        if decoded.schema_changed {
            tracing::info!(source = %self.source, columns = schema.fields().len(), "bronze schema widened");
        }

        // Dead letters first: once the bronze offsets move past them they are never read again.
        let new_in_dead = not_yet_in(&batch, &self.dead_committed);
        let dead: Vec<DeadLetter> = decoded
            .dead
            .iter()
            .filter(|d| new_in_dead(&batch.messages[d.index]))
            .cloned()
            .collect();
        if !dead.is_empty() {
            let rows = dead_letter_batch(&batch, &dead, now)?;
            let idx: Vec<usize> = dead.iter().map(|d| d.index).collect();
            let offsets = self.app_offsets(&batch, &idx);
            let mut meta = serde_json::Map::new();
            meta.insert("tidepool.source".into(), self.source.clone().into());
            self.dead
                .commit(&rows.schema(), vec![rows], &offsets.0, meta)
                .await?;
            for (tp, v) in offsets.1 {
                self.dead_committed.insert(tp, v);
            }
        }

        let (offsets, per_tp) = self.app_offsets(&batch, &live);
        let rows = decoded.row_count();
        let mut meta = serde_json::Map::new();
        meta.insert("tidepool.source".into(), self.source.clone().into());
        meta.insert("tidepool.messages".into(), rows.into());
        meta.insert("tidepool.dead_letters".into(), decoded.dead.len().into());
        let version = self
            .bronze
            .commit(&schema, decoded.rows, &offsets, meta)
            .await?;

        // Per (topic index, partition): last offset, rows, dead letters.
        let mut counts: BTreeMap<(usize, i32), (i64, u64, u64)> = BTreeMap::new();
        for &i in &live {
            let m = &batch.messages[i];
            let e = counts
                .entry((m.topic, m.partition))
                .or_insert((m.offset, 0, 0));
            e.0 = e.0.max(m.offset);
            e.1 += 1;
        }
        for d in &decoded.dead {
            let m = &batch.messages[d.index];
            if let Some(e) = counts.get_mut(&(m.topic, m.partition)) {
                e.1 -= 1;
                e.2 += 1;
            }
        }
        let stats: BTreeMap<TopicPartition, (i64, u64, u64)> = counts
            .into_iter()
            .map(|((t, p), v)| ((batch.topics[t].to_string(), p), v))
            .collect();
        let bytes: usize = live
            .iter()
            .filter_map(|&i| batch.messages[i].value.as_ref().map(|r| r.len()))
            .sum();
        self.status.committed(&stats, bytes as u64);
        let mut group = self.group_offsets.lock();
        for (tp, v) in per_tp {
            self.committed.insert(tp.clone(), v);
            group.insert(tp, v);
        }
        tracing::debug!(source = %self.source, version, rows, dead = decoded.dead.len(), "committed");
        Ok(())
    }

    /// App ids with the last offset of each partition among `indices`.
    fn app_offsets(
        &self,
        batch: &RawBatch,
        indices: &[usize],
    ) -> (BTreeMap<String, i64>, Vec<(TopicPartition, i64)>) {
        let last = batch.last_offsets(indices);
        let ids = last
            .iter()
            .map(|((t, p), v)| (app_id(&self.prefix, t, *p), *v))
            .collect();
        let per_tp = last
            .into_iter()
            .map(|((t, p), v)| ((t.to_string(), p), v))
            .collect();
        (ids, per_tp)
    }
}

/// A test for "offset above what `committed` holds for its partition", resolved once per
/// batch so the per-message check allocates nothing.
fn not_yet_in<'a>(
    batch: &RawBatch,
    committed: &HashMap<TopicPartition, i64>,
) -> impl Fn(&RawMessage) -> bool + 'a {
    let known: Vec<(usize, i32, i64)> = committed
        .iter()
        .filter_map(|((t, p), c)| {
            let topic = batch.topics.iter().position(|x| &**x == t)?;
            Some((topic, *p, *c))
        })
        .collect();
    move |m: &RawMessage| {
        known
            .iter()
            .find(|(t, p, _)| *t == m.topic && *p == m.partition)
            .is_none_or(|(_, _, c)| m.offset > *c)
    }
}
