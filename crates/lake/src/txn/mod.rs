//! Transactions over several statements and tables: `BEGIN ... COMMIT`.
//!
//! A [`Txn`] pins each table at the version it first reads (snapshot isolation per
//! table) and stages its writes: every delta-rs operation inside the transaction commits
//! into an [`overlay::Overlay`] of the table's log, so later statements read the
//! transaction's own writes and nobody else sees them. `COMMIT` folds each table's staged
//! commits into one Delta commit ([`squash::Squashed`]), checks it against what others
//! committed since the snapshot (two writers of the same rows' file: the later gets
//! [`LakeError::SerializationFailure`], SQLSTATE 40001), and publishes. `ROLLBACK` forgets
//! the staged commits and deletes the data files only they named; a savepoint is a mark in
//! each table's staged log.
//!
//! Statements find their transaction through a task-local ([`scope`], [`current`]):
//! [`crate::Lake::table`] answers from the transaction's view inside one, so every write
//! path of the lake takes part without a transaction argument.

mod coordinator;
mod overlay;
mod pending;
mod squash;

pub use pending::deferring;

pub(crate) use coordinator::{RecordCache, note_read};
pub use coordinator::{Verdict, recording};

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::array::RecordBatch;
use datafusion::execution::SessionState;
use deltalake::DeltaTable;
use deltalake::kernel::transaction::TransactionError;
use deltalake::logstore::{CommitOrBytes, LogStore, StorageConfig, default_logstore};
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::Value;

use crate::{Lake, LakeError};
use overlay::{Overlay, Pin};
use squash::Squashed;

tokio::task_local! {
    static CURRENT: Option<Arc<Txn>>;
}

/// The transaction the running statement belongs to, if any.
pub fn current() -> Option<Arc<Txn>> {
    CURRENT.try_with(Clone::clone).ok().flatten()
}

/// `commit`, and inside a transaction without delta-rs's expired-log cleanup: it lists the
/// table's whole log after every commit, and a staged commit must not delete real files.
pub(crate) fn commit_properties(
    commit: deltalake::kernel::transaction::CommitProperties,
) -> deltalake::kernel::transaction::CommitProperties {
    if current().is_some() {
        commit.with_cleanup_expired_logs(Some(false))
    } else {
        commit
    }
}

/// Runs `fut` inside `txn`, or outside any transaction (even within an outer scope) when
/// `None`. A statement's [`deferring`] mark goes along (work spawned on another runtime).
pub fn scope<F: Future>(txn: Option<Arc<Txn>>, fut: F) -> impl Future<Output = F::Output> {
    CURRENT.scope(txn, pending::carry(fut))
}

/// One table as the transaction sees it.
struct Entry {
    /// The table's `_delta_log` path in the store.
    log: String,
    /// The table's folder in the store.
    dir: String,
    base: u64,
    /// The real table at `base`: its log store publishes.
    real: DeltaTable,
    /// The table through the overlay, brought up to date on each read.
    view: DeltaTable,
}

impl Entry {
    fn fresh_view(&self, overlay: &Arc<Overlay>) -> Result<DeltaTable, LakeError> {
        let url = self.real.table_url().clone();
        let root: Arc<dyn ObjectStore> = overlay.clone();
        let prefixed: Arc<dyn ObjectStore> = Arc::new(PrefixStore::new(
            root.clone(),
            ObjectPath::from(self.dir.as_str()),
        ));
        let store = default_logstore(prefixed, root, &url, &StorageConfig::default());
        let mut view = DeltaTable::new(store);
        view.state = self.real.state.clone();
        Ok(view)
    }

    /// After publishing the one staged commit the view holds, at the version the view
    /// stands at (nobody committed in between): the view's files are those of the real
    /// table, so the lake keeps the view's state with the real log instead of rebuilding it.
    async fn remember_published(&self, lake: &Lake, schema: &str, table: &str) {
        let mut real = DeltaTable::new(self.real.log_store());
        real.state = self.view.state.clone();
        lake.remember_real(schema, table, &real).await;
    }

