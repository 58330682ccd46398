//! SQL cursors: `DECLARE name CURSOR [WITH HOLD] FOR query` starts the query and keeps
//! its stream in the session's [`Cursors`](crate::cursors::Cursors); `FETCH n FROM name`
//! reads on.

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ParamValues;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{Declare, DeclareType, Statement};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::Session;
use super::output::{CommandTag, Output, QueryControl};
use crate::EngineError;
use crate::cursors::fetch_count;

/// The one name a `DECLARE` declares.
fn declared(stmt: &Statement) -> Result<&Declare, EngineError> {
    match stmt {
        Statement::Declare { stmts } => match stmts.as_slice() {
            [decl] => Ok(decl),
            _ => Err(EngineError::NotSupported("DECLARE of several names".into())),
        },
        other => Err(EngineError::NotSupported(other.to_string())),
    }
}

impl Session {
    /// `DECLARE name CURSOR FOR query`: starts the query and keeps its stream open.
    pub(super) async fn declare(
        &mut self,
        stmt: &Statement,
        params: Option<ParamValues>,
    ) -> Result<Output, EngineError> {
        let decl = declared(stmt)?;
        let (Some(DeclareType::Cursor), Some(query), [name]) =
            (&decl.declare_type, &decl.for_query, decl.names.as_slice())
        else {
            return Err(EngineError::NotSupported(
                "DECLARE other than DECLARE name CURSOR FOR query".into(),
            ));
        };
        let name = crate::names::ident_text(name);
        if self.cursors.schema(&name).is_ok() {
            return Err(EngineError::DuplicateCursor(name));
        }
        // The cursor outlives this statement: its query has no deadline of its own (each
        // FETCH has one) and ends when the cursor closes.
        let control = QueryControl::new(CancellationToken::new(), None);
        let inner = DFStatement::Statement(Box::new(Statement::Query(query.clone())));
        match Box::pin(self.execute(inner, params, &control)).await? {
            Output::Rows { stream, .. } => {
                self.cursors
                    .declare(&name, stream, decl.hold.unwrap_or(false))?;
                Ok(Output::Command(CommandTag::new("DECLARE CURSOR")))
            }
            Output::Command(_) | Output::CopyOut { .. } | Output::CopyIn(_) => Err(
                EngineError::NotSupported("a cursor over a statement that returns no rows".into()),
            ),
        }
    }

    /// `FETCH n FROM name`: the cursor's next rows, within this statement's cancel and
    /// deadline.
    pub(super) async fn fetch(
        &mut self,
        stmt: &Statement,
        control: &QueryControl,
    ) -> Result<Output, EngineError> {
        let Statement::Fetch {
            name, direction, ..
        } = stmt
        else {
            return Err(EngineError::NotSupported(stmt.to_string()));
        };
        let count = fetch_count(direction)?;
        let name = crate::names::ident_text(name);
        let (schema, batches) = control.bound(self.cursors.fetch(&name, count)).await?;
        let stream = futures::stream::iter(batches.into_iter().map(Ok)).boxed();
        Ok(Output::Rows {
            stream: Box::pin(RecordBatchStreamAdapter::new(schema, stream)),
            tag: "FETCH",
        })
    }

    /// A `DECLARE` returns no rows; its parameters are its query's.
    pub(super) fn declared_query(stmt: &Statement) -> Result<Option<DFStatement>, EngineError> {
        Ok(declared(stmt)?
            .for_query
            .clone()
            .map(|q| DFStatement::Statement(Box::new(Statement::Query(q)))))
    }

    /// Result columns of a `FETCH`: its cursor's.
    pub(super) fn describe_fetch(&self, stmt: &Statement) -> Result<SchemaRef, EngineError> {
        match stmt {
            Statement::Fetch { name, .. } => self.cursors.schema(&crate::names::ident_text(name)),
            other => Err(EngineError::NotSupported(other.to_string())),
        }
    }
}
