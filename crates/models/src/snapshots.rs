//! dbt snapshots: type-2 slowly changing dimensions of a query. A snapshot is a
//! `{% snapshot name %} select ... {% endsnapshot %}` block in a file of the snapshot
//! path (`config(...)` inside it), or an entry of a property file's `snapshots:` with a
//! `relation:` (dbt 1.9's YAML form). Each run compares the query's rows with the
//! snapshot's current rows by `unique_key` (one column or several): with the `timestamp`
//! strategy a row changed when its `updated_at` is later than the current version's, with
//! `check` when one of `check_cols` (or `all` columns) differs. Changed rows close their
//! current version (`dbt_valid_to`) and open a new one; `hard_deletes` says what becomes
//! of current rows whose key is gone (`ignore`, `invalidate`: closed, `new_record`: closed
//! and a `dbt_is_deleted = 'True'` version opened). dbt's columns (`dbt_scd_id`,
//! `dbt_updated_at`, `dbt_valid_from`, `dbt_valid_to`) can be renamed with
//! `snapshot_meta_column_names`; `dbt_valid_to_current` replaces the null of current
//! rows. The first run writes the table; each later run is one MERGE, one Delta commit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::datatypes::Schema;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::project::ModelFile;
use super::{Model, ProjectPaths};
use crate::ModelsError;
use tidepool_engine::Engine;

/// A snapshot found in the project, with the config its property file gives it.
pub struct SnapshotFile {
    pub file: ModelFile,
    pub config: BTreeMap<String, Value>,
}

/// How changes are detected.
#[derive(Debug, Clone, PartialEq)]
pub enum Strategy {
    /// A row changed when `updated_at` is later than the current version's.
    Timestamp { updated_at: String },
    /// A row changed when one of the columns differs (`None`: all of them); its versions
    /// start at the snapshot's time unless `updated_at` is given.
    Check {
        columns: Option<Vec<String>>,
        updated_at: Option<String>,
    },
}

/// What becomes of current rows whose key left the query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HardDeletes {
    Ignore,
    Invalidate,
    NewRecord,
}

/// The names of dbt's snapshot columns.
#[derive(Debug, Clone, PartialEq)]
pub struct MetaColumns {
    pub scd_id: String,
    pub updated_at: String,
    pub valid_from: String,
    pub valid_to: String,
    pub is_deleted: String,
}

/// A snapshot's configuration, checked when the project loads.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotConfig {
    pub strategy: Strategy,
    pub unique_key: Vec<String>,
    pub hard_deletes: HardDeletes,
    pub columns: MetaColumns,
    /// SQL for `dbt_valid_to` of current rows instead of null (`'9999-12-31'::timestamp`).
    pub valid_to_current: Option<String>,
}

