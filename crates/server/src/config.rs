//! Configuration: `tidepool.toml`, then `TIDEPOOL_*` environment variables, then command
//! line flags, each overriding the one before. Everything is validated here, up front, so a
//! bad setting stops the process with a message naming the setting instead of failing later.
//! Passwords are resolved here and kept in [`Secret`], whose `Debug` never shows them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid setting {setting}: {message}")]
    Invalid { setting: String, message: String },
}

fn invalid(setting: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting: setting.to_string(),
        message: message.into(),
    }
}

/// The whole configuration of a tidepool process.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub node: NodeConfig,
    pub lake: LakeConfig,
    pub postgres: PostgresConfig,
    pub engine: EngineConfig,
    pub server: ServerConfig,
    pub tls: Option<TlsConfig>,
    pub users: Vec<UserConfig>,
    pub http: HttpConfig,
    pub flight: FlightConfig,
    pub admin: AdminConfig,
    pub kafka: KafkaConfig,
    pub sources: Vec<SourceConfig>,
    pub maintenance: MaintenanceConfig,
    pub project: ProjectConfig,
    pub schedule: Option<ScheduleConfig>,
    pub cluster: ClusterConfig,
    /// `[models.<schema>]`: config defaults for the models of `sql/<schema>/`, as
    /// dbt_project.yml's `+materialized` etc.; a model's own `config()` wins.
    pub models: BTreeMap<String, toml::Table>,
    /// The folder of the config file (set when it is read).
    #[serde(skip)]
    pub config_dir: Option<PathBuf>,
    /// The config file (set when it is read), which a reload reads again.
    #[serde(skip)]
    pub config_file: Option<PathBuf>,
}

/// `[node]`: this process among several that share one lake and one consumer group.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// The node's name [default: the host name]: its Kafka consumers' static group
    /// membership (`group.instance.id` = `<name>.<source>`, so a restarted node gets its
    /// partitions back without a rebalance) and `tidepool.node` in the metadata of each
    /// commit it makes. Each process of a consumer group needs its own.
    pub name: Option<String>,
    /// What the process runs: `ingest` (the Kafka sources and bronze maintenance),
    /// `serve` (Postgres and Flight SQL), `schedule` (the `[schedule]` builds)
    /// [default: all three]. Health, metrics and the admin API run on every node.
    pub roles: Option<Vec<String>>,
    /// The `[schedule]` builds and bronze maintenance run on one node at a time, the
    /// holder of a lease kept in the lake; a holder that stops renewing (killed, frozen)
    /// loses it after this many seconds [default: 15].
    pub lease_secs: Option<u64>,
}

/// What a node runs (`[node] roles`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub ingest: bool,
    pub serve: bool,
    pub schedule: bool,
}

impl Roles {
    pub const ALL: Roles = Roles {
        ingest: true,
        serve: true,
        schedule: true,
    };

    fn parse(roles: &[String]) -> Result<Roles, ConfigError> {
        let mut out = Roles {
            ingest: false,
            serve: false,
            schedule: false,
        };
        for r in roles {
            match r.trim() {
                "ingest" => out.ingest = true,
                "serve" => out.serve = true,
                "schedule" => out.schedule = true,
                other => {
                    return Err(invalid(
                        "node.roles",
                        format!("unknown role {other:?} (roles: ingest, serve, schedule)"),
                    ));
                }
            }
        }
        if out
            == (Roles {
                ingest: false,
                serve: false,
                schedule: false,
            })
        {
            return Err(invalid(
                "node.roles",
                "name at least one of ingest, serve, schedule",
            ));
        }
        Ok(out)
    }
}

/// The node name `[node] name` gives, else the host name; checked to be a valid part of
/// a Kafka `group.instance.id` (letters, digits, `.`, `_`, `-`; at most 200 characters).
fn node_name(configured: Option<&str>) -> Result<String, ConfigError> {
    let name = match configured {
        Some(n) => n.trim().to_string(),
        None => whoami::hostname().map_err(|e| {
            invalid(
                "node.name",
                format!("no host name to default to ({e}): set one"),
            )
        })?,
    };
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name.len() > 200 || !name.chars().all(valid) {
        return Err(invalid(
            "node.name",
            format!("{name:?}: use 1 to 200 letters, digits, '.', '_' or '-'"),
        ));
    }
    Ok(name)
}

/// `[flight] advertise` checked: empty, or a `grpc://` / `grpc+tls://` URL with a host and
/// a port (what Flight clients accept as an endpoint location).
fn advertise(text: &str) -> Result<Option<String>, ConfigError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let bad = |why: &str| invalid("flight.advertise", format!("{text:?}: {why}"));
    let url = url::Url::parse(text).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "grpc" | "grpc+tls" | "grpc+tcp") {
        return Err(bad("use grpc://host:port or grpc+tls://host:port"));
    }
    if url.host_str().is_none_or(str::is_empty) || url.port().is_none() {
        return Err(bad("name a host and a port, e.g. grpc://node-a:50051"));
    }
    Ok(Some(text.to_string()))
}

/// Where the SQL project (models, macros, tests) lives.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProjectConfig {
    /// Project folder [default: the config file's folder, else the current folder].
    pub dir: Option<PathBuf>,
    /// The lake schema a dbt project's target schema maps to [default: public].
    pub target_schema: Option<String>,
}

/// `[schedule]`: `serve` builds the models on a timer, a cron expression, or when the
/// tables they read got new commits. Runs never overlap.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    /// Run every N seconds.
    pub every_secs: Option<u64>,
    /// Cron expression (5 fields, or 6 with seconds), in UTC.
    pub cron: Option<String>,
    /// Run when a table the models read has a new Delta version (checked every second).
    pub on_new_data: bool,
    /// `build` (models and tests, the default) or `run`.
    pub command: Option<String>,
    /// dbt selectors, as `--select`.
    pub select: Option<String>,
    /// dbt selectors, as `--exclude`.
    pub exclude: Option<String>,
    /// Models built at once.
    pub threads: Option<usize>,
}

