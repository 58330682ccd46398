//! The control plane of a running server, behind the admin gRPC API: model runs (one at
//! a time, shared with `[schedule]`), pausing, resuming and replaying sources, table
//! maintenance and reloading the project and `tidepool.toml` without a restart. The admin
//! service only translates between protobuf and these calls.

pub mod schedule;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use datafusion::arrow::array::{Int32Array, Int64Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use parking_lot::{Mutex, RwLock};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Settings};
use crate::engine::Engine;
use crate::ingest::replay::ReplayFrom;
use crate::ingest::{Ingest, IngestError};
use crate::models::records::Label;
use crate::models::records::{self, RunRecord};
use crate::models::run::{Event, RunOptions};
use crate::models::{Project, ProjectPaths, kafka_sources, select};

/// Why a control call was refused; each maps to one gRPC status code.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl From<IngestError> for ControlError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::UnknownSource(_) | IngestError::NoTable(_) => {
                ControlError::NotFound(e.to_string())
            }
            IngestError::Refused(m) => ControlError::FailedPrecondition(m),
            other => ControlError::Internal(other.to_string()),
        }
    }
}

/// A model run asked for remotely.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    pub select: Vec<String>,
    pub exclude: Vec<String>,
    pub full_refresh: bool,
    /// `var()` values.
    pub vars: BTreeMap<String, serde_json::Value>,
    /// `build`: each model's tests right after it.
    pub tests: bool,
    pub threads: usize,
    /// Who asked, for the log.
    pub user: String,
}

/// What a running run reports.
#[derive(Debug)]
pub enum RunUpdate {
    Event(Event),
    /// The run is over and recorded (or the record failed: the error says why).
    Finished(Box<RunRecord>, Option<crate::models::ModelsError>),
}

/// Holding it means running models; released on drop.
pub struct RunSlot {
    _guard: tokio::sync::OwnedMutexGuard<()>,
    current: Arc<Mutex<Option<String>>>,
}

impl Drop for RunSlot {
    fn drop(&mut self) {
        *self.current.lock() = None;
    }
}

/// Where a replay starts.
#[derive(Debug, Clone, Copy)]
pub enum ReplayStart {
    /// The same offset in every partition.
    Offset(i64),
    /// Per partition, the first message the lake holds with a Kafka timestamp at or after it.
    Timestamp(chrono::DateTime<chrono::Utc>),
}

/// What a replay did.
#[derive(Debug, Clone, Default)]
pub struct ReplayReport {
    /// Bronze version that removed the replayed rows.
    pub reset_version: Option<i64>,
    /// Bronze version holding everything re-read.
    pub version: Option<i64>,
    /// Rows and dead letters removed.
    pub removed: u64,
    /// Rows and dead letters written again.
    pub rows: u64,
    /// `topic/partition: from..=through` per partition.
    pub partitions: Vec<String>,
}

/// What a reload applied.
#[derive(Debug, Clone, Default)]
pub struct ReloadReport {
    pub models: usize,
    pub view_files: usize,
    pub view_errors: Vec<String>,
    /// Settings that changed in the file but only take effect at the next start.
    pub restart_required: Vec<String>,
    /// Settings applied now.
    pub applied: Vec<String>,
}

/// The running server, as the admin API drives it.
pub struct Control {
    engine: Arc<Engine>,
    ingest: Arc<Ingest>,
    settings: RwLock<Arc<Settings>>,
    /// Bumped by every reload.
    generation: AtomicU64,
    runs: Arc<tokio::sync::Mutex<()>>,
    /// What holds the run slot: "admin run by alice (run_id ...)".
    current: Arc<Mutex<Option<String>>>,
    shutdown: CancellationToken,
    started: Instant,
}

/// How long a replay may take to read everything again before the call returns.
const REPLAY_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