    /// The staged commits, oldest first.
    async fn staged(&self, overlay: &Overlay) -> Result<Vec<Bytes>, LakeError> {
        let mut out = Vec::new();
        let mut v = self.base + 1;
        while let Some(c) = overlay.staged_commit(&self.log, v).await? {
            out.push(c);
            v += 1;
        }
        Ok(out)
    }
}

/// A mark to roll back to: each table's newest staged version at the time.
#[derive(Debug, Clone, Default)]
pub struct Savepoint(BTreeMap<(String, String), u64>);

/// What a commit published.
#[derive(Debug, Clone, Default)]
pub struct Published {
    /// `schema.table` and the version of its new commit, for each table written.
    pub tables: Vec<(String, u64)>,
}

/// A transaction over one lake.
pub struct Txn {
    id: String,
    root: url::Url,
    overlay: Arc<Overlay>,
    tables: tokio::sync::Mutex<BTreeMap<(String, String), Entry>>,
    pending: pending::Pending,
}

impl std::fmt::Debug for Txn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Txn").field("id", &self.id).finish()
    }
}

impl Lake {
    /// Starts a transaction over this lake.
    pub fn begin(&self) -> Arc<Txn> {
        Arc::new(Txn {
            id: uuid::Uuid::new_v4().to_string(),
            root: self.root.clone(),
            overlay: Arc::new(Overlay::new(self.store.clone())),
            tables: tokio::sync::Mutex::new(BTreeMap::new()),
            pending: pending::Pending::default(),
        })
    }
}

impl Txn {
    /// The transaction's id (written into each commit it publishes).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether this transaction belongs to `lake`.
    pub(crate) fn serves(&self, lake: &Lake) -> bool {
        self.root == lake.root
    }

    /// `schema.table` as the transaction sees it: pinned at its first read, with the
    /// transaction's staged writes. `None` if there is no such Delta table.
    /// Rows an INSERT of this transaction buffered are written first, unless the running
    /// statement is [`deferring`].
    pub(crate) async fn table(
        self: &Arc<Self>,
        lake: &Lake,
        schema: &str,
        table: &str,
    ) -> Result<Option<DeltaTable>, LakeError> {
        let key = (schema.to_string(), table.to_string());
        if !pending::deferred() && self.pending.holds(&key) {
            Box::pin(self.flush(lake, &key)).await?;
        }
        let mut tables = self.tables.lock().await;
        if let Some(e) = tables.get_mut(&key) {
            crate::catch_up::catch_up(&mut e.view).await?;
            return Ok(Some(e.view.clone()));
        }
        let Some(real) = lake.real_table(schema, table).await? else {
            return Ok(None);
        };
        let base = real.version().unwrap_or(0);
        let dir = lake.object_path(&format!("{schema}/{table}")).to_string();
        let log = format!("{dir}/_delta_log");
        self.overlay.pin(&log, Pin { base });
        coordinator::note_read(schema, table, base);
        let mut entry = Entry {
            log,
            dir,
            base,
            view: real.clone(),
            real,
        };
        entry.view = entry.fresh_view(&self.overlay)?;
        let view = entry.view.clone();
        tables.insert(key, entry);
        Ok(Some(view))
    }

    /// Takes `t`, the table a statement of this transaction just wrote (through the
    /// overlay), as the transaction's view of it when it is newer.
    pub(crate) async fn remember(&self, schema: &str, table: &str, t: &DeltaTable) {
        let key = (schema.to_string(), table.to_string());
        if let Some(e) = self.tables.lock().await.get_mut(&key)
            && t.version() > e.view.version()
        {
            e.view = t.clone();
        }
    }