pub use tidepool_control::Schedule;

/// The HTTP listener: health, metrics and the ingest endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub enabled: bool,
    pub listen: String,
    /// Largest request body `POST /v1/ingest/<source>` accepts, e.g. "16MiB".
    pub max_body: String,
    /// Serve `/metrics` without credentials (for a scraper that cannot log in).
    pub metrics_public: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            enabled: true,
            listen: "127.0.0.1:8080".to_string(),
            max_body: "16MiB".to_string(),
            metrics_public: false,
        }
    }
}

/// The Arrow Flight SQL listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlightConfig {
    pub enabled: bool,
    pub listen: String,
    /// Bearer tokens from a Handshake expire after this many seconds.
    pub token_ttl_secs: u64,
    /// A result ticket (endpoint) not fetched with DoGet within this many seconds is
    /// dropped, and the query slot it holds released.
    pub ticket_ttl_secs: u64,
    /// This node's address as clients reach it, e.g. "grpc://node-a:50051", put into
    /// every FlightEndpoint: behind a load balancer a client redeems a ticket on the node
    /// that issued it. Empty (the default): no location, the client uses its connection.
    pub advertise: String,
}

impl Default for FlightConfig {
    fn default() -> Self {
        FlightConfig {
            enabled: true,
            listen: "127.0.0.1:50051".to_string(),
            token_ttl_secs: 3600,
            ticket_ttl_secs: 60,
            advertise: String::new(),
        }
    }
}

/// `[cluster]`: where queries run past this machine.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// A Ballista scheduler (`tidepool scheduler`), e.g. "df://scheduler:50050": queries
    /// that read only plain lake tables run there (`SET tidepool.distributed = off`
    /// keeps a session's here). Empty (the default): every query runs in this process.
    pub scheduler: String,
}

/// The admin gRPC API: on the Flight SQL port unless given a port of its own.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Set to true to turn the admin API off.
    pub disabled: bool,
    /// A listen address of its own, e.g. "127.0.0.1:50052" (to firewall it apart from
    /// the query port); without it the API shares the Flight SQL port.
    pub listen: Option<String>,
}

/// Kafka settings shared by every source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// `host:port[,host:port]`; omitted means the embedded dev broker.
    pub brokers: Option<String>,
    /// Consumer group of every source unless a source names its own.
    pub group_id: String,
    /// librdkafka properties for every client (SASL, SSL...), e.g. `"security.protocol" = "SASL_SSL"`.
    pub properties: BTreeMap<String, String>,
    /// Partitions of each topic the embedded broker creates.
    pub embedded_partitions: i32,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: None,
            group_id: "tidepool".to_string(),
            properties: BTreeMap::new(),
            embedded_partitions: 3,
        }
    }
}

/// One Kafka source landing in `bronze.<name>`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub name: String,
    /// Topics to consume; defaults to `[name]`.
    #[serde(default)]
    pub topics: Vec<String>,
    #[serde(default = "default_format")]
    pub format: String,
    #[serde(default)]
    pub start: StartOffset,
    /// Declared schema: a Delta/Spark schema JSON or a JSON Schema file.
    pub schema: Option<PathBuf>,
    /// Keep the original message text in `_raw`.
    #[serde(default = "default_true")]
    pub raw: bool,
    /// Commit when this many messages are buffered.
    #[serde(default = "default_max_rows")]
    pub max_rows: usize,
    /// Commit when this many message bytes are buffered, e.g. "64MiB".
    #[serde(default = "default_max_bytes")]
    pub max_bytes: String,
    /// Commit at most this long after the first buffered message arrived.
    #[serde(default = "default_max_latency_ms")]
    pub max_latency_ms: u64,
    /// Messages larger than this go to the dead-letter table, e.g. "1MiB".
    #[serde(default = "default_max_message")]
    pub max_message_bytes: String,
    /// Consumer group; defaults to `kafka.group_id`.
    pub group_id: Option<String>,
    /// librdkafka properties for this source, over `kafka.properties`.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

fn default_format() -> String {
    "json".to_string()
}
fn default_true() -> bool {
    true
}
fn default_max_rows() -> usize {
    100_000
}
fn default_max_bytes() -> String {
    "64MiB".to_string()
}
fn default_max_latency_ms() -> u64 {
    1000
}
fn default_max_message() -> String {
    "1MiB".to_string()
}

/// Background upkeep of ingested tables.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaintenanceConfig {
    /// Compact a bronze table when it has this many files smaller than `target_file_size`.
    pub compact_min_files: usize,
    /// How often tables are checked for compaction and vacuum, in seconds; 0 disables it.
    pub interval_secs: u64,
    /// Files compaction aims for, e.g. "128MiB".
    pub target_file_size: String,
    /// Files no longer referenced are deleted after this many hours.
    pub vacuum_retention_hours: u64,
    /// Write a Delta checkpoint every this many commits.
    pub checkpoint_interval: u64,
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        MaintenanceConfig {
            compact_min_files: 20,
            interval_secs: 60,
            target_file_size: "128MiB".to_string(),
            vacuum_retention_hours: 168,
            checkpoint_interval: 10,
        }
    }
}

/// Where the lake lives: the lake crate owns its settings.
pub use tidepool_ingest::{IngestConfig, Maintenance, Source, StartOffset};
pub use tidepool_lake::LakeConfig;

