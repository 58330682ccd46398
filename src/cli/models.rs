//! `tidepool run | ls | compile`: the dbt-style commands over the project's models.

use std::process::ExitCode;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::progress::{ModelLine, RunDisplay, TestLine};
use crate::config::{Overrides, Settings};
use crate::lake::Lake;
use crate::models::datatests::Severity;
use crate::models::records::Label;
use crate::models::records::{self, RunRecord};
use crate::models::run::{Event, RunOptions, Status, TestResult, run_test};
use crate::models::{Project, ProjectPaths, kafka_sources, select};

/// Which models a command works on.
#[derive(Debug, Clone, Default, clap::Args)]
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
    #[command(flatten)]
    pub remote: super::remote::Remote,
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
    let (_, engine) = super::open(&settings)?;
    records::register(&engine);
    crate::models::freshness::register(&engine);
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

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The model to show (one)
    #[command(flatten)]
    pub selection: Selection,
    /// A query to run instead, written as a model is: `ref()`, `source()`, macros
    #[arg(long, value_name = "SQL")]
    pub inline: Option<String>,
    /// Rows shown
    #[arg(long, default_value_t = 5)]
    pub limit: usize,
    /// Output format
    #[arg(long, value_enum, default_value = "table")]
    pub format: super::sql::Format,
}

#[derive(Debug, clap::Args)]
pub struct RetryArgs {
    /// Models built at once
    #[arg(long, default_value_t = 4)]
    pub threads: usize,
    /// Stop starting models after the first failure
    #[arg(long, short = 'x')]
    pub fail_fast: bool,
    /// Values for `var()` (the last run's are not kept: give them again)
    #[arg(long)]
    pub vars: Option<String>,
}

/// `retry`: the models, seeds and snapshots that failed or were skipped in the last
/// `run`, `build`, `seed` or `snapshot` (read from `target/run_results.json`), run again
/// with that command (dbt's `retry`).
pub async fn retry(overrides: &Overrides, args: RetryArgs) -> anyhow::Result<ExitCode> {
    let settings = super::settings(overrides)?;
    let path = project_paths(&settings)?.target.join("run_results.json");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        anyhow::anyhow!("retry: no previous run to retry ({}: {e})", path.display())
    })?;
    let doc: serde_json::Value = serde_json::from_str(&text)?;
    let which = doc["args"]["which"].as_str().unwrap_or_default();
    let verb = match which {
        "run" => Verb::Run,
        "build" => Verb::Build,
        "seed" => Verb::Seed,
        "snapshot" => Verb::Snapshot,
        other => anyhow::bail!(
            "retry: the last command was {other:?}; retry repeats run, build, seed or snapshot"
        ),
    };
    let again: Vec<String> = doc["results"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| {
            matches!(
                r["status"].as_str(),
                Some("error" | "fail" | "skipped" | "runtime error")
            )
        })
        .filter_map(|r| r["unique_id"].as_str()?.strip_prefix("model.tidepool."))
        .map(str::to_string)
        .collect();
    if again.is_empty() {
        println!("retry: nothing failed or was skipped in the last {which}");
        return Ok(ExitCode::SUCCESS);
    }
    let run_args = RunArgs {
        selection: Selection {
            select: again,
            exclude: Vec::new(),
            vars: args.vars,
        },
        threads: args.threads,
        fail_fast: args.fail_fast,
        full_refresh: false,
        remote: super::remote::Remote::default(),
    };
    run(overrides, run_args, verb).await
}

#[derive(Debug, clap::Subcommand)]
pub enum SourceCommand {
    /// The age of each source's newest row against its freshness thresholds; writes
    /// target/sources.json
    Freshness(FreshnessArgs),
}

#[derive(Debug, clap::Args)]
pub struct FreshnessArgs {
    /// Sources to check: `source:<name>` or `source:<name>.<table>` (default: all)
    #[arg(short = 's', long = "select", num_args = 1.., value_name = "SELECTOR")]
    pub select: Vec<String>,
}

