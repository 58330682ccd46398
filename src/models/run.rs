//! Running models: selected models in DAG order, up to `threads` at once. A model that
//! fails writes nothing (each materialization is one atomic Delta commit or one view
//! definition), its selected descendants are skipped, independent models go on, and with
//! `fail_fast` nothing new starts after the first failure.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{Materialized, Project};
use crate::engine::{Engine, Output, QueryControl};
use crate::lake::{DefinitionKind, WriteMode};

/// How a run behaves.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub threads: usize,
    pub fail_fast: bool,
    pub full_refresh: bool,
    /// `build`: run each model's tests right after it; an error-severity failure fails
    /// the model (its descendants are skipped).
    pub tests: bool,
}

/// The result of one data test.
#[derive(Debug, Clone)]
pub struct TestResult {
    /// Index into `Project::tests`.
    pub test: usize,
    pub failures: u64,
    /// The first failing rows, formatted as a table.
    pub sample: String,
    /// The test could not run (its SQL failed).
    pub error: Option<String>,
    pub duration: Duration,
}

impl TestResult {
    pub fn passed(&self) -> bool {
        self.error.is_none() && self.failures == 0
    }

    /// `pass`, `fail`, `warn` (failing rows of a warn-severity test) or `error`.
    pub fn status(&self, project: &Project) -> &'static str {
        match (&self.error, self.failures) {
            (Some(_), _) => "error",
            (None, 0) => "pass",
            (None, _) if project.tests[self.test].severity == super::datatests::Severity::Warn => {
                "warn"
            }
            (None, _) => "fail",
        }
    }
}

/// Runs data test `t`.
pub async fn run_test(engine: &Arc<Engine>, project: &Project, t: usize) -> TestResult {
    let started = Instant::now();
    let test = &project.tests[t];
    let session = engine.session("tidepool");
    let count = async {
        let sql = format!("SELECT count(*) FROM ({}) AS failing", test.sql);
        let batches = session
            .dataframe(&sql)
            .await
            .map_err(|e| e.message())?
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        let n = batches
            .first()
            .filter(|b| b.num_rows() > 0)
            .and_then(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<arrow::array::Int64Array>()
                    .map(|a| a.value(0))
            })
            .unwrap_or(0);
        let mut sample = String::new();
        if n > 0 {
            let sql = format!(
                "SELECT * FROM ({}) AS failing LIMIT {}",
                test.sql,
                super::datatests::SHOW_ROWS
            );
            if let Ok(df) = session.dataframe(&sql).await
                && let Ok(rows) = df.collect().await
                && let Ok(text) = arrow::util::pretty::pretty_format_batches(&rows)
            {
                sample = text.to_string();
            }
        }
        Ok::<(u64, String), String>((n.max(0) as u64, sample))
    };
    let (failures, sample, error) = match count.await {
        Ok((n, s)) => (n, s, None),
        Err(e) => (0, String::new(), Some(e)),
    };
    TestResult {
        test: t,
        failures,
        sample,
        error,
        duration: started.elapsed(),
    }
}

/// What became of one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Success,
    Error(String),
    Skipped(String),
}

/// The result of one model of a run.
#[derive(Debug, Clone)]
pub struct ModelResult {
    pub index: usize,
    pub status: Status,
    /// Rows written, for tables.
    pub rows: Option<u64>,
    pub duration: Duration,
}

/// Progress of a run, for displays.
#[derive(Debug, Clone)]
pub enum Event {
    Started { index: usize },
    Tested(TestResult),
    Finished(ModelResult),
}

/// What a recorded run is called in `system.runs`: `run`, `build`, `schedule:run`...
/// and the selector it was given.
#[derive(Debug, Clone)]
pub struct Label {
    pub command: String,
    pub selector: String,
}

/// Runs like [`run`] and returns the results with the run's record (not saved yet: the
/// caller saves it where it keeps runs).
pub async fn run_to_record(
    project: Arc<Project>,
    engine: Arc<Engine>,
    selected: &BTreeSet<usize>,
    options: &RunOptions,
    label: Label,
    cancel: CancellationToken,
    mut progress: impl FnMut(&Event),
) -> (Vec<ModelResult>, super::records::RunRecord) {
    let started_at = chrono::Utc::now();
    let mut tested = Vec::new();
    let results = run(
        project.clone(),
        engine.clone(),
        selected,
        options,
        cancel,
        |e| {
            if let Event::Tested(t) = e {
                tested.push(t.clone());
            }
            progress(e);
        },
    )
    .await;
    let nodes = super::records::nodes(engine.lake(), &project, &results, &tested).await;
    let record = super::records::RunRecord {
        run_id: super::records::run_id(started_at),
        command: label.command,
        selector: label.selector,
        started_at,
        finished_at: chrono::Utc::now(),
        nodes,
    };
    (results, record)
}