/// The Postgres wire protocol listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresConfig {
    pub enabled: bool,
    pub listen: String,
    pub max_connections: usize,
    /// A client that has not logged in this many seconds after connecting is dropped.
    pub startup_timeout_secs: u64,
    /// At most this many connections may be logging in at once; a new one pushes the
    /// oldest out. They take no session slot until their startup message arrives.
    pub max_startup_connections: usize,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            enabled: true,
            listen: "127.0.0.1:5433".to_string(),
            max_connections: 256,
            startup_timeout_secs: 5,
            max_startup_connections: 64,
        }
    }
}

/// Query engine limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Per-statement timeout in seconds; 0 disables it.
    pub query_timeout_secs: u64,
    /// Memory pool for query execution, e.g. "4GiB"; spilling operators spill past it and
    /// others fail with an out-of-memory error instead of taking the process down.
    pub memory_limit: Option<String>,
    /// Parallelism of a query; defaults to the number of cores.
    pub target_partitions: Option<usize>,
    /// At most this many heavy statements execute at once; the rest wait.
    pub max_concurrent_queries: usize,
    /// Queries reading at most this many rows (by table statistics) are light: they have
    /// their own slots (twice `max_concurrent_queries`) and do not wait behind heavy
    /// ones. 0 puts every statement in one lane.
    pub light_query_rows: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            query_timeout_secs: 0,
            memory_limit: None,
            target_partitions: None,
            max_concurrent_queries: 64,
            light_query_rows: 1_000_000,
        }
    }
}

/// Process-wide settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// On SIGINT/SIGTERM, running queries get this long to finish.
    pub shutdown_grace_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            shutdown_grace_secs: 10,
        }
    }
}

/// TLS certificate and key, both PEM files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Let Postgres clients on loopback log in without TLS (the other ports are TLS only).
    #[serde(default)]
    pub plaintext_on_loopback: bool,
}

/// A user as written in the config file: exactly one password source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    /// Name of an environment variable holding the password.
    pub password_env: Option<String>,
    /// A file whose first line is the password.
    pub password_file: Option<PathBuf>,
    /// The password itself; prefer `password_env` or `password_file`.
    pub password: Option<Secret>,
    /// When given, the user only reads tables and views and calls procedures of these
    /// schemas (a BI reader); no DDL or writes.
    pub schemas: Option<Vec<String>>,
    /// Host paths and object-store URLs outside the lake this user may read and write
    /// (`["/data/landing/", "s3://landing-bucket/"]`); none when not given.
    #[serde(default)]
    pub files: Vec<String>,
}

/// A string that is never printed.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A user with its password resolved.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub password: Secret,
    /// `schemas = [...]`: a reader of these schemas only.
    pub schemas: Option<std::collections::BTreeSet<String>>,
    /// `files = [...]`: path and URL prefixes outside the lake this user may use.
    pub files: Vec<String>,
}

/// Settings given on the command line or in `TIDEPOOL_*` variables; they win over the file.
/// The `tidepool` command line fills these in (its flags mirror the fields).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Config file [default: ./tidepool.toml when present]
    pub config: Option<PathBuf>,
    /// Lake root: a folder or an object store URL
    pub lake: Option<String>,
    /// Postgres listen address, e.g. 127.0.0.1:5433
    pub pg_listen: Option<String>,
    /// HTTP listen address (health, metrics, ingest), e.g. 127.0.0.1:8080
    pub http_listen: Option<String>,
    /// Arrow Flight SQL listen address, e.g. 127.0.0.1:50051
    pub flight_listen: Option<String>,
    /// The location every FlightEndpoint names (`[flight] advertise`)
    pub flight_advertise: Option<String>,
    /// Kafka brokers (host:port,...); without them the embedded dev broker runs
    pub brokers: Option<String>,
    /// Per-statement timeout in seconds (0 = none)
    pub query_timeout: Option<u64>,
    /// Query memory limit, e.g. 4GiB
    pub memory_limit: Option<String>,
    /// TLS certificate (PEM)
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM)
    pub tls_key: Option<PathBuf>,
    /// This node's name (`[node] name`)
    pub node_name: Option<String>,
    /// What this node runs, e.g. ingest,serve (`[node] roles`)
    pub roles: Option<String>,
}

/// The validated, resolved form of [`Config`] the rest of the program uses.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This process's name among the nodes sharing the lake (`[node] name`).
    pub node: String,
    /// What this process runs (`[node] roles`).
    pub roles: Roles,
    /// How long the schedule and maintenance leases last unrenewed (`[node] lease_secs`).
    pub lease: Duration,
    pub lake: LakeConfig,
    /// The SQL project's folder (models, macros, tests).
    pub project_dir: PathBuf,
    /// `[project] target_schema`: where a dbt project's models go.
    pub target_schema: String,
    /// `[models.<schema>]` config defaults by folder.
    pub model_defaults: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
    pub schedule: Option<Schedule>,
    pub pg_listen: Option<SocketAddr>,
    pub max_connections: usize,
    pub pg_startup_timeout: Duration,
    pub pg_max_startup_connections: usize,
    pub query_timeout: Option<Duration>,
    pub memory_limit: Option<usize>,
    pub target_partitions: Option<usize>,
    pub max_concurrent_queries: usize,
    pub light_query_rows: u64,
    pub shutdown_grace: Duration,
    pub tls: Option<TlsConfig>,
    pub users: Vec<User>,
    pub http_listen: Option<SocketAddr>,
    pub http_max_body: usize,
    pub http_metrics_public: bool,
    pub flight_listen: Option<SocketAddr>,
    /// Where the admin API is served.
    pub admin: AdminPlacement,
    /// How long a Flight bearer token stays valid.
    pub flight_token_ttl: Duration,
    /// How long a Flight result ticket waits for its DoGet.
    pub flight_ticket_ttl: Duration,
    /// `[flight] advertise`: the location put into every FlightEndpoint.
    pub flight_advertise: Option<String>,
    /// `[cluster] scheduler`, checked.
    pub cluster_scheduler: Option<String>,
    /// Broker list; `None` means the embedded dev broker.
    pub brokers: Option<String>,
    /// Partitions of topics the embedded broker creates.
    pub embedded_partitions: i32,
    pub sources: Vec<Source>,
    pub maintenance: Maintenance,
    /// The file these settings were read from (a reload reads it again).
    pub config_file: Option<PathBuf>,
    /// The command-line overrides applied on top of it.
    pub overrides: Overrides,
}

