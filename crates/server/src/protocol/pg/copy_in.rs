//! `COPY ... FROM STDIN` on the wire: after the CopyInResponse, each CopyData goes to the
//! COPY's data channel (waiting while the write is behind, so memory stays bounded);
//! CopyDone waits for the write and answers `COPY n`; CopyFail fails the COPY (57014,
//! nothing written). Data after a failure is read and dropped until the client's
//! CopyDone or CopyFail, which then gets the error.

use async_trait::async_trait;
use futures::{Sink, SinkExt};
use pgwire::api::ClientInfo;
use pgwire::api::copy::CopyHandler;
use pgwire::api::results::Tag;
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};

use super::errors::to_pg;
use super::handler::{ConnHandler, CopyInProgress};
use crate::engine::EngineError;

#[async_trait]
impl CopyHandler for ConnHandler {
    async fn on_copy_data<C>(&self, _client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let mut guard = self.0.copy_in.lock().await;
        if let Some(CopyInProgress { data, .. }) = guard.as_mut()
            && let Some(d) = data
            && !d.send(copy_data.data).await
        {
            // The COPY failed or has all it reads (`\.`): the rest is dropped.
            *data = None;
        }
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let Some(mut copy) = self.0.copy_in.lock().await.take() else {
            return Err(no_copy());
        };
        if let Some(d) = copy.data.take() {
            d.finish().await;
        }
        let written = finished(copy).await;
        self.session_status(client, false).await;
        let rows = written?;
        client
            .send(PgWireBackendMessage::CommandComplete(
                Tag::new("COPY").with_rows(rows as usize).into(),
            ))
            .await?;
        Ok(())
    }

    async fn on_copy_fail<C>(&self, client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let Some(mut copy) = self.0.copy_in.lock().await.take() else {
            return no_copy();
        };
        if let Some(d) = copy.data.take() {
            d.fail(fail.message.clone()).await;
        }
        let written = finished(copy).await;
        self.session_status(client, false).await;
        match written {
            // The rows were all read (`\.`) and written before the CopyFail.
            Ok(_) => to_pg(&EngineError::CopyFailed(fail.message)),
            Err(e) => e,
        }
    }
}

/// The outcome of the COPY's write.
async fn finished(copy: CopyInProgress) -> PgWireResult<u64> {
    match copy.task.await {
        Ok(Ok(rows)) => Ok(rows),
        Ok(Err(e)) => Err(to_pg(&e)),
        Err(e) => Err(PgWireError::ApiError(Box::new(e))),
    }
}

fn no_copy() -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        "08P01".into(),
        "no COPY FROM STDIN is in progress".into(),
    )))
}
