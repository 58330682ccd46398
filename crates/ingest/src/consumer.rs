//! The consumer side of a source: one OS thread polling librdkafka, collecting messages
//! into batches bounded by rows, bytes and latency, and handing them to the
//! [`Pipeline`](super::pipeline::Pipeline). On every assignment (group rebalance or manual)
//! each partition starts right after the offset stored in the bronze table, not where the
//! consumer group says; before partitions are revoked, everything already consumed is
//! committed. Messages at offsets the lake already holds are skipped, so nothing is
//! written twice. Broker outages are logged with backoff and ride on librdkafka's
//! reconnects.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::IngestError;
use super::batch::RawBatch;
use super::broker_health::{self, BrokerState};
use super::pipeline::{Command, GroupOffsets, TopicPartition};
use super::status::SourceStatus;
use crate::settings::{Source, StartOffset};

/// How partitions are obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignment {
    /// Join the consumer group; partitions are balanced between processes.
    Group,
    /// Read every partition of the topics, without group membership (batch runs).
    All,
}

/// What the consumer thread needs.
pub struct ConsumerJob {
    pub source: Source,
    pub brokers: String,
    /// `group.instance.id` under [`Assignment::Group`] (static membership: a restarted
    /// process rejoins as the member it was, without a rebalance), unless the source's
    /// properties name their own.
    pub instance: String,
    pub assignment: Assignment,
    pub until_caught_up: bool,
    pub tx: mpsc::Sender<Command>,
    pub status: Arc<SourceStatus>,
    pub group_offsets: GroupOffsets,
    pub cancel: CancellationToken,
    /// Told once everything consumed is committed, before the consumer closes (closing
    /// can hang while the broker is unreachable).
    pub done: Option<oneshot::Sender<()>>,
}

/// State shared by the poll loop and the rebalance callback (both on the consumer thread).
struct Shared {
    source: Source,
    tx: mpsc::Sender<Command>,
    status: Arc<SourceStatus>,
    cancel: CancellationToken,
    state: Mutex<LoopState>,
    errors: Mutex<ErrorLog>,
    brokers: Mutex<broker_health::Tracker>,
}

#[derive(Default)]
struct LoopState {
    buf: RawBatch,
    first_at: Option<Instant>,
    /// Next offset to accept per partition; offsets below it are already in the lake.
    next: Vec<(TopicPartition, i64)>,
    /// Where each assigned partition ends, for `--until-caught-up`.
    targets: HashMap<TopicPartition, i64>,
    /// Partitions resumed at a lake offset beyond the end the broker reported: their first
    /// message tells whether the broker had it (its end lagged) or started them over.
    probing: Vec<TopicPartition>,
}

impl LoopState {
    fn next_of(&self, topic: &str, partition: i32) -> Option<i64> {
        self.next
            .iter()
            .find(|((t, p), _)| *p == partition && t == topic)
            .map(|(_, n)| *n)
    }

    /// Settles a probed partition at its first message: the lake's next offset when the
    /// broker no longer had it and librdkafka reset the partition below it (the topic was
    /// deleted and created again). The lake's offsets stay the truth: lower ones count as
    /// ingested, so a recreated topic is ingested anew under a new source.
    fn first_message(&mut self, topic: &str, partition: i32, offset: i64) -> Option<i64> {
        let i = self
            .probing
            .iter()
            .position(|(t, p)| *p == partition && t == topic)?;
        self.probing.swap_remove(i);
        self.next_of(topic, partition).filter(|&n| offset < n)
    }

    fn set_next(&mut self, topic: &str, partition: i32, next: Option<i64>) {
        self.next
            .retain(|((t, p), _)| !(*p == partition && t == topic));
        if let Some(n) = next {
            self.next.push(((topic.to_string(), partition), n));
        }
    }
}

/// Rate-limits the broker-down log lines.
#[derive(Default)]
struct ErrorLog {
    down_since: Option<Instant>,
    last_logged: Option<Instant>,
}

impl ErrorLog {
    fn failed(&mut self, source: &str, what: &str) {
        let now = Instant::now();
        let since = *self.down_since.get_or_insert(now);
        if self
            .last_logged
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10))
        {
            self.last_logged = Some(now);
            tracing::warn!(
                source,
                error = what,
                down_for_s = since.elapsed().as_secs(),
                "Kafka unavailable; librdkafka keeps reconnecting"
            );
        }
    }

    fn recovered(&mut self, source: &str) {
        if let Some(since) = self.down_since.take() {
            self.last_logged = None;
            tracing::info!(
                source,
                down_for_s = since.elapsed().as_secs(),
                "Kafka reachable again"
            );
        }
    }
}

