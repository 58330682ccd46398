//! The project as dbt describes it: its nodes (models, seeds, tests) and sources keyed
//! by dbt's unique ids (`model.<project>.<name>`), with config, dependencies, code and
//! docs. The same JSON is dbt's `graph` in templates and the `nodes` / `sources` of
//! `target/manifest.json`, which dbt-aware tools (lineage viewers, report generators)
//! read.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{Materialized, Project};
use crate::render::Reference;

/// The JSON schema `manifest.json` follows (dbt 1.8 and later write v12).
pub const SCHEMA_VERSION: &str = "https://schemas.getdbt.com/dbt/manifest/v12.json";

/// The project's name as dbt's package name: `dbt_project.yml`'s, else `tidepool`.
pub fn package(project: &Project) -> String {
    project
        .paths
        .dbt
        .as_ref()
        .map_or_else(|| "tidepool".to_string(), |d| d.name.clone())
}

/// dbt's unique id of model (or seed) `i`.
pub fn unique_id(project: &Project, i: usize) -> String {
    let m = &project.models[i];
    format!(
        "{}.{}.{}",
        resource_type(project, i),
        package(project),
        m.name
    )
}

/// `model`, `seed` or `snapshot`.
pub fn resource_type(project: &Project, i: usize) -> &'static str {
    match project.models[i].config.materialized {
        Materialized::Seed => "seed",
        Materialized::Snapshot => "snapshot",
        _ => "model",
    }
}

fn source_id(package: &str, source: &str, table: &str) -> String {
    format!("source.{package}.{source}.{table}")
}

/// Model (or seed) `i` as a node.
pub fn node(project: &Project, i: usize) -> Value {
    let pkg = package(project);
    let m = &project.models[i];
    let (description, columns) = project
        .descriptions
        .get(&m.name)
        .cloned()
        .unwrap_or_default();
    let columns: BTreeMap<String, Value> = columns
        .into_iter()
        .map(|(c, d)| (c.clone(), json!({"name": c, "description": d})))
        .collect();
    let mut depends: Vec<String> = project.graph.deps[i]
        .iter()
        .map(|&j| unique_id(project, j))
        .collect();
    let mut refs = Vec::new();
    let mut sources = Vec::new();
    for r in &m.references {
        match r {
            Reference::Model { schema, name } => {
                refs.push(json!({"name": name, "package": schema, "version": null}));
            }
            Reference::Source { source, table } => {
                sources.push(json!([source, table]));
                depends.push(source_id(&pkg, source, table));
            }
        }
    }
    depends.sort();
    depends.dedup();
    let mut config: serde_json::Map<String, Value> = m.config.raw.clone().into_iter().collect();
    config.insert("materialized".into(), m.config.materialized.as_str().into());
    config.insert("enabled".into(), true.into());
    config.insert("tags".into(), json!(m.config.tags));
    config.insert("schema".into(), m.schema.clone().into());
    let fqn: Vec<&str> = std::iter::once(pkg.as_str())
        .chain(m.file.folders.iter().map(String::as_str))
        .chain(std::iter::once(m.name.as_str()))
        .collect();
    // dbt's `path` is below the model (or seed) path.
    let base = if m.config.materialized == Materialized::Seed {
        &project.paths.seeds
    } else {
        &project.paths.models
    };
    let base = format!("{}/", project.paths.relative(base));
    let path = m.file.path.strip_prefix(&base).unwrap_or(&m.file.path);
    json!({
        "unique_id": unique_id(project, i),
        "resource_type": resource_type(project, i),
        "name": m.name,
        "alias": m.name,
        "identifier": m.name,
        "schema": m.schema,
        "database": "lake",
        "package_name": pkg,
        "path": path,
        "original_file_path": m.file.path,
        "fqn": fqn,
        "config": config,
        "tags": m.config.tags,
        "description": description.unwrap_or_default(),
        "columns": columns,
        "meta": m.config.raw.get("meta").cloned().unwrap_or_else(|| json!({})),
        "depends_on": {"nodes": depends, "macros": []},
        "refs": refs,
        "sources": sources,
        "raw_code": m.file.source,
        "compiled_code": m.compiled,
        "language": "sql",
        "relation_name": format!("\"{}\".\"{}\"", m.schema, m.name),
    })
}

/// dbt's `graph`: `nodes` (models, seeds and tests) and `sources` by unique id.
pub fn graph(project: &Project) -> Value {
    let pkg = package(project);
    let mut nodes = serde_json::Map::new();
    for i in 0..project.models.len() {
        nodes.insert(unique_id(project, i), node(project, i));
    }
    for t in &project.tests {
        let id = format!("test.{pkg}.{}", t.name);
        let depends: Vec<String> = t.models.iter().map(|&j| unique_id(project, j)).collect();
        nodes.insert(
            id.clone(),
            json!({
                "unique_id": id,
                "resource_type": "test",
                "name": t.name,
                "package_name": pkg,
                "original_file_path": t.path,
                "config": {"severity": format!("{:?}", t.severity).to_uppercase()},
                "depends_on": {"nodes": depends, "macros": []},
                "compiled_code": t.sql,
                "attached_node": t.models.first().map(|&j| unique_id(project, j)),
            }),
        );
    }
    let mut sources = serde_json::Map::new();
    for ((source, table), relation) in &project.resolver.sources {
        let id = source_id(&pkg, source, table);
        let (schema, identifier) = relation.split_once('.').unwrap_or(("", relation));
        sources.insert(
            id.clone(),
            json!({
                "unique_id": id,
                "resource_type": "source",
                "source_name": source,
                "name": table,
                "schema": schema,
                "identifier": identifier,
                "database": "lake",
                "package_name": pkg,
                "fqn": [pkg, source, table],
                "relation_name": format!("\"{schema}\".\"{identifier}\""),
            }),
        );
    }
    json!({
        "nodes": nodes,
        "sources": sources,
        "exposures": {},
        "metrics": {},
        "groups": {},
        "semantic_models": {},
        "saved_queries": {},
    })
}

/// `target/manifest.json`: the graph with dbt's metadata and the parent and child maps.
pub fn manifest(project: &Project) -> Value {
    let mut m = graph(project);
    let mut parents: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut children: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for section in ["nodes", "sources"] {
        let Some(nodes) = m[section].as_object() else {
            continue;
        };
        for (id, node) in nodes {
            children.entry(id.clone()).or_default();
            let deps: Vec<String> = node["depends_on"]["nodes"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            for d in &deps {
                children.entry(d.clone()).or_default().push(id.clone());
            }
            parents.insert(id.clone(), deps);
        }
    }
    m["metadata"] = json!({
        "dbt_schema_version": SCHEMA_VERSION,
        "dbt_version": "1.9.0",
        "generated_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "adapter_type": "postgres",
        "project_name": package(project),
        "generator": format!("tidepool {}", env!("CARGO_PKG_VERSION")),
    });
    m["parent_map"] = json!(parents);
    m["child_map"] = json!(children);
    m["macros"] = json!({});
    m["docs"] = json!({});
    m["disabled"] = json!({});
    m["selectors"] = json!({});
    m
}

/// Writes `target/manifest.json`.
pub fn write(project: &Project) -> Result<(), crate::ModelsError> {
    let dir = &project.paths.target;
    let io = |e: std::io::Error| crate::ModelsError::Io {
        path: "target/manifest.json".into(),
        source: e,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let text = serde_json::to_string_pretty(&manifest(project)).unwrap_or_default();
    std::fs::write(dir.join("manifest.json"), text).map_err(io)
}
