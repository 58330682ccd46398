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

/// The `system` schema.
#[derive(Debug, Default)]
pub struct SystemSchema {
    tables: RwLock<BTreeMap<String, Arc<dyn SystemTable>>>,
}

impl SystemSchema {
    pub fn register(&self, name: &str, table: Arc<dyn SystemTable>) {
        self.tables.write().insert(name.to_string(), table);
    }
}

#[async_trait]
impl SchemaProvider for SystemSchema {
    fn table_names(&self) -> Vec<String> {
        self.tables.read().keys().cloned().collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
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
    }
}
