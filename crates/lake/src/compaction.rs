//! Auto-compaction: tables written in small pieces are compacted in the background.
//!
//! Every autocommit INSERT, small transaction or model run adds at least one file, and
//! delta-rs replays a table's whole file list each time it moves a snapshot to a newer
//! version: at a few hundred small files every later commit and read of the table pays for
//! them (`bench/txn.sh`: a block of 10 INSERTs into 3 tables took 25 ms at 50 files per
//! table and 60 ms at 200). After a commit of this process, a table holding
//! [`AutoCompact::min_files`] files smaller than [`AutoCompact::file_size`] is compacted by
//! Delta OPTIMIZE into files of about that size, in a background task, one per table at a
//! time. The OPTIMIZE commit changes no rows (`dataChange = false`): readers keep their
//! version, appends committed meanwhile do not conflict with it, and a transaction that
//! changed rows of a compacted file gets 40001, as against any concurrent writer. Larger
//! files (bulk loads, earlier compactions past the size) are left alone, so a table growing
//! by small writes rewrites at most `file_size` bytes per `min_files` commits.
//!
//! Several processes writing one lake compact one table one at a time: a compaction
//! takes the lease `compact/<schema>.<table>` ([`crate::lease`]) and reads the table's
//! newest version under it. delta-rs 1.1.3 does not see two OPTIMIZEs that remove the
//! same files as conflicting (its delete-delete check skips removes with
//! `dataChange = false`), so two compactions racing from one snapshot would both commit
//! and every row of the files they shared would be there twice (seen with three writer
//! processes on S3: 125 rows for 75 inserts). Every other OPTIMIZE tidepool runs (bronze
//! maintenance, `tidepool maintain`, the admin API's Maintain) goes through
//! [`crate::Lake::optimize`], which takes the same lease.

use std::collections::HashSet;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::Duration;

use deltalake::DeltaTable;
use deltalake::operations::optimize::Metrics;
use parking_lot::Mutex;

use crate::LakeError;

/// When and how tables are compacted (`[lake]` settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoCompact {
    /// Compact once a table has this many files under `file_size`; 0 turns it off.
    pub min_files: usize,
    /// Files under this size are small; compaction writes files of about this size.
    pub file_size: u64,
}

/// Tables being compacted, so a table has one compaction at a time.
#[derive(Default)]
pub(crate) struct Running(Arc<Mutex<HashSet<(String, String)>>>);

impl AutoCompact {
    /// Whether `t` has enough small files to compact.
    fn due(&self, t: &DeltaTable) -> bool {
        if self.min_files == 0 {
            return false;
        }
        let Ok(snapshot) = t.snapshot() else {
            return false;
        };
        let files = snapshot.log_data();
        if files.num_files() < self.min_files {
            return false;
        }
        let limit = i64::try_from(self.file_size).unwrap_or(i64::MAX);
        files.iter().filter(|f| f.size() < limit).count() >= self.min_files
    }

