//! `CommandStatementIngest` (ADBC's `adbc_ingest` over Flight SQL): the command names the
//! table and what to do when it exists or not; the DoPut's Arrow batches are the rows,
//! streamed into the engine's ingest ([`crate::engine::Ingest`]) as they arrive.

use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::sql::server::PeekableFlightDataStream;
use arrow_flight::sql::{CommandStatementIngest, TableExistsOption, TableNotExistOption};
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::{StreamExt, TryStreamExt};
use tonic::{Request, Status};

use super::errors::invalid;
use crate::engine::{CATALOG, IfExists, IfMissing, Ingest};

/// The engine's ingest target for a command. Options left unspecified fail rather than
/// guess (ADBC always sets both).
pub(super) fn target(command: &CommandStatementIngest) -> Result<Ingest, Status> {
    if let Some(catalog) = command.catalog.as_deref()
        && !catalog.is_empty()
        && catalog != CATALOG
    {
        return Err(invalid(format!(
            "catalog {catalog} does not exist (tidepool's catalog is {CATALOG})"
        )));
    }
    let options = command.table_definition_options.unwrap_or_default();
    let if_missing = match TableNotExistOption::try_from(options.if_not_exist) {
        Ok(TableNotExistOption::Create) => IfMissing::Create,
        _ => IfMissing::Fail,
    };
    let if_exists = match TableExistsOption::try_from(options.if_exists) {
        Ok(TableExistsOption::Append) => IfExists::Append,
        Ok(TableExistsOption::Replace) => IfExists::Replace,
        _ => IfExists::Fail,
    };
    Ok(Ingest {
        schema: command.schema.clone().filter(|s| !s.is_empty()),
        table: command.table.clone(),
        if_missing,
        if_exists,
        temporary: command.temporary,
    })
}

/// The DoPut's record batches as a stream, once its schema has arrived. A stream that
/// breaks off fails the write (nothing is committed).
pub(super) async fn rows(
    request: Request<PeekableFlightDataStream>,
) -> Result<SendableRecordBatchStream, Status> {
    // The first message carries the command; it may hold no Arrow data at all.
    let data = request
        .into_inner()
        .try_filter(|d| futures::future::ready(!d.data_header.is_empty()))
        .map_err(|s| FlightError::Tonic(Box::new(s)));
    let mut batches = FlightRecordBatchStream::new_from_flight_data(data);
    let first = batches.next().await;
    let schema = match (&first, batches.schema()) {
        (Some(Ok(b)), _) => b.schema(),
        (Some(Err(e)), _) => return Err(invalid(format!("cannot read the ingested rows: {e}"))),
        (None, Some(s)) => s.clone(),
        (None, None) => return Err(invalid("the ingest stream carries no schema")),
    };
    let failed = |e: FlightError| DataFusionError::External(Box::new(e));
    let rows = futures::stream::iter(first).chain(batches).map_err(failed);
    Ok(Box::pin(RecordBatchStreamAdapter::new(schema, rows)))
}
