//! Upkeep of ingested tables, run in the background by `serve` and on demand: compaction
//! (Delta OPTIMIZE) when small files pile up, and VACUUM of files no longer referenced
//! once they are older than the retention. Checkpoints are written by the commits
//! themselves (`delta.checkpointInterval` is set when a bronze table is created). Each
//! operation is its own Delta commit; readers keep the version they planned with, and the
//! files it reads are only deleted after the retention.

use std::sync::Arc;
use std::time::Duration;

use deltalake::DeltaTable;
use tokio_util::sync::CancellationToken;

use super::IngestError;
use crate::settings::Maintenance;
use tidepool_lake::{Lake, LakeError};

/// What one pass over a table did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub files_before: usize,
    pub files_compacted: u64,
    pub files_added: u64,
    pub files_vacuumed: usize,
}

/// Compacts and vacuums `schema.table` if it needs it.
pub async fn maintain(
    lake: &Lake,
    schema: &str,
    table: &str,
    m: &Maintenance,
) -> Result<Report, IngestError> {
    let mut report = Report::default();
    let Some(t) = lake.table(schema, table).await? else {
        return Ok(report);
    };
    let state = t.snapshot().map_err(IngestError::delta)?;
    let small_limit = (m.target_file_size / 2) as i64;
    let files = state.log_data().num_files();
    let small = state
        .log_data()
        .iter()
        .filter(|f| f.size() < small_limit)
        .count();
    report.files_before = files;
    let t = if small >= m.compact_min_files {
        let Some((t, metrics)) = optimize(lake, schema, table, m, Duration::ZERO).await? else {
            return Ok(report);
        };
        report.files_compacted = metrics.num_files_removed;
        report.files_added = metrics.num_files_added;
        tracing::info!(table = %format!("{schema}.{table}"), removed = metrics.num_files_removed,
            added = metrics.num_files_added, "compacted");
        t
    } else {
        t
    };
    report.files_vacuumed = vacuum(t, m).await?;
    if report.files_vacuumed > 0 {
        tracing::info!(table = %format!("{schema}.{table}"), files = report.files_vacuumed, "vacuumed");
    }
    Ok(report)
}

/// Delta OPTIMIZE into files of `target_file_size`, under the table's compaction lease
/// ([`Lake::optimize`]: one OPTIMIZE of a table at a time across every process on the
/// lake), waiting up to `wait` for another process's. `None` when the table is gone, or
/// when another process is compacting it and `wait` is zero.
async fn optimize(
    lake: &Lake,
    schema: &str,
    table: &str,
    m: &Maintenance,
    wait: Duration,
) -> Result<Option<(DeltaTable, deltalake::operations::optimize::Metrics)>, IngestError> {
    match lake.optimize(schema, table, m.target_file_size, wait).await {
        Ok(done) => Ok(done),
        Err(LakeError::Busy(_)) if wait.is_zero() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// VACUUM of files older than the retention; returns how many were deleted.
async fn vacuum(t: DeltaTable, m: &Maintenance) -> Result<usize, IngestError> {
    let retention = chrono::Duration::from_std(m.vacuum_retention)
        .map_err(|e| IngestError::InvalidSetting(format!("vacuum_retention: {e}")))?;
    let (_, metrics) = t
        .vacuum()
        .with_retention_period(retention)
        .with_enforce_retention_duration(false)
        .await
        .map_err(IngestError::delta)?;
    Ok(metrics.files_deleted.len())
}

/// How long an OPTIMIZE asked for by name waits for another process's compaction of the
/// same table (auto-compaction of a busy table takes seconds).
const ASKED_WAIT: Duration = Duration::from_secs(60);

/// One maintenance operation asked for by name (the admin API's Maintain).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Compact small files into files of `target_file_size` (Delta OPTIMIZE).
    Optimize,
    /// Delete files no version within the retention references.
    Vacuum,
    /// Write a checkpoint of the current version.
    Checkpoint,
}

/// Runs `action` on `schema.table` (any lake table: bronze, silver, gold) now, whatever
/// the thresholds; returns what it did, in words.
pub async fn apply(
    lake: &Lake,
    schema: &str,
    table: &str,
    action: Action,
    m: &Maintenance,
) -> Result<String, IngestError> {
    let name = format!("{schema}.{table}");
    let Some(t) = lake.table(schema, table).await? else {
        return Err(IngestError::NoTable(name));
    };
    let files = t
        .snapshot()
        .map_err(IngestError::delta)?
        .log_data()
        .num_files();
    let summary = match action {
        Action::Optimize => {
            drop(t);
            let Some((t, metrics)) = optimize(lake, schema, table, m, ASKED_WAIT).await? else {
                return Err(IngestError::NoTable(name));
            };
            format!(
                "optimized {name}: {files} files before, {} compacted into {}; version {}",
                metrics.num_files_removed,
                metrics.num_files_added,
                t.version().unwrap_or_default()
            )
        }
        Action::Vacuum => format!(
            "vacuumed {name}: {} unreferenced files older than {} h deleted",
            vacuum(t, m).await?,
            m.vacuum_retention.as_secs() / 3600
        ),
        Action::Checkpoint => {
            deltalake::checkpoints::create_checkpoint(&t, None)
                .await
                .map_err(IngestError::delta)?;
            format!(
                "checkpoint of {name} written at version {}",
                t.version().unwrap_or_default()
            )
        }
    };
    tracing::info!(table = %name, ?action, %summary, "maintenance on request");
    Ok(summary)
}

/// Runs [`maintain`] over `tables` every `m.interval` until cancelled.
pub async fn run(
    lake: Arc<Lake>,
    tables: Vec<(String, String)>,
    m: Maintenance,
    lease: (String, std::time::Duration),
    cancel: CancellationToken,
) {
    let Some(interval) = m.interval else {
        return;
    };
    // One node at a time compacts and vacuums: the holder of the `maintenance` lease.
    let keeper = tidepool_lake::LeaseKeeper::start(lake.clone(), "maintenance", &lease.0, lease.1);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        if !keeper.held() {
            continue;
        }
        for (schema, table) in &tables {
            if cancel.is_cancelled() {
                return;
            }
            if let Err(e) = maintain(&lake, schema, table, &m).await {
                tracing::warn!(table = %format!("{schema}.{table}"), error = %e, "maintenance failed; retrying next round");
            }
        }
    }
}