    /// Starts compacting `key` (whose newest state is `t`) in the background if it is due
    /// and not being compacted; the compacted table replaces `cached` when newer.
    pub(crate) fn after_commit(
        &self,
        lake: Arc<crate::Lake>,
        running: &Running,
        key: (String, String),
        t: &DeltaTable,
        cached: Arc<tokio::sync::Mutex<DeltaTable>>,
    ) {
        if !self.due(t) || !running.0.lock().insert(key.clone()) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            running.0.lock().remove(&key);
            return;
        };
        let (mut t, size, running, this) = (t.clone(), self.file_size, running.0.clone(), *self);
        handle.spawn(async move {
            let name = format!("{}.{}", key.0, key.1);
            let work = async || {
                // Another process's compaction may have committed since `t` was read.
                if let Err(e) = t.load().await {
                    tracing::debug!(table = %name, error = %e, "cannot reload before compacting");
                } else if this.due(&t) {
                    this.compact(&name, t, size, &cached).await;
                }
            };
            if let Err(e) = lake
                .under_compaction_lease(&name, Duration::ZERO, work)
                .await
            {
                tracing::debug!(table = %name, error = %e, "not compacted here");
            }
            running.lock().remove(&key);
        });
    }

    /// One OPTIMIZE of `t` (held under the table's lease).
    async fn compact(
        &self,
        name: &str,
        t: DeltaTable,
        size: u64,
        cached: &tokio::sync::Mutex<DeltaTable>,
    ) {
        {
            let target = NonZeroU64::new(size.max(1)).unwrap_or(NonZeroU64::MIN);
            match t.optimize().with_target_size(target).await {
                Ok((compacted, metrics)) => {
                    tracing::debug!(table = %name, removed = metrics.num_files_removed,
                        added = metrics.num_files_added, version = ?compacted.version(),
                        "auto-compacted");
                    let mut c = cached.lock().await;
                    if compacted.version() > c.version() {
                        *c = compacted;
                    }
                }
                // A concurrent writer changed one of the files: the next commit retries.
                Err(e) => tracing::debug!(table = %name, error = %e, "auto-compaction skipped"),
            }
        }
    }
}

impl crate::Lake {
    /// Delta OPTIMIZE of `schema.table` into files of about `target` bytes, under the
    /// table's compaction lease: waits up to `wait` while another process compacts it, then
    /// answers [`LakeError::Busy`]. The table is read at its newest version under the lease.
    /// `None` when the table does not exist.
    pub async fn optimize(
        &self,
        schema: &str,
        table: &str,
        target: u64,
        wait: Duration,
    ) -> Result<Option<(DeltaTable, Metrics)>, LakeError> {
        let work = async || match self.real_table(schema, table).await? {
            Some(t) => {
                let target = NonZeroU64::new(target.max(1)).unwrap_or(NonZeroU64::MIN);
                Ok(Some(t.optimize().with_target_size(target).await?))
            }
            None => Ok(None),
        };
        self.under_compaction_lease(&format!("{schema}.{table}"), wait, work)
            .await?
    }

