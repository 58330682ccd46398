//! The rows of a `COPY FROM STDIN` as a table the INSERT reads: the client's data chunks
//! go into a bounded channel (so a fast client waits for the write, memory stays
//! bounded), a task turns them into batches, and `tidepool_copy_stdin()` is a one-use
//! streaming table over those batches.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::catalog::{TableFunctionImpl, TableProvider};
use datafusion::common::{DataFusionError, Result, plan_err};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use tokio::sync::mpsc;

use super::batch_in::BatchBuilder;
use super::binary_in::BinaryDecoder;
use super::options::{CopyFormat, CopyOptions};
use super::rows_in::{BATCH_ROWS, RowError, RowSplitter};
use crate::EngineError;

/// The table function a COPY FROM's INSERT reads.
pub const COPY_FUNCTION: &str = "tidepool_copy_stdin";

/// Data is passed on in chunks of at least this many bytes (clients send CopyData of a
/// row or of 8 KiB: one task wake-up per 256 KiB instead).
const CHUNK_BYTES: usize = 256 << 10;

/// What the client sent.
enum Chunk {
    Data(bytes::Bytes),
    /// CopyFail, with the client's message.
    Fail(String),
    /// CopyDone.
    End,
}

/// Where the protocol puts the client's data. The data ends with [`CopyInData::finish`]
/// (CopyDone); dropped without it (the client went away), the COPY fails and writes
/// nothing.
pub struct CopyInData {
    tx: mpsc::Sender<Chunk>,
    /// Data not yet passed on.
    pending: bytes::BytesMut,
}

impl CopyInData {
    /// Passes on a chunk; waits while the write is behind. False once the COPY has failed
    /// (the rest of the data is not needed).
    pub async fn send(&mut self, data: bytes::Bytes) -> bool {
        if self.pending.is_empty() && data.len() >= CHUNK_BYTES {
            return self.tx.send(Chunk::Data(data)).await.is_ok();
        }
        self.pending.extend_from_slice(&data);
        if self.pending.len() < CHUNK_BYTES {
            return !self.tx.is_closed();
        }
        let chunk = self.pending.split().freeze();
        self.tx.send(Chunk::Data(chunk)).await.is_ok()
    }

    /// The data is complete (CopyDone).
    pub async fn finish(mut self) {
        if !self.pending.is_empty() {
            let chunk = self.pending.split().freeze();
            if self.tx.send(Chunk::Data(chunk)).await.is_err() {
                return;
            }
        }
        let _ = self.tx.send(Chunk::End).await;
    }

    /// The client gave up (CopyFail): the COPY fails and writes nothing.
    pub async fn fail(self, message: String) {
        let _ = self.tx.send(Chunk::Fail(message)).await;
    }
}

/// The session's `tidepool_copy_stdin()`: the rows of the COPY FROM in progress.
#[derive(Debug, Default, Clone)]
pub struct CopySlot(Arc<parking_lot::Mutex<Option<Arc<dyn TableProvider>>>>);

impl CopySlot {
    pub(crate) fn put(&self, table: Arc<dyn TableProvider>) {
        *self.0.lock() = Some(table);
    }

    pub(crate) fn clear(&self) {
        *self.0.lock() = None;
    }
}

impl TableFunctionImpl for CopySlot {
    fn call(&self, _args: &[Expr]) -> Result<Arc<dyn TableProvider>> {
        match self.0.lock().clone() {
            // The client's rows: nothing of the lake is read (the INSERT is authorized).
            Some(t) => Ok(crate::authz::guarded::Touches::wrap(t, Vec::new())),
            None => plan_err!(
                "{COPY_FUNCTION}() reads the data of a COPY FROM STDIN, and none is in progress"
            ),
        }
    }
}

