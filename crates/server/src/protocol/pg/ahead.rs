//! Result batches encoded on worker tasks, one batch ahead of the connection task that
//! writes them, so encoding and socket writes overlap: DataRows for a query, CopyData
//! rows for a COPY TO. JSON columns are converted to their text form first.

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;
use futures::stream::BoxStream;
use pgwire::error::{PgWireError, PgWireResult};
use std::sync::Arc;

use super::errors::stream_error;
use super::json_columns;

/// `encode` applied to each batch of `stream` (as the client sees its columns) on a
/// worker task, two batches in flight.
pub fn encode_ahead<T: Send + 'static>(
    stream: SendableRecordBatchStream,
    encode: impl Fn(RecordBatch) -> PgWireResult<T> + Send + Sync + 'static,
) -> BoxStream<'static, PgWireResult<T>> {
    let schema = json_columns::client_schema(&stream.schema());
    let convert = json_columns::needs_conversion(&stream.schema());
    let encode = Arc::new(encode);
    stream
        .map(move |batch| {
            let schema = schema.clone();
            let encode = encode.clone();
            async move {
                let encoded = tokio::spawn(async move {
                    let batch = match batch {
                        Ok(b) if convert => json_columns::convert(b, &schema)
                            .map_err(datafusion::error::DataFusionError::from),
                        other => other,
                    };
                    encode(batch.map_err(stream_error)?)
                })
                .await;
                encoded.unwrap_or_else(|e| Err(PgWireError::ApiError(Box::new(e))))
            }
        })
        .buffered(2)
        .boxed()
}
