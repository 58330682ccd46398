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
    pub lake: LakeConfig,
    pub postgres: PostgresConfig,
    pub engine: EngineConfig,
    pub server: ServerConfig,
    pub tls: Option<TlsConfig>,
    pub users: Vec<UserConfig>,
}

/// Where the lake lives.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LakeConfig {
    /// A local folder or an object_store URL (`s3://`, `az://`, `gs://`, `file://`).
    pub root: String,
    /// Passed to object_store / delta-rs (credentials, region, endpoint...).
    pub storage_options: BTreeMap<String, String>,
    /// How often the table listing of a remote lake is refreshed; a local lake is
    /// listed before every statement.
    pub refresh_ms: u64,
}

impl Default for LakeConfig {
    fn default() -> Self {
        LakeConfig {
            root: "./lake".to_string(),
            storage_options: BTreeMap::new(),
            refresh_ms: 1000,
        }
    }
}

/// The Postgres wire protocol listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresConfig {
    pub enabled: bool,
    pub listen: String,
    pub max_connections: usize,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            enabled: true,
            listen: "127.0.0.1:5433".to_string(),
            max_connections: 256,
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
    /// At most this many statements execute at once; the rest wait.
    pub max_concurrent_queries: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            query_timeout_secs: 0,
            memory_limit: None,
            target_partitions: None,
            max_concurrent_queries: 64,
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
}

/// Settings given on the command line or in `TIDEPOOL_*` variables; they win over the file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Overrides {
    /// Config file [default: ./tidepool.toml when present]
    #[arg(long, global = true, env = "TIDEPOOL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Lake root: a folder or an object store URL
    #[arg(long, global = true, env = "TIDEPOOL_LAKE")]
    pub lake: Option<String>,
    /// Postgres listen address, e.g. 127.0.0.1:5433
    #[arg(long, global = true, env = "TIDEPOOL_PG_LISTEN")]
    pub pg_listen: Option<String>,
    /// Per-statement timeout in seconds (0 = none)
    #[arg(long, global = true, env = "TIDEPOOL_QUERY_TIMEOUT")]
    pub query_timeout: Option<u64>,
    /// Query memory limit, e.g. 4GiB
    #[arg(long, global = true, env = "TIDEPOOL_MEMORY_LIMIT")]
    pub memory_limit: Option<String>,
    /// TLS certificate (PEM)
    #[arg(long, global = true, env = "TIDEPOOL_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM)
    #[arg(long, global = true, env = "TIDEPOOL_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
}

/// The validated, resolved form of [`Config`] the rest of the program uses.
#[derive(Debug, Clone)]
pub struct Settings {
    pub lake: LakeConfig,
    pub pg_listen: Option<SocketAddr>,
    pub max_connections: usize,
    pub query_timeout: Option<Duration>,
    pub memory_limit: Option<usize>,
    pub target_partitions: Option<usize>,
    pub max_concurrent_queries: usize,
    pub shutdown_grace: Duration,
    pub tls: Option<TlsConfig>,
    pub users: Vec<User>,
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
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Applies overrides and validates everything.
    pub fn resolve(mut self, o: &Overrides) -> Result<Settings, ConfigError> {
        if let Some(lake) = &o.lake {
            self.lake.root = lake.clone();
        }
        if let Some(listen) = &o.pg_listen {
            self.postgres.listen = listen.clone();
        }
        if let Some(t) = o.query_timeout {
            self.engine.query_timeout_secs = t;
        }
        if let Some(m) = &o.memory_limit {
            self.engine.memory_limit = Some(m.clone());
        }
        match (&o.tls_cert, &o.tls_key) {
            (Some(cert), Some(key)) => {
                self.tls = Some(TlsConfig {
                    cert: cert.clone(),
                    key: key.clone(),
                })
            }
            (None, None) => {}
            _ => return Err(invalid("tls", "give both --tls-cert and --tls-key")),
        }
        self.validate()
    }

    fn validate(self) -> Result<Settings, ConfigError> {
        if self.lake.root.trim().is_empty() {
            return Err(invalid("lake.root", "must not be empty"));
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
        let pg_listen = if self.postgres.enabled {
            let addr: SocketAddr = self.postgres.listen.parse().map_err(|e| {
                invalid(
                    "postgres.listen",
                    format!("{:?} is not an address:port ({e})", self.postgres.listen),
                )
            })?;
            if !addr.ip().is_loopback() && users.is_empty() {
                return Err(invalid(
                    "postgres.listen",
                    format!(
                        "refusing to listen on non-loopback address {addr} without authentication; \
                         add [[users]] to tidepool.toml"
                    ),
                ));
            }
            Some(addr)
        } else {
            None
        };
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
        Ok(Settings {
            lake: self.lake,
            pg_listen,
            max_connections: self.postgres.max_connections,
            query_timeout: (self.engine.query_timeout_secs > 0)
                .then(|| Duration::from_secs(self.engine.query_timeout_secs)),
            memory_limit,
            target_partitions: self.engine.target_partitions,
            max_concurrent_queries: self.engine.max_concurrent_queries,
            shutdown_grace: Duration::from_secs(self.server.shutdown_grace_secs),
            tls: self.tls,
            users,
        })
    }
}

fn resolve_user(u: &UserConfig) -> Result<User, ConfigError> {
    let setting = format!("users.{}", u.name);
    if u.name.is_empty() {
        return Err(invalid("users", "a user has an empty name"));
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
    Ok(User {
        name: u.name.clone(),
        password,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(text: &str) -> Result<Settings, ConfigError> {
        Config::parse(text, Path::new("t.toml"))?.resolve(&Overrides::default())
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
    fn sizes_parse() {
        assert_eq!(parse_bytes("512MiB"), Some(512 << 20));
        assert_eq!(parse_bytes("2GB"), Some(2_000_000_000));
        assert_eq!(parse_bytes("10"), Some(10));
        assert_eq!(parse_bytes("x"), None);
    }
}
