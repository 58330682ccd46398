//! The application: everything `tidepool serve` runs, built from settings.
//!
//! [`App::build`] opens the lake, builds the engine, prepares ingestion (starting the
//! embedded broker when no brokers are configured) and binds every listener (port 0 in
//! tests), so the bound addresses are known before anything is served; [`App::run`]
//! serves and ingests until the cancellation token fires, then shuts down gracefully:
//! listeners stop accepting, each source commits the batch in flight, statements get the
//! grace period.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::AdminPlacement;
use crate::config::Settings;
use crate::engine::{Engine, EngineError, EngineOptions};
use crate::ingest::{Assignment, Ingest, IngestError};
use crate::lake::{Lake, LakeError};
use crate::protocol::grpc::{FlightServer, FlightServerError, Services};
use crate::protocol::http::{HttpServer, HttpServerError};
use crate::protocol::pg::{PgServer, PgServerError};

/// Why the application could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Postgres(#[from] PgServerError),
    #[error(transparent)]
    Http(#[from] HttpServerError),
    #[error(transparent)]
    Flight(#[from] FlightServerError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Cluster(#[from] tidepool_cluster::ClusterError),
}

/// A built application with its listeners bound.
pub struct App {
    engine: Arc<Engine>,
    ingest: Arc<Ingest>,
    /// What the admin API and `[schedule]` drive: runs, sources, reloads.
    control: Arc<crate::control::Control>,
    pg: Option<PgServer>,
    http: Option<HttpServer>,
    flight: Option<FlightServer>,
    /// The admin API on a port of its own (`[admin] listen`).
    admin: Option<FlightServer>,
    /// Where the admin API is served.
    admin_placement: crate::config::AdminPlacement,
    /// The project folder, whose `views/` is deployed and watched.
    project_dir: std::path::PathBuf,
    /// What this node runs (`[node] roles`).
    roles: crate::config::Roles,
    shutdown: CancellationToken,
}

impl App {
    /// Opens the lake, builds the engine, prepares ingestion and binds the listeners.
    pub async fn build(settings: &Settings) -> Result<App, AppError> {
        let lake = Lake::open(&settings.lake)?;
        let engine = Engine::new(
            lake.clone(),
            EngineOptions::from(settings),
            settings.dialect(),
        )?;
        if let Some(scheduler) = &settings.cluster_scheduler {
            let remote = tidepool_cluster::remote::Remote::new(scheduler)?;
            tracing::info!(%scheduler, "queries on plain lake tables run on the cluster");
            engine.set_cluster(Arc::new(remote));
        }
        if settings.users.is_empty() {
            tracing::warn!(
                "no [[users]]: trust mode, every client may read and write the lake and any file or URL the server can reach (listeners stay on loopback)"
            );
        }
        let ingest = Arc::new(Ingest::new(&settings.ingest(), lake)?);
        engine.register_system_table("ingest", Arc::new(IngestTable(ingest.status())));
        crate::models::records::register(&engine);
        crate::models::freshness::register(&engine);
        let shutdown = CancellationToken::new();
        let control = crate::control::Control::new(
            engine.clone(),
            ingest.clone(),
            settings.control(),
            Box::new(crate::config::ConfigReloader {
                start: settings.clone(),
            }),
            shutdown.clone(),
        );
        let roles = settings.roles;
        let pg = match settings.pg_listen.filter(|_| roles.serve) {
            Some(addr) => {
                Some(PgServer::bind(addr, engine.clone(), settings, shutdown.child_token()).await?)
            }
            None => None,
        };
        let http = match settings.http_listen {
            Some(addr) => Some(
                HttpServer::bind(addr, ingest.clone(), settings, shutdown.child_token()).await?,
            ),
            None => None,
        };
        // One authenticator: a bearer token from the Flight handshake works on both ports.
        let auth = Arc::new(crate::protocol::flight::auth::Authenticator::new(
            crate::protocol::users::UserDirectory::new(&settings.users),
            settings.flight_token_ttl,
        ));
        // A node that does not serve queries keeps the port for the admin API when that
        // shares it.
        let on_flight_port = settings.admin == AdminPlacement::FlightPort;
        let flight = match settings
            .flight_listen
            .filter(|_| roles.serve || on_flight_port)
        {
            Some(addr) => {
                let services = Services {
                    flight: roles.serve.then(|| engine.clone()),
                    admin: on_flight_port.then(|| control.clone()),
                };
                let token = shutdown.child_token();
                Some(FlightServer::bind(addr, services, auth.clone(), settings, token).await?)
            }
            None => None,
        };
        let admin = match settings.admin {
            AdminPlacement::Own(addr) => {
                let services = Services {
                    flight: None,
                    admin: Some(control.clone()),
                };
                let token = shutdown.child_token();
                Some(FlightServer::bind(addr, services, auth, settings, token).await?)
            }
            _ => None,
        };
        Ok(App {
            admin_placement: settings.admin,
            engine,
            ingest,
            control,
            pg,
            http,
            flight,
            admin,
            project_dir: settings.project_dir.clone(),
            roles,
            shutdown,
        })
    }

    /// The Postgres address, if that listener is enabled.
    pub fn pg_addr(&self) -> Option<SocketAddr> {
        self.pg.as_ref().and_then(|p| p.local_addr().ok())
    }

    /// The HTTP address, if that listener is enabled.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|h| h.local_addr().ok())
    }

    /// The Flight SQL address, if that listener is enabled.
    pub fn flight_addr(&self) -> Option<SocketAddr> {
        self.flight.as_ref().and_then(|f| f.local_addr().ok())
    }

    /// Where the admin API listens: its own port, else the Flight SQL port if it is on.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        match &self.admin {
            Some(a) => a.local_addr().ok(),
            None if self.admin_placement == crate::config::AdminPlacement::FlightPort => {
                self.flight_addr()
            }
            None => None,
        }
    }

    /// True when Postgres clients must give a password.
    pub fn requires_password(&self) -> bool {
        self.pg.as_ref().is_some_and(|p| p.requires_password())
    }

    /// True when the Postgres listener speaks TLS.
    pub fn tls_enabled(&self) -> bool {
        self.pg.as_ref().is_some_and(|p| p.tls_enabled())
    }

    /// The engine, for in-process use.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The control plane the admin API drives.
    pub fn control(&self) -> &Arc<crate::control::Control> {
        &self.control
    }

    /// Ingestion: sources, broker, status.
    pub fn ingest(&self) -> &Arc<Ingest> {
        &self.ingest
    }

    /// Serves and ingests until `token` is cancelled, then shuts down gracefully.
    pub async fn run(mut self, token: CancellationToken) {
        let shutdown = self.shutdown.clone();
        let engine = self.engine.clone();
        tokio::spawn(async move {
            token.cancelled().await;
            shutdown.cancel();
        });
        let mut tasks = tokio::task::JoinSet::new();
        if let Some(pg) = self.pg.take() {
            tasks.spawn(pg.run());
        }
        if let Some(http) = self.http.take() {
            tasks.spawn(http.run());
        }
        if let Some(flight) = self.flight.take() {
            tasks.spawn(flight.run());
        }
        if let Some(admin) = self.admin.take() {
            tasks.spawn(admin.run());
        }
        if self.roles.serve {
            tasks.spawn(crate::models::views::serve(
                engine.clone(),
                self.project_dir.clone(),
                self.shutdown.child_token(),
            ));
        }
        if self.roles.schedule {
            tasks.spawn(crate::control::schedule::serve(
                self.control.clone(),
                self.shutdown.child_token(),
            ));
        }
        if self.roles.ingest {
            self.start_ingest(&mut tasks).await;
        }
        while tasks.join_next().await.is_some() {}
        engine.close();
        drop(self.ingest);
        tracing::info!("stopped");
    }

    /// Starts the sources (in the consumer group) and the maintenance of their tables.
    async fn start_ingest(&self, tasks: &mut tokio::task::JoinSet<()>) {
        let ingest_token = self.shutdown.child_token();
        match self
            .ingest
            .start(&[], Assignment::Group, false, ingest_token.clone())
            .await
        {
            Ok(runs) => {
                for run in runs {
                    tasks.spawn(async move {
                        let name = run.name().to_string();
                        if let Err(e) = run.wait().await {
                            tracing::error!(source = %name, error = %e, "ingestion stopped");
                        }
                    });
                }
            }
            Err(e) => tracing::error!(error = %e, "ingestion did not start"),
        }
        let tables: Vec<(String, String)> = self
            .ingest
            .sources()
            .iter()
            .flat_map(|s| {
                [
                    (crate::ingest::BRONZE.to_string(), s.name.clone()),
                    (
                        crate::ingest::BRONZE.to_string(),
                        crate::ingest::dead_letter_table(&s.name),
                    ),
                ]
            })
            .collect();
        tasks.spawn(crate::ingest::maintenance::run(
            self.ingest.lake().clone(),
            tables,
            self.ingest.maintenance().clone(),
            self.ingest.lease(),
            ingest_token,
        ));
    }
}

/// `system.ingest`: the ingest layer's live status as a table of the engine.
#[derive(Debug)]
struct IngestTable(Arc<crate::ingest::status::IngestStatus>);

impl crate::engine::SystemTable for IngestTable {
    fn schema(&self) -> datafusion::arrow::datatypes::SchemaRef {
        crate::ingest::status::IngestStatus::schema()
    }

    fn rows(
        &self,
    ) -> Result<datafusion::arrow::record_batch::RecordBatch, datafusion::arrow::error::ArrowError>
    {
        self.0.batch()
    }
}
