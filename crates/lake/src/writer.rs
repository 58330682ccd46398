//! Writing a DataFusion plan's output into a Delta table of the lake: create, atomic
//! replace or append. The plan is executed by delta-rs as a stream, so a large
//! `CREATE TABLE AS` never holds its whole result in memory, and the commit is one atomic
//! Delta version: readers see the old or the new table, never a partial one.

use std::sync::Arc;

use datafusion::execution::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;
use deltalake::DeltaTable;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;

use super::{Lake, LakeError, check_name};

/// How a write treats an existing table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// The table must not exist yet.
    Create,
    /// Replace data and schema atomically, creating the table if needed.
    Replace,
    /// Add rows; the table must exist.
    Append,
}

/// What a write did.
#[derive(Debug, Clone, Default)]
pub struct WriteOutcome {
    /// The Delta version the write committed.
    pub version: i64,
    /// Rows written.
    pub rows: u64,
    /// Data files added.
    pub files: u64,
}

/// How a table's files are laid out: Delta table properties set when the table is
/// created or replaced (`delta.targetFileSize` also sizes the files of this write).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    pub properties: std::collections::BTreeMap<String, String>,
    /// Rows per Parquet row group ([`DEFAULT_ROW_GROUP_ROWS`] when `None`). Smaller groups
    /// let a keyed merge decode less of a file to find its keys.
    pub row_group_rows: Option<usize>,
}

/// Rows per Parquet row group unless a table says otherwise: DuckDB's 122,880. The
/// Parquet writer's own default (1,048,576) leaves a table under a million rows (TPC-H's
/// `part`, `partsupp`, `customer`) one row group, which one core scans while the other
/// waits: a scan splits a file between partitions by row group. Smaller groups also
/// carry finer min/max statistics for pruning.
pub const DEFAULT_ROW_GROUP_ROWS: usize = 122_880;

impl Layout {
    /// `delta.targetFileSize` in bytes: a number, or with a `kb`/`mb`/`gb` suffix.
    pub fn target_file_size(&self) -> Option<u64> {
        self.properties
            .get("delta.targetFileSize")
            .and_then(|v| parse_size(v))
    }

    /// Parquet writer settings: Snappy, [`Layout::row_group_rows`] rows per group.
    pub fn writer_properties(&self) -> WriterProperties {
        let rows = self.row_group_rows.unwrap_or(DEFAULT_ROW_GROUP_ROWS);
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(rows.max(1)))
            .build()
    }
}

/// `16777216`, `16mb`, `16 MiB`, `1g` as bytes.
pub fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim().to_ascii_lowercase();
    let digits = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let n: u64 = v[..digits].parse().ok()?;
    let unit = match v[digits..]
        .trim()
        .trim_end_matches('b')
        .trim_end_matches('i')
    {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(unit).filter(|n| *n > 0)
}

/// What goes with a write besides its rows.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// Application transactions and metadata committed with the rows.
    pub commit: CommitProperties,
    pub layout: Layout,
}

impl Lake {
    /// Executes `plan` in `state` and writes its rows to `schema.table`.
    pub async fn write_plan(
        &self,
        schema: &str,
        table: &str,
        plan: LogicalPlan,
        state: Arc<SessionState>,
        mode: WriteMode,
    ) -> Result<WriteOutcome, LakeError> {
        self.write_plan_with(schema, table, plan, state, mode, &WriteOptions::default())
            .await
    }

    /// [`Lake::write_plan`] with commit properties (application transactions, metadata)
    /// that land in the same commit as the rows, and the table's layout.
    pub async fn write_plan_with(
        &self,
        schema: &str,
        table: &str,
        plan: LogicalPlan,
        state: Arc<SessionState>,
        mode: WriteMode,
        options: &WriteOptions,
    ) -> Result<WriteOutcome, LakeError> {
        let layout = &options.layout;
        check_name(schema)?;
        check_name(table)?;
        let existing = self.table(schema, table).await?;
        let target = match (mode, existing) {
            (WriteMode::Create, Some(_)) => {
                return Err(LakeError::TableExists(format!("{schema}.{table}")));
            }
            (WriteMode::Append, None) => {
                return Err(LakeError::TableNotFound(format!("{schema}.{table}")));
            }
            (_, Some(t)) => t,
            (_, None) => {
                let url = self.table_url(schema, table)?;
                if let Ok(path) = url.to_file_path() {
                    std::fs::create_dir_all(&path).map_err(|source| LakeError::Io {
                        path: path.display().to_string(),
                        source,
                    })?;
                }
                DeltaTable::try_from_url_with_storage_options(url, self.storage_options.clone())
                    .await?
            }
        };
        let mut builder = target
            .write(Vec::new())
            .with_input_plan(crate::portable::plan(
                crate::ordered::keep_order(plan, &state).await?,
            )?)
            .with_session_state(state)
            .with_table_name(table)
            .with_commit_properties(crate::txn::commit_properties(options.commit.clone()));
        if !layout.properties.is_empty() {
            builder = builder.with_configuration(
                layout
                    .properties
                    .iter()
                    .map(|(k, v)| (k.clone(), Some(v.clone()))),
            );
        }
        builder = builder.with_writer_properties(layout.writer_properties());
        if let Some(size) = layout.target_file_size() {
            builder = builder.with_target_file_size(std::num::NonZeroU64::new(size));
        }
        builder = match mode {
            WriteMode::Create => builder.with_save_mode(SaveMode::ErrorIfExists),
            WriteMode::Replace => builder
                .with_save_mode(SaveMode::Overwrite)
                .with_schema_mode(SchemaMode::Overwrite),
            WriteMode::Append => builder.with_save_mode(SaveMode::Append),
        };
        let written = builder.await?;
        self.remember(schema, table, &written).await;
        let outcome = outcome_of(&written).await?;
        // Rows change no listing; a new (or replaced) table does.
        if mode != WriteMode::Append {
            self.refresh().await?;
        }
        Ok(outcome)
    }
}

