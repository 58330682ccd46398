//! The gRPC listener: Flight SQL and the admin API on one tonic server (or the admin API
//! on a port of its own). Binds before serving (port 0 in tests), TLS through tonic (with
//! ALPN h2, which gRPC clients require), graceful shutdown with the server's grace period
//! for running streams. Both services share one authenticator.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arrow_flight::flight_service_server::FlightServiceServer;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};

use super::flight::FlightSql;
use super::flight::auth::Authenticator;
use crate::config::Settings;
use crate::engine::Engine;

/// Why the Flight server could not start.
#[derive(Debug, thiserror::Error)]
pub enum FlightServerError {
    #[error("cannot listen on {addr} (flight): {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS is configured but the flight listener cannot start: {0}")]
    Tls(String),
}

/// HTTP/2 windows large enough that a fast reader is not throttled by flow control.
const STREAM_WINDOW: u32 = 8 << 20;
const CONNECTION_WINDOW: u32 = 32 << 20;

/// What a gRPC listener serves: Flight SQL, the admin API (with reflection), or both.
pub struct Services {
    pub flight: Option<Arc<Engine>>,
    pub admin: Option<Arc<crate::control::Control>>,
}

/// A bound gRPC listener (Flight SQL, and the admin API unless it has its own port),
/// ready to [`run`](FlightServer::run).
pub struct FlightServer {
    listener: tokio::net::TcpListener,
    service: Option<FlightSql>,
    admin: Option<crate::protocol::admin::AdminService>,
    /// For log lines: "flight" or "admin".
    name: &'static str,
    tls: Option<ServerTlsConfig>,
    shutdown: CancellationToken,
    grace: Duration,
}

impl FlightServer {
    /// Loads TLS (if configured) and binds `addr`.
    pub async fn bind(
        addr: SocketAddr,
        services: Services,
        auth: Arc<Authenticator>,
        settings: &Settings,
        shutdown: CancellationToken,
    ) -> Result<FlightServer, FlightServerError> {
        let tls = match &settings.tls {
            Some(t) => {
                // The same checks (and messages) as the Postgres listener's.
                crate::protocol::tls::acceptor(t).map_err(FlightServerError::Tls)?;
                let read = |p: &std::path::Path| {
                    std::fs::read(p)
                        .map_err(|e| FlightServerError::Tls(format!("{}: {e}", p.display())))
                };
                let identity = Identity::from_pem(read(&t.cert)?, read(&t.key)?);
                Some(ServerTlsConfig::new().identity(identity))
            }
            None => None,
        };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| FlightServerError::Bind { addr, source })?;
        let name = if services.flight.is_some() {
            "flight"
        } else {
            "admin"
        };
        Ok(FlightServer {
            listener,
            admin: services
                .admin
                .map(|c| crate::protocol::admin::AdminService::new(c, auth.clone())),
            service: services.flight.map(|e| {
                FlightSql::new(
                    e,
                    auth,
                    settings.flight_ticket_ttl,
                    settings.flight_advertise.clone(),
                )
            }),
            name,
            tls,
            shutdown,
            grace: settings.shutdown_grace,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// True when TLS is on.
    pub fn tls_enabled(&self) -> bool {
        self.tls.is_some()
    }

    /// Serves until the shutdown token fires, then gives running streams the grace period.
    pub async fn run(self) {
        let mut builder = Server::builder()
            .tcp_nodelay(true)
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW);
        if let Some(tls) = self.tls {
            builder = match builder.tls_config(tls) {
                Ok(b) => b,
                Err(e) => {
                    // Never fall back to plaintext.
                    tracing::error!(listener = self.name, error = %e, "TLS setup failed; not serving");
                    return;
                }
            };
        }
        let service = self.service.map(|s| {
            FlightServiceServer::new(s)
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(usize::MAX)
        });
        let incoming = TcpIncoming::from(self.listener).with_nodelay(Some(true));
        let shutdown = self.shutdown.clone();
        let reflection = match &self.admin {
            None => None,
            Some(_) => match tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(crate::protocol::admin::pb::DESCRIPTOR)
                .build_v1()
            {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!(error = %e, "admin: gRPC reflection unavailable");
                    None
                }
            },
        };
        let admin = self
            .admin
            .map(crate::protocol::admin::pb::admin_server::AdminServer::new);
        let router = builder
            .add_optional_service(service)
            .add_optional_service(admin)
            .add_optional_service(reflection);
        let serve = router
            .serve_with_incoming_shutdown(incoming, async move { shutdown.cancelled().await });
        let grace = self.grace;
        let stop = async {
            self.shutdown.cancelled().await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            r = serve => {
                if let Err(e) = r {
                    tracing::error!(listener = self.name, error = %e, "server stopped");
                }
            }
            _ = stop => tracing::info!(listener = self.name, "grace period over; closing streams"),
        }
    }
}
