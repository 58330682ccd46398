//! tidepool-lake: object storage laid out as `<root>/<schema>/<table>/` Delta tables.
//!
//! This crate owns storage and the Delta protocol: where tables live, listing schemas and
//! tables, opening a table at its newest (or an older) version, writing from a DataFusion
//! plan, dropping, and the small text files in `<root>/_tidepool/` that keep view and
//! external-table definitions. Its Cargo.toml is the proof that it knows nothing of SQL
//! sessions or wire protocols.

mod alter;
mod batches;
mod catch_up;
mod cloud;
mod columns;
mod compaction;
mod constraints;
mod dml;
mod dv_delete;
mod error;
mod lease;
mod listing;
mod local_logs;
mod merge;
mod metadata;
mod ordered;
pub mod portable;
mod rewrite;
mod settings;
pub mod tids;
pub mod txn;
mod upsert;
mod vectors;
mod writer;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deltalake::DeltaTable;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use parking_lot::Mutex;
use url::Url;

pub use cloud::{LazyStores, NamedStores};
pub use columns::{CHAR_TYPE_KEY, CharLength};
pub use constraints::{Constraint, ConstraintKind, Declared, quote_ident};
pub use dml::DmlOutcome;
pub use error::LakeError;
pub use lease::LeaseKeeper;
pub use listing::Listing;
pub use merge::{MERGE_SOURCE, MERGE_TARGET, MergeAction, MergeClause, MergeOutcome, MergeWhen};
pub use settings::LakeConfig;
pub use upsert::{UpsertMode, UpsertOutcome, enable_deletion_vectors, upsert};
pub use writer::{Layout, WriteMode, WriteOptions, WriteOutcome, parse_size};

/// Whether the folder `dir` holds a Delta table: its log has a first commit or a
/// checkpoint (two HEADs, whatever the number of data or log files), or, when log
/// cleanup took both, any file.
pub(crate) async fn has_delta_log(
    store: &dyn ObjectStore,
    dir: &ObjectPath,
) -> Result<bool, LakeError> {
    let log = dir.clone().join("_delta_log");
    let (first, checkpoint) = (
        log.clone().join("00000000000000000000.json"),
        log.clone().join("_last_checkpoint"),
    );
    let (first, checkpoint) = futures::join!(store.head(&first), store.head(&checkpoint));
    for found in [first, checkpoint] {
        match found {
            Ok(_) => return Ok(true),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(LakeError::Store(e)),
        }
    }
    match futures::StreamExt::next(&mut store.list(Some(&log))).await {
        Some(Ok(_)) => Ok(true),
        None | Some(Err(object_store::Error::NotFound { .. })) => Ok(false),
        Some(Err(e)) => Err(LakeError::Store(e)),
    }
}

/// Schema and table names stored in the lake are lower-case identifiers.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// A versioned `_tidepool` document keeps this many versions.
const PRUNE_AFTER: u64 = 8;

/// Name of the folder under the root that holds tidepool's own metadata.
pub(crate) const META_DIR: &str = "_tidepool";

/// What kind of definition a `_tidepool` text file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DefinitionKind {
    View,
    External,
    Procedure,
}

impl DefinitionKind {
    fn dir(self) -> &'static str {
        match self {
            DefinitionKind::View => "views",
            DefinitionKind::External => "external",
            DefinitionKind::Procedure => "procedures",
        }
    }
}

/// An opened Delta table, shared so concurrent statements update it once.
type SharedTable = Arc<tokio::sync::Mutex<DeltaTable>>;

/// A lake: root URL, object store and a cache of opened Delta tables.
pub struct Lake {
    root: Url,
    store: Arc<dyn ObjectStore>,
    storage_options: HashMap<String, String>,
    refresh_every: Duration,
    tables: Mutex<HashMap<(String, String), SharedTable>>,
    /// The newest listing and when the storage listing that produced it started.
    listing: Mutex<(Arc<Listing>, Option<Instant>)>,
    named: cloud::NamedStores,
    /// Multi-table commit records already read ([`txn`]).
    records_read: txn::RecordCache,
    /// When this process last swept old transaction records.
    records_swept: Mutex<Option<Instant>>,
    auto_compact: compaction::AutoCompact,
    /// Tables being compacted in the background.
    compacting: compaction::Running,
    /// The data files `ctid`s have named ([`tids`]).
    tids: tids::TidFiles,
    /// This lake itself, for background work that outlives a call (compaction).
    me: std::sync::Weak<Lake>,
}

