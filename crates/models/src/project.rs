//! Finding a project's files: models are `<models>/<schema>/<name>.sql` (table
//! `<schema>.<name>`), macros are `<macros>/**/*.sql`. Files are read once; nothing here
//! renders or parses SQL.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::ModelsError;
use crate::dbt_project::DbtProject;
use tidepool_lake::valid_name;

/// Where a project's files live.
#[derive(Debug, Clone)]
pub struct ProjectPaths {
    /// The project folder; the other paths are inside it.
    pub dir: PathBuf,
    pub models: PathBuf,
    pub macros: PathBuf,
    pub tests: PathBuf,
    /// CSV files loaded by `seed` ([`crate::seeds`]).
    pub seeds: PathBuf,
    /// `{% snapshot %}` files ([`crate::snapshots`]).
    pub snapshots: PathBuf,
    pub target: PathBuf,
    /// Config defaults by model folder (`[models.<schema>]` in tidepool.toml).
    pub defaults: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
    /// Set when the folder holds `dbt_project.yml`: dbt's layout.
    pub dbt: Option<Arc<DbtProject>>,
}

impl ProjectPaths {
    /// The default layout of a project in `dir`.
    pub fn in_dir(dir: &Path) -> ProjectPaths {
        ProjectPaths {
            dir: dir.to_path_buf(),
            models: dir.join("sql"),
            macros: dir.join("macros"),
            tests: dir.join("tests"),
            seeds: dir.join("seeds"),
            snapshots: dir.join("snapshots"),
            target: dir.join("target"),
            defaults: BTreeMap::new(),
            dbt: None,
        }
    }

    /// The layout of the project in `dir`: dbt's when it holds `dbt_project.yml` (its
    /// target schema is `target_schema`), else tidepool's.
    pub fn open(dir: &Path, target_schema: &str) -> Result<ProjectPaths, ModelsError> {
        let Some((dbt, folders)) = DbtProject::read(dir, target_schema)? else {
            return Ok(ProjectPaths::in_dir(dir));
        };
        Ok(ProjectPaths {
            dir: dir.to_path_buf(),
            models: folders.models,
            macros: folders.macros,
            tests: folders.tests,
            seeds: folders.seeds,
            snapshots: folders.snapshots,
            target: folders.target,
            defaults: BTreeMap::new(),
            dbt: Some(Arc::new(dbt)),
        })
    }

    /// `path` relative to the project folder, with `/` separators, for messages and
    /// `path:` selectors.
    pub fn relative(&self, path: &Path) -> String {
        let rel = path.strip_prefix(&self.dir).unwrap_or(path);
        rel.components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/")
    }
}

/// A model file as found on disk.
#[derive(Debug, Clone)]
pub struct ModelFile {
    /// The schema its folder names.
    pub schema: String,
    pub name: String,
    /// Relative to the project folder, e.g. `sql/gold/daily_sales.sql`.
    pub path: String,
    pub source: String,
    /// Folders between the model (or seed) path and the file, for dbt's config trees.
    pub folders: Vec<String>,
}

/// Reads every model file: `<models>/<schema>/<name>.sql`. Files directly in `<models>` or
/// deeper than one folder, and names that are not identifiers, are errors that name the
/// file.
pub fn model_files(paths: &ProjectPaths) -> Result<Vec<ModelFile>, ModelsError> {
    if let Some(dbt) = &paths.dbt {
        return dbt_model_files(paths, &dbt.target_schema);
    }
    let mut out = Vec::new();
    let Ok(schemas) = std::fs::read_dir(&paths.models) else {
        return Ok(out);
    };
    let mut schema_dirs: Vec<PathBuf> = schemas
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    schema_dirs.sort();
    for dir in schema_dirs {
        let schema = dir
            .file_name()
            .map(|s| s.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| ModelsError::Io {
                path: dir.display().to_string(),
                source: e,
            })?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "sql"))
            .collect();
        files.sort();
        for file in files {
            let name = file
                .file_stem()
                .map(|s| s.to_string_lossy().to_lowercase())
                .unwrap_or_default();
            let path = paths.relative(&file);
            if !valid_name(&schema) || !valid_name(&name) {
                return Err(ModelsError::Project(format!(
                    "{path}: model files are sql/<schema>/<name>.sql with schema and name made of letters, digits and _"
                )));
            }
            let source = std::fs::read_to_string(&file).map_err(|e| ModelsError::Io {
                path: path.to_string(),
                source: e,
            })?;
            out.push(ModelFile {
                folders: vec![schema.clone()],
                schema: schema.clone(),
                name,
                path,
                source,
            });
        }
    }
    Ok(out)
}