    /// Buffers rows an INSERT that read no table adds to `schema.table` (checked already);
    /// they are written as one file when the table is next read, or at COMMIT.
    pub async fn buffer(
        self: &Arc<Self>,
        lake: &Lake,
        schema: &str,
        table: &str,
        batches: Vec<RecordBatch>,
        state: Arc<SessionState>,
    ) -> Result<(), LakeError> {
        let key = (schema.to_string(), table.to_string());
        // Delta checks NOT NULL when the rows are written: check now, so the INSERT fails.
        let Some(t) = self.table(lake, schema, table).await? else {
            return Err(LakeError::TableNotFound(format!("{schema}.{table}")));
        };
        for field in t.snapshot()?.schema().fields().filter(|f| !f.is_nullable()) {
            let nulls = batches.iter().any(|b| {
                b.column_by_name(field.name())
                    .is_none_or(|c| c.null_count() > 0)
            });
            if nulls {
                return Err(LakeError::Arrow(
                    datafusion::arrow::error::ArrowError::InvalidArgumentError(format!(
                        "Column '{}' is declared as non-nullable but contains null values",
                        field.name()
                    )),
                ));
            }
        }
        if self.pending.add(key.clone(), batches, state) {
            self.flush(lake, &key).await?;
        }
        Ok(())
    }

    /// Writes `key`'s buffered rows as one staged append.
    async fn flush(self: &Arc<Self>, lake: &Lake, key: &(String, String)) -> Result<(), LakeError> {
        let Some(f) = self.pending.take(key)? else {
            return Ok(());
        };
        scope(
            Some(self.clone()),
            lake.write_plan(&key.0, &key.1, f.plan, f.state, crate::WriteMode::Append),
        )
        .await?;
        Ok(())
    }

    /// Whether the transaction has staged any write.
    pub async fn has_writes(&self) -> bool {
        if self.pending.any() {
            return true;
        }
        let tables = self.tables.lock().await;
        for e in tables.values() {
            if matches!(
                self.overlay.staged_commit(&e.log, e.base + 1).await,
                Ok(Some(_))
            ) {
                return true;
            }
        }
        false
    }

    /// Lets go of tables the transaction has not written, so their next read takes the
    /// newest version (after a statement that ran outside the transaction changed them).
    pub async fn unpin_unwritten(&self) {
        let mut tables = self.tables.lock().await;
        let mut clean = Vec::new();
        for (k, e) in tables.iter() {
            if !self.pending.holds(k)
                && !matches!(
                    self.overlay.staged_commit(&e.log, e.base + 1).await,
                    Ok(Some(_))
                )
            {
                clean.push(k.clone());
            }
        }
        for k in clean {
            tables.remove(&k);
        }
    }

    /// A mark [`Txn::rollback_to`] returns to.
    /// Buffered rows are written first: everything before the mark is staged.
    pub async fn savepoint(self: &Arc<Self>, lake: &Lake) -> Result<Savepoint, LakeError> {
        for key in self.pending.keys() {
            self.flush(lake, &key).await?;
        }
        let tables = self.tables.lock().await;
        let mut marks = BTreeMap::new();
        for (k, e) in tables.iter() {
            let staged = e.staged(&self.overlay).await.map(|s| s.len()).unwrap_or(0);
            marks.insert(k.clone(), e.base + staged as u64);
        }
        Ok(Savepoint(marks))
    }

    /// Forgets what the transaction wrote after `mark`.
    pub async fn rollback_to(&self, mark: &Savepoint) -> Result<(), LakeError> {
        // Rows still buffered came after the mark (a savepoint writes them out).
        self.pending.clear();
        let mut tables = self.tables.lock().await;
        for (k, e) in tables.iter_mut() {
            let keep = mark.0.get(k).copied().unwrap_or(e.base);
            let dropped = self.overlay.unstage_from(&e.log, keep + 1).await?;
            self.delete_new_files(&e.dir, &dropped).await;
            e.view = e.fresh_view(&self.overlay)?;
        }
        Ok(())
    }

    /// Forgets everything the transaction wrote and deletes the data files only it named.
    pub async fn rollback(&self) -> Result<(), LakeError> {
        self.rollback_to(&Savepoint::default()).await
    }

