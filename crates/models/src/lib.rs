//! SQL models, dbt style: a project is `sql/<schema>/<name>.sql` files (one SELECT each,
//! table `<schema>.<name>`) plus macros. Loading a project renders every model's Jinja,
//! learns its config, resolves `ref()`/`source()` and the tables its SQL reads, and builds
//! the DAG; unknown references and cycles are reported here, before anything runs.
//! [`run`] materializes selected models in DAG order.

pub mod config_levels;
pub mod datatests;
pub mod dbt_project;
pub mod docs;
mod ephemeral;
mod error;
mod execute;
pub mod freshness;
pub mod graph;
pub mod history;
pub mod hooks;
pub mod incremental;
pub mod jinja_dbt;
mod jinja_values;
pub mod lake_db;
pub mod lineage;
pub mod manifest;
pub mod packages;
pub mod project;
pub mod records;
pub mod render;
pub mod run;
pub mod seeds;
pub mod select;
pub mod snapshots;
pub mod streaming;
mod test_order;
pub mod views;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use datafusion::sql::parser::{DFParserBuilder, Statement as DFStatement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;

pub use error::ModelsError;
pub use graph::Graph;
pub use project::{ModelFile, ProjectPaths};
pub use render::{Reference, RenderOptions, Rendered, Resolver, Templates};

/// `var()` values as text: a JSON object, or YAML (a superset for the simple cases, as
/// dbt's `--vars` takes it). Empty text is no values.
pub fn parse_vars(text: &str) -> Result<BTreeMap<String, serde_json::Value>, ModelsError> {
    if text.trim().is_empty() {
        return Ok(BTreeMap::new());
    }
    serde_json::from_str(text).or_else(|json| {
        serde_yaml_ng::from_str(text)
            .map_err(|_| ModelsError::Config(format!("vars must be a JSON or YAML object: {json}")))
    })
}

/// How a model is materialized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Materialized {
    View,
    Table,
    Incremental,
    Streaming,
    Ephemeral,
    /// A CSV file of `seeds/` ([`seeds`]).
    Seed,
    /// A `{% snapshot %}` ([`snapshots`]).
    Snapshot,
}

impl Materialized {
    pub fn as_str(self) -> &'static str {
        match self {
            Materialized::View => "view",
            Materialized::Table => "table",
            Materialized::Incremental => "incremental",
            Materialized::Streaming => "streaming",
            Materialized::Ephemeral => "ephemeral",
            Materialized::Seed => "seed",
            Materialized::Snapshot => "snapshot",
        }
    }
}

/// A model's configuration from `config(...)`.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub materialized: Materialized,
    pub tags: Vec<String>,
    pub unique_key: Vec<String>,
    pub enabled: bool,
    /// `incremental_strategy`: `merge` with a `unique_key`, else `append`, unless given.
    pub strategy: incremental::Strategy,
    pub on_schema_change: incremental::OnSchemaChange,
    /// `tblproperties={...}`: Delta table properties (dbt-databricks' name).
    pub tblproperties: BTreeMap<String, String>,
    /// `cluster_by=[...]`: a full refresh writes the rows sorted by these columns, so
    /// file statistics let merges skip files.
    pub cluster_by: Vec<String>,
    /// SQL run right before and right after the model is built ([`hooks`]).
    pub pre_hook: Vec<String>,
    pub post_hook: Vec<String>,
    /// A snapshot's strategy, key and columns.
    pub snapshot: Option<snapshots::SnapshotConfig>,
    /// Every `config()` argument as given, for `config.<key>:` selectors.
    pub raw: BTreeMap<String, serde_json::Value>,
}

/// Files of tables that take keyed merges: small enough that a merge touching a few keys
/// rewrites little (Databricks' `tuneFileSizesForRewrites` does the same).
pub const KEYED_FILE_SIZE: &str = "16mb";
/// Rows per Parquet row group of such tables: a merge decodes the key column of only the
/// groups whose statistics admit its keys.
pub const KEYED_ROW_GROUP: usize = 128 * 1024;

impl ModelConfig {
    /// The Delta layout of the model's table: `tblproperties`, and for models merged on a
    /// `unique_key` a `delta.targetFileSize` of [`KEYED_FILE_SIZE`] unless given.
    pub fn layout(&self) -> tidepool_lake::Layout {
        let mut properties = self.tblproperties.clone();
        if !self.unique_key.is_empty() && self.strategy != incremental::Strategy::Append {
            properties
                .entry("delta.targetFileSize".to_string())
                .or_insert_with(|| KEYED_FILE_SIZE.to_string());
        }
        // Stored in bytes, the form every Delta reader parses.
        if let Some(v) = properties.get_mut("delta.targetFileSize")
            && let Some(n) = tidepool_lake::parse_size(v)
        {
            *v = n.to_string();
        }
        let keyed = !self.unique_key.is_empty() && self.strategy != incremental::Strategy::Append;
        tidepool_lake::Layout {
            properties,
            row_group_rows: keyed.then_some(KEYED_ROW_GROUP),
        }
    }

