//! The Flight SQL listener: binds before serving (port 0 in tests), TLS through tonic
//! (with ALPN h2, which gRPC clients require), graceful shutdown with the server's grace
//! period for running streams.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arrow_flight::flight_service_server::FlightServiceServer;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};

use super::auth::Authenticator;
use super::service::FlightSql;
use crate::config::Settings;
use crate::engine::Engine;
use crate::protocol::users::UserDirectory;

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

/// A bound Flight SQL server, ready to [`run`](FlightServer::run).
pub struct FlightServer {
    listener: tokio::net::TcpListener,
    service: FlightSql,
    /// The admin gRPC API, served on the same port.
    admin: crate::protocol::admin::AdminService,
    tls: Option<ServerTlsConfig>,
    shutdown: CancellationToken,
    grace: Duration,
}

impl FlightServer {
    /// Loads TLS (if configured) and binds `addr`.
    pub async fn bind(
        addr: SocketAddr,
        engine: Arc<Engine>,
        control: Arc<crate::control::Control>,
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
        let auth = Arc::new(Authenticator::new(
            UserDirectory::new(&settings.users),
            settings.flight_token_ttl,
        ));
        let admin = crate::protocol::admin::AdminService::new(control, auth.clone());
        Ok(FlightServer {
            listener,
            admin,
            service: FlightSql::new(engine, auth),
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
                    tracing::error!(error = %e, "flight: TLS setup failed; not serving");
                    return;
                }
            };
        }
        let service = FlightServiceServer::new(self.service)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(usize::MAX);
        let incoming = TcpIncoming::from(self.listener).with_nodelay(Some(true));
        let shutdown = self.shutdown.clone();
        let admin = crate::protocol::admin::pb::admin_server::AdminServer::new(self.admin);
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::protocol::admin::pb::DESCRIPTOR)
            .build_v1();
        let mut router = builder.add_service(service).add_service(admin);
        match reflection {
            Ok(r) => router = router.add_service(r),
            Err(e) => tracing::warn!(error = %e, "admin: gRPC reflection unavailable"),
        }
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
                    tracing::error!(error = %e, "flight: server stopped");
                }
            }
            _ = stop => tracing::info!("flight: grace period over; closing streams"),
        }
    }
}
