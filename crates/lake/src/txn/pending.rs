//! Rows of `INSERT ... VALUES` a transaction holds until something reads the table.
//!
//! Inside a block, each INSERT that reads no table (VALUES, constants) would otherwise
//! write its own Parquet file and stage its own Delta commit: ORMs and JDBC batches send
//! one such INSERT per row. The block instead keeps those rows per table in memory and
//! writes them as one file (one staged commit) when anything reads or writes the table
//! other than another such INSERT: a query, a DML statement, a non-buffered write, a
//! savepoint rollback that keeps them, or COMMIT. The rows were checked (types,
//! constraints) when their INSERT ran, so their errors surface there, not at COMMIT.
//!
//! What counts as a read is decided by the lake: [`crate::Lake::table`] in a transaction
//! writes the table's pending rows first, unless the running statement is one the engine
//! marked with [`deferring`] (an INSERT whose source reads no lake data: its planning
//! looks at the target's schema and constraints only).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::catalog::MemTable;
use datafusion::datasource::provider_as_source;
use datafusion::execution::SessionState;
use datafusion::logical_expr::LogicalPlanBuilder;

use crate::LakeError;

/// Buffered rows of one table are written out once they hold this many bytes.
const FLUSH_BYTES: usize = 32 << 20;

tokio::task_local! {
    static DEFERRED: bool;
}

/// Runs `fut` (a statement that reads no lake data) without writing out pending rows when
/// it looks up tables.
pub fn deferring<F: Future>(fut: F) -> impl Future<Output = F::Output> {
    DEFERRED.scope(true, fut)
}

/// Whether the running statement was marked with [`deferring`].
pub(crate) fn deferred() -> bool {
    DEFERRED.try_with(|d| *d).unwrap_or(false)
}

/// Runs `fut` with the caller's [`deferring`] mark (a task spawned for a statement).
pub(crate) fn carry<F: Future>(fut: F) -> impl Future<Output = F::Output> {
    DEFERRED.scope(deferred(), fut)
}

/// One table's buffered rows.
struct Buffered {
    batches: Vec<RecordBatch>,
    bytes: usize,
    /// The session state of the first INSERT: the write plans with it.
    state: Arc<SessionState>,
}

/// A transaction's buffered rows, by table.
#[derive(Default)]
pub(crate) struct Pending {
    tables: parking_lot::Mutex<BTreeMap<(String, String), Buffered>>,
}

/// The rows of one table taken out of the buffer, ready to be written.
pub(crate) struct Flush {
    pub plan: datafusion::logical_expr::LogicalPlan,
    pub state: Arc<SessionState>,
}

impl Pending {
    /// Adds rows for `key`; true when the table's buffer is large enough to write out.
    pub fn add(
        &self,
        key: (String, String),
        batches: Vec<RecordBatch>,
        state: Arc<SessionState>,
    ) -> bool {
        let mut tables = self.tables.lock();
        let b = tables.entry(key).or_insert_with(|| Buffered {
            batches: Vec::new(),
            bytes: 0,
            state,
        });
        for batch in batches.into_iter().filter(|b| b.num_rows() > 0) {
            b.bytes += batch.get_array_memory_size();
            b.batches.push(batch);
        }
        b.bytes >= FLUSH_BYTES
    }

    /// Whether any table has buffered rows.
    pub fn any(&self) -> bool {
        self.tables.lock().values().any(|b| !b.batches.is_empty())
    }

    /// Whether `key` has buffered rows.
    pub fn holds(&self, key: &(String, String)) -> bool {
        self.tables
            .lock()
            .get(key)
            .is_some_and(|b| !b.batches.is_empty())
    }

    /// Tables with buffered rows.
    pub fn keys(&self) -> Vec<(String, String)> {
        self.tables.lock().keys().cloned().collect()
    }

    /// Forgets every buffered row.
    pub fn clear(&self) {
        self.tables.lock().clear();
    }

    /// Takes `key`'s rows out as an append plan (`None` if it holds none).
    pub fn take(&self, key: &(String, String)) -> Result<Option<Flush>, LakeError> {
        let Some(b) = self.tables.lock().remove(key) else {
            return Ok(None);
        };
        let Some(first) = b.batches.first() else {
            return Ok(None);
        };
        // Statements may disagree on nullability: the buffer's schema allows NULL, and
        // the Delta write checks the table's own NOT NULL columns.
        let schema = Arc::new(Schema::new(
            first
                .schema()
                .fields()
                .iter()
                .map(|f| Field::new(f.name(), f.data_type().clone(), true))
                .collect::<Vec<_>>(),
        ));
        let batch = crate::batches::conform(&b.batches, &schema)?;
        let table = MemTable::try_new(schema, vec![vec![batch]])?;
        let plan = LogicalPlanBuilder::scan("buffered", provider_as_source(Arc::new(table)), None)?
            .build()?;
        Ok(Some(Flush {
            plan,
            state: b.state,
        }))
    }
}
