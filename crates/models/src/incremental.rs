//! Incremental models: the model's SELECT (rendered with `is_incremental()` true) gives
//! the new rows, written into the existing table in one Delta commit: `append`, `merge`
//! (upsert on `unique_key`, a Delta MERGE) or `delete+insert` (every target row whose key
//! the new rows hold is deleted and the new rows inserted, also one MERGE). Column changes
//! follow `on_schema_change`.

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use datafusion::catalog::MemTable;
use datafusion::common::{Column, ScalarValue, TableReference};
use datafusion::dataframe::DataFrame;
use datafusion::datasource::provider_as_source;
use datafusion::execution::SessionState;
use datafusion::logical_expr::{Expr, cast, lit};
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};
use deltalake::DeltaTable;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;

use crate::ModelsError;
use tidepool_engine::Engine;
use tidepool_engine::EngineError;
use tidepool_lake::{Lake, UpsertMode, enable_deletion_vectors, upsert};

/// How new rows reach an incremental model's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Append,
    Merge,
    DeleteInsert,
}

impl Strategy {
    pub fn parse(s: &str) -> Option<Strategy> {
        match s.to_lowercase().as_str() {
            "append" => Some(Strategy::Append),
            "merge" => Some(Strategy::Merge),
            "delete+insert" | "delete_insert" => Some(Strategy::DeleteInsert),
            _ => None,
        }
    }
}

/// What an incremental run does when the model's columns differ from the table's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnSchemaChange {
    /// Keep the table's columns: new model columns are left out, missing ones are NULL.
    Ignore,
    /// Add the model's new columns to the table; missing ones are NULL.
    AppendNewColumns,
    /// Fail the model, naming the columns.
    Fail,
}

impl OnSchemaChange {
    pub fn parse(s: &str) -> Option<OnSchemaChange> {
        match s.to_lowercase().as_str() {
            "ignore" => Some(OnSchemaChange::Ignore),
            "append_new_columns" => Some(OnSchemaChange::AppendNewColumns),
            "fail" => Some(OnSchemaChange::Fail),
            _ => None,
        }
    }
}

const SOURCE: &str = "s";
const TARGET: &str = "t";
const OP: &str = "__tidepool_op";

fn qualified(table: &str, name: &str) -> Expr {
    Expr::Column(Column::new(Some(TableReference::bare(table)), name))
}

fn unqualified(name: &str) -> Expr {
    Expr::Column(Column::new_unqualified(name))
}

/// Writes the rows of `sql` into the existing table `schema.name`. Returns the rows
/// inserted or updated.
pub async fn write(
    engine: &Arc<Engine>,
    lake: &Arc<Lake>,
    (schema, name): (&str, &str),
    sql: &str,
    config: &super::ModelConfig,
) -> Result<u64, ModelsError> {
    let started = std::time::Instant::now();
    let session = engine.session("tidepool");
    let df = session.dataframe(sql).await?;
    tracing::debug!(elapsed = ?started.elapsed(), "incremental: planned");
    let df = inline_scalar_subqueries(df).await?;
    tracing::debug!(elapsed = ?started.elapsed(), "incremental: subqueries inlined");
    let table = lake
        .table(schema, name)
        .await?
        .ok_or_else(|| EngineError::UndefinedTable(format!("{schema}.{name}")))?;
    let state = Arc::new(session.state());
    tracing::debug!(elapsed = ?started.elapsed(), "incremental: table loaded");
    write_df(df, table, state, config, CommitProperties::default()).await
}

/// Writes the rows of `df` into `table` as [`write`] does, with `commit` (application
/// transactions, metadata) in the same Delta commit.
pub async fn write_df(
    df: DataFrame,
    table: DeltaTable,
    state: Arc<SessionState>,
    config: &super::ModelConfig,
    commit: CommitProperties,
) -> Result<u64, ModelsError> {
    let layout = config.layout();
    let how = How {
        strategy: config.strategy,
        unique_key: &config.unique_key,
        on_change: config.on_schema_change,
        layout: &layout,
    };
    write_with(df, table, state, &how, commit, true).await
}

