//! A small Flight SQL client: `tidepool sql --flight grpc://host:50051`, the Flight
//! benchmark, and tests use it. Handshakes with Basic credentials when a user is given,
//! then carries the bearer token.

use std::path::PathBuf;
use std::time::Duration;

use arrow_flight::error::FlightError;
use arrow_flight::sql::client::FlightSqlServiceClient;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use futures::{Stream, StreamExt, TryStreamExt};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// Where and how to connect.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// `grpc://host:port`, or `grpc+tls://host:port` for TLS.
    pub url: String,
    pub user: Option<String>,
    pub password: Option<String>,
    /// PEM file of the CA (or self-signed certificate) to trust for TLS.
    pub ca: Option<PathBuf>,
}

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "invalid server URL {0:?}: use grpc://host:port (or http://) or grpc+tls://host:port (or https://)"
    )]
    Url(String),
    #[error("cannot connect to {url}: {message}")]
    Connect { url: String, message: String },
    #[error("{0}")]
    Flight(String),
}

impl From<FlightError> for ClientError {
    fn from(e: FlightError) -> Self {
        ClientError::Flight(match e {
            FlightError::Tonic(s) => s.message().to_string(),
            other => other.to_string(),
        })
    }
}

impl From<datafusion::arrow::error::ArrowError> for ClientError {
    fn from(e: datafusion::arrow::error::ArrowError) -> Self {
        ClientError::Flight(e.to_string())
    }
}

/// Connects (and handshakes when a user is given).
pub async fn connect(
    opts: &ConnectOptions,
) -> Result<FlightSqlServiceClient<Channel>, ClientError> {
    let channel = channel(opts).await?;
    let mut client = FlightSqlServiceClient::new(channel);
    if let Some(user) = &opts.user {
        client
            .handshake(user, opts.password.as_deref().unwrap_or_default())
            .await
            .map_err(|e| ClientError::Connect {
                url: opts.url.clone(),
                message: e.to_string(),
            })?;
    }
    Ok(client)
}

/// A gRPC channel to the server (Flight SQL and the admin API share the port):
/// `grpc://` or `http://` in the clear, `grpc+tls://`, `grpcs://` or `https://` with TLS.
pub async fn channel(opts: &ConnectOptions) -> Result<Channel, ClientError> {
    let url = opts.url.as_str();
    let (tls, rest) = [
        ("grpc+tls://", true),
        ("grpcs://", true),
        ("https://", true),
        ("grpc+tcp://", false),
        ("grpc://", false),
        ("http://", false),
    ]
    .iter()
    .find_map(|(prefix, tls)| url.strip_prefix(prefix).map(|r| (*tls, r)))
    .ok_or_else(|| ClientError::Url(opts.url.clone()))?;
    let rest = rest.trim_end_matches('/');
    let scheme = if tls { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{rest}"))
        .map_err(|_| ClientError::Url(opts.url.clone()))?
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .initial_stream_window_size(8 << 20)
        .initial_connection_window_size(32 << 20);
    let connect_err = |message: String| ClientError::Connect {
        url: opts.url.clone(),
        message,
    };
    if tls {
        let mut config = ClientTlsConfig::new().with_webpki_roots();
        if let Some(ca) = &opts.ca {
            let pem =
                std::fs::read(ca).map_err(|e| connect_err(format!("{}: {e}", ca.display())))?;
            config = config.ca_certificate(Certificate::from_pem(pem));
        }
        endpoint = endpoint
            .tls_config(config)
            .map_err(|e| connect_err(e.to_string()))?;
    }
    endpoint
        .connect()
        .await
        .map_err(|e| connect_err(root_cause(&e)))
}

/// The innermost error of a chain ("Connection refused (os error 111)"): transport errors
/// wrap it in several layers that repeat each other.
fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cur = e;
    while let Some(s) = cur.source() {
        cur = s;
    }
    cur.to_string()
}

/// Runs SQL and streams the batches of its result (every endpoint in order).
pub async fn query_stream(
    client: &mut FlightSqlServiceClient<Channel>,
    sql: &str,
) -> Result<
    (
        SchemaRef,
        impl Stream<Item = Result<RecordBatch, ClientError>>,
    ),
    ClientError,
> {
    let info = client.execute(sql.to_string(), None).await?;
    let schema: SchemaRef = std::sync::Arc::new(info.clone().try_decode_schema()?);
    let mut streams = Vec::new();
    for endpoint in info.endpoint {
        if let Some(ticket) = endpoint.ticket {
            streams.push(client.do_get(ticket).await?);
        }
    }
    let batches = futures::stream::iter(streams)
        .flatten()
        .map_err(ClientError::from);
    Ok((schema, batches))
}

/// Runs SQL and collects its result.
pub async fn query(
    client: &mut FlightSqlServiceClient<Channel>,
    sql: &str,
) -> Result<(SchemaRef, Vec<RecordBatch>), ClientError> {
    let (schema, stream) = query_stream(client, sql).await?;
    let batches = stream.try_collect().await?;
    Ok((schema, batches))
}