impl SnapshotConfig {
    pub fn from_raw(raw: &BTreeMap<String, Value>, path: &str) -> Result<Self, ModelsError> {
        let bad = |what: &str| ModelsError::Config(format!("{path}: snapshot {what}"));
        let text = |key: &str| raw.get(key).and_then(Value::as_str).map(str::to_string);
        let unique_key: Vec<String> = match raw.get("unique_key") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .ok_or_else(|| bad("unique_key must be a column or a list of columns"))?,
            _ => return Err(bad("needs unique_key (a column or a list of columns)")),
        };
        let strategy = match text("strategy").as_deref() {
            Some("timestamp") => Strategy::Timestamp {
                updated_at: text("updated_at")
                    .ok_or_else(|| bad("strategy 'timestamp' needs updated_at"))?,
            },
            Some("check") => Strategy::Check {
                columns: match raw.get("check_cols") {
                    Some(Value::String(s)) if s == "all" => None,
                    Some(Value::Array(a)) => Some(
                        a.iter()
                            .map(|v| v.as_str().map(str::to_string))
                            .collect::<Option<_>>()
                            .ok_or_else(|| bad("check_cols must be 'all' or a list"))?,
                    ),
                    _ => return Err(bad("strategy 'check' needs check_cols ('all' or a list)")),
                },
                updated_at: text("updated_at"),
            },
            _ => return Err(bad("needs strategy 'timestamp' or 'check'")),
        };
        let hard_deletes = match text("hard_deletes").as_deref() {
            Some("ignore") => HardDeletes::Ignore,
            Some("invalidate") => HardDeletes::Invalidate,
            Some("new_record") => HardDeletes::NewRecord,
            Some(_) => return Err(bad("hard_deletes must be ignore, invalidate or new_record")),
            None if raw.get("invalidate_hard_deletes") == Some(&Value::Bool(true)) => {
                HardDeletes::Invalidate
            }
            None => HardDeletes::Ignore,
        };
        let names = raw
            .get("snapshot_meta_column_names")
            .and_then(Value::as_object);
        let name = |key: &str| {
            names
                .and_then(|n| n.get(key))
                .and_then(Value::as_str)
                .unwrap_or(key)
                .to_string()
        };
        Ok(SnapshotConfig {
            strategy,
            unique_key,
            hard_deletes,
            columns: MetaColumns {
                scd_id: name("dbt_scd_id"),
                updated_at: name("dbt_updated_at"),
                valid_from: name("dbt_valid_from"),
                valid_to: name("dbt_valid_to"),
                is_deleted: name("dbt_is_deleted"),
            },
            valid_to_current: text("dbt_valid_to_current"),
        })
    }
}

/// The `{% snapshot %}` blocks of the snapshot path's `.sql` files and the `snapshots:`
/// entries with a `relation:` of the property files of the snapshot and model paths; a
/// `snapshots:` entry without one configures the block of its name.
pub fn snapshot_files(paths: &ProjectPaths) -> Result<Vec<SnapshotFile>, ModelsError> {
    let schema = paths
        .dbt
        .as_ref()
        .map_or("snapshots", |d| d.target_schema.as_str());
    let mut out = Vec::new();
    let mut configs: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    for (file, folders) in files_below(&paths.snapshots)
        .into_iter()
        .chain(files_below(&paths.models))
    {
        let path = paths.relative(&file);
        let ext = file.extension().and_then(|e| e.to_str()).unwrap_or("");
        let read = || {
            std::fs::read_to_string(&file).map_err(|e| ModelsError::Io {
                path: path.clone(),
                source: e,
            })
        };
        if ext == "sql" && file.starts_with(&paths.snapshots) {
            let text = read()?;
            let blocks = blocks(&text).map_err(|e| ModelsError::Project(format!("{path}: {e}")))?;
            let several = blocks.len() > 1;
            for (name, body) in blocks {
                let name = name.to_lowercase();
                out.push(SnapshotFile {
                    file: ModelFile {
                        schema: schema.to_string(),
                        path: if several {
                            format!("{path}#{name}")
                        } else {
                            path.clone()
                        },
                        name,
                        source: body,
                        folders: folders.clone(),
                    },
                    config: BTreeMap::new(),
                });
            }
        } else if ext == "yml" || ext == "yaml" {
            let text = read()?;
            let doc: PropertyFile =
                serde_yaml_ng::from_str(&text).map_err(|e| ModelsError::Yaml {
                    path: path.clone(),
                    source: e,
                })?;
            for s in doc.snapshots {
                let name = s.name.to_lowercase();
                match s.relation {
                    Some(relation) => out.push(SnapshotFile {
                        file: ModelFile {
                            schema: schema.to_string(),
                            path: format!("{path}#{name}"),
                            source: format!("select * from {{{{ {relation} }}}}\n"),
                            name,
                            folders: folders.clone(),
                        },
                        config: s.config,
                    }),
                    None => {
                        configs.entry(name).or_default().extend(s.config);
                    }
                }
            }
        }
    }
    for s in &mut out {
        if let Some(c) = configs.remove(&s.file.name) {
            s.config.extend(c);
        }
    }
    if let Some(name) = configs.keys().next() {
        return Err(ModelsError::Project(format!(
            "snapshots: configures {name}, which is not a snapshot of the project"
        )));
    }
    Ok(out)
}

