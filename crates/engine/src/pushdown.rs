//! Lake tables as DataFusion sees them: delta-rs' provider behind a bound on the filters
//! offered to it. delta-rs turns a pushed-down filter into a kernel predicate by
//! recursion (an `IN` list becomes a chain of `OR`s), which overflows a thread's stack
//! for a few thousand values; a filter larger than [`MAX_PUSHDOWN_NODES`] is therefore
//! kept in DataFusion's own filter (a hash set for `IN` lists) and not offered to the scan.
//! File skipping by such filters is lost, which costs little: a list that long rarely
//! prunes files.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Statistics;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::TableType;
use datafusion::error::Result;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use deltalake::DeltaTable;

use crate::lake_scan::PlainFiles;

/// Largest filter (expression nodes, `IN` list values counted) offered to delta-rs.
pub const MAX_PUSHDOWN_NODES: usize = 512;

/// The provider of a Delta table, with bounded filter pushdown and the column defaults
/// the table declares (used by INSERTs that leave a column out).
pub async fn delta_provider(table: &DeltaTable) -> deltalake::DeltaResult<Arc<dyn TableProvider>> {
    let inner = table.table_provider().await?;
    let defaults = defaults_of(table, &inner.schema());
    Ok(Arc::new(BoundedPushdown {
        inner,
        defaults,
        table: table.clone(),
        plain: OnceLock::new(),
    }))
}

#[derive(Debug)]
struct BoundedPushdown {
    inner: Arc<dyn TableProvider>,
    defaults: HashMap<String, Expr>,
    table: DeltaTable,
    /// The table's files when it is plain ([`crate::lake_scan`]): scanned by DataFusion.
    /// Gathered when the table is first read, not when it is resolved: an INSERT target
    /// or a catalog lookup does not parse every file's statistics.
    plain: OnceLock<Option<PlainFiles>>,
}

impl BoundedPushdown {
    fn plain(&self) -> Option<&PlainFiles> {
        self.plain
            .get_or_init(|| crate::lake_scan::plain_files(&self.table, &self.inner.schema()))
            .as_ref()
    }
}

/// Whether `provider` is a lake table's, and if so whether it is plain
/// ([`crate::lake_scan`]); `None` for any other provider.
pub(crate) fn plain_table(provider: &dyn TableProvider) -> Option<bool> {
    let lake = provider.downcast_ref::<BoundedPushdown>()?;
    Some(lake.plain().is_some())
}

/// The Delta table behind a lake table's provider.
pub(crate) fn delta_table(provider: &dyn TableProvider) -> Option<&DeltaTable> {
    Some(&provider.downcast_ref::<BoundedPushdown>()?.table)
}

/// The declared defaults of `table` ([`tidepool_lake::Declared`]) as expressions; one
/// that no longer plans (a dropped function) is left out with a warning.
fn defaults_of(table: &DeltaTable, schema: &SchemaRef) -> HashMap<String, Expr> {
    let declared = tidepool_lake::Declared::of_table(table);
    if declared.defaults.is_empty() {
        return HashMap::new();
    }
    let Ok(df) = datafusion::common::DFSchema::try_from(schema.as_ref().clone()) else {
        return HashMap::new();
    };
    let ctx = datafusion::prelude::SessionContext::new();
    let mut out = HashMap::new();
    for (column, sql) in declared.defaults {
        match ctx.parse_sql_expr(&sql, &df) {
            Ok(e) => {
                out.insert(column, e);
            }
            Err(e) => tracing::warn!(column, sql, "default does not plan: {e}"),
        }
    }
    out
}