impl Control {
    pub fn new(
        engine: Arc<Engine>,
        ingest: Arc<Ingest>,
        settings: &Settings,
        shutdown: CancellationToken,
    ) -> Arc<Control> {
        Arc::new(Control {
            engine,
            ingest,
            settings: RwLock::new(Arc::new(settings.clone())),
            generation: AtomicU64::new(0),
            runs: Arc::new(tokio::sync::Mutex::new(())),
            current: Arc::new(Mutex::new(None)),
            shutdown,
            started: Instant::now(),
        })
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    pub fn ingest(&self) -> &Arc<Ingest> {
        &self.ingest
    }

    /// The settings in force (the start's, or the last good reload's).
    pub fn settings(&self) -> Arc<Settings> {
        self.settings.read().clone()
    }

    /// Changes each time a reload applies.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    pub fn shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    pub fn source_names(&self) -> Vec<String> {
        self.ingest
            .sources()
            .iter()
            .map(|s| s.name.clone())
            .collect()
    }

    /// The project folder with the model defaults in force.
    pub fn project_paths(&self) -> ProjectPaths {
        let s = self.settings();
        let mut paths = ProjectPaths::in_dir(&s.project_dir);
        paths.defaults = s.model_defaults.clone();
        paths
    }

    /// The project as on disk now.
    pub fn load_project(
        &self,
        vars: BTreeMap<String, serde_json::Value>,
    ) -> Result<Project, ControlError> {
        Project::load(
            self.project_paths(),
            kafka_sources(&self.source_names()),
            vars,
        )
        .map_err(|e| ControlError::FailedPrecondition(format!("the project does not load: {e}")))
    }

    /// The run slot, now or never: FailedPrecondition says what holds it.
    pub fn try_begin_run(&self, what: &str) -> Result<RunSlot, ControlError> {
        match self.runs.clone().try_lock_owned() {
            Ok(guard) => {
                *self.current.lock() = Some(what.to_string());
                Ok(RunSlot {
                    _guard: guard,
                    current: self.current.clone(),
                })
            }
            Err(_) => {
                let who = self
                    .current
                    .lock()
                    .clone()
                    .unwrap_or_else(|| "another run".into());
                Err(ControlError::FailedPrecondition(format!(
                    "a run is in progress ({who}); try again when it has finished (ListRuns)"
                )))
            }
        }
    }

    /// The run slot, waiting for it (the schedule waits for a remote run to finish).
    pub async fn begin_run(&self, what: &str) -> RunSlot {
        let guard = self.runs.clone().lock_owned().await;
        *self.current.lock() = Some(what.to_string());
        RunSlot {
            _guard: guard,
            current: self.current.clone(),
        }
    }

    /// Starts a model run on the server; progress and the recorded result arrive on the
    /// returned channel. The run goes on if the receiver is dropped (a client that hung
    /// up), and stops at shutdown like any run.
    pub fn run_models(
        self: &Arc<Self>,
        req: RunRequest,
    ) -> Result<(Arc<Project>, usize, mpsc::UnboundedReceiver<RunUpdate>), ControlError> {
        if self.shutting_down() {
            return Err(ControlError::Unavailable(
                "the server is shutting down".into(),
            ));
        }
        let project = Arc::new(self.load_project(req.vars.clone())?);
        let invalid = |e: crate::models::ModelsError| ControlError::InvalidArgument(e.to_string());
        select::check_terms(&project, &req.select).map_err(invalid)?;
        select::check_terms(&project, &req.exclude).map_err(invalid)?;
        let chosen: BTreeSet<usize> =
            select::select(&project, &req.select, &req.exclude).map_err(invalid)?;
        let command = if req.tests { "build" } else { "run" };
        let mut selector = req.select.join(" ");
        if !req.exclude.is_empty() {
            selector.push_str(&format!(" --exclude {}", req.exclude.join(" ")));
        }
        let slot = self.try_begin_run(&format!(
            "admin:{command} {} by {}",
            selector.trim(),
            req.user
        ))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let total = chosen.len();
        let options = RunOptions {
            threads: req.threads.max(1),
            fail_fast: false,
            full_refresh: req.full_refresh,
            tests: req.tests,
        };
        let label = Label {
            command: format!("admin:{command}"),
            selector: selector.trim().to_string(),
        };
        let (engine, p, cancel) = (
            self.engine.clone(),
            project.clone(),
            self.shutdown.child_token(),
        );
        tracing::info!(user = %req.user, command, selector = %label.selector, models = total, "run requested");
        tokio::spawn(async move {
            let _slot = slot;
            let events = tx.clone();
            let (_, rec) =
                records::run_to_record(p, engine.clone(), &chosen, &options, label, cancel, |e| {
                    let _ = events.send(RunUpdate::Event(e.clone()));
                })
                .await;
            let saved = records::save(engine.lake(), &rec).await.err();
            if let Some(e) = &saved {
                tracing::error!(error = %e, "run not recorded");
            }
            tracing::info!(run_id = %rec.run_id, status = rec.status(), "run finished");
            let _ = tx.send(RunUpdate::Finished(Box::new(rec), saved));
        });
        Ok((project, total, rx))
    }

