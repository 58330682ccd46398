//! The admin gRPC API (`proto/tidepool/admin/v1/admin.proto`), served on the Flight SQL
//! port next to Flight SQL, with the same users: Basic credentials or a Flight bearer
//! token. Readers (users with `schemas`) may call the read-only RPCs.
//!
//! Every RPC is a thin translation onto [`Control`](crate::control::Control) (runs,
//! sources, maintenance, reloads) or a query on the `system.*` tables (runs, ingestion),
//! so reads answer what `psql` would.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::Array;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use tonic::{Request, Response, Status};

use crate::control::{Control, ControlError, ReplayStart, RunRequest, RunUpdate};
use crate::models::ProjectPaths;
use crate::models::run::{Event, Status as ModelStatus};

use super::flight::auth::Authenticator;

/// Generated messages, client and server.
pub mod pb {
    tonic::include_proto!("tidepool.admin.v1");
    /// The encoded descriptor set, for gRPC reflection.
    pub const DESCRIPTOR: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/admin_descriptor.bin"));
}

use pb::admin_server::Admin;

/// The admin service over the running server's control plane.
pub struct AdminService {
    control: Arc<Control>,
    auth: Arc<Authenticator>,
    /// The loaded project, the reload generation and the file times it was loaded at:
    /// ListModels loads again only when a model, macro or YAML file changed or a reload
    /// applied.
    project_cache: parking_lot::Mutex<Option<(u64, Fingerprint, Arc<crate::models::Project>)>>,
}

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
    for dir in [&paths.models, &paths.macros, &paths.tests] {
        walk(dir, &mut out);
    }
    out.sort();
    out
}

impl AdminService {
    pub fn new(control: Arc<Control>, auth: Arc<Authenticator>) -> Self {
        AdminService {
            control,
            auth,
            project_cache: parking_lot::Mutex::new(None),
        }
    }

    /// The calling user, authenticated like a Flight call.
    fn caller<T>(&self, request: &Request<T>) -> Result<String, Status> {
        Ok(self.auth.caller(request.metadata())?.user)
    }

    /// The caller of a mutating RPC: a full user; readers get PermissionDenied.
    fn admin<T>(&self, request: &Request<T>) -> Result<String, Status> {
        let user = self.caller(request)?;
        if self.control.engine().options().access.is_reader(&user) {
            return Err(Status::permission_denied(format!(
                "user {user} is a reader (schemas = [...]); this RPC changes the server and needs a full user"
            )));
        }
        self.unavailable_when_stopping()?;
        Ok(user)
    }

    /// The project as on disk now, loaded again only when its files changed.
    fn project(&self) -> Result<Arc<crate::models::Project>, Status> {
        let generation = self.control.generation();
        let now = fingerprint(&self.control.project_paths());
        if let Some((g, seen, project)) = self.project_cache.lock().as_ref()
            && *g == generation
            && *seen == now
        {
            return Ok(project.clone());
        }
        let project = Arc::new(self.control.load_project(BTreeMap::new()).map_err(status)?);
        *self.project_cache.lock() = Some((generation, now, project.clone()));
        Ok(project)
    }

    fn unavailable_when_stopping(&self) -> Result<(), Status> {
        if self.control.shutting_down() {
            return Err(Status::unavailable("the server is shutting down"));
        }
        Ok(())
    }

    /// Rows of a query on the system tables, every value as text.
    async fn rows(&self, sql: &str) -> Result<Vec<BTreeMap<String, Option<String>>>, Status> {
        let batches = self
            .control
            .engine()
            .query(sql)
            .await
            .map_err(|e| Status::internal(e.message()))?;
        let mut out = Vec::new();
        for b in batches {
            let schema = b.schema();
            let texts: Vec<_> = b
                .columns()
                .iter()
                .map(|c| cast(c, &DataType::Utf8))
                .collect::<Result<_, _>>()
                .map_err(|e| Status::internal(e.to_string()))?;
            for row in 0..b.num_rows() {
                let mut m = BTreeMap::new();
                for (f, col) in schema.fields().iter().zip(&texts) {
                    let s = col
                        .as_any()
                        .downcast_ref::<datafusion::arrow::array::StringArray>()
                        .filter(|a| !a.is_null(row))
                        .map(|a| a.value(row).to_string());
                    m.insert(f.name().clone(), s);
                }
                out.push(m);
            }
        }
        Ok(out)
    }
}

