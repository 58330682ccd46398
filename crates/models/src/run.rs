//! Running models: selected models in DAG order, up to `threads` at once. A model that
//! fails writes nothing (each materialization is one atomic Delta commit or one view
//! definition), its selected descendants are skipped, independent models go on, and with
//! `fail_fast` nothing new starts after the first failure.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{Materialized, Project};
use crate::ModelsError;
use crate::test_order::TestOrder;
use tidepool_engine::Engine;
use tidepool_lake::DefinitionKind;

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
    pub error: Option<Arc<ModelsError>>,
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
        let batches = session.dataframe(&sql).await?.collect().await?;
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
        Ok::<(u64, String), ModelsError>((n.max(0) as u64, sample))
    };
    let (failures, sample, error) = match count.await {
        Ok((n, s)) => (n, s, None),
        Err(e) => (0, String::new(), Some(Arc::new(e))),
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
#[derive(Debug, Clone)]
pub enum Status {
    Success,
    Error(Arc<ModelsError>),
    Skipped(String),
}

impl Status {
    pub fn is_success(&self) -> bool {
        matches!(self, Status::Success)
    }
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
    Started {
        index: usize,
    },
    Tested(TestResult),
    Finished(ModelResult),
    /// An `on-run-start` / `on-run-end` hook ran.
    Hook(super::hooks::HookResult),
}

/// What a task of a run finished.
enum Done {
    Model(usize, Result<Option<u64>, ModelsError>, Duration),
    Test(TestResult),
}

/// Where a data test of a `build` stands.
#[derive(Debug, Clone, Copy, PartialEq)]
enum TestState {
    Waiting,
    Running,
    /// Passed, or failed at warn severity.
    Passed,
    Failed,
    /// Not run: a model it reads failed or was skipped.
    NotRun,
}

/// Runs the `selected` models of `project` against `engine`; with `options.tests`
/// (`build`) each model's data tests too, ordered by [`TestOrder`].
pub async fn run(
    project: Arc<Project>,
    engine: Arc<Engine>,
    selected: &BTreeSet<usize>,
    options: &RunOptions,
    cancel: CancellationToken,
    mut progress: impl FnMut(&Event),
) -> Vec<ModelResult> {
    let order = project.graph.order(selected);
    let tests = if options.tests {
        TestOrder::new(&project, selected)
    } else {
        TestOrder::none(&project)
    };
    let n = project.models.len();
    // Per model: None until materialized, then whether it was.
    let mut built: Vec<Option<bool>> = vec![None; n];
    let mut pending: Vec<Option<(Option<u64>, Duration)>> = vec![None; n];
    let mut started: BTreeSet<usize> = BTreeSet::new();
    let mut settled: BTreeSet<usize> = BTreeSet::new();
    let mut test_state = vec![TestState::Waiting; project.tests.len()];
    let mut failed_tests: Vec<Vec<String>> = vec![Vec::new(); n];
    // Models let start although a test holding them has not run: only when nothing else
    // can go on (two tests each reading what the other holds back).
    let mut unheld: BTreeSet<usize> = BTreeSet::new();
    let mut results: Vec<ModelResult> = Vec::with_capacity(order.len());
    let mut running = tokio::task::JoinSet::new();
    let threads = options.threads.max(1);
    let mut stop: Option<String> = None;
    let hook = |h| progress(&Event::Hook(h));
    if !super::hooks::on_run(&project, &engine, None, selected, &cancel, hook).await {
        for &i in &order {
            let why = "on-run-start failed".to_string();
            report(ModelResult::skipped(i, why), &mut progress, &mut results);
        }
        return results;
    }
    let deps_built = |i: usize, built: &[Option<bool>]| {
        project.graph.deps[i]
            .iter()
            .all(|d| !selected.contains(d) || built[*d] == Some(true))
    };
    loop {
        // Tests first: they unblock models.
        if stop.is_none() {
            for &i in &order {
                for &t in &tests.tests_of[i] {
                    if test_state[t] != TestState::Waiting {
                        continue;
                    }
                    let reads = project.tests[t]
                        .models
                        .iter()
                        .filter(|m| selected.contains(m));
                    let states: Vec<Option<bool>> = reads.map(|&m| built[m]).collect();
                    if states.contains(&Some(false)) {
                        test_state[t] = TestState::NotRun;
                    } else if states.iter().all(|s| *s == Some(true)) && running.len() < threads {
                        test_state[t] = TestState::Running;
                        let (p, e) = (project.clone(), engine.clone());
                        running.spawn(async move { Done::Test(run_test(&e, &p, t).await) });
                    }
                }
            }
        }
        while stop.is_none() && running.len() < threads {
            let ready = order.iter().copied().find(|&i| {
                !started.contains(&i)
                    && !settled.contains(&i)
                    && deps_built(i, &built)
                    && (unheld.contains(&i)
                        || tests.held_by[i]
                            .iter()
                            .all(|&t| test_state[t] == TestState::Passed))
            });
            let Some(i) = ready else {
                break;
            };
            started.insert(i);
            progress(&Event::Started { index: i });
            let (p, e, full, c) = (
                project.clone(),
                engine.clone(),
                options.full_refresh,
                cancel.clone(),
            );
            running.spawn(async move {
                let at = Instant::now();
                let outcome = materialize(&p, &e, i, full, c).await;
                Done::Model(i, outcome, at.elapsed())
            });
        }
        if running.is_empty() && stop.is_none() {
            // Nothing runs and nothing is ready: models held by tests that wait on other
            // held models. Let those whose inputs are built go.
            let stuck: Vec<usize> = order
                .iter()
                .copied()
                .filter(|&i| {
                    !started.contains(&i) && !settled.contains(&i) && deps_built(i, &built)
                })
                .collect();
            if !stuck.is_empty() {
                unheld.extend(stuck);
                continue;
            }
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let done = match joined {
            Ok(done) => done,
            Err(e) => {
                tracing::error!(error = %e, "model task failed");
                continue;
            }
        };
        // Models whose outcome is known now, and the models they take down with them.
        let mut failed: Vec<(usize, String)> = Vec::new();
        match done {
            Done::Model(i, Ok(rows), duration) => {
                built[i] = Some(true);
                pending[i] = Some((rows, duration));
            }
            Done::Model(i, Err(e), duration) => {
                built[i] = Some(false);
                settled.insert(i);
                let result = ModelResult {
                    index: i,
                    status: Status::Error(Arc::new(e)),
                    rows: None,
                    duration,
                };
                report(result, &mut progress, &mut results);
                let name = project.models[i].relation.clone();
                failed.push((i, format!("upstream {name} failed")));
            }
            Done::Test(r) => {
                let t = r.test;
                let test = &project.tests[t];
                let fails = !r.passed() && test.severity == super::datatests::Severity::Error;
                test_state[t] = if fails {
                    TestState::Failed
                } else {
                    TestState::Passed
                };
                progress(&Event::Tested(r));
                if fails {
                    let tested = test.models[0];
                    failed_tests[tested].push(test.name.clone());
                    for &d in &tests.holds[t] {
                        if !started.contains(&d) && settled.insert(d) {
                            // Its descendants are held by the same test: skipped here too.
                            built[d] = Some(false);
                            let why = format!(
                                "upstream {} failed test {}",
                                project.models[tested].relation, test.name
                            );
                            report(ModelResult::skipped(d, why), &mut progress, &mut results);
                        }
                    }
                    if options.fail_fast {
                        stop = Some(format!("--fail-fast: test {} failed", test.name));
                    }
                }
            }
        }
        // A model that failed or was skipped: its descendants are skipped.
        while let Some((i, why)) = failed.pop() {
            built[i] = Some(false);
            for d in project.graph.descendants(i, None) {
                if selected.contains(&d) && !started.contains(&d) && settled.insert(d) {
                    built[d] = Some(false);
                    report(
                        ModelResult::skipped(d, why.clone()),
                        &mut progress,
                        &mut results,
                    );
                }
            }
            if options.fail_fast {
                let name = &project.models[i].relation;
                stop.get_or_insert_with(|| format!("--fail-fast: {name} failed"));
            }
        }
        // Built models whose tests are all settled: their result.
        for &i in &order {
            if settled.contains(&i) || pending[i].is_none() {
                continue;
            }
            let tests_done = tests.tests_of[i]
                .iter()
                .all(|&t| !matches!(test_state[t], TestState::Waiting | TestState::Running));
            if !tests_done && stop.is_none() {
                continue;
            }
            let (rows, duration) = pending[i].take().unwrap_or_default();
            settled.insert(i);
            let status = if failed_tests[i].is_empty() {
                Status::Success
            } else {
                Status::Error(Arc::new(ModelsError::TestsFailed {
                    relation: project.models[i].relation.clone(),
                    tests: std::mem::take(&mut failed_tests[i]),
                }))
            };
            let result = ModelResult {
                index: i,
                status,
                rows,
                duration,
            };
            report(result, &mut progress, &mut results);
        }
        if cancel.is_cancelled() && stop.is_none() {
            stop = Some("cancelled".to_string());
        }
    }
    if let Some(why) = stop {
        for &i in &order {
            if settled.insert(i) {
                report(
                    ModelResult::skipped(i, why.clone()),
                    &mut progress,
                    &mut results,
                );
            }
        }
    }
    let hook = |h| progress(&Event::Hook(h));
    let results_value = results_json(&project, &results);
    super::hooks::on_run(
        &project,
        &engine,
        Some(results_value),
        selected,
        &cancel,
        hook,
    )
    .await;
    results
}

impl ModelResult {
    fn skipped(index: usize, why: String) -> ModelResult {
        ModelResult {
            index,
            status: Status::Skipped(why),
            rows: None,
            duration: Duration::ZERO,
        }
    }
}

/// Tells `progress` of a model's result and keeps it.
fn report(result: ModelResult, progress: &mut impl FnMut(&Event), results: &mut Vec<ModelResult>) {
    progress(&Event::Finished(result.clone()));
    results.push(result);
}

/// Builds model `i` between its pre- and post-hooks; returns the rows written (tables).
async fn materialize(
    project: &Project,
    engine: &Arc<Engine>,
    i: usize,
    full_refresh: bool,
    cancel: CancellationToken,
) -> Result<Option<u64>, ModelsError> {
    let m = &project.models[i];
    if m.config.materialized == Materialized::Ephemeral {
        // Nothing to build: the models that ref() it carry its SQL as a CTE.
        return Ok(None);
    }
    let fail = |e: ModelsError| e.in_model(&m.relation, &m.file.path);
    crate::execute::execute_all(
        engine,
        &format!("CREATE SCHEMA IF NOT EXISTS {}", m.schema),
        &cancel,
    )
    .await
    .map_err(fail)?;
    let incremental = m.config.materialized == Materialized::Incremental
        && !full_refresh
        && engine
            .lake()
            .table(&m.schema, &m.name)
            .await
            .map_err(|e| fail(e.into()))?
            .is_some();
    use super::config_levels::{POST, PRE};
    use super::hooks::model_hooks;
    model_hooks(project, engine, i, PRE, incremental, &cancel)
        .await
        .map_err(fail)?;
    let rows = build(project, engine, i, full_refresh, &cancel).await?;
    model_hooks(project, engine, i, POST, incremental, &cancel)
        .await
        .map_err(fail)?;
    Ok(rows)
}

/// Builds model `i` as it is materialized.
async fn build(
    project: &Project,
    engine: &Arc<Engine>,
    i: usize,
    full_refresh: bool,
    cancel: &CancellationToken,
) -> Result<Option<u64>, ModelsError> {
    let m = &project.models[i];
    let lake = engine.lake();
    let fail = |e: ModelsError| e.in_model(&m.relation, &m.file.path);
    let is_view = lake
        .definition(DefinitionKind::View, &m.schema, &m.name)
        .await
        .map_err(|e| fail(e.into()))?
        .is_some();
    let drop_view = || async {
        if is_view {
            lake.drop_definition(DefinitionKind::View, &m.schema, &m.name)
                .await
                .map_err(|e| fail(e.into()))?;
        }
        Ok::<(), ModelsError>(())
    };
    if m.config.materialized == Materialized::Seed {
        let rows = super::seeds::load(engine, m, &project.paths.dir)
            .await
            .map_err(fail)?;
        drop_view().await?;
        return Ok(Some(rows));
    }
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
    // Looked up again after the pre-hooks, which may have created or dropped it.
    let lake_table = lake
        .table(&m.schema, &m.name)
        .await
        .map_err(|e| fail(e.into()))?;
    let incremental =
        m.config.materialized == Materialized::Incremental && lake_table.is_some() && !full_refresh;
    let sql = project.render_for_run(
        i,
        incremental,
        Some(super::lake_db::LakeDatabase::shared(engine.clone())),
    )?;
    project.write_run_sql(i, &sql);
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
                    .map_err(|e| fail(e.into()))?;
            }
            crate::execute::execute_all(
                engine,
                &format!("CREATE OR REPLACE VIEW {} AS\n{body}", m.relation),
                cancel,
            )
            .await
            .map_err(fail)
        }
        // First build, or --full-refresh: the whole result, as a table, replaced in one
        // Delta commit (readers see the old or the new table).
        Materialized::Table | Materialized::Incremental => {
            // Planned before anything is dropped: a model whose SQL fails leaves the view.
            let session = engine.session("tidepool");
            let mut df = session.dataframe(body).await.map_err(|e| fail(e.into()))?;
            if !m.config.cluster_by.is_empty() {
                let order = m
                    .config
                    .cluster_by
                    .iter()
                    .map(|c| datafusion::prelude::col(format!("\"{c}\"")).sort(true, false))
                    .collect();
                df = df.sort(order).map_err(|e| fail(e.into()))?;
            }
            let options = tidepool_lake::WriteOptions {
                layout: m.config.layout(),
                ..Default::default()
            };
            let rows =
                crate::execute::replace_table(&session, (&m.schema, &m.name), df, &options, cancel)
                    .await
                    .map_err(fail)?;
            drop_view().await?;
            Ok(Some(rows))
        }
        Materialized::Snapshot => super::snapshots::run(engine, m, body, cancel)
            .await
            .map(Some)
            .map_err(fail),
        Materialized::Streaming | Materialized::Ephemeral | Materialized::Seed => Ok(None),
    }
}

/// dbt's `results` of `on-run-end`: per model its node, status, message and timing.
fn results_json(project: &Project, results: &[ModelResult]) -> serde_json::Value {
    let all: Vec<serde_json::Value> = results
        .iter()
        .map(|r| {
            let (status, message) = match &r.status {
                Status::Success => ("success", String::new()),
                Status::Error(e) => ("error", e.to_string()),
                Status::Skipped(why) => ("skipped", why.clone()),
            };
            serde_json::json!({
                "node": super::manifest::node(project, r.index),
                "unique_id": super::manifest::unique_id(project, r.index),
                "status": status,
                "message": message,
                "execution_time": r.duration.as_secs_f64(),
                "adapter_response": {"rows_affected": r.rows},
                "failures": null,
            })
        })
        .collect();
    serde_json::Value::Array(all)
}
