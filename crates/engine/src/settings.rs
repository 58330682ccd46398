//! Session settings as Postgres clients know them (`SET`, `SHOW`, `RESET`).
//!
//! A few settings change behaviour: `search_path` picks the schema of unqualified names,
//! `TimeZone` the zone of `now()` and timestamp arithmetic, `statement_timeout` the
//! per-statement deadline. The rest are accepted and reported back so drivers that set or
//! read them at startup are satisfied.

use std::collections::BTreeMap;
use std::time::Duration;

use super::EngineError;

/// Defaults of the settings every session starts with, by lower-case name.
fn defaults() -> BTreeMap<&'static str, (&'static str, String)> {
    let mut m = BTreeMap::new();
    let mut put = |name: &'static str, display: &'static str, value: &str| {
        m.insert(name, (display, value.to_string()));
    };
    put("application_name", "application_name", "");
    put(
        crate::planner_options::SETTING,
        crate::planner_options::SETTING,
        "on",
    );
    put(
        crate::distributed::SETTING,
        crate::distributed::SETTING,
        "on",
    );
    put("bytea_output", "bytea_output", "hex");
    put("client_encoding", "client_encoding", "UTF8");
    put("client_min_messages", "client_min_messages", "notice");
    put("datestyle", "DateStyle", "ISO, MDY");
    put(
        "default_transaction_isolation",
        "default_transaction_isolation",
        "read committed",
    );
    put(
        "default_transaction_read_only",
        "default_transaction_read_only",
        "off",
    );
    put("extra_float_digits", "extra_float_digits", "1");
    put("integer_datetimes", "integer_datetimes", "on");
    put("intervalstyle", "IntervalStyle", "postgres");
    put("is_superuser", "is_superuser", "on");
    put("lc_collate", "lc_collate", "C");
    put("lc_ctype", "lc_ctype", "C");
    put("lc_messages", "lc_messages", "C");
    put("lc_monetary", "lc_monetary", "C");
    put("lc_numeric", "lc_numeric", "C");
    put("lc_time", "lc_time", "C");
    put("max_identifier_length", "max_identifier_length", "63");
    put("search_path", "search_path", "public");
    put("server_encoding", "server_encoding", "UTF8");
    put("server_version", "server_version", "16.6");
    put("server_version_num", "server_version_num", "160006");
    put(
        "standard_conforming_strings",
        "standard_conforming_strings",
        "on",
    );
    put("statement_timeout", "statement_timeout", "0");
    put("timezone", "TimeZone", "UTC");
    put(
        "transaction_isolation",
        "transaction_isolation",
        "read committed",
    );
    put("transaction_read_only", "transaction_read_only", "off");
    m
}

/// One session's settings.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    values: BTreeMap<String, (String, String)>,
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            values: defaults()
                .into_iter()
                .map(|(k, (d, v))| (k.to_string(), (d.to_string(), v)))
                .collect(),
        }
    }
}

impl SessionSettings {
    /// Sets `name`: one of PostgreSQL's parameters (kept and reported back where tidepool
    /// has no use for it) or a custom `prefix.name` setting, as in Postgres; any other
    /// name is 42704.
    pub fn set(&mut self, name: &str, mut value: String) -> Result<(), EngineError> {
        let key = name.to_ascii_lowercase();
        match key.as_str() {
            "server_version"
            | "server_version_num"
            | "server_encoding"
            | "integer_datetimes"
            | "lc_collate"
            | "lc_ctype"
            | "max_identifier_length" => {
                return Err(EngineError::InvalidSetting {
                    name: name.to_string(),
                    message: "parameter cannot be changed".into(),
                });
            }
            "statement_timeout" => {
                let d = parse_timeout(&value).ok_or_else(|| EngineError::InvalidSetting {
                    name: name.to_string(),
                    message: format!("{value:?} is not a duration such as 5000, '5s' or '1min'"),
                })?;
                value = show_timeout(d);
            }
            crate::planner_options::SETTING | crate::distributed::SETTING => {
                let on = crate::planner_options::parse(&value).ok_or_else(|| {
                    EngineError::InvalidSetting {
                        name: name.to_string(),
                        message: format!("{value:?} is not a boolean (on or off)"),
                    }
                })?;
                value = if on { "on" } else { "off" }.to_string();
            }
            "client_encoding" => {
                let v = value.to_ascii_uppercase().replace('-', "");
                if v != "UTF8" && v != "UNICODE" {
                    return Err(EngineError::InvalidSetting {
                        name: name.to_string(),
                        message: format!("only UTF8 is supported, not {value}"),
                    });
                }
            }
            _ if !key.contains('.')
                && !self.values.contains_key(&key)
                && !crate::pg_parameters::known(&key) =>
            {
                return Err(EngineError::UnknownSetting(name.to_string()));
            }
            _ => {}
        }
        let display = self
            .values
            .get(&key)
            .map(|(d, _)| d.clone())
            .unwrap_or_else(|| key.clone());
        self.values.insert(key, (display, value));
        Ok(())
    }

