//! Streaming models: each run reads only the rows appended to the model's upstream Delta
//! tables since the upstream versions it last processed. Those versions are `txn`
//! actions (`tidepool:stream:<schema>.<table>`) in the model's own Delta commits, written
//! in the same commit as the rows, so every upstream row is processed exactly once, and a
//! run with nothing new does no work. Upstreams must be append-only: a commit that
//! deletes or rewrites rows (UPDATE, DELETE, overwrite) stops the model until
//! `--full-refresh`; compaction (OPTIMIZE, `dataChange: false`) is skipped.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::Transformed;
use datafusion::dataframe::DataFrame;
use datafusion::datasource::empty::EmptyTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::LogicalPlan;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;

use super::incremental;
use super::{Materialized, Project};
use crate::ModelsError;
use tidepool_engine::Engine;
use tidepool_engine::EngineError;
use tidepool_lake::{Lake, WriteMode};

/// The `txn` app id recording how far a streaming model read `upstream`.
fn app_id(upstream: &str) -> String {
    format!("tidepool:stream:{upstream}")
}

/// What a streaming run did.
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    Wrote(u64),
    NothingNew,
}

/// Builds streaming model `i`.
pub async fn run(
    engine: &Arc<Engine>,
    project: &Project,
    i: usize,
    full_refresh: bool,
) -> Result<Outcome, ModelsError> {
    let m = &project.models[i];
    let lake = engine.lake();
    let mut upstream: Vec<(String, String)> = Vec::new();
    for r in &m.reads {
        let (s, t) = r.split_once('.').ok_or_else(|| {
            ModelsError::Invalid(format!(
                "a streaming model names the tables it reads as schema.table; {r} has no schema"
            ))
        })?;
        upstream.push((s.to_string(), t.to_string()));
    }
    for &d in &project.graph.deps[i] {
        let dm = &project.models[d];
        if dm.config.materialized == Materialized::View {
            return Err(ModelsError::Invalid(format!(
                "a streaming model reads Delta tables; {} is a view (make it a table, or read what it reads)",
                dm.relation
            )));
        }
        upstream.push((dm.schema.clone(), dm.name.clone()));
    }
    if upstream.is_empty() {
        return Err(ModelsError::Invalid(
            "a streaming model must read at least one Delta table".into(),
        ));
    }
    let target = lake.table(&m.schema, &m.name).await?;
    let incremental = target.is_some() && !full_refresh;

    // Each upstream pinned at its newest version: the whole table for a full build, the
    // files appended since the recorded version otherwise.
    let mut providers: HashMap<(String, String), Arc<dyn TableProvider>> = HashMap::new();
    let mut txns = Vec::new();
    let mut anything_new = !incremental;
    for (s, t) in &upstream {
        let name = format!("{s}.{t}");
        let u = lake
            .table(s, t)
            .await?
            .ok_or_else(|| EngineError::UndefinedTable(name.clone()))?;
        let current = u.version().unwrap_or(0) as i64;
        let whole = u.table_provider().await?;
        let last = match (&target, incremental) {
            (Some(tt), true) => {
                let snap = tt.snapshot()?;
                snap.transaction_version(tt.log_store().as_ref(), &app_id(&name))
                    .await?
            }
            _ => None,
        };
        let provider: Arc<dyn TableProvider> = match last {
            None => {
                anything_new = true;
                whole
            }
            Some(l) if l >= current => Arc::new(EmptyTable::new(whole.schema())),
            Some(l) => {
                anything_new = true;
                let files = appended_files(lake, s, t, l, current).await?;
                files_provider(lake, s, t, &files, whole.schema())?
            }
        };
        providers.insert((s.clone(), t.clone()), provider);
        txns.push(Transaction::new(app_id(&name), current));
    }
    if !anything_new {
        return Ok(Outcome::NothingNew);
    }
    let sql = project.render_for_run(
        i,
        incremental,
        Some(super::lake_db::LakeDatabase::shared(engine.clone())),
    )?;
    project.write_run_sql(i, &sql);
    let session = engine.session("tidepool");
    let df = session.dataframe(sql.trim().trim_end_matches(';')).await?;
    let plan = replace_scans(df.logical_plan().clone(), &providers)?;
    let state = Arc::new(session.state());
    let commit = CommitProperties::default().with_application_transactions(txns);
    match target.filter(|_| incremental) {
        Some(table) => {
            let df = DataFrame::new(session.state(), plan);
            incremental::write_df(df, table, state, &m.config, commit)
                .await
                .map(Outcome::Wrote)
        }
        None => lake
            .write_plan_with(
                &m.schema,
                &m.name,
                plan,
                state,
                WriteMode::Replace,
                &tidepool_lake::WriteOptions {
                    commit,
                    layout: m.config.layout(),
                },
            )
            .await
            .map(|o| Outcome::Wrote(o.rows))
            .map_err(ModelsError::from),
    }
}

