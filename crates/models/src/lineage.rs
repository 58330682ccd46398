//! The model graph as text for pictures: Mermaid (renders in GitHub, GitLab, Notion) and
//! Graphviz DOT. Models are boxes labelled with their materialization; tables the models
//! read that are not models (bronze tables, other lake tables) are cylinders.

use std::collections::BTreeSet;
use std::fmt::Write;

use super::Project;

/// Edges among `selected` models and from the tables they read.
fn edges(
    project: &Project,
    selected: &BTreeSet<usize>,
) -> (BTreeSet<String>, Vec<(String, String)>) {
    let mut sources = BTreeSet::new();
    let mut out = Vec::new();
    for i in project.graph.order(selected) {
        let m = &project.models[i];
        for &d in &project.graph.deps[i] {
            if selected.contains(&d) {
                out.push((project.models[d].relation.clone(), m.relation.clone()));
            }
        }
        for r in &m.reads {
            sources.insert(r.clone());
            out.push((r.clone(), m.relation.clone()));
        }
    }
    (sources, out)
}

fn mermaid_id(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// `graph LR` in Mermaid.
pub fn mermaid(project: &Project, selected: &BTreeSet<usize>) -> String {
    let (sources, edges) = edges(project, selected);
    let mut s = String::from("graph LR\n");
    for src in &sources {
        let _ = writeln!(s, "  {}[(\"{src}\")]", mermaid_id(src));
    }
    for i in project.graph.order(selected) {
        let m = &project.models[i];
        let _ = writeln!(
            s,
            "  {}[\"{}<br/><i>{}</i>\"]",
            mermaid_id(&m.relation),
            m.relation,
            m.config.materialized.as_str()
        );
    }
    for (a, b) in edges {
        let _ = writeln!(s, "  {} --> {}", mermaid_id(&a), mermaid_id(&b));
    }
    s
}

/// A Graphviz `digraph`.
pub fn dot(project: &Project, selected: &BTreeSet<usize>) -> String {
    let (sources, edges) = edges(project, selected);
    let mut s =
        String::from("digraph tidepool {\n  rankdir=LR;\n  node [fontname=\"Helvetica\"];\n");
    for src in &sources {
        let _ = writeln!(s, "  \"{src}\" [shape=cylinder];");
    }
    for i in project.graph.order(selected) {
        let m = &project.models[i];
        let _ = writeln!(
            s,
            "  \"{}\" [shape=box, label=\"{}\\n{}\"];",
            m.relation,
            m.relation,
            m.config.materialized.as_str()
        );
    }
    for (a, b) in edges {
        let _ = writeln!(s, "  \"{a}\" -> \"{b}\";");
    }
    s.push_str("}\n");
    s
}
