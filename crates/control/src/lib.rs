//! The control plane of a running server, behind the admin gRPC API: model runs (one at
//! a time, shared with `[schedule]`), pausing, resuming and replaying sources, table
//! maintenance and reloading the project and `tidepool.toml` without a restart. The admin
//! service only translates between protobuf and these calls.

pub mod schedule;
mod settings;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::{Mutex, RwLock};
use tidepool_engine::{Engine, EngineError, ErrorKind};
use tidepool_ingest::maintenance::Action;
use tidepool_ingest::replay::ReplayFrom;
use tidepool_ingest::status::PartitionRow;
use tidepool_ingest::{Ingest, IngestError};
use tidepool_models::history::{self, LastResult};
use tidepool_models::records::{self, Label, RunRecord, RunSummary};
use tidepool_models::run::{Event, RunOptions};
use tidepool_models::{ModelsError, Project, ProjectPaths, kafka_sources, select};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use settings::{ControlSettings, Fixed, Reloaded, Reloader, Schedule};

/// Why a control call failed. [`ControlError::class`] says which of a few outcomes it
/// is; the admin service turns that into a gRPC status in one place.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// A request that names nothing or holds a value out of range.
    #[error("{0}")]
    InvalidArgument(String),
    /// An unknown source, run or table.
    #[error("{0}")]
    NotFound(String),
    /// The run slot is held.
    #[error("a run is in progress ({0}); try again when it has finished (ListRuns)")]
    Busy(String),
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The project on disk does not load.
    #[error("the project does not load: {0}")]
    Project(#[source] ModelsError),
    /// A reload found a configuration or project that does not validate; nothing changed.
    #[error("{0}; the running configuration is kept")]
    Reload(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A selector, `vars` value or other models input.
    #[error(transparent)]
    Models(#[from] ModelsError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error("{}", .0.message())]
    Engine(#[from] EngineError),
    /// A replay still reading after the time a call waits.
    #[error(
        "the replay is under way (bronze version {version:?}) but not finished after {secs} s; watch system.ingest"
    )]
    ReplayUnfinished { version: Option<i64>, secs: u64 },
}

/// What became of a control call that failed, protocol-neutral.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    InvalidArgument,
    NotFound,
    FailedPrecondition,
    Unavailable,
    DeadlineExceeded,
    Internal,
}

impl ControlError {
    pub fn class(&self) -> Class {
        match self {
            ControlError::InvalidArgument(_) | ControlError::Reload(_) => Class::InvalidArgument,
            ControlError::NotFound(_) => Class::NotFound,
            ControlError::Busy(_) | ControlError::Project(_) => Class::FailedPrecondition,
            ControlError::ShuttingDown => Class::Unavailable,
            ControlError::ReplayUnfinished { .. } => Class::DeadlineExceeded,
            ControlError::Models(e) => match e.kind() {
                ErrorKind::InvalidParameterValue | ErrorKind::Syntax => Class::InvalidArgument,
                ErrorKind::UndefinedTable => Class::NotFound,
                _ => Class::Internal,
            },
            ControlError::Ingest(e) => match e {
                IngestError::UnknownSource(_) | IngestError::NoTable(_) => Class::NotFound,
                IngestError::Refused(_) => Class::FailedPrecondition,
                IngestError::Timeout(_) | IngestError::Stopped => Class::Unavailable,
                IngestError::Lake(tidepool_lake::LakeError::Busy(_)) => Class::Unavailable,
                _ => Class::Internal,
            },
            ControlError::Engine(_) => Class::Internal,
        }
    }
}

/// The models a selector picks, in build order, with their newest recorded results.
pub struct ModelList {
    pub project: Arc<Project>,
    /// Indexes into `project.models`, in DAG order.
    pub order: Vec<usize>,
    /// By relation.
    pub last: BTreeMap<String, LastResult>,
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
    Finished(Box<RunRecord>, Option<ModelsError>),
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

/// The loaded project, the reload generation and the file times it was loaded at.
type CachedProject = (u64, Fingerprint, Arc<Project>);

/// Paths and modification times of the project's files.
type Fingerprint = Vec<(std::path::PathBuf, std::time::SystemTime)>;

fn fingerprint(paths: &ProjectPaths) -> Fingerprint {
    fn walk(dir: &std::path::Path, out: &mut Fingerprint) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            match e.metadata() {
                Ok(m) if m.is_dir() => walk(&path, out),
                Ok(m) => out.push((path, m.modified().unwrap_or(std::time::UNIX_EPOCH))),
                Err(_) => {}
            }
        }
    }
    let mut out = Vec::new();
    for dir in [&paths.models, &paths.macros, &paths.tests, &paths.seeds] {
        walk(dir, &mut out);
    }
    let dbt = paths.dir.join(tidepool_models::dbt_project::FILE);
    if let Ok(m) = std::fs::metadata(&dbt) {
        out.push((dbt, m.modified().unwrap_or(std::time::UNIX_EPOCH)));
    }
    out.sort();
    out
}

