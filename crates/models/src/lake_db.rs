//! The lake as a running model's Jinja reaches it: `run_query`, `statement` blocks and
//! `adapter.get_columns_in_relation` ([`crate::jinja_dbt::Database`]). Rendering is
//! synchronous and the engine is not, so each call blocks its worker thread
//! (`block_in_place`) until the query is done; that needs the multi-threaded runtime the
//! server and the CLI run on.

use std::sync::Arc;

use arrow::json::writer::JsonArray;
use tidepool_engine::Engine;

use crate::jinja_dbt::{Database, QueryResult};

/// The lake behind `engine`.
#[derive(Debug)]
pub struct LakeDatabase {
    engine: Arc<Engine>,
}

impl LakeDatabase {
    pub fn shared(engine: Arc<Engine>) -> Arc<dyn Database> {
        Arc::new(LakeDatabase { engine })
    }

    fn block<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, String>>,
    ) -> Result<T, String> {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| "run_query needs a running tokio runtime".to_string())?;
        if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
            return Err("run_query needs tokio's multi-threaded runtime".to_string());
        }
        tokio::task::block_in_place(|| handle.block_on(fut))
    }
}

impl Database for LakeDatabase {
    fn query(&self, sql: &str) -> Result<QueryResult, String> {
        let engine = self.engine.clone();
        let sql = sql.trim().trim_end_matches(';').to_string();
        self.block(async move {
            let session = engine.session("tidepool");
            let df = session.dataframe(&sql).await.map_err(|e| e.to_string())?;
            let columns = crate::column_names(&df);
            let batches = df.collect().await.map_err(|e| e.to_string())?;
            let mut writer = arrow::json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, JsonArray>(Vec::new());
            for b in &batches {
                writer.write(b).map_err(|e| e.to_string())?;
            }
            writer.finish().map_err(|e| e.to_string())?;
            let bytes = writer.into_inner();
            let objects: Vec<serde_json::Map<String, serde_json::Value>> = if bytes.is_empty() {
                Vec::new()
            } else {
                serde_json::from_slice(&bytes).map_err(|e| e.to_string())?
            };
            let rows = objects
                .into_iter()
                .map(|mut o| {
                    columns
                        .iter()
                        .map(|c| o.remove(c).unwrap_or(serde_json::Value::Null))
                        .collect()
                })
                .collect();
            Ok(QueryResult { columns, rows })
        })
    }

    fn columns(&self, schema: &str, name: &str) -> Result<Option<Vec<(String, String)>>, String> {
        let engine = self.engine.clone();
        let (schema, name) = (schema.to_lowercase(), name.to_lowercase());
        self.block(async move {
            let session = engine.session("tidepool");
            let relation = if schema.is_empty() {
                format!("\"{name}\"")
            } else {
                format!("\"{schema}\".\"{name}\"")
            };
            let df = match session
                .dataframe(&format!("SELECT * FROM {relation} LIMIT 0"))
                .await
            {
                Ok(df) => df,
                Err(tidepool_engine::EngineError::UndefinedTable(_)) => return Ok(None),
                Err(e) => return Err(e.to_string()),
            };
            Ok(Some(
                df.schema()
                    .fields()
                    .iter()
                    .map(|f| {
                        (
                            f.name().clone(),
                            tidepool_engine::copy::sql_name(f.data_type()),
                        )
                    })
                    .collect(),
            ))
        })
    }
}
