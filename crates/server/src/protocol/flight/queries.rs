//! Statements between calls: result streams waiting for their DoGet, and prepared
//! statements with their bound parameters.
//!
//! A query runs when the client asks for its FlightInfo (so SQL errors are reported
//! there, as clients expect); its lazy result stream waits here under a ticket until the
//! client's DoGet takes it. A ticket is good for one DoGet; one not taken within its
//! time to live (`[flight] ticket_ttl_secs`) is dropped by a sweeper on a timer, which
//! releases the query slot it holds whether or not anyone runs another query. Running
//! queries stay listed until their stream ends (or the reading client goes away), so
//! CancelQuery / CancelFlightInfo can find them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::sql::parser::Statement;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::errors::invalid;
use crate::engine::Described;

const TICKET_PREFIX: &[u8] = b"tidepool/q1/";
const HANDLE_PREFIX: &[u8] = b"tidepool/p1/";

type Id = [u8; 16];

struct Pending {
    user: String,
    cancel: CancellationToken,
    stream: Option<SendableRecordBatchStream>,
    created: Instant,
    /// The query the stream belongs to: the partitions of one query share it.
    group: Id,
}

/// A prepared statement.
pub struct Prepared {
    pub user: String,
    pub statement: Statement,
    pub described: Described,
    /// The last parameter batch bound with DoPut.
    pub params: parking_lot::Mutex<Option<RecordBatch>>,
    /// The transaction it was prepared in: it runs there.
    pub transaction: Option<Vec<u8>>,
}

/// Queries waiting for or streaming to a DoGet, and prepared statements.
pub struct Queries {
    ttl: Duration,
    pending: parking_lot::Mutex<HashMap<Id, Pending>>,
    prepared: parking_lot::Mutex<HashMap<Id, Arc<Prepared>>>,
}

fn parse_id(bytes: &[u8], prefix: &[u8]) -> Option<Id> {
    bytes.strip_prefix(prefix)?.try_into().ok()
}

/// Removes a query from the registry when its DoGet stream ends or is dropped.
pub struct Finished {
    queries: Arc<Queries>,
    id: Id,
}

impl Drop for Finished {
    fn drop(&mut self) {
        self.queries.pending.lock().remove(&self.id);
    }
}

impl Queries {
    pub fn new(ttl: Duration) -> Queries {
        Queries {
            ttl,
            pending: Default::default(),
            prepared: Default::default(),
        }
    }

    /// Sweeps expired tickets every quarter of their time to live (at least each second)
    /// until the registry is gone.
    pub async fn sweep_every(queries: std::sync::Weak<Queries>) {
        let Some(ttl) = queries.upgrade().map(|q| q.ttl) else {
            return;
        };
        let mut tick = tokio::time::interval(
            (ttl / 4).clamp(Duration::from_millis(100), Duration::from_secs(1)),
        );
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match queries.upgrade() {
                Some(q) => q.sweep(Instant::now()),
                None => return,
            }
        }
    }

    /// Drops tickets older than the time to live, unless another stream of the same query
    /// is being read (a client reading the endpoints one after another). Dropping a
    /// stream releases its query slot and cancels its work.
    pub fn sweep(&self, now: Instant) {
        let expired: Vec<Pending> = {
            let mut pending = self.pending.lock();
            let reading: std::collections::HashSet<Id> = pending
                .values()
                .filter(|p| p.stream.is_none())
                .map(|p| p.group)
                .collect();
            let ids: Vec<Id> = pending
                .iter()
                .filter(|(_, p)| {
                    p.stream.is_some()
                        && now.duration_since(p.created) >= self.ttl
                        && !reading.contains(&p.group)
                })
                .map(|(id, _)| *id)
                .collect();
            ids.iter().filter_map(|id| pending.remove(id)).collect()
        };
        // Streams are dropped outside the lock (dropping may run plan teardown).
        for p in expired {
            p.cancel.cancel();
        }
    }

    /// Parks the result streams of one query (its partitions, or just one); returns
    /// their tickets.
    pub fn park(
        &self,
        user: &str,
        streams: Vec<SendableRecordBatchStream>,
        cancel: CancellationToken,
    ) -> Vec<Vec<u8>> {
        let group: Id = rand::random();
        let now = Instant::now();
        let mut pending = self.pending.lock();
        let mut tickets = Vec::with_capacity(streams.len());
        for stream in streams {
            let id: Id = rand::random();
            pending.insert(
                id,
                Pending {
                    user: user.to_string(),
                    cancel: cancel.clone(),
                    stream: Some(stream),
                    created: now,
                    group,
                },
            );
            tickets.push([TICKET_PREFIX, &id].concat());
        }
        tickets
    }

    /// Takes the stream of a ticket for its DoGet.
    pub fn take(
        self: &Arc<Self>,
        ticket: &[u8],
        user: &str,
    ) -> Result<(SendableRecordBatchStream, Finished), Status> {
        let id = parse_id(ticket, TICKET_PREFIX).ok_or_else(|| invalid("not a tidepool ticket"))?;
        let mut pending = self.pending.lock();
        let gone = || {
            Status::not_found("ticket unknown, already fetched, or expired; run the query again")
        };
        let p = pending.get_mut(&id).ok_or_else(gone)?;
        if p.user != user {
            return Err(gone());
        }
        let stream = p.stream.take().ok_or_else(gone)?;
        Ok((
            stream,
            Finished {
                queries: self.clone(),
                id,
            },
        ))
    }

    /// Cancels the query of a ticket; false when it is unknown or finished. A query
    /// whose DoGet has not started is dropped (its ticket then answers NOT_FOUND); a
    /// streaming one ends with CANCELLED and unlists itself.
    pub fn cancel(&self, ticket: &[u8], user: &str) -> bool {
        let Some(id) = parse_id(ticket, TICKET_PREFIX) else {
            return false;
        };
        let mut pending = self.pending.lock();
        match pending.get(&id) {
            Some(p) if p.user == user => {
                p.cancel.cancel();
                if p.stream.is_some() {
                    pending.remove(&id);
                }
                true
            }
            _ => false,
        }
    }

    /// Keeps a prepared statement; returns its handle.
    pub fn prepare(&self, prepared: Prepared) -> Vec<u8> {
        let id: Id = rand::random();
        self.prepared.lock().insert(id, Arc::new(prepared));
        [HANDLE_PREFIX, &id].concat()
    }

    /// The prepared statement of a handle, if `user` owns it.
    pub fn prepared(&self, handle: &[u8], user: &str) -> Result<Arc<Prepared>, Status> {
        let gone = || Status::not_found("prepared statement unknown or closed");
        let id = parse_id(handle, HANDLE_PREFIX).ok_or_else(gone)?;
        match self.prepared.lock().get(&id) {
            Some(p) if p.user == user => Ok(p.clone()),
            _ => Err(gone()),
        }
    }

    /// Forgets a prepared statement.
    pub fn close(&self, handle: &[u8], user: &str) -> Result<(), Status> {
        self.prepared(handle, user)?;
        if let Some(id) = parse_id(handle, HANDLE_PREFIX) {
            self.prepared.lock().remove(&id);
        }
        Ok(())
    }
}

