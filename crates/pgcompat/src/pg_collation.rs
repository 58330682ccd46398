//! `pg_collation` under both of PostgreSQL's names for the locale column: the bundled
//! catalog has PostgreSQL 17's `colllocale`; PostgreSQL 15 and 16 call it
//! `colliculocale`, and psql 15's `\dO` asks for that when the server says it is 15.
//! The column is there under both names.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::TableProvider;
use datafusion::error::Result;

use crate::gathered::{Gather, Gathered, collect};

/// PostgreSQL 17's name, and the one before it.
const CURRENT: &str = "colllocale";
const OLDER: &str = "colliculocale";

/// `pg_collation` with `colliculocale` next to `colllocale` (as it is if the bundled
/// table lacks `colllocale`).
pub(crate) fn wrap(inner: Arc<dyn TableProvider>) -> Arc<dyn TableProvider> {
    let schema = inner.schema();
    match schema.index_of(CURRENT) {
        Ok(at) if schema.index_of(OLDER).is_err() => {
            let mut fields: Vec<_> = schema.fields().iter().cloned().collect();
            fields.insert(at + 1, Arc::new(schema.field(at).clone().with_name(OLDER)));
            let schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
            Arc::new(Gathered(Collations { inner, schema, at }))
        }
        _ => inner,
    }
}

#[derive(Debug)]
struct Collations {
    inner: Arc<dyn TableProvider>,
    schema: SchemaRef,
    /// Where `colllocale` is.
    at: usize,
}

#[async_trait]
impl Gather for Collations {
    fn inner(&self) -> &Arc<dyn TableProvider> {
        &self.inner
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    async fn batches(&self) -> Result<Vec<RecordBatch>> {
        collect(&self.inner)
            .await?
            .iter()
            .map(|b| {
                let mut columns = b.columns().to_vec();
                columns.insert(self.at + 1, columns[self.at].clone());
                Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
            })
            .collect()
    }
}