/// Where the admin API is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminPlacement {
    Off,
    /// On the Flight SQL port (off when Flight SQL is off).
    FlightPort,
    Own(SocketAddr),
}

impl Settings {
    /// What the ingest layer runs: the sources, their brokers, maintenance.
    pub fn ingest(&self) -> IngestConfig {
        IngestConfig {
            node: self.node.clone(),
            lease: self.lease,
            brokers: self.brokers.clone(),
            embedded_partitions: self.embedded_partitions,
            sources: self.sources.clone(),
            maintenance: self.maintenance.clone(),
        }
    }

    /// What the control plane reads: the project, `[schedule]`, `[models]` defaults,
    /// maintenance; a reload replaces these.
    pub fn control(&self) -> tidepool_control::ControlSettings {
        tidepool_control::ControlSettings {
            lake: self.lake.root.clone(),
            project_dir: self.project_dir.clone(),
            target_schema: self.target_schema.clone(),
            model_defaults: self.model_defaults.clone(),
            schedule: self.schedule.clone(),
            maintenance: self.maintenance.clone(),
            node: self.node.clone(),
            lease: self.lease,
        }
    }

    /// The SQL dialect the engine speaks: PostgreSQL, with the configured users in
    /// `pg_roles` (readers as plain login roles, the others as superusers).
    pub fn dialect(&self) -> std::sync::Arc<crate::pgcompat::PgCompat> {
        crate::pgcompat::PgCompat::new(crate::pgcompat::Roles {
            users: self
                .users
                .iter()
                .map(|u| (u.name.clone(), u.schemas.is_none()))
                .collect(),
        })
    }
}

/// The engine's limits and rights from the resolved settings.
impl From<&Settings> for crate::engine::EngineOptions {
    fn from(s: &Settings) -> Self {
        crate::engine::EngineOptions {
            query_timeout: s.query_timeout,
            memory_limit: s.memory_limit,
            target_partitions: s.target_partitions,
            max_concurrent_queries: s.max_concurrent_queries,
            light_query_rows: s.light_query_rows,
            access: crate::engine::Access {
                enforced: !s.users.is_empty(),
                users: s
                    .users
                    .iter()
                    .map(|u| {
                        (
                            u.name.clone(),
                            crate::engine::authz::UserRights {
                                schemas: u.schemas.clone(),
                                files: u.files.clone(),
                            },
                        )
                    })
                    .collect(),
                lake_root: tidepool_lake::root_url(&s.lake.root)
                    .ok()
                    .map(|u| u.to_string()),
                security: Default::default(),
            },
        }
    }
}