impl std::fmt::Debug for Lake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lake")
            .field("root", &self.root.as_str())
            .finish()
    }
}

impl Lake {
    /// Opens (and for a local folder, creates) the lake at `config.root`.
    pub fn open(config: &LakeConfig) -> Result<Arc<Lake>, LakeError> {
        let root = root_url(&config.root)?;
        let storage_options: HashMap<String, String> = config
            .storage_options
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let store: Arc<dyn ObjectStore> = match root.scheme() {
            "file" => {
                let path = root
                    .to_file_path()
                    .map_err(|_| LakeError::InvalidRoot(root.to_string()))?;
                std::fs::create_dir_all(&path).map_err(|e| LakeError::Io {
                    path: path.display().to_string(),
                    source: e,
                })?;
                Arc::new(local_logs::LocalLogs::new())
            }
            scheme if cloud::SCHEMES.contains(&scheme) => {
                cloud::build_store(&root, &storage_options)?
            }
            scheme => {
                return Err(LakeError::UnsupportedScheme(scheme.to_string()));
            }
        };
        let auto_compact = compaction::AutoCompact {
            min_files: config.auto_compact_min_files,
            file_size: writer::parse_size(&config.auto_compact_file_size).ok_or_else(|| {
                LakeError::InvalidSetting(format!(
                    "auto_compact_file_size: {:?} is not a size such as \"8MiB\"",
                    config.auto_compact_file_size
                ))
            })?,
        };
        cloud::register_delta_handlers();
        let named = cloud::NamedStores::default();
        named.name(root.as_str());
        Ok(Arc::new_cyclic(|me| Lake {
            me: me.clone(),
            named,
            root,
            store,
            storage_options,
            refresh_every: Duration::from_millis(config.refresh_ms),
            tables: Mutex::new(HashMap::new()),
            listing: Mutex::new((Arc::new(Listing::default()), None)),
            records_read: Default::default(),
            records_swept: Mutex::new(None),
            auto_compact,
            compacting: Default::default(),
            tids: Default::default(),
        }))
    }

    /// The lake root, always ending in `/`.
    pub fn root(&self) -> &Url {
        &self.root
    }

    /// The object store the lake lives on.
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    /// The object stores the configuration names; others are never contacted.
    pub fn named_stores(&self) -> &cloud::NamedStores {
        &self.named
    }

    /// Storage options passed to delta-rs.
    pub fn storage_options(&self) -> &HashMap<String, String> {
        &self.storage_options
    }

    /// URL of the folder of `schema.table`.
    pub fn table_url(&self, schema: &str, table: &str) -> Result<Url, LakeError> {
        self.root
            .join(&format!("{schema}/{table}/"))
            .map_err(|e| LakeError::InvalidRoot(e.to_string()))
    }

    pub(crate) fn object_path(&self, rel: &str) -> ObjectPath {
        let base = self.root.path().trim_end_matches('/');
        let full = format!("{base}/{rel}");
        ObjectPath::from_url_path(&full).unwrap_or_else(|_| ObjectPath::from(full))
    }

    /// The most recent listing of schemas, tables, views and external tables. Refreshes it
    /// when it is older than the configured interval (always on the first call).
    pub async fn listing(&self) -> Result<Arc<Listing>, LakeError> {
        {
            let guard = self.listing.lock();
            if let Some(at) = guard.1
                && at.elapsed() < self.refresh_every
            {
                return Ok(guard.0.clone());
            }
        }
        self.refresh().await
    }

    /// How old a listing may get before [`Lake::listing`] lists storage again.
    pub fn refresh_interval(&self) -> Duration {
        self.refresh_every
    }

    /// The last listing without touching storage (empty before the first refresh).
    pub fn cached_listing(&self) -> Arc<Listing> {
        self.listing.lock().0.clone()
    }

