//! `tidepool docs`: one self-contained HTML page (no scripts, no network) with the DAG as
//! an inline SVG picture and, per model, its description, columns (from the built table
//! or view, with the YAML descriptions), tests, last run and SQL.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

use super::Project;
use tidepool_engine::Engine;

/// What the page shows of one model besides the project's own data.
#[derive(Debug, Clone, Default)]
pub struct ModelFacts {
    /// (column, type) of the built table or view; empty when not built.
    pub columns: Vec<(String, String)>,
    /// Status, time, rows and error of the newest run of the model.
    pub last_run: Option<String>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Reads what the lake knows of each model: columns and the last run.
pub async fn facts(engine: &Arc<Engine>, project: &Project) -> Vec<ModelFacts> {
    let session = engine.session("tidepool");
    let mut out = Vec::with_capacity(project.models.len());
    for m in &project.models {
        let mut f = ModelFacts::default();
        if let Ok(df) = session
            .dataframe(&format!("SELECT * FROM {} LIMIT 0", m.relation))
            .await
        {
            f.columns = df
                .schema()
                .fields()
                .iter()
                .map(|c| (c.name().clone(), c.data_type().to_string()))
                .collect();
        }
        let sql = format!(
            "SELECT status, CAST(finished_at AS VARCHAR), rows_written, error FROM system.run_models \
             WHERE kind = 'model' AND name = '{}' ORDER BY finished_at DESC LIMIT 1",
            m.relation.replace('\'', "''")
        );
        if let Ok(df) = session.dataframe(&sql).await
            && let Ok(batches) = df.collect().await
            && let Some(b) = batches.iter().find(|b| b.num_rows() > 0)
        {
            let cell = |i: usize| {
                arrow::util::display::array_value_to_string(b.column(i), 0).unwrap_or_default()
            };
            let mut text = format!("{} at {}", cell(0), cell(1));
            if !cell(2).is_empty() {
                text.push_str(&format!(", {} rows", cell(2)));
            }
            if !cell(3).is_empty() {
                text.push_str(&format!(": {}", cell(3)));
            }
            f.last_run = Some(text);
        }
        out.push(f);
    }
    out
}

/// The DAG as SVG: tables read at the left, each model one column right of its deepest
/// input.
fn svg(project: &Project) -> String {
    let mut depth: BTreeMap<String, usize> = BTreeMap::new();
    let all: std::collections::BTreeSet<usize> = (0..project.models.len()).collect();
    let order = project.graph.order(&all);
    for &i in &order {
        for r in &project.models[i].reads {
            depth.entry(r.clone()).or_insert(0);
        }
    }
    let mut model_depth = vec![0usize; project.models.len()];
    for &i in &order {
        let m = &project.models[i];
        let from_reads = if m.reads.is_empty() { 0 } else { 1 };
        let from_models = project.graph.deps[i]
            .iter()
            .map(|&d| model_depth[d] + 1)
            .max()
            .unwrap_or(0);
        model_depth[i] = from_reads.max(from_models).max(1);
        depth.insert(m.relation.clone(), model_depth[i]);
    }
    let mut rows: BTreeMap<usize, usize> = BTreeMap::new();
    let mut pos: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (name, d) in &depth {
        let r = rows.entry(*d).or_insert(0);
        pos.insert(name.clone(), (*d, *r));
        *r += 1;
    }
    let (w, h, gx, gy) = (190usize, 36usize, 250usize, 56usize);
    let width = (depth.values().max().copied().unwrap_or(0) + 1) * gx + 20;
    let height = rows.values().max().copied().unwrap_or(1) * gy + 20;
    let at = |n: &str| pos.get(n).map(|(c, r)| (10 + c * gx, 10 + r * gy));
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">"
    );
    for (i, m) in project.models.iter().enumerate() {
        let Some((x2, y2)) = at(&m.relation) else {
            continue;
        };
        let inputs = project.graph.deps[i]
            .iter()
            .map(|&d| project.models[d].relation.clone())
            .chain(m.reads.iter().cloned());
        for src in inputs {
            if let Some((x1, y1)) = at(&src) {
                let _ = write!(
                    s,
                    "<path d=\"M{} {} C{} {} {} {} {} {}\" fill=\"none\" stroke=\"#889\"/>",
                    x1 + w,
                    y1 + h / 2,
                    x1 + w + 30,
                    y1 + h / 2,
                    x2 - 30,
                    y2 + h / 2,
                    x2,
                    y2 + h / 2
                );
            }
        }
    }
    for name in depth.keys() {
        let Some((x, y)) = at(name) else { continue };
        let model = project.models.iter().find(|m| &m.relation == name);
        let (fill, label) = match model {
            Some(m) => (
                "#e8f0fe",
                format!("{} ({})", m.relation, m.config.materialized.as_str()),
            ),
            None => ("#f1f3f4", name.clone()),
        };
        let _ = write!(
            s,
            "<a href=\"#{}\"><rect x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" rx=\"{}\" fill=\"{fill}\" stroke=\"#557\"/>\
             <text x=\"{}\" y=\"{}\">{}</text></a>",
            esc(name),
            if model.is_some() { 4 } else { 14 },
            x + 8,
            y + h / 2 + 4,
            esc(&label)
        );
    }
    s.push_str("</svg>");
    s
}