impl Config {
    /// Reads `path`, or `./tidepool.toml` if it exists, or starts from the defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let (path, required) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from("tidepool.toml"), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Config::parse(&text, &path),
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
                Ok(Config::default())
            }
            Err(source) => Err(ConfigError::Read { path, source }),
        }
    }

    /// Parses config text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        config.config_file = Some(path.to_path_buf());
        config.config_dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map(Path::to_path_buf);
        // Paths inside the file are relative to the file.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Some(p) = config.project.dir.as_mut().filter(|p| p.is_relative()) {
                *p = dir.join(&*p);
            }
            for s in &mut config.sources {
                if let Some(schema) = s.schema.as_mut().filter(|p| p.is_relative()) {
                    *schema = dir.join(&*schema);
                }
            }
        }
        Ok(config)
    }

    /// Applies overrides and validates everything.
    pub fn resolve(mut self, o: &Overrides) -> Result<Settings, ConfigError> {
        if let Some(lake) = &o.lake {
            self.lake.root = lake.clone();
        }
        if let Some(listen) = &o.pg_listen {
            self.postgres.listen = listen.clone();
        }
        if let Some(listen) = &o.http_listen {
            self.http.listen = listen.clone();
        }
        if let Some(listen) = &o.flight_listen {
            self.flight.listen = listen.clone();
        }
        if let Some(url) = &o.flight_advertise {
            self.flight.advertise = url.clone();
        }
        if let Some(b) = &o.brokers {
            self.kafka.brokers = Some(b.clone());
        }
        if let Some(t) = o.query_timeout {
            self.engine.query_timeout_secs = t;
        }
        if let Some(m) = &o.memory_limit {
            self.engine.memory_limit = Some(m.clone());
        }
        if let Some(n) = &o.node_name {
            self.node.name = Some(n.clone());
        }
        if let Some(r) = &o.roles {
            self.node.roles = Some(r.split(',').map(str::to_string).collect());
        }
        match (&o.tls_cert, &o.tls_key) {
            (Some(cert), Some(key)) => {
                self.tls = Some(TlsConfig {
                    cert: cert.clone(),
                    key: key.clone(),
                    plaintext_on_loopback: self
                        .tls
                        .as_ref()
                        .is_some_and(|t| t.plaintext_on_loopback),
                })
            }
            (None, None) => {}
            _ => return Err(invalid("tls", "give both --tls-cert and --tls-key")),
        }
        let mut settings = self.validate()?;
        settings.overrides = o.clone();
        Ok(settings)
    }

    fn validate(self) -> Result<Settings, ConfigError> {
        if self.lake.root.trim().is_empty() {
            return Err(invalid("lake.root", "must not be empty"));
        }
        if tidepool_lake::parse_size(&self.lake.auto_compact_file_size).is_none() {
            return Err(invalid(
                "lake.auto_compact_file_size",
                "must be a size such as \"8MiB\"",
            ));
        }
        let users = self
            .users
            .iter()
            .map(resolve_user)
            .collect::<Result<Vec<_>, _>>()?;
        let mut seen = std::collections::HashSet::new();
        for u in &users {
            if !seen.insert(u.name.as_str()) {
                return Err(invalid(
                    "users",
                    format!("user {:?} is listed twice", u.name),
                ));
            }
        }
        let pg_listen = self
            .postgres
            .enabled
            .then(|| listen_addr("postgres.listen", &self.postgres.listen, !users.is_empty()))
            .transpose()?;
        if let Some(tls) = &self.tls {
            for (name, p) in [("tls.cert", &tls.cert), ("tls.key", &tls.key)] {
                if !p.is_file() {
                    return Err(invalid(
                        name,
                        format!("{} is not a readable file", p.display()),
                    ));
                }
            }
        }
        let memory_limit = self
            .engine
            .memory_limit
            .as_deref()
            .map(|s| {
                parse_bytes(s).ok_or_else(|| {
                    invalid(
                        "engine.memory_limit",
                        format!("{s:?} is not a size like 512MiB or 4GiB"),
                    )
                })
            })
            .transpose()?;
        if self.postgres.max_connections == 0 {
            return Err(invalid("postgres.max_connections", "must be at least 1"));
        }
        if self.engine.max_concurrent_queries == 0 {
            return Err(invalid(
                "engine.max_concurrent_queries",
                "must be at least 1",
            ));
        }
        let http_listen = self
            .http
            .enabled
            .then(|| listen_addr("http.listen", &self.http.listen, !users.is_empty()))
            .transpose()?;
        let http_max_body = size("http.max_body", &self.http.max_body)?;
        let flight_listen = self
            .flight
            .enabled
            .then(|| listen_addr("flight.listen", &self.flight.listen, !users.is_empty()))
            .transpose()?;
        let admin = match (&self.admin.disabled, &self.admin.listen) {
            (true, _) => AdminPlacement::Off,
            (false, Some(l)) => {
                AdminPlacement::Own(listen_addr("admin.listen", l, !users.is_empty())?)
            }
            (false, None) => AdminPlacement::FlightPort,
        };
        if self.flight.ticket_ttl_secs == 0 {
            return Err(invalid("flight.ticket_ttl_secs", "must be at least 1"));
        }
        if self.flight.token_ttl_secs == 0 {
            return Err(invalid("flight.token_ttl_secs", "must be at least 1"));
        }
        let sources = resolve_sources(&self.sources, &self.kafka)?;
        if let Some(b) = &self.kafka.brokers
            && b.trim().is_empty()
        {
            return Err(invalid(
                "kafka.brokers",
                "is empty; omit it to use the embedded broker",
            ));
        }
        if self.kafka.embedded_partitions < 1 {
            return Err(invalid("kafka.embedded_partitions", "must be at least 1"));
        }
        let m = &self.maintenance;
        if m.checkpoint_interval == 0 {
            return Err(invalid(
                "maintenance.checkpoint_interval",
                "must be at least 1",
            ));
        }
        let maintenance = Maintenance {
            compact_min_files: m.compact_min_files.max(2),
            interval: (m.interval_secs > 0).then(|| Duration::from_secs(m.interval_secs)),
            target_file_size: size("maintenance.target_file_size", &m.target_file_size)? as u64,
            vacuum_retention: Duration::from_secs(m.vacuum_retention_hours * 3600),
            checkpoint_interval: m.checkpoint_interval,
        };
        let schedule = match &self.schedule {
            None => None,
            Some(s) => Some(resolve_schedule(s)?),
        };
        let project_dir = self
            .project
            .dir
            .clone()
            .or_else(|| self.config_dir.clone())
            .unwrap_or_else(|| PathBuf::from("."));
        let target_schema = self
            .project
            .target_schema
            .clone()
            .unwrap_or_else(|| "public".to_string())
            .to_lowercase();
        if !tidepool_lake::valid_name(&target_schema) {
            return Err(invalid(
                "project.target_schema",
                "must be a schema name (letters, digits, _)",
            ));
        }
        let mut model_defaults = BTreeMap::new();
        for (folder, table) in &self.models {
            let json = serde_json::to_value(table)
                .map_err(|e| invalid(&format!("models.{folder}"), e.to_string()))?;
            let serde_json::Value::Object(map) = json else {
                return Err(invalid(&format!("models.{folder}"), "must be a table"));
            };
            model_defaults.insert(folder.to_lowercase(), map.into_iter().collect());
        }
        let node = node_name(self.node.name.as_deref())?;
        let flight_advertise = advertise(&self.flight.advertise)?;
        let cluster_scheduler = match self.cluster.scheduler.trim() {
            "" => None,
            text => {
                tidepool_cluster::parse_scheduler(text)
                    .map_err(|e| invalid("cluster.scheduler", e.to_string()))?;
                Some(text.to_string())
            }
        };
        let roles = match &self.node.roles {
            Some(r) => Roles::parse(r)?,
            None => Roles::ALL,
        };
        let lease = Duration::from_secs(self.node.lease_secs.unwrap_or(15));
        if !(Duration::from_secs(3)..=Duration::from_secs(3600)).contains(&lease) {
            return Err(invalid("node.lease_secs", "must be between 3 and 3600"));
        }
        Ok(Settings {
            node,
            roles,
            lease,
            project_dir,
            target_schema,
            model_defaults,
            schedule,
            http_listen,
            http_max_body,
            http_metrics_public: self.http.metrics_public,
            flight_listen,
            admin,
            flight_token_ttl: Duration::from_secs(self.flight.token_ttl_secs),
            flight_ticket_ttl: Duration::from_secs(self.flight.ticket_ttl_secs),
            flight_advertise,
            cluster_scheduler,
            brokers: self.kafka.brokers.clone(),
            embedded_partitions: self.kafka.embedded_partitions,
            sources,
            maintenance,
            lake: self.lake,
            pg_listen,
            max_connections: self.postgres.max_connections,
            pg_startup_timeout: Duration::from_secs(self.postgres.startup_timeout_secs.max(1)),
            pg_max_startup_connections: self.postgres.max_startup_connections.max(1),
            query_timeout: (self.engine.query_timeout_secs > 0)
                .then(|| Duration::from_secs(self.engine.query_timeout_secs)),
            memory_limit,
            target_partitions: self.engine.target_partitions,
            max_concurrent_queries: self.engine.max_concurrent_queries,
            light_query_rows: self.engine.light_query_rows,
            shutdown_grace: Duration::from_secs(self.server.shutdown_grace_secs),
            tls: self.tls,
            users,
            config_file: self.config_file,
            overrides: Overrides::default(),
        })
    }
}