    /// Lists storage now. A listing that started before the one already kept (two
    /// statements refreshing at once) does not replace it: it may miss a change the other
    /// saw, such as a view one statement renamed and the next drops.
    pub async fn refresh(&self) -> Result<Arc<Listing>, LakeError> {
        let started = Instant::now();
        let listing = Arc::new(listing::list(self).await?);
        let mut kept = self.listing.lock();
        if kept.1.is_some_and(|at| at > started) {
            return Ok(kept.0.clone());
        }
        *kept = (listing.clone(), Some(started));
        Ok(listing)
    }

    /// Opens `schema.table` at its newest committed version; `None` if there is no Delta
    /// table there. Opened tables are cached and brought up to date incrementally, so a
    /// table written by another process is seen at its newest version on the next call.
    ///
    /// Inside a transaction ([`txn::scope`]) the table is the transaction's view: pinned at
    /// its first read, with the transaction's own writes.
    pub async fn table(&self, schema: &str, table: &str) -> Result<Option<DeltaTable>, LakeError> {
        if let Some(txn) = txn::current()
            && txn.serves(self)
        {
            return txn.table(self, schema, table).await;
        }
        let t = self.real_table(schema, table).await?;
        if let Some(t) = &t {
            txn::note_read(schema, table, t.version().unwrap_or(0));
        }
        Ok(t)
    }

    /// Keeps `t`, the table a write of this process just committed, as the newest state
    /// of `schema.table`: the next read starts from it instead of replaying the commit
    /// (delta-rs rebuilds a snapshot's file list in time proportional to the table's files).
    /// Inside a transaction it becomes the transaction's view of the table.
    pub(crate) async fn remember(&self, schema: &str, table: &str, t: &DeltaTable) {
        if let Some(txn) = txn::current()
            && txn.serves(self)
        {
            txn.remember(schema, table, t).await;
            return;
        }
        self.remember_real(schema, table, t).await;
    }

    /// [`Lake::remember`] of a table read through the real log (not a transaction's).
    /// A table left with many small files is compacted in the background
    /// ([`compaction`]).
    pub(crate) async fn remember_real(&self, schema: &str, table: &str, t: &DeltaTable) {
        let key = (schema.to_string(), table.to_string());
        let cached = self.tables.lock().get(&key).cloned();
        if let Some(cached) = cached {
            {
                let mut c = cached.lock().await;
                if t.version() > c.version() {
                    *c = t.clone();
                }
            }
            if let Some(lake) = self.me.upgrade() {
                self.auto_compact
                    .after_commit(lake, &self.compacting, key, t, cached);
            }
        }
    }

    /// `schema.table` at its newest committed version, whatever transaction is running.
    pub(crate) async fn real_table(
        &self,
        schema: &str,
        table: &str,
    ) -> Result<Option<DeltaTable>, LakeError> {
        let key = (schema.to_string(), table.to_string());
        let cached = self.tables.lock().get(&key).cloned();
        if let Some(cached) = cached {
            let mut t = cached.lock().await;
            match catch_up::catch_up(&mut t).await {
                Ok(()) => return Ok(Some(t.clone())),
                Err(deltalake::DeltaTableError::NotATable(_)) => {
                    drop(t);
                    self.tables.lock().remove(&key);
                    return Ok(None);
                }
                Err(e) => return Err(LakeError::Delta(e)),
            }
        }
        if !self.is_delta_table(schema, table).await? {
            return Ok(None);
        }
        let url = self.table_url(schema, table)?;
        let t = match deltalake::open_table_with_storage_options(url, self.storage_options.clone())
            .await
        {
            Ok(t) => t,
            Err(deltalake::DeltaTableError::NotATable(_)) => return Ok(None),
            Err(e) => return Err(LakeError::Delta(e)),
        };
        self.tables
            .lock()
            .insert(key, Arc::new(tokio::sync::Mutex::new(t.clone())));
        Ok(Some(t))
    }

    /// Opens a Delta table at any URL or path, optionally at a version or timestamp.
    pub async fn open_path(
        &self,
        location: &str,
        at: Option<&TableVersion>,
    ) -> Result<DeltaTable, LakeError> {
        let url = deltalake::ensure_table_uri(location)?;
        self.named.check(&url)?;
        let mut builder = deltalake::DeltaTableBuilder::from_url(url)?
            .with_storage_options(self.storage_options.clone());
        match at {
            Some(TableVersion::Version(v)) => {
                let v = u64::try_from(*v).map_err(|_| LakeError::InvalidVersion(*v))?;
                builder = builder.with_version(v)
            }
            Some(TableVersion::Timestamp(ts)) => builder = builder.with_datestring(ts)?,
            None => {}
        }
        Ok(builder.load().await?)
    }