    /// A config value by key; `materialized` is always set.
    pub fn get(&self, key: &str) -> Option<serde_json::Value> {
        if key == "materialized" {
            return Some(serde_json::Value::String(
                self.materialized.as_str().to_string(),
            ));
        }
        self.raw.get(key).cloned()
    }

    fn from_raw(
        mut raw: BTreeMap<String, serde_json::Value>,
        path: &str,
    ) -> Result<Self, ModelsError> {
        let snapshot_file = raw.remove(SNAPSHOT_MARK).is_some();
        let bad = |key: &str, want: &str| {
            ModelsError::Config(format!("{path}: config({key}=...) must be {want}"))
        };
        let strings = |key: &str| -> Result<Vec<String>, ModelsError> {
            match raw.get(key) {
                None | Some(serde_json::Value::Null) => Ok(Vec::new()),
                Some(serde_json::Value::String(s)) => Ok(vec![s.clone()]),
                Some(serde_json::Value::Array(a)) => a
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_string)
                            .ok_or_else(|| bad(key, "a string or a list of strings"))
                    })
                    .collect(),
                Some(_) => Err(bad(key, "a string or a list of strings")),
            }
        };
        let materialized = match raw.get("materialized") {
            None => Materialized::View,
            Some(serde_json::Value::String(s)) => match s.to_lowercase().as_str() {
                "view" => Materialized::View,
                "table" => Materialized::Table,
                "incremental" => Materialized::Incremental,
                "streaming" => Materialized::Streaming,
                "ephemeral" => Materialized::Ephemeral,
                "seed" if path.ends_with(".csv") => Materialized::Seed,
                // Set by the loader for `{% snapshot %}` blocks and YAML snapshots only.
                "snapshot" if snapshot_file => Materialized::Snapshot,
                other => {
                    return Err(ModelsError::Config(format!(
                        "{path}: unknown materialization {other:?} (view, table, incremental, streaming, ephemeral)"
                    )));
                }
            },
            Some(_) => return Err(bad("materialized", "a string")),
        };
        let enabled = match raw.get("enabled") {
            None => true,
            Some(serde_json::Value::Bool(b)) => *b,
            Some(_) => return Err(bad("enabled", "true or false")),
        };
        if let Some(s) = raw.get("schema")
            && !s.as_str().is_some_and(tidepool_lake::valid_name)
        {
            return Err(bad("schema", "a schema name (letters, digits, _)"));
        }
        let unique_key = strings("unique_key")?;
        let strategy = match raw.get("incremental_strategy") {
            None => {
                if unique_key.is_empty() {
                    incremental::Strategy::Append
                } else {
                    incremental::Strategy::Merge
                }
            }
            Some(v) => v
                .as_str()
                .and_then(incremental::Strategy::parse)
                .ok_or_else(|| {
                    bad(
                        "incremental_strategy",
                        "'append', 'merge' or 'delete+insert'",
                    )
                })?,
        };
        if strategy != incremental::Strategy::Append && unique_key.is_empty() {
            return Err(ModelsError::Config(format!(
                "{path}: incremental_strategy='{}' needs unique_key",
                raw.get("incremental_strategy")
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
            )));
        }
        let on_schema_change = match raw.get("on_schema_change") {
            None => incremental::OnSchemaChange::Ignore,
            Some(v) => v
                .as_str()
                .and_then(incremental::OnSchemaChange::parse)
                .ok_or_else(|| {
                    bad(
                        "on_schema_change",
                        "'ignore', 'append_new_columns' or 'fail'",
                    )
                })?,
        };
        let mut tblproperties = BTreeMap::new();
        match raw.get("tblproperties") {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::Object(o)) => {
                for (k, v) in o {
                    let v = match v {
                        serde_json::Value::String(s) => s.clone(),
                        serde_json::Value::Number(n) => n.to_string(),
                        serde_json::Value::Bool(b) => b.to_string(),
                        _ => return Err(bad("tblproperties", "a map of names to values")),
                    };
                    tblproperties.insert(k.clone(), v);
                }
            }
            Some(_) => return Err(bad("tblproperties", "a map of names to values")),
        }
        if let Some(v) = tblproperties.get("delta.targetFileSize")
            && tidepool_lake::parse_size(v).is_none()
        {
            return Err(bad(
                "tblproperties",
                "a map whose delta.targetFileSize is a size such as 16777216 or '16mb'",
            ));
        }
        let hooks = |key: &str| {
            config_levels::parse(raw.get(key), &format!("{path}: {key}"))
                .map_err(ModelsError::Config)
        };
        let snapshot = match materialized {
            Materialized::Snapshot => Some(snapshots::SnapshotConfig::from_raw(&raw, path)?),
            _ => None,
        };
        Ok(ModelConfig {
            snapshot,
            pre_hook: hooks(config_levels::PRE)?,
            post_hook: hooks(config_levels::POST)?,
            materialized,
            tags: strings("tags")?,
            tblproperties,
            cluster_by: strings("cluster_by")?,
            unique_key,
            enabled,
            strategy,
            on_schema_change,
            raw,
        })
    }
}

