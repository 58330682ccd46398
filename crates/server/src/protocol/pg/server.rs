//! The Postgres listener: accept loop, TLS, connection limit, graceful shutdown.
//!
//! TLS is set up before the socket is bound; a certificate that cannot be loaded stops the
//! server from starting (never a plaintext fallback). Each accepted socket gets its own
//! handlers (startup, queries, cancel) around one engine session.

use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::sasl::scram::ScramAuth;
use pgwire::api::auth::{DefaultServerParameterProvider, StartupHandler};
use pgwire::api::cancel::CancelHandler;
use pgwire::api::{ClientInfo, NoopHandler, PgWireServerHandlers, RandomPidSecretKeyGenerator};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::admission::Admission;
use super::auth::{StartupGate, TlsOnly, TrustStartup, UserDirectory, server_parameters};
use super::handler::{ConnHandler, ConnState};
use super::shared::{CancelRegistry, PgShared};
use crate::config::{Settings, TlsConfig};
use crate::engine::Engine;

/// Why the Postgres server could not start.
#[derive(Debug, thiserror::Error)]
pub enum PgServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS is configured but cannot start: {0}")]
    Tls(String),
}

/// A bound Postgres server, ready to [`run`](PgServer::run).
pub struct PgServer {
    listener: TcpListener,
    shared: Arc<PgShared>,
    tls: Option<TlsAcceptor>,
    max_connections: usize,
    max_logging_in: usize,
    startup_timeout: Duration,
    grace: Duration,
}

impl PgServer {
    /// Loads TLS (if configured) and binds `addr`.
    pub async fn bind(
        addr: SocketAddr,
        engine: Arc<Engine>,
        settings: &Settings,
        shutdown: CancellationToken,
    ) -> Result<PgServer, PgServerError> {
        let tls = settings.tls.as_ref().map(load_tls).transpose()?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| PgServerError::Bind { addr, source })?;
        let shared = Arc::new(PgShared {
            engine,
            cancels: CancelRegistry::default(),
            shutdown,
            params: Arc::new(server_parameters()),
            users: UserDirectory::new(&settings.users),
            pids: Arc::new(RandomPidSecretKeyGenerator::default()),
            tls_only: settings.tls.as_ref().map(|t| TlsOnly {
                loopback_exempt: t.plaintext_on_loopback,
            }),
        });
        Ok(PgServer {
            listener,
            shared,
            tls,
            max_connections: settings.max_connections,
            max_logging_in: settings.pg_max_startup_connections,
            startup_timeout: settings.pg_startup_timeout,
            grace: settings.shutdown_grace,
        })
    }

    /// The address the server listens on (with the real port when bound to port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// True when clients must authenticate.
    pub fn requires_password(&self) -> bool {
        !self.shared.users.is_empty()
    }

    /// True when TLS is on.
    pub fn tls_enabled(&self) -> bool {
        self.tls.is_some()
    }

    /// Serves until the shutdown token fires, then gives running statements the grace
    /// period to finish and closes the remaining connections.
    pub async fn run(self) {
        let admission = Admission::new(self.max_connections, self.max_logging_in);
        let mut conns = JoinSet::new();
        let shutdown = self.shared.shutdown.clone();
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                a = self.listener.accept() => a,
                Some(done) = conns.join_next(), if !conns.is_empty() => {
                    if let Err(e) = done
                        && e.is_panic()
                    {
                        tracing::error!("a connection task panicked; the connection was closed");
                    }
                    continue;
                }
            };
            let (socket, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; backing off");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let login = admission.arrive();
            let handlers = PgConn::new(self.shared.clone());
            let tls = self.tls.clone();
            let startup_timeout = self.startup_timeout;
            let admission = admission.clone();
            conns.spawn(async move {
                let served =
                    super::conn::serve(socket, tls, handlers, startup_timeout, admission, login);
                if let Err(e) = served.await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            });
        }
        drop(self.listener);
        tracing::info!(
            open = conns.len(),
            "postgres: no longer accepting; waiting for running statements"
        );
        let waited = tokio::time::timeout(self.grace, async {
            while conns.join_next().await.is_some() {}
        })
        .await;
        if waited.is_err() {
            tracing::info!(
                open = conns.len(),
                "postgres: grace period over; closing connections"
            );
            conns.abort_all();
            // A task inside one long CPU-bound poll ends only when that poll returns; it
            // is left behind (the runtime's shutdown does not wait for it either).
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                while conns.join_next().await.is_some() {}
            })
            .await;
        }
    }
}

fn load_tls(tls: &TlsConfig) -> Result<TlsAcceptor, PgServerError> {
    crate::protocol::tls::acceptor(tls).map_err(PgServerError::Tls)
}

/// The handlers of one connection.
struct PgConn {
    handler: Arc<ConnHandler>,
    startup: Arc<StartupGate<Startup>>,
    cancel: Arc<CancelByKey>,
}

impl PgConn {
    fn new(shared: Arc<PgShared>) -> Self {
        let startup = if shared.users.is_empty() {
            Startup::Trust(TrustStartup {
                params: shared.params.clone(),
                pids: shared.pids.clone(),
            })
        } else {
            let mut scram = ScramAuth::new(Arc::new(shared.users.clone()));
            scram.set_iterations(super::auth::SCRAM_ITERATIONS);
            Startup::Scram(Box::new(
                SASLAuthStartupHandler::new(shared.params.clone())
                    .with_scram(scram)
                    .with_pid_secret_key_generator(shared.pids.clone()),
            ))
        };
        PgConn {
            handler: Arc::new(ConnHandler(ConnState::new(shared.clone()))),
            startup: Arc::new(StartupGate::new(startup, shared.tls_only)),
            cancel: Arc::new(CancelByKey(shared)),
        }
    }
}

impl PgWireServerHandlers for PgConn {
    fn simple_query_handler(&self) -> Arc<impl pgwire::api::query::SimpleQueryHandler> {
        self.handler.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl pgwire::api::query::ExtendedQueryHandler> {
        self.handler.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.cancel.clone()
    }

    fn copy_handler(&self) -> Arc<impl pgwire::api::copy::CopyHandler> {
        self.handler.clone()
    }

    fn error_handler(&self) -> Arc<impl pgwire::api::ErrorHandler> {
        Arc::new(NoopHandler)
    }
}

enum Startup {
    Trust(TrustStartup),
    Scram(Box<SASLAuthStartupHandler<DefaultServerParameterProvider>>),
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match self {
            Startup::Trust(t) => t.on_startup(client, message).await,
            Startup::Scram(s) => s.on_startup(client, message).await,
        }
    }
}

struct CancelByKey(Arc<PgShared>);

#[async_trait]
impl CancelHandler for CancelByKey {
    async fn on_cancel_request(&self, request: CancelRequest) {
        let key = request.secret_key.to_bytes();
        if self.0.cancels.cancel(request.pid, &key) {
            tracing::info!(pid = request.pid, "statement cancelled by client request");
        }
    }
}
