//! SQL cursors: `DECLARE name [BINARY] [NO SCROLL] CURSOR [WITH HOLD] FOR query`,
//! `FETCH [n | ALL | NEXT | FORWARD n | FORWARD ALL] [FROM | IN] name`, `CLOSE name`,
//! `CLOSE ALL`.
//!
//! Tableau (and psqlODBC's declare/fetch mode, psycopg2 named cursors) read results this
//! way: `BEGIN; DECLARE "SQL_CUR..." CURSOR WITH HOLD FOR SELECT ...; FETCH 2048 IN
//! "SQL_CUR..."` until a FETCH returns fewer rows. The query starts when declared and
//! each FETCH pulls only the rows it asks for from the running stream, so a cursor over
//! a large table holds one batch at a time, never the whole result. Cursors are
//! forward-only, as Postgres' NO SCROLL cursors; an open cursor keeps its query slot
//! until it is exhausted or closed. Cursors without HOLD close at COMMIT and ROLLBACK;
//! `DISCARD ALL` closes all.

use std::collections::HashMap;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::sql::sqlparser::ast::{FetchDirection, Value, ValueWithSpan};
use futures::StreamExt;
use sync_wrapper::SyncWrapper;

use super::EngineError;

struct Cursor {
    /// Only ever touched through `&mut`, so the session stays `Sync`.
    stream: SyncWrapper<SendableRecordBatchStream>,
    schema: SchemaRef,
    /// Rows read from the stream but not yet fetched.
    pending: Option<RecordBatch>,
    hold: bool,
    /// Order of declaration, for closing what a rolled-back transaction declared.
    serial: u64,
}

/// The open cursors of one session, by name.
#[derive(Default)]
pub struct Cursors {
    open: HashMap<String, Cursor>,
    declared: u64,
}

impl Cursors {
    /// Result columns of an open cursor.
    pub fn schema(&self, name: &str) -> Result<SchemaRef, EngineError> {
        self.open
            .get(name)
            .map(|c| c.schema.clone())
            .ok_or_else(|| EngineError::UndefinedCursor(name.to_string()))
    }

    /// Opens a cursor over a query's result stream.
    pub fn declare(
        &mut self,
        name: &str,
        stream: SendableRecordBatchStream,
        hold: bool,
    ) -> Result<(), EngineError> {
        if self.open.contains_key(name) {
            return Err(EngineError::DuplicateCursor(name.to_string()));
        }
        let schema = stream.schema();
        self.declared += 1;
        self.open.insert(
            name.to_string(),
            Cursor {
                stream: SyncWrapper::new(stream),
                schema,
                pending: None,
                hold,
                serial: self.declared,
            },
        );
        Ok(())
    }

    /// The next `count` rows of a cursor (all remaining when `None`), as batches.
    pub async fn fetch(
        &mut self,
        name: &str,
        count: Option<usize>,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), EngineError> {
        let cursor = self
            .open
            .get_mut(name)
            .ok_or_else(|| EngineError::UndefinedCursor(name.to_string()))?;
        let mut wanted = count.unwrap_or(usize::MAX);
        let mut out = Vec::new();
        while wanted > 0 {
            let batch = match cursor.pending.take() {
                Some(b) => b,
                None => match cursor.stream.get_mut().next().await {
                    Some(b) => b.map_err(EngineError::from_stream)?,
                    None => break,
                },
            };
            if batch.num_rows() > wanted {
                out.push(batch.slice(0, wanted));
                cursor.pending = Some(batch.slice(wanted, batch.num_rows() - wanted));
                break;
            }
            wanted -= batch.num_rows();
            if batch.num_rows() > 0 {
                out.push(batch);
            }
        }
        Ok((cursor.schema.clone(), out))
    }

    /// Closes one cursor.
    pub fn close(&mut self, name: &str) -> Result<(), EngineError> {
        self.open
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| EngineError::UndefinedCursor(name.to_string()))
    }

    /// Closes every cursor (`CLOSE ALL`, `DISCARD ALL`).
    pub fn close_all(&mut self) {
        self.open.clear();
    }

    /// At COMMIT or ROLLBACK: cursors declared without HOLD close.
    pub fn end_transaction(&mut self) {
        self.open.retain(|_, c| c.hold);
    }

    /// A mark for [`Cursors::close_since`]: cursors declared from now on come after it.
    pub fn mark(&self) -> u64 {
        self.declared
    }

    /// At ROLLBACK (TO SAVEPOINT): cursors declared after `mark` close, held or not, as
    /// in PostgreSQL.
    pub fn close_since(&mut self, mark: u64) {
        self.open.retain(|_, c| c.serial <= mark);
    }
}

