//! Data tests, dbt style. Generic tests come from YAML files beside the models
//! (`models: - name: x  columns: - name: c  tests: [not_null, unique, accepted_values,
//! relationships]`, `data_tests:` works too, each with `severity: warn|error`); singular
//! tests are `tests/*.sql` queries. Every test is a query returning the failing rows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ModelsError;

/// How a failing test counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warn,
}

/// One data test, compiled.
#[derive(Debug, Clone)]
pub struct DataTest {
    /// dbt-style name, e.g. `not_null_customer_revenue_customer`.
    pub name: String,
    /// The file that declares it.
    pub path: String,
    /// Returns the failing rows.
    pub sql: String,
    pub severity: Severity,
    /// Models the test reads (the model it is attached to first).
    pub models: Vec<usize>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SchemaFile {
    #[serde(default)]
    models: Vec<ModelEntry>,
    /// Seeds are described and tested as models are, and configured here.
    #[serde(default)]
    seeds: Vec<ModelEntry>,
    #[serde(default)]
    pub(crate) sources: Vec<SourceEntry>,
}

/// `sources:` in YAML: tables of the lake, or Delta/Parquet/CSV/JSON at any path or URL.
#[derive(Debug, Deserialize)]
pub(crate) struct SourceEntry {
    pub(crate) name: String,
    /// Lake schema of the tables without a path [default: the source's name].
    #[serde(default)]
    schema: Option<String>,
    #[serde(default)]
    pub(crate) tables: Vec<SourceTable>,
    /// `source freshness` defaults of its tables ([`crate::freshness`]).
    #[serde(default)]
    pub(crate) loaded_at_field: Option<String>,
    #[serde(default)]
    pub(crate) freshness: Option<serde_yaml_ng::Value>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SourceTable {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) loaded_at_field: Option<String>,
    /// `freshness: null` turns the source's off for this table.
    #[serde(default, deserialize_with = "present")]
    pub(crate) freshness: Option<Option<serde_yaml_ng::Value>>,
    /// Table name in the lake schema [default: `name`].
    #[serde(default)]
    identifier: Option<String>,
    /// A folder or URL read with `read_<format>(...)` instead of a lake table.
    #[serde(default, alias = "location")]
    path: Option<String>,
    /// `delta` (default), `parquet`, `csv` or `json`, for `path`.
    #[serde(default)]
    format: Option<String>,
}

/// `(source, table)` -> the SQL relation `source()` renders.
pub type YamlSources = BTreeMap<(String, String), String>;

/// Reads the `sources:` of every YAML file under `dir`.
pub fn read_sources(dir: &Path, project_dir: &Path) -> Result<YamlSources, ModelsError> {
    let mut out = YamlSources::new();
    for (rel, parsed) in yaml_files(dir, project_dir)? {
        for src in parsed.sources {
            let schema = src
                .schema
                .clone()
                .unwrap_or_else(|| src.name.clone())
                .to_lowercase();
            for t in src.tables {
                let relation = match &t.path {
                    Some(path) => {
                        let func = match t.format.as_deref().unwrap_or("delta") {
                            f @ ("delta" | "parquet" | "csv" | "json") => format!("read_{f}"),
                            other => {
                                return Err(ModelsError::Project(format!(
                                    "{rel}: source {}.{}: format {other:?} (delta, parquet, csv, json)",
                                    src.name, t.name
                                )));
                            }
                        };
                        format!("{func}('{}')", path.replace('\'', "''"))
                    }
                    None => {
                        let id = t
                            .identifier
                            .clone()
                            .unwrap_or_else(|| t.name.clone())
                            .to_lowercase();
                        if !tidepool_lake::valid_name(&schema) || !tidepool_lake::valid_name(&id) {
                            return Err(ModelsError::Project(format!(
                                "{rel}: source {}.{}: {schema}.{id} is not a lake table name",
                                src.name, t.name
                            )));
                        }
                        format!("{schema}.{id}")
                    }
                };
                out.insert((src.name.to_lowercase(), t.name.to_lowercase()), relation);
            }
        }
    }
    Ok(out)
}

#[derive(Debug, Deserialize)]
struct ModelEntry {
    name: String,
    #[serde(default)]
    description: Option<String>,
    /// `config:`, under the model's own `config()`.
    #[serde(default)]
    config: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    columns: Vec<ColumnEntry>,
    #[serde(default, alias = "data_tests")]
    tests: Vec<serde_yaml_ng::Value>,
}

#[derive(Debug, Deserialize)]
struct ColumnEntry {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default, alias = "data_tests")]
    tests: Vec<serde_yaml_ng::Value>,
}

/// Descriptions from the YAML files: model name -> (description, column -> description).
pub type Descriptions = BTreeMap<String, (Option<String>, BTreeMap<String, String>)>;

