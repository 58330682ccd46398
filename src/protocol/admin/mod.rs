//! The admin gRPC API (`proto/tidepool/admin/v1/admin.proto`), served on the Flight SQL
//! port next to Flight SQL, with the same users: Basic credentials or a Flight bearer
//! token. Readers (users with `schemas`) may call the read-only RPCs.
//!
//! STATUS: Health, ListModels, ListRuns, GetRun and IngestStatus answer; RunModels,
//! PauseSource, ResumeSource, ReplaySource, Maintain and ReloadProject answer
//! Unimplemented for now (PermissionDenied first for readers: they change the server). Reads go through the engine's `system.*` tables, so they
//! answer what `psql` would.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::Array;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::engine::Engine;
use crate::models::ProjectPaths;

use super::flight::auth::Authenticator;

/// Generated messages, client and server.
pub mod pb {
    tonic::include_proto!("tidepool.admin.v1");
    /// The encoded descriptor set, for gRPC reflection.
    pub const DESCRIPTOR: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/admin_descriptor.bin"));
}

use pb::admin_server::Admin;

/// What the admin service needs from the running server.
pub struct AdminService {
    engine: Arc<Engine>,
    auth: Arc<Authenticator>,
    project: ProjectPaths,
    sources: Vec<String>,
    lake: String,
    started: Instant,
    shutdown: CancellationToken,
    /// The loaded project and the file times it was loaded at: ListModels loads again
    /// only when a model, macro or YAML file changed.
    project_cache: parking_lot::Mutex<Option<(Fingerprint, Arc<crate::models::Project>)>>,
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
    pub fn new(
        engine: Arc<Engine>,
        auth: Arc<Authenticator>,
        settings: &crate::config::Settings,
        shutdown: CancellationToken,
    ) -> Self {
        let mut project = ProjectPaths::in_dir(&settings.project_dir);
        project.defaults = settings.model_defaults.clone();
        AdminService {
            engine,
            auth,
            project,
            sources: settings.sources.iter().map(|s| s.name.clone()).collect(),
            lake: settings.lake.root.clone(),
            started: Instant::now(),
            shutdown,
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
        if self.engine.options().access.readers.contains_key(&user) {
            return Err(Status::permission_denied(format!(
                "user {user} is a reader (schemas = [...]); this RPC changes the server and needs a full user"
            )));
        }
        self.unavailable_when_stopping()?;
        Ok(user)
    }

    /// The project as on disk now, loaded again only when its files changed.
    fn project(&self) -> Result<Arc<crate::models::Project>, Status> {
        let now = fingerprint(&self.project);
        if let Some((seen, project)) = self.project_cache.lock().as_ref()
            && *seen == now
        {
            return Ok(project.clone());
        }
        let sources = crate::models::kafka_sources(&self.sources);
        let project = crate::models::Project::load(self.project.clone(), sources, BTreeMap::new())
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        let project = Arc::new(project);
        *self.project_cache.lock() = Some((now, project.clone()));
        Ok(project)
    }

    fn unavailable_when_stopping(&self) -> Result<(), Status> {
        if self.shutdown.is_cancelled() {
            return Err(Status::unavailable("the server is shutting down"));
        }
        Ok(())
    }

    /// Rows of a query on the system tables, every value as text.
    async fn rows(&self, sql: &str) -> Result<Vec<BTreeMap<String, Option<String>>>, Status> {
        let batches = self
            .engine
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

fn not_yet(what: &str) -> Status {
    Status::unimplemented(format!(
        "{what} is not implemented yet in this tidepool version"
    ))
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn health(
        &self,
        request: Request<pb::HealthRequest>,
    ) -> Result<Response<pb::HealthResponse>, Status> {
        self.caller(&request)?;
        let models = crate::models::project::model_files(&self.project)
            .map(|f| f.len() as u32)
            .unwrap_or(0);
        Ok(Response::new(pb::HealthResponse {
            status: if self.shutdown.is_cancelled() {
                "shutting down".into()
            } else {
                "serving".into()
            },
            version: crate::VERSION.to_string(),
            lake: self.lake.clone(),
            uptime_ms: self.started.elapsed().as_millis() as u64,
            sources: self.sources.clone(),
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
        let chosen =
            crate::models::select::select(&project, &split(&req.selector), &split(&req.exclude))
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
        // The newest recorded result of each model.
        let last: BTreeMap<String, BTreeMap<String, Option<String>>> = self
            .rows(
                "SELECT m.*, r.finished_at AS run_finished_at FROM system.run_models m \
                 JOIN system.runs r USING (run_id) ORDER BY r.started_at",
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
                    rows: int(r, "rows", 0),
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
        self.admin(&request)?;
        Err(not_yet("RunModels"))
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
                rows: int(m, "rows", 0),
                duration_s: float(m, "duration_s"),
                error: text(m, "error"),
                done: 0,
                total: 0,
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
        if !source.is_empty() && !self.sources.contains(&source) {
            return Err(Status::not_found(format!(
                "unknown source {source:?}; sources: {}",
                self.sources.join(", ")
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
            })
            .collect();
        Ok(Response::new(pb::IngestStatusResponse { partitions }))
    }

    async fn pause_source(
        &self,
        request: Request<pb::SourceRequest>,
    ) -> Result<Response<pb::SourceState>, Status> {
        self.admin(&request)?;
        Err(not_yet("PauseSource"))
    }

    async fn resume_source(
        &self,
        request: Request<pb::SourceRequest>,
    ) -> Result<Response<pb::SourceState>, Status> {
        self.admin(&request)?;
        Err(not_yet("ResumeSource"))
    }

    async fn replay_source(
        &self,
        request: Request<pb::ReplaySourceRequest>,
    ) -> Result<Response<pb::ReplaySourceResponse>, Status> {
        self.admin(&request)?;
        Err(not_yet("ReplaySource"))
    }

    async fn maintain(
        &self,
        request: Request<pb::MaintainRequest>,
    ) -> Result<Response<pb::MaintainResponse>, Status> {
        self.admin(&request)?;
        Err(not_yet("Maintain"))
    }

    async fn reload_project(
        &self,
        request: Request<pb::ReloadProjectRequest>,
    ) -> Result<Response<pb::ReloadProjectResponse>, Status> {
        self.admin(&request)?;
        Err(not_yet("ReloadProject"))
    }
}
