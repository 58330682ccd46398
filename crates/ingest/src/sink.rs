//! One ingest target table (a bronze table or its dead letters) and the exactly-once
//! commit: rows and the last offset of each Kafka partition go into the same Delta commit,
//! the offset as a `txn` action (`appId` per source, topic and partition, `version` = the
//! offset). Reading those back says where consumption resumes. A concurrent writer of the
//! same partition makes the commit fail with a conflict instead of duplicating rows.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use deltalake::DeltaTable;
use deltalake::kernel::engine::arrow_conversion::TryFromArrow;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::{StructType, Transaction};
use deltalake::writer::{DeltaWriter, RecordBatchWriter, WriteMode};

use super::IngestError;
use tidepool_lake::Lake;

/// Identifies the `txn` of one partition of one source.
pub fn app_id(prefix: &str, topic: &str, partition: i32) -> String {
    format!("{prefix}:{topic}:{partition}")
}

/// A Delta table rows are appended to with their offsets.
pub struct Sink {
    lake: Arc<Lake>,
    schema: String,
    name: String,
    table: Option<DeltaTable>,
    checkpoint_interval: u64,
    /// Counts the times the snapshot may have taken in commits of other writers (a reload,
    /// or a commit that landed after someone else's): offsets read before are then stale
    /// for the partitions those commits wrote ([`Sink::generation`]).
    generation: u64,
    /// The offsets (app id, last offset) of other writers' commits that entered the
    /// snapshot since [`Sink::take_foreign`] was last called, read from just those
    /// commits; when they could not be read, [`Sink::generation`] moved instead.
    foreign: Vec<(String, i64)>,
}

/// At most this many other writers' commits are read one by one; beyond it the offsets
/// are read from the snapshot again ([`Sink::generation`]).
const FOREIGN_COMMITS_READ: u64 = 64;

impl Sink {
    /// Opens `schema.name` if it exists; it is created by the first commit otherwise.
    pub async fn open(
        lake: Arc<Lake>,
        schema: &str,
        name: &str,
        checkpoint_interval: u64,
    ) -> Result<Sink, IngestError> {
        let table = lake.table(schema, name).await?;
        Ok(Sink {
            lake,
            schema: schema.to_string(),
            name: name.to_string(),
            table,
            checkpoint_interval,
            generation: 0,
            foreign: Vec::new(),
        })
    }

    /// Changes whenever the snapshot commits are made against may hold commits of other
    /// writers that this process has not read the offsets of: a zombie's late commit of a
    /// partition this process owns now is in the snapshot, and Delta's conflict check,
    /// which only looks at commits after the snapshot, would not catch a commit of the
    /// same offsets again. Offsets read at the current generation are exact.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// `schema.table`, for messages.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// The table's Arrow schema; `None` before the table exists.
    pub fn arrow_schema(&self) -> Result<Option<SchemaRef>, IngestError> {
        match &self.table {
            None => Ok(None),
            Some(t) => {
                let s = t
                    .snapshot()
                    .map_err(IngestError::delta)?
                    .snapshot()
                    .arrow_schema();
                Ok(Some(s))
            }
        }
    }

    /// Brings the table to its newest version (another writer may have committed).
    pub async fn reload(&mut self) -> Result<(), IngestError> {
        let before = self.table.as_ref().and_then(DeltaTable::version);
        self.table = self.lake.table(&self.schema, &self.name).await?;
        let after = self.table.as_ref().and_then(DeltaTable::version);
        match (before, after) {
            (Some(b), Some(a)) if a >= b => self.take_in(b + 1..a + 1).await,
            _ => self.generation += 1,
        }
        Ok(())
    }

    /// The offsets other writers committed since the last call (see `foreign`).
    pub fn take_foreign(&mut self) -> Vec<(String, i64)> {
        std::mem::take(&mut self.foreign)
    }

    /// Notes the offsets of the commits `versions`, which entered the snapshot without
    /// this process having read them.
    async fn take_in(&mut self, versions: std::ops::Range<u64>) {
        if versions.is_empty() {
            return;
        }
        let Some(table) = &self.table else { return };
        if versions.end - versions.start > FOREIGN_COMMITS_READ {
            self.generation += 1;
            return;
        }
        let log = table.log_store();
        let mut found = Vec::new();
        for v in versions {
            let actions = match log.read_commit_entry(v).await {
                Ok(Some(bytes)) => deltalake::logstore::get_actions(v, &bytes),
                // Cleaned up already (log retention) or unreadable: read the snapshot.
                Ok(None) => {
                    self.generation += 1;
                    return;
                }
                Err(e) => Err(e),
            };
            match actions {
                Ok(actions) => found.extend(actions.into_iter().filter_map(|a| match a {
                    deltalake::kernel::Action::Txn(t) => Some((t.app_id, t.version)),
                    _ => None,
                })),
                Err(e) => {
                    tracing::debug!(table = %self.qualified(), version = v, error = %e,
                        "cannot read another writer's commit; reading offsets from the snapshot");
                    self.generation += 1;
                    return;
                }
            }
        }
        self.foreign.extend(found);
    }