    fn known_source(&self, source: &str) -> Result<(), ControlError> {
        if self.ingest.sources().iter().any(|s| s.name == source) {
            return Ok(());
        }
        Err(ControlError::NotFound(format!(
            "unknown source {source:?}; sources: {}",
            self.source_names().join(", ")
        )))
    }

    /// Pauses or resumes a source; returns once the consumer paused (what it held is
    /// committed) or was told to resume.
    pub async fn set_paused(&self, source: &str, paused: bool) -> Result<(), ControlError> {
        self.known_source(source)?;
        self.ingest.set_paused(source, paused).await?;
        Ok(())
    }

    /// Re-reads `source` from `from` into a fresh bronze version and waits until what the
    /// lake held is read again.
    pub async fn replay(
        &self,
        source: &str,
        from: ReplayStart,
    ) -> Result<ReplayReport, ControlError> {
        self.known_source(source)?;
        let from = match from {
            ReplayStart::Offset(o) => ReplayFrom::Offset(o),
            ReplayStart::Timestamp(t) => ReplayFrom::Offsets(self.offsets_since(source, t).await?),
        };
        let plan = self.ingest.replay_plan(source, from).await?;
        let mut report = ReplayReport {
            partitions: plan
                .iter()
                .map(|p| format!("{}/{}: {}..={}", p.topic, p.partition, p.from, p.through))
                .collect(),
            ..Default::default()
        };
        if plan.is_empty() {
            return Ok(report);
        }
        let range = crate::ingest::replay::rows_filter(&plan, true);
        report.removed = self.count_rows(source, &range).await?;
        let reset = self.ingest.replay_reset(source, plan.clone()).await?;
        report.reset_version = reset.version;
        // Done when every partition committed its old last offset again.
        let status = self
            .ingest
            .status()
            .get(source)
            .ok_or_else(|| ControlError::NotFound(source.to_string()))?;
        let deadline = tokio::time::Instant::now() + REPLAY_WAIT;
        loop {
            let done = {
                let parts = status.partitions.lock();
                plan.iter().all(|p| {
                    parts
                        .get(&(p.topic.clone(), p.partition))
                        .and_then(|s| s.committed)
                        .is_some_and(|c| c >= p.through)
                })
            };
            if done {
                break;
            }
            if self.shutting_down() {
                return Err(ControlError::Unavailable(
                    "the server is shutting down; the replay goes on at the next start".into(),
                ));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ControlError::Internal(format!(
                    "the replay is under way (bronze version {:?}) but not finished after {} s; watch system.ingest",
                    reset.version,
                    REPLAY_WAIT.as_secs()
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        if reset.was_paused {
            tracing::info!(
                source,
                "the source was paused before the replay and is running now"
            );
        }
        report.rows = self.count_rows(source, &range).await?;
        report.version = self
            .ingest
            .lake()
            .table(crate::ingest::BRONZE, source)
            .await
            .map_err(|e| ControlError::Internal(e.to_string()))?
            .and_then(|t| t.version())
            .map(|v| v as i64);
        Ok(report)
    }

    /// The bronze tables of a source that exist: rows, then dead letters.
    async fn bronze_tables(&self, source: &str) -> Vec<String> {
        let mut out = Vec::new();
        for table in [source.to_string(), crate::ingest::dead_letter_table(source)] {
            if let Ok(Some(_)) = self
                .ingest
                .lake()
                .table(crate::ingest::BRONZE, &table)
                .await
            {
                out.push(table);
            }
        }
        out
    }

    /// Rows of bronze and its dead letters matching `filter`.
    async fn count_rows(&self, source: &str, filter: &str) -> Result<u64, ControlError> {
        let mut total = 0u64;
        for table in self.bronze_tables(source).await {
            let sql = format!("SELECT count(*) FROM bronze.\"{table}\" WHERE {filter}");
            for b in self.query(&sql).await? {
                if let Some(a) = b.column(0).as_any().downcast_ref::<Int64Array>() {
                    total += a.iter().flatten().map(|v| v.max(0) as u64).sum::<u64>();
                }
            }
        }
        Ok(total)
    }

    /// Per partition, the first offset the lake holds with a Kafka timestamp at or after
    /// `since` (rows or dead letters).
    async fn offsets_since(
        &self,
        source: &str,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<BTreeMap<(String, i32), i64>, ControlError> {
        let mut out: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for table in self.bronze_tables(source).await {
            let sql = format!(
                "SELECT \"_topic\", \"_partition\", min(\"_offset\") FROM bronze.\"{table}\" \
                 WHERE CAST(\"_timestamp\" AS BIGINT) >= {} GROUP BY 1, 2",
                since.timestamp_micros()
            );
            for b in self.query(&sql).await? {
                // Strings may come back as views or dictionaries.
                let topics = cast(b.column(0), &DataType::Utf8)
                    .map_err(|e| ControlError::Internal(e.to_string()))?;
                let (Some(t), Some(p), Some(o)) = (
                    topics.as_any().downcast_ref::<StringArray>(),
                    b.column(1).as_any().downcast_ref::<Int32Array>(),
                    b.column(2).as_any().downcast_ref::<Int64Array>(),
                ) else {
                    return Err(ControlError::Internal(format!(
                        "unexpected column types in {table}"
                    )));
                };
                for i in 0..b.num_rows() {
                    let key = (t.value(i).to_string(), p.value(i));
                    let o = o.value(i);
                    out.entry(key).and_modify(|v| *v = (*v).min(o)).or_insert(o);
                }
            }
        }
        Ok(out)
    }

    async fn query(
        &self,
        sql: &str,
    ) -> Result<Vec<datafusion::arrow::record_batch::RecordBatch>, ControlError> {
        self.engine
            .query(sql)
            .await
            .map_err(|e| ControlError::Internal(e.message()))
    }

    /// OPTIMIZE, VACUUM or a checkpoint of `schema.table`.
    pub async fn maintain(
        &self,
        table: &str,
        action: crate::ingest::maintenance::Action,
    ) -> Result<String, ControlError> {
        let (schema, name) = table.split_once('.').ok_or_else(|| {
            ControlError::InvalidArgument(format!(
                "table {table:?}: give schema.name, e.g. bronze.orders"
            ))
        })?;
        let m = self.settings().maintenance.clone();
        let summary =
            crate::ingest::maintenance::apply(self.ingest.lake(), schema, name, action, &m).await?;
        let _ = self.ingest.lake().refresh().await;
        Ok(summary)
    }

    /// Reads `tidepool.toml`, the models and `views/` again. A config that does not
    /// validate or a project that does not load is refused with the reason and nothing
    /// changes; otherwise the schedule, model defaults and maintenance settings apply
    /// now, `views/` is deployed, and settings that need a restart are listed.
    pub async fn reload(&self) -> Result<ReloadReport, ControlError> {
        let old = self.settings();
        let new = match &old.config_file {
            Some(file) => Config::load(Some(file))
                .and_then(|c| c.resolve(&old.overrides))
                .map_err(|e| {
                    ControlError::InvalidArgument(format!("{e}; the running configuration is kept"))
                })?,
            None => (*old).clone(),
        };
        let mut paths = ProjectPaths::in_dir(&old.project_dir);
        paths.defaults = new.model_defaults.clone();
        let project = Project::load(paths, kafka_sources(&self.source_names()), BTreeMap::new())
            .map_err(|e| {
                ControlError::InvalidArgument(format!(
                    "the project does not load: {e}; the running configuration is kept"
                ))
            })?;
        let mut report = ReloadReport {
            models: project.models.len(),
            restart_required: restart_required(&old, &new),
            ..Default::default()
        };
        let mut applied = (*old).clone();
        if old.schedule != new.schedule {
            report.applied.push("schedule".into());
        }
        if old.model_defaults != new.model_defaults {
            report.applied.push("models".into());
        }
        if format!("{:?}", old.maintenance) != format!("{:?}", new.maintenance) {
            report.applied.push("maintenance".into());
        }
        applied.schedule = new.schedule.clone();
        applied.model_defaults = new.model_defaults.clone();
        applied.maintenance = new.maintenance.clone();
        *self.settings.write() = Arc::new(applied);
        self.generation.fetch_add(1, Ordering::AcqRel);
        let files = crate::models::views::view_files(&old.project_dir);
        report.view_files = files.len();
        report.view_errors = crate::models::views::deploy(&self.engine, &files)
            .await
            .into_iter()
            .filter_map(|d| d.error)
            .collect();
        tracing::info!(models = report.models, view_files = report.view_files, applied = ?report.applied,
            restart_required = ?report.restart_required, "project reloaded");
        Ok(report)
    }
}

/// Settings that differ between `old` and `new` and are only read at start.
fn restart_required(old: &Settings, new: &Settings) -> Vec<String> {
    let differs =
        |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") != format!("{b:?}");
    let mut out = Vec::new();
    let checks: [(&str, bool); 11] = [
        ("lake", differs(&old.lake, &new.lake)),
        ("project.dir", old.project_dir != new.project_dir),
        (
            "postgres",
            differs(
                &(old.pg_listen, old.max_connections),
                &(new.pg_listen, new.max_connections),
            ),
        ),
        (
            "http",
            differs(
                &(old.http_listen, old.http_max_body),
                &(new.http_listen, new.http_max_body),
            ),
        ),
        (
            "flight",
            differs(
                &(old.flight_listen, old.flight_token_ttl),
                &(new.flight_listen, new.flight_token_ttl),
            ),
        ),
        ("tls", differs(&old.tls, &new.tls)),
        ("users", differs(&old.users, &new.users)),
        (
            "engine",
            differs(
                &(
                    old.query_timeout,
                    old.memory_limit,
                    old.target_partitions,
                    old.max_concurrent_queries,
                ),
                &(
                    new.query_timeout,
                    new.memory_limit,
                    new.target_partitions,
                    new.max_concurrent_queries,
                ),
            ),
        ),
        (
            "kafka",
            differs(
                &(&old.brokers, old.embedded_partitions),
                &(&new.brokers, new.embedded_partitions),
            ),
        ),
        ("sources", differs(&old.sources, &new.sources)),
        ("server", old.shutdown_grace != new.shutdown_grace),
    ];
    for (name, changed) in checks {
        if changed {
            out.push(name.to_string());
        }
    }
    out
}
