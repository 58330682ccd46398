//! dbt's node selection syntax: `name`, `schema.name`, `+name`, `name+`, `2+name`,
//! `name+1`, `tag:x`, `path:sql/gold`, `config.materialized:incremental` (any config key),
//! globs with `*`; a space separates a union of terms, a comma an intersection of parts;
//! `--exclude` takes the same syntax.

use std::collections::BTreeSet;

use super::{Materialized, Model, ModelsError, Project};

/// One part of a term: a method and value, with graph operators.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Part {
    /// `None`: no `+`; `Some(None)`: all ancestors; `Some(Some(n))`: n levels.
    up: Option<Option<usize>>,
    down: Option<Option<usize>>,
    method: String,
    value: String,
}

fn parse_part(text: &str) -> Result<Part, ModelsError> {
    let bad = || ModelsError::Select(format!("cannot read selector {text:?}"));
    let mut s = text;
    let mut up = None;
    if let Some(plus) = s
        .find('+')
        .filter(|&p| s[..p].chars().all(|c| c.is_ascii_digit()))
    {
        let digits = &s[..plus];
        up = Some(if digits.is_empty() {
            None
        } else {
            Some(digits.parse().map_err(|_| bad())?)
        });
        s = &s[plus + 1..];
    }
    let mut down = None;
    if let Some(plus) = s
        .rfind('+')
        .filter(|&p| s[p + 1..].chars().all(|c| c.is_ascii_digit()))
    {
        let digits = &s[plus + 1..];
        down = Some(if digits.is_empty() {
            None
        } else {
            Some(digits.parse().map_err(|_| bad())?)
        });
        s = &s[..plus];
    }
    if s.is_empty() {
        return Err(bad());
    }
    let (method, value) = match s.split_once(':') {
        Some((m, v)) if !v.is_empty() => (m.to_lowercase(), v.to_string()),
        Some(_) => return Err(bad()),
        None => ("name".to_string(), s.to_string()),
    };
    Ok(Part {
        up,
        down,
        method,
        value,
    })
}

/// `*` matches any run of characters; everything else literally (ASCII case-insensitive).
fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = text.to_lowercase().chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] != '*' && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            pi += 1;
            mark = ti;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

fn matches(part: &Part, m: &Model) -> Result<bool, ModelsError> {
    let v = part.value.as_str();
    Ok(match part.method.as_str() {
        "name" => glob(v, &m.name) || glob(v, &m.relation) || glob(v, &m.file.name),
        "fqn" => glob(v, &m.relation),
        "tag" => m.config.tags.iter().any(|t| glob(v, t)),
        "path" | "file" => {
            let want = v.trim_end_matches('/');
            m.file.path == want
                || m.file.path.starts_with(&format!("{want}/"))
                || glob(want, &m.file.path)
        }
        "schema" => glob(v, &m.schema),
        method => match method.strip_prefix("config.") {
            Some(key) => match m.config.get(key) {
                Some(serde_json::Value::String(s)) => glob(v, &s),
                Some(serde_json::Value::Array(items)) => items
                    .iter()
                    .any(|i| i.as_str().is_some_and(|s| glob(v, s)) || json_text(i) == v),
                Some(other) => json_text(&other) == v,
                None => false,
            },
            None => {
                return Err(ModelsError::Select(format!(
                    "unknown selector method {method:?} (name, tag, path, schema, fqn, config.<key>)"
                )));
            }
        },
    })
}

/// A non-string config value as written in JSON (`true`, `3`), for `config.<key>:` matches.
fn json_text(v: &serde_json::Value) -> String {
    v.to_string()
}

fn select_part(project: &Project, part: &Part) -> Result<BTreeSet<usize>, ModelsError> {
    let mut out = BTreeSet::new();
    for (i, m) in project.models.iter().enumerate() {
        if matches(part, m)? {
            out.insert(i);
        }
    }
    let mut grown = out.clone();
    for &i in &out {
        if let Some(depth) = part.up {
            grown.extend(project.graph.ancestors(i, depth));
        }
        if let Some(depth) = part.down {
            grown.extend(project.graph.descendants(i, depth));
        }
    }
    Ok(grown)
}