/// Nodes of `expr`, stopping once past the bound.
fn size(expr: &Expr) -> usize {
    let mut nodes = 0;
    let _ = expr.apply(|e| {
        nodes += 1;
        if let Expr::InList(list) = e {
            nodes += list.list.len();
        }
        Ok(if nodes > MAX_PUSHDOWN_NODES {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    nodes
}

#[async_trait]
impl TableProvider for BoundedPushdown {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match self.plain() {
            // Filters stay in DataFusion's filter above the scan, which pushes them into
            // the Parquet source for pruning.
            Some(plain) => plain.scan(state, projection, limit),
            None => self.inner.scan(state, projection, filters, limit).await,
        }
    }

    /// The row count of a plain table, from the log (optimizer rules size joins by it).
    fn statistics(&self) -> Option<Statistics> {
        let rows = self.plain()?.num_rows()?;
        Some(Statistics::new_unknown(&self.schema()).with_num_rows(Precision::Exact(rows)))
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        if self.plain().is_some() {
            return Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()]);
        }
        let small: Vec<&Expr> = filters
            .iter()
            .copied()
            .filter(|f| size(f) <= MAX_PUSHDOWN_NODES)
            .collect();
        let mut answers = self.inner.supports_filters_pushdown(&small)?.into_iter();
        Ok(filters
            .iter()
            .map(|f| {
                if size(f) <= MAX_PUSHDOWN_NODES {
                    answers
                        .next()
                        .unwrap_or(TableProviderFilterPushDown::Unsupported)
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    fn get_column_default(&self, column: &str) -> Option<&Expr> {
        self.defaults.get(column)
    }

    async fn insert_into(
        &self,
        state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.inner.insert_into(state, input, insert_op).await
    }
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::{col, lit};

    use super::*;

    #[test]
    fn long_in_lists_are_large() {
        let short = col("a").in_list((0..10).map(lit).collect(), false);
        let long = col("a").in_list((0..10_000).map(lit).collect(), false);
        assert!(size(&short) <= MAX_PUSHDOWN_NODES);
        assert!(size(&long) > MAX_PUSHDOWN_NODES);
    }
}

#[cfg(test)]
mod plain_scan_tests {
    use datafusion::arrow::array::{
        Date32Array, Decimal128Array, Int64Array, RecordBatch, StringArray,
        TimestampMicrosecondArray,
    };
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::prelude::SessionContext;
    use deltalake::DeltaTable;
    use url::Url;

    use super::*;

    fn batch(ids: Vec<i64>, days: Vec<Option<i32>>, names: Vec<&str>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("amount", DataType::Decimal128(12, 2), true),
            Field::new("name", DataType::Utf8, true),
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("day", DataType::Date32, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(ids.clone())),
                Arc::new(
                    Decimal128Array::from(
                        ids.iter().map(|&i| i128::from(i) * 150).collect::<Vec<_>>(),
                    )
                    .with_precision_and_scale(12, 2)
                    .unwrap(),
                ),
                Arc::new(StringArray::from(names)),
                Arc::new(
                    TimestampMicrosecondArray::from(
                        ids.iter()
                            .map(|i| 1_700_000_000_123_456 + i)
                            .collect::<Vec<_>>(),
                    )
                    .with_timezone("UTC"),
                ),
                Arc::new(Date32Array::from(days)),
            ],
        )
        .unwrap()
    }

    /// A partitioned table (with a null partition) read by the plain scan answers as
    /// delta-rs' scan does, filters on partition and data columns included.
    #[tokio::test]
    async fn plain_scans_answer_as_delta_scans() {
        let dir = tempfile::tempdir().unwrap();
        let url = Url::from_directory_path(dir.path()).unwrap();
        let t = DeltaTable::try_from_url(url).await.unwrap();
        let t = t
            .write(vec![batch(
                vec![1, 2, 3],
                vec![Some(19_000), Some(19_001), None],
                vec!["a", "b", "c"],
            )])
            .with_partition_columns(vec!["day"])
            .await
            .unwrap();
        let t = t
            .write(vec![batch(
                vec![4, 5],
                vec![Some(19_001), Some(19_002)],
                vec!["d b", "e%"],
            )])
            .await
            .unwrap();
        let ctx = SessionContext::new();
        let ours = delta_provider(&t).await.unwrap();
        ctx.register_table("ours", ours).unwrap();
        ctx.register_table("theirs", t.table_provider().await.unwrap())
            .unwrap();
        let plan = ctx
            .sql("EXPLAIN SELECT * FROM ours")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let plan = pretty_format_batches(&plan).unwrap().to_string();
        assert!(
            plan.contains("DataSourceExec") && !plan.contains("DeltaScan"),
            "{plan}"
        );
        for q in [
            "SELECT * FROM {} ORDER BY id",
            "SELECT id, name FROM {} WHERE day = DATE '2022-01-09' ORDER BY id",
            "SELECT id FROM {} WHERE day IS NULL",
            "SELECT day, count(*) FROM {} GROUP BY day ORDER BY day",
            "SELECT id FROM {} WHERE amount > 4.50 ORDER BY id",
            "SELECT count(*) AS n, max(at) AS a, min(id) AS i, max(amount) AS m FROM {}",
            "SELECT name FROM {} WHERE at > TIMESTAMP '2023-11-14 22:13:20.123458' ORDER BY 1",
            "SELECT id FROM {} WHERE id = 5",
        ] {
            let run = |table: &str| {
                let sql = q.replace("{}", table);
                let ctx = ctx.clone();
                async move {
                    let batches = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
                    pretty_format_batches(&batches).unwrap().to_string()
                }
            };
            let (a, b) = (run("ours").await, run("theirs").await);
            assert_eq!(a, b, "{q}");
            assert!(a.lines().count() > 4, "{q} returns rows:\n{a}");
        }
    }
    /// A filtered dimension is hashed whole and probed by every partition of the fact
    /// side (`CollectLeft`), as DataFusion plans over Parquet: the plain scan's statistics
    /// give rows, not the files' compressed size, as the size to judge it by. With the file
    /// size as its size in memory, a filtered dimension carrying a string column, stored
    /// in a file over the byte threshold (here set low), made DataFusion repartition the
    /// fact side instead.
    #[tokio::test]
    async fn small_filtered_dimensions_are_collected_not_repartitioned() {
        let dir = tempfile::tempdir().unwrap();
        let url = |name: &str| {
            let path = dir.path().join(name);
            std::fs::create_dir_all(&path).unwrap();
            Url::from_directory_path(path).unwrap()
        };
        let names: Vec<String> = (0..2000).map(|i| format!("name {i}")).collect();
        let dim = DeltaTable::try_from_url(url("dim"))
            .await
            .unwrap()
            .write(vec![batch(
                (0..2000).collect(),
                vec![Some(19_000); 2000],
                names.iter().map(String::as_str).collect(),
            )])
            .await
            .unwrap();
        let fact = DeltaTable::try_from_url(url("fact"))
            .await
            .unwrap()
            .write(vec![batch(
                (0..20_000).map(|i| i % 2000).collect(),
                vec![Some(19_001); 20_000],
                vec!["f"; 20_000],
            )])
            .await
            .unwrap();
        let config = datafusion::prelude::SessionConfig::new()
            .with_target_partitions(2)
            .set_usize(
                "datafusion.optimizer.hash_join_single_partition_threshold",
                1000,
            );
        let ctx = SessionContext::new_with_config(config);
        ctx.register_table("dim", delta_provider(&dim).await.unwrap())
            .unwrap();
        ctx.register_table("fact", delta_provider(&fact).await.unwrap())
            .unwrap();
        let sql = "EXPLAIN SELECT dim.name, count(*) FROM fact JOIN dim ON fact.id = dim.id \
                   WHERE dim.name LIKE 'name 1%' GROUP BY dim.name";
        let plan = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let plan = pretty_format_batches(&plan).unwrap().to_string();
        assert!(plan.contains("HashJoinExec: mode=CollectLeft"), "{plan}");
    }
}