fn text(m: &BTreeMap<String, Option<String>>, k: &str) -> String {
    m.get(k).cloned().flatten().unwrap_or_default()
}

fn int(m: &BTreeMap<String, Option<String>>, k: &str, default: i64) -> i64 {
    m.get(k)
        .cloned()
        .flatten()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn float(m: &BTreeMap<String, Option<String>>, k: &str) -> f64 {
    m.get(k)
        .cloned()
        .flatten()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// A quoted SQL string literal.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn run_of(m: &BTreeMap<String, Option<String>>) -> pb::Run {
    pb::Run {
        run_id: text(m, "run_id"),
        command: text(m, "command"),
        selector: text(m, "selector"),
        status: text(m, "status"),
        started_at: text(m, "started_at"),
        finished_at: text(m, "finished_at"),
        duration_s: float(m, "duration_s"),
        models: int(m, "models", 0),
        tests: int(m, "tests", 0),
        errors: int(m, "errors", 0),
        skipped: int(m, "skipped", 0),
        results: Vec::new(),
    }
}

/// The gRPC status of a refused control call.
fn status(e: ControlError) -> Status {
    match e {
        ControlError::InvalidArgument(m) => Status::invalid_argument(m),
        ControlError::NotFound(m) => Status::not_found(m),
        ControlError::FailedPrecondition(m) => Status::failed_precondition(m),
        ControlError::Unavailable(m) => Status::unavailable(m),
        ControlError::Internal(m) => Status::internal(m),
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn health(
        &self,
        request: Request<pb::HealthRequest>,
    ) -> Result<Response<pb::HealthResponse>, Status> {
        self.caller(&request)?;
        let models = crate::models::project::model_files(&self.control.project_paths())
            .map(|f| f.len() as u32)
            .unwrap_or(0);
        Ok(Response::new(pb::HealthResponse {
            status: if self.control.shutting_down() {
                "shutting down".into()
            } else {
                "serving".into()
            },
            version: crate::VERSION.to_string(),
            lake: self.control.settings().lake.root.clone(),
            uptime_ms: self.control.uptime().as_millis() as u64,
            sources: self.control.source_names(),
            models,
        }))
    }

    async fn list_models(
        &self,
        request: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        self.caller(&request)?;
        self.unavailable_when_stopping()?;
        let req = request.into_inner();
        let project = self.project()?;
        let split = |s: &str| -> Vec<String> { s.split_whitespace().map(str::to_string).collect() };
        let (select, exclude) = (split(&req.selector), split(&req.exclude));
        let invalid = |e: crate::models::ModelsError| Status::invalid_argument(e.to_string());
        crate::models::select::check_terms(&project, &select).map_err(invalid)?;
        crate::models::select::check_terms(&project, &exclude).map_err(invalid)?;
        let chosen = crate::models::select::select(&project, &select, &exclude).map_err(invalid)?;
        // The newest recorded result of each model.
        let last: BTreeMap<String, BTreeMap<String, Option<String>>> = self
            .rows(
                "SELECT m.*, r.finished_at AS run_finished_at FROM system.run_models m \
                 JOIN system.runs r USING (run_id) WHERE m.kind = 'model' ORDER BY r.started_at",
            )
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|m| (text(&m, "name"), m))
            .collect();
        let models = project
            .graph
            .order(&chosen)
            .into_iter()
            .map(|i| {
                let m = &project.models[i];
                let last_run = last.get(&m.relation).map(|r| pb::LastRun {
                    run_id: text(r, "run_id"),
                    status: text(r, "status"),
                    rows: int(r, "rows_written", -1),
                    duration_s: float(r, "duration_s"),
                    finished_at: text(r, "run_finished_at"),
                    error: text(r, "error"),
                });
                pb::Model {
                    relation: m.relation.clone(),
                    materialized: m.config.materialized.as_str().to_string(),
                    file: m.file.path.clone(),
                    depends_on: project.graph.deps[i]
                        .iter()
                        .map(|p| project.models[*p].relation.clone())
                        .collect(),
                    reads: m.reads.clone(),
                    tags: m.config.tags.clone(),
                    last_run,
                }
            })
            .collect();
        Ok(Response::new(pb::ListModelsResponse { models }))
    }

    type RunModelsStream = futures::stream::BoxStream<'static, Result<pb::RunProgress, Status>>;

    async fn run_models(
        &self,
        request: Request<pb::RunModelsRequest>,
    ) -> Result<Response<Self::RunModelsStream>, Status> {
        let user = self.admin(&request)?;
        let req = request.into_inner();
        let split = |s: &str| -> Vec<String> { s.split_whitespace().map(str::to_string).collect() };
        let vars = parse_vars(&req.vars)?;
        let (project, total, rx) = self
            .control
            .run_models(RunRequest {
                select: split(&req.selector),
                exclude: split(&req.exclude),
                full_refresh: req.full_refresh,
                vars,
                tests: req.with_tests,
                threads: if req.threads == 0 {
                    4
                } else {
                    req.threads as usize
                },
                user,
            })
            .map_err(status)?;
        let total = total as u32;
        let state = (rx, project, 0u32);
        let stream =
            futures::stream::unfold(state, move |(mut rx, project, mut done)| async move {
                let update = rx.recv().await?;
                let event = match update {
                    RunUpdate::Event(Event::Started { index }) => {
                        let m = &project.models[index];
                        pb::run_progress::Event::Started(pb::ModelStarted {
                            name: m.relation.clone(),
                            materialized: m.config.materialized.as_str().to_string(),
                            file: m.file.path.clone(),
                            total,
                        })
                    }
                    RunUpdate::Event(Event::Tested(t)) => {
                        pb::run_progress::Event::Test(test_done(&project, &t))
                    }
                    RunUpdate::Event(Event::Finished(r)) => {
                        done += 1;
                        let m = &project.models[r.index];
                        let (st, error) = match &r.status {
                            ModelStatus::Success => ("success", String::new()),
                            ModelStatus::Error(e) => ("error", e.to_string()),
                            ModelStatus::Skipped(why) => ("skipped", why.clone()),
                        };
                        pb::run_progress::Event::Model(pb::ModelDone {
                            name: m.relation.clone(),
                            status: st.into(),
                            rows: r.rows.map_or(-1, |n| n as i64),
                            duration_s: r.duration.as_secs_f64(),
                            error,
                            done,
                            total,
                            materialized: m.config.materialized.as_str().to_string(),
                        })
                    }
                    RunUpdate::Finished(rec, saved) => {
                        let mut run = run_of_record(&rec);
                        if let Some(e) = saved {
                            run.status = format!("{} (not recorded: {e})", run.status);
                        }
                        pb::run_progress::Event::Finished(run)
                    }
                };
                Some((
                    Ok(pb::RunProgress { event: Some(event) }),
                    (rx, project, done),
                ))
            });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_run(
        &self,
        request: Request<pb::GetRunRequest>,
    ) -> Result<Response<pb::Run>, Status> {
        self.caller(&request)?;
        let id = request.into_inner().run_id;
        let runs = self
            .rows(&format!(
                "SELECT * FROM system.runs WHERE run_id = {}",
                literal(&id)
            ))
            .await?;
        let Some(r) = runs.first() else {
            return Err(Status::not_found(format!("no run {id:?} (see ListRuns)")));
        };
        let mut run = run_of(r);
        run.results = self
            .rows(&format!(
                "SELECT * FROM system.run_models WHERE run_id = {}",
                literal(&id)
            ))
            .await?
            .iter()
            .map(|m| pb::ModelDone {
                name: text(m, "name"),
                status: text(m, "status"),
                rows: int(m, "rows_written", -1),
                duration_s: float(m, "duration_s"),
                error: text(m, "error"),
                done: 0,
                total: 0,
                materialized: text(m, "materialized"),
            })
            .collect();
        Ok(Response::new(run))
    }

    async fn list_runs(
        &self,
        request: Request<pb::ListRunsRequest>,
    ) -> Result<Response<pb::ListRunsResponse>, Status> {
        self.caller(&request)?;
        let limit = match request.into_inner().limit {
            0 => 20,
            n => n.min(10_000),
        };
        let runs = self
            .rows(&format!(
                "SELECT * FROM system.runs ORDER BY started_at DESC LIMIT {limit}"
            ))
            .await?
            .iter()
            .map(run_of)
            .collect();
        Ok(Response::new(pb::ListRunsResponse { runs }))
    }

    async fn ingest_status(
        &self,
        request: Request<pb::IngestStatusRequest>,
    ) -> Result<Response<pb::IngestStatusResponse>, Status> {
        self.caller(&request)?;
        let source = request.into_inner().source;
        let sources = self.control.source_names();
        if !source.is_empty() && !sources.contains(&source) {
            return Err(Status::not_found(format!(
                "unknown source {source:?}; sources: {}",
                sources.join(", ")
            )));
        }
        let filter = if source.is_empty() {
            String::new()
        } else {
            format!(" WHERE source = {}", literal(&source))
        };
        let partitions = self
            .rows(&format!(
                "SELECT * FROM system.ingest{filter} ORDER BY source, topic, partition"
            ))
            .await?
            .iter()
            .map(|m| pb::PartitionStatus {
                source: text(m, "source"),
                topic: text(m, "topic"),
                partition: int(m, "partition", 0) as i32,
                committed_offset: int(m, "committed_offset", -1),
                high_watermark: int(m, "high_watermark", -1),
                lag: int(m, "lag", 0),
                messages: int(m, "messages", 0) as u64,
                dead_letters: int(m, "dead_letters", 0) as u64,
                last_commit: text(m, "last_commit"),
                running: text(m, "running") == "true",
                last_error: text(m, "last_error"),
                rate: float(m, "rate"),
                paused: text(m, "paused") == "true",
            })
            .collect();
        Ok(Response::new(pb::IngestStatusResponse { partitions }))
    }

    async fn pause_source(
        &self,
        request: Request<pb::SourceRequest>,
    ) -> Result<Response<pb::SourceState>, Status> {
        self.switch_source(request, true).await
    }

    async fn resume_source(
        &self,
        request: Request<pb::SourceRequest>,
    ) -> Result<Response<pb::SourceState>, Status> {
        self.switch_source(request, false).await
    }

    async fn replay_source(
        &self,
        request: Request<pb::ReplaySourceRequest>,
    ) -> Result<Response<pb::ReplaySourceResponse>, Status> {
        let user = self.admin(&request)?;
        let req = request.into_inner();
        let from = match &req.from {
            Some(pb::replay_source_request::From::FromOffset(o)) if *o >= 0 => ReplayStart::Offset(*o),
            Some(pb::replay_source_request::From::FromOffset(o)) => {
                return Err(Status::invalid_argument(format!(
                    "from_offset {o}: offsets start at 0"
                )));
            }
            Some(pb::replay_source_request::From::FromTimestamp(t)) => {
                ReplayStart::Timestamp(crate::ingest::replay::parse_time(t).ok_or_else(|| {
                    Status::invalid_argument(format!(
                        "from_timestamp {t:?}: give RFC 3339 (2026-11-24T10:00:00Z) or YYYY-MM-DD HH:MM:SS (UTC)"
                    ))
                })?)
            }
            None => {
                return Err(Status::invalid_argument(
                    "say where to replay from: from_offset or from_timestamp",
                ));
            }
        };
        tracing::info!(user = %user, source = %req.source, ?from, "replay requested");
        let r = self
            .control
            .replay(&req.source, from)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ReplaySourceResponse {
            source: req.source,
            version: r.version.unwrap_or(-1),
            rows: r.rows,
            reset_version: r.reset_version.unwrap_or(-1),
            removed: r.removed,
            partitions: r.partitions,
        }))
    }

    async fn maintain(
        &self,
        request: Request<pb::MaintainRequest>,
    ) -> Result<Response<pb::MaintainResponse>, Status> {
        use crate::ingest::maintenance::Action;
        use pb::maintain_request::Action as A;
        let user = self.admin(&request)?;
        let req = request.into_inner();
        let action = match A::try_from(req.action) {
            Ok(A::Optimize) => Action::Optimize,
            Ok(A::Vacuum) => Action::Vacuum,
            Ok(A::Checkpoint) => Action::Checkpoint,
            _ => {
                return Err(Status::invalid_argument(
                    "action: OPTIMIZE, VACUUM or CHECKPOINT",
                ));
            }
        };
        tracing::info!(user = %user, table = %req.table, ?action, "maintenance requested");
        let summary = self
            .control
            .maintain(&req.table, action)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::MaintainResponse {
            table: req.table,
            summary,
        }))
    }

    async fn reload_project(
        &self,
        request: Request<pb::ReloadProjectRequest>,
    ) -> Result<Response<pb::ReloadProjectResponse>, Status> {
        let user = self.admin(&request)?;
        tracing::info!(user = %user, "reload requested");
        let r = self.control.reload().await.map_err(status)?;
        *self.project_cache.lock() = None;
        Ok(Response::new(pb::ReloadProjectResponse {
            models: r.models as u32,
            view_files: r.view_files as u32,
            view_errors: r.view_errors,
            restart_required: r.restart_required,
            applied: r.applied,
        }))
    }
}