#[derive(Debug, serde::Deserialize)]
struct PropertyFile {
    #[serde(default)]
    snapshots: Vec<SnapshotEntry>,
}

#[derive(Debug, serde::Deserialize)]
struct SnapshotEntry {
    name: String,
    /// `ref('m')` or `source('s', 't')`.
    relation: Option<String>,
    #[serde(default)]
    config: BTreeMap<String, Value>,
}

/// Files below `dir` at any depth with the folders between, sorted.
fn files_below(dir: &Path) -> Vec<(PathBuf, Vec<String>)> {
    let mut out = Vec::new();
    let mut pending = vec![(dir.to_path_buf(), Vec::<String>::new())];
    while let Some((d, folders)) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for p in entries.filter_map(Result::ok).map(|e| e.path()) {
            if p.is_dir() {
                let mut sub = folders.clone();
                sub.push(p.file_name().unwrap_or_default().to_string_lossy().into());
                pending.push((p, sub));
            } else {
                out.push((p, folders.clone()));
            }
        }
    }
    out.sort();
    out
}

/// The `{% snapshot name %}` ... `{% endsnapshot %}` blocks of `text`: (name, body),
/// the body preceded by as many newlines as lines before it, so errors name the file's
/// lines.
fn blocks(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(open) = text[at..].find("{%").map(|i| i + at) {
        let Some(close) = text[open..].find("%}").map(|i| i + open) else {
            break;
        };
        let inner = text[open + 2..close].trim_matches(['-', '+', ' ', '\t', '\n', '\r']);
        at = close + 2;
        let Some(name) = inner.strip_prefix("snapshot").map(str::trim) else {
            continue;
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let end =
            find_end(text, at).ok_or_else(|| format!("snapshot {name} has no endsnapshot"))?;
        let lines = text[..at].matches('\n').count();
        out.push((
            name.to_string(),
            format!("{}{}", "\n".repeat(lines), &text[at..end.0]),
        ));
        at = end.1;
    }
    Ok(out)
}

/// Where the `{% endsnapshot %}` after `from` starts and ends.
fn find_end(text: &str, from: usize) -> Option<(usize, usize)> {
    let mut at = from;
    while let Some(open) = text[at..].find("{%").map(|i| i + at) {
        let close = text[open..].find("%}").map(|i| i + open)?;
        let inner = text[open + 2..close].trim_matches(['-', '+', ' ', '\t', '\n', '\r']);
        if inner == "endsnapshot" {
            return Some((open, close + 2));
        }
        at = close + 2;
    }
    None
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Takes one snapshot of model `m` (a snapshot) whose query is `sql`; the rows written.
pub async fn run(
    engine: &Arc<Engine>,
    m: &Model,
    sql: &str,
    cancel: &CancellationToken,
) -> Result<u64, ModelsError> {
    let Some(config) = &m.config.snapshot else {
        return Err(ModelsError::Invalid(format!(
            "{} is not a snapshot",
            m.relation
        )));
    };
    let session = engine.session("tidepool");
    let source = session.dataframe(sql).await?;
    let schema: Schema = source.schema().as_arrow().clone();
    let plan = Plan::new(config, &schema, &m.relation)?;
    let lake = engine.lake();
    match lake.table(&m.schema, &m.name).await? {
        None => {
            let df = session.dataframe(&plan.first(sql)).await?;
            let options = tidepool_lake::WriteOptions::default();
            crate::execute::replace_table(&session, (&m.schema, &m.name), df, &options, cancel)
                .await
        }
        Some(_) => {
            let target = session
                .dataframe(&format!("SELECT * FROM {} LIMIT 0", m.relation))
                .await?;
            let existing = crate::column_names(&target);
            // Columns new in the query are added first, as dbt does.
            for f in schema.fields() {
                if !existing.contains(f.name()) {
                    let add = format!(
                        "ALTER TABLE {} ADD COLUMN {} {}",
                        m.relation,
                        quote(f.name()),
                        tidepool_engine::copy::sql_name(f.data_type())
                    );
                    crate::execute::execute_all(engine, &add, cancel).await?;
                }
            }
            let merge = plan.merge(sql, &m.relation, &existing);
            Ok(crate::execute::execute_all(engine, &merge, cancel)
                .await?
                .unwrap_or(0))
        }
    }
}

/// The SQL of a snapshot's runs, for the query's columns.
struct Plan<'a> {
    config: &'a SnapshotConfig,
    /// The query's columns.
    columns: Vec<String>,
    /// `updated_at` of a version, over the query's row `s`.
    updated: String,
    /// Its SQL type, which dbt's time columns take.
    time_type: String,
    /// The snapshot's time, as that type.
    now: String,
}

impl<'a> Plan<'a> {
    fn new(
        config: &'a SnapshotConfig,
        schema: &Schema,
        relation: &str,
    ) -> Result<Self, ModelsError> {
        let has = |c: &str| schema.field_with_name(c).ok();
        let missing = |c: &str| {
            ModelsError::Invalid(format!(
                "snapshot {relation}: the query has no column {c:?}"
            ))
        };
        for k in &config.unique_key {
            has(k).ok_or_else(|| missing(k))?;
        }
        let stamp = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S%.6f");
        let (updated, time_type) = match &config.strategy {
            Strategy::Timestamp { updated_at }
            | Strategy::Check {
                updated_at: Some(updated_at),
                ..
            } => {
                let f = has(updated_at).ok_or_else(|| missing(updated_at))?;
                (
                    format!("s.{}", quote(updated_at)),
                    tidepool_engine::copy::sql_name(f.data_type()),
                )
            }
            Strategy::Check { .. } => (
                format!("CAST(TIMESTAMP '{stamp}' AS timestamp)"),
                "timestamp".to_string(),
            ),
        };
        if let Strategy::Check {
            columns: Some(cols),
            ..
        } = &config.strategy
        {
            for c in cols {
                has(c).ok_or_else(|| missing(c))?;
            }
        }
        Ok(Plan {
            config,
            columns: schema.fields().iter().map(|f| f.name().clone()).collect(),
            now: format!("CAST(TIMESTAMP '{stamp}' AS {time_type})"),
            updated,
            time_type,
        })
    }

    /// `dbt_valid_to` of a current row.
    fn open_end(&self) -> String {
        match &self.config.valid_to_current {
            Some(v) => format!("CAST({v} AS {})", self.time_type),
            None => format!("CAST(NULL AS {})", self.time_type),
        }
    }

    /// dbt's `dbt_scd_id`: a hash of the key and the version's start.
    fn scd_id(&self, row: &str, start: &str) -> String {
        let parts: Vec<String> = self
            .config
            .unique_key
            .iter()
            .map(|k| format!("coalesce(CAST({row}.{} AS text), '')", quote(k)))
            .chain(std::iter::once(format!(
                "coalesce(CAST({start} AS text), '')"
            )))
            .collect();
        format!("md5({})", parts.join(" || '|' || "))
    }

    /// The first snapshot: every row of the query, each its first version.
    fn first(&self, sql: &str) -> String {
        let c = &self.config.columns;
        let mut out = format!(
            "SELECT s.*, {} AS {}, {u} AS {}, {u} AS {}, {} AS {}",
            self.scd_id("s", &self.updated),
            quote(&c.scd_id),
            quote(&c.updated_at),
            quote(&c.valid_from),
            self.open_end(),
            quote(&c.valid_to),
            u = self.updated,
        );
        if self.config.hard_deletes == HardDeletes::NewRecord {
            out.push_str(&format!(", 'False' AS {}", quote(&c.is_deleted)));
        }
        out.push_str(&format!(" FROM ({sql}) AS s"));
        out
    }

    /// A later snapshot: one MERGE of the changes into `relation`, whose columns are
    /// `existing` (before columns new in the query were added).
    fn merge(&self, sql: &str, relation: &str, existing: &[String]) -> String {
        let c = &self.config.columns;
        let meta = [
            &c.scd_id,
            &c.updated_at,
            &c.valid_from,
            &c.valid_to,
            &c.is_deleted,
        ];
        // The data columns: the snapshot's (those the query lost stay, null from now on)
        // and the query's new ones.
        let mut data: Vec<&String> = existing.iter().filter(|e| !meta.contains(e)).collect();
        for col in &self.columns {
            if !data.contains(&col) {
                data.push(col);
            }
        }
        let new_record = self.config.hard_deletes == HardDeletes::NewRecord;
        let from = |row: &str| -> String {
            data.iter()
                .map(|d| {
                    if row == "s" && !self.columns.contains(d) {
                        format!("NULL AS {}", quote(d))
                    } else {
                        format!("{row}.{} AS {}", quote(d), quote(d))
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let keys_match = self
            .config
            .unique_key
            .iter()
            .map(|k| format!("s.{k} = d.{k}", k = quote(k)))
            .collect::<Vec<_>>()
            .join(" AND ");
        let first_key = quote(&self.config.unique_key[0]);
        let deleted = |row: &str| format!("{row}.{} = 'True'", quote(&c.is_deleted));
        let changed = match &self.config.strategy {
            Strategy::Timestamp { .. } => {
                format!("d.{} < {}", quote(&c.valid_from), self.updated)
            }
            Strategy::Check { columns, .. } => {
                let cols: Vec<&String> = match columns {
                    Some(cols) => cols.iter().collect(),
                    None => self.columns.iter().collect(),
                };
                let same: Vec<String> = cols
                    .iter()
                    // Parenthesized: sqlparser binds IS NOT DISTINCT FROM looser than AND.
                    .map(|col| format!("(s.{q} IS NOT DISTINCT FROM d.{q})", q = quote(col)))
                    .collect();
                format!("NOT ({})", same.join(" AND "))
            }
        };
        let changed = if new_record {
            format!("({changed} OR {})", deleted("d"))
        } else {
            changed
        };
        let is_current = |row: &str| match &self.config.valid_to_current {
            Some(_) => format!(
                "({row}.{v} IS NULL OR {row}.{v} = {})",
                self.open_end(),
                v = quote(&c.valid_to)
            ),
            None => format!("{row}.{} IS NULL", quote(&c.valid_to)),
        };
        let flag = |value: &str| {
            if new_record {
                format!(", {value} AS {}", quote(&c.is_deleted))
            } else {
                String::new()
            }
        };
        let meta_cols = |scd: &str, start: &str, end: &str| {
            format!(
                "{scd} AS {}, {start} AS {}, {start} AS {}, {end} AS {}",
                quote(&c.scd_id),
                quote(&c.updated_at),
                quote(&c.valid_from),
                quote(&c.valid_to)
            )
        };
        let current = format!("SELECT * FROM {relation} AS d WHERE {}", is_current("d"));
        let mut parts = vec![
            // New keys and new versions of changed rows.
            format!(
                "SELECT 'insert' AS dbt_change_type, {}, {}{} FROM s LEFT JOIN d ON {keys_match} \
                 WHERE d.{scd} IS NULL OR {changed}",
                from("s"),
                meta_cols(
                    &self.scd_id("s", &self.updated),
                    &self.updated,
                    &self.open_end()
                ),
                flag("'False'"),
                scd = quote(&c.scd_id),
            ),
            // The versions they close.
            format!(
                "SELECT 'update' AS dbt_change_type, {}, {}{} FROM s JOIN d ON {keys_match} \
                 WHERE {changed}",
                from("s"),
                meta_cols(
                    &format!("d.{}", quote(&c.scd_id)),
                    &self.updated,
                    &self.updated
                ),
                flag("'False'"),
            ),
        ];
        if self.config.hard_deletes != HardDeletes::Ignore {
            let gone = format!(
                "FROM d LEFT JOIN s ON {keys_match} WHERE s.{first_key} IS NULL{}",
                if new_record {
                    format!(" AND NOT {}", deleted("d"))
                } else {
                    String::new()
                }
            );
            parts.push(format!(
                "SELECT 'delete' AS dbt_change_type, {}, {}{} {gone}",
                from("d"),
                meta_cols(&format!("d.{}", quote(&c.scd_id)), &self.now, &self.now),
                flag(&format!("d.{}", quote(&c.is_deleted))),
            ));
            if new_record {
                parts.push(format!(
                    "SELECT 'insert' AS dbt_change_type, {}, {}{} {gone}",
                    from("d"),
                    meta_cols(&self.scd_id("d", &self.now), &self.now, &self.open_end()),
                    flag("'True'"),
                ));
            }
        }
        let mut columns: Vec<String> = data.iter().map(|d| quote(d)).collect();
        columns.extend([&c.scd_id, &c.updated_at, &c.valid_from, &c.valid_to].map(|n| quote(n)));
        if new_record {
            columns.push(quote(&c.is_deleted));
        }
        let values: Vec<String> = columns.iter().map(|q| format!("s.{q}")).collect();
        format!(
            "MERGE INTO {relation} AS t USING (WITH s AS ({sql}), d AS ({current}) {}) AS s \
             ON s.{scd} = t.{scd} \
             WHEN MATCHED AND {to_current} AND s.dbt_change_type IN ('update', 'delete') \
             THEN UPDATE SET {to} = s.{to} \
             WHEN NOT MATCHED AND s.dbt_change_type = 'insert' \
             THEN INSERT ({}) VALUES ({})",
            parts.join(" UNION ALL "),
            columns.join(", "),
            values.join(", "),
            scd = quote(&c.scd_id),
            to = quote(&c.valid_to),
            to_current = is_current("t"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_blocks_keep_their_lines() {
        let text = "-- a\n{% snapshot orders_snap %}\n{{ config(strategy='check') }}\nselect 1\n{% endsnapshot %}\n\
                    {%- snapshot two -%}select 2{%- endsnapshot -%}";
        let b = blocks(text).unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].0, "orders_snap");
        assert_eq!(b[0].1, "\n\n{{ config(strategy='check') }}\nselect 1\n");
        assert_eq!(b[1], ("two".to_string(), "\n\n\n\n\nselect 2".to_string()));
        assert!(blocks("{% snapshot x %} select 1").is_err());
    }

    #[test]
    fn configs_are_checked() {
        let raw = |v: serde_json::Value| -> BTreeMap<String, Value> {
            serde_json::from_value(v).unwrap()
        };
        let c = SnapshotConfig::from_raw(
            &raw(
                serde_json::json!({"unique_key": ["a", "b"], "strategy": "check",
                "check_cols": "all", "invalidate_hard_deletes": true,
                "snapshot_meta_column_names": {"dbt_valid_to": "valid_until"}}),
            ),
            "s.sql",
        )
        .unwrap();
        assert_eq!(c.unique_key, vec!["a", "b"]);
        assert_eq!(
            c.strategy,
            Strategy::Check {
                columns: None,
                updated_at: None
            }
        );
        assert_eq!(c.hard_deletes, HardDeletes::Invalidate);
        assert_eq!(c.columns.valid_to, "valid_until");
        assert_eq!(c.columns.valid_from, "dbt_valid_from");
        let err = SnapshotConfig::from_raw(
            &raw(serde_json::json!({"unique_key": "id", "strategy": "timestamp"})),
            "s.sql",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("needs updated_at"), "{err}");
    }
}