/// A generic test before it is resolved against the project's models.
#[derive(Debug, Clone)]
pub struct GenericTest {
    pub path: String,
    pub model: String,
    pub column: Option<String>,
    pub kind: String,
    pub args: serde_yaml_ng::Mapping,
    pub severity: Severity,
}

/// Reads every `*.yml`/`*.yaml` under `dir`.
pub fn read_yaml(
    dir: &Path,
    project_dir: &Path,
) -> Result<(Vec<GenericTest>, Descriptions), ModelsError> {
    let mut tests = Vec::new();
    let mut docs = Descriptions::new();
    for (rel, parsed) in yaml_files(dir, project_dir)? {
        for m in parsed.models.into_iter().chain(parsed.seeds) {
            let name = m.name.to_lowercase();
            let entry = docs.entry(name.clone()).or_default();
            if m.description.is_some() {
                entry.0 = m.description.clone();
            }
            for t in &m.tests {
                tests.push(generic(&rel, &name, None, t)?);
            }
            for c in &m.columns {
                if let Some(d) = &c.description {
                    entry.1.insert(c.name.clone(), d.clone());
                }
                for t in &c.tests {
                    tests.push(generic(&rel, &name, Some(&c.name), t)?);
                }
            }
        }
    }
    Ok((tests, docs))
}

/// `config:` values by lowercased name.
pub type Configs = BTreeMap<String, BTreeMap<String, serde_json::Value>>;

/// The `config:` of each model and each seed named in the YAML files under `dirs`
/// (dbt's property files: they sit under `config()` in the SQL and over folder configs).
pub fn yaml_configs(dirs: &[&Path], project_dir: &Path) -> Result<(Configs, Configs), ModelsError> {
    let (mut models, mut seeds) = (Configs::new(), Configs::new());
    for dir in dirs {
        for (_, parsed) in yaml_files(dir, project_dir)? {
            for m in parsed.models.into_iter().filter(|m| !m.config.is_empty()) {
                models.insert(m.name.to_lowercase(), m.config);
            }
            for s in parsed.seeds {
                seeds.insert(s.name.to_lowercase(), s.config);
            }
        }
    }
    Ok((models, seeds))
}

/// Every `*.yml`/`*.yaml` under `dir`, parsed, with its path relative to the project.
/// A key given (even as null) is `Some`, a missing one `None`.
fn present<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<serde_yaml_ng::Value>>, D::Error> {
    Option::<serde_yaml_ng::Value>::deserialize(d).map(Some)
}

pub(crate) fn yaml_files(
    dir: &Path,
    project_dir: &Path,
) -> Result<Vec<(String, SchemaFile)>, ModelsError> {
    let mut files = Vec::new();
    collect(dir, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let rel = f
                .strip_prefix(project_dir)
                .unwrap_or(&f)
                .to_string_lossy()
                .replace('\\', "/");
            let text = std::fs::read_to_string(&f).map_err(|e| ModelsError::Io {
                path: rel.to_string(),
                source: e,
            })?;
            let parsed: SchemaFile =
                serde_yaml_ng::from_str(&text).map_err(|e| ModelsError::Yaml {
                    path: rel.to_string(),
                    source: e,
                })?;
            Ok((rel, parsed))
        })
        .collect()
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.filter_map(Result::ok) {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|x| x == "yml" || x == "yaml") {
            out.push(p);
        }
    }
}

