//! Kafka into Delta bronze tables, exactly once.
//!
//! Each `[[sources]]` entry gets a consumer thread ([`consumer`]) that batches raw messages
//! and a writer task ([`pipeline`]) that decodes them ([`decode`]) and commits rows plus
//! per-partition offsets to `bronze.<source>` in one Delta commit ([`sink`]); messages that
//! cannot become rows go to `bronze.<source>__dead_letters`. [`Ingest`] owns the sources,
//! the embedded dev broker ([`broker`]) when no brokers are configured, the producer the
//! HTTP endpoint uses ([`produce`]) and the live status ([`status`]) behind
//! `system.ingest` and `/metrics`. This crate depends on the lake alone, no SQL engine and
//! no wire protocol (its Cargo.toml shows it); its settings are [`IngestConfig`].

pub mod batch;
pub mod broker;
pub mod broker_health;
pub mod bronze;
pub mod consumer;
pub mod decode;
pub mod maintenance;
pub mod pipeline;
pub mod produce;
pub mod replay;
pub mod schema;
mod settings;
pub mod sink;
pub mod status;

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use settings::{IngestConfig, Maintenance, Source, StartOffset};
use tidepool_lake::{Lake, LakeError};

pub use consumer::Assignment;
pub use status::{IngestStatus, SourceStatus};

/// Why ingestion failed.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("Kafka: {0}")]
    Kafka(String),
    #[error("schema file {path}: {message}")]
    Schema { path: String, message: String },
    #[error("unknown source {0:?}")]
    UnknownSource(String),
    #[error("no table {0}")]
    NoTable(String),
    /// Not possible in the state the source or the broker is in.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error("Delta: {0}")]
    Delta(Box<deltalake::DeltaTableError>),
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
    /// A directory of a table on a local lake that cannot be created.
    #[error("cannot create {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A source's consumer thread could not start, or panicked.
    #[error("consumer thread of source {source_name}: {why}")]
    Thread { source_name: String, why: String },
    /// The pipeline of a source ended while a call waited on it (shutdown, a fatal error).
    #[error("the ingest pipeline stopped")]
    Stopped,
    /// A call that did not complete in the time it waits (it completes later).
    #[error("{0}")]
    Timeout(String),
    /// A setting out of the range its use allows.
    #[error("{0}")]
    InvalidSetting(String),
    /// An asynchronous task of a call failed (it panicked or was cancelled).
    #[error("task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// A query over a bronze table (replay counts and positions).
    #[error("query over bronze: {0}")]
    Query(Box<datafusion::error::DataFusionError>),
}

impl IngestError {
    pub(crate) fn delta(e: deltalake::DeltaTableError) -> IngestError {
        IngestError::Delta(Box::new(e))
    }
}

/// The schema bronze tables live in.
pub const BRONZE: &str = "bronze";

/// Name of a source's dead-letter table.
pub fn dead_letter_table(source: &str) -> String {
    format!("{source}__dead_letters")
}

/// Every source of the process, the broker they read and what they have done.
pub struct Ingest {
    lake: Arc<Lake>,
    node: String,
    lease: std::time::Duration,
    sources: Vec<Source>,
    brokers: String,
    /// Dropped before the broker it talks to.
    producer: produce::Producer,
    embedded: Option<broker::EmbeddedBroker>,
    /// Distinguishes offsets of one embedded broker's life from the next one's.
    epoch: Option<String>,
    maintenance: Maintenance,
    status: Arc<IngestStatus>,
    /// Declared schemas by source, read and checked once at start.
    declared: std::collections::HashMap<String, arrow::datatypes::SchemaRef>,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest")
            .field("brokers", &self.brokers)
            .field("sources", &self.sources.len())
            .finish()
    }
}

/// A running source; [`SourceRun::wait`] returns when it stopped.
pub struct SourceRun {
    name: String,
    consumer: std::thread::JoinHandle<Result<(), IngestError>>,
    writer: tokio::task::JoinHandle<()>,
    done: tokio::sync::oneshot::Receiver<()>,
}

/// How long a stopping consumer may take to leave its group before it is left behind.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

impl SourceRun {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Waits until the source stopped: everything consumed is committed, and the consumer
    /// left its group (or did not within 10 s, e.g. with the broker unreachable; it is then
    /// left behind rather than holding up shutdown).
    pub async fn wait(self) -> Result<(), IngestError> {
        // Resolves when the consumer committed its last batch, or ended early.
        let _ = self.done.await;
        let deadline = std::time::Instant::now() + CLOSE_GRACE;
        while !self.consumer.is_finished() && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        // Every batch is committed by now: the writer has nothing left to do.
        self.writer.abort();
        if !self.consumer.is_finished() {
            tracing::warn!(source = %self.name, "the Kafka consumer did not close within 10 s (broker unreachable?); leaving it behind");
            return Ok(());
        }
        self.consumer.join().map_err(|_| IngestError::Thread {
            source_name: self.name.clone(),
            why: "panicked".into(),
        })?
    }
}

