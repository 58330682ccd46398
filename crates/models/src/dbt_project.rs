//! Projects in dbt's layout: a folder with `dbt_project.yml` is read as dbt reads it. Its
//! `model-paths`, `seed-paths`, `macro-paths`, `test-paths` and `target-path` say where
//! files are (models at any depth below a model path); `vars` are the defaults of
//! `var()`; the `models:` and `seeds:` trees configure by folder
//! (`models: {shop: {staging: {+materialized: view, +schema: stg}}}`), under the
//! `config()` of the model itself. No `profiles.yml`: the dbt target schema is a lake
//! schema (`[project] target_schema`, default `public`), and schemas are named as dbt's
//! default `generate_schema_name` names them: the target schema, or
//! `<target>_<custom>` for a model configured with `schema='<custom>'`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::ModelsError;

/// The file's name.
pub const FILE: &str = "dbt_project.yml";

/// Config keys whose values are maps: under a folder they are settings, not subfolders.
const MAP_KEYS: &[&str] = &[
    "column_types",
    "tblproperties",
    "meta",
    "docs",
    "persist_docs",
    "contract",
    "grants",
    "quoting",
];

#[derive(Debug, Deserialize)]
struct ProjectFile {
    name: String,
    #[serde(rename = "model-paths", alias = "source-paths")]
    model_paths: Option<Vec<String>>,
    #[serde(rename = "seed-paths", alias = "data-paths")]
    seed_paths: Option<Vec<String>>,
    #[serde(rename = "macro-paths")]
    macro_paths: Option<Vec<String>>,
    #[serde(rename = "snapshot-paths")]
    snapshot_paths: Option<Vec<String>>,
    #[serde(rename = "test-paths")]
    test_paths: Option<Vec<String>>,
    #[serde(rename = "target-path")]
    target_path: Option<String>,
    #[serde(default)]
    vars: BTreeMap<String, Value>,
    #[serde(default)]
    models: Value,
    #[serde(default)]
    seeds: Value,
    #[serde(default)]
    snapshots: Value,
    #[serde(default)]
    dispatch: Vec<Dispatch>,
    #[serde(rename = "on-run-start", default)]
    on_run_start: Value,
    #[serde(rename = "on-run-end", default)]
    on_run_end: Value,
}

/// One `dispatch:` entry: where `adapter.dispatch(..., macro_namespace)` looks, in order.
#[derive(Debug, Deserialize)]
struct Dispatch {
    macro_namespace: String,
    search_order: Vec<String>,
}

/// A project's `dbt_project.yml`, as it bears on loading the project.
#[derive(Debug, Clone)]
pub struct DbtProject {
    pub name: String,
    /// The lake schema dbt's target schema maps to.
    pub target_schema: String,
    pub vars: BTreeMap<String, Value>,
    /// `dispatch:`: macro namespace -> packages searched, in order.
    pub dispatch: BTreeMap<String, Vec<String>>,
    /// `on-run-start` / `on-run-end` hooks ([`crate::hooks`]).
    pub on_run_start: Vec<String>,
    pub on_run_end: Vec<String>,
    models: Value,
    seeds: Value,
    snapshots: Value,
}

/// Where a dbt project's files are.
#[derive(Debug)]
pub struct Folders {
    pub models: PathBuf,
    pub seeds: PathBuf,
    pub snapshots: PathBuf,
    pub macros: PathBuf,
    pub tests: PathBuf,
    pub target: PathBuf,
}

