//! The admin gRPC API (`proto/tidepool/admin/v1/admin.proto`), served on the Flight SQL
//! port next to Flight SQL, with the same users: Basic credentials or a Flight bearer
//! token. Readers (users with `schemas`) may call the read-only RPCs.
//!
//! Every RPC is a translation between protobuf and a typed call on
//! [`Control`](crate::control::Control) (models, runs, ingestion, sources, maintenance,
//! reloads), and [`status`] maps a [`ControlError`] to a gRPC status in one place.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::control::{Class, Control, ControlError, ReplayStart, RunRequest, RunUpdate};
use crate::models::records::{NodeRecord, RunRecord, RunSummary};
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
}

impl AdminService {
    pub fn new(control: Arc<Control>, auth: Arc<Authenticator>) -> Self {
        AdminService { control, auth }
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
        if self.control.shutting_down() {
            return Err(status(ControlError::ShuttingDown));
        }
        Ok(user)
    }
}

/// The gRPC status of a failed control call.
fn status(e: ControlError) -> Status {
    let message = e.to_string();
    match e.class() {
        Class::InvalidArgument => Status::invalid_argument(message),
        Class::NotFound => Status::not_found(message),
        Class::FailedPrecondition => Status::failed_precondition(message),
        Class::Unavailable => Status::unavailable(message),
        Class::DeadlineExceeded => Status::deadline_exceeded(message),
        Class::Internal => Status::internal(message),
    }
}

/// Selector text as the CLI sends it: words.
fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

fn run_of(r: &RunSummary) -> pb::Run {
    pb::Run {
        run_id: r.run_id.clone(),
        command: r.command.clone(),
        selector: r.selector.clone(),
        status: r.status.clone(),
        started_at: r.started_at.to_rfc3339(),
        finished_at: r.finished_at.to_rfc3339(),
        duration_s: r.duration_s,
        models: r.models,
        tests: r.tests,
        errors: r.errors,
        skipped: r.skipped,
        results: Vec::new(),
    }
}

fn node_done(n: &NodeRecord) -> pb::ModelDone {
    pb::ModelDone {
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
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn health(
        &self,
        request: Request<pb::HealthRequest>,
    ) -> Result<Response<pb::HealthResponse>, Status> {
        self.caller(&request)?;
        let models = self.control.model_files() as u32;
        Ok(Response::new(pb::HealthResponse {
            status: if self.control.shutting_down() {
                "shutting down".into()
            } else {
                "serving".into()
            },
            version: crate::VERSION.to_string(),
            lake: self.control.settings().lake.clone(),
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
        let req = request.into_inner();
        let list = self
            .control
            .list_models(&words(&req.selector), &words(&req.exclude))
            .await
            .map_err(status)?;
        let project = &list.project;
        let models = list
            .order
            .iter()
            .map(|&i| {
                let m = &project.models[i];
                let last_run = list.last.get(&m.relation).map(|r| pb::LastRun {
                    run_id: r.run_id.clone(),
                    status: r.node.status.clone(),
                    rows: r.node.rows.map_or(-1, |n| n as i64),
                    duration_s: r.node.seconds,
                    finished_at: r.run_finished_at.to_rfc3339(),
                    error: r.node.message.clone().unwrap_or_default(),
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
        let vars =
            crate::models::parse_vars(&req.vars).map_err(|e| status(ControlError::Models(e)))?;
        let (project, total, rx) = self
            .control
            .run_models(RunRequest {
                select: words(&req.selector),
                exclude: words(&req.exclude),
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
                    // Shown as a test line: name, pass or error, and the error.
                    RunUpdate::Event(Event::Hook(h)) => {
                        pb::run_progress::Event::Test(pb::TestDone {
                            name: h.name.clone(),
                            path: "dbt_project.yml".into(),
                            status: if h.error.is_some() { "error" } else { "pass" }.into(),
                            failures: 0,
                            sample: String::new(),
                            error: h.error.as_ref().map(|e| e.to_string()).unwrap_or_default(),
                        })
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
        let (summary, nodes) = self.control.run(&id).await.map_err(status)?;
        let mut run = run_of(&summary);
        run.results = nodes.iter().map(node_done).collect();
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
            .control
            .runs(limit as usize)
            .await
            .map_err(status)?
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
        let partitions = self
            .control
            .ingest_status(Some(source.as_str()).filter(|s| !s.is_empty()))
            .map_err(status)?
            .into_iter()
            .map(|r| pb::PartitionStatus {
                source: r.source,
                topic: r.topic,
                partition: r.partition,
                committed_offset: r.committed.unwrap_or(-1),
                high_watermark: r.high_watermark.unwrap_or(-1),
                lag: r.lag.unwrap_or(0),
                messages: r.messages,
                dead_letters: r.dead_letters,
                last_commit: r.last_commit.map(|t| t.to_rfc3339()).unwrap_or_default(),
                running: r.running,
                last_error: r.last_error.unwrap_or_default(),
                rate: r.rate,
                paused: r.paused,
                broker_state: r.broker_state.to_string(),
                last_broker_contact: r
                    .last_broker_contact
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default(),
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
fn run_of_record(rec: &RunRecord) -> pb::Run {
    let mut run = run_of(&rec.summary());
    run.results = rec.nodes.iter().map(node_done).collect();
    run
}