fn generic(
    path: &str,
    model: &str,
    column: Option<&str>,
    t: &serde_yaml_ng::Value,
) -> Result<GenericTest, ModelsError> {
    let bad = |why: &str| ModelsError::Project(format!("{path}: test on {model}: {why}"));
    let (kind, mut args) = match t {
        serde_yaml_ng::Value::String(s) => (s.clone(), serde_yaml_ng::Mapping::new()),
        serde_yaml_ng::Value::Mapping(m) if m.len() == 1 => {
            let (k, v) = m.iter().next().ok_or_else(|| bad("empty test"))?;
            let kind = k.as_str().ok_or_else(|| bad("test name is not text"))?;
            let args = match v {
                serde_yaml_ng::Value::Mapping(a) => a.clone(),
                serde_yaml_ng::Value::Null => serde_yaml_ng::Mapping::new(),
                _ => return Err(bad(&format!("arguments of {kind} are not a mapping"))),
            };
            (kind.to_string(), args)
        }
        _ => return Err(bad("a test is a name or `name: {arguments}`")),
    };
    // `severity` directly or under `config:` (dbt 1.8 form).
    let mut severity = args.remove("severity");
    if let Some(serde_yaml_ng::Value::Mapping(c)) = args.remove("config")
        && let Some(s) = c.get("severity")
    {
        severity = Some(s.clone());
    }
    let severity = match severity.as_ref().and_then(|s| s.as_str()) {
        None => Severity::Error,
        Some(s) if s.eq_ignore_ascii_case("error") => Severity::Error,
        Some(s) if s.eq_ignore_ascii_case("warn") => Severity::Warn,
        Some(s) => return Err(bad(&format!("severity {s:?} (error or warn)"))),
    };
    Ok(GenericTest {
        path: path.to_string(),
        model: model.to_string(),
        column: column.map(str::to_string),
        kind,
        args,
        severity,
    })
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn literal(v: &serde_yaml_ng::Value, quote: bool) -> Result<String, String> {
    match v {
        serde_yaml_ng::Value::String(s) if quote => Ok(format!("'{}'", s.replace('\'', "''"))),
        serde_yaml_ng::Value::String(s) => Ok(s.clone()),
        serde_yaml_ng::Value::Number(n) => Ok(n.to_string()),
        serde_yaml_ng::Value::Bool(b) => Ok(b.to_string()),
        other => Err(format!("cannot use {other:?} as a value")),
    }
}

/// Turns `ref(...)`/`source(...)` text into `(relation, model index if a model)`.
pub type ResolveFn<'a> = dyn Fn(&str) -> Result<(String, Option<usize>), String> + 'a;

/// The failing-rows query of a generic test on `relation`; `resolve` turns
/// `ref('x')`/`source('a','b')` text (as in `relationships: to:`) into a relation and the
/// model it names.
pub fn compile(
    t: &GenericTest,
    relation: &str,
    resolve: &ResolveFn<'_>,
) -> Result<(String, String, Option<usize>), String> {
    let Some(col) = t.column.as_deref() else {
        return Err(format!(
            "{} goes under a column (columns: - name: ... tests: [...])",
            t.kind
        ));
    };
    let c = quote_ident(col);
    let model = t.model.as_str();
    let arg = |k: &str| t.args.get(k);
    Ok(match t.kind.as_str() {
        "not_null" => (
            format!("not_null_{model}_{col}"),
            format!("SELECT * FROM {relation} WHERE {c} IS NULL"),
            None,
        ),
        "unique" => (
            format!("unique_{model}_{col}"),
            format!(
                "SELECT {c} AS unique_field, count(*) AS n_records FROM {relation} WHERE {c} IS NOT NULL GROUP BY {c} HAVING count(*) > 1"
            ),
            None,
        ),
        "accepted_values" => {
            let values = arg("values")
                .and_then(|v| v.as_sequence())
                .ok_or("accepted_values needs `values: [...]`")?;
            let quote = arg("quote").and_then(|q| q.as_bool()).unwrap_or(true);
            let list = values
                .iter()
                .map(|v| literal(v, quote))
                .collect::<Result<Vec<_>, _>>()?
                .join(", ");
            (
                format!("accepted_values_{model}_{col}"),
                format!(
                    "SELECT {c} AS value_field, count(*) AS n_records FROM {relation} WHERE {c} IS NOT NULL AND {c} NOT IN ({list}) GROUP BY {c}"
                ),
                None,
            )
        }
        "relationships" => {
            let to = arg("to")
                .and_then(|v| v.as_str())
                .ok_or("relationships needs `to: ref('model')`")?;
            let field = arg("field")
                .and_then(|v| v.as_str())
                .ok_or("relationships needs `field: <column of the parent>`")?;
            let (parent, parent_model) = resolve(to)?;
            let f = quote_ident(field);
            (
                format!("relationships_{model}_{col}"),
                format!(
                    "SELECT child.{c} AS from_field FROM {relation} AS child LEFT JOIN {parent} AS parent ON child.{c} = parent.{f} WHERE child.{c} IS NOT NULL AND parent.{f} IS NULL"
                ),
                parent_model,
            )
        }
        other => {
            return Err(format!(
                "unknown test {other:?} (not_null, unique, accepted_values, relationships)"
            ));
        }
    })
}

/// dbt's tests that tidepool compiles itself (a project's own `test_<name>` macro wins).
pub const BUILT_IN: &[&str] = &["not_null", "unique", "accepted_values", "relationships"];

/// `ref('x')`, `ref('s', 'x')` or `source('a', 'b')` as written in YAML: the function and
/// its quoted arguments.
pub fn parse_call(text: &str) -> Option<(String, Vec<String>)> {
    let t = text
        .trim()
        .trim_start_matches("{{")
        .trim_end_matches("}}")
        .trim();
    let open = t.find('(')?;
    let func = t[..open].trim().to_string();
    let inner = t[open + 1..].trim_end().strip_suffix(')')?;
    let args = inner
        .split(',')
        .map(|a| a.trim().trim_matches(|c| c == '\'' || c == '"').to_string())
        .filter(|a| !a.is_empty())
        .collect();
    Some((func, args))
}

/// Failing rows shown per failed test.
pub const SHOW_ROWS: usize = 5;