impl AdminService {
    async fn switch_source(
        &self,
        request: Request<pb::SourceRequest>,
        paused: bool,
    ) -> Result<Response<pb::SourceState>, Status> {
        let user = self.admin(&request)?;
        let source = request.into_inner().source;
        tracing::info!(user = %user, source = %source, paused, "source switched");
        self.control
            .set_paused(&source, paused)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::SourceState { source, paused }))
    }
}

/// `--vars` text: a JSON object (YAML is a superset for the simple cases and is read too).
fn parse_vars(text: &str) -> Result<BTreeMap<String, serde_json::Value>, Status> {
    if text.trim().is_empty() {
        return Ok(BTreeMap::new());
    }
    let bad =
        |e: String| Status::invalid_argument(format!("vars must be a JSON or YAML object: {e}"));
    match serde_json::from_str(text) {
        Ok(v) => Ok(v),
        Err(json) => serde_yaml_ng::from_str(text).map_err(|_| bad(json.to_string())),
    }
}

fn test_done(project: &crate::models::Project, r: &crate::models::run::TestResult) -> pb::TestDone {
    let t = &project.tests[r.test];
    pb::TestDone {
        name: t.name.clone(),
        path: t.path.clone(),
        status: r.status(project).into(),
        failures: r.failures,
        sample: r.sample.clone(),
        error: r.error.as_ref().map(|e| e.to_string()).unwrap_or_default(),
    }
}

