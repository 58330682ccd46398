//! Running SQL for the project outside a model's own query: statements one after
//! another (hooks, `CREATE SCHEMA`, views, snapshot merges), and a table replaced by a
//! query's rows in one Delta commit.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::ModelsError;
use tidepool_engine::{Engine, Output, QueryControl};
use tidepool_lake::WriteMode;

/// Runs every statement of `sql` in order, in one session; the rows the last one
/// wrote, when it says.
pub(crate) async fn execute_all(
    engine: &Arc<Engine>,
    sql: &str,
    cancel: &CancellationToken,
) -> Result<Option<u64>, ModelsError> {
    let mut session = engine.session("tidepool");
    let statements = session.parse(sql)?;
    let control = QueryControl::new(cancel.clone(), None);
    let mut rows = None;
    for stmt in statements {
        rows = match session.execute(stmt, None, &control).await? {
            Output::Command(tag) => tag.rows,
            // A hook's COPY has no client to talk to: its rows are not read, and a COPY
            // FROM STDIN waiting for data is dropped, so it fails and writes nothing.
            Output::Rows { .. } | Output::CopyOut { .. } | Output::CopyIn(_) => None,
        };
    }
    Ok(rows)
}

/// Replaces table `schema.name` with the rows of `df` in one Delta commit (readers see
/// the old or the new table); the rows written.
pub(crate) async fn replace_table(
    session: &tidepool_engine::Session,
    (schema, name): (&str, &str),
    df: datafusion::dataframe::DataFrame,
    options: &tidepool_lake::WriteOptions,
    cancel: &CancellationToken,
) -> Result<u64, ModelsError> {
    let state = Arc::new(session.state());
    let lake = session.engine().lake();
    tokio::select! {
        o = lake.write_plan_with(
            schema,
            name,
            df.logical_plan().clone(),
            state,
            WriteMode::Replace,
            options,
        ) => Ok(o?.rows),
        _ = cancel.cancelled() => Err(ModelsError::Cancelled),
    }
}