struct IngestContext {
    shared: Arc<Shared>,
}

impl ClientContext for IngestContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        let source = self.shared.source.name.as_str();
        if fac == "COMMITFAIL" {
            // A consumer-group offset commit that failed, typically while another source
            // of the same group joins or leaves (a rebalance). The offsets that count are
            // in the Delta table; the group's copy is for lag tools and catches up at the
            // next commit. Not a broker outage.
            tracing::debug!(source, message, "consumer group offset commit failed");
            return;
        }
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error
            | RDKafkaLogLevel::Warning => self
                .shared
                .errors
                .lock()
                .failed(source, &format!("{fac}: {message}")),
            _ => tracing::debug!(source, facility = fac, message, "librdkafka"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.shared
            .errors
            .lock()
            .failed(&self.shared.source.name, &format!("{error}: {reason}"));
    }

    fn stats(&self, statistics: Statistics) {
        for (topic, t) in &statistics.topics {
            for (p, st) in &t.partitions {
                if *p >= 0 && st.desired && st.hi_offset >= 0 {
                    self.shared.status.high_watermark(topic, *p, st.hi_offset);
                }
            }
        }
        self.shared.broker_health(&statistics);
    }
}

impl ConsumerContext for IngestContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.shared.position_from_lake(consumer, tpl);
                let r = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                if let Err(e) = r {
                    tracing::error!(source = %self.shared.source.name, error = %e, "assign failed");
                }
                // Partitions gained while paused stay paused.
                if self.shared.status.paused.load(Ordering::Relaxed) {
                    let _ = consumer.pause(tpl);
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                // Commit what was consumed from these partitions before another process
                // takes them over.
                self.shared.flush_and_wait();
                let mut st = self.shared.state.lock();
                for e in tpl.elements() {
                    st.set_next(e.topic(), e.partition(), None);
                    let tp = (e.topic().to_string(), e.partition());
                    st.targets.remove(&tp);
                    st.probing.retain(|p| *p != tp);
                }
                drop(st);
                let r = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                if let Err(e) = r {
                    tracing::warn!(source = %self.shared.source.name, error = %e, "unassign failed");
                }
            }
            other => {
                tracing::warn!(source = %self.shared.source.name, error = ?other, "rebalance error");
                let _ = consumer.unassign();
            }
        }
    }
}

impl Shared {
    /// Follows whether the brokers answer; logs when that changes.
    fn broker_health(&self, statistics: &Statistics) {
        let joining = statistics
            .cgrp
            .as_ref()
            .is_some_and(|g| g.join_state.starts_with("wait"));
        let samples = broker_health::samples(statistics);
        let (before, changed, health) = {
            let mut tracker = self.brokers.lock();
            let before = tracker.health().state;
            let changed = tracker.observe(chrono::Utc::now(), &samples, joining);
            (before, changed, tracker.health().clone())
        };
        *self.status.broker.lock() = health;
        let Some(h) = changed else { return };
        let source = self.source.name.as_str();
        let broker = h.broker.as_deref().unwrap_or("");
        let silent_for_s = h
            .last_contact
            .map(|t| (chrono::Utc::now() - t).num_seconds());
        match h.state {
            BrokerState::Unresponsive => tracing::warn!(
                source,
                broker,
                ?silent_for_s,
                "Kafka broker not answering: requests wait and nothing came back"
            ),
            BrokerState::Down => {
                tracing::warn!(source, broker, ?silent_for_s, "Kafka broker not connected")
            }
            BrokerState::Up if before != BrokerState::Unknown => {
                tracing::info!(source, "Kafka brokers answering again")
            }
            BrokerState::Up | BrokerState::Unknown => {}
        }
    }

    /// Sends the buffered batch to the pipeline.
    fn flush(&self) {
        let batch = {
            let mut st = self.state.lock();
            st.first_at = None;
            // The next batch is likely the size of this one: room for it up front spares
            // the copies of a growing buffer.
            let next = RawBatch::with_capacity(st.buf.len(), st.buf.bytes());
            std::mem::replace(&mut st.buf, next)
        };
        if !batch.is_empty() {
            let _ = self.tx.blocking_send(Command::Batch(batch));
        }
    }

