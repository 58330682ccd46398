//! The application: everything `tidepool serve` runs, built from settings.
//!
//! [`App::build`] opens the lake, builds the engine and binds every listener (port 0 in
//! tests), so the bound addresses are known before anything is served; [`App::run`]
//! serves until the cancellation token fires, then shuts down gracefully.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::engine::{Engine, EngineError, EngineOptions};
use crate::lake::{Lake, LakeError};
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
}

/// A built application with its listeners bound.
pub struct App {
    engine: Arc<Engine>,
    pg: Option<PgServer>,
    shutdown: CancellationToken,
}

impl App {
    /// Opens the lake, builds the engine and binds the listeners.
    pub async fn build(settings: &Settings) -> Result<App, AppError> {
        let lake = Lake::open(&settings.lake)?;
        let engine = Engine::new(lake, EngineOptions::from(settings))?;
        let shutdown = CancellationToken::new();
        let pg = match settings.pg_listen {
            Some(addr) => {
                Some(PgServer::bind(addr, engine.clone(), settings, shutdown.child_token()).await?)
            }
            None => None,
        };
        Ok(App {
            engine,
            pg,
            shutdown,
        })
    }

    /// The Postgres address, if that listener is enabled.
    pub fn pg_addr(&self) -> Option<SocketAddr> {
        self.pg.as_ref().and_then(|p| p.local_addr().ok())
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

    /// Serves until `token` is cancelled, then shuts down gracefully.
    pub async fn run(self, token: CancellationToken) {
        let shutdown = self.shutdown.clone();
        let engine = self.engine.clone();
        tokio::spawn(async move {
            token.cancelled().await;
            shutdown.cancel();
        });
        let mut tasks = tokio::task::JoinSet::new();
        if let Some(pg) = self.pg {
            tasks.spawn(pg.run());
        }
        while tasks.join_next().await.is_some() {}
        engine.close();
        tracing::info!("stopped");
    }
}