/// Starts reading COPY data of `options` into batches of `schema` (the copied columns
/// with the table's types); `table` names the table in messages.
pub fn start(
    options: CopyOptions,
    schema: SchemaRef,
    table: String,
) -> Result<(CopyInData, Arc<dyn TableProvider>), EngineError> {
    let (tx, mut chunks) = mpsc::channel::<Chunk>(8);
    let (batches_tx, batches) = mpsc::channel::<Result<RecordBatch>>(2);
    let mut decoder = Decoder::new(options, schema.clone(), table)?;
    tokio::spawn(async move {
        let failed = |e: EngineError| Err(DataFusionError::External(Box::new(e)));
        loop {
            let chunk = chunks.recv().await;
            let step = match &chunk {
                Some(Chunk::Data(d)) => decoder.push(d),
                Some(Chunk::Fail(message)) => {
                    let _ = batches_tx
                        .send(failed(EngineError::CopyFailed(message.clone())))
                        .await;
                    return;
                }
                Some(Chunk::End) => decoder.finish(),
                None => Err(EngineError::CopyFailed("the client went away".into())),
            };
            if let Err(e) = step {
                let _ = batches_tx.send(failed(e)).await;
                return;
            }
            let last = matches!(chunk, Some(Chunk::End)) || decoder.ended();
            while let Some(batch) = decoder.ready(last) {
                let failed_now = batch.is_err();
                let sent = batches_tx
                    .send(batch.map_err(|e| DataFusionError::External(Box::new(e))))
                    .await;
                if failed_now || sent.is_err() {
                    return;
                }
            }
            if last {
                // The data after the end marker is not read; the client's CopyDone
                // still ends it.
                return;
            }
        }
    });
    let incoming = Incoming {
        schema: schema.clone(),
        batches: parking_lot::Mutex::new(Some(batches)),
    };
    let table = StreamingTable::try_new(schema, vec![Arc::new(incoming)])?;
    Ok((
        CopyInData {
            tx,
            pending: bytes::BytesMut::new(),
        },
        Arc::new(table),
    ))
}

/// The batches of one COPY, read once.
struct Incoming {
    schema: SchemaRef,
    batches: parking_lot::Mutex<Option<mpsc::Receiver<Result<RecordBatch>>>>,
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("COPY FROM STDIN")
    }
}

impl PartitionStream for Incoming {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let rows = self.batches.lock().take();
        let stream = futures::stream::unfold(Some(rows), |state| async move {
            match state? {
                Some(mut rx) => rx.recv().await.map(|b| (b, Some(Some(rx)))),
                None => Some((
                    Err(DataFusionError::Execution(
                        "the data of a COPY FROM STDIN is read once".into(),
                    )),
                    None,
                )),
            }
        });
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}

/// Turns COPY data into batches: text and CSV through rows of fields, binary directly.
enum Decoder {
    Rows {
        splitter: Box<RowSplitter>,
        builder: BatchBuilder,
    },
    Binary(BinaryDecoder),
}

impl Decoder {
    fn new(options: CopyOptions, schema: SchemaRef, table: String) -> Result<Decoder, EngineError> {
        if options.format == CopyFormat::Binary {
            return Ok(Decoder::Binary(BinaryDecoder::new(schema, table)?));
        }
        let columns: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        Ok(Decoder::Rows {
            splitter: Box::new(RowSplitter::new(options, &columns)),
            builder: BatchBuilder::new(schema, table),
        })
    }

    fn push(&mut self, chunk: &[u8]) -> Result<(), EngineError> {
        match self {
            Decoder::Rows {
                splitter, builder, ..
            } => splitter.push(chunk).map_err(|e| row_error(e, builder)),
            Decoder::Binary(b) => b.push(chunk),
        }
    }

    fn finish(&mut self) -> Result<(), EngineError> {
        match self {
            Decoder::Rows {
                splitter, builder, ..
            } => splitter.finish().map_err(|e| row_error(e, builder)),
            Decoder::Binary(b) => b.finish(),
        }
    }

    fn ended(&self) -> bool {
        match self {
            Decoder::Rows { splitter, .. } => splitter.ended(),
            Decoder::Binary(b) => b.ended(),
        }
    }

    /// The next full batch, or (`last`) whatever rows are left.
    fn ready(&mut self, last: bool) -> Option<Result<RecordBatch, EngineError>> {
        match self {
            Decoder::Rows { splitter, builder } => {
                splitter.take(last).map(|staged| builder.build(staged))
            }
            Decoder::Binary(b) => {
                if b.pending() >= BATCH_ROWS || (last && b.pending() > 0) {
                    Some(b.take_batch())
                } else {
                    None
                }
            }
        }
    }
}

fn row_error(e: RowError, builder: &BatchBuilder) -> EngineError {
    EngineError::BadCopyData(format!(
        "{} (COPY {}, line {})",
        e.message,
        builder.table(),
        e.line
    ))
}