fn resolve_schedule(s: &ScheduleConfig) -> Result<Schedule, ConfigError> {
    if s.every_secs.is_none() && s.cron.is_none() && !s.on_new_data {
        return Err(invalid(
            "schedule",
            "say when to run: every_secs, cron, or on_new_data = true",
        ));
    }
    if s.every_secs == Some(0) {
        return Err(invalid("schedule.every_secs", "must be at least 1"));
    }
    if let Some(c) = &s.cron {
        c.parse::<croner::Cron>().map_err(|e| {
            invalid(
                "schedule.cron",
                format!("{c:?} is not a cron expression ({e})"),
            )
        })?;
    }
    let with_tests = match s.command.as_deref().unwrap_or("build") {
        "build" => true,
        "run" => false,
        other => {
            return Err(invalid(
                "schedule.command",
                format!("{other:?}: build or run"),
            ));
        }
    };
    let words = |v: &Option<String>| -> Vec<String> {
        v.as_deref()
            .map(|t| t.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default()
    };
    Ok(Schedule {
        every: s.every_secs.map(Duration::from_secs),
        cron: s.cron.clone(),
        on_new_data: s.on_new_data,
        with_tests,
        select: words(&s.select),
        exclude: words(&s.exclude),
        threads: s.threads.unwrap_or(4).max(1),
    })
}

/// Parses a listen address; a non-loopback one needs authentication.
fn listen_addr(setting: &str, text: &str, has_users: bool) -> Result<SocketAddr, ConfigError> {
    let addr: SocketAddr = text
        .parse()
        .map_err(|e| invalid(setting, format!("{text:?} is not an address:port ({e})")))?;
    if !addr.ip().is_loopback() && !has_users {
        return Err(invalid(
            setting,
            format!(
                "refusing to listen on non-loopback address {addr} without authentication; \
                 add [[users]] to tidepool.toml"
            ),
        ));
    }
    Ok(addr)
}

fn size(setting: &str, text: &str) -> Result<usize, ConfigError> {
    match parse_bytes(text) {
        Some(n) if n > 0 => Ok(n),
        _ => Err(invalid(
            setting,
            format!("{text:?} is not a size like 512KiB or 64MiB"),
        )),
    }
}

fn resolve_sources(
    sources: &[SourceConfig],
    kafka: &KafkaConfig,
) -> Result<Vec<Source>, ConfigError> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for s in sources {
        let setting = format!("sources.{}", s.name);
        if !tidepool_lake::valid_name(&s.name) || s.name.contains("__") {
            return Err(invalid(
                &setting,
                "a source name is lower-case letters, digits and single _ (it names bronze.<name>)",
            ));
        }
        if !seen.insert(s.name.as_str()) {
            return Err(invalid(
                "sources",
                format!("source {:?} is listed twice", s.name),
            ));
        }
        if s.format != "json" {
            return Err(invalid(
                &format!("{setting}.format"),
                format!("{:?} is not supported; use \"json\"", s.format),
            ));
        }
        let topics = if s.topics.is_empty() {
            vec![s.name.clone()]
        } else {
            s.topics.clone()
        };
        if topics.iter().any(|t| t.trim().is_empty()) {
            return Err(invalid(
                &format!("{setting}.topics"),
                "a topic name is empty",
            ));
        }
        if let Some(p) = &s.schema
            && !p.is_file()
        {
            return Err(invalid(
                &format!("{setting}.schema"),
                format!("{} is not a readable file", p.display()),
            ));
        }
        if s.max_rows == 0 {
            return Err(invalid(
                &format!("{setting}.max_rows"),
                "must be at least 1",
            ));
        }
        if s.max_latency_ms == 0 {
            return Err(invalid(
                &format!("{setting}.max_latency_ms"),
                "must be at least 1",
            ));
        }
        let mut properties = kafka.properties.clone();
        properties.extend(s.properties.clone());
        out.push(Source {
            name: s.name.clone(),
            topics,
            start: s.start,
            schema: s.schema.clone(),
            raw: s.raw,
            max_rows: s.max_rows,
            max_bytes: size(&format!("{setting}.max_bytes"), &s.max_bytes)?,
            max_latency: Duration::from_millis(s.max_latency_ms),
            max_message_bytes: size(
                &format!("{setting}.max_message_bytes"),
                &s.max_message_bytes,
            )?,
            group_id: s.group_id.clone().unwrap_or_else(|| kafka.group_id.clone()),
            properties,
        });
    }
    Ok(out)
}

