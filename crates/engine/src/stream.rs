//! Result streams that stop on cancel or at the statement deadline.
//!
//! A [`GuardedStream`] wraps DataFusion's record batch stream and ends it with an error as
//! soon as the statement is cancelled or runs past its deadline, even while the inner
//! stream is waiting on a long aggregation. It also holds the query slot, so the
//! concurrency limit counts statements until their last row is sent.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream};
use futures::{FutureExt, Stream};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::WaitForCancellationFutureOwned;

use super::EngineError;

pub struct GuardedStream {
    inner: SendableRecordBatchStream,
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    done: bool,
    _permit: Option<Arc<OwnedSemaphorePermit>>,
}

impl GuardedStream {
    pub fn new(
        inner: SendableRecordBatchStream,
        control: &super::QueryControl,
        permit: Option<Arc<OwnedSemaphorePermit>>,
    ) -> Self {
        GuardedStream {
            inner,
            cancelled: Box::pin(control.cancel.clone().cancelled_owned()),
            deadline: control
                .deadline
                .map(|d| Box::pin(tokio::time::sleep_until(d))),
            done: false,
            _permit: permit,
        }
    }

    /// Ends the stream with `e` and drops the execution at once: its spawned tasks are
    /// aborted now, not when the client gets round to dropping the stream.
    fn fail(&mut self, e: EngineError) -> Poll<Option<Result<RecordBatch>>> {
        self.done = true;
        let schema = self.inner.schema();
        self.inner = Box::pin(datafusion::physical_plan::EmptyRecordBatchStream::new(
            schema,
        ));
        self._permit = None;
        Poll::Ready(Some(Err(DataFusionError::External(Box::new(e)))))
    }
}

impl Stream for GuardedStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.cancelled.poll_unpin(cx).is_ready() {
            return self.fail(EngineError::Cancelled);
        }
        if let Some(d) = self.deadline.as_mut()
            && d.poll_unpin(cx).is_ready()
        {
            return self.fail(EngineError::Timeout);
        }
        let next = self.inner.as_mut().poll_next(cx);
        if let Poll::Ready(None) = next {
            self.done = true;
        }
        next
    }
}

impl RecordBatchStream for GuardedStream {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }
}
