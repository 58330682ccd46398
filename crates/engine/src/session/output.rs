//! What a statement returns: its rows or its completion tag, how it changes the
//! transaction state, a description without running it, and the cancel and deadline it
//! runs under.

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How a statement changes the transaction state a client sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxEffect {
    None,
    Begin,
    End,
}

/// Completion tag of a statement that returns no rows (`INSERT 0 5`, `CREATE TABLE`...).
#[derive(Debug, Clone)]
pub struct CommandTag {
    pub tag: String,
    pub rows: Option<u64>,
    pub tx: TxEffect,
}

impl CommandTag {
    pub(crate) fn new(tag: &str) -> Self {
        CommandTag {
            tag: tag.to_string(),
            rows: None,
            tx: TxEffect::None,
        }
    }
    /// A tag that begins or ends a transaction block.
    pub(super) fn ending(tag: &str, tx: TxEffect) -> Self {
        CommandTag {
            tag: tag.to_string(),
            rows: None,
            tx,
        }
    }
    pub(super) fn with_rows(tag: &str, rows: u64) -> Self {
        CommandTag {
            tag: tag.to_string(),
            rows: Some(rows),
            tx: TxEffect::None,
        }
    }
}

/// What a statement produced.
pub enum Output {
    /// Rows, streamed; `tag` is the completion tag (`SELECT`, `SHOW`...).
    Rows {
        stream: SendableRecordBatchStream,
        tag: &'static str,
    },
    Command(CommandTag),
    /// `COPY ... TO STDOUT`: rows for the protocol to encode as `options` says.
    CopyOut {
        stream: SendableRecordBatchStream,
        options: crate::copy::CopyOptions,
    },
    /// `COPY ... FROM STDIN`: the protocol asks the client for its data.
    CopyIn(Box<crate::copy::CopyIn>),
}

/// What [`Session::execute_split`] returns.
pub enum SplitOutput {
    /// Ran as [`Session::execute`] would.
    One(Output),
    /// Rows as independent partition streams, in no particular order.
    Partitions(Vec<SendableRecordBatchStream>),
}

impl SplitOutput {
    /// One output: partitions are read as one stream, in whatever order they produce.
    pub fn into_output(self) -> Output {
        match self {
            SplitOutput::One(out) => out,
            SplitOutput::Partitions(streams) => {
                let schema = streams
                    .first()
                    .map(|s| s.schema())
                    .unwrap_or_else(|| Arc::new(datafusion::arrow::datatypes::Schema::empty()));
                Output::Rows {
                    stream: Box::pin(RecordBatchStreamAdapter::new(
                        schema,
                        futures::stream::select_all(streams),
                    )),
                    tag: "SELECT",
                }
            }
        }
    }
}

/// Whether a query's partitions are merged into one stream (every protocol but one) or
/// returned apart ([`Session::execute_split`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    Merged,
    Partitioned,
}

/// What a statement will take and return, without running it.
#[derive(Debug, Clone)]
pub struct Described {
    /// Types of `$1..$n`, where DataFusion could infer them.
    pub params: Vec<Option<DataType>>,
    /// Columns of the result; `None` for statements without rows.
    pub schema: Option<SchemaRef>,
}

/// Cancellation and deadline of one statement.
#[derive(Debug, Clone)]
pub struct QueryControl {
    pub cancel: CancellationToken,
    pub deadline: Option<Instant>,
}

impl QueryControl {
    pub fn new(cancel: CancellationToken, timeout: Option<Duration>) -> Self {
        QueryControl {
            cancel,
            deadline: timeout.map(|t| Instant::now() + t),
        }
    }

    /// Runs `work` until it ends, the statement is cancelled (57014) or its deadline
    /// passes (57014, statement timeout).
    pub(crate) async fn bound<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, crate::EngineError>>,
    ) -> Result<T, crate::EngineError> {
        let deadline = async {
            match self.deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = work => r,
            _ = self.cancel.cancelled() => Err(crate::EngineError::Cancelled),
            _ = deadline => Err(crate::EngineError::Timeout),
        }
    }
}

/// The row count DataFusion's DML and COPY plans return as their one value.
pub(super) fn count_of(batches: &[datafusion::arrow::record_batch::RecordBatch]) -> u64 {
    batches
        .first()
        .filter(|b| b.num_rows() > 0)
        .and_then(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<datafusion::arrow::array::UInt64Array>()
                .map(|a| a.value(0))
        })
        .unwrap_or(0)
}