    /// Restores one setting (or every setting) to its default.
    pub fn reset(&mut self, name: Option<&str>) {
        match name {
            None => *self = SessionSettings::default(),
            Some(n) => {
                let key = n.to_ascii_lowercase();
                match defaults().get(key.as_str()) {
                    Some((d, v)) => {
                        self.values.insert(key, (d.to_string(), v.clone()));
                    }
                    None => {
                        self.values.remove(&key);
                    }
                }
            }
        }
    }

    /// The value of a setting and its display name, or an error for unknown names.
    pub fn get(&self, name: &str) -> Result<(String, String), EngineError> {
        let key = name.to_ascii_lowercase();
        // `SHOW TRANSACTION ISOLATION LEVEL` and `SHOW TIME ZONE` (SQLAlchemy, Metabase)
        // arrive as dotted names.
        let key = match key.as_str() {
            "transaction.isolation.level" => "transaction_isolation".to_string(),
            "time.zone" => "timezone".to_string(),
            _ => key,
        };
        self.values
            .get(&key)
            .cloned()
            .ok_or_else(|| EngineError::UnknownSetting(name.to_string()))
    }

    /// All settings, by display name.
    pub fn all(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.values().map(|(d, v)| (d.as_str(), v.as_str()))
    }

    /// Every setting as (display name, value, default value if it has one), by name.
    pub fn with_defaults(&self) -> Vec<(String, String, Option<String>)> {
        let defaults = defaults();
        self.values
            .iter()
            .map(|(k, (d, v))| {
                let default = defaults.get(k.as_str()).map(|(_, v)| v.clone());
                (d.clone(), v.clone(), default)
            })
            .collect()
    }

    /// The schemas of `search_path`, in order.
    pub fn search_path(&self) -> Vec<String> {
        let raw = self
            .values
            .get("search_path")
            .map(|(_, v)| v.as_str())
            .unwrap_or("public");
        raw.split(',')
            .map(|s| s.trim().trim_matches('"').to_string())
            .filter(|s| !s.is_empty() && s != "$user")
            .collect()
    }

    pub fn time_zone(&self) -> String {
        self.values
            .get("timezone")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| "UTC".into())
    }

    /// Whether tidepool's own planner rewrites run (`tidepool.planner_rewrites`).
    pub fn planner_rewrites(&self) -> bool {
        self.values
            .get(crate::planner_options::SETTING)
            .is_none_or(|(_, v)| v != "off")
    }

    /// Whether queries may run on the cluster, when one is configured
    /// (`tidepool.distributed`).
    pub fn distributed(&self) -> bool {
        self.values
            .get(crate::distributed::SETTING)
            .is_none_or(|(_, v)| v != "off")
    }

    /// `statement_timeout`, if set.
    pub fn statement_timeout(&self) -> Option<Duration> {
        self.values
            .get("statement_timeout")
            .and_then(|(_, v)| parse_timeout(v))
            .filter(|d| !d.is_zero())
    }
}

/// Postgres durations: plain numbers are milliseconds; units ms, s, min, h.
/// A duration as PostgreSQL shows `statement_timeout`: the largest exact unit.
fn show_timeout(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0 => "0".into(),
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}min", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

fn parse_timeout(v: &str) -> Option<Duration> {
    let v = v.trim().trim_matches('\'');
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num.parse().ok()?;
    let ms = match unit.trim() {
        "" | "ms" => n,
        "s" => n * 1000,
        "min" => n * 60_000,
        "h" => n * 3_600_000,
        _ => return None,
    };
    Some(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_path_and_timeout() {
        let mut s = SessionSettings::default();
        assert_eq!(s.search_path(), vec!["public"]);
        s.set("search_path", "gold, \"$user\", public".into())
            .unwrap();
        assert_eq!(s.search_path(), vec!["gold", "public"]);
        s.set("statement_timeout", "5s".into()).unwrap();
        assert_eq!(s.statement_timeout(), Some(Duration::from_secs(5)));
        assert!(s.set("statement_timeout", "soon".into()).is_err());
        s.reset(None);
        assert_eq!(s.statement_timeout(), None);
        assert_eq!(s.get("TimeZone").unwrap().0, "TimeZone");
        assert!(s.get("no_such_thing").is_err());
    }

    #[test]
    fn unknown_parameters_are_refused_custom_ones_kept() {
        let mut s = SessionSettings::default();
        assert!(matches!(
            s.set("search_pathx", "a".into()),
            Err(EngineError::UnknownSetting(_))
        ));
        s.set("work_mem", "64MB".into()).unwrap();
        assert_eq!(s.get("work_mem").unwrap().1, "64MB");
        s.set("myapp.tenant", "7".into()).unwrap();
        assert_eq!(s.get("MyApp.Tenant").unwrap().1, "7");
    }
}