impl Ingest {
    /// Prepares ingestion: starts the embedded broker when no brokers are configured and
    /// there are sources, validates declared schemas.
    pub fn new(settings: &IngestConfig, lake: Arc<Lake>) -> Result<Ingest, IngestError> {
        let mut declared = std::collections::HashMap::new();
        for s in &settings.sources {
            if let Some(p) = &s.schema {
                declared.insert(s.name.clone(), schema::load_declared(p)?);
            }
        }
        let (brokers, embedded, epoch) = match &settings.brokers {
            Some(b) => (b.clone(), None, None),
            None if settings.sources.is_empty() => (String::new(), None, None),
            None => {
                let topics: Vec<String> = settings
                    .sources
                    .iter()
                    .flat_map(|s| s.topics.iter().cloned())
                    .collect();
                let broker = broker::EmbeddedBroker::start(&topics, settings.embedded_partitions)?;
                let epoch = format!("{:x}", chrono::Utc::now().timestamp_millis());
                (broker.bootstrap().to_string(), Some(broker), Some(epoch))
            }
        };
        let producer = produce::Producer::new(&brokers, &settings.sources)?;
        let status = Arc::new(IngestStatus::default());
        for s in &settings.sources {
            status.add(SourceStatus::new(&s.name));
        }
        Ok(Ingest {
            lake,
            node: settings.node.clone(),
            lease: settings.lease,
            sources: settings.sources.clone(),
            brokers,
            embedded,
            epoch,
            maintenance: settings.maintenance.clone(),
            status,
            producer,
            declared,
        })
    }

    /// Bootstrap servers the sources read.
    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    /// True when the embedded dev broker is running.
    pub fn embedded(&self) -> bool {
        self.embedded.is_some()
    }

    pub fn sources(&self) -> &[Source] {
        &self.sources
    }

    pub fn status(&self) -> Arc<IngestStatus> {
        self.status.clone()
    }

    pub fn producer(&self) -> &produce::Producer {
        &self.producer
    }

    pub fn maintenance(&self) -> &Maintenance {
        &self.maintenance
    }

    /// This node's name and the lease time of the duties one node runs at a time.
    pub fn lease(&self) -> (String, std::time::Duration) {
        (self.node.clone(), self.lease)
    }

    pub fn lake(&self) -> &Arc<Lake> {
        &self.lake
    }

    fn prefix(&self, source: &str) -> String {
        match &self.epoch {
            Some(e) => format!("tidepool:{source}@{e}"),
            None => format!("tidepool:{source}"),
        }
    }

    /// Starts the named sources (all when `only` is empty).
    pub async fn start(
        &self,
        only: &[String],
        assignment: Assignment,
        until_caught_up: bool,
        cancel: CancellationToken,
    ) -> Result<Vec<SourceRun>, IngestError> {
        for name in only {
            if !self.sources.iter().any(|s| &s.name == name) {
                return Err(IngestError::UnknownSource(name.clone()));
            }
        }
        let mut runs = Vec::new();
        for src in &self.sources {
            if !only.is_empty() && !only.contains(&src.name) {
                continue;
            }
            runs.push(
                self.start_source(src, assignment, until_caught_up, cancel.clone())
                    .await?,
            );
        }
        Ok(runs)
    }

    async fn start_source(
        &self,
        src: &Source,
        assignment: Assignment,
        until_caught_up: bool,
        cancel: CancellationToken,
    ) -> Result<SourceRun, IngestError> {
        let declared = self.declared.get(&src.name).cloned();
        let mut decoder = decode::JsonDecoder::new(
            declared
                .clone()
                .unwrap_or_else(|| Arc::new(arrow::datatypes::Schema::empty())),
            declared.is_some(),
            src.raw,
            src.max_message_bytes,
        );
        let ci = self.maintenance.checkpoint_interval;
        let bronze = sink::Sink::open(self.lake.clone(), BRONZE, &src.name, ci).await?;
        if let Some(s) = bronze.arrow_schema()? {
            decoder.adopt(s);
        }
        let dead =
            sink::Sink::open(self.lake.clone(), BRONZE, &dead_letter_table(&src.name), ci).await?;
        let status = self
            .status
            .get(&src.name)
            .ok_or_else(|| IngestError::UnknownSource(src.name.clone()))?;
        let group_offsets = pipeline::GroupOffsets::default();
        let (tx, rx) = mpsc::channel(1);
        let pipeline = pipeline::Pipeline::new(
            &src.name,
            &self.node,
            self.prefix(&src.name),
            bronze,
            dead,
            decoder,
            status.clone(),
            group_offsets.clone(),
            cancel.clone(),
        );
        let writer = tokio::spawn(pipeline.run(rx));
        let (done_tx, done) = tokio::sync::oneshot::channel();
        let job = consumer::ConsumerJob {
            source: src.clone(),
            brokers: self.brokers.clone(),
            instance: format!("{}.{}", self.node, src.name),
            assignment,
            until_caught_up,
            tx,
            status,
            group_offsets,
            cancel,
            done: Some(done_tx),
        };
        let consumer = std::thread::Builder::new()
            .name(format!("ingest-{}", src.name))
            .spawn(move || consumer::run(job))
            .map_err(|e| IngestError::Thread {
                source_name: src.name.clone(),
                why: format!("cannot start: {e}"),
            })?;
        tracing::info!(source = %src.name, topics = ?src.topics, table = %format!("{BRONZE}.{}", src.name), "ingesting");
        Ok(SourceRun {
            name: src.name.clone(),
            consumer,
            writer,
            done,
        })
    }
}