async fn outcome_of(table: &DeltaTable) -> Result<WriteOutcome, LakeError> {
    let version = table.version().unwrap_or(0);
    // The commit just written, read by its version (one read, no log listing).
    let commit = table.log_store().read_commit_entry(version).await?;
    let mut metrics = serde_json::Map::new();
    for line in commit.as_deref().unwrap_or_default().split(|b| *b == b'\n') {
        if let Ok(serde_json::Value::Object(mut m)) = serde_json::from_slice(line)
            && let Some(serde_json::Value::Object(mut info)) = m.remove("commitInfo")
            && let Some(serde_json::Value::Object(op)) = info.remove("operationMetrics")
        {
            metrics = op;
        }
    }
    let get = |k: &str| metrics.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
    Ok(WriteOutcome {
        version: version as i64,
        rows: get("num_added_rows"),
        files: get("num_added_files"),
    })
}

#[cfg(test)]
mod tests {
    use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
    use datafusion::parquet::file::statistics::Statistics;
    use datafusion::prelude::SessionContext;

    use super::*;

    /// A session that plans Delta writes.
    fn context() -> SessionContext {
        SessionContext::new_with_state(
            datafusion::execution::SessionStateBuilder::new()
                .with_default_features()
                .with_query_planner(deltalake::delta_datafusion::planner::DeltaPlanner::new())
                .build(),
        )
    }

    /// A table written without a layout has row groups of the default size, so a scan can
    /// split it between cores.
    #[tokio::test]
    async fn tables_are_written_in_row_groups_of_the_default_size() {
        let dir = tempfile::tempdir().unwrap();
        let lake = crate::test_lake(dir.path());
        let ctx = context();
        let rows = 2 * DEFAULT_ROW_GROUP_ROWS + 10;
        let plan = ctx
            .sql(&format!(
                "SELECT value AS id FROM generate_series(1, {rows})"
            ))
            .await
            .unwrap()
            .into_optimized_plan()
            .unwrap();
        let out = lake
            .write_plan("s", "t", plan, Arc::new(ctx.state()), WriteMode::Create)
            .await
            .unwrap();
        assert_eq!(out.rows, rows as u64);
        let mut groups = Vec::new();
        for entry in std::fs::read_dir(dir.path().join("s/t")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "parquet") {
                let reader =
                    SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
                let meta = reader.metadata();
                groups.extend(meta.row_groups().iter().map(|g| g.num_rows()));
            }
        }
        groups.sort();
        assert_eq!(
            groups,
            vec![
                10,
                DEFAULT_ROW_GROUP_ROWS as i64,
                DEFAULT_ROW_GROUP_ROWS as i64
            ]
        );
    }

    /// The (min, max) of column 0 in every row group of every file of `dir`.
    fn row_group_ranges(dir: &std::path::Path) -> Vec<(i64, i64)> {
        let mut ranges = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "parquet") {
                let reader =
                    SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
                for g in reader.metadata().row_groups() {
                    match g.column(0).statistics() {
                        Some(Statistics::Int64(s)) => {
                            ranges.push((*s.min_opt().unwrap(), *s.max_opt().unwrap()))
                        }
                        other => panic!("{other:?}"),
                    }
                }
            }
        }
        ranges.sort();
        ranges
    }

    /// Writes `sql`'s rows (under a filter on `k >= 0` when `checked`, as INSERT adds for
    /// a CHECK constraint) and returns the row groups' ranges of column 0.
    async fn write(sql: &str, checked: bool) -> Vec<(i64, i64)> {
        let dir = tempfile::tempdir().unwrap();
        let lake = crate::test_lake(dir.path());
        let ctx = context();
        let mut plan = ctx.sql(sql).await.unwrap().into_unoptimized_plan();
        if checked {
            use datafusion::prelude::{col, lit};
            plan = datafusion::logical_expr::LogicalPlanBuilder::from(plan)
                .filter(col("k").gt_eq(lit(0i64)))
                .unwrap()
                .build()
                .unwrap();
        }
        let options = WriteOptions {
            layout: Layout {
                row_group_rows: Some(1000),
                ..Default::default()
            },
            ..Default::default()
        };
        lake.write_plan_with(
            "s",
            "t",
            plan,
            Arc::new(ctx.state()),
            WriteMode::Create,
            &options,
        )
        .await
        .unwrap();
        row_group_ranges(&dir.path().join("s/t"))
    }

    /// Rows written with `ORDER BY` land sorted: no two row groups' ranges overlap. The
    /// same rows without it overlap (the input is shuffled), so the check can fail.
    #[tokio::test]
    async fn order_by_reaches_the_files() {
        let shuffled = "SELECT (value * 7919) % 20011 AS k, value AS v \
                        FROM generate_series(1, 20011)";
        for checked in [false, true] {
            let sorted = write(
                &format!("SELECT k, v FROM ({shuffled}) ORDER BY k"),
                checked,
            )
            .await;
            assert_eq!(sorted.len(), 21, "{sorted:?}");
            assert!(
                sorted.windows(2).all(|w| w[0].1 < w[1].0),
                "overlapping row groups (checked: {checked}): {sorted:?}"
            );
        }
        let unsorted = write(shuffled, false).await;
        assert!(
            unsorted.windows(2).any(|w| w[0].1 >= w[1].0),
            "{unsorted:?}"
        );
    }
}