    /// Runs `work` holding the compaction lease of `name` (`schema.table`), waiting up to
    /// `wait` for another process to release it ([`LakeError::Busy`] after that); the
    /// lease is released when `work` ends.
    async fn under_compaction_lease<T>(
        &self,
        name: &str,
        wait: Duration,
        work: impl AsyncFnOnce() -> T,
    ) -> Result<T, LakeError> {
        let lease = format!("compact/{name}");
        let holder = holder();
        let deadline = tokio::time::Instant::now() + wait;
        while !self.hold_lease(&lease, &holder, LEASE).await? {
            if tokio::time::Instant::now() >= deadline {
                return Err(LakeError::Busy(name.to_string()));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let done = work().await;
        if let Err(e) = self.hold_lease(&lease, &holder, Duration::ZERO).await {
            tracing::debug!(table = %name, error = %e, "compaction lease not released");
        }
        Ok(done)
    }
}

/// How long a compaction may hold its table's lease (it is released when done; a process
/// that dies while compacting blocks others' compaction of that table this long).
const LEASE: Duration = Duration::from_secs(300);

/// This process, as the holder of compaction leases.
fn holder() -> String {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| format!("compaction-{}-{}", std::process::id(), uuid::Uuid::new_v4()))
        .clone()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::prelude::{col, lit};

    use crate::{Lake, LakeConfig};

    fn batch(ids: Vec<i64>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(ids))]).unwrap()
    }

    async fn live_rows(lake: &Lake) -> (usize, i64) {
        let t = lake.table("gold", "t").await.unwrap().unwrap();
        let files = t.snapshot().unwrap().log_data();
        let rows = files
            .iter()
            .map(|f| {
                f.num_records().unwrap_or(0) as i64
                    - f.deletion_vector_descriptor()
                        .map(|d| d.cardinality)
                        .unwrap_or(0)
            })
            .sum();
        (files.num_files(), rows)
    }

    /// With `min_files = 4`, small appends after a deletion get the table compacted in the
    /// background: every row kept, the deleted one (a deletion vector) still gone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn small_appends_are_compacted_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(&LakeConfig {
            root: dir.path().display().to_string(),
            auto_compact_min_files: 4,
            ..LakeConfig::default()
        })
        .unwrap();
        std::fs::create_dir_all(dir.path().join("gold/t")).unwrap();
        let url = lake.table_url("gold", "t").unwrap();
        let t = deltalake::DeltaTable::try_from_url(url).await.unwrap();
        let t = t.write(vec![batch(vec![0, 1])]).await.unwrap();
        crate::enable_deletion_vectors(t).await.unwrap();
        let state = Arc::new(
            datafusion::execution::SessionStateBuilder::new()
                .with_default_features()
                .with_query_planner(deltalake::delta_datafusion::planner::DeltaPlanner::new())
                .build(),
        );
        let deleted = lake
            .delete_where("gold", "t", Some(col("id").eq(lit(0i64))), state)
            .await
            .unwrap();
        assert_eq!((deleted.rows, deleted.files_removed), (1, 0));
        // Each append waits for the compaction it started: 1 file (with its deletion
        // vector), 2, 3, 4 small files -> compacted to 1, ... nine appends end at 1.
        for i in 1..10 {
            let t = lake.table("gold", "t").await.unwrap().unwrap();
            let written = t
                .write(vec![batch(vec![i * 10, i * 10 + 1])])
                .await
                .unwrap();
            lake.remember("gold", "t", &written).await;
            for _ in 0..200 {
                if lake.compacting.0.lock().is_empty() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            assert_eq!(live_rows(&lake).await.1, 1 + 2 * i);
        }
        assert_eq!(live_rows(&lake).await, (1, 19));
        let t = lake.real_table("gold", "t").await.unwrap().unwrap();
        let ops: Vec<String> = futures::TryStreamExt::try_collect::<Vec<_>>(t.history(None))
            .await
            .unwrap()
            .into_iter()
            .filter_map(|c| c.operation)
            .collect();
        assert!(ops.iter().any(|o| o == "OPTIMIZE"), "{ops:?}");
    }

    /// An OPTIMIZE asked for while another process holds the table's compaction lease
    /// waits for it, answers Busy when it does not end in time, and compacts once it is
    /// released.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn optimize_waits_for_another_process_compacting_the_table() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(&LakeConfig {
            root: dir.path().display().to_string(),
            ..LakeConfig::default()
        })
        .unwrap();
        std::fs::create_dir_all(dir.path().join("gold/t")).unwrap();
        let url = lake.table_url("gold", "t").unwrap();
        let mut t = deltalake::DeltaTable::try_from_url(url).await.unwrap();
        for i in 0..3 {
            t = t.write(vec![batch(vec![i])]).await.unwrap();
        }
        let other = std::time::Duration::from_secs(60);
        assert!(
            lake.hold_lease("compact/gold.t", "other", other)
                .await
                .unwrap()
        );
        let wait = std::time::Duration::from_millis(500);
        let busy = lake.optimize("gold", "t", 1 << 20, wait).await.unwrap_err();
        assert!(matches!(busy, crate::LakeError::Busy(_)), "{busy}");
        let zero = std::time::Duration::ZERO;
        assert!(
            lake.hold_lease("compact/gold.t", "other", zero)
                .await
                .unwrap()
        );
        let (t, metrics) = lake
            .optimize("gold", "t", 1 << 20, wait)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((metrics.num_files_removed, metrics.num_files_added), (3, 1));
        assert_eq!(t.snapshot().unwrap().log_data().num_files(), 1);
        // The lease is released: the other process takes it at once.
        assert!(
            lake.hold_lease("compact/gold.t", "other", other)
                .await
                .unwrap()
        );
        let none = lake.optimize("gold", "none", 1 << 20, zero).await.unwrap();
        assert!(none.is_none());
    }
}