impl DbtProject {
    /// Reads `dir/dbt_project.yml`; `None` when there is none.
    pub fn read(
        dir: &Path,
        target_schema: &str,
    ) -> Result<Option<(DbtProject, Folders)>, ModelsError> {
        let path = dir.join(FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(ModelsError::Io {
                    path: FILE.to_string(),
                    source: e,
                });
            }
        };
        let file: ProjectFile = serde_yaml_ng::from_str(&text).map_err(|e| ModelsError::Yaml {
            path: FILE.to_string(),
            source: e,
        })?;
        let first = |paths: &Option<Vec<String>>, default: &str| -> Result<PathBuf, ModelsError> {
            match paths.as_deref() {
                None | Some([]) => Ok(dir.join(default)),
                Some([one]) => Ok(dir.join(one)),
                Some(_) => Err(ModelsError::Config(format!(
                    "{FILE}: several {default} paths are not supported yet; list one"
                ))),
            }
        };
        let folders = Folders {
            models: first(&file.model_paths, "models")?,
            seeds: first(&file.seed_paths, "seeds")?,
            snapshots: first(&file.snapshot_paths, "snapshots")?,
            macros: first(&file.macro_paths, "macros")?,
            tests: first(&file.test_paths, "tests")?,
            target: dir.join(file.target_path.as_deref().unwrap_or("target")),
        };
        // `vars: {<project>: {...}}` scopes vars to the project: they are its own here.
        let mut vars = BTreeMap::new();
        for (k, v) in file.vars {
            match v {
                Value::Object(scoped) if k == file.name => vars.extend(scoped),
                v => {
                    vars.insert(k, v);
                }
            }
        }
        let hooks = |v: &Value, what: &str| {
            crate::config_levels::parse(Some(v), &format!("{FILE}: {what}"))
                .map_err(ModelsError::Config)
        };
        let on_run_start = hooks(&file.on_run_start, "on-run-start")?;
        let on_run_end = hooks(&file.on_run_end, "on-run-end")?;
        Ok(Some((
            DbtProject {
                on_run_start,
                on_run_end,
                name: file.name,
                target_schema: target_schema.to_string(),
                vars,
                dispatch: file
                    .dispatch
                    .into_iter()
                    .map(|d| (d.macro_namespace, d.search_order))
                    .collect(),
                models: file.models,
                seeds: file.seeds,
                snapshots: file.snapshots,
            },
            folders,
        )))
    }

    /// The `models:` config of a model in `folders` (below the model path), root first.
    pub fn model_config(&self, folders: &[String]) -> BTreeMap<String, Value> {
        tree_config(&self.models, &self.name, folders)
    }

    /// The `seeds:` config of a seed in `folders` (below the seed path).
    pub fn seed_config(&self, folders: &[String]) -> BTreeMap<String, Value> {
        tree_config(&self.seeds, &self.name, folders)
    }

    /// The `snapshots:` config of a snapshot in `folders` (below the snapshot path).
    pub fn snapshot_config(&self, folders: &[String]) -> BTreeMap<String, Value> {
        tree_config(&self.snapshots, &self.name, folders)
    }

    /// dbt's default `generate_schema_name`.
    pub fn schema_name(&self, custom: Option<&str>) -> String {
        match custom.map(str::trim).filter(|c| !c.is_empty()) {
            None => self.target_schema.clone(),
            Some(c) => format!("{}_{}", self.target_schema, c.to_lowercase()),
        }
    }
}

/// The settings of one level of a config tree: `+key` always, `key` unless it is a
/// subfolder (a map that is not a map-valued setting).
fn settings_of(node: &Value, out: &mut BTreeMap<String, Value>) {
    let Value::Object(map) = node else { return };
    let mut level = BTreeMap::new();
    for (k, v) in map {
        if let Some(key) = k.strip_prefix('+') {
            level.insert(key.to_string(), v.clone());
        } else if !v.is_object() || MAP_KEYS.contains(&k.as_str()) {
            level.insert(k.clone(), v.clone());
        }
    }
    crate::config_levels::merge_config(out, level);
}

/// The config a tree gives a file in `folders`: the project's level, then each folder's.
fn tree_config(tree: &Value, project: &str, folders: &[String]) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    settings_of(tree, &mut out);
    let Some(mut node) = tree.get(project) else {
        return out;
    };
    settings_of(node, &mut out);
    for f in folders {
        match node.get(f.as_str()) {
            Some(next) => {
                node = next;
                settings_of(node, &mut out);
            }
            None => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_configure_their_models_and_custom_schemas_get_the_target_prefix() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE),
            "name: shop\nmodel-paths: [transform]\nvars: {since: '2026-01-01', shop: {region: eu}}\n\
             models:\n  shop:\n    +materialized: view\n    marts:\n      +materialized: table\n      +schema: marts\n      \
             finance:\n        tags: [money]\n        tblproperties: {delta.appendOnly: 'true'}\n",
        )
        .unwrap();
        let (p, folders) = DbtProject::read(dir.path(), "analytics").unwrap().unwrap();
        assert_eq!(folders.models, dir.path().join("transform"));
        assert_eq!(folders.seeds, dir.path().join("seeds"));
        assert_eq!(p.vars["since"], "2026-01-01");
        assert_eq!(p.vars["region"], "eu");
        let staging = p.model_config(&["staging".into()]);
        assert_eq!(staging["materialized"], "view");
        assert!(!staging.contains_key("schema"));
        let finance = p.model_config(&["marts".into(), "finance".into()]);
        assert_eq!(finance["materialized"], "table");
        assert_eq!(finance["schema"], "marts");
        assert_eq!(finance["tags"], serde_json::json!(["money"]));
        assert!(finance.contains_key("tblproperties"));
        assert!(!p.model_config(&["marts".into()]).contains_key("finance"));
        assert_eq!(p.schema_name(None), "analytics");
        assert_eq!(p.schema_name(Some("Marts")), "analytics_marts");
        assert!(
            DbtProject::read(&dir.path().join("none"), "x")
                .unwrap()
                .is_none()
        );
    }
}
