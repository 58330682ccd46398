//! The virtual `system` schema: tables other layers publish (ingest state now, runs
//! later), each computed when a statement reads it. The engine only knows the
//! [`SystemTable`] trait, not who implements it.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::error::Result;
use parking_lot::RwLock;

/// A table whose rows are computed on every read.
pub trait SystemTable: Send + Sync + std::fmt::Debug {
    fn schema(&self) -> SchemaRef;
    fn rows(&self) -> std::result::Result<RecordBatch, datafusion::arrow::error::ArrowError>;
}

/// A system table whose rows take I/O to gather.
#[async_trait]
pub trait AsyncSystemTable: Send + Sync + std::fmt::Debug {
    fn schema(&self) -> SchemaRef;
    async fn rows(&self) -> Result<RecordBatch>;
}

/// A system table kept as a Delta table of the lake (written by other processes, such
/// as `tidepool run`): read at its newest version, empty with `schema` until it exists.
#[derive(Debug, Clone)]
pub struct DeltaSystemTable {
    pub schema: SchemaRef,
    pub lake: Arc<tidepool_lake::Lake>,
    /// Folder of the table relative to the lake root, e.g. `_tidepool/runs`.
    pub path: String,
}

/// The `system` schema.
#[derive(Debug, Default)]
pub struct SystemSchema {
    tables: RwLock<BTreeMap<String, Arc<dyn SystemTable>>>,
    delta: RwLock<BTreeMap<String, DeltaSystemTable>>,
    gathered: RwLock<BTreeMap<String, Arc<dyn AsyncSystemTable>>>,
}

impl SystemSchema {
    pub fn register(&self, name: &str, table: Arc<dyn SystemTable>) {
        self.tables.write().insert(name.to_string(), table);
    }

    pub fn register_delta(&self, name: &str, table: DeltaSystemTable) {
        self.delta.write().insert(name.to_string(), table);
    }

    pub fn register_gathered(&self, name: &str, table: Arc<dyn AsyncSystemTable>) {
        self.gathered.write().insert(name.to_string(), table);
    }
}

/// `information_schema` tables answered by `system.<name>` (a dialect registers them;
/// they stay out of listings of `system`, and every reader may read them).
pub const INFORMATION_SCHEMA_VIEWS: &[&str] = &[
    "routines",
    "parameters",
    "columns",
    "table_constraints",
    "key_column_usage",
    "referential_constraints",
    "constraint_column_usage",
    "check_constraints",
];

#[async_trait]
impl SchemaProvider for SystemSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.tables.read().keys().cloned().collect();
        names.extend(self.delta.read().keys().cloned());
        // information_schema tables answered here stay out of listings of `system`.
        names.extend(
            self.gathered
                .read()
                .keys()
                .filter(|n| !INFORMATION_SCHEMA_VIEWS.contains(&n.as_str()))
                .cloned(),
        );
        names.sort();
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let delta = self.delta.read().get(name).cloned();
        if let Some(d) = delta {
            let url = d
                .lake
                .root()
                .join(&format!("{}/", d.path))
                .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
            return match d.lake.open_path(url.as_str(), None).await {
                Ok(t) => Ok(Some(super::pushdown::delta_provider(&t).await.map_err(
                    |e| datafusion::error::DataFusionError::External(Box::new(e)),
                )?)),
                Err(_) => Ok(Some(Arc::new(
                    datafusion::datasource::empty::EmptyTable::new(d.schema.clone()),
                ))),
            };
        }
        let gathered = self.gathered.read().get(name).cloned();
        if let Some(g) = gathered {
            let batch = g.rows().await?;
            return Ok(Some(Arc::new(MemTable::try_new(
                batch.schema(),
                vec![vec![batch]],
            )?)));
        }
        let Some(t) = self.tables.read().get(name).cloned() else {
            return Ok(None);
        };
        let batch = t.rows()?;
        Ok(Some(Arc::new(MemTable::try_new(
            t.schema(),
            vec![vec![batch]],
        )?)))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.tables.read().contains_key(name)
            || self.delta.read().contains_key(name)
            || self.gathered.read().contains_key(name)
    }
}