/// Parameter values of row `row` of a bound batch, cast to the types the statement
/// expects where it knows them.
pub fn row_params(
    batch: &RecordBatch,
    row: usize,
    expected: &[Option<datafusion::arrow::datatypes::DataType>],
) -> Result<ParamValues, Status> {
    if batch.num_columns() != expected.len() {
        return Err(invalid(format!(
            "the statement takes {} parameter(s) but {} were bound",
            expected.len(),
            batch.num_columns()
        )));
    }
    let mut values = Vec::with_capacity(expected.len());
    for (i, column) in batch.columns().iter().enumerate() {
        let value = ScalarValue::try_from_array(column, row)
            .map_err(|e| invalid(format!("parameter ${}: {e}", i + 1)))?;
        let value = match &expected[i] {
            Some(t) if value.data_type() != *t => value.cast_to(t).map_err(|e| {
                invalid(format!(
                    "parameter ${}: cannot use {} as {t}: {e}",
                    i + 1,
                    value.data_type()
                ))
            })?,
            _ => value,
        };
        values.push(value);
    }
    Ok(ParamValues::from(values))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::DataType;

    #[test]
    fn params_are_cast_to_expected_types() {
        let batch = RecordBatch::try_from_iter(vec![
            ("a", Arc::new(Int64Array::from(vec![7, 8])) as _),
            ("b", Arc::new(StringArray::from(vec!["x", "y"])) as _),
        ])
        .unwrap();
        let p = row_params(&batch, 1, &[Some(DataType::Int32), None]).unwrap();
        let ParamValues::List(v) = p else { panic!() };
        assert_eq!(v[0].value, ScalarValue::Int32(Some(8)));
        assert_eq!(v[1].value, ScalarValue::Utf8(Some("y".into())));
        assert!(row_params(&batch, 0, &[None]).is_err());
    }

    #[test]
    fn handles_belong_to_their_user() {
        let q = Queries::new(Duration::from_secs(60));
        let stmt =
            crate::engine::SqlParser::new(crate::pgcompat::PgCompat::new(Default::default()))
                .parse("select 1")
                .unwrap()
                .remove(0);
        let h = q.prepare(Prepared {
            user: "ana".into(),
            statement: stmt,
            described: Described {
                params: vec![],
                schema: None,
            },
            params: parking_lot::Mutex::new(None),
            transaction: None,
        });
        assert!(q.prepared(&h, "ana").is_ok());
        assert!(q.prepared(&h, "bob").is_err());
        assert!(q.close(&h, "bob").is_err());
        q.close(&h, "ana").unwrap();
        assert!(q.prepared(&h, "ana").is_err());
    }
}
