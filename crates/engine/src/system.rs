//! The virtual `system` schema: tables other layers publish (ingest state now, runs
//! later), each computed when a statement reads it. The engine only knows the
//! [`SystemTable`] trait, not who implements it.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::Result;
use datafusion::execution::SessionState;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use parking_lot::RwLock;

/// A table whose rows are computed on every read.
pub trait SystemTable: Send + Sync + std::fmt::Debug {
    fn schema(&self) -> SchemaRef;
    fn rows(&self) -> std::result::Result<RecordBatch, datafusion::arrow::error::ArrowError>;
}

/// A system table whose rows take I/O to gather. Gathered when a statement scans it,
/// with the scanning session (its temporary tables, its principal).
#[async_trait]
pub trait AsyncSystemTable: Send + Sync + std::fmt::Debug {
    fn schema(&self) -> SchemaRef;
    /// The schema when the table is looked up, for tables that learn it then.
    async fn schema_now(&self) -> Result<SchemaRef> {
        Ok(self.schema())
    }
    async fn rows(&self, session: &dyn Session) -> Result<RecordBatch>;
}

/// The session's temporary tables with their schemas (`pg_temp`), for catalog tables
/// that list them as PostgreSQL does.
pub async fn temp_tables(session: &dyn Session) -> Vec<(String, SchemaRef)> {
    let Some(state) = session.as_any().downcast_ref::<SessionState>() else {
        return Vec::new();
    };
    let Some(schema) = state
        .catalog_list()
        .catalog(crate::CATALOG)
        .and_then(|c| c.schema(crate::temp_tables::TEMP_SCHEMA))
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for name in schema.table_names() {
        if let Ok(Some(t)) = schema.table(&name).await {
            out.push((name, t.schema()));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// An [`AsyncSystemTable`] as a table: its rows are gathered at scan time.
#[derive(Debug)]
struct GatheredTable {
    table: Arc<dyn AsyncSystemTable>,
    schema: SchemaRef,
}

#[async_trait]
impl TableProvider for GatheredTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn table_type(&self) -> TableType {
        TableType::View
    }
    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let batch = self.table.rows(state).await?;
        MemTable::try_new(batch.schema(), vec![vec![batch]])?
            .scan(state, projection, filters, limit)
            .await
    }
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
            let schema = g.schema_now().await?;
            return Ok(Some(Arc::new(GatheredTable { table: g, schema })));
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