/// The config key the loader marks snapshots with (not a dbt key).
const SNAPSHOT_MARK: &str = "__snapshot";

/// A loaded model.
#[derive(Debug, Clone)]
pub struct Model {
    pub file: ModelFile,
    /// Target schema: `config(schema=...)` or the folder.
    pub schema: String,
    pub name: String,
    /// `schema.name`.
    pub relation: String,
    pub config: ModelConfig,
    pub references: Vec<Reference>,
    /// The SQL with references resolved and `is_incremental()` false.
    pub compiled: String,
    /// Tables read that are not models of the project (bronze tables, other lake tables).
    pub reads: Vec<String>,
}

/// How a model's schema is named: the folder's (or `config(schema=...)`), or in a dbt
/// project by the project's `generate_schema_name` macro, else dbt's default.
struct SchemaNaming<'a> {
    dbt: Option<&'a dbt_project::DbtProject>,
    templates: &'a Templates,
}

impl SchemaNaming<'_> {
    fn schema(&self, custom: Option<&str>, f: &ModelFile) -> Result<String, ModelsError> {
        let Some(dbt) = self.dbt else {
            return Ok(custom.map_or_else(|| f.schema.clone(), str::to_lowercase));
        };
        let node = serde_json::json!({
            "name": f.name,
            "original_file_path": f.path,
            "fqn": std::iter::once(dbt.name.as_str())
                .chain(f.folders.iter().map(String::as_str))
                .chain(std::iter::once(f.name.as_str()))
                .collect::<Vec<_>>(),
        });
        let args = [
            custom.map_or(serde_json::Value::Null, serde_json::Value::from),
            node,
        ];
        match self.templates.call_macro("generate_schema_name", &args)? {
            None => Ok(dbt.schema_name(custom)),
            Some(s) if tidepool_lake::valid_name(&s.to_lowercase()) => Ok(s.to_lowercase()),
            Some(s) => Err(ModelsError::Config(format!(
                "{}: generate_schema_name gave {s:?}, which is not a schema name",
                f.path
            ))),
        }
    }
}

impl Model {
    /// Model (or seed) file `f` with its `config()` values, not compiled yet; `None` when
    /// disabled. In a dbt project the schema is named as dbt names it.
    fn configured(
        f: ModelFile,
        raw: BTreeMap<String, serde_json::Value>,
        references: Vec<Reference>,
        naming: &SchemaNaming<'_>,
    ) -> Result<Option<Model>, ModelsError> {
        let config = ModelConfig::from_raw(raw, &f.path)?;
        if !config.enabled {
            return Ok(None);
        }
        let custom = config.raw.get("schema").and_then(|s| s.as_str());
        // A snapshot's legacy `target_schema` is the schema as written.
        let schema = match config.raw.get("target_schema").and_then(|s| s.as_str()) {
            Some(s) if config.materialized == Materialized::Snapshot => {
                let s = s.to_lowercase();
                if !tidepool_lake::valid_name(&s) {
                    return Err(ModelsError::Config(format!(
                        "{}: target_schema {s:?} is not a schema name",
                        f.path
                    )));
                }
                s
            }
            _ => naming.schema(custom, &f)?,
        };
        Ok(Some(Model {
            relation: format!("{schema}.{}", f.name),
            name: f.name.clone(),
            schema,
            config,
            references,
            compiled: String::new(),
            reads: Vec::new(),
            file: f,
        }))
    }
}