/// `source freshness`: exit status 1 when a source is over its `error_after` or cannot
/// be read, as dbt.
pub async fn freshness(overrides: &Overrides, args: FreshnessArgs) -> anyhow::Result<ExitCode> {
    use crate::models::freshness;
    let settings = super::settings(overrides)?;
    let names: Vec<String> = settings.sources.iter().map(|s| s.name.clone()).collect();
    let project = load(&settings, &Selection::default())?;
    let wanted = |c: &freshness::Check| {
        args.select.is_empty()
            || args.select.iter().any(|s| {
                let s = s.strip_prefix("source:").unwrap_or(s).to_lowercase();
                s == c.source || s == format!("{}.{}", c.source, c.table)
            })
    };
    let checks: Vec<freshness::Check> = freshness::checks(&project, &names)?
        .into_iter()
        .filter(wanted)
        .collect();
    let (lake, engine) = super::open(&settings)?;
    let started = std::time::Instant::now();
    let total = checks.len();
    println!("checking the freshness of {total} source tables");
    let mut results = Vec::new();
    let mut failed = false;
    for (n, c) in checks.into_iter().enumerate() {
        let o = freshness::check(&engine, &c).await;
        let label = match o.status {
            "pass" => "PASS ",
            "warn" => "WARN ",
            "error" => "ERROR STALE",
            _ => "ERROR",
        };
        let detail = match (&o.error, o.age_seconds) {
            (Some(e), _) => e.clone(),
            (None, Some(age)) => format!("newest {} {age:.0} s ago", c.loaded_at_field),
            (None, None) => format!("no rows ({})", c.loaded_at_field),
        };
        println!(
            "{:>4} of {total} {label} freshness of {}.{} ({}): {detail}",
            n + 1,
            c.source,
            c.table,
            c.relation
        );
        failed |= matches!(o.status, "error" | "runtime error");
        results.push((c, o));
    }
    freshness::write(&project, &results, started.elapsed().as_secs_f64())?;
    if let Err(e) = freshness::save(&lake, &results).await {
        eprintln!("note: system.source_freshness not updated: {e}");
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `show`: runs a model's SQL (or an inline query) as it would run and prints its first
/// rows, without building anything (dbt's `show`).
pub async fn show(overrides: &Overrides, args: ShowArgs) -> anyhow::Result<ExitCode> {
    let settings = super::settings(overrides)?;
    let project = load(&settings, &args.selection)?;
    let (_, engine) = super::open(&settings)?;
    let database = Some(crate::models::lake_db::LakeDatabase::shared(engine.clone()));
    let sql = match (&args.inline, args.selection.select.is_empty()) {
        (Some(text), true) => project.render_inline(text, database)?,
        (None, false) => {
            let chosen = select::select(&project, &args.selection.select, &args.selection.exclude)?;
            let chosen = select::of_kind(&project, chosen, select::Resources::Models);
            let mut it = chosen.iter();
            match (it.next(), it.next()) {
                (Some(&i), None) => project.render_for_run(i, false, database)?,
                (None, _) => anyhow::bail!("show: the selector names no model"),
                (Some(_), Some(_)) => anyhow::bail!(
                    "show: the selector names {} models; show one at a time",
                    chosen.len()
                ),
            }
        }
        _ => anyhow::bail!("show takes --select <model> or --inline \"<query>\""),
    };
    let body = sql.trim().trim_end_matches(';');
    let session = engine.session("tidepool");
    let query = format!("SELECT * FROM (\n{body}\n) AS shown LIMIT {}", args.limit);
    let batches = match session.dataframe(&query).await {
        Ok(df) => df.collect().await.map_err(crate::engine::EngineError::from),
        Err(e) => Err(e),
    };
    match batches {
        Ok(b) => {
            super::sql::print(&b, args.format)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("ERROR: {}", e.message());
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The project folder: where the config file is, else the current folder.
fn project_paths(settings: &Settings) -> anyhow::Result<ProjectPaths> {
    let mut paths = ProjectPaths::open(&settings.project_dir, &settings.target_schema)?;
    paths.defaults = settings.model_defaults.clone();
    Ok(paths)
}

fn load(settings: &Settings, sel: &Selection) -> anyhow::Result<Project> {
    let vars = crate::models::parse_vars(sel.vars.as_deref().unwrap_or_default())
        .map_err(|e| anyhow::anyhow!("--vars: {e}"))?;
    let names: Vec<String> = settings.sources.iter().map(|s| s.name.clone()).collect();
    let project = Project::load(project_paths(settings)?, kafka_sources(&names), vars)?;
    // As dbt does on every command: what dbt-aware tools read.
    if let Err(e) = crate::models::manifest::write(&project) {
        eprintln!("note: {e}");
    }
    Ok(project)
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
    // Seeds have no SQL to compile.
    let chosen = select::of_kind(&project, chosen, select::Resources::Models);
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

/// A test result as the display takes it.
fn test_line<'a>(project: &'a Project, r: &'a TestResult) -> super::progress::TestLine<'a> {
    let t = &project.tests[r.test];
    super::progress::TestLine {
        name: &t.name,
        path: &t.path,
        status: r.status(project),
        failures: r.failures,
        sample: &r.sample,
        error: r.error.as_ref().map(|e| e.to_string()).unwrap_or_default(),
    }
}

pub async fn test(overrides: &Overrides, args: TestArgs) -> anyhow::Result<ExitCode> {
    let settings = super::settings(overrides)?;
    let project = load(&settings, &args.selection)?;
    let chosen = select::select(&project, &args.selection.select, &args.selection.exclude)?;
    let (lake, engine) = super::open(&settings)?;
    let started_at = chrono::Utc::now();
    let mut nodes = Vec::new();
    let picked: Vec<usize> = (0..project.tests.len())
        .filter(|&t| project.tests[t].models.iter().any(|m| chosen.contains(m)))
        .collect();
    println!("running {} tests", picked.len());
    let (mut passed, mut warned, mut failed) = (0, 0, 0);
    for t in picked {
        let r = run_test(&engine, &project, t).await;
        println!("{}", super::progress::test_text(&test_line(&project, &r)));
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

/// Which of `run`, `seed` and `build`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Run,
    Seed,
    Snapshot,
    Build,
}

pub async fn run(overrides: &Overrides, args: RunArgs, verb: Verb) -> anyhow::Result<ExitCode> {
    let with_tests = verb == Verb::Build;
    if verb == Verb::Seed && args.remote.url().is_some() {
        anyhow::bail!("seed runs where the project's CSV files are: without --server");
    }
    if verb == Verb::Snapshot && args.remote.url().is_some() {
        anyhow::bail!("snapshot runs here, not with --server (the server runs run and build)");
    }
    if args.remote.url().is_some() {
        if args.fail_fast {
            eprintln!(
                "note: --fail-fast is not available with --server; the server runs every model it can"
            );
        }
        let sel = &args.selection;
        let models = super::remote::Models {
            select: &sel.select,
            exclude: &sel.exclude,
            vars: sel.vars.as_deref(),
        };
        return super::remote::run(
            &args.remote,
            models,
            args.threads,
            args.full_refresh,
            with_tests,
        )
        .await;
    }
    let settings = super::settings(overrides)?;
    let project = Arc::new(load(&settings, &args.selection)?);
    let chosen = select::select(&project, &args.selection.select, &args.selection.exclude)?;
    let resources = match verb {
        Verb::Run => select::Resources::Models,
        Verb::Seed => select::Resources::Seeds,
        Verb::Snapshot => select::Resources::Snapshots,
        Verb::Build => select::Resources::All,
    };
    let chosen = select::of_kind(&project, chosen, resources);
    if chosen.is_empty() {
        println!("nothing selected");
        return Ok(ExitCode::SUCCESS);
    }
    let (lake, engine) = super::open(&settings)?;
    let view_engine = engine.clone();
    let cancel = CancellationToken::new();
    let ctrl_c = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            ctrl_c.cancel();
        }
    });
    let options = RunOptions {
        threads: args.threads,
        fail_fast: args.fail_fast,
        full_refresh: args.full_refresh,
        tests: with_tests,
    };
    let mut display = RunDisplay::new(chosen.len(), options.threads, "");
    let p = project.clone();
    let label = Label {
        command: match verb {
            Verb::Run => "run",
            Verb::Seed => "seed",
            Verb::Snapshot => "snapshot",
            Verb::Build => "build",
        }
        .into(),
        selector: selector_text(&args.selection),
    };
    let (_, rec) = crate::models::records::run_to_record(
        project.clone(),
        engine,
        &chosen,
        &options,
        label,
        cancel,
        |e| match e {
            Event::Started { index } => {
                let m = &p.models[*index];
                display.started(&m.relation, m.config.materialized.as_str(), &m.file.path);
            }
            Event::Tested(r) => display.tested(&test_line(&p, r)),
            Event::Hook(h) => display.hook(&TestLine {
                name: &h.name,
                path: "dbt_project.yml",
                status: if h.error.is_some() { "error" } else { "pass" },
                failures: 0,
                sample: "",
                error: h.error.as_ref().map(|e| e.to_string()).unwrap_or_default(),
            }),
            Event::Finished(r) => {
                let m = &p.models[r.index];
                let (status, message) = match &r.status {
                    Status::Success => ("success", String::new()),
                    Status::Error(e) => ("error", e.to_string()),
                    Status::Skipped(why) => ("skipped", why.clone()),
                };
                display.finished(&ModelLine {
                    relation: &m.relation,
                    materialized: m.config.materialized.as_str(),
                    status,
                    rows: r.rows,
                    seconds: r.duration.as_secs_f64(),
                    message: &message,
                });
            }
        },
    )
    .await;
    record(&project, &lake, &rec).await;
    let models_ok = display.finish();
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
    Ok(if models_ok && view_errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
