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
use crate::run::{ModelResult, Status};
use tidepool_engine::Engine;

/// The config key of a model's pre-hooks (`pre-hook` in `dbt_project.yml`).
pub const PRE: &str = "pre_hook";
/// The config key of a model's post-hooks.
pub const POST: &str = "post_hook";

/// A config key as stored: dbt spells the hooks `pre-hook` in YAML and `pre_hook` in
/// `config()`.
fn key(k: &str) -> String {
    match k {
        "pre-hook" => PRE.to_string(),
        "post-hook" => POST.to_string(),
        other => other.to_string(),
    }
}

/// Adds one config level to `into`: a key replaces the one before, except hooks (the
/// later level's run after), `tags` (the union) and `meta` (merged), which add up.
pub fn merge_config(into: &mut BTreeMap<String, Value>, level: BTreeMap<String, Value>) {
    for (k, v) in level {
        let k = key(&k);
        match (k.as_str(), into.get_mut(&k)) {
            (PRE | POST | "tags", Some(before)) => {
                let mut all = as_list(before.take());
                for item in as_list(v) {
                    if k != "tags" || !all.contains(&item) {
                        all.push(item);
                    }
                }
                *before = Value::Array(all);
            }
            ("meta", Some(Value::Object(before))) => {
                if let Value::Object(more) = v {
                    before.extend(more);
                } else {
                    into.insert(k, v);
                }
            }
            _ => {
                into.insert(k, v);
            }
        }
    }
}

fn as_list(v: Value) -> Vec<Value> {
    match v {
        Value::Null => Vec::new(),
        Value::Array(a) => a,
        one => vec![one],
    }
}

/// The SQL of each hook in a config value: a string, a `{sql: ..., transaction: ...}`
/// map, or a list of those.
pub fn parse(v: Option<&Value>, what: &str) -> Result<Vec<String>, String> {
    let Some(v) = v else {
        return Ok(Vec::new());
    };
    as_list(v.clone())
        .into_iter()
        .map(|h| match h {
            Value::String(s) => Ok(s),
            Value::Object(o) => match o.get("sql") {
                Some(Value::String(s)) => Ok(s.clone()),
                _ => Err(format!("{what}: a hook map needs `sql: <text>`")),
            },
            _ => Err(format!(
                "{what} must be SQL text, {{sql: ...}} or a list of them"
            )),
        })
        .filter(|h| h.as_ref().map_or(true, |s| !s.trim().is_empty()))
        .collect()
}

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
        super::run::execute_all(engine, &sql, cancel)
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
    results: Option<&[ModelResult]>,
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
        if let Some(results) = results {
            extra.insert(
                "results".to_string(),
                Jinja::from_serialize(results_json(project, results)),
            );
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
            Ok(sql) => super::run::execute_all(engine, &sql, cancel).await,
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

/// dbt's `results` of `on-run-end`: per model its node, status, message and timing.
fn results_json(project: &Project, results: &[ModelResult]) -> Value {
    let all: Vec<Value> = results
        .iter()
        .map(|r| {
            let (status, message) = match &r.status {
                Status::Success => ("success", String::new()),
                Status::Error(e) => ("error", e.to_string()),
                Status::Skipped(why) => ("skipped", why.clone()),
            };
            serde_json::json!({
                "node": manifest::node(project, r.index),
                "unique_id": manifest::unique_id(project, r.index),
                "status": status,
                "message": message,
                "execution_time": r.duration.as_secs_f64(),
                "adapter_response": {"rows_affected": r.rows},
                "failures": null,
            })
        })
        .collect();
    Value::Array(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hooks_and_tags_add_up_across_levels_other_keys_replace() {
        let mut c = BTreeMap::new();
        let level = |v: Value| -> BTreeMap<String, Value> { serde_json::from_value(v).unwrap() };
        merge_config(
            &mut c,
            level(
                json!({"pre-hook": "a", "tags": ["x"], "materialized": "view", "meta": {"o": 1}}),
            ),
        );
        merge_config(
            &mut c,
            level(
                json!({"pre_hook": ["b", "c"], "tags": ["x", "y"], "materialized": "table", "meta": {"p": 2}}),
            ),
        );
        assert_eq!(c["pre_hook"], json!(["a", "b", "c"]));
        assert_eq!(c["tags"], json!(["x", "y"]));
        assert_eq!(c["materialized"], "table");
        assert_eq!(c["meta"], json!({"o": 1, "p": 2}));
        assert_eq!(
            parse(Some(&c["pre_hook"]), "pre_hook").unwrap(),
            vec!["a", "b", "c"]
        );
        assert_eq!(
            parse(Some(&json!({"sql": "vacuum t", "transaction": false})), "x").unwrap(),
            vec!["vacuum t"]
        );
        assert!(parse(Some(&json!(3)), "post_hook").is_err());
    }
}
