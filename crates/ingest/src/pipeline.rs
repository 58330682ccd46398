//! The writer side of a source: takes raw batches from the consumer thread, decodes them,
//! commits dead letters and then bronze rows with their offsets, and answers the
//! consumer's questions ("where do these partitions resume?", "is everything I sent
//! committed?"). Decoding and committing are two stages, so batch N+1 is decoded while
//! batch N is written; commands keep their order through both. Failed commits are
//! retried with backoff and never skipped: rows reach the lake or the offsets do not move.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::IngestError;
use super::batch::{RawBatch, RawMessage};
use super::decode::{DeadLetter, Decoded, JsonDecoder, dead_letter_batch};
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
    /// Partitions whose entries in `committed` and `dead_committed` were read from the
    /// snapshots commits are made against, at the sinks' generations `verified_at`.
    verified: HashSet<TopicPartition>,
    verified_at: (u64, u64),
    /// This process's node name, kept in each commit's metadata (`tidepool.node`).
    node: String,
    status: Arc<SourceStatus>,
    group_offsets: GroupOffsets,
    cancel: CancellationToken,
}

impl Pipeline {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        source: &str,
        node: &str,
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
            verified: HashSet::new(),
            verified_at: (0, 0),
            node: node.to_string(),
            status,
            group_offsets,
            cancel,
        }
    }

    /// Serves commands until every sender is gone.
    pub async fn run(mut self, rx: mpsc::Receiver<Command>) {
        let Some(decoder) = self.decoder.take() else {
            tracing::error!(source = %self.source, "pipeline started without a decoder");
            return;
        };
        let (tx, mut decoded) = mpsc::channel(1);
        let decoding = tokio::spawn(decode_stage(self.source.clone(), decoder, rx, tx));
        while let Some(step) = decoded.recv().await {
            match step {
                Step::Decoded(p) => self.handle_batch(p).await,
                Step::Barrier(reply) => {
                    let _ = reply.send(());
                }
                Step::Offsets { partitions, reply } => {
                    let _ = reply.send(self.offsets(partitions).await);
                }
            }
        }
        let _ = decoding.await;
    }

    async fn offsets(
        &mut self,
        partitions: Vec<TopicPartition>,
    ) -> Result<HashMap<TopicPartition, i64>, IngestError> {
        self.bronze.reload().await?;
        self.dead.reload().await?;
        self.read_offsets(&partitions).await
    }

    /// Reads the offsets the sinks' snapshots hold for `partitions` into `committed` and
    /// `dead_committed`, and notes them exact at the sinks' current generations.
    async fn read_offsets(
        &mut self,
        partitions: &[TopicPartition],
    ) -> Result<HashMap<TopicPartition, i64>, IngestError> {
        self.forget_stale();
        let ids: Vec<String> = partitions
            .iter()
            .map(|(t, p)| app_id(&self.prefix, t, *p))
            .collect();
        let stored = self.bronze.stored_offsets(ids.clone()).await?;
        let dead = self.dead.stored_offsets(ids.clone()).await?;
        let mut out = HashMap::new();
        for (tp, id) in partitions.iter().zip(ids) {
            match dead.get(&id) {
                Some(v) => self.dead_committed.insert(tp.clone(), *v),
                None => self.dead_committed.remove(tp),
            };
            match stored.get(&id) {
                Some(v) => {
                    self.committed.insert(tp.clone(), *v);
                    out.insert(tp.clone(), *v);
                }
                None => {
                    self.committed.remove(tp);
                }
            }
            self.verified.insert(tp.clone());
        }
        Ok(out)
    }

    /// Forgets which offsets are exact when a sink's snapshot may hold other writers'
    /// commits ([`Sink::generation`]).
    fn forget_stale(&mut self) {
        let now = (self.bronze.generation(), self.dead.generation());
        if now != self.verified_at {
            self.verified.clear();
            self.verified_at = now;
        }
        // Other writers' offsets read from their own commits keep the rest exact.
        let (bronze, dead) = (self.bronze.take_foreign(), self.dead.take_foreign());
        if bronze.is_empty() && dead.is_empty() {
            return;
        }
        let ids: HashMap<String, TopicPartition> = self
            .verified
            .iter()
            .map(|(t, p)| (app_id(&self.prefix, t, *p), (t.clone(), *p)))
            .collect();
        for (foreign, committed) in [
            (bronze, &mut self.committed),
            (dead, &mut self.dead_committed),
        ] {
            for (id, v) in foreign {
                if let Some(tp) = ids.get(&id) {
                    let c = committed.entry(tp.clone()).or_insert(v);
                    *c = (*c).max(v);
                }
            }
        }
    }

    /// Makes `committed` exact for the partitions of `batch` against the snapshots the
    /// commit is made against: a partition another node wrote (a zombie's late commit,
    /// owners overlapping in a rebalance) that is already in the snapshot is not a
    /// conflict for Delta, so its offsets are read before rows are chosen.
    async fn verify(&mut self, batch: &RawBatch) -> Result<(), IngestError> {
        self.forget_stale();
        let stale: Vec<TopicPartition> = batch
            .last_offsets(&(0..batch.len()).collect::<Vec<_>>())
            .into_keys()
            .map(|(t, p)| (t.to_string(), p))
            .filter(|tp| !self.verified.contains(tp))
            .collect();
        if !stale.is_empty() {
            self.read_offsets(&stale).await?;
        }
        Ok(())
    }

    async fn handle_batch(&mut self, prepared: Prepared) {
        let batch = prepared.batch.clone();
        let mut attempt: u32 = 0;
        loop {
            match self.commit_batch(&prepared).await {
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

    /// Commits a decoded batch: what the tables do not hold yet (after a rebalance or a
    /// conflict some of it may be there already).
    async fn commit_batch(&mut self, prepared: &Prepared) -> Result<(), IngestError> {
        let Prepared {
            batch,
            decoded,
            schema,
            now,
        } = prepared;
        let (batch, now) = (batch.as_ref(), *now);
        self.verify(batch).await?;
        let new_in_bronze = not_yet_in(batch, &self.committed);
        let live: Vec<usize> = (0..batch.len())
            .filter(|&i| new_in_bronze(&batch.messages[i]))
            .collect();
        if live.is_empty() {
            return Ok(());
        }
        let (rows, dead_letters) = if live.len() == batch.len() {
            (decoded.rows.clone(), decoded.dead.clone())
        } else {
            let keep = |i: usize| new_in_bronze(&batch.messages[i]);
            let mut rows = Vec::new();
            for (r, idx) in decoded.rows.iter().zip(&decoded.indices) {
                let mask: arrow::array::BooleanArray = idx.iter().map(|&i| Some(keep(i))).collect();
                rows.push(arrow::compute::filter_record_batch(r, &mask)?);
            }
            let dead = decoded
                .dead
                .iter()
                .filter(|d| keep(d.index))
                .cloned()
                .collect();
            (rows, dead)
        };

        // Dead letters first: once the bronze offsets move past them they are never read again.
        let new_in_dead = not_yet_in(batch, &self.dead_committed);
        let dead: Vec<DeadLetter> = dead_letters
            .iter()
            .filter(|d| new_in_dead(&batch.messages[d.index]))
            .cloned()
            .collect();
        if !dead.is_empty() {
            let rows = dead_letter_batch(batch, &dead, now)?;
            let idx: Vec<usize> = dead.iter().map(|d| d.index).collect();
            let offsets = self.app_offsets(batch, &idx);
            let mut meta = serde_json::Map::new();
            meta.insert("tidepool.source".into(), self.source.clone().into());
            meta.insert("tidepool.node".into(), self.node.clone().into());
            self.dead
                .commit(&rows.schema(), vec![rows], &offsets.0, meta)
                .await?;
            for (tp, v) in offsets.1 {
                self.dead_committed.insert(tp, v);
            }
        }

        let (offsets, per_tp) = self.app_offsets(batch, &live);
        let row_count: usize = rows.iter().map(RecordBatch::num_rows).sum();
        let mut meta = serde_json::Map::new();
        meta.insert("tidepool.source".into(), self.source.clone().into());
        meta.insert("tidepool.node".into(), self.node.clone().into());
        meta.insert("tidepool.messages".into(), row_count.into());
        meta.insert("tidepool.dead_letters".into(), dead_letters.len().into());
        let version = self.bronze.commit(schema, rows, &offsets, meta).await?;

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
        for d in &dead_letters {
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
        tracing::debug!(source = %self.source, version, rows = row_count, dead = dead_letters.len(), "committed");
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

/// What the decode stage hands the commit stage.
enum Step {
    Decoded(Prepared),
    /// [`Command::Barrier`], in its place among the batches.
    Barrier(oneshot::Sender<()>),
    /// [`Command::Offsets`], in its place among the batches.
    Offsets {
        partitions: Vec<TopicPartition>,
        reply: oneshot::Sender<Result<HashMap<TopicPartition, i64>, IngestError>>,
    },
}

/// A batch with its decoded rows and dead letters.
struct Prepared {
    batch: Arc<RawBatch>,
    decoded: Decoded,
    /// The table schema the rows are in.
    schema: SchemaRef,
    /// `_ingested_at` of the rows, microseconds.
    now: i64,
}

/// Decodes batches in arrival order and passes them, and every other command in its
/// place, to the commit stage.
async fn decode_stage(
    source: String,
    mut decoder: JsonDecoder,
    mut rx: mpsc::Receiver<Command>,
    tx: mpsc::Sender<Step>,
) {
    while let Some(cmd) = rx.recv().await {
        // Wait for room first: at most one decoded batch waits for the committer, so
        // memory holds two decoded batches, not a queue of them.
        let Ok(permit) = tx.reserve().await else {
            return;
        };
        let step = match cmd {
            Command::Batch(mut batch) => {
                batch.freeze();
                let batch = Arc::new(batch);
                let now = chrono::Utc::now().timestamp_micros();
                let spare = decoder.clone();
                let job = batch.clone();
                let (d, decoded) = match tokio::task::spawn_blocking(move || {
                    let all: Vec<usize> = (0..job.len()).collect();
                    let decoded = decoder.decode(&job, &all, now);
                    (decoder, decoded)
                })
                .await
                {
                    Ok(done) => done,
                    // Never lose messages to a decoder fault: they become dead letters.
                    Err(e) => {
                        tracing::error!(source = %source, error = %e, "decoder failed; the batch goes to dead letters");
                        let dead = (0..batch.len())
                            .map(|index| DeadLetter {
                                index,
                                reason: "internal decoder failure".into(),
                            })
                            .collect();
                        let decoded = Decoded {
                            dead,
                            ..Decoded::default()
                        };
                        (spare, decoded)
                    }
                };
                decoder = d;
                let schema = decoder.table_schema();
                if decoded.schema_changed {
                    tracing::info!(source = %source, columns = schema.fields().len(), "bronze schema widened");
                }
                Step::Decoded(Prepared {
                    batch,
                    decoded,
                    schema,
                    now,
                })
            }
            Command::Barrier(reply) => Step::Barrier(reply),
            Command::Offsets { partitions, reply } => Step::Offsets { partitions, reply },
        };
        permit.send(step);
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

#[cfg(test)]
mod tests {
    use super::*;
    use tidepool_lake::{Lake, LakeConfig};

    /// A pipeline of source `s` writing to `lake`, as a node named `node` runs it.
    async fn start(lake: &Arc<Lake>, node: &str) -> mpsc::Sender<Command> {
        let bronze = Sink::open(lake.clone(), "bronze", "s", 100).await.unwrap();
        let dead = Sink::open(lake.clone(), "bronze", "s__dead_letters", 100)
            .await
            .unwrap();
        let decoder = JsonDecoder::new(
            Arc::new(arrow::datatypes::Schema::empty()),
            false,
            true,
            1 << 20,
        );
        let pipeline = Pipeline::new(
            "s",
            node,
            "tidepool:s".into(),
            bronze,
            dead,
            decoder,
            SourceStatus::new("s"),
            GroupOffsets::default(),
            CancellationToken::new(),
        );
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(pipeline.run(rx));
        tx
    }

    fn batch(partition: i32, offsets: std::ops::Range<i64>) -> Command {
        let mut b = RawBatch::default();
        for o in offsets {
            let value = format!("{{\"n\": {o}}}");
            b.push(
                "t",
                partition,
                o,
                None,
                None,
                Some(value.as_bytes()),
                Vec::new(),
            );
        }
        Command::Batch(b)
    }

    async fn offsets(
        tx: &mpsc::Sender<Command>,
        partitions: &[i32],
    ) -> HashMap<TopicPartition, i64> {
        let (reply, answer) = oneshot::channel();
        let partitions = partitions.iter().map(|p| ("t".to_string(), *p)).collect();
        tx.send(Command::Offsets { partitions, reply })
            .await
            .unwrap();
        answer.await.unwrap().unwrap()
    }

    async fn barrier(tx: &mpsc::Sender<Command>) {
        let (reply, done) = oneshot::channel();
        tx.send(Command::Barrier(reply)).await.unwrap();
        done.await.unwrap();
    }

    /// The rows of `bronze.s` and the node names in its commits' metadata.
    async fn landed(lake: &Arc<Lake>) -> (usize, Vec<String>) {
        let t = lake.table("bronze", "s").await.unwrap().unwrap();
        let rows = t
            .snapshot()
            .unwrap()
            .log_data()
            .iter()
            .map(|f| f.num_records().unwrap_or(0))
            .sum();
        use futures::StreamExt;
        let mut nodes: Vec<String> = t
            .history(None)
            .filter_map(|c| async move {
                let c = c.unwrap();
                c.info.get("tidepool.node")?.as_str().map(str::to_string)
            })
            .collect()
            .await;
        nodes.sort();
        nodes.dedup();
        (rows, nodes)
    }

    /// Two nodes own partition 0 at once (a zombie, or a rebalance that overlaps). Node b
    /// read partition 0's offsets before node a committed it, then re-read the table for
    /// partition 1 only: its snapshot now holds a's commit of partition 0, which Delta's
    /// conflict check does not see (it only checks commits made after the snapshot).
    /// Committing the same messages must not land them twice.
    #[tokio::test]
    async fn a_partition_another_node_committed_is_not_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(&LakeConfig {
            root: dir.path().display().to_string(),
            ..Default::default()
        })
        .unwrap();
        let a = start(&lake, "node-a").await;
        a.send(batch(1, 0..5)).await.unwrap();
        barrier(&a).await;
        let b = start(&lake, "node-b").await;
        assert!(offsets(&b, &[0]).await.is_empty());
        a.send(batch(0, 0..10)).await.unwrap();
        barrier(&a).await;
        assert_eq!(offsets(&b, &[1]).await.get(&("t".to_string(), 1)), Some(&4));
        b.send(batch(0, 0..12)).await.unwrap();
        barrier(&b).await;
        let (rows, nodes) = landed(&lake).await;
        assert_eq!(rows, 5 + 12, "offsets 0..10 of partition 0 landed once");
        assert_eq!(nodes, ["node-a", "node-b"]);
    }
}