/// A recorded run as the API returns it.
fn run_of_record(rec: &crate::models::records::RunRecord) -> pb::Run {
    let count = |f: &dyn Fn(&crate::models::records::NodeRecord) -> bool| {
        rec.nodes.iter().filter(|n| f(n)).count() as i64
    };
    pb::Run {
        run_id: rec.run_id.clone(),
        command: rec.command.clone(),
        selector: rec.selector.clone(),
        status: rec.status().to_string(),
        started_at: rec.started_at.to_rfc3339(),
        finished_at: rec.finished_at.to_rfc3339(),
        duration_s: (rec.finished_at - rec.started_at).num_milliseconds() as f64 / 1000.0,
        models: count(&|n| n.kind == "model"),
        tests: count(&|n| n.kind == "test"),
        errors: count(&|n| matches!(n.status.as_str(), "error" | "fail")),
        skipped: count(&|n| n.status == "skipped"),
        results: rec
            .nodes
            .iter()
            .map(|n| pb::ModelDone {
                name: n.name.clone(),
                status: n.status.clone(),
                rows: n.rows.map_or(-1, |r| r as i64),
                duration_s: n.seconds,
                error: n.message.clone().unwrap_or_default(),
                done: 0,
                total: 0,
                materialized: if n.kind == "model" {
                    n.detail.clone()
                } else {
                    String::new()
                },
            })
            .collect(),
    }
}