fn resolve_user(u: &UserConfig) -> Result<User, ConfigError> {
    let setting = format!("users.{}", u.name);
    if u.name.is_empty() {
        return Err(invalid("users", "a user has an empty name"));
    }
    if u.name == crate::engine::authz::SERVER_USER {
        return Err(invalid(
            "users",
            "the name \"tidepool\" is the server's own (its models and deployments run as it)",
        ));
    }
    let sources = [
        u.password.is_some(),
        u.password_env.is_some(),
        u.password_file.is_some(),
    ];
    if sources.iter().filter(|s| **s).count() != 1 {
        return Err(invalid(
            &setting,
            "give exactly one of password_env, password_file or password",
        ));
    }
    let password = match (&u.password, &u.password_env, &u.password_file) {
        (Some(p), _, _) => p.clone(),
        (_, Some(var), _) => Secret::new(
            std::env::var(var)
                .map_err(|_| invalid(&setting, format!("environment variable {var} is not set")))?,
        ),
        (_, _, Some(file)) => {
            let text = std::fs::read_to_string(file).map_err(|e| {
                invalid(
                    &setting,
                    format!("cannot read password file {}: {e}", file.display()),
                )
            })?;
            Secret::new(text.lines().next().unwrap_or("").to_string())
        }
        (None, None, None) => Secret::new(String::new()),
    };
    if password.expose().is_empty() {
        return Err(invalid(&setting, "password is empty"));
    }
    let schemas = match &u.schemas {
        None => None,
        Some(list) => {
            let set: std::collections::BTreeSet<String> =
                list.iter().map(|s| s.to_lowercase()).collect();
            if let Some(bad) = set.iter().find(|s| !tidepool_lake::valid_name(s)) {
                return Err(invalid(
                    &format!("{setting}.schemas"),
                    format!("{bad:?} is not a schema name"),
                ));
            }
            Some(set)
        }
    };
    for f in &u.files {
        if f.trim().is_empty() {
            return Err(invalid(&format!("{setting}.files"), "an empty prefix"));
        }
    }
    Ok(User {
        name: u.name.clone(),
        password,
        schemas,
        files: u.files.clone(),
    })
}

/// Parses sizes such as `512MiB`, `4GiB`, `2GB`, `1000000`.
pub fn parse_bytes(s: &str) -> Option<usize> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: f64 = num.parse().ok()?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some((num * mult) as usize)
}

/// Reads `tidepool.toml` again, with the start's command-line overrides, for a reload
/// (`ReloadProject`); settings only read at start are reported, not applied.
pub struct ConfigReloader {
    /// The settings the process started with.
    pub start: Settings,
}

impl tidepool_control::Reloader for ConfigReloader {
    fn reload(
        &self,
    ) -> Result<tidepool_control::Reloaded, Box<dyn std::error::Error + Send + Sync>> {
        let new = match &self.start.config_file {
            Some(file) => {
                Config::load(Some(file)).and_then(|c| c.resolve(&self.start.overrides))?
            }
            None => self.start.clone(),
        };
        Ok(tidepool_control::Reloaded {
            restart_required: restart_required(&self.start, &new),
            settings: new.control(),
        })
    }
}

