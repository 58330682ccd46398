//! dbt's hooks. A model's `pre_hook` / `post_hook` (from `config()`, property files and
//! `+pre-hook` / `+post-hook` in `dbt_project.yml`; the levels add up, the project's
//! first, as in dbt) run right before and right after the model is built, rendered then
//! with the model's context (`this`, `model`, `is_incremental()`). `on-run-start` and
//! `on-run-end` of `dbt_project.yml` run before the first and after the last model of a
//! `run`, `seed` or `build`; `on-run-end` sees `results`, `schemas` and
//! `database_schemas`. A hook is SQL, one or more statements run in order; a failing
//! pre- or post-hook fails its model, a failing `on-run-start` skips the run's models.
//! Each statement commits on its own (tidepool has no transaction around a model's
//! build; dbt's `transaction: false` is what every hook gets).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use minijinja::Value as Jinja;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{Project, RenderOptions, manifest};
use crate::ModelsError;
use crate::config_levels::PRE;
use tidepool_engine::Engine;

/// Runs model `i`'s `hooks` (its pre- or post-hooks, `which` names them).
pub async fn model_hooks(
    project: &Project,
    engine: &Arc<Engine>,
    i: usize,
    which: &str,
    incremental: bool,
    cancel: &CancellationToken,
) -> Result<(), ModelsError> {
    let m = &project.models[i];
    let hooks = if which == PRE {
        &m.config.pre_hook
    } else {
        &m.config.post_hook
    };
    for (n, text) in hooks.iter().enumerate() {
        let opts = RenderOptions {
            resolver: Some(project.resolver.clone()),
            incremental,
            this: (&m.schema, &m.name),
            execute: true,
            database: Some(super::lake_db::LakeDatabase::shared(engine.clone())),
        };
        let extra = BTreeMap::from([(
            "model".to_string(),
            Jinja::from_serialize(manifest::node(project, i)),
        )]);
        let name = format!("{} {which}[{n}]", m.file.path);
        let sql = project.templates.render_text(&name, text, &opts, extra)?;
        crate::execute::execute_all(engine, &sql, cancel)
            .await
            .map_err(|e| ModelsError::Hook {
                hook: name,
                source: Box::new(e),
            })?;
    }
    Ok(())
}

/// What became of one `on-run-start` / `on-run-end` hook.
#[derive(Debug, Clone)]
pub struct HookResult {
    /// `on-run-start[0]`...
    pub name: String,
    pub error: Option<Arc<ModelsError>>,
    pub duration: Duration,
}

/// `on-run-start` (no `results`) or `on-run-end` of the project, each hook reported to
/// `report`; false when one failed (the rest are not run).
pub async fn on_run(
    project: &Project,
    engine: &Arc<Engine>,
    results: Option<Value>,
    selected: &BTreeSet<usize>,
    cancel: &CancellationToken,
    mut report: impl FnMut(HookResult),
) -> bool {
    let Some(dbt) = &project.paths.dbt else {
        return true;
    };
    let (which, hooks) = match results {
        None => ("on-run-start", &dbt.on_run_start),
        Some(_) => ("on-run-end", &dbt.on_run_end),
    };
    let schemas: BTreeSet<&str> = selected
        .iter()
        .map(|&i| project.models[i].schema.as_str())
        .collect();
    for (n, text) in hooks.iter().enumerate() {
        let started = Instant::now();
        let name = format!("{which}[{n}]");
        let mut extra = BTreeMap::from([
            ("schemas".to_string(), Jinja::from_serialize(&schemas)),
            (
                "database_schemas".to_string(),
                Jinja::from_serialize(schemas.iter().map(|s| ("lake", *s)).collect::<Vec<_>>()),
            ),
        ]);
        if let Some(results) = &results {
            extra.insert("results".to_string(), Jinja::from_serialize(results));
        }
        let opts = RenderOptions {
            resolver: Some(project.resolver.clone()),
            incremental: false,
            this: (&dbt.target_schema, ""),
            execute: true,
            database: Some(super::lake_db::LakeDatabase::shared(engine.clone())),
        };
        let outcome = match project.templates.render_text(
            &format!("dbt_project.yml {name}"),
            text,
            &opts,
            extra,
        ) {
            Ok(sql) => crate::execute::execute_all(engine, &sql, cancel).await,
            Err(e) => Err(e),
        };
        let error = outcome.err().map(|e| {
            Arc::new(ModelsError::Hook {
                hook: name.clone(),
                source: Box::new(e),
            })
        });
        let failed = error.is_some();
        report(HookResult {
            name,
            error,
            duration: started.elapsed(),
        });
        if failed {
            return false;
        }
    }
    true
}