    /// Sends the buffered batch and waits until the pipeline committed everything.
    fn flush_and_wait(&self) {
        self.flush();
        let (reply, done) = oneshot::channel();
        if self.tx.blocking_send(Command::Barrier(reply)).is_ok() {
            let _ = done.blocking_recv();
        }
    }

    /// Sets each partition of `tpl` to start right after the offset the lake holds.
    fn position_from_lake(
        &self,
        consumer: &BaseConsumer<IngestContext>,
        tpl: &mut TopicPartitionList,
    ) {
        let parts: Vec<TopicPartition> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        let stored = loop {
            let (reply, answer) = oneshot::channel();
            let asked = self.tx.blocking_send(Command::Offsets {
                partitions: parts.clone(),
                reply,
            });
            let result = match asked {
                Ok(()) => answer
                    .blocking_recv()
                    .unwrap_or_else(|_| Err(IngestError::Stopped)),
                Err(_) => Err(IngestError::Stopped),
            };
            match result {
                Ok(s) => break s,
                Err(e) if self.cancel.is_cancelled() => {
                    tracing::warn!(source = %self.source.name, error = %e, "no offsets at shutdown");
                    break HashMap::new();
                }
                Err(e) => {
                    tracing::warn!(source = %self.source.name, error = %e,
                        "cannot read stored offsets; retrying in 1 s");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        };
        let beyond = beyond_the_end(consumer, &stored);
        let mut st = self.state.lock();
        let (mut resumed, mut fresh) = (0usize, 0usize);
        let count = parts.len();
        for (topic, partition) in parts {
            let offset = match stored.get(&(topic.clone(), partition)) {
                Some(&last) => {
                    let next = last + 1;
                    if let Some(&high) = beyond.get(&(topic.clone(), partition)) {
                        // Some brokers report an end that lags what they already served
                        // (tansu's ListOffsets trails its log by about a producer batch):
                        // the lake's offset is the truth. A broker that no longer has it
                        // answers OFFSET_OUT_OF_RANGE, librdkafka then resets to
                        // `auto.offset.reset`, and the first message tells (see the poll loop).
                        tracing::info!(source = %self.source.name, topic, partition, stored = last, high,
                            "the broker reports an end before the lake's offset; resuming at the lake's offset");
                        st.probing.push((topic.clone(), partition));
                    }
                    st.set_next(&topic, partition, Some(next));
                    Offset::Offset(next)
                }
                None => {
                    st.set_next(&topic, partition, None);
                    match self.source.start {
                        StartOffset::Earliest => Offset::Stored,
                        StartOffset::Latest => Offset::Stored,
                    }
                }
            };
            self.status.stored(
                &topic,
                partition,
                stored.get(&(topic.clone(), partition)).copied(),
            );
            if let Err(e) = tpl.set_partition_offset(&topic, partition, offset) {
                tracing::warn!(source = %self.source.name, error = %e, "cannot set start offset");
            }
            if matches!(offset, Offset::Offset(_)) {
                resumed += 1;
            } else {
                fresh += 1;
            }
            tracing::debug!(source = %self.source.name, topic, partition, start = ?offset, "partition assigned");
        }
        tracing::info!(source = %self.source.name, partitions = count, resumed_from_lake = resumed,
            from_start_setting = fresh, "partitions assigned");
    }
}

/// The partitions whose stored offset lies beyond the end the broker reports, with that
/// end: a broker whose end lags what it already served, or a topic deleted and created
/// again (its offsets start over). Asked once: the fetch itself settles which.
fn beyond_the_end(
    consumer: &BaseConsumer<IngestContext>,
    stored: &HashMap<TopicPartition, i64>,
) -> HashMap<TopicPartition, i64> {
    stored
        .iter()
        .filter_map(|(tp, last)| {
            let (_, high) = consumer
                .fetch_watermarks(&tp.0, tp.1, Duration::from_secs(5))
                .ok()?;
            (last + 1 > high).then(|| (tp.clone(), high))
        })
        .collect()
}

/// Builds the librdkafka consumer configuration of a source.
pub fn client_config(source: &Source, brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("group.id", &source.group_id)
        .set("client.id", format!("tidepool-{}", source.name))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set(
            "auto.offset.reset",
            match source.start {
                StartOffset::Earliest => "earliest",
                StartOffset::Latest => "latest",
            },
        )
        // Prefetch and fetch size bound the consumer's memory: with a backlog both fill up.
        // 16 MiB each reads ~850k msg/s from the embedded broker (`tidepool-bench ingest`).
        .set("queued.max.messages.kbytes", "16384")
        .set("fetch.max.bytes", "16777216")
        // librdkafka 2.x waits 1 s by default before fetching again once the prefetch
        // queue was full: on a backlog that idles the consumer more than half the time.
        .set("fetch.queue.backoff.ms", "10")
        .set("fetch.wait.max.ms", "100")
        .set("statistics.interval.ms", "2000")
        .set("reconnect.backoff.max.ms", "5000");
    for (k, v) in &source.properties {
        c.set(k, v);
    }
    c
}

/// Runs the consumer of one source until cancelled (or caught up). Blocking: call it on
/// its own thread.
pub fn run(mut job: ConsumerJob) -> Result<(), IngestError> {
    let shared = Arc::new(Shared {
        source: job.source.clone(),
        tx: job.tx.clone(),
        status: job.status.clone(),
        cancel: job.cancel.clone(),
        state: Mutex::new(LoopState::default()),
        errors: Mutex::new(ErrorLog::default()),
        brokers: Mutex::new(broker_health::Tracker::default()),
    });
    let context = IngestContext {
        shared: shared.clone(),
    };
    let mut config = client_config(&job.source, &job.brokers);
    if job.assignment == Assignment::Group && config.get("group.instance.id").is_none() {
        config.set("group.instance.id", &job.instance);
    }
    let consumer: BaseConsumer<IngestContext> = config
        .create_with_context(context)
        .map_err(|e| IngestError::Kafka(format!("cannot create consumer: {e}")))?;
    let topics: Vec<&str> = job.source.topics.iter().map(String::as_str).collect();
    match job.assignment {
        Assignment::Group => consumer
            .subscribe(&topics)
            .map_err(|e| IngestError::Kafka(format!("cannot subscribe to {topics:?}: {e}")))?,
        Assignment::All => assign_all(&consumer, &shared, &topics, job.until_caught_up)?,
    }
    job.status
        .running
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let src = &job.source;
    let mut last_group_commit = Instant::now();
    let mut committed_to_group: HashMap<TopicPartition, i64> = HashMap::new();
    let mut last_message = Instant::now();
    let mut paused = false;
    loop {
        if job.cancel.is_cancelled() {
            break;
        }
        paused = apply_switches(&consumer, &shared, paused);
        let timeout = {
            let st = shared.state.lock();
            match st.first_at {
                Some(t) => src
                    .max_latency
                    .saturating_sub(t.elapsed())
                    .min(Duration::from_millis(100)),
                None => Duration::from_millis(100),
            }
        };
        match consumer.poll(timeout) {
            None => {}
            // Fetched before the pause took hold: dropped unread; `next` does not move,
            // so resuming seeks back to it.
            Some(Ok(_)) if paused => {}
            Some(Ok(m)) => {
                last_message = Instant::now();
                shared.errors.lock().recovered(&src.name);
                let mut st = shared.state.lock();
                let (topic, partition, offset) = (m.topic(), m.partition(), m.offset());
                if let Some(n) = st.first_message(topic, partition, offset) {
                    tracing::warn!(source = %src.name, topic, partition, lake_next = n, from = offset,
                        "the broker started this partition over below the lake's offset (topic recreated?); offsets below the lake's are skipped");
                }
                let next = st.next_of(topic, partition);
                if let Some(n) = next
                    && offset > n
                {
                    // Retention, compaction or transaction markers; the embedded broker
                    // keeps only 5 MiB or 100k messages per partition.
                    tracing::warn!(source = %src.name, topic, partition, from = n, to = offset - 1,
                        "offsets skipped: the broker no longer has them or they hold no messages");
                }
                if next.is_none_or(|n| offset >= n) {
                    let headers = m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|x| (x.key.to_string(), x.value.map(<[u8]>::to_vec)))
                                .collect()
                        })
                        .unwrap_or_default();
                    st.buf.push(
                        topic,
                        partition,
                        offset,
                        m.timestamp().to_millis(),
                        m.key(),
                        m.payload(),
                        headers,
                    );
                    st.set_next(topic, partition, Some(offset + 1));
                    if st.first_at.is_none() {
                        st.first_at = Some(Instant::now());
                    }
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            // A partition resumed beyond the broker's end was reset: told by its next message.
            Some(Err(KafkaError::MessageConsumption(RDKafkaErrorCode::AutoOffsetReset))) => {
                tracing::debug!(source = %src.name, "librdkafka reset a partition's offset");
            }
            Some(Err(e)) => {
                shared.errors.lock().failed(&src.name, &e.to_string());
                // A fatal error leaves the consumer unusable: another process joined the
                // group under the same `group.instance.id` (the same node name), or the
                // broker fenced this one. What was consumed is committed; the source stops.
                if let Some((code, reason)) = consumer.client().fatal_error() {
                    shared.flush();
                    let why = format!(
                        "Kafka consumer stopped by a fatal error ({code:?}: {reason}); if another \
                         process runs with the node name of this one ({}), give each its own \
                         [node] name",
                        job.instance
                    );
                    tracing::error!(source = %src.name, "{why}");
                    shared.errors.lock().failed(&src.name, &why);
                    break;
                }
            }
        }
        let due = {
            let st = shared.state.lock();
            st.buf.len() >= src.max_rows
                || st.buf.bytes() >= src.max_bytes
                || st.first_at.is_some_and(|t| t.elapsed() >= src.max_latency)
        };
        if due {
            shared.flush();
        }
        if last_group_commit.elapsed() >= Duration::from_secs(1) {
            last_group_commit = Instant::now();
            commit_to_group(&consumer, &job.group_offsets, &mut committed_to_group);
        }
        // Caught up: every partition read to the end it had at start, nothing new for a
        // second, and fresh watermarks agree (some brokers report them late).
        if job.until_caught_up
            && caught_up(&shared)
            && last_message.elapsed() >= Duration::from_secs(1)
        {
            if extend_targets(&consumer, &shared) {
                last_message = Instant::now();
            } else {
                tracing::info!(source = %src.name, "caught up");
                break;
            }
        }
    }
    shared.flush_and_wait();
    commit_to_group(&consumer, &job.group_offsets, &mut committed_to_group);
    job.status
        .running
        .store(false, std::sync::atomic::Ordering::Relaxed);
    if let Some(done) = job.done.take() {
        let _ = done.send(());
    }
    Ok(())
}

/// Applies what the admin API asked of this source: pause (commit what is buffered, stop
/// fetching, stay in the group), reposition (start offsets read from the lake again, after
/// a replay rewrote them) and resume (fetch again from the next unread offset). Returns
/// whether the source is paused now.
fn apply_switches(consumer: &BaseConsumer<IngestContext>, shared: &Shared, paused: bool) -> bool {
    let status = &shared.status;
    let want = status.paused.load(Ordering::Relaxed);
    if want && !paused {
        shared.flush_and_wait();
        if let Ok(tpl) = consumer.assignment() {
            let _ = consumer.pause(&tpl);
        }
        status.pause_applied.store(true, Ordering::Release);
        tracing::info!(source = %shared.source.name, "paused");
    }
    if status.reposition.swap(false, Ordering::AcqRel) {
        shared.flush_and_wait();
        if let Ok(mut tpl) = consumer.assignment() {
            shared.position_from_lake(consumer, &mut tpl);
        }
        seek_to_next(consumer, shared);
    }
    if !want && paused {
        if let Ok(tpl) = consumer.assignment() {
            let _ = consumer.resume(&tpl);
        }
        seek_to_next(consumer, shared);
        status.pause_applied.store(false, Ordering::Release);
        tracing::info!(source = %shared.source.name, "resumed");
    }
    want
}

/// Points every partition with a known next offset at it.
fn seek_to_next(consumer: &BaseConsumer<IngestContext>, shared: &Shared) {
    let next = shared.state.lock().next.clone();
    let assigned = consumer.assignment().unwrap_or_default();
    for ((t, p), n) in next {
        if assigned.find_partition(&t, p).is_none() {
            continue;
        }
        if let Err(e) = consumer.seek(&t, p, Offset::Offset(n), Duration::from_secs(5)) {
            tracing::warn!(source = %shared.source.name, topic = %t, partition = p, error = %e, "cannot seek");
        }
    }
}

fn caught_up(shared: &Shared) -> bool {
    let st = shared.state.lock();
    st.targets
        .iter()
        .all(|((t, p), end)| st.next_of(t, *p).is_some_and(|n| n >= *end))
}

/// Re-reads the watermarks of the partitions being caught up; true if any moved past
/// what was consumed.
fn extend_targets(consumer: &BaseConsumer<IngestContext>, shared: &Shared) -> bool {
    let parts: Vec<TopicPartition> = shared.state.lock().targets.keys().cloned().collect();
    let mut moved = false;
    for (t, p) in parts {
        if let Ok((_, high)) = consumer.fetch_watermarks(&t, p, Duration::from_secs(5)) {
            let mut st = shared.state.lock();
            if st.next_of(&t, p).is_some_and(|n| n < high) {
                st.targets.insert((t, p), high);
                moved = true;
            }
        }
    }
    moved
}

/// Assigns every partition of `topics`, each from the offset the lake holds.
fn assign_all(
    consumer: &BaseConsumer<IngestContext>,
    shared: &Shared,
    topics: &[&str],
    record_targets: bool,
) -> Result<(), IngestError> {
    let mut tpl = TopicPartitionList::new();
    for topic in topics {
        let md = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .map_err(|e| IngestError::Kafka(format!("cannot read metadata of {topic}: {e}")))?;
        for t in md.topics() {
            if let Some(err) = t.error() {
                return Err(IngestError::Kafka(format!("topic {topic}: {err:?}")));
            }
            for p in t.partitions() {
                tpl.add_partition(topic, p.id());
            }
        }
    }
    shared.position_from_lake(consumer, &mut tpl);
    if record_targets {
        let mut targets = HashMap::new();
        for e in tpl.elements() {
            let (low, high) = consumer
                .fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(10))
                .map_err(|err| IngestError::Kafka(format!("cannot read watermarks: {err}")))?;
            let mut st = shared.state.lock();
            if high <= low
                || st
                    .next_of(e.topic(), e.partition())
                    .is_some_and(|n| n >= high)
            {
                continue;
            }
            if st.next_of(e.topic(), e.partition()).is_none() {
                st.set_next(e.topic(), e.partition(), Some(0));
            }
            targets.insert((e.topic().to_string(), e.partition()), high);
        }
        shared.state.lock().targets = targets;
    }
    consumer
        .assign(&tpl)
        .map_err(|e| IngestError::Kafka(format!("cannot assign partitions: {e}")))
}

