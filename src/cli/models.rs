//! `tidepool run | ls | compile`: the dbt-style commands over the project's models.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::config::{Overrides, Settings};
use crate::engine::{Engine, EngineOptions};
use crate::lake::Lake;
use crate::models::datatests::Severity;
use crate::models::records::{self, RunRecord};
use crate::models::run::{Event, RunOptions, Status, TestResult, run_test};
use crate::models::{Project, ProjectPaths, kafka_sources, select};

/// Which models a command works on.
#[derive(Debug, Clone, clap::Args)]
pub struct Selection {
    /// dbt selectors: `name`, `+name`, `name+`, `2+name`, `tag:x`, `path:sql/gold`,
    /// `config.materialized:table`; space = union, comma = intersection
    #[arg(short = 's', long = "select", num_args = 1.., value_name = "SELECTOR")]
    pub select: Vec<String>,
    /// Selectors of models to leave out
    #[arg(long, num_args = 1.., value_name = "SELECTOR")]
    pub exclude: Vec<String>,
    /// Values for `var()`, as a JSON object: `--vars '{"since": "2026-01-01"}'`
    #[arg(long)]
    pub vars: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub selection: Selection,
    /// Models built at once (independent models run in parallel)
    #[arg(long, default_value_t = 4)]
    pub threads: usize,
    /// Stop starting models after the first failure
    #[arg(long, short = 'x')]
    pub fail_fast: bool,
    /// Rebuild incremental and streaming models from scratch
    #[arg(long)]
    pub full_refresh: bool,
}