/// The page.
pub fn html(project: &Project, facts: &[ModelFacts]) -> String {
    let mut s = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>tidepool docs</title><style>\
         body{font-family:sans-serif;margin:2em;max-width:1200px}pre{background:#f6f8fa;padding:1em;overflow:auto}\
         table{border-collapse:collapse}td,th{border:1px solid #ccd;padding:4px 8px;text-align:left}\
         .dag{overflow:auto;border:1px solid #ddd;padding:8px}h2{border-top:1px solid #ddd;padding-top:1em}\
         </style></head><body><h1>tidepool project</h1>",
    );
    let _ = write!(
        s,
        "<p>{} models, {} tests.</p><div class=\"dag\">{}</div>",
        project.models.len(),
        project.tests.len(),
        svg(project)
    );
    let all: std::collections::BTreeSet<usize> = (0..project.models.len()).collect();
    for i in project.graph.order(&all) {
        let m = &project.models[i];
        let f = facts.get(i).cloned().unwrap_or_default();
        let (desc, col_docs) = project
            .descriptions
            .get(&m.name)
            .cloned()
            .unwrap_or_default();
        let _ = write!(
            s,
            "<h2 id=\"{}\">{}</h2><p><b>{}</b> · <code>{}</code>{}</p>",
            esc(&m.relation),
            esc(&m.relation),
            m.config.materialized.as_str(),
            esc(&m.file.path),
            if m.config.tags.is_empty() {
                String::new()
            } else {
                format!(" · tags: {}", esc(&m.config.tags.join(", ")))
            }
        );
        if let Some(d) = desc {
            let _ = write!(s, "<p>{}</p>", esc(&d));
        }
        let _ = write!(
            s,
            "<p>Last run: {}</p>",
            esc(f.last_run.as_deref().unwrap_or("never"))
        );
        let inputs: Vec<String> = project.graph.deps[i]
            .iter()
            .map(|&d| project.models[d].relation.clone())
            .chain(m.reads.iter().cloned())
            .collect();
        if !inputs.is_empty() {
            let links: Vec<String> = inputs
                .iter()
                .map(|n| format!("<a href=\"#{0}\">{0}</a>", esc(n)))
                .collect();
            let _ = write!(s, "<p>Reads: {}</p>", links.join(", "));
        }
        if !f.columns.is_empty() {
            s.push_str("<table><tr><th>column</th><th>type</th><th>description</th></tr>");
            for (c, t) in &f.columns {
                let _ = write!(
                    s,
                    "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(c),
                    esc(t),
                    esc(col_docs.get(c).map(String::as_str).unwrap_or(""))
                );
            }
            s.push_str("</table>");
        }
        let tests: Vec<String> = project
            .tests
            .iter()
            .filter(|t| t.models.first() == Some(&i))
            .map(|t| {
                format!(
                    "<li>{} <small>({})</small></li>",
                    esc(&t.name),
                    esc(&t.path)
                )
            })
            .collect();
        if !tests.is_empty() {
            let _ = write!(s, "<p>Tests:</p><ul>{}</ul>", tests.join(""));
        }
        let _ = write!(s, "<pre>{}</pre>", esc(m.compiled.trim()));
    }
    s.push_str("</body></html>\n");
    s
}