/// A loaded project: its models, the DAG, and the templates to render them again at run
/// time (`is_incremental()` depends on the target table then).
pub struct Project {
    pub paths: ProjectPaths,
    pub models: Vec<Model>,
    /// Data tests (YAML generic tests and `tests/*.sql`).
    pub tests: Vec<datatests::DataTest>,
    /// Model and column descriptions from the YAML files.
    pub descriptions: datatests::Descriptions,
    pub graph: Graph,
    pub templates: Templates,
    pub resolver: Arc<Resolver>,
}

impl std::fmt::Debug for Project {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Project")
            .field("dir", &self.paths.dir)
            .field("models", &self.models.len())
            .finish()
    }
}

/// `source()` groups from declared Kafka sources: `source('kafka', '<source>')` and
/// `source('bronze', '<source>')` are `bronze.<source>`, and the dead letters
/// `bronze.<source>__dead_letters`.
pub fn kafka_sources(names: &[String]) -> BTreeMap<(String, String), String> {
    let mut out = BTreeMap::new();
    for n in names {
        for group in ["kafka", "bronze"] {
            out.insert((group.to_string(), n.clone()), format!("bronze.{n}"));
            let dl = format!("{n}__dead_letters");
            out.insert((group.to_string(), dl.clone()), format!("bronze.{dl}"));
        }
    }
    out
}

impl Project {
    /// Keeps the SQL a run executes in `target/run/<path>`, as dbt does, for reading errors.
    pub(crate) fn write_run_sql(&self, i: usize, sql: &str) {
        let path = self
            .paths
            .target
            .join("run")
            .join(&self.models[i].file.path);
        if let Some(dir) = path.parent()
            && std::fs::create_dir_all(dir).is_ok()
        {
            let _ = std::fs::write(&path, sql);
        }
    }