impl How<'_> {
    /// Whether replaced rows are marked in deletion vectors (the model's table properties
    /// ask for them).
    fn deletion_vectors(&self) -> bool {
        self.layout
            .properties
            .get("delta.enableDeletionVectors")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
}

/// How rows reach the table.
struct How<'a> {
    strategy: Strategy,
    unique_key: &'a [String],
    on_change: OnSchemaChange,
    layout: &'a tidepool_lake::Layout,
}

/// [`write_df`]; `pruned`: try the key-pruned upsert before a Delta MERGE.
async fn write_with(
    df: DataFrame,
    table: DeltaTable,
    state: Arc<SessionState>,
    how: &How<'_>,
    commit: CommitProperties,
    pruned: bool,
) -> Result<u64, ModelsError> {
    let (strategy, unique_key, on_change) = (how.strategy, how.unique_key, how.on_change);
    let target = table.snapshot()?.snapshot().arrow_schema();
    let source = df.schema().as_arrow().clone();
    // Column names of `a` that `b` lacks.
    let lacking = |a: &'_ datafusion::arrow::datatypes::Schema,
                   b: &datafusion::arrow::datatypes::Schema|
     -> Vec<String> {
        a.fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|n| b.field_with_name(n).is_err())
            .collect()
    };
    let added = lacking(&source, &target);
    let missing = lacking(&target, &source);
    if on_change == OnSchemaChange::Fail && (!added.is_empty() || !missing.is_empty()) {
        return Err(ModelsError::Invalid(format!(
            "the model's columns changed (on_schema_change='fail'): new {added:?}, gone {missing:?}; run with --full-refresh or change on_schema_change"
        )));
    }
    for k in unique_key {
        if source.field_with_name(k).is_err() {
            return Err(ModelsError::Invalid(format!(
                "unique_key column {k:?} is not a column of the model"
            )));
        }
    }
    // The rows in the table's column order; NULL for columns the model no longer has,
    // new columns after them when they are to be added.
    let mut exprs: Vec<Expr> = Vec::new();
    // Each in the table's type (a model's UInt64 `row_number()` into its Int64 column);
    // new columns in the nearest type Delta readers read.
    for f in target.fields() {
        exprs.push(match source.field_with_name(f.name()) {
            Ok(s) if s.data_type() == f.data_type() => unqualified(f.name()),
            Ok(_) => cast(unqualified(f.name()), f.data_type().clone()).alias(f.name()),
            Err(_) => cast(lit(ScalarValue::Null), f.data_type().clone()).alias(f.name()),
        });
    }
    if on_change == OnSchemaChange::AppendNewColumns {
        exprs.extend(added.iter().map(|n| {
            let t = source.field_with_name(n).map(|f| f.data_type().clone());
            match t.ok().and_then(|t| tidepool_lake::portable::delta_type(&t)) {
                Some(t) => cast(unqualified(n), t).alias(n.as_str()),
                None => unqualified(n),
            }
        }));
    }
    let df = df.select(exprs)?;
    let merge_schema = on_change == OnSchemaChange::AppendNewColumns && !added.is_empty();
    let columns = crate::column_names(&df);
    let on = |extra: Option<Expr>| -> Expr {
        let mut pred = unique_key
            .iter()
            .map(|k| qualified(TARGET, k).eq(qualified(SOURCE, k)))
            .reduce(Expr::and)
            .unwrap_or(lit(false));
        if let Some(e) = extra {
            pred = pred.and(e);
        }
        pred
    };
    if pruned && strategy != Strategy::Append && !unique_key.is_empty() && !merge_schema {
        // The key-pruned upsert touches only files holding the new rows' keys; it needs
        // the new rows in memory, so a source over SOURCE_IN_MEMORY bytes, or a table it
        // does not handle, goes to the Delta MERGE below.
        let started = std::time::Instant::now();
        if let Some(batches) = collect_bounded(&df).await? {
            tracing::debug!(elapsed = ?started.elapsed(), "upsert: source collected");
            let mode = match strategy {
                Strategy::Merge => UpsertMode::Merge,
                _ => UpsertMode::DeleteInsert,
            };
            // Deletion vectors only when the model asks for them
            // (`tblproperties={'delta.enableDeletionVectors': true}`): the deltalake
            // package's pyarrow reader, among others, refuses tables that have them.
            let table = if how.deletion_vectors() {
                enable_deletion_vectors(table).await?
            } else {
                table
            };
            let out = upsert(
                &table,
                batches.clone(),
                unique_key,
                mode,
                commit.clone(),
                how.layout,
            )
            .await;
            if let Some(out) = out? {
                tracing::debug!(?out, "key-pruned upsert");
                return Ok(out.rows);
            }
            let mem = MemTable::try_new(df.schema().inner().clone(), vec![batches])?;
            let plan = LogicalPlanBuilder::scan("s", provider_as_source(Arc::new(mem)), None)
                .and_then(|b| b.build())?;
            let df = DataFrame::new(state.as_ref().clone(), plan);
            return Box::pin(write_with(df, table, state, how, commit, false)).await;
        }
    }
    match strategy {
        Strategy::Append => {
            let mut b = table
                .write(Vec::new())
                .with_input_plan(df.logical_plan().clone())
                .with_session_state(state)
                .with_commit_properties(commit)
                .with_save_mode(SaveMode::Append);
            if merge_schema {
                b = b.with_schema_mode(SchemaMode::Merge);
            }
            let written = b.await?;
            Ok(last_metric(&written, "num_added_rows").await)
        }
        Strategy::Merge => {
            if unique_key.is_empty() {
                return Err(ModelsError::Invalid(
                    "incremental_strategy='merge' needs unique_key".into(),
                ));
            }
            let (_, metrics) = table
                .merge(df, on(None))
                .with_source_alias(SOURCE)
                .with_target_alias(TARGET)
                .with_merge_schema(merge_schema)
                .with_session_state(state)
                .with_commit_properties(commit.clone())
                .when_matched_update(|mut u| {
                    for c in &columns {
                        u = u.update(c.as_str(), qualified(SOURCE, c));
                    }
                    u
                })
                .and_then(|b| {
                    b.when_not_matched_insert(|mut i| {
                        for c in &columns {
                            i = i.set(c.as_str(), qualified(SOURCE, c));
                        }
                        i
                    })
                })?
                .await?;
            Ok((metrics.num_target_rows_inserted + metrics.num_target_rows_updated) as u64)
        }
        Strategy::DeleteInsert => {
            if unique_key.is_empty() {
                return Err(ModelsError::Invalid(
                    "incremental_strategy='delete+insert' needs unique_key".into(),
                ));
            }
            // One MERGE: the distinct keys, tagged `delete`, match and delete every
            // target row with that key; the rows, tagged `insert`, never match and are
            // inserted. Readers see the table before or after, never in between.
            let keys = df
                .clone()
                .select(
                    df.schema()
                        .fields()
                        .iter()
                        .map(|f| {
                            if unique_key.contains(f.name()) {
                                unqualified(f.name())
                            } else {
                                cast(lit(ScalarValue::Null), f.data_type().clone()).alias(f.name())
                            }
                        })
                        .collect::<Vec<_>>(),
                )
                .and_then(DataFrame::distinct)
                .and_then(|k| {
                    let mut e: Vec<Expr> = columns.iter().map(|c| unqualified(c)).collect();
                    e.push(lit("delete").alias(OP));
                    k.select(e)
                })?;
            let mut e: Vec<Expr> = columns.iter().map(|c| unqualified(c)).collect();
            e.push(lit("insert").alias(OP));
            let rows = df.select(e)?;
            let source = keys.union(rows)?;
            let (_, metrics) = table
                .merge(source, on(Some(qualified(SOURCE, OP).eq(lit("delete")))))
                .with_source_alias(SOURCE)
                .with_target_alias(TARGET)
                .with_merge_schema(merge_schema)
                .with_session_state(state)
                .with_commit_properties(commit.clone())
                .when_matched_delete(|d| d)
                .and_then(|b| {
                    b.when_not_matched_insert(|mut i| {
                        i = i.predicate(qualified(SOURCE, OP).eq(lit("insert")));
                        for c in &columns {
                            i = i.set(c.as_str(), qualified(SOURCE, c));
                        }
                        i
                    })
                })?
                .await?;
            Ok(metrics.num_target_rows_inserted as u64)
        }
    }
}