/// Tells the consumer group what the lake holds, for lag tools; the lake stays the truth.
fn commit_to_group(
    consumer: &BaseConsumer<IngestContext>,
    offsets: &GroupOffsets,
    done: &mut HashMap<TopicPartition, i64>,
) {
    let pending: Vec<(TopicPartition, i64)> = offsets
        .lock()
        .iter()
        .filter(|(tp, v)| done.get(*tp) != Some(v))
        .map(|(tp, v)| (tp.clone(), *v))
        .collect();
    if pending.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for ((t, p), v) in &pending {
        let _ = tpl.add_partition_offset(t, *p, Offset::Offset(v + 1));
    }
    if consumer
        .commit(&tpl, rdkafka::consumer::CommitMode::Async)
        .is_ok()
    {
        done.extend(pending);
    }
}

#[cfg(test)]
mod tests {
    use super::LoopState;

    #[test]
    fn a_probed_partition_is_settled_by_its_first_message() {
        let mut st = LoopState::default();
        st.set_next("t", 0, Some(60));
        st.set_next("t", 1, Some(60));
        st.probing = vec![("t".to_string(), 0), ("t".to_string(), 1)];
        // The broker had offset 60 although its end said otherwise: nothing to say.
        assert_eq!(st.first_message("t", 0, 60), None);
        // librdkafka reset partition 1 to the start of a recreated topic.
        assert_eq!(st.first_message("t", 1, 0), Some(60));
        // Settled once: later messages are ordinary.
        assert_eq!(st.first_message("t", 1, 1), None);
        assert!(st.probing.is_empty());
        assert_eq!(
            st.next_of("t", 1),
            Some(60),
            "the lake's offset stays the truth"
        );
    }
}