/// The running server, as the admin API drives it.
pub struct Control {
    engine: Arc<Engine>,
    ingest: Arc<Ingest>,
    settings: RwLock<Arc<ControlSettings>>,
    reloader: Box<dyn Reloader>,
    /// ListModels loads the project again only when a model, macro or YAML file changed
    /// or a reload applied.
    project_cache: Mutex<Option<CachedProject>>,
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
        settings: ControlSettings,
        reloader: Box<dyn Reloader>,
        shutdown: CancellationToken,
    ) -> Arc<Control> {
        Arc::new(Control {
            engine,
            ingest,
            settings: RwLock::new(Arc::new(settings)),
            reloader,
            project_cache: Mutex::new(None),
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
    pub fn settings(&self) -> Arc<ControlSettings> {
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
    pub fn project_paths(&self) -> Result<ProjectPaths, tidepool_models::ModelsError> {
        let s = self.settings();
        let mut paths = ProjectPaths::open(&s.project_dir, &s.target_schema)?;
        paths.defaults = s.model_defaults.clone();
        Ok(paths)
    }

    /// The project as on disk now.
    pub fn load_project(
        &self,
        vars: BTreeMap<String, serde_json::Value>,
    ) -> Result<Project, ControlError> {
        Project::load(
            self.project_paths().map_err(ControlError::Project)?,
            kafka_sources(&self.source_names()),
            vars,
        )
        .map_err(ControlError::Project)
    }

    /// The project as on disk now, loaded again only when its files changed or a reload
    /// applied.
    pub fn project(&self) -> Result<Arc<Project>, ControlError> {
        let generation = self.generation();
        let now = match self.project_paths() {
            Ok(paths) => fingerprint(&paths),
            Err(e) => return Err(ControlError::Project(e)),
        };
        if let Some((g, seen, project)) = self.project_cache.lock().as_ref()
            && *g == generation
            && *seen == now
        {
            return Ok(project.clone());
        }
        let project = Arc::new(self.load_project(BTreeMap::new())?);
        *self.project_cache.lock() = Some((generation, now, project.clone()));
        Ok(project)
    }

    /// How many model files the project has (0 when its folder cannot be read).
    pub fn model_files(&self) -> usize {
        self.project_paths()
            .and_then(|p| tidepool_models::project::model_files(&p))
            .map_or(0, |f| f.len())
    }

    /// The models `select` and `exclude` (dbt selectors) pick, with their last results.
    pub async fn list_models(
        &self,
        select: &[String],
        exclude: &[String],
    ) -> Result<ModelList, ControlError> {
        self.refuse_when_stopping()?;
        let project = self.project()?;
        select::check_terms(&project, select)?;
        select::check_terms(&project, exclude)?;
        let chosen = select::select(&project, select, exclude)?;
        // Runs recorded by another process may be unreadable for a moment; the list
        // stands without them.
        let last = history::last_model_results(&self.engine)
            .await
            .unwrap_or_default();
        Ok(ModelList {
            order: project.graph.order(&chosen),
            project,
            last,
        })
    }

    /// The `limit` most recent recorded runs, newest first.
    pub async fn runs(&self, limit: usize) -> Result<Vec<RunSummary>, ControlError> {
        Ok(history::recent(&self.engine, limit).await?)
    }

    /// A recorded run with its models and tests.
    pub async fn run(
        &self,
        run_id: &str,
    ) -> Result<(RunSummary, Vec<records::NodeRecord>), ControlError> {
        history::find(&self.engine, run_id)
            .await?
            .ok_or_else(|| ControlError::NotFound(format!("no run {run_id:?} (see ListRuns)")))
    }

    /// Ingestion by partition, of every source or of `source`.
    pub fn ingest_status(&self, source: Option<&str>) -> Result<Vec<PartitionRow>, ControlError> {
        if let Some(s) = source {
            self.known_source(s)?;
        }
        let mut rows: Vec<PartitionRow> = self
            .ingest
            .status()
            .rows()
            .into_iter()
            .filter(|r| source.is_none_or(|s| r.source == s))
            .collect();
        rows.sort_by(|a, b| {
            (&a.source, &a.topic, a.partition).cmp(&(&b.source, &b.topic, b.partition))
        });
        Ok(rows)
    }

    fn refuse_when_stopping(&self) -> Result<(), ControlError> {
        if self.shutting_down() {
            return Err(ControlError::ShuttingDown);
        }
        Ok(())
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
                Err(ControlError::Busy(who))
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
        self.refuse_when_stopping()?;
        let project = Arc::new(self.load_project(req.vars.clone())?);
        select::check_terms(&project, &req.select)?;
        select::check_terms(&project, &req.exclude)?;
        let chosen: BTreeSet<usize> = select::select(&project, &req.select, &req.exclude)?;
        let resources = if req.tests {
            select::Resources::All
        } else {
            select::Resources::Models
        };
        let chosen = select::of_kind(&project, chosen, resources);
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
            ReplayStart::Timestamp(t) => ReplayFrom::Offsets(
                tidepool_ingest::bronze::offsets_since(self.ingest.lake(), source, t).await?,
            ),
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
        let lake = self.ingest.lake().clone();
        report.removed = tidepool_ingest::bronze::rows_in(&lake, source, &plan).await?;
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
                // The replay goes on at the next start.
                return Err(ControlError::ShuttingDown);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ControlError::ReplayUnfinished {
                    version: reset.version,
                    secs: REPLAY_WAIT.as_secs(),
                });
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        if reset.was_paused {
            tracing::info!(
                source,
                "the source was paused before the replay and is running now"
            );
        }
        report.rows = tidepool_ingest::bronze::rows_in(&lake, source, &plan).await?;
        report.version = lake
            .table(tidepool_ingest::BRONZE, source)
            .await
            .map_err(IngestError::from)?
            .and_then(|t| t.version())
            .map(|v| v as i64);
        Ok(report)
    }

    /// OPTIMIZE, VACUUM or a checkpoint of `schema.table`.
    pub async fn maintain(&self, table: &str, action: Action) -> Result<String, ControlError> {
        let (schema, name) = table.split_once('.').ok_or_else(|| {
            ControlError::InvalidArgument(format!(
                "table {table:?}: give schema.name, e.g. bronze.orders"
            ))
        })?;
        let m = self.settings().maintenance.clone();
        let summary =
            tidepool_ingest::maintenance::apply(self.ingest.lake(), schema, name, action, &m)
                .await?;
        let _ = self.ingest.lake().refresh().await;
        Ok(summary)
    }

    /// Reads `tidepool.toml`, the models and `views/` again. A config that does not
    /// validate or a project that does not load is refused with the reason and nothing
    /// changes; otherwise the schedule, model defaults and maintenance settings apply
    /// now, `views/` is deployed, and settings that need a restart are listed.
    pub async fn reload(&self) -> Result<ReloadReport, ControlError> {
        let old = self.settings();
        let Reloaded {
            settings: new,
            restart_required,
        } = self.reloader.reload().map_err(ControlError::Reload)?;
        let mut paths = ProjectPaths::in_dir(&old.project_dir);
        paths.defaults = new.model_defaults.clone();
        let project = Project::load(paths, kafka_sources(&self.source_names()), BTreeMap::new())
            .map_err(|e| ControlError::Reload(format!("the project does not load: {e}").into()))?;
        let mut report = ReloadReport {
            models: project.models.len(),
            restart_required,
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
        *self.project_cache.lock() = None;
        let files = tidepool_models::views::view_files(&old.project_dir);
        report.view_files = files.len();
        report.view_errors = tidepool_models::views::deploy(&self.engine, &files)
            .await
            .into_iter()
            .filter_map(|d| d.error)
            .collect();
        tracing::info!(models = report.models, view_files = report.view_files, applied = ?report.applied,
            restart_required = ?report.restart_required, "project reloaded");
        Ok(report)
    }
}