/// Paths (relative to the table) of the data files versions `after + 1 ..= upto` of
/// `schema.table` added.
async fn appended_files(
    lake: &Arc<Lake>,
    schema: &str,
    table: &str,
    after: i64,
    upto: i64,
) -> Result<Vec<String>, ModelsError> {
    let mut files = Vec::new();
    for v in after + 1..=upto {
        let Some(bytes) = lake.log_entry(schema, table, v).await? else {
            return Err(ModelsError::Invalid(format!(
                "{schema}.{table}: the log no longer has version {v} (log retention); run with --full-refresh"
            )));
        };
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let action: serde_json::Value = serde_json::from_slice(line).map_err(|e| {
                ModelsError::Invalid(format!(
                    "{schema}.{table} version {v}: unreadable log entry ({e})"
                ))
            })?;
            let changes = |a: &serde_json::Value| {
                a.get("dataChange")
                    .and_then(|d| d.as_bool())
                    .unwrap_or(true)
            };
            if let Some(add) = action.get("add").filter(|a| changes(a)) {
                if add
                    .get("partitionValues")
                    .and_then(|p| p.as_object())
                    .is_some_and(|p| !p.is_empty())
                {
                    return Err(ModelsError::Invalid(format!(
                        "{schema}.{table} is partitioned; streaming models read unpartitioned tables for now"
                    )));
                }
                if add.get("deletionVector").is_some_and(|d| !d.is_null()) {
                    return Err(ModelsError::Invalid(format!(
                        "{schema}.{table} version {v} uses deletion vectors; streaming models cannot read them yet"
                    )));
                }
                let path = add.get("path").and_then(|p| p.as_str()).ok_or_else(|| {
                    ModelsError::Invalid(format!(
                        "{schema}.{table} version {v}: add without a path"
                    ))
                })?;
                files.push(path.to_string());
            }
            if action.get("remove").is_some_and(changes) {
                return Err(ModelsError::Invalid(format!(
                    "{schema}.{table} version {v} deleted or rewrote rows; a streaming model reads append-only tables: run it with --full-refresh"
                )));
            }
        }
    }
    Ok(files)
}

fn files_provider(
    lake: &Arc<Lake>,
    schema: &str,
    table: &str,
    files: &[String],
    table_schema: arrow::datatypes::SchemaRef,
) -> Result<Arc<dyn TableProvider>, ModelsError> {
    if files.is_empty() {
        return Ok(Arc::new(EmptyTable::new(table_schema)));
    }
    let base = lake.table_url(schema, table)?;
    let urls = files
        .iter()
        .map(|f| {
            let url = base
                .join(f)
                .map_err(|e| ModelsError::Invalid(format!("{schema}.{table}: file {f}: {e}")))?;
            Ok(ListingTableUrl::parse(url.as_str())?)
        })
        .collect::<Result<Vec<_>, ModelsError>>()?;
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()));
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(options)
        .with_schema(table_schema);
    Ok(Arc::new(ListingTable::try_new(config)?))
}

/// The plan with every scan of an upstream table reading `providers`' instead.
fn replace_scans(
    plan: LogicalPlan,
    providers: &HashMap<(String, String), Arc<dyn TableProvider>>,
) -> Result<LogicalPlan, ModelsError> {
    plan.transform_up_with_subqueries(|node| match node {
        LogicalPlan::TableScan(mut scan) => {
            let key = (
                scan.table_name.schema().unwrap_or_default().to_lowercase(),
                scan.table_name.table().to_lowercase(),
            );
            match providers.get(&key) {
                Some(p) => {
                    scan.source = provider_as_source(p.clone());
                    Ok(Transformed::yes(LogicalPlan::TableScan(scan)))
                }
                None => Ok(Transformed::no(LogicalPlan::TableScan(scan))),
            }
        }
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
    .map_err(ModelsError::from)
}
