//! dbt packages: what `dbt deps` installs in `dbt_packages/<package>/` (each with its
//! `dbt_project.yml` naming it and its `macro-paths`), plus tidepool's own `dbt` namespace
//! (dbt's cross-database macros in PostgreSQL's dialect) and its own `dbt_utils`, used
//! when the project has not installed the real one.

use std::path::Path;

use serde::Deserialize;

use crate::ModelsError;
use crate::project::collect_sql;

/// A package's macros.
#[derive(Debug, Clone)]
pub struct Package {
    pub name: String,
    /// (path shown in errors, text) of each macro file.
    pub files: Vec<(String, String)>,
}

#[derive(Debug, Deserialize)]
struct PackageProject {
    name: String,
    #[serde(rename = "macro-paths")]
    macro_paths: Option<Vec<String>>,
}

/// tidepool's `dbt` namespace.
const DBT_MACROS: &str = include_str!("../dbt/dbt.sql");
/// tidepool's `dbt_utils`.
const DBT_UTILS: &str = include_str!("../dbt/dbt_utils.sql");

/// The packages of the project in `dir`: those installed in `dir/dbt_packages`, then
/// tidepool's `dbt` and (unless installed) `dbt_utils`.
pub fn load(dir: &Path) -> Result<Vec<Package>, ModelsError> {
    let mut packages = Vec::new();
    let installed = dir.join("dbt_packages");
    let mut folders: Vec<_> = match std::fs::read_dir(&installed) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect(),
        Err(_) => Vec::new(),
    };
    folders.sort();
    for folder in folders {
        let project = folder.join("dbt_project.yml");
        let Ok(text) = std::fs::read_to_string(&project) else {
            continue;
        };
        let shown = |p: &Path| {
            p.strip_prefix(dir)
                .unwrap_or(p)
                .to_string_lossy()
                .to_string()
        };
        let file: PackageProject =
            serde_yaml_ng::from_str(&text).map_err(|e| ModelsError::Yaml {
                path: shown(&project),
                source: e,
            })?;
        let mut found = Vec::new();
        for m in file.macro_paths.unwrap_or_else(|| vec!["macros".into()]) {
            collect_sql(&folder.join(m), &mut found)?;
        }
        found.sort();
        let files = found
            .into_iter()
            .map(|p| {
                std::fs::read_to_string(&p)
                    .map(|t| (shown(&p), t))
                    .map_err(|e| ModelsError::Io {
                        path: shown(&p),
                        source: e,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        packages.push(Package {
            name: file.name,
            files,
        });
    }
    packages.push(Package {
        name: "dbt".to_string(),
        files: vec![("<tidepool>/dbt.sql".into(), DBT_MACROS.into())],
    });
    if !packages.iter().any(|p| p.name == "dbt_utils") {
        packages.push(Package {
            name: "dbt_utils".into(),
            files: vec![("<tidepool>/dbt_utils.sql".into(), DBT_UTILS.into())],
        });
    }
    Ok(packages)
}