    /// Reads, renders and checks every model of the project in `paths`.
    pub fn load(
        paths: ProjectPaths,
        mut sources: BTreeMap<(String, String), String>,
        vars: BTreeMap<String, serde_json::Value>,
    ) -> Result<Project, ModelsError> {
        sources.extend(datatests::read_sources(&paths.models, &paths.dir)?);
        let files = project::model_files(&paths)?;
        let macros = project::macro_files(&paths)?;
        let singular = project::test_files(&paths)?;
        let snapshot_files = snapshots::snapshot_files(&paths)?;
        let all: Vec<ModelFile> = files
            .iter()
            .chain(&singular)
            .chain(snapshot_files.iter().map(|s| &s.file))
            .cloned()
            .collect();
        let target_schema = paths
            .dbt
            .as_ref()
            .map_or("public", |d| d.target_schema.as_str());
        let vars = match &paths.dbt {
            Some(d) => {
                let mut all = d.vars.clone();
                all.extend(vars);
                all
            }
            None => vars,
        };
        let macro_set = render::Macros {
            root: paths.dbt.as_ref().map(|d| d.name.clone()),
            files: macros,
            packages: packages::load(&paths.dir)?,
            dispatch: paths
                .dbt
                .as_ref()
                .map(|d| d.dispatch.clone())
                .unwrap_or_default(),
        };
        let templates = Templates::new(&all, &macro_set, vars, target_schema)?;
        let (model_configs, seed_configs) =
            datatests::yaml_configs(&[&paths.models, &paths.seeds], &paths.dir)?;
        let naming = SchemaNaming {
            dbt: paths.dbt.as_deref(),
            templates: &templates,
        };

        // 1. Configs and references, with references rendered as plain names.
        let mut models = Vec::with_capacity(files.len());
        let mut errors = Vec::new();
        let snapshot_entries = snapshot_files.into_iter().map(|s| (s.file, Some(s.config)));
        for (f, snapshot) in files.into_iter().map(|f| (f, None)).chain(snapshot_entries) {
            let opts = RenderOptions::new(None, (&f.schema, &f.name));
            let r = match templates.render(&f.path, &opts) {
                Ok(r) => r,
                Err(e) => {
                    errors.push(e.to_string());
                    continue;
                }
            };
            let mut raw = match (&paths.dbt, &snapshot) {
                (Some(d), None) => d.model_config(&f.folders),
                (Some(d), Some(_)) => d.snapshot_config(&f.folders),
                (None, None) => paths.defaults.get(&f.schema).cloned().unwrap_or_default(),
                (None, Some(_)) => BTreeMap::new(),
            };
            let is_snapshot = snapshot.is_some();
            let properties = match snapshot {
                Some(c) => c,
                None => model_configs.get(&f.name).cloned().unwrap_or_default(),
            };
            config_levels::merge_config(&mut raw, properties);
            config_levels::merge_config(&mut raw, r.config);
            if is_snapshot {
                raw.insert("materialized".into(), "snapshot".into());
                raw.insert(SNAPSHOT_MARK.into(), true.into());
            } else if raw.get("materialized").and_then(|m| m.as_str()) == Some("snapshot") {
                errors.push(format!(
                    "{}: snapshots are {{% snapshot %}} blocks in the snapshot path or `snapshots:` in YAML",
                    f.path
                ));
                continue;
            }
            match Model::configured(f, raw, r.references, &naming) {
                Ok(Some(m)) => models.push(m),
                Ok(None) => {}
                Err(e) => errors.push(e.to_string()),
            }
        }
        for f in seeds::seed_files(&paths)? {
            let mut raw = match &paths.dbt {
                Some(d) => d.seed_config(&f.folders),
                None => BTreeMap::new(),
            };
            config_levels::merge_config(
                &mut raw,
                seed_configs.get(&f.name).cloned().unwrap_or_default(),
            );
            raw.insert(
                "materialized".into(),
                serde_json::Value::String("seed".into()),
            );
            match Model::configured(f, raw, Vec::new(), &naming) {
                Ok(Some(m)) => models.push(m),
                Ok(None) => {}
                Err(e) => errors.push(e.to_string()),
            }
        }
        if !errors.is_empty() {
            return Err(ModelsError::Project(errors.join("\n")));
        }
        let mut by_relation: HashMap<String, usize> = HashMap::new();
        let mut resolver = Resolver {
            sources,
            package: paths.dbt.as_ref().map(|d| d.name.to_lowercase()),
            ..Resolver::default()
        };
        for (i, m) in models.iter().enumerate() {
            if let Some(j) = by_relation.insert(m.relation.clone(), i) {
                return Err(ModelsError::Project(format!(
                    "{} and {} both build {}",
                    models[j].file.path, m.file.path, m.relation
                )));
            }
            resolver
                .models
                .entry(m.name.clone())
                .or_default()
                .push((m.file.schema.clone(), m.relation.clone()));
            if m.config.materialized == Materialized::Ephemeral {
                resolver
                    .ephemeral
                    .insert(m.relation.clone(), ephemeral::cte_name(&m.name));
            }
        }
        let cte_of: HashMap<String, usize> = models
            .iter()
            .enumerate()
            .filter(|(_, m)| m.config.materialized == Materialized::Ephemeral)
            .map(|(i, m)| (ephemeral::cte_name(&m.name), i))
            .collect();
        let resolver = Arc::new(resolver);

        // 2. The SQL as it runs (non-incremental form), and the dependencies.
        let mut deps = vec![Vec::new(); models.len()];
        for (i, m) in models.iter_mut().enumerate() {
            if m.config.materialized == Materialized::Seed {
                continue;
            }
            let unknown: Vec<String> = m
                .references
                .iter()
                .filter_map(|r| resolver.resolve(r).err())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            if !unknown.is_empty() {
                errors.push(format!("{}: {}", m.file.path, unknown.join("; ")));
                continue;
            }
            let opts = RenderOptions::new(Some(resolver.clone()), (&m.schema, &m.name));
            let wanted_lake = match templates.render(&m.file.path, &opts) {
                Ok(r) => {
                    m.compiled = r.sql;
                    r.wanted_lake
                }
                Err(e) => {
                    errors.push(e.to_string());
                    continue;
                }
            };
            let read = match tables_read(&m.compiled) {
                // SQL that depends on the lake (`execute` was false) is checked when it
                // runs; its dependencies are its references.
                Err(_) if wanted_lake => Ok(m
                    .references
                    .iter()
                    .filter_map(|r| resolver.resolve(r).ok())
                    .collect()),
                other => other,
            };
            match read {
                Ok(tables) => {
                    let mut ds = BTreeSet::new();
                    for t in tables {
                        if ephemeral::is_cte(&t) {
                            if let Some(&j) = t.rsplit('.').next().and_then(|c| cte_of.get(c)) {
                                ds.insert(j);
                            }
                            continue;
                        }
                        match lookup(&t, &by_relation, &resolver) {
                            Some(j) if j != i => {
                                ds.insert(j);
                            }
                            Some(_) => {}
                            None => m.reads.push(t),
                        }
                    }
                    deps[i] = ds.into_iter().collect();
                }
                Err(e) => errors.push(format!("{}: {e}", m.file.path)),
            }
        }
        if !errors.is_empty() {
            return Err(ModelsError::Project(errors.join("\n")));
        }
        let names: Vec<String> = models.iter().map(|m| m.relation.clone()).collect();
        let graph = Graph::new(deps, &names)?;
        // Ephemeral parents become CTEs, parents first (their SQL holds their own).
        let all: BTreeSet<usize> = (0..models.len()).collect();
        for i in graph.order(&all) {
            let ctes = ephemeral_ctes(&models, &graph, i);
            models[i].compiled = ephemeral::with_ctes(&models[i].compiled, &ctes);
        }
        let (tests, descriptions) = load_tests(
            &paths,
            &models,
            &by_relation,
            &resolver,
            &templates,
            &singular,
        )?;
        let project = Project {
            paths,
            models,
            tests,
            descriptions,
            graph,
            templates,
            resolver,
        };
        project.templates.set_graph(&manifest::graph(&project));
        Ok(project)
    }