    /// The offsets stored for `app_ids` (missing ids have none).
    pub async fn stored_offsets(
        &self,
        app_ids: impl IntoIterator<Item = String>,
    ) -> Result<HashMap<String, i64>, IngestError> {
        let mut out = HashMap::new();
        let Some(t) = &self.table else {
            return Ok(out);
        };
        let state = t.snapshot().map_err(IngestError::delta)?;
        let log = t.log_store();
        for id in app_ids {
            if let Some(v) = state
                .transaction_version(log.as_ref(), &id)
                .await
                .map_err(IngestError::delta)?
            {
                out.insert(id, v);
            }
        }
        Ok(out)
    }

    /// Appends `rows` (in `schema`, which may widen the table's) and records `offsets`
    /// (app id -> last offset) in one commit. Returns the committed version.
    pub async fn commit(
        &mut self,
        schema: &SchemaRef,
        rows: Vec<RecordBatch>,
        offsets: &BTreeMap<String, i64>,
        metadata: serde_json::Map<String, serde_json::Value>,
    ) -> Result<i64, IngestError> {
        if self.table.is_none() {
            self.create(schema).await?;
        }
        let Some(table) = self.table.as_mut() else {
            return Err(IngestError::NoTable(self.qualified()));
        };
        let current = table
            .snapshot()
            .map_err(IngestError::delta)?
            .snapshot()
            .arrow_schema();
        let mode = if same_columns(&current, schema) {
            WriteMode::Default
        } else {
            WriteMode::MergeSchema
        };
        let txns: Vec<Transaction> = offsets
            .iter()
            .map(|(id, v)| Transaction::new(id, *v))
            .collect();
        let props = CommitProperties::default()
            .with_application_transactions(txns)
            .with_metadata(metadata);
        let mut writer = RecordBatchWriter::for_table(table)
            .map_err(IngestError::delta)?
            .with_writer_properties(writer_properties())
            .with_commit_properties(props);
        for batch in rows {
            if batch.num_rows() == 0 {
                continue;
            }
            if let Err(e) = writer.write_with_mode(batch, mode).await {
                writer.reset();
                return Err(IngestError::delta(e));
            }
        }
        let read = table.version();
        match writer.flush_and_commit(table).await {
            Ok(v) => {
                // Landed after other commits (delta-rs checked they wrote none of these
                // offsets; they may have written other partitions').
                match read {
                    Some(r) if v > r + 1 => self.take_in(r + 1..v).await,
                    Some(_) => {}
                    None => self.generation += 1,
                }
                Ok(v as i64)
            }
            Err(e) => {
                writer.reset();
                let err = IngestError::delta(e);
                // The table object may be half-updated; read it again before a retry.
                self.table = None;
                self.reload().await?;
                Err(err)
            }
        }
    }

    async fn create(&mut self, schema: &SchemaRef) -> Result<(), IngestError> {
        let url = self.lake.table_url(&self.schema, &self.name)?;
        if let Ok(path) = url.to_file_path() {
            std::fs::create_dir_all(&path).map_err(|e| IngestError::Io {
                path: path.display().to_string(),
                source: e,
            })?;
        }
        let st = StructType::try_from_arrow(schema.as_ref()).map_err(|e| IngestError::Schema {
            path: self.qualified(),
            message: format!("not storable in Delta: {e}"),
        })?;
        let created =
            DeltaTable::try_from_url_with_storage_options(url, self.lake.storage_options().clone())
                .await
                .map_err(IngestError::delta)?
                .create()
                .with_columns(st.fields().cloned())
                .with_configuration([
                    (
                        "delta.checkpointInterval",
                        Some(self.checkpoint_interval.to_string()),
                    ),
                    ("delta.appendOnly", Some("false".to_string())),
                ])
                .await;
        match created {
            Ok(t) => self.table = Some(t),
            // Another process created it first: use theirs.
            Err(e) => {
                self.reload().await?;
                if self.table.is_none() {
                    return Err(IngestError::delta(e));
                }
            }
        }
        let _ = self.lake.refresh().await;
        Ok(())
    }
}

/// Snappy, and no dictionary for the columns that are unique per message (trying one
/// costs hashing every value before falling back).
fn writer_properties() -> deltalake::parquet::file::properties::WriterProperties {
    use deltalake::parquet::basic::Compression;
    use deltalake::parquet::file::properties::WriterProperties;
    use deltalake::parquet::schema::types::ColumnPath;
    let mut b = WriterProperties::builder().set_compression(Compression::SNAPPY);
    for c in ["_raw", "_offset", "_timestamp", "_ingested_at", "_key"] {
        b = b.set_column_dictionary_enabled(ColumnPath::from(c), false);
    }
    b.build()
}

fn same_columns(a: &SchemaRef, b: &SchemaRef) -> bool {
    a.fields().len() == b.fields().len()
        && a.fields()
            .iter()
            .zip(b.fields().iter())
            .all(|(x, y)| x.name() == y.name() && same_shape(x.data_type(), y.data_type()))
}

fn same_shape(a: &arrow::datatypes::DataType, b: &arrow::datatypes::DataType) -> bool {
    use arrow::datatypes::DataType::*;
    match (a, b) {
        (Struct(x), Struct(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y.iter())
                    .all(|(p, q)| p.name() == q.name() && same_shape(p.data_type(), q.data_type()))
        }
        (List(x), List(y)) | (LargeList(x), LargeList(y)) => {
            same_shape(x.data_type(), y.data_type())
        }
        (Map(x, _), Map(y, _)) => same_shape(x.data_type(), y.data_type()),
        _ => true,
    }
}