    /// The commit file of `version` of `schema.table` (`_delta_log/<version>.json`), or
    /// `None` when the log no longer has it.
    pub async fn log_entry(
        &self,
        schema: &str,
        table: &str,
        version: i64,
    ) -> Result<Option<bytes::Bytes>, LakeError> {
        check_name(schema)?;
        check_name(table)?;
        let path = self.object_path(&format!("{schema}/{table}/_delta_log/{version:020}.json"));
        match self.store.get(&path).await {
            Ok(r) => Ok(Some(r.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(LakeError::Store(e)),
        }
    }

    /// Opens `schema.table` at an older version or at the newest version as of a timestamp.
    pub async fn table_at(
        &self,
        schema: &str,
        table: &str,
        at: &TableVersion,
    ) -> Result<Option<DeltaTable>, LakeError> {
        if !self.is_delta_table(schema, table).await? {
            return Ok(None);
        }
        let url = self.table_url(schema, table)?;
        self.open_path(url.as_str(), Some(at)).await.map(Some)
    }

    async fn is_delta_table(&self, schema: &str, table: &str) -> Result<bool, LakeError> {
        if !valid_name(schema) || !valid_name(table) {
            return Ok(false);
        }
        has_delta_log(
            &*self.store,
            &self.object_path(&format!("{schema}/{table}")),
        )
        .await
    }

    /// Creates a schema (a folder holding a marker file, so it exists before its first table).
    pub async fn create_schema(&self, schema: &str) -> Result<(), LakeError> {
        check_name(schema)?;
        let marker = self.object_path(&format!("{META_DIR}/schemas/{schema}"));
        self.store.put(&marker, Vec::new().into()).await?;
        self.refresh().await?;
        Ok(())
    }

    /// Removes an empty schema.
    pub async fn drop_schema(&self, schema: &str) -> Result<(), LakeError> {
        let listing = self.refresh().await?;
        if listing.tables(schema).next().is_some() {
            return Err(LakeError::SchemaNotEmpty(schema.to_string()));
        }
        let marker = self.object_path(&format!("{META_DIR}/schemas/{schema}"));
        match self.store.delete(&marker).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        // A local lake keeps the emptied folders, which would still list the schema.
        if self.root.scheme() == "file" {
            let mut dirs = vec![schema.to_string()];
            for kind in [
                DefinitionKind::View,
                DefinitionKind::External,
                DefinitionKind::Procedure,
            ] {
                dirs.push(format!("{META_DIR}/{}/{schema}", kind.dir()));
            }
            for dir in dirs {
                if let Ok(path) = self.root.join(&dir).and_then(|u| {
                    u.to_file_path()
                        .map_err(|_| url::ParseError::RelativeUrlWithoutBase)
                }) {
                    // Only an empty folder goes; anything left in it stays.
                    let _ = std::fs::remove_dir(path);
                }
            }
        }
        self.refresh().await?;
        Ok(())
    }

    /// Deletes every file of `schema.table`. Readers that already planned a scan keep the
    /// snapshot they planned with until their files disappear.
    pub async fn drop_table(&self, schema: &str, table: &str) -> Result<bool, LakeError> {
        if !self.is_delta_table(schema, table).await? {
            return Ok(false);
        }
        let prefix = self.object_path(&format!("{schema}/{table}"));
        self.delete_prefix(&prefix).await?;
        self.tables
            .lock()
            .remove(&(schema.to_string(), table.to_string()));
        if let Ok(path) = self.table_url(schema, table).and_then(|u| {
            u.to_file_path()
                .map_err(|_| LakeError::InvalidRoot(u.to_string()))
        }) {
            let _ = std::fs::remove_dir_all(path);
        }
        self.refresh().await?;
        Ok(true)
    }

    async fn delete_prefix(&self, prefix: &ObjectPath) -> Result<(), LakeError> {
        use futures::TryStreamExt;
        let paths: Vec<ObjectPath> = self
            .store
            .list(Some(prefix))
            .map_ok(|m| m.location)
            .try_collect()
            .await?;
        for p in paths {
            match self.store.delete(&p).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Stores a view or external table definition (SQL text) under `_tidepool/`.
    pub async fn put_definition(
        &self,
        kind: DefinitionKind,
        schema: &str,
        name: &str,
        sql: &str,
    ) -> Result<(), LakeError> {
        check_name(schema)?;
        check_name(name)?;
        let path = self.object_path(&format!("{META_DIR}/{}/{schema}/{name}.sql", kind.dir()));
        self.store
            .put(&path, sql.as_bytes().to_vec().into())
            .await?;
        self.refresh().await?;
        Ok(())
    }

    /// Reads `_tidepool/<name>` (a settings document of the lake); `None` if absent.
    pub async fn read_meta(&self, name: &str) -> Result<Option<Vec<u8>>, LakeError> {
        let path = self.object_path(&format!("{META_DIR}/{name}"));
        match self.store.get(&path).await {
            Ok(r) => Ok(Some(r.bytes().await?.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes `_tidepool/<name>` whole (one put: readers see the old or the new bytes).
    pub async fn write_meta(&self, name: &str, bytes: Vec<u8>) -> Result<(), LakeError> {
        let path = self.object_path(&format!("{META_DIR}/{name}"));
        self.store.put(&path, bytes.into()).await?;
        Ok(())
    }

    /// The newest version of a versioned document `_tidepool/<dir>/<n>.json` and its
    /// number; `None` if there is none.
    pub async fn latest_meta_version(
        &self,
        dir: &str,
    ) -> Result<Option<(u64, Vec<u8>)>, LakeError> {
        let Some((n, path)) = self.newest_meta_version(dir).await? else {
            return Ok(None);
        };
        match self.store.get(&path).await {
            Ok(r) => Ok(Some((n, r.bytes().await?.to_vec()))),
            // Pruned between the listing and the read: a newer one exists.
            Err(object_store::Error::NotFound { .. }) => Err(LakeError::SerializationFailure(
                format!("_tidepool/{dir} changed while it was read"),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// The newest numbered file of `_tidepool/<dir>/` and its number.
    async fn newest_meta_version(&self, dir: &str) -> Result<Option<(u64, ObjectPath)>, LakeError> {
        use futures::TryStreamExt;
        let prefix = self.object_path(&format!("{META_DIR}/{dir}"));
        let objects: Vec<_> = self.store.list(Some(&prefix)).try_collect().await?;
        Ok(objects
            .into_iter()
            .filter_map(|o| {
                let n = o
                    .location
                    .filename()?
                    .strip_suffix(".json")?
                    .parse::<u64>()
                    .ok()?;
                Some((n, o.location))
            })
            .max_by_key(|(n, _)| *n))
    }

    /// Writes version `n` of `_tidepool/<dir>/` if nobody wrote it first (a create-only
    /// put: on an object store this needs conditional writes); `false` when it exists.
    /// Version `n - 8` is removed.
    pub async fn write_meta_version(
        &self,
        dir: &str,
        n: u64,
        bytes: Vec<u8>,
    ) -> Result<bool, LakeError> {
        let path = self.object_path(&format!("{META_DIR}/{dir}/{n:020}.json"));
        let create = object_store::PutOptions::from(object_store::PutMode::Create);
        match self.store.put_opts(&path, bytes.into(), create).await {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        // A writer that read a version so old that `n` had been pruned (by the writer of
        // `n + 8`) creates `n` again: its write is taken back and it reads again. (Writers
        // of `n + 1 ...` that read this `n` do not count: they carry its change.)
        if self
            .newest_meta_version(dir)
            .await?
            .is_some_and(|(newest, _)| newest >= n + PRUNE_AFTER)
        {
            let _ = self.store.delete(&path).await;
            return Ok(false);
        }
        if let Some(old) = n.checked_sub(PRUNE_AFTER) {
            let old = self.object_path(&format!("{META_DIR}/{dir}/{old:020}.json"));
            let _ = self.store.delete(&old).await;
        }
        Ok(true)
    }

    /// Reads a stored definition; `None` if there is none.
    pub async fn definition(
        &self,
        kind: DefinitionKind,
        schema: &str,
        name: &str,
    ) -> Result<Option<String>, LakeError> {
        if !valid_name(schema) || !valid_name(name) {
            return Ok(None);
        }
        let path = self.object_path(&format!("{META_DIR}/{}/{schema}/{name}.sql", kind.dir()));
        match self.store.get(&path).await {
            Ok(r) => {
                let bytes = r.bytes().await?;
                Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes a stored definition; false if there was none.
    pub async fn drop_definition(
        &self,
        kind: DefinitionKind,
        schema: &str,
        name: &str,
    ) -> Result<bool, LakeError> {
        if self.definition(kind, schema, name).await?.is_none() {
            return Ok(false);
        }
        let path = self.object_path(&format!("{META_DIR}/{}/{schema}/{name}.sql", kind.dir()));
        self.store.delete(&path).await?;
        self.carry_comment(kind, schema, name, None).await?;
        self.refresh().await?;
        Ok(true)
    }

    /// The newest version of `schema.table` and its commit history, newest first.
    pub async fn history(
        &self,
        schema: &str,
        table: &str,
    ) -> Result<(i64, Vec<deltalake::kernel::CommitInfo>), LakeError> {
        use futures::TryStreamExt;
        let t = self
            .table(schema, table)
            .await?
            .ok_or_else(|| LakeError::TableNotFound(format!("{schema}.{table}")))?;
        let history = t.history(None).try_collect().await?;
        Ok((t.version().unwrap_or(0) as i64, history))
    }
}

/// A lake on a local folder, for tests.
#[cfg(test)]
pub(crate) fn test_lake(dir: &std::path::Path) -> Arc<Lake> {
    Lake::open(&LakeConfig {
        root: dir.display().to_string(),
        ..LakeConfig::default()
    })
    .expect("a lake on a temporary folder")
}

/// Rows in a table's data files (deletion vectors not subtracted), for tests.
#[cfg(test)]
pub(crate) fn file_rows(t: &DeltaTable) -> i64 {
    t.snapshot()
        .expect("a loaded table")
        .log_data()
        .iter()
        .map(|f| f.num_records().unwrap_or(0) as i64)
        .sum()
}

/// An older version of a table, by number or by time.
#[derive(Debug, Clone, PartialEq)]
pub enum TableVersion {
    Version(i64),
    /// RFC 3339 timestamp (or a date); the newest version committed at or before it.
    Timestamp(String),
}

fn check_name(name: &str) -> Result<(), LakeError> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(LakeError::InvalidName(name.to_string()))
    }
}

/// Turns a lake root setting (folder or URL) into a URL ending with `/`.
pub fn root_url(root: &str) -> Result<Url, LakeError> {
    let mut url = if root.contains("://") {
        Url::parse(root).map_err(|e| LakeError::InvalidRoot(format!("{root}: {e}")))?
    } else {
        let path = std::path::Path::new(root);
        let abs = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|e| LakeError::InvalidRoot(format!("{root}: {e}")))?
                .join(path)
        };
        Url::from_directory_path(normalize(&abs))
            .map_err(|_| LakeError::InvalidRoot(root.to_string()))?
    };
    if !url.path().ends_with('/') {
        let p = format!("{}/", url.path());
        url.set_path(&p);
    }
    Ok(url)
}

fn normalize(p: &std::path::Path) -> std::path::PathBuf {
    use std::path::Component;
    let mut out = std::path::PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod meta_version_tests {
    /// A writer that read a version since pruned cannot bring that version back: its
    /// write is refused as if another writer had won, and it reads again.
    #[tokio::test]
    async fn a_pruned_version_is_not_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let lake = crate::test_lake(dir.path());
        for n in 1..=10 {
            assert!(lake.write_meta_version("doc", n, vec![b'x']).await.unwrap());
        }
        let file = |n: u64| dir.path().join(format!("_tidepool/doc/{n:020}.json"));
        assert!(!file(2).exists());
        assert!(!lake.write_meta_version("doc", 2, vec![b'y']).await.unwrap());
        assert!(!file(2).exists());
        assert_eq!(
            lake.latest_meta_version("doc").await.unwrap().unwrap().0,
            10
        );
        assert!(
            lake.write_meta_version("doc", 11, vec![b'z'])
                .await
                .unwrap()
        );
    }
}
