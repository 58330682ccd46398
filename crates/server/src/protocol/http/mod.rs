//! HTTP: `GET /health`, `GET /metrics` (Prometheus text) and `POST /v1/ingest/<source>`,
//! which produces a JSON object, a JSON array or NDJSON to the source's topic and answers
//! once the broker acknowledged every event. Thin: producing and counting live in
//! [`crate::ingest`]. Basic authentication with the configured users when there are any;
//! TLS when configured (or no start).

mod body;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::config::{Settings, User};
use crate::ingest::Ingest;
use crate::ingest::produce::Event;

/// Why the HTTP server could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
}

#[derive(Clone)]
struct HttpState {
    ingest: Arc<Ingest>,
    users: Arc<Vec<User>>,
    access: Arc<crate::engine::Access>,
    max_body: usize,
    metrics_public: bool,
}

/// A bound HTTP listener.
pub struct HttpServer {
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    shutdown: CancellationToken,
}

impl HttpServer {
    /// Binds `addr`.
    pub async fn bind(
        addr: SocketAddr,
        ingest: Arc<Ingest>,
        settings: &Settings,
        shutdown: CancellationToken,
    ) -> Result<HttpServer, HttpServerError> {
        let tls = settings
            .tls
            .as_ref()
            .map(crate::protocol::tls::acceptor)
            .transpose()
            .map_err(HttpServerError::Tls)?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| HttpServerError::Bind { addr, source })?;
        let state = HttpState {
            ingest,
            users: Arc::new(settings.users.clone()),
            access: Arc::new(crate::engine::EngineOptions::from(settings).access),
            max_body: settings.http_max_body,
            metrics_public: settings.http_metrics_public,
        };
        let router = Router::new()
            .route("/health", get(health))
            .route("/metrics", get(metrics))
            .route("/v1/ingest/{source}", post(ingest_events))
            .layer(DefaultBodyLimit::max(settings.http_max_body))
            .with_state(state);
        Ok(HttpServer {
            listener,
            router,
            tls,
            shutdown,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn tls_enabled(&self) -> bool {
        self.tls.is_some()
    }

    /// Serves until the shutdown token fires.
    pub async fn run(self) {
        let shutdown = self.shutdown.clone().cancelled_owned();
        let result = match self.tls {
            None => {
                axum::serve(self.listener, self.router)
                    .with_graceful_shutdown(shutdown)
                    .await
            }
            Some(tls) => {
                let listener = TlsListener {
                    inner: self.listener,
                    tls,
                };
                axum::serve(listener, self.router)
                    .with_graceful_shutdown(shutdown)
                    .await
            }
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "http server stopped");
        }
    }
}

/// Accepts TCP connections and completes the TLS handshake (bounded in time).
struct TlsListener {
    inner: TcpListener,
    tls: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (socket, peer) = match self.inner.accept().await {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "http accept failed; backing off");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            match tokio::time::timeout(Duration::from_secs(10), self.tls.accept(socket)).await {
                Ok(Ok(stream)) => return (stream, peer),
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = serde_json::json!({ "error": message.into() }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn denied() -> Response {
    let mut r = error(StatusCode::UNAUTHORIZED, "authentication required");
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Basic realm=\"tidepool\""),
    );
    r
}

/// True when no users are configured or the request carries valid Basic credentials.
/// The caller: `Some("")` in trust mode (no users), the user for valid Basic
/// credentials, `None` otherwise.
fn caller(state: &HttpState, headers: &HeaderMap) -> Option<String> {
    if state.users.is_empty() {
        return Some(String::new());
    }
    let (name, password) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(crate::protocol::users::decode_basic)?;
    state
        .users
        .iter()
        .find(|u| {
            u.name == name && constant_time_eq(u.password.expose().as_bytes(), password.as_bytes())
        })
        .map(|u| u.name.clone())
}

fn too_large(max: usize) -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the body is larger than [http] max_body ({max} bytes)"),
    )
}

fn forbidden(message: impl Into<String>) -> Response {
    error(StatusCode::FORBIDDEN, message)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn health(State(state): State<HttpState>) -> Response {
    let sources: Vec<serde_json::Value> = state
        .ingest
        .status()
        .sources()
        .iter()
        .map(|s| {
            let broker = s.broker.lock().clone();
            serde_json::json!({
                "source": s.name,
                "running": s.running.load(std::sync::atomic::Ordering::Relaxed),
                "error": s.last_error.lock().clone(),
                "broker_state": broker.state.as_str(),
                "last_broker_contact": broker.last_contact.map(|t| t.to_rfc3339()),
            })
        })
        .collect();
    let body = serde_json::json!({ "status": "ok", "sources": sources }).to_string();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

async fn metrics(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    if !state.metrics_public {
        let Some(user) = caller(&state, &headers) else {
            return denied();
        };
        if state.access.is_reader(&user) {
            return forbidden(format!(
                "user {user} is a reader; /metrics needs a full user (or [http] metrics_public = true)"
            ));
        }
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.ingest.status().prometheus(),
    )
        .into_response()
}

#[derive(Debug, serde::Deserialize)]
struct IngestParams {
    /// A top-level field whose value becomes the Kafka key of each event.
    key: Option<String>,
}

async fn ingest_events(
    State(state): State<HttpState>,
    Path(source): Path<String>,
    Query(params): Query<IngestParams>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    // Credentials and the declared size are checked before a byte of the body is read.
    let Some(user) = caller(&state, &headers) else {
        return denied();
    };
    let write = crate::engine::authz::Touch::Write {
        schema: "bronze".into(),
        table: source.to_ascii_lowercase(),
        op: "INSERT",
    };
    if let Err(e) = state.access.principal(&user).check(&write) {
        return forbidden(e.to_string());
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > state.max_body as u64) {
        return too_large(state.max_body);
    }
    let body = match axum::body::to_bytes(body, state.max_body).await {
        Ok(b) => b,
        Err(_) => return too_large(state.max_body),
    };
    let producer = state.ingest.producer();
    let Some(topic) = producer.topic(&source).map(str::to_string) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("unknown source {source:?}; sources are declared in tidepool.toml"),
        );
    };
    let events = match body::split(&body, params.key.as_deref()) {
        Ok(e) => e,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    if events.is_empty() {
        return error(StatusCode::BAD_REQUEST, "the body holds no events");
    }
    let refs: Vec<Event<'_>> = events
        .iter()
        .map(|(k, v)| Event {
            key: k.as_deref(),
            value: v,
        })
        .collect();
    match producer.send(&source, &refs).await {
        Ok(n) => {
            let body = serde_json::json!({ "accepted": n, "source": source, "topic": topic });
            (
                StatusCode::ACCEPTED,
                [(header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response()
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}