/// `df` with each uncorrelated scalar subquery (`where v > (select max(v) from {{ this }})`,
/// the usual incremental filter) replaced by its value. As a literal, the filter reaches
/// the scans, and Delta file statistics skip every file older than the new rows; as a
/// subquery it is a join that reads the whole upstream table.
async fn inline_scalar_subqueries(df: DataFrame) -> Result<DataFrame, ModelsError> {
    use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
    let (state, plan) = df.into_parts();
    let mut found: Vec<Arc<LogicalPlan>> = Vec::new();
    plan.apply(|p| {
        p.apply_expressions(|e| {
            e.apply(|e| {
                if let Expr::ScalarSubquery(q) = e
                    && q.outer_ref_columns.is_empty()
                {
                    found.push(q.subquery.clone());
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })?;
    if found.is_empty() {
        return Ok(DataFrame::new(state, plan));
    }
    let mut values = std::collections::HashMap::new();
    for q in found {
        let batches = DataFrame::new(state.clone(), q.as_ref().clone())
            .collect()
            .await?;
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        let value = match batches.iter().find(|b| b.num_rows() > 0) {
            // More than one row is DataFusion's error to raise: left as a subquery.
            _ if rows > 1 => continue,
            Some(b) if b.num_columns() == 1 => ScalarValue::try_from_array(b.column(0), 0)?,
            None if q.schema().fields().len() == 1 => {
                ScalarValue::try_from(q.schema().field(0).data_type())?
            }
            _ => continue,
        };
        values.insert(Arc::as_ptr(&q) as usize, value);
    }
    let plan = plan
        .transform_up(|p| {
            p.map_expressions(|e| {
                e.transform(|e| match &e {
                    Expr::ScalarSubquery(q) => {
                        match values.get(&(Arc::as_ptr(&q.subquery) as usize)) {
                            Some(v) => Ok(Transformed::yes(lit(v.clone()))),
                            None => Ok(Transformed::no(e)),
                        }
                    }
                    _ => Ok(Transformed::no(e)),
                })
            })
        })?
        .data;
    Ok(DataFrame::new(state, plan))
}

/// Most bytes of new rows an upsert holds in memory.
const SOURCE_IN_MEMORY: usize = 512 << 20;

/// The rows of `df`, or `None` once they pass [`SOURCE_IN_MEMORY`].
async fn collect_bounded(df: &DataFrame) -> Result<Option<Vec<RecordBatch>>, ModelsError> {
    use futures::StreamExt;
    let mut stream = df.clone().execute_stream().await?;
    let mut batches = Vec::new();
    let mut bytes = 0;
    while let Some(b) = stream.next().await {
        let b = b?;
        bytes += b.get_array_memory_size();
        if bytes > SOURCE_IN_MEMORY {
            return Ok(None);
        }
        batches.push(b);
    }
    Ok(Some(batches))
}

async fn last_metric(table: &deltalake::DeltaTable, key: &str) -> u64 {
    use futures::TryStreamExt;
    let last: Vec<_> = table
        .history(Some(1))
        .try_collect()
        .await
        .unwrap_or_default();
    last.first()
        .and_then(|c| c.info.get("operationMetrics"))
        .and_then(|m| m.get(key))
        .and_then(|v| v.as_u64())
        .unwrap_or(0)
}
