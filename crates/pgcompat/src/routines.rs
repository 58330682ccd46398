//! Procedures in `information_schema.routines` and `information_schema.parameters`.
//! DataFusion answers those two for its functions; the parser sends queries of them to
//! `system.routines` / `system.parameters`, which hold DataFusion's rows and one per
//! procedure (`routine_type = 'PROCEDURE'`) and per parameter.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::error::Result;
use datafusion::prelude::SessionContext;

use crate::pg_proc::rows_to_batch;
use tidepool_engine::{CATALOG, Engine};

/// Which information_schema table.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Routines,
    Parameters,
}

#[derive(Debug)]
pub struct InformationTable {
    pub engine: Weak<Engine>,
    pub kind: Kind,
}

impl InformationTable {
    fn name(&self) -> &'static str {
        match self.kind {
            Kind::Routines => "routines",
            Kind::Parameters => "parameters",
        }
    }
}

#[async_trait]
impl tidepool_engine::system::AsyncSystemTable for InformationTable {
    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::empty())
    }

    /// DataFusion's `information_schema.<name>` columns, which the rows extend.
    async fn schema_now(&self) -> Result<SchemaRef> {
        let Some(engine) = self.engine.upgrade() else {
            return Ok(self.schema());
        };
        let ctx = SessionContext::new_with_state(engine.base().state());
        let df = ctx
            .sql(&format!("SELECT * FROM information_schema.{}", self.name()))
            .await?;
        Ok(Arc::new(df.schema().as_arrow().clone()))
    }

    async fn rows(&self, _session: &dyn datafusion::catalog::Session) -> Result<RecordBatch> {
        let Some(engine) = self.engine.upgrade() else {
            return Ok(RecordBatch::new_empty(self.schema()));
        };
        let name = self.name();
        let ctx = SessionContext::new_with_state(engine.base().state());
        let df = ctx
            .sql(&format!("SELECT * FROM information_schema.{name}"))
            .await?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let mut batches = df.collect().await?;
        let listing = engine
            .lake()
            .listing()
            .await
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        let text = |v: &str| ScalarValue::Utf8(Some(v.to_string()));
        let mut rows: Vec<HashMap<&'static str, ScalarValue>> = Vec::new();
        for (s, l) in &listing.schemas {
            for n in &l.procedures {
                let Ok(Some(p)) = Box::pin(engine.procedure(s, n)).await else {
                    continue;
                };
                let mut base: HashMap<&'static str, ScalarValue> = HashMap::new();
                base.insert("specific_catalog", text(CATALOG));
                base.insert("specific_schema", text(s));
                base.insert("specific_name", text(n));
                match self.kind {
                    Kind::Routines => {
                        let mut r = base;
                        r.insert("routine_catalog", text(CATALOG));
                        r.insert("routine_schema", text(s));
                        r.insert("routine_name", text(n));
                        r.insert("routine_type", text("PROCEDURE"));
                        r.insert("is_deterministic", ScalarValue::Boolean(Some(false)));
                        r.insert("syntax_example", text(&format!("CALL {}", p.signature())));
                        if let Some(f) = &p.file {
                            r.insert("description", text(&format!("defined in {f}")));
                        }
                        rows.push(r);
                    }
                    Kind::Parameters => {
                        for (k, q) in p.params.iter().enumerate() {
                            let mut r = base.clone();
                            r.insert("ordinal_position", ScalarValue::Int64(Some(k as i64 + 1)));
                            r.insert("parameter_mode", text("IN"));
                            r.insert("parameter_name", text(&q.name));
                            r.insert("data_type", text(&q.sql_type));
                            if let Some(d) = &q.default_sql {
                                r.insert("parameter_default", text(d));
                            }
                            r.insert("is_variadic", ScalarValue::Boolean(Some(false)));
                            rows.push(r);
                        }
                    }
                }
            }
        }
        if !rows.is_empty() {
            batches.push(rows_to_batch(&schema, &rows)?);
        }
        Ok(datafusion::arrow::compute::concat_batches(
            &schema, &batches,
        )?)
    }
}