/// How many rows a FETCH asks for (`None`: all), or why tidepool cannot answer it.
pub fn fetch_count(direction: &FetchDirection) -> Result<Option<usize>, EngineError> {
    let count = |v: &ValueWithSpan| -> Result<i64, EngineError> {
        match &v.value {
            Value::Number(n, _) => n
                .parse::<i64>()
                .map_err(|_| EngineError::InvalidArgument(format!("FETCH count {n}"))),
            other => Err(EngineError::InvalidArgument(format!("FETCH count {other}"))),
        }
    };
    let forward = |n: i64| {
        if n < 0 {
            Err(backward())
        } else {
            Ok(Some(n as usize))
        }
    };
    match direction {
        FetchDirection::Next => Ok(Some(1)),
        FetchDirection::Count { limit } => forward(count(limit)?),
        FetchDirection::Forward { limit: None } => Ok(Some(1)),
        FetchDirection::Forward { limit: Some(l) } => forward(count(l)?),
        FetchDirection::All | FetchDirection::ForwardAll => Ok(None),
        _ => Err(backward()),
    }
}

fn backward() -> EngineError {
    EngineError::WrongObjectState(
        "cursor can only scan forward (tidepool cursors are NO SCROLL)".to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
    use datafusion::sql::sqlparser::ast::Statement;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    use std::sync::Arc;

    fn stream(batches: &[std::ops::Range<i64>]) -> SendableRecordBatchStream {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batches: Vec<_> = batches
            .iter()
            .map(|r| {
                let col = Arc::new(Int64Array::from_iter_values(r.clone()));
                Ok(RecordBatch::try_new(schema.clone(), vec![col]).unwrap())
            })
            .collect();
        Box::pin(RecordBatchStreamAdapter::new(
            schema,
            futures::stream::iter(batches),
        ))
    }

    fn values(batches: &[RecordBatch]) -> Vec<i64> {
        batches
            .iter()
            .flat_map(|b| {
                let a = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
                a.values().to_vec()
            })
            .collect()
    }

    #[tokio::test]
    async fn fetch_takes_rows_across_batch_boundaries() {
        let mut c = Cursors::default();
        c.declare("c", stream(&[0..3, 3..4, 4..10]), true).unwrap();
        assert_eq!(values(&c.fetch("c", Some(2)).await.unwrap().1), vec![0, 1]);
        assert_eq!(
            values(&c.fetch("c", Some(3)).await.unwrap().1),
            vec![2, 3, 4]
        );
        assert_eq!(
            values(&c.fetch("c", Some(0)).await.unwrap().1),
            Vec::<i64>::new()
        );
        assert_eq!(
            values(&c.fetch("c", None).await.unwrap().1),
            vec![5, 6, 7, 8, 9]
        );
        assert!(c.fetch("c", Some(5)).await.unwrap().1.is_empty());
        assert!(matches!(
            c.declare("c", stream(&[]), false),
            Err(EngineError::DuplicateCursor(_))
        ));
        c.close("c").unwrap();
        assert!(matches!(
            c.fetch("c", Some(1)).await,
            Err(EngineError::UndefinedCursor(_))
        ));
    }

    #[tokio::test]
    async fn cursors_without_hold_close_at_transaction_end() {
        let mut c = Cursors::default();
        c.declare("held", stream(&[0..1, 1..1]), true).unwrap();
        c.declare("plain", stream(&[0..1, 1..1]), false).unwrap();
        c.end_transaction();
        assert!(c.schema("held").is_ok());
        assert!(c.schema("plain").is_err());
    }

    #[test]
    fn fetch_directions() {
        let direction = |sql: &str| match Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0)
        {
            Statement::Fetch { direction, .. } => fetch_count(&direction),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            direction(r#"fetch 2048 in "SQL_CUR0x1""#).unwrap(),
            Some(2048)
        );
        assert_eq!(direction("FETCH NEXT FROM c").unwrap(), Some(1));
        assert_eq!(direction("FETCH FORWARD 5 FROM c").unwrap(), Some(5));
        assert_eq!(direction("FETCH ALL FROM c").unwrap(), None);
        assert_eq!(direction("FETCH FORWARD ALL FROM c").unwrap(), None);
        assert!(direction("FETCH PRIOR FROM c").is_err());
        assert!(direction("FETCH BACKWARD 2 FROM c").is_err());
    }
}