    /// Renders model `i` for a run: `is_incremental()` as given.
    pub fn render_for_run(
        &self,
        i: usize,
        incremental: bool,
        database: Option<Arc<dyn jinja_dbt::Database>>,
    ) -> Result<String, ModelsError> {
        let m = &self.models[i];
        let opts = RenderOptions {
            resolver: Some(self.resolver.clone()),
            incremental,
            this: (&m.schema, &m.name),
            execute: true,
            database,
        };
        let sql = self.templates.render(&m.file.path, &opts)?.sql;
        let ctes = ephemeral_ctes(&self.models, &self.graph, i);
        Ok(ephemeral::with_ctes(&sql, &ctes))
    }
}

impl Project {
    /// Renders `text`, a query written as a model is (`ref()`, `source()`, macros), as
    /// it would run: dbt's `show --inline`.
    pub fn render_inline(
        &self,
        text: &str,
        database: Option<Arc<dyn jinja_dbt::Database>>,
    ) -> Result<String, ModelsError> {
        let target = self
            .paths
            .dbt
            .as_ref()
            .map_or("public", |d| d.target_schema.as_str());
        let opts = RenderOptions {
            resolver: Some(self.resolver.clone()),
            incremental: false,
            this: (target, "inline_query"),
            execute: true,
            database,
        };
        let sql = self
            .templates
            .render_text("--inline", text, &opts, BTreeMap::new())?;
        // ref() of an ephemeral model names its CTE: the inline query gets them all.
        let ctes: Vec<(String, String)> = self
            .models
            .iter()
            .filter(|m| m.config.materialized == Materialized::Ephemeral)
            .filter(|m| sql.contains(&ephemeral::cte_name(&m.name)))
            .map(|m| (ephemeral::cte_name(&m.name), m.compiled.clone()))
            .collect();
        Ok(ephemeral::with_ctes(&sql, &ctes))
    }
}

/// (CTE name, compiled SQL) of model `i`'s ephemeral parents.
fn ephemeral_ctes(models: &[Model], graph: &Graph, i: usize) -> Vec<(String, String)> {
    graph.deps[i]
        .iter()
        .filter(|&&j| models[j].config.materialized == Materialized::Ephemeral)
        .map(|&j| {
            (
                ephemeral::cte_name(&models[j].name),
                models[j].compiled.clone(),
            )
        })
        .collect()
}