/// Settings that differ between `old` and `new` and are only read at start.
fn restart_required(old: &Settings, new: &Settings) -> Vec<String> {
    let differs =
        |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") != format!("{b:?}");
    let mut out = Vec::new();
    let checks: [(&str, bool); 11] = [
        ("lake", differs(&old.lake, &new.lake)),
        ("project.dir", old.project_dir != new.project_dir),
        (
            "postgres",
            differs(
                &(old.pg_listen, old.max_connections),
                &(new.pg_listen, new.max_connections),
            ),
        ),
        (
            "http",
            differs(
                &(old.http_listen, old.http_max_body),
                &(new.http_listen, new.http_max_body),
            ),
        ),
        (
            "flight",
            differs(
                &(old.flight_listen, old.flight_token_ttl),
                &(new.flight_listen, new.flight_token_ttl),
            ),
        ),
        ("tls", differs(&old.tls, &new.tls)),
        ("users", differs(&old.users, &new.users)),
        (
            "engine",
            differs(
                &(
                    old.query_timeout,
                    old.memory_limit,
                    old.target_partitions,
                    old.max_concurrent_queries,
                ),
                &(
                    new.query_timeout,
                    new.memory_limit,
                    new.target_partitions,
                    new.max_concurrent_queries,
                ),
            ),
        ),
        (
            "kafka",
            differs(
                &(&old.brokers, old.embedded_partitions),
                &(&new.brokers, new.embedded_partitions),
            ),
        ),
        ("sources", differs(&old.sources, &new.sources)),
        ("server", old.shutdown_grace != new.shutdown_grace),
    ];
    for (name, changed) in checks {
        if changed {
            out.push(name.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(text: &str) -> Result<Settings, ConfigError> {
        Config::parse(text, Path::new("t.toml"))?.resolve(&Overrides::default())
    }

    #[test]
    fn schedule_is_validated() {
        let s = resolve("[schedule]\ncron = \"0 */15 * * * *\"\nselect = \"tag:a +b\"\n").unwrap();
        let sched = s.schedule.unwrap();
        assert!(sched.with_tests);
        assert_eq!(sched.select, vec!["tag:a", "+b"]);
        let err = resolve("[schedule]\ncron = \"every tuesday\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("schedule.cron"), "{err}");
        let err = resolve("[schedule]\ncommand = \"build\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("every_secs, cron, or on_new_data"), "{err}");
        let err = resolve("[schedule]\nevery_secs = 5\ncommand = \"test\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("schedule.command"), "{err}");
    }

    #[test]
    fn node_names_and_roles_are_validated() {
        let s = resolve("").unwrap();
        assert_eq!(s.node, whoami::hostname().unwrap());
        assert_eq!(s.roles, Roles::ALL);
        let s = resolve("[node]\nname = \"ingest-1\"\nroles = [\"ingest\"]\n").unwrap();
        assert_eq!(s.node, "ingest-1");
        assert_eq!(
            s.roles,
            Roles {
                ingest: true,
                serve: false,
                schedule: false
            }
        );
        let flags = Overrides {
            node_name: Some("query-2".into()),
            roles: Some("serve,schedule".into()),
            ..Default::default()
        };
        let s = Config::parse("[node]\nname = \"a\"\n", Path::new("t.toml"))
            .unwrap()
            .resolve(&flags)
            .unwrap();
        assert_eq!(
            (s.node.as_str(), s.roles.ingest, s.roles.serve),
            ("query-2", false, true)
        );
        for bad in [
            "[node]\nname = \"a b\"\n",
            "[node]\nname = \"\"\n",
            "[node]\nname = \"n:1\"\n",
        ] {
            let err = resolve(bad).unwrap_err().to_string();
            assert!(err.contains("node.name"), "{bad}: {err}");
        }
        for bad in ["[node]\nroles = []\n", "[node]\nroles = [\"query\"]\n"] {
            let err = resolve(bad).unwrap_err().to_string();
            assert!(err.contains("node.roles"), "{bad}: {err}");
        }
    }

    #[test]
    fn flight_advertise_is_a_grpc_url() {
        assert_eq!(resolve("").unwrap().flight_advertise, None);
        let s = resolve("[flight]\nadvertise = \"grpc://node-a:50051\"\n").unwrap();
        assert_eq!(s.flight_advertise.as_deref(), Some("grpc://node-a:50051"));
        for bad in ["http://a:1", "grpc://node-a", "node-a:50051"] {
            let err = resolve(&format!("[flight]\nadvertise = {bad:?}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("flight.advertise"), "{bad}: {err}");
        }
        // --flight-advertise / TIDEPOOL_FLIGHT_ADVERTISE: one config file for every node.
        let flag = Overrides {
            flight_advertise: Some("grpc://query-2:50051".into()),
            ..Overrides::default()
        };
        let s = Config::parse(
            "[flight]\nadvertise = \"grpc://query-1:50051\"\n",
            Path::new("t"),
        )
        .unwrap()
        .resolve(&flag)
        .unwrap();
        assert_eq!(s.flight_advertise.as_deref(), Some("grpc://query-2:50051"));
        let bad = Overrides {
            flight_advertise: Some("query-2".into()),
            ..Overrides::default()
        };
        let err = Config::parse("", Path::new("t")).unwrap().resolve(&bad);
        assert!(err.unwrap_err().to_string().contains("flight.advertise"));
    }

    #[test]
    fn defaults_listen_on_loopback() {
        let s = resolve("").unwrap();
        assert_eq!(s.pg_listen.unwrap().to_string(), "127.0.0.1:5433");
        assert_eq!(s.lake.root, "./lake");
        assert!(s.users.is_empty());
    }

    #[test]
    fn public_address_without_users_is_refused() {
        let err = resolve("[postgres]\nlisten = \"0.0.0.0:5433\"").unwrap_err();
        assert!(err.to_string().contains("without authentication"), "{err}");
    }

    #[test]
    fn public_address_with_users_is_allowed() {
        let s = resolve(
            "[postgres]\nlisten = \"0.0.0.0:5433\"\n[[users]]\nname = \"a\"\npassword = \"pw\"",
        )
        .unwrap();
        assert_eq!(s.users[0].name, "a");
        assert!(
            !format!("{s:?}").contains("pw\""),
            "password must not be printed"
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let err = resolve("[postgres]\nlisen = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("lisen"), "{err}");
        let err = resolve("[engine]\nmemory_limit = \"lots\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("engine.memory_limit"), "{err}");
        let err = resolve("[[users]]\nname = \"a\"").unwrap_err().to_string();
        assert!(err.contains("exactly one"), "{err}");
    }

    #[test]
    fn sources_resolve_with_defaults_and_reject_bad_names() {
        let s = resolve(
            "[kafka]\nproperties = { \"security.protocol\" = \"SASL_SSL\" }\n\
             [[sources]]\nname = \"orders\"\nproperties = { \"sasl.mechanism\" = \"PLAIN\" }",
        )
        .unwrap();
        let src = &s.sources[0];
        assert_eq!(src.topics, vec!["orders".to_string()]);
        assert_eq!(src.group_id, "tidepool");
        assert_eq!(src.max_latency, Duration::from_secs(1));
        assert_eq!(src.properties.len(), 2);
        assert!(s.brokers.is_none());
        let err = resolve("[[sources]]\nname = \"Orders\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sources.Orders"), "{err}");
        let err = resolve("[[sources]]\nname = \"o\"\nformat = \"avro\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sources.o.format"), "{err}");
        let err = resolve("[http]\nlisten = \"0.0.0.0:8080\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("http.listen"), "{err}");
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_bytes("512MiB"), Some(512 << 20));
        assert_eq!(parse_bytes("2GB"), Some(2_000_000_000));
        assert_eq!(parse_bytes("10"), Some(10));
        assert_eq!(parse_bytes("x"), None);
    }
}