/// Runs the `selected` models of `project` against `engine`.
pub async fn run(
    project: Arc<Project>,
    engine: Arc<Engine>,
    selected: &BTreeSet<usize>,
    options: &RunOptions,
    cancel: CancellationToken,
    mut progress: impl FnMut(&Event),
) -> Vec<ModelResult> {
    let order = project.graph.order(selected);
    let mut waiting: Vec<usize> = vec![0; project.models.len()];
    for &i in &order {
        waiting[i] = project.graph.deps[i]
            .iter()
            .filter(|d| selected.contains(d))
            .count();
    }
    let mut ready: VecDeque<usize> = order.iter().copied().filter(|&i| waiting[i] == 0).collect();
    let mut results: Vec<ModelResult> = Vec::with_capacity(order.len());
    let mut settled: BTreeSet<usize> = BTreeSet::new();
    let mut running = tokio::task::JoinSet::new();
    let threads = options.threads.max(1);
    let mut stop: Option<String> = None;
    loop {
        while stop.is_none() && running.len() < threads {
            let Some(i) = ready.pop_front() else { break };
            progress(&Event::Started { index: i });
            let (p, e, full, c) = (
                project.clone(),
                engine.clone(),
                options.full_refresh,
                cancel.clone(),
            );
            let with_tests = options.tests;
            running.spawn(async move {
                let started = Instant::now();
                let mut outcome = materialize(&p, &e, i, full, c).await;
                let mut tested = Vec::new();
                if with_tests && outcome.is_ok() {
                    for t in (0..p.tests.len()).filter(|&t| p.tests[t].models.first() == Some(&i)) {
                        tested.push(run_test(&e, &p, t).await);
                    }
                    let failed: Vec<&str> = tested
                        .iter()
                        .filter(|r| {
                            !r.passed()
                                && p.tests[r.test].severity == super::datatests::Severity::Error
                        })
                        .map(|r| p.tests[r.test].name.as_str())
                        .collect();
                    if !failed.is_empty() {
                        outcome = Err(format!(
                            "{}: tests failed: {}",
                            p.models[i].relation,
                            failed.join(", ")
                        ));
                    }
                }
                (i, outcome, started.elapsed(), tested)
            });
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let (i, outcome, duration, tested) = match joined {
            Ok(done) => done,
            Err(e) => {
                tracing::error!(error = %e, "model task failed");
                continue;
            }
        };
        let result = match outcome {
            Ok(rows) => ModelResult {
                index: i,
                status: Status::Success,
                rows,
                duration,
            },
            Err(msg) => ModelResult {
                index: i,
                status: Status::Error(msg),
                rows: None,
                duration,
            },
        };
        settled.insert(i);
        for t in tested {
            progress(&Event::Tested(t));
        }
        progress(&Event::Finished(result.clone()));
        if result.status == Status::Success {
            for &c in &project.graph.children[i] {
                if selected.contains(&c) && !settled.contains(&c) {
                    waiting[c] -= 1;
                    if waiting[c] == 0 {
                        ready.push_back(c);
                    }
                }
            }
        } else {
            let name = &project.models[i].relation;
            for d in project.graph.descendants(i, None) {
                if selected.contains(&d) && settled.insert(d) {
                    let skipped = ModelResult {
                        index: d,
                        status: Status::Skipped(format!("upstream {name} failed")),
                        rows: None,
                        duration: Duration::ZERO,
                    };
                    progress(&Event::Finished(skipped.clone()));
                    results.push(skipped);
                }
            }
            ready.retain(|r| !settled.contains(r));
            if options.fail_fast {
                stop = Some(format!("--fail-fast: {name} failed"));
            }
        }
        if cancel.is_cancelled() && stop.is_none() {
            stop = Some("cancelled".to_string());
        }
        results.push(result);
    }
    if let Some(why) = stop {
        for &i in &order {
            if settled.insert(i) {
                let skipped = ModelResult {
                    index: i,
                    status: Status::Skipped(why.clone()),
                    rows: None,
                    duration: Duration::ZERO,
                };
                progress(&Event::Finished(skipped.clone()));
                results.push(skipped);
            }
        }
    }
    results
}

async fn execute(
    engine: &Arc<Engine>,
    sql: &str,
    cancel: &CancellationToken,
) -> Result<Option<u64>, String> {
    let mut session = engine.session("tidepool");
    let mut statements = session.parse(sql).map_err(|e| e.message())?;
    let Some(stmt) = statements.pop() else {
        return Ok(None);
    };
    let control = QueryControl::new(cancel.clone(), None);
    match session
        .execute(stmt, None, &control)
        .await
        .map_err(|e| e.message())?
    {
        Output::Command(tag) => Ok(tag.rows),
        Output::Rows { .. } => Ok(None),
    }
}

/// Keeps the SQL a run executes in `target/run/<path>`, as dbt does, for reading errors.
pub(super) fn write_run_sql(project: &Project, i: usize, sql: &str) {
    let path = project
        .paths
        .target
        .join("run")
        .join(&project.models[i].file.path);
    if let Some(dir) = path.parent()
        && std::fs::create_dir_all(dir).is_ok()
    {
        let _ = std::fs::write(&path, sql);
    }
}

/// Builds model `i`; returns the rows written (tables).
async fn materialize(
    project: &Project,
    engine: &Arc<Engine>,
    i: usize,
    full_refresh: bool,
    cancel: CancellationToken,
) -> Result<Option<u64>, String> {
    let m = &project.models[i];
    if m.config.materialized == Materialized::Ephemeral {
        // Nothing to build: the models that ref() it carry its SQL as a CTE.
        return Ok(None);
    }
    let lake = engine.lake();
    let fail = |e: String| {
        format!(
            "{} ({}, as run: target/run/{}): {e}",
            m.relation, m.file.path, m.file.path
        )
    };
    execute(
        engine,
        &format!("CREATE SCHEMA IF NOT EXISTS {}", m.schema),
        &cancel,
    )
    .await
    .map_err(fail)?;
    let is_view = lake
        .definition(DefinitionKind::View, &m.schema, &m.name)
        .await
        .map_err(|e| fail(e.to_string()))?
        .is_some();
    let drop_view = || async {
        if is_view {
            lake.drop_definition(DefinitionKind::View, &m.schema, &m.name)
                .await
                .map_err(|e| fail(e.to_string()))?;
        }
        Ok::<(), String>(())
    };
    if m.config.materialized == Materialized::Streaming {
        let outcome = super::streaming::run(engine, project, i, full_refresh)
            .await
            .map_err(fail)?;
        drop_view().await?;
        return Ok(match outcome {
            super::streaming::Outcome::Wrote(n) => Some(n),
            super::streaming::Outcome::NothingNew => Some(0),
        });
    }
    let lake_table = lake
        .table(&m.schema, &m.name)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let incremental =
        m.config.materialized == Materialized::Incremental && lake_table.is_some() && !full_refresh;
    let sql = project
        .render_for_run(i, incremental)
        .map_err(|e| e.to_string())?;
    write_run_sql(project, i, &sql);
    let body = sql.trim().trim_end_matches(';');
    if incremental {
        return super::incremental::write(engine, lake, (&m.schema, &m.name), body, &m.config)
            .await
            .map(Some)
            .map_err(fail);
    }
    let is_table = lake_table.is_some();
    match m.config.materialized {
        Materialized::View => {
            if is_table {
                lake.drop_table(&m.schema, &m.name)
                    .await
                    .map_err(|e| fail(e.to_string()))?;
            }
            execute(
                engine,
                &format!("CREATE OR REPLACE VIEW {} AS\n{body}", m.relation),
                &cancel,
            )
            .await
            .map_err(fail)
        }
        // First build, or --full-refresh: the whole result, as a table, replaced in one
        // Delta commit (readers see the old or the new table).
        Materialized::Table | Materialized::Incremental => {
            // Planned before anything is dropped: a model whose SQL fails leaves the view.
            let session = engine.session("tidepool");
            let mut df = session
                .dataframe(body)
                .await
                .map_err(|e| fail(e.message()))?;
            if !m.config.cluster_by.is_empty() {
                let order = m
                    .config
                    .cluster_by
                    .iter()
                    .map(|c| datafusion::prelude::col(format!("\"{c}\"")).sort(true, false))
                    .collect();
                df = df.sort(order).map_err(|e| fail(e.to_string()))?;
            }
            let state = Arc::new(session.state());
            let options = crate::lake::WriteOptions {
                layout: m.config.layout(),
                ..Default::default()
            };
            let outcome = tokio::select! {
                o = lake.write_plan_with(
                    &m.schema,
                    &m.name,
                    df.logical_plan().clone(),
                    state,
                    WriteMode::Replace,
                    &options,
                ) => o.map_err(|e| fail(e.to_string()))?,
                _ = cancel.cancelled() => return Err(fail("cancelled".to_string())),
            };
            drop_view().await?;
            Ok(Some(outcome.rows))
        }
        Materialized::Streaming | Materialized::Ephemeral => Ok(None),
    }
}