/// Models of a dbt project: `<model path>/**/<name>.sql` at any depth, in the target
/// schema until their config says otherwise.
fn dbt_model_files(paths: &ProjectPaths, schema: &str) -> Result<Vec<ModelFile>, ModelsError> {
    let mut out = Vec::new();
    let mut pending = vec![(paths.models.clone(), Vec::<String>::new())];
    while let Some((dir, folders)) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut entries: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                let mut sub = folders.clone();
                sub.push(
                    p.file_name()
                        .map(|s| s.to_string_lossy().to_string())
                        .unwrap_or_default(),
                );
                pending.push((p, sub));
                continue;
            }
            if p.extension().is_none_or(|x| x != "sql") {
                continue;
            }
            let (name, path) = table_file(paths, &p, "model")?;
            let source = std::fs::read_to_string(&p).map_err(|e| ModelsError::Io {
                path: path.clone(),
                source: e,
            })?;
            out.push(ModelFile {
                schema: schema.to_string(),
                name,
                path,
                source,
                folders: folders.clone(),
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// The table a file names (its lowercased stem, which must be a name) and its path in
/// the project; `what` the file is, for the error.
pub(crate) fn table_file(
    paths: &ProjectPaths,
    file: &Path,
    what: &str,
) -> Result<(String, String), ModelsError> {
    let name = file
        .file_stem()
        .map(|s| s.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let path = paths.relative(file);
    if !valid_name(&name) {
        return Err(ModelsError::Project(format!(
            "{path}: a {what}'s file name is its table's name (letters, digits, _)"
        )));
    }
    Ok((name, path))
}

/// Singular tests: `<tests>/*.sql` (not subfolders), each a query returning failing rows.
/// Rendered like models (added to the templates as `ModelFile`s of schema `tests`).
pub fn test_files(paths: &ProjectPaths) -> Result<Vec<ModelFile>, ModelsError> {
    let mut found: Vec<PathBuf> = match std::fs::read_dir(&paths.tests) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "sql"))
            .collect(),
        Err(_) => Vec::new(),
    };
    found.sort();
    found
        .into_iter()
        .map(|p| {
            let source = std::fs::read_to_string(&p).map_err(|e| ModelsError::Io {
                path: p.display().to_string(),
                source: e,
            })?;
            Ok(ModelFile {
                folders: Vec::new(),
                schema: "tests".to_string(),
                name: p
                    .file_stem()
                    .map(|s| s.to_string_lossy().to_string())
                    .unwrap_or_default(),
                path: paths.relative(&p),
                source,
            })
        })
        .collect()
}

/// Every macro file's text, in path order: `(relative path, text)`.
pub fn macro_files(paths: &ProjectPaths) -> Result<Vec<(String, String)>, ModelsError> {
    let mut found = Vec::new();
    collect_sql(&paths.macros, &mut found)?;
    // dbt's generic tests (`{% test %}` blocks) may live under the test path.
    collect_sql(&paths.tests.join("generic"), &mut found)?;
    found.sort();
    found
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).map_err(|e| ModelsError::Io {
                path: p.display().to_string(),
                source: e,
            })?;
            Ok((paths.relative(&p), text))
        })
        .collect()
}

pub(crate) fn collect_sql(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ModelsError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for e in entries.filter_map(Result::ok) {
        let p = e.path();
        if p.is_dir() {
            collect_sql(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "sql") {
            out.push(p);
        }
    }
    Ok(())
}

/// Names of the macros a macro file defines (`{% macro name(` ...).
pub fn macro_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("{%") {
        rest = &rest[at + 2..];
        let body = rest.trim_start_matches(['-', '+']).trim_start();
        if let Some(after) = body.strip_prefix("macro") {
            let after = after.trim_start();
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && after[name.len()..].trim_start().starts_with('(') {
                names.push(name);
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_macro_names() {
        let text = "{% macro cents(x) %}{{ x }} * 100{% endmacro %}\n{%- macro  day_of (ts) -%}x{% endmacro %}{% if a %}{% endif %}";
        assert_eq!(macro_names(text), vec!["cents", "day_of"]);
    }
}