/// Compiles the YAML tests and renders the singular ones; every unknown model or
/// reference is reported at once.
fn load_tests(
    paths: &ProjectPaths,
    models: &[Model],
    by_relation: &HashMap<String, usize>,
    resolver: &Arc<Resolver>,
    templates: &Templates,
    singular: &[ModelFile],
) -> Result<(Vec<datatests::DataTest>, datatests::Descriptions), ModelsError> {
    let (mut generic, mut descriptions) = datatests::read_yaml(&paths.models, &paths.dir)?;
    if paths.seeds.is_dir() {
        let (g, d) = datatests::read_yaml(&paths.seeds, &paths.dir)?;
        generic.extend(g);
        descriptions.extend(d);
    }
    let mut errors = Vec::new();
    let mut tests = Vec::new();
    let model_of = |name: &str| lookup(&name.to_lowercase(), by_relation, resolver);
    let resolve = |text: &str| -> Result<(String, Option<usize>), String> {
        let (func, args) = datatests::parse_call(text)
            .ok_or_else(|| format!("cannot read {text:?} (ref('model') or source('a', 'b'))"))?;
        let r = match (func.as_str(), args.as_slice()) {
            ("ref", [n]) => Reference::Model {
                schema: None,
                name: n.to_lowercase(),
            },
            ("ref", [s, n]) => Reference::Model {
                schema: Some(s.to_lowercase()),
                name: n.to_lowercase(),
            },
            ("source", [s, t]) => Reference::Source {
                source: s.to_lowercase(),
                table: t.to_lowercase(),
            },
            _ => {
                return Err(format!(
                    "cannot read {text:?} (ref('model') or source('a', 'b'))"
                ));
            }
        };
        let relation = resolver.resolve(&r)?;
        let model = by_relation.get(&relation).copied();
        Ok((relation, model))
    };
    for g in generic {
        let Some(i) = model_of(&g.model) else {
            errors.push(format!(
                "{}: tests for {}, which is not a model of the project",
                g.path, g.model
            ));
            continue;
        };
        if let Some((package, name)) = macro_test(templates, &g.kind) {
            match macro_test_sql(
                templates,
                resolver,
                &g,
                package.as_deref(),
                &name,
                &models[i],
                &resolve,
            ) {
                Ok(sql) => {
                    let mut reads = vec![i];
                    if let Ok(tables) = tables_read(&sql) {
                        reads.extend(
                            tables
                                .iter()
                                .filter_map(|t| lookup(t, by_relation, resolver)),
                        );
                    }
                    let mut seen = BTreeSet::new();
                    reads.retain(|m| seen.insert(*m));
                    let test_name = match &g.column {
                        Some(c) => format!("{}_{}_{c}", g.kind.replace('.', "_"), g.model),
                        None => format!("{}_{}", g.kind.replace('.', "_"), g.model),
                    };
                    tests.push(datatests::DataTest {
                        name: test_name,
                        path: g.path.clone(),
                        sql: sql.trim().trim_end_matches(';').to_string(),
                        severity: g.severity,
                        models: reads,
                    });
                }
                Err(e) => errors.push(format!("{}: {e}", g.path)),
            }
            continue;
        }
        match datatests::compile(&g, &models[i].relation, &resolve) {
            Ok((name, sql, parent)) => tests.push(datatests::DataTest {
                name,
                path: g.path.clone(),
                sql,
                severity: g.severity,
                models: std::iter::once(i).chain(parent).collect(),
            }),
            Err(e) => errors.push(format!("{}: {e}", g.path)),
        }
    }
    for f in singular {
        // Tests render as they run (`execute` is true), with no lake to query.
        let opts = RenderOptions {
            execute: true,
            ..RenderOptions::new(Some(resolver.clone()), (&f.schema, &f.name))
        };
        let sql = match templates.render(&f.path, &opts) {
            Ok(r) => r.sql,
            Err(e) => {
                errors.push(e.to_string());
                continue;
            }
        };
        match tables_read(&sql) {
            Ok(tables) => {
                let mut reads: Vec<usize> = tables
                    .iter()
                    .filter_map(|t| lookup(t, by_relation, resolver))
                    .collect();
                reads.dedup();
                tests.push(datatests::DataTest {
                    name: f.name.clone(),
                    path: f.path.clone(),
                    sql: sql.trim().trim_end_matches(';').to_string(),
                    severity: datatests::Severity::Error,
                    models: reads,
                });
            }
            Err(e) => errors.push(format!("{}: {e}", f.path)),
        }
    }
    if !errors.is_empty() {
        return Err(ModelsError::Project(errors.join("\n")));
    }
    Ok((tests, descriptions))
}

/// The macro a YAML test `kind` names: `pkg.name` is `pkg`'s `test_name`; `name` is the
/// project's `test_name`, else a package's when exactly one has it and dbt's four
/// built-in tests do not apply. `None`: a built-in (or unknown) test.
fn macro_test(templates: &Templates, kind: &str) -> Option<(Option<String>, String)> {
    if let Some((package, name)) = kind.split_once('.') {
        return Some((Some(package.to_string()), format!("test_{name}")));
    }
    let name = format!("test_{kind}");
    if templates.has_macro(None, &name) {
        return Some((None, name));
    }
    if datatests::BUILT_IN.contains(&kind) {
        return None;
    }
    let mut owners = templates.packages_with(&name);
    match (owners.pop(), owners.is_empty()) {
        (Some(p), true) => Some((Some(p), name)),
        _ => None,
    }
}