#[derive(Debug, clap::Args)]
pub struct LsArgs {
    #[command(flatten)]
    pub selection: Selection,
    /// One line per model with materialization, tags and file
    #[arg(long, short = 'l')]
    pub long: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum GraphFormat {
    Mermaid,
    Dot,
}

#[derive(Debug, clap::Args)]
pub struct LineageArgs {
    #[command(flatten)]
    pub selection: Selection,
    /// Mermaid (renders in GitHub/GitLab markdown) or Graphviz DOT
    #[arg(long, value_enum, default_value = "mermaid")]
    pub format: GraphFormat,
}

pub async fn lineage(overrides: &Overrides, args: LineageArgs) -> anyhow::Result<ExitCode> {
    let settings = super::settings(overrides)?;
    let project = load(&settings, &args.selection)?;
    let chosen = select::select(&project, &args.selection.select, &args.selection.exclude)?;
    let text = match args.format {
        GraphFormat::Mermaid => crate::models::lineage::mermaid(&project, &chosen),
        GraphFormat::Dot => crate::models::lineage::dot(&project, &chosen),
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub struct DocsArgs {
    #[command(flatten)]
    pub selection: Selection,
}

pub async fn docs(overrides: &Overrides, args: DocsArgs) -> anyhow::Result<ExitCode> {
    let settings = super::settings(overrides)?;
    let project = load(&settings, &args.selection)?;
    let lake = Lake::open(&settings.lake)?;
    let engine = Engine::new(lake, EngineOptions::from(&settings))?;
    records::register(&engine);
    let facts = crate::models::docs::facts(&engine, &project).await;
    let dir = project.paths.target.join("docs");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("index.html");
    std::fs::write(&path, crate::models::docs::html(&project, &facts))?;
    println!("wrote {}", path.display());
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub struct CompileArgs {
    #[command(flatten)]
    pub selection: Selection,
}

/// The project folder: where the config file is, else the current folder.
fn project_paths(settings: &Settings) -> ProjectPaths {
    let mut paths = ProjectPaths::in_dir(&settings.project_dir);
    paths.defaults = settings.model_defaults.clone();
    paths
}

fn load(settings: &Settings, sel: &Selection) -> anyhow::Result<Project> {
    let vars: BTreeMap<String, serde_json::Value> = match &sel.vars {
        None => BTreeMap::new(),
        Some(text) => serde_json::from_str(text)
            .map_err(|e| anyhow::anyhow!("--vars must be a JSON object ({e})"))?,
    };
    let names: Vec<String> = settings.sources.iter().map(|s| s.name.clone()).collect();
    Ok(Project::load(
        project_paths(settings),
        kafka_sources(&names),
        vars,
    )?)
}

pub async fn ls(overrides: &Overrides, args: LsArgs) -> anyhow::Result<ExitCode> {
    let settings = super::settings(overrides)?;
    let project = load(&settings, &args.selection)?;
    let chosen = select::select(&project, &args.selection.select, &args.selection.exclude)?;
    for i in project.graph.order(&chosen) {
        let m = &project.models[i];
        if args.long {
            println!(
                "{:<40} {:<12} {:<24} {}",
                m.relation,
                m.config.materialized.as_str(),
                m.config.tags.join(","),
                m.file.path
            );
        } else {
            println!("{}", m.relation);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn compile(overrides: &Overrides, args: CompileArgs) -> anyhow::Result<ExitCode> {
    let settings = super::settings(overrides)?;
    let project = load(&settings, &args.selection)?;
    let chosen = select::select(&project, &args.selection.select, &args.selection.exclude)?;
    let out = project.paths.target.join("compiled");
    for &i in &chosen {
        let m = &project.models[i];
        let path = out.join(&m.file.path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, &m.compiled)?;
    }
    println!("compiled {} models into {}", chosen.len(), out.display());
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    #[command(flatten)]
    pub selection: Selection,
}

/// Keeps the record of a command: the lake's run tables and `target/run_results.json`.
async fn record(project: &Project, lake: &Arc<Lake>, rec: &RunRecord) {
    if let Err(e) = records::save(lake, rec).await {
        eprintln!("warning: the run is not recorded in system.runs: {e}");
    }
    let path = project.paths.target.join("run_results.json");
    let text = serde_json::to_string_pretty(&records::run_results_json(rec)).unwrap_or_default();
    if let Err(e) =
        std::fs::create_dir_all(&project.paths.target).and_then(|_| std::fs::write(&path, text))
    {
        eprintln!("warning: cannot write {}: {e}", path.display());
    }
}

fn selector_text(sel: &Selection) -> String {
    let mut s = sel.select.join(" ");
    if !sel.exclude.is_empty() {
        s.push_str(&format!(" --exclude {}", sel.exclude.join(" ")));
    }
    s.trim().to_string()
}

/// One test result as `test` and `build` show it.
fn test_text(project: &Project, r: &TestResult) -> String {
    let t = &project.tests[r.test];
    let warn = t.severity == Severity::Warn;
    match (&r.error, r.failures) {
        (Some(e), _) => format!("       ERROR {} ({}): {e}", t.name, t.path),
        (None, 0) => format!("       PASS  {}", t.name),
        (None, n) => {
            let mut out = format!(
                "       {} {} ({}): {n} failing rows",
                if warn { "WARN " } else { "FAIL " },
                t.name,
                t.path
            );
            for line in r.sample.lines() {
                out.push_str("\n           ");
                out.push_str(line);
            }
            out
        }
    }
}

pub async fn test(overrides: &Overrides, args: TestArgs) -> anyhow::Result<ExitCode> {
    let settings = super::settings(overrides)?;
    let project = load(&settings, &args.selection)?;
    let chosen = select::select(&project, &args.selection.select, &args.selection.exclude)?;
    let lake = Lake::open(&settings.lake)?;
    let engine = Engine::new(lake.clone(), EngineOptions::from(&settings))?;
    let started_at = chrono::Utc::now();
    let mut nodes = Vec::new();
    let picked: Vec<usize> = (0..project.tests.len())
        .filter(|&t| project.tests[t].models.iter().any(|m| chosen.contains(m)))
        .collect();
    println!("running {} tests", picked.len());
    let (mut passed, mut warned, mut failed) = (0, 0, 0);
    for t in picked {
        let r = run_test(&engine, &project, t).await;
        println!("{}", test_text(&project, &r));
        nodes.push(records::test_node(&project, &r));
        if r.passed() {
            passed += 1;
        } else if r.error.is_none() && project.tests[t].severity == Severity::Warn {
            warned += 1;
        } else {
            failed += 1;
        }
    }
    println!("\nfinished tests: {passed} passed, {warned} warnings, {failed} failed");
    let rec = RunRecord {
        run_id: records::run_id(started_at),
        command: "test".into(),
        selector: selector_text(&args.selection),
        started_at,
        finished_at: chrono::Utc::now(),
        nodes,
    };
    record(&project, &lake, &rec).await;
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub async fn run(
    overrides: &Overrides,
    args: RunArgs,
    with_tests: bool,
) -> anyhow::Result<ExitCode> {
    let settings = super::settings(overrides)?;
    let project = Arc::new(load(&settings, &args.selection)?);
    let chosen = select::select(&project, &args.selection.select, &args.selection.exclude)?;
    if chosen.is_empty() {
        println!("nothing selected");
        return Ok(ExitCode::SUCCESS);
    }
    let lake = Lake::open(&settings.lake)?;
    let engine = Engine::new(lake.clone(), EngineOptions::from(&settings))?;
    let view_engine = engine.clone();
    let started_at = chrono::Utc::now();
    let mut tested: Vec<TestResult> = Vec::new();
    let cancel = CancellationToken::new();
    let ctrl_c = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            ctrl_c.cancel();
        }
    });
    let total = chosen.len();
    let started = Instant::now();
    let mut done = 0usize;
    let options = RunOptions {
        threads: args.threads,
        fail_fast: args.fail_fast,
        full_refresh: args.full_refresh,
        tests: with_tests,
    };
    println!("running {total} models with {} threads", options.threads);
    // On a terminal a live bar (models done, what is building, rows/s); plain lines
    // otherwise (CI logs, pipes).
    let bar = std::io::stdout().is_terminal().then(|| {
        let pb = indicatif::ProgressBar::new(total as u64);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} {wide_msg}",
        ) {
            pb.set_style(style.progress_chars("=> "));
        }
        pb.enable_steady_tick(std::time::Duration::from_millis(200));
        pb
    });
    let say = |line: String| match &bar {
        Some(b) => b.println(line),
        None => println!("{line}"),
    };
    let mut building: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    let mut rows_written = 0u64;
    let p = project.clone();
    let results =
        crate::models::run::run(project.clone(), engine, &chosen, &options, cancel, |e| {
            match e {
                Event::Started { index } => {
                    let m = &p.models[*index];
                    building.insert(m.relation.clone());
                    if bar.is_none() {
                        say(format!(
                            "  START {} {} ({})",
                            m.config.materialized.as_str(),
                            m.relation,
                            m.file.path
                        ));
                    }
                }
                Event::Tested(r) => {
                    say(test_text(&p, r));
                    tested.push(r.clone());
                }
                Event::Finished(r) => {
                    done += 1;
                    let m = &p.models[r.index];
                    building.remove(&m.relation);
                    rows_written += r.rows.unwrap_or(0);
                    let rows = r.rows.map(|n| format!(", {n} rows")).unwrap_or_default();
                    say(match &r.status {
                        Status::Success => format!(
                            "{done:>4} of {total} OK    {} {}{rows} in {:.2}s",
                            m.config.materialized.as_str(),
                            m.relation,
                            r.duration.as_secs_f64()
                        ),
                        Status::Error(_) => format!(
                            "{done:>4} of {total} ERROR {} in {:.2}s",
                            m.relation,
                            r.duration.as_secs_f64()
                        ),
                        Status::Skipped(why) => {
                            format!("{done:>4} of {total} SKIP  {} ({why})", m.relation)
                        }
                    });
                }
            }
            if let Some(b) = &bar {
                b.set_position(done as u64);
                let rate = rows_written as f64 / started.elapsed().as_secs_f64().max(1e-3);
                let now: Vec<&str> = building.iter().map(String::as_str).collect();
                b.set_message(format!("{} | {rate:.0} rows/s", now.join(", ")));
            }
        })
        .await;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let nodes = records::nodes(&lake, &project, &results, &tested).await;
    let rec = RunRecord {
        run_id: records::run_id(started_at),
        command: if with_tests { "build" } else { "run" }.into(),
        selector: selector_text(&args.selection),
        started_at,
        finished_at: chrono::Utc::now(),
        nodes,
    };
    record(&project, &lake, &rec).await;
    let ok = results
        .iter()
        .filter(|r| r.status == Status::Success)
        .count();
    let errors: Vec<&String> = results
        .iter()
        .filter_map(|r| match &r.status {
            Status::Error(e) => Some(e),
            _ => None,
        })
        .collect();
    let skipped = results
        .iter()
        .filter(|r| matches!(r.status, Status::Skipped(_)))
        .count();
    println!(
        "\nfinished {total} models in {:.2}s: {ok} ok, {} errors, {skipped} skipped",
        started.elapsed().as_secs_f64(),
        errors.len()
    );
    for e in &errors {
        println!("\nERROR {e}");
    }
    // views/: after the models they read.
    let files = crate::models::views::view_files(&project.paths.dir);
    let mut view_errors = 0;
    if !files.is_empty() {
        let deployed = crate::models::views::deploy(&view_engine, &files).await;
        let ok: usize = deployed.iter().filter(|d| d.error.is_none()).count();
        view_errors = deployed.len() - ok;
        println!("views: {ok} files deployed, {view_errors} failed");
        for d in deployed.iter().filter_map(|d| d.error.as_ref()) {
            println!("ERROR {d}");
        }
    }
    Ok(if errors.is_empty() && skipped == 0 && view_errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