/// The models one term picks (comma-separated parts intersect).
fn eval_term(project: &Project, term: &str) -> Result<BTreeSet<usize>, ModelsError> {
    let mut acc: Option<BTreeSet<usize>> = None;
    for p in term.split(',').filter(|p| !p.is_empty()) {
        let got = select_part(project, &parse_part(p)?)?;
        acc = Some(match acc {
            None => got,
            Some(a) => a.intersection(&got).copied().collect(),
        });
    }
    Ok(acc.unwrap_or_default())
}

/// Checks every term of `args` and fails on the first that cannot be read or that picks
/// no model (a typo, a model that does not exist), naming it. The command line lets such
/// a term select nothing, as dbt does; the admin API refuses it.
pub fn check_terms(project: &Project, args: &[String]) -> Result<(), ModelsError> {
    for term in args.iter().flat_map(|a| a.split_whitespace()) {
        if eval_term(project, term)?.is_empty() {
            return Err(ModelsError::Select(format!(
                "selector {term:?} matches no model"
            )));
        }
    }
    Ok(())
}

/// The models `select` picks minus those `exclude` picks; an empty `select` means all.
pub fn select(
    project: &Project,
    select: &[String],
    exclude: &[String],
) -> Result<BTreeSet<usize>, ModelsError> {
    let terms = |args: &[String]| -> Vec<String> {
        args.iter()
            .flat_map(|a| a.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .collect()
    };
    let eval = |term: &str| eval_term(project, term);
    let picked = terms(select);
    let mut chosen: BTreeSet<usize> = if picked.is_empty() {
        (0..project.models.len()).collect()
    } else {
        let mut all = BTreeSet::new();
        for t in &picked {
            all.extend(eval(t)?);
        }
        all
    };
    for t in terms(exclude) {
        for i in eval(&t)? {
            chosen.remove(&i);
        }
    }
    Ok(chosen)
}

/// What a command builds of what was selected, as dbt's resource types go: `run` builds
/// models, `seed` loads seeds, `build` does both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resources {
    Models,
    Seeds,
    Snapshots,
    All,
}

/// `chosen` narrowed to `resources`.
pub fn of_kind(
    project: &Project,
    chosen: BTreeSet<usize>,
    resources: Resources,
) -> BTreeSet<usize> {
    let kind = |i: &usize| project.models[*i].config.materialized;
    let is = |m: crate::Materialized| move |i: &usize| kind(i) == m;
    match resources {
        Resources::All => chosen,
        Resources::Models => chosen
            .into_iter()
            .filter(|i| !matches!(kind(i), Materialized::Seed | Materialized::Snapshot))
            .collect(),
        Resources::Seeds => chosen.into_iter().filter(is(Materialized::Seed)).collect(),
        Resources::Snapshots => chosen
            .into_iter()
            .filter(is(Materialized::Snapshot))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_graph_operators() {
        let p = parse_part("2+orders+").unwrap();
        assert_eq!(p.up, Some(Some(2)));
        assert_eq!(p.down, Some(None));
        assert_eq!(p.value, "orders");
        let p = parse_part("tag:nightly+1").unwrap();
        assert_eq!((p.method.as_str(), p.value.as_str()), ("tag", "nightly"));
        assert_eq!(p.down, Some(Some(1)));
        assert_eq!(
            parse_part("+config.materialized:incremental").unwrap().up,
            Some(None)
        );
        assert!(parse_part("+").is_err());
    }

    #[test]
    fn globs() {
        assert!(glob("stg_*", "stg_orders"));
        assert!(glob("*orders", "stg_orders"));
        assert!(!glob("stg_*", "orders"));
        assert!(glob("a*b*c", "aXXbYYc"));
    }
}