/// The failing-rows query of a generic test defined by a macro: the macro called with
/// `model` (the tested relation), `column_name` for a column's test, and the test's
/// arguments (`ref(...)` / `source(...)` text among them becomes the relation).
fn macro_test_sql(
    templates: &Templates,
    resolver: &Arc<Resolver>,
    g: &datatests::GenericTest,
    package: Option<&str>,
    name: &str,
    model: &Model,
    resolve: &datatests::ResolveFn<'_>,
) -> Result<String, String> {
    if !templates.has_macro(package, name) {
        return Err(format!(
            "test {}: no macro {name} in {}",
            g.kind,
            package.unwrap_or("the project")
        ));
    }
    let relation = |text: &str| minijinja::Value::from_object(jinja_dbt::Relation::parse(text));
    let mut kwargs: Vec<(String, minijinja::Value)> =
        vec![("model".into(), relation(&model.relation))];
    if let Some(c) = &g.column {
        kwargs.push(("column_name".into(), minijinja::Value::from(c.clone())));
    }
    for (k, v) in &g.args {
        let Some(k) = k.as_str() else { continue };
        let value = match v.as_str() {
            Some(text)
                if datatests::parse_call(text)
                    .is_some_and(|(f, _)| f == "ref" || f == "source") =>
            {
                relation(&resolve(text)?.0)
            }
            _ => minijinja::Value::from_serialize(v),
        };
        kwargs.push((k.to_string(), value));
    }
    let args = vec![minijinja::Value::from(minijinja::value::Kwargs::from_iter(
        kwargs,
    ))];
    templates
        .call_package_macro(package, name, args, Some(resolver.clone()))
        .map(|v| v.to_string())
        .map_err(|e| e.to_string())
}

/// `schema.table` (or `table`) -> the model building it.
fn lookup(t: &str, by_relation: &HashMap<String, usize>, resolver: &Resolver) -> Option<usize> {
    if let Some(&i) = by_relation.get(t) {
        return Some(i);
    }
    if t.contains('.') {
        return None;
    }
    match resolver.models.get(t).map(Vec::as_slice) {
        Some([(_, relation)]) => by_relation.get(relation).copied(),
        _ => None,
    }
}

/// The names of a query's columns, unqualified.
pub(crate) fn column_names(df: &datafusion::dataframe::DataFrame) -> Vec<String> {
    df.schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect()
}

/// The tables a model's SQL reads (CTE names excluded), lowercased `schema.table`; the
/// SQL must be one query.
pub fn tables_read(sql: &str) -> Result<Vec<String>, String> {
    let dialect = PostgreSqlDialect {};
    let mut statements = DFParserBuilder::new(sql)
        .with_dialect(&dialect)
        .build()
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| format!("SQL does not parse: {e}"))?;
    if statements.len() != 1 {
        return Err(format!(
            "a model is one SELECT statement, this file has {}",
            statements.len()
        ));
    }
    let Some(stmt) = statements.pop_front() else {
        return Err("a model is one SELECT statement".into());
    };
    match &stmt {
        DFStatement::Statement(s)
            if matches!(**s, datafusion::sql::sqlparser::ast::Statement::Query(_)) => {}
        _ => return Err("a model is one SELECT statement (WITH ... SELECT also works)".into()),
    }
    let (tables, _ctes) = datafusion::sql::resolve::resolve_table_references(&stmt, true)
        .map_err(|e| e.to_string())?;
    let mut out: Vec<String> = tables
        .iter()
        .map(|t| match t.schema() {
            Some(s) => format!("{s}.{}", t.table()),
            None => t.table().to_string(),
        })
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: serde_json::Value) -> Result<ModelConfig, ModelsError> {
        let raw = serde_json::from_value(json).unwrap();
        ModelConfig::from_raw(raw, "sql/silver/m.sql")
    }

    #[test]
    fn keyed_models_get_a_layout_for_merges() {
        let c = config(serde_json::json!({
            "materialized": "incremental",
            "unique_key": "id",
            "tblproperties": {"delta.targetFileSize": "8mb", "delta.appendOnly": false},
            "cluster_by": ["id"],
        }))
        .unwrap();
        let l = c.layout();
        assert_eq!(l.properties["delta.targetFileSize"], "8388608");
        assert!(!l.properties.contains_key("delta.enableDeletionVectors"));
        assert_eq!(l.properties["delta.appendOnly"], "false");
        assert_eq!(l.row_group_rows, Some(KEYED_ROW_GROUP));
        assert_eq!(c.cluster_by, vec!["id"]);

        let plain = config(serde_json::json!({"materialized": "table"})).unwrap();
        assert_eq!(plain.layout(), tidepool_lake::Layout::default());

        let err = config(serde_json::json!({"tblproperties": {"delta.targetFileSize": "big"}}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("delta.targetFileSize"), "{err}");
        assert!(config(serde_json::json!({"tblproperties": "x"})).is_err());
    }
}