    /// Data files that staged commits wrote (an add without a deletion vector names a
    /// file the commit created), deleted best-effort: nothing references them.
    async fn delete_new_files(&self, dir: &str, commits: &[Bytes]) {
        for c in commits {
            let Ok(actions) = squash::actions(c) else {
                continue;
            };
            for (kind, a) in actions {
                let fresh = kind == "add"
                    && a.get("deletionVector")
                        .is_none_or(serde_json::Value::is_null);
                if let (true, Some(p)) = (fresh, a.get("path").and_then(Value::as_str)) {
                    self.delete_file(dir, p).await;
                }
            }
        }
    }

    async fn delete_file(&self, dir: &str, relative: &str) {
        let path = ObjectPath::from_url_path(format!("{dir}/{relative}"))
            .unwrap_or_else(|_| ObjectPath::from(format!("{dir}/{relative}")));
        if let Err(e) = self.overlay_real().delete(&path).await {
            tracing::debug!("transaction cleanup of {path}: {e}");
        }
    }

    fn overlay_real(&self) -> Arc<dyn ObjectStore> {
        self.overlay.real()
    }

    /// Publishes the transaction: per table, one Delta commit of everything it staged.
    /// Every table is checked against concurrent commits before any is published; a
    /// conflict found while publishing undoes the tables already published.
    pub async fn commit(self: &Arc<Self>, lake: &Lake) -> Result<Published, LakeError> {
        // Buffered rows of different tables are written side by side.
        let keys = self.pending.keys();
        futures::future::try_join_all(keys.iter().map(|key| self.flush(lake, key))).await?;
        let mut tables = self.tables.lock().await;
        // (schema.table, its entry, what it publishes)
        let mut work: Vec<(String, &mut Entry, Squashed)> = Vec::new();
        // Tables whose view holds their one staged commit: (index in work, its version,
        // schema, table).
        let mut whole: Vec<(usize, u64, String, String)> = Vec::new();
        for ((schema, table), e) in tables.iter_mut() {
            let staged = e.staged(&self.overlay).await?;
            if staged.is_empty() {
                continue;
            }
            let s = Squashed::of(&staged)?;
            if !s.is_empty() {
                if staged.len() == 1 && e.view.version() == Some(e.base + 1) {
                    whole.push((work.len(), e.base + 1, schema.clone(), table.clone()));
                }
                work.push((format!("{schema}.{table}"), e, s));
            }
        }
        futures::future::try_join_all(work.iter_mut().map(|(name, e, s)| check(e, s, name)))
            .await?;
        // Readers of several tables wait out a multi-table publish (coordinator).
        let announced = work.len() >= 2;
        if announced {
            let names: Vec<String> = work.iter().map(|(name, _, _)| name.clone()).collect();
            lake.announce(&self.id, &names).await?;
        }
        let now = now_ms();
        let mut published: Vec<(usize, u64)> = Vec::new();
        for i in 0..work.len() {
            let result = {
                let (name, e, s) = &mut work[i];
                let bytes = Bytes::from(s.commit_bytes(&self.id, now));
                publish(e, s, bytes, name).await
            };
            match result {
                Ok(v) => published.push((i, v)),
                Err(err) => {
                    for (j, _) in &published {
                        let (_, e, s) = &mut work[*j];
                        undo(e, s, &self.id).await;
                    }
                    if announced {
                        lake.withdraw(&self.id).await;
                    }
                    return Err(err);
                }
            }
        }
        for (i, v, schema, table) in &whole {
            if published.contains(&(*i, *v)) {
                work[*i].1.remember_published(lake, schema, table).await;
            }
        }
        let published: Vec<(String, u64)> = published
            .into_iter()
            .map(|(i, v)| (work[i].0.clone(), v))
            .collect();
        if announced
            && let Err(e) = lake
                .published(&self.id, published.iter().cloned().collect())
                .await
        {
            tracing::warn!("transaction {}: publishing its record: {e}", self.id);
        }
        for (_, e, s) in &work {
            for p in &s.cancelled {
                self.delete_file(&e.dir, p).await;
            }
        }
        Ok(Published { tables: published })
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Brings `e.real` to the newest version and fails with 40001 if what others committed
/// since the transaction's snapshot conflicts with `s`.
async fn check(e: &mut Entry, s: &Squashed, name: &str) -> Result<(), LakeError> {
    crate::catch_up::catch_up(&mut e.real).await?;
    let latest = e.real.version().unwrap_or(0);
    if latest <= e.base {
        return Ok(());
    }
    let store = e.real.log_store();
    let mut theirs = Vec::new();
    for v in e.base + 1..=latest {
        if let Some(c) = store.read_commit_entry(v).await? {
            theirs.push(c);
        }
    }
    match s.conflict_with(&theirs)? {
        Some(why) => Err(LakeError::SerializationFailure(format!("{name}: {why}"))),
        None => {
            e.base = latest;
            Ok(())
        }
    }
}

/// Writes `bytes` as the next version of the real table, re-checking against commits that
/// land in between.
async fn publish(e: &mut Entry, s: &Squashed, bytes: Bytes, name: &str) -> Result<u64, LakeError> {
    loop {
        let version = e.real.version().unwrap_or(0) + 1;
        let store = e.real.log_store();
        match store
            .write_commit_entry(
                version,
                CommitOrBytes::LogBytes(bytes.clone()),
                uuid::Uuid::new_v4(),
            )
            .await
        {
            Ok(()) => {
                // A checkpoint every `delta.checkpointInterval` versions (100 unless the
                // table says), as delta-rs's own commits do, but written in the background:
                // it replays the whole log, and the version it describes never changes.
                if version.is_multiple_of(checkpoint_interval(&e.real)) {
                    checkpoint_later(e.real.clone(), version, name.to_string());
                }
                return Ok(version);
            }
            Err(TransactionError::VersionAlreadyExists(_)) => check(e, s, name).await?,
            Err(other) => return Err(LakeError::Delta(other.into())),
        }
    }
}

/// Writes a checkpoint of `version` of `table` (an older state of it) in the background.
fn checkpoint_later(mut table: DeltaTable, version: u64, name: String) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    handle.spawn(async move {
        let written = async {
            table.update_incremental(Some(version)).await?;
            deltalake::checkpoints::create_checkpoint(&table, None).await
        };
        if let Err(err) = written.await {
            tracing::warn!("checkpoint of {name} at version {version}: {err}");
        }
    });
}

/// The table's `delta.checkpointInterval` (100 when unset).
fn checkpoint_interval(t: &DeltaTable) -> u64 {
    use deltalake::table::config::TablePropertiesExt;
    t.snapshot()
        .map(|s| s.table_config().checkpoint_interval().get())
        .unwrap_or(100)
}

/// Publishes the inverse of `s` (its adds removed, its removes added back) after a later
/// table of the same transaction failed to publish. Logged, not raised: the caller is
/// already reporting the failure.
async fn undo(e: &mut Entry, s: &Squashed, txn: &str) {
    let inverse = s.inverse();
    let bytes = Bytes::from(inverse.commit_bytes(&format!("{txn} (undone)"), now_ms()));
    if let Err(err) = publish(e, &inverse, bytes, "undo").await {
        tracing::error!("transaction {txn}: undoing a published table failed: {err}");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::prelude::{col, lit};

    use super::scope;
    use crate::{Lake, LakeError};

    fn batch(ids: Vec<i64>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(ids))]).unwrap()
    }

    async fn lake(dir: &std::path::Path, tables: &[&str]) -> Arc<Lake> {
        let lake = crate::test_lake(dir);
        for t in tables {
            std::fs::create_dir_all(dir.join("gold").join(t)).unwrap();
            let url = lake.table_url("gold", t).unwrap();
            let table = deltalake::DeltaTable::try_from_url(url).await.unwrap();
            table.write(vec![batch(vec![1, 2, 3])]).await.unwrap();
        }
        lake
    }

    async fn rows(lake: &Lake, table: &str) -> i64 {
        let t = lake.table("gold", table).await.unwrap().unwrap();
        t.snapshot()
            .unwrap()
            .log_data()
            .iter()
            .map(|f| f.num_records().unwrap_or(0) as i64)
            .sum::<i64>()
            - t.snapshot()
                .unwrap()
                .log_data()
                .iter()
                .map(|f| {
                    f.deletion_vector_descriptor()
                        .map(|d| d.cardinality)
                        .unwrap_or(0)
                })
                .sum::<i64>()
    }

    async fn append(lake: &Lake, table: &str, ids: Vec<i64>) {
        let t = lake.table("gold", table).await.unwrap().unwrap();
        t.write(vec![batch(ids)]).await.unwrap();
    }

    #[tokio::test]
    async fn writes_of_several_tables_appear_together_at_commit() {
        let dir = tempfile::tempdir().unwrap();
        let lake = lake(dir.path(), &["a", "b"]).await;
        let txn = lake.begin();
        scope(Some(txn.clone()), async {
            append(&lake, "a", vec![4]).await;
            append(&lake, "a", vec![5]).await;
            append(&lake, "b", vec![6]).await;
            // The transaction reads its own writes.
            assert_eq!(rows(&lake, "a").await, 5);
        })
        .await;
        // Nobody else does.
        assert_eq!(rows(&lake, "a").await, 3);
        assert_eq!(rows(&lake, "b").await, 3);
        let published = txn.commit(&lake).await.unwrap();
        assert_eq!(published.tables.len(), 2);
        assert_eq!(rows(&lake, "a").await, 5);
        assert_eq!(rows(&lake, "b").await, 4);
        // Two appends became one Delta commit.
        let t = lake.table("gold", "a").await.unwrap().unwrap();
        assert_eq!(t.version(), Some(1));
    }

    /// Buffers `ids` as an INSERT ... VALUES in a block does.
    async fn buffer(lake: &Lake, txn: &Arc<super::Txn>, table: &str, ids: Vec<i64>) {
        let state = Arc::new(
            datafusion::execution::SessionStateBuilder::new()
                .with_default_features()
                .with_query_planner(deltalake::delta_datafusion::planner::DeltaPlanner::new())
                .build(),
        );
        super::deferring(txn.buffer(lake, "gold", table, vec![batch(ids)], state))
            .await
            .unwrap();
    }

    /// Staged commits of `table` in `txn`.
    async fn staged(txn: &super::Txn, table: &str) -> usize {
        let tables = txn.tables.lock().await;
        let e = &tables[&("gold".to_string(), table.to_string())];
        e.staged(&txn.overlay).await.unwrap().len()
    }

    #[tokio::test]
    async fn buffered_inserts_are_one_write_seen_by_the_next_read() {
        let dir = tempfile::tempdir().unwrap();
        let lake = lake(dir.path(), &["a", "b"]).await;
        let txn = lake.begin();
        scope(Some(txn.clone()), async {
            buffer(&lake, &txn, "a", vec![4]).await;
            buffer(&lake, &txn, "a", vec![5, 6]).await;
            buffer(&lake, &txn, "b", vec![7]).await;
            // Nothing is written until the table is read.
            assert_eq!(staged(&txn, "a").await, 0);
            assert!(txn.has_writes().await);
            // A read writes the table's rows out, as one staged commit, and sees them.
            assert_eq!(rows(&lake, "a").await, 6);
            assert_eq!(staged(&txn, "a").await, 1);
            assert_eq!(staged(&txn, "b").await, 0);
            // A savepoint writes out the rest; rows buffered after it roll back.
            let mark = txn.savepoint(&lake).await.unwrap();
            assert_eq!(staged(&txn, "b").await, 1);
            buffer(&lake, &txn, "b", vec![8]).await;
            txn.rollback_to(&mark).await.unwrap();
            assert_eq!(rows(&lake, "b").await, 4);
            buffer(&lake, &txn, "b", vec![9, 10]).await;
        })
        .await;
        // Nobody else sees buffered rows; COMMIT writes and publishes them.
        assert_eq!(rows(&lake, "b").await, 3);
        txn.commit(&lake).await.unwrap();
        assert_eq!(rows(&lake, "a").await, 6);
        assert_eq!(rows(&lake, "b").await, 6);
        let t = lake.table("gold", "b").await.unwrap().unwrap();
        assert_eq!(t.version(), Some(1));
        // "a" published its one staged commit: the lake keeps the transaction's view of it
        // as the real table, and later commits of others follow it.
        let a = lake.table("gold", "a").await.unwrap().unwrap();
        assert_eq!(a.version(), Some(1));
        let store = a.log_store().root_object_store(None).to_string();
        assert!(!store.contains("TransactionOverlay"), "{store}");
        append(&lake, "a", vec![11]).await;
        assert_eq!(rows(&lake, "a").await, 7);
    }

    /// A published commit gets a checkpoint at the table's own interval.
    #[tokio::test]
    async fn commits_checkpoint_at_the_table_interval() {
        let dir = tempfile::tempdir().unwrap();
        let lake = lake(dir.path(), &["a"]).await;
        let t = lake.real_table("gold", "a").await.unwrap().unwrap();
        t.set_tbl_properties()
            .with_properties(std::collections::HashMap::from([(
                "delta.checkpointInterval".to_string(),
                "3".to_string(),
            )]))
            .await
            .unwrap();
        // Versions: 0 create, 1 properties; the transactions publish 2, then 3.
        for id in [10, 11] {
            let txn = lake.begin();
            scope(Some(txn.clone()), append(&lake, "a", vec![id])).await;
            txn.commit(&lake).await.unwrap();
        }
        // Written in the background.
        let checkpoint = dir
            .path()
            .join("gold/a/_delta_log/00000000000000000003.checkpoint.parquet");
        for _ in 0..100 {
            if checkpoint.exists() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(checkpoint.exists());
        assert_eq!(rows(&lake, "a").await, 5);
    }

    #[tokio::test]
    async fn rollback_and_savepoints_forget_writes() {
        let dir = tempfile::tempdir().unwrap();
        let lake = lake(dir.path(), &["a"]).await;
        let txn = lake.begin();
        scope(Some(txn.clone()), async {
            append(&lake, "a", vec![4]).await;
            let mark = txn.savepoint(&lake).await.unwrap();
            append(&lake, "a", vec![5, 6]).await;
            assert_eq!(rows(&lake, "a").await, 6);
            txn.rollback_to(&mark).await.unwrap();
            assert_eq!(rows(&lake, "a").await, 4);
            append(&lake, "a", vec![7]).await;
        })
        .await;
        txn.commit(&lake).await.unwrap();
        assert_eq!(rows(&lake, "a").await, 5);
        let txn = lake.begin();
        scope(Some(txn.clone()), append(&lake, "a", vec![8])).await;
        txn.rollback().await.unwrap();
        assert_eq!(rows(&lake, "a").await, 5);
        assert!(!txn.has_writes().await);
    }

    #[tokio::test]
    async fn concurrent_deletes_of_the_same_rows_conflict_and_appends_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let lake = lake(dir.path(), &["a"]).await;
        let first = lake.begin();
        let second = lake.begin();
        for t in [&first, &second] {
            scope(Some(t.clone()), async {
                let table = lake.table("gold", "a").await.unwrap().unwrap();
                table
                    .delete()
                    .with_predicate(col("id").eq(lit(2i64)))
                    .await
                    .unwrap();
            })
            .await;
        }
        first.commit(&lake).await.unwrap();
        let err = second.commit(&lake).await.unwrap_err();
        assert!(matches!(err, LakeError::SerializationFailure(_)), "{err}");
        assert_eq!(rows(&lake, "a").await, 2);
        // Appends commute.
        let (x, y) = (lake.begin(), lake.begin());
        scope(Some(x.clone()), append(&lake, "a", vec![10])).await;
        scope(Some(y.clone()), append(&lake, "a", vec![11])).await;
        x.commit(&lake).await.unwrap();
        y.commit(&lake).await.unwrap();
        assert_eq!(rows(&lake, "a").await, 4);
    }
}
