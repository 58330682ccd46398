//! How config levels combine: `dbt_project.yml`'s folders, then a property file's
//! `config:`, then the model's `config()`. A later level's key replaces the earlier's,
//! except hooks (they add up, the earlier first), `tags` (the union) and `meta` (merged),
//! as in dbt; and hooks' values are read here ([`crate::hooks`] runs them).

use std::collections::BTreeMap;

use serde_json::Value;

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
