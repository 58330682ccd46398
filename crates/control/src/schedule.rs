//! `[schedule]` in `serve`: builds the project on a timer, a cron expression, or when a
//! table the models read (a bronze table, another lake table) has a new Delta version.
//! One loop, so runs never overlap; each run is read again from disk (edited models are
//! picked up) and recorded in `system.runs` like a command-line run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use tidepool_engine::Engine;
use tidepool_models::records;
use tidepool_models::run::RunOptions;
use tidepool_models::{Project, select};

use super::{Control, Schedule};

/// Runs the schedule until `cancel`. The `[schedule]` in force is read at every tick, so
/// a reload that adds, changes or removes it applies at once; a build waits while a run
/// asked for through the admin API holds the run slot.
///
/// Several nodes may run the schedule: the builds run on the holder of the lake's
/// `schedule` lease ([`tidepool_lake::LeaseKeeper`]) only; the others follow its timer and
/// the data it saw, and take over within the lease time if it stops renewing.
pub async fn serve(control: Arc<Control>, cancel: CancellationToken) {
    let mut active: Option<Schedule> = None;
    let mut lease: Option<tidepool_lake::LeaseKeeper> = None;
    let mut cron: Option<croner::Cron> = None;
    let mut due_timer = None;
    let mut due_cron = None;
    // Versions of the tables the models read, as of the last run.
    let mut seen: Option<BTreeMap<String, i64>> = None;
    let next_cron = |cron: &Option<croner::Cron>, after: chrono::DateTime<chrono::Utc>| {
        cron.as_ref()
            .and_then(|c| c.find_next_occurrence(&after, false).ok())
    };
    loop {
        let current = control.settings().schedule.clone();
        if current != active {
            match &current {
                Some(s) => {
                    tracing::info!(every = ?s.every, cron = ?s.cron, on_new_data = s.on_new_data,
                    "schedule active")
                }
                None if active.is_some() => tracing::info!("schedule removed"),
                None => {}
            }
            cron = current
                .as_ref()
                .and_then(|s| s.cron.as_deref())
                .and_then(|c| c.parse().ok());
            due_timer = current
                .as_ref()
                .and_then(|s| s.every)
                .map(|d| Instant::now() + d);
            due_cron = next_cron(&cron, chrono::Utc::now());
            lease = current.as_ref().map(|_| {
                let s = control.settings();
                tidepool_lake::LeaseKeeper::start(
                    control.engine().lake().clone(),
                    "schedule",
                    &s.node,
                    s.lease,
                )
            });
            active = current;
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let Some(schedule) = active.clone() else {
            continue;
        };
        let now = Instant::now();
        let mut why = None;
        if due_timer.is_some_and(|t| now >= t) {
            why = Some("timer");
        }
        if due_cron.is_some_and(|t| chrono::Utc::now() >= t) {
            why = Some("cron");
        }
        if why.is_none() && !schedule.on_new_data {
            continue;
        }
        let project = match control.load_project(BTreeMap::new()) {
            Ok(p) => Arc::new(p),
            Err(e) => {
                tracing::error!(error = %e, "scheduled build: the project does not load");
                if why.is_some() {
                    due_timer = schedule.every.map(|d| Instant::now() + d);
                    due_cron = next_cron(&cron, chrono::Utc::now());
                }
                continue;
            }
        };
        let engine = control.engine().clone();
        let versions = if schedule.on_new_data {
            let v = read_versions(&engine, &project).await;
            if seen.as_ref() != Some(&v) && why.is_none() {
                why = Some("new data");
            }
            Some(v)
        } else {
            None
        };
        let Some(why) = why else {
            continue;
        };
        if !lease.as_ref().is_some_and(|l| l.held()) {
            // Another node builds: keep in step with what it sees.
            due_timer = schedule.every.map(|d| Instant::now() + d);
            due_cron = next_cron(&cron, chrono::Utc::now());
            if versions.is_some() {
                seen = versions;
            }
            continue;
        }
        let what = format!("schedule ({why})");
        let slot = tokio::select! {
            _ = cancel.cancelled() => return,
            slot = control.begin_run(&what) => slot,
        };
        tracing::info!(trigger = why, "scheduled build starting");
        build(&engine, &project, &schedule, why, &cancel).await;
        drop(slot);
        due_timer = schedule.every.map(|d| Instant::now() + d);
        due_cron = next_cron(&cron, chrono::Utc::now());
        if versions.is_some() {
            // What the run saw; commits made during the run trigger the next one.
            seen = versions;
        }
    }
}

/// Newest version of every non-model table the project reads.
async fn read_versions(engine: &Arc<Engine>, project: &Project) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for m in &project.models {
        for r in &m.reads {
            if out.contains_key(r) {
                continue;
            }
            if let Some((s, t)) = r.split_once('.')
                && let Ok(Some(table)) = engine.lake().table(s, t).await
            {
                out.insert(r.clone(), table.version().map_or(-1, |v| v as i64));
            }
        }
    }
    out
}

async fn build(
    engine: &Arc<Engine>,
    project: &Arc<Project>,
    schedule: &Schedule,
    why: &str,
    cancel: &CancellationToken,
) {
    let chosen = match select::select(project, &schedule.select, &schedule.exclude) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "scheduled build: bad selector");
            return;
        }
    };
    let resources = if schedule.with_tests {
        select::Resources::All
    } else {
        select::Resources::Models
    };
    let chosen = select::of_kind(project, chosen, resources);
    let options = RunOptions {
        threads: schedule.threads,
        fail_fast: false,
        full_refresh: false,
        tests: schedule.with_tests,
    };
    let command = if schedule.with_tests { "build" } else { "run" };
    let label = records::Label {
        command: format!("schedule:{command}"),
        selector: schedule.select.join(" "),
    };
    let (results, rec) = records::run_to_record(
        project.clone(),
        engine.clone(),
        &chosen,
        &options,
        label,
        cancel.child_token(),
        |_| {},
    )
    .await;
    let failed = rec
        .nodes
        .iter()
        .filter(|n| matches!(n.status.as_str(), "error" | "fail" | "skipped"))
        .count();
    if let Err(e) = records::save(engine.lake(), &rec).await {
        tracing::error!(error = %e, "scheduled build not recorded");
    }
    tracing::info!(
        trigger = why,
        models = results.len(),
        failed,
        status = rec.status(),
        seconds = (rec.finished_at - rec.started_at).num_milliseconds() as f64 / 1000.0,
        "scheduled build finished"
    );
}
